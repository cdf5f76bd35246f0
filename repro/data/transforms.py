"""Spatial transforms on video tensors, applied consistently to optical flow.

Layout: a video is ``(C, T, H, W)`` (uint8 or float); a flow is ``(2, T, H, W)`` float with
channel 0 = ``u`` (x, rightwards) and channel 1 = ``v`` (y, downwards), in pixels.  Geometric
functions take ``is_flow=True`` for flow, which also transforms the *displacements*: resizing
multiplies ``u`` by ``W'/W`` and ``v`` by ``H'/H``; a horizontal flip negates ``u``.

Random transforms draw their parameters from a ``torch.Generator`` once, as a box, and the same
box is applied to the video and to its flows, so they stay aligned.

Augmentations from the papers:

* :func:`multi_scale_crop_box` -- TSN's multi-scale crop (Wang et al. ECCV'16, Sec. 3.3; used by
  Disentangling Dynamics and TVNet "corner cropping and scale jittering"): crop width and height
  each from ``base * {1, .875, .75, .66}`` (differing by at most ``max_distort`` steps), at one of
  the fixed corner/centre positions, then resized to ``size``.
* :func:`scale_jitter_size` -- resize the short side to a random length in a range, then random
  crop (VGG/I3D-style scale jittering).
* random crop of a resized clip (LGD: 112x112 out of 120x160; Sec. 4.2) and random horizontal flip.
* Testing views: :func:`ten_crop_boxes` (4 corners + centre and their flips; TrajectoryNet Sec. 4.2,
  TVNet Sec. 5.2) and :func:`three_crop_boxes` (3 squares along the longer side).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CropBox",
    "to_video_tensor",
    "resize",
    "resize_short_side",
    "short_side_size",
    "crop",
    "hflip",
    "apply_box",
    "center_crop_box",
    "random_crop_box",
    "multi_scale_crop_box",
    "scale_jitter_size",
    "ten_crop_boxes",
    "three_crop_boxes",
    "normalize",
    "ClipTransform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class CropBox:
    """A crop ``[top, top + height) x [left, left + width)``, then optional resize and flip."""

    top: int
    left: int
    height: int
    width: int
    out_size: tuple[int, int] | None = None  # (h, w) to resize the crop to; None keeps it
    flip: bool = False


def to_video_tensor(frames) -> torch.Tensor:
    """uint8 numpy/tensor (T, H, W, C) -> (C, T, H, W) tensor (no copy of values' dtype)."""
    t = torch.as_tensor(frames)
    if t.ndim != 4:
        raise ValueError(f"frames must be (T, H, W, C), got shape {tuple(t.shape)}")
    return t.permute(3, 0, 1, 2).contiguous()


def _check_video(x: torch.Tensor, name: str = "video") -> None:
    if x.ndim != 4:
        raise ValueError(f"{name} must be (C, T, H, W), got shape {tuple(x.shape)}")


def resize(x: torch.Tensor, size: tuple[int, int], *, is_flow: bool = False) -> torch.Tensor:
    """Bilinear resize of (C, T, H, W) to ``size = (h, w)`` (antialiased when shrinking)."""
    _check_video(x)
    h, w = int(size[0]), int(size[1])
    H, W = x.shape[-2:]
    if (h, w) == (H, W):
        return x
    frames = x.permute(1, 0, 2, 3).float()  # (T, C, H, W)
    out = F.interpolate(frames, size=(h, w), mode="bilinear", align_corners=False, antialias=h < H or w < W)
    out = out.permute(1, 0, 2, 3)
    if is_flow:
        out = out * torch.tensor([w / W, h / H], dtype=out.dtype).view(2, 1, 1, 1)
    if x.dtype == torch.uint8:
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    else:
        out = out.to(x.dtype)
    return out.contiguous()


def short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """(h, w) with the shorter side ``short`` and the aspect ratio kept."""
    if height <= width:
        return short, max(1, int(round(width * short / height)))
    return max(1, int(round(height * short / width))), short


def resize_short_side(x: torch.Tensor, short: int, *, is_flow: bool = False) -> torch.Tensor:
    return resize(x, short_side_size(x.shape[-2], x.shape[-1], short), is_flow=is_flow)


def crop(x: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    _check_video(x)
    H, W = x.shape[-2:]
    if top < 0 or left < 0 or top + height > H or left + width > W or height < 1 or width < 1:
        raise ValueError(f"crop box top={top} left={left} {height}x{width} does not fit a {H}x{W} frame")
    return x[..., top : top + height, left : left + width]


def hflip(x: torch.Tensor, *, is_flow: bool = False) -> torch.Tensor:
    out = x.flip(-1)
    if is_flow:
        out = out.clone()
        out[0] = -out[0]  # u points the other way in a mirrored frame
    return out


def apply_box(x: torch.Tensor, box: CropBox, *, is_flow: bool = False) -> torch.Tensor:
    """Crop, resize and flip ``x`` as ``box`` says."""
    out = crop(x, box.top, box.left, box.height, box.width)
    if box.out_size is not None:
        out = resize(out, box.out_size, is_flow=is_flow)
    if box.flip:
        out = hflip(out, is_flow=is_flow)
    return out


def center_crop_box(height: int, width: int, size: int) -> CropBox:
    if size > height or size > width:
        raise ValueError(f"crop size {size} larger than the {height}x{width} frame")
    return CropBox((height - size) // 2, (width - size) // 2, size, size)


def random_crop_box(height: int, width: int, size: int, generator: torch.Generator | None = None) -> CropBox:
    if size > height or size > width:
        raise ValueError(f"crop size {size} larger than the {height}x{width} frame")
    top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
    return CropBox(top, left, size, size)


def _fixed_offsets(height: int, width: int, ch: int, cw: int, more: bool) -> list[tuple[int, int]]:
    """TSN's fixed crop positions: 4 corners + centre (+ 8 more with ``more``)."""
    sh, sw = (height - ch) // 4, (width - cw) // 4
    offsets = [(0, 0), (0, 4 * sw), (4 * sh, 0), (4 * sh, 4 * sw), (2 * sh, 2 * sw)]
    if more:
        offsets += [(2 * sh, 0), (2 * sh, 4 * sw), (4 * sh, 2 * sw), (0, 2 * sw),
                    (sh, sw), (sh, 3 * sw), (3 * sh, sw), (3 * sh, 3 * sw)]  # fmt: skip
    return offsets


def multi_scale_crop_box(
    height: int,
    width: int,
    size: int | tuple[int, int],
    scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66),
    max_distort: int = 1,
    fix_crop: bool = True,
    more_fix_crop: bool = True,
    generator: torch.Generator | None = None,
) -> CropBox:
    """TSN multi-scale crop: a crop of ``(base*s_i, base*s_j)``, ``|i - j| <= max_distort``,
    ``base = min(H, W)``, at a fixed position (or anywhere if not ``fix_crop``), resized to ``size``."""
    out = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    base = min(height, width)
    sizes = [max(1, int(base * s)) for s in scales]
    pairs = [(sizes[i], sizes[j]) for i in range(len(sizes)) for j in range(len(sizes)) if abs(i - j) <= max_distort]
    ch, cw = pairs[int(torch.randint(0, len(pairs), (1,), generator=generator))]
    if fix_crop:
        offsets = _fixed_offsets(height, width, ch, cw, more_fix_crop)
        top, left = offsets[int(torch.randint(0, len(offsets), (1,), generator=generator))]
    else:
        top = int(torch.randint(0, height - ch + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - cw + 1, (1,), generator=generator))
    return CropBox(top, left, ch, cw, out_size=out)


def scale_jitter_size(height: int, width: int, short_range: tuple[int, int], generator: torch.Generator | None = None) -> tuple[int, int]:
    """(h, w) with the short side uniform in ``short_range`` (inclusive), aspect ratio kept."""
    lo, hi = int(short_range[0]), int(short_range[1])
    if lo > hi or lo < 1:
        raise ValueError(f"short_range must be (lo, hi) with 1 <= lo <= hi, got {short_range}")
    short = int(torch.randint(lo, hi + 1, (1,), generator=generator))
    return short_side_size(height, width, short)


def ten_crop_boxes(height: int, width: int, size: int) -> list[CropBox]:
    """4 corners + centre, then the same 5 flipped (10 views)."""
    if size > height or size > width:
        raise ValueError(f"crop size {size} larger than the {height}x{width} frame")
    b, r = height - size, width - size
    five = [(0, 0), (0, r), (b, 0), (b, r), (b // 2, r // 2)]
    return [CropBox(t, l, size, size, flip=f) for f in (False, True) for t, l in five]


def three_crop_boxes(height: int, width: int, size: int) -> list[CropBox]:
    """Three ``size`` squares along the longer side (start, centre, end); the short side must be
    ``size`` (resize first) or is centre-cropped."""
    if size > height or size > width:
        raise ValueError(f"crop size {size} larger than the {height}x{width} frame")
    if width >= height:
        top = (height - size) // 2
        return [CropBox(top, left, size, size) for left in (0, (width - size) // 2, width - size)]
    left = (width - size) // 2
    return [CropBox(top, left, size, size) for top in (0, (height - size) // 2, height - size)]


def normalize(x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """uint8/float in [0, 255] (C, ...) -> float32 ``(x / 255 - mean) / std`` per channel."""
    x = x.float() / 255.0
    shape = (-1,) + (1,) * (x.ndim - 1)
    m = torch.as_tensor(mean, dtype=x.dtype).view(shape)
    s = torch.as_tensor(std, dtype=x.dtype).view(shape)
    return (x - m) / s


@dataclass(frozen=True)
class ClipTransform:
    """The spatial pipeline of a dataset: uint8 (C, T, H, W) -> float (C, T, size, size).

    ``augment`` (training only):

    * ``"multiscale"``: (resize short side to ``resize`` if given) -> TSN multi-scale crop -> ``size``
    * ``"jitter"``: short side uniform in ``jitter_range`` -> random ``size`` crop
    * ``"crop"``: short side ``resize`` -> random ``size`` crop
    * ``"none"``: short side ``resize`` -> centre crop
    each followed by a random horizontal flip when ``flip``.

    Testing: short side ``resize`` -> ``crops`` views (1 centre, 3, or 10).
    ``resize`` defaults to ``round(size * 8 / 7)`` (256 for 224, 128 for 112, 64 for 56).
    ``normalize=False`` returns floats in [0, 255] (for flow estimators such as TV-L1/TVNet).
    """

    size: int
    train: bool
    augment: str = "multiscale"
    resize: int | None = None
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    jitter_range: tuple[int, int] | None = None
    flip: bool = True
    crops: int = 1
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.augment not in ("multiscale", "jitter", "crop", "none"):
            raise ValueError(f"augment must be 'multiscale', 'jitter', 'crop' or 'none', got {self.augment!r}")
        if self.crops not in (1, 3, 10):
            raise ValueError(f"crops (spatial test views) must be 1, 3 or 10, got {self.crops}")
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")

    @property
    def resize_to(self) -> int:
        return self.resize if self.resize is not None else int(round(self.size * 8 / 7))

    def boxes(self, height: int, width: int, generator: torch.Generator | None = None) -> tuple[tuple[int, int] | None, list[CropBox]]:
        """(size to resize the whole clip to first, or None) and the crop boxes (1 when training)."""
        if not self.train:
            pre = short_side_size(height, width, self.resize_to)
            if self.crops == 10:
                return pre, ten_crop_boxes(*pre, self.size)
            if self.crops == 3:
                return pre, three_crop_boxes(*pre, self.size)
            return pre, [center_crop_box(*pre, self.size)]
        if self.augment == "multiscale":
            pre = short_side_size(height, width, self.resize) if self.resize is not None else None
            h, w = pre or (height, width)
            box = multi_scale_crop_box(h, w, self.size, self.scales, generator=generator)
        elif self.augment == "jitter":
            rng = self.jitter_range or (self.resize_to, int(round(self.resize_to * 1.25)))
            pre = scale_jitter_size(height, width, rng, generator=generator)
            box = random_crop_box(*pre, self.size, generator=generator)
        elif self.augment == "crop":
            pre = short_side_size(height, width, self.resize_to)
            box = random_crop_box(*pre, self.size, generator=generator)
        else:
            pre = short_side_size(height, width, self.resize_to)
            box = center_crop_box(*pre, self.size)
        if self.flip and bool(torch.rand((), generator=generator) < 0.5):
            box = CropBox(box.top, box.left, box.height, box.width, box.out_size, flip=True)
        return pre, [box]

    def __call__(
        self,
        video: torch.Tensor,
        flows: dict[str, torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[list[torch.Tensor], dict[str, list[torch.Tensor]]]:
        """Apply to ``video`` (C, T, H, W) and each flow (2, T, H, W); returns one tensor per view."""
        _check_video(video)
        flows = flows or {}
        pre, boxes = self.boxes(video.shape[-2], video.shape[-1], generator)
        if pre is not None:
            video = resize(video, pre)
            flows = {k: resize(f, pre, is_flow=True) for k, f in flows.items()}
        views = [apply_box(video, b) for b in boxes]
        views = [normalize(v, self.mean, self.std) if self.normalize else v.float() for v in views]
        flow_views = {k: [apply_box(f, b, is_flow=True).float() for b in boxes] for k, f in flows.items()}
        return views, flow_views
