"""Middlebury .flo reading and writing."""
from __future__ import annotations

import numpy as np
import pytest

from repro.data.flo import FLO_MAGIC, FloError, encode_flo, flow_valid_mask, read_flo, write_flo


def test_roundtrip_and_header(tmp_path):
    rng = np.random.default_rng(0)
    flow = rng.normal(size=(5, 7, 2)).astype(np.float32)
    path = tmp_path / "sub" / "a.flo"
    write_flo(path, flow)
    raw = path.read_bytes()
    assert np.frombuffer(raw[:4], "<f4")[0] == np.float32(FLO_MAGIC) and raw[:4] == b"PIEH"
    assert tuple(np.frombuffer(raw[4:12], "<i4")) == (7, 5)  # width, height
    assert len(raw) == 12 + 5 * 7 * 2 * 4
    back = read_flo(path)
    assert back.dtype == np.float32 and back.shape == (5, 7, 2)
    np.testing.assert_array_equal(back, flow)
    # interleaved (u, v) per pixel, row-major
    assert np.frombuffer(raw[12:20], "<f4").tolist() == flow[0, 0].tolist()
    assert [p.name for p in path.parent.iterdir()] == ["a.flo"]  # no temporary left behind


def test_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.flo"
    bad.write_bytes(np.array([1.0, 2.0, 3.0], "<f4").tobytes())
    with pytest.raises(FloError, match="bad.flo.*magic"):
        read_flo(bad)
    short = tmp_path / "short.flo"
    short.write_bytes(encode_flo(np.zeros((4, 4, 2), np.float32))[:-8])
    with pytest.raises(FloError, match="short.flo.*does not match header"):
        read_flo(short)
    with pytest.raises(FileNotFoundError, match="missing.flo"):
        read_flo(tmp_path / "missing.flo")
    with pytest.raises(ValueError, match=r"out.flo.*\(H, W, 2\)"):
        write_flo(tmp_path / "out.flo", np.zeros((4, 4, 3), np.float32))


def test_unknown_flow_mask():
    flow = np.zeros((2, 3, 2), np.float32)
    flow[0, 1, 0] = 1e10
    flow[1, 2, 1] = np.nan
    valid = flow_valid_mask(flow)
    assert valid.tolist() == [[True, False, True], [True, True, False]]
