"""Atomic writes: complete files or none, and the mode an ordinary ``open`` would give (umask)."""
from __future__ import annotations

import os
import stat

import pytest
import torch

from repro.fileio import (atomic_save_npy, atomic_torch_save, atomic_write, atomic_write_bytes, atomic_write_json,
                          atomic_write_text, current_umask)


@pytest.fixture
def umask():
    """Set a umask for one test; restore the previous one."""
    previous = os.umask(0o022)
    os.umask(previous)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_every_atomic_writer_respects_the_umask(tmp_path, umask, mask):
    umask(mask)
    assert current_umask() == mask
    np = pytest.importorskip("numpy")
    writers = {
        "a.bin": lambda p: atomic_write_bytes(p, b"\x00\x01"),
        "a.txt": lambda p: atomic_write_text(p, "text"),
        "a.json": lambda p: atomic_write_json(p, {"k": 1}),
        "a.npy": lambda p: atomic_save_npy(p, np.zeros(3)),
        "a.pt": lambda p: atomic_torch_save({"w": torch.ones(2)}, p),
    }
    for name, write in writers.items():
        write(tmp_path / name)
        assert _mode(tmp_path / name) == 0o666 & ~mask, name
    with open(tmp_path / "plain", "w"):
        pass
    assert _mode(tmp_path / "plain") == _mode(tmp_path / "a.txt")  # as an ordinary open() would


def test_umask_022_gives_0644(tmp_path, umask):
    umask(0o022)
    atomic_write_text(tmp_path / "sub" / "x.txt", "hello")
    assert _mode(tmp_path / "sub" / "x.txt") == 0o644
    assert (tmp_path / "sub" / "x.txt").read_text() == "hello"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "keep.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_atomic_torch_save_round_trip(tmp_path):
    state = {"w": torch.arange(6.0).view(2, 3), "epoch": 3}
    atomic_torch_save(state, tmp_path / "deep" / "c.pt")
    loaded = torch.load(tmp_path / "deep" / "c.pt", weights_only=True)
    assert loaded["epoch"] == 3 and torch.equal(loaded["w"], state["w"])
