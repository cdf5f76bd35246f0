"""Bilinear sampling and warping with optical flow given in *pixels*.

Conventions used across ``repro`` (shared by the trajectory convolution and MotionNet):

* A flow / displacement field has shape ``(B, 2, H, W)``; channel 0 is the horizontal
  displacement (x, along width), channel 1 the vertical one (y, along height), both in pixels
  of the tensor it is applied to.
* A *position* field has shape ``(B, H_out, W_out, 2)`` holding absolute pixel coordinates
  ``(x, y)``; pixel ``(h, w)`` has its centre at ``x = w, y = h``.
* Sampling is bilinear with **zeros outside** the image: each of the four neighbours that falls
  outside ``[0, W-1] x [0, H-1]`` contributes zero (exactly what ``grid_sample`` does with
  ``padding_mode="zeros"``).

Everything goes through 4-D :func:`torch.nn.functional.grid_sample` with ``align_corners=False``
and the pixel -> normalised map ``g = (2 x + 1) / W - 1`` (its exact inverse inside
``grid_sample`` is ``x = ((g + 1) W - 1) / 2``).  That map is well defined for ``W == 1`` too,
unlike the ``align_corners=True`` one, and 4-D GridSample exports to ONNX (opset >= 16) and runs in
TensorRT (5-D does not; see /work/shared/REFERENCES.md).

:func:`bilinear_sample_reference` is the obviously-correct explicit formula used by the tests
and by the loop references of the ops.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "pixel_grid",
    "pixels_to_normalized",
    "sample_at",
    "warp_backward",
    "bilinear_sample_reference",
]


def pixel_grid(height: int, width: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Absolute pixel coordinates ``(1, H, W, 2)`` with ``[..., 0] = x = w`` and ``[..., 1] = y = h``."""
    ys = torch.arange(height, device=device, dtype=dtype)
    xs = torch.arange(width, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y), dim=-1).unsqueeze(0)


def pixels_to_normalized(positions: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Map pixel positions ``(..., 2)`` (x, y) to ``grid_sample``'s ``align_corners=False`` range."""
    scale = positions.new_tensor([2.0 / width, 2.0 / height])
    offset = positions.new_tensor([1.0 / width - 1.0, 1.0 / height - 1.0])
    return positions * scale + offset


def sample_at(image: torch.Tensor, positions: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """Bilinearly sample ``image (B, C, H, W)`` at pixel ``positions (B, H_out, W_out, 2)``.

    Returns ``(B, C, H_out, W_out)``.  Differentiable w.r.t. both arguments.
    """
    if image.dim() != 4:
        raise ValueError(f"image: expected a 4-D (B, C, H, W) tensor, got shape {tuple(image.shape)}")
    if positions.dim() != 4 or positions.shape[-1] != 2 or positions.shape[0] != image.shape[0]:
        raise ValueError(
            f"positions: expected (B={image.shape[0]}, H_out, W_out, 2) pixel coordinates, "
            f"got shape {tuple(positions.shape)}"
        )
    height, width = image.shape[-2:]
    grid = pixels_to_normalized(positions, height, width)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def warp_backward(image: torch.Tensor, flow: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """Backward warping: ``out(p) = image(p + flow(p))``.

    With ``image = I_{t+1}`` and ``flow`` the forward flow ``t -> t+1`` this reconstructs ``I_t``
    (the photometric term of MotionNet's unsupervised loss).  ``image (B, C, H, W)``,
    ``flow (B, 2, H, W)`` in pixels (channel 0 = x).
    """
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow: expected (B, 2, H, W) in pixels, got shape {tuple(flow.shape)}")
    if flow.shape[0] != image.shape[0] or flow.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"flow {tuple(flow.shape)} and image {tuple(image.shape)} must share batch and spatial size"
        )
    height, width = image.shape[-2:]
    positions = pixel_grid(height, width, device=flow.device, dtype=flow.dtype) + flow.permute(0, 2, 3, 1)
    return sample_at(image, positions, padding_mode=padding_mode)


def bilinear_sample_reference(image: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Explicit bilinear interpolation (TrajectoryNet Eq. 3 with the bilinear kernel G).

    ``image (C, H, W)``; ``x``, ``y`` tensors of the same shape ``S`` with pixel coordinates.
    Returns ``(C, *S)``: ``sum_{corners q} G(q, p) image(q)`` with
    ``G(q, p) = max(0, 1 - |q_x - p_x|) * max(0, 1 - |q_y - p_y|)`` restricted to the four
    neighbours, corners outside the image contributing zero.  Differentiable w.r.t. ``image``,
    ``x`` and ``y`` (piecewise).
    """
    channels, height, width = image.shape
    x0 = torch.floor(x).detach()
    y0 = torch.floor(y).detach()
    fx = x - x0
    fy = y - y0
    out = image.new_zeros((channels,) + tuple(x.shape))
    for dx, wx in ((0, 1 - fx), (1, fx)):
        for dy, wy in ((0, 1 - fy), (1, fy)):
            xi = (x0 + dx).long()
            yi = (y0 + dy).long()
            inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            values = image[:, yi.clamp(0, height - 1), xi.clamp(0, width - 1)]
            out = out + values * (wx * wy * inside.to(image.dtype))
    return out
