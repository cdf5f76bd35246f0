"""Atomic file writing and inter-process file locks: every file the project writes goes through here.

Every file the project writes goes through :func:`atomic_write` (or its helpers, among them
:func:`atomic_torch_save` for checkpoints and weights): the bytes are written to a temporary file in
the destination's own folder, flushed, and moved into place with :func:`os.replace`, so a reader
never sees a half-written file and an interrupted generation never leaves one behind.  The file
gets the mode an ordinary ``open(path, "w")`` would give it (``0o666`` less the umask), not the
``0o600`` of :func:`tempfile.mkstemp`.  :func:`file_lock` / :func:`lock_beside` serialise work that several processes
may start at once (two table runs side by side asking for the same cache).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_save_npy",
           "atomic_torch_save", "current_umask", "file_lock", "lock_beside"]


def current_umask() -> int:
    """The process's umask, read without changing it where Linux says it (``/proc/self/status``)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, hence the fallback only)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    ``suffix`` defaults to ``path``'s own suffix so that writers that pick a format from the file
    name (PyAV, OpenCV) see the right extension.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp made it 0o600
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` so that ``path`` is always either the old file or the complete new one; the
    data and the rename are fsync'ed (a checkpoint survives a power cut, not only ``kill -9``)."""
    import torch

    path = Path(path)
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


@contextlib.contextmanager
def file_lock(lock_file: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (created if missing) for the ``with`` block.

    Another process (or another open of the same file) asking for it waits until it is released;
    the lock goes with the process, so a killed holder never leaves a stale lock behind.
    """
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def lock_beside(path: str | os.PathLike) -> contextlib.AbstractContextManager[None]:
    """:func:`file_lock` on the hidden ``.<name>.lock`` beside ``path``: one writer of ``path`` at a time."""
    path = Path(path)
    return file_lock(path.parent / f".{path.name}.lock")
