"""Flow stored the two-stream way: each component as a greyscale JPEG, linearly quantised
within a bound (Simonyan & Zisserman 2014; TSN's ``dense_flow``; MMAction2's
``tools/misc/flow_extraction.py``).

``q = round(255 * (clip(f, -B, B) + B) / (2B))`` with bound ``B = 20`` px, written as
``x_00001.jpg`` / ``y_00001.jpg`` (1-based, the flow from frame ``k-1`` to ``k``);
:func:`dequantize_flow` inverts it up to the quantisation step ``2B/255`` (0.157 px for B = 20)
and the JPEG loss.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from repro.fileio import atomic_write

__all__ = ["DEFAULT_BOUND", "FLOW_TEMPLATE", "quantize_flow", "dequantize_flow", "write_flow_jpegs", "read_flow_jpegs"]

DEFAULT_BOUND = 20.0
FLOW_TEMPLATE = "{}_{:05d}.jpg"


def quantize_flow(flow: np.ndarray, bound: float = DEFAULT_BOUND) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W, 2)`` float flow -> ``(x, y)`` uint8 images."""
    if bound <= 0:
        raise ValueError(f"bound: expected > 0, got {bound}")
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow: expected (H, W, 2), got {flow.shape}")
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2 * bound))
    # MMAction2 truncates (astype(uint8)), TSN's dense_flow rounds (cvRound); rounding is unbiased.
    q = np.rint(scaled).astype(np.uint8)
    return q[..., 0], q[..., 1]


def dequantize_flow(x: np.ndarray, y: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """Inverse of :func:`quantize_flow`: ``(H, W, 2)`` float32 flow."""
    q = np.stack([np.asarray(x), np.asarray(y)], axis=-1).astype(np.float32)
    return q * (2 * bound / 255.0) - bound


def write_flow_jpegs(folder: str | os.PathLike, index: int, flow: np.ndarray, bound: float = DEFAULT_BOUND,
                     quality: int = 95) -> tuple[Path, Path]:
    """Write ``x_{index:05d}.jpg`` and ``y_{index:05d}.jpg`` into ``folder`` (atomically)."""
    folder = Path(folder)
    paths = []
    for axis, image in zip("xy", quantize_flow(flow, bound)):
        path = folder / FLOW_TEMPLATE.format(axis, index)
        with atomic_write(path) as tmp:
            if not cv2.imwrite(str(tmp), image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
                raise OSError(f"cannot write JPEG {path}")
        paths.append(path)
    return paths[0], paths[1]


def read_flow_jpegs(folder: str | os.PathLike, index: int, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """Read back the flow stored by :func:`write_flow_jpegs`."""
    images = []
    for axis in "xy":
        path = Path(folder) / FLOW_TEMPLATE.format(axis, index)
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise FileNotFoundError(f"flow image not found or unreadable: {path}")
        images.append(image)
    return dequantize_flow(images[0], images[1], bound)
