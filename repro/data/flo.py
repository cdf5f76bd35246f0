"""Middlebury ``.flo`` optical-flow files.

Format (Baker et al., "A Database and Evaluation Methodology for Optical Flow", IJCV 2011, and the
``README`` of the Middlebury flow page): little-endian

* float32 magic ``202021.25`` (the bytes spell ``PIEH``),
* int32 width, int32 height,
* ``height * width * 2`` float32 values, row-major, interleaved ``(u, v)`` per pixel, where ``u``
  is the horizontal (x, rightwards) and ``v`` the vertical (y, downwards) displacement in pixels.

Middlebury marks unknown flow with values above ``1e9`` (:data:`UNKNOWN_FLOW_THRESHOLD`);
:func:`flow_valid_mask` turns that into a boolean mask.

    >>> write_flo("flow10.flo", flow)          # flow: (H, W, 2) float
    >>> read_flo("flow10.flo").shape
    (H, W, 2)
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from repro.fileio import atomic_write_bytes

__all__ = ["FLO_MAGIC", "UNKNOWN_FLOW_THRESHOLD", "FloError", "read_flo", "write_flo", "encode_flo", "flow_valid_mask"]

FLO_MAGIC = 202021.25
UNKNOWN_FLOW_THRESHOLD = 1e9
_HEADER_BYTES = 12
_MAX_SIDE = 1 << 16  # sanity bound on width/height read from a header


class FloError(ValueError):
    """A ``.flo`` file is malformed; the message names the file and what was wrong."""


def encode_flo(flow: np.ndarray) -> bytes:
    """The bytes of a ``.flo`` file holding ``flow`` of shape (H, W, 2)."""
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must have shape (H, W, 2), got {tuple(flow.shape)}")
    if not np.issubdtype(flow.dtype, np.floating):
        raise ValueError(f"flow must be a floating-point array, got dtype {flow.dtype}")
    h, w = flow.shape[:2]
    header = np.array([FLO_MAGIC], "<f4").tobytes() + np.array([w, h], "<i4").tobytes()
    return header + np.ascontiguousarray(flow, dtype="<f4").tobytes()


def write_flo(path: str | os.PathLike, flow: np.ndarray) -> None:
    """Write ``flow`` (H, W, 2) to ``path`` in Middlebury format, atomically."""
    try:
        data = encode_flo(flow)
    except ValueError as err:
        raise ValueError(f"cannot write {path}: {err}") from None
    atomic_write_bytes(path, data)


def read_flo(path: str | os.PathLike) -> np.ndarray:
    """Read a Middlebury ``.flo`` file into a float32 array of shape (H, W, 2) (u, v)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"flow file not found: {path}") from None
    if len(raw) < _HEADER_BYTES:
        raise FloError(f"{path}: file too short for a .flo header ({len(raw)} bytes, need {_HEADER_BYTES})")
    magic = float(np.frombuffer(raw, "<f4", count=1)[0])
    if magic != FLO_MAGIC:
        raise FloError(f"{path}: bad magic {magic!r}, expected {FLO_MAGIC} (not a Middlebury .flo file)")
    w, h = (int(v) for v in np.frombuffer(raw, "<i4", count=2, offset=4))
    if not (0 < w < _MAX_SIDE and 0 < h < _MAX_SIDE):
        raise FloError(f"{path}: implausible size width={w} height={h} in header")
    expected = _HEADER_BYTES + 4 * 2 * w * h
    if len(raw) != expected:
        raise FloError(f"{path}: size {len(raw)} bytes does not match header {w}x{h} (expected {expected} bytes)")
    return np.frombuffer(raw, "<f4", offset=_HEADER_BYTES).reshape(h, w, 2).astype(np.float32)


def flow_valid_mask(flow: np.ndarray) -> np.ndarray:
    """Boolean (H, W) mask of pixels with known flow (Middlebury marks unknown with > 1e9)."""
    flow = np.asarray(flow)
    return np.all(np.isfinite(flow), axis=-1) & np.all(np.abs(flow) < UNKNOWN_FLOW_THRESHOLD, axis=-1)
