"""Frame pairs with ground-truth flow for the flow benchmark, training and tests.

A :class:`FlowPair` holds ``frame0``, ``frame1`` as ``(H, W, 3)`` uint8 RGB, the forward flow
``(H, W, 2)`` float32 in pixels (channel 0 = x) with ``frame0(x) ~ frame1(x + flow(x))``, and a
``valid`` ``(H, W)`` bool mask (occluded / unknown pixels False).

Sources:

* :func:`warped_texture_pair` -- an analytic smooth texture (sum of random sinusoids) observed
  through a known smooth flow: ``frame1 = T(x)``, ``frame0 = T(x + u(x))``, evaluated exactly (no
  interpolation), so the flow is exact wherever ``x + u`` stays inside the frame.
* :func:`stereo_motorcycle_pair` -- scikit-image's Middlebury 2014 stereo pair; left -> right
  flow is ``(-disparity, 0)``, infinite disparity (occlusion) is invalid.
* :func:`middlebury_pairs` -- a Middlebury-format optical-flow folder (``frame10.png``,
  ``frame11.png``, ``flow10.flo``).
* :func:`synthetic_benchmark_pairs` -- pairs of the built-in synthetic video benchmark
  (``repro.data.synth``), rendered at any size with exact flow.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

__all__ = [
    "FlowPair",
    "resize_pair",
    "warped_texture_pair",
    "warped_texture_pairs",
    "stereo_motorcycle_pair",
    "middlebury_pairs",
    "synthetic_benchmark_pairs",
    "UNKNOWN_FLOW_THRESH",
]

#: Middlebury's marker for unknown flow: components above 1e9 in magnitude.
UNKNOWN_FLOW_THRESH = 1e9


@dataclass
class FlowPair:
    name: str
    frame0: np.ndarray  # (H, W, 3) uint8 RGB
    frame1: np.ndarray
    flow: np.ndarray | None = None  # (H, W, 2) float32, pixels, forward
    valid: np.ndarray | None = None  # (H, W) bool
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.frame0.shape != self.frame1.shape or self.frame0.ndim not in (2, 3):
            raise ValueError(f"pair {self.name!r}: frames must be equal (H, W[, 3]) arrays, got "
                             f"{self.frame0.shape} and {self.frame1.shape}")
        if self.flow is not None:
            if self.flow.shape != self.frame0.shape[:2] + (2,):
                expected = self.frame0.shape[:2] + (2,)
                raise ValueError(f"pair {self.name!r}: flow must be {expected}, got {self.flow.shape}")
            if self.valid is None:
                known = np.all(np.abs(self.flow) < UNKNOWN_FLOW_THRESH, axis=-1)
                self.valid = np.all(np.isfinite(self.flow), axis=-1) & known

    @property
    def size(self) -> tuple[int, int]:
        return self.frame0.shape[0], self.frame0.shape[1]


def resize_pair(pair: FlowPair, size: tuple[int, int] | None) -> FlowPair:
    """Resize to ``(H, W)`` (area for frames; nearest for GT so invalid pixels never blend in;
    flow values rescaled per axis).  ``None`` or the same size returns the pair unchanged."""
    if size is None or tuple(size) == pair.size:
        return pair
    height, width = int(size[0]), int(size[1])
    src_h, src_w = pair.size
    interp = cv2.INTER_AREA if height * width < src_h * src_w else cv2.INTER_LINEAR
    frame0 = cv2.resize(pair.frame0, (width, height), interpolation=interp)
    frame1 = cv2.resize(pair.frame1, (width, height), interpolation=interp)
    flow = valid = None
    if pair.flow is not None:
        clean = np.where(pair.valid[..., None], pair.flow, 0).astype(np.float32)
        flow = cv2.resize(clean, (width, height), interpolation=cv2.INTER_NEAREST)
        flow = flow * np.array([width / src_w, height / src_h], np.float32)
        valid = cv2.resize(pair.valid.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    return FlowPair(f"{pair.name}@{height}x{width}", frame0, frame1, flow, valid, dict(pair.meta))


# ----------------------------------------------------------------------------------------------
# Exact synthetic pairs
# ----------------------------------------------------------------------------------------------


def _texture(rng: np.random.Generator, num_waves: int, min_period: float, max_period: float):
    periods = np.exp(rng.uniform(np.log(min_period), np.log(max_period), num_waves))
    angles = rng.uniform(0, np.pi, num_waves)
    freqs = (2 * np.pi / periods)[:, None] * np.stack([np.cos(angles), np.sin(angles)], 1)
    phases = rng.uniform(0, 2 * np.pi, num_waves)
    amps = rng.uniform(0.5, 1.0, num_waves) * (periods / max_period) ** 0.3
    colour = rng.uniform(0.3, 1.0, (num_waves, 3))

    def evaluate(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.zeros(x.shape + (3,), np.float64)
        for k in range(num_waves):
            wave = amps[k] * np.sin(freqs[k, 0] * x + freqs[k, 1] * y + phases[k])
            out += wave[..., None] * colour[k]
        return out

    return evaluate


def _smooth_flow(rng: np.random.Generator, height: int, width: int, max_flow: float) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    xn, yn = xs / width - 0.5, ys / height - 0.5
    flow = np.zeros((height, width, 2))
    flow += rng.uniform(-1, 1, 2)  # translation
    a = rng.uniform(-1, 1, (2, 2))  # affine part
    flow[..., 0] += a[0, 0] * xn + a[0, 1] * yn
    flow[..., 1] += a[1, 0] * xn + a[1, 1] * yn
    for _ in range(3):  # low-frequency bumps
        fx, fy = rng.uniform(0.5, 2.0, 2) * 2 * np.pi
        phase = rng.uniform(0, 2 * np.pi, 2)
        amp = rng.uniform(-0.7, 0.7, 2)
        flow[..., 0] += amp[0] * np.sin(fx * xn + phase[0]) * np.cos(fy * yn)
        flow[..., 1] += amp[1] * np.cos(fx * xn) * np.sin(fy * yn + phase[1])
    peak = np.abs(flow).max()
    return (flow * (max_flow / peak if peak > 0 else 0.0)).astype(np.float32)


def warped_texture_pair(height: int = 64, width: int = 80, *, seed: int = 0, max_flow: float = 2.0,
                        num_waves: int = 24, noise: float = 0.0) -> FlowPair:
    """A smooth random texture seen through a known smooth flow (max component ``max_flow`` px).

    ``frame1(x) = T(x)`` and ``frame0(x) = T(x + u(x))`` with ``T`` analytic, so
    ``frame0(x) = frame1(x + u(x))`` holds exactly (up to uint8 rounding and ``noise``, the std of
    added Gaussian noise in grey levels).  Pixels with ``x + u`` outside the frame are invalid.
    """
    rng = np.random.default_rng(seed)
    texture = _texture(rng, num_waves, min_period=6.0, max_period=max(height, width))
    flow = _smooth_flow(rng, height, width, max_flow)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    raw1 = texture(xs, ys)
    raw0 = texture(xs + flow[..., 0], ys + flow[..., 1])
    lo, hi = min(raw0.min(), raw1.min()), max(raw0.max(), raw1.max())

    def to_uint8(raw: np.ndarray) -> np.ndarray:
        img = 20 + 215 * (raw - lo) / (hi - lo)
        if noise > 0:
            img = img + rng.normal(0, noise, img.shape)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)

    tx, ty = xs + flow[..., 0], ys + flow[..., 1]
    valid = (tx >= 0) & (tx <= width - 1) & (ty >= 0) & (ty <= height - 1)
    return FlowPair(f"texture-s{seed}", to_uint8(raw0), to_uint8(raw1), flow, valid, {"source": "warped_texture"})


def warped_texture_pairs(count: int, height: int = 64, width: int = 80, *, seed: int = 0,
                         max_flow: float = 2.0, noise: float = 0.0) -> list[FlowPair]:
    return [warped_texture_pair(height, width, seed=seed + k, max_flow=max_flow, noise=noise) for k in range(count)]


# ----------------------------------------------------------------------------------------------
# Real pairs
# ----------------------------------------------------------------------------------------------


def stereo_motorcycle_pair(size: tuple[int, int] | None = None) -> FlowPair:
    """scikit-image's ``data.stereo_motorcycle()`` as a flow pair (left -> right).

    A left pixel at column ``x`` is seen in the right image at ``x - d`` (Middlebury disparity),
    so the forward flow is ``(-d, 0)``; ``inf``/NaN disparities are occlusions (invalid).
    """
    from skimage import data

    left, right, disparity = data.stereo_motorcycle()
    valid = np.isfinite(disparity)
    flow = np.zeros(disparity.shape + (2,), np.float32)
    flow[..., 0] = np.where(valid, -disparity, 0)
    pair = FlowPair("stereo_motorcycle", left, right, flow, valid, {"source": "skimage.data.stereo_motorcycle"})
    return resize_pair(pair, size)


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: cannot read as an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def middlebury_pairs(root: str | os.PathLike, size: tuple[int, int] | None = None) -> list[FlowPair]:
    """Every sequence of a Middlebury-format folder.

    Accepts either ``ROOT/<seq>/{frame10.png, frame11.png, flow10.flo}`` or the official split
    layout ``ROOT/other-data/<seq>/frame1[01].png`` + ``ROOT/other-gt-flow/<seq>/flow10.flo``
    (sequences without GT are returned with ``flow=None``).
    """
    from repro.data.flo import read_flo  # .flo IO lives with the data package

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--middlebury: {root} is not a folder")
    data_dir, gt_dir = root, root
    if (root / "other-data").is_dir():
        data_dir = root / "other-data"
        gt_dir = root / "other-gt-flow" if (root / "other-gt-flow").is_dir() else root / "other-data"
    pairs = []
    for seq in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        f0, f1 = seq / "frame10.png", seq / "frame11.png"
        if not (f0.is_file() and f1.is_file()):
            continue
        gt_path = gt_dir / seq.name / "flow10.flo"
        flow = read_flo(gt_path).astype(np.float32) if gt_path.is_file() else None
        pair = FlowPair(f"middlebury/{seq.name}", _read_rgb(f0), _read_rgb(f1), flow, None, {"source": str(seq)})
        pairs.append(resize_pair(pair, size))
    if not pairs:
        raise ValueError(f"--middlebury: no <seq>/frame10.png + frame11.png found under {root}")
    return pairs


def synthetic_benchmark_pairs(size: tuple[int, int] = (64, 64), count: int = 8, seed: int = 0,
                              classes: Sequence[str] | None = None) -> list[FlowPair]:
    """GT pairs from the built-in synthetic video benchmark (:mod:`repro.data.synth`), rendered in
    memory at ``size`` (exact flow at that size, nothing resampled).

    Clips are drawn round-robin over the motion classes (``classes`` to choose); each gives its
    first frame pair.  Pixels whose forward flow leaves the frame are invalid (the synthetic world
    wraps around, which no method can know); occluded pixels keep their GT (Sintel's "all").
    """
    from repro.data import synth

    names = list(classes) if classes is not None else [n for n, c in synth.CLASSES.items() if c.component == "motion"]
    if not names:
        raise ValueError("classes: empty")
    height, width = int(size[0]), int(size[1])
    ys, xs = np.mgrid[0:height, 0:width]
    pairs = []
    for k in range(count):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7919, k]))
        spec = synth.sample_clip_spec(names[k % len(names)], rng, height=height, width=width, num_frames=4)
        frames, flow_fwd, _, _ = synth.render_clip(spec, rng)
        flow = flow_fwd[1]  # the middle pair
        tx, ty = xs + flow[..., 0], ys + flow[..., 1]
        valid = (tx >= 0) & (tx <= width - 1) & (ty >= 0) & (ty <= height - 1)
        pairs.append(FlowPair(f"synth/{k:02d}-{spec.class_name}", frames[1], frames[2], flow.astype(np.float32),
                              valid, {"source": "repro.data.synth", "class": spec.class_name}))
    return pairs
