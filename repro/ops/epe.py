"""End-point error: the Euclidean distance between two flow fields, pixel by pixel.

TVNet Eq. (14) (and every optical-flow benchmark since Middlebury): ``EPE = ||u - u_gt||_2`` at
each pixel, averaged over the pixels with known ground truth by whoever reports it.  The one
copy used by the engine's EPE meter (:mod:`repro.engine.metrics`), the flow benchmark
(:mod:`repro.flow.bench`, :func:`repro.flow.train.endpoint_error`) and TVNet's supervised loss.
"""
from __future__ import annotations

import torch

__all__ = ["end_point_error"]


def end_point_error(pred: torch.Tensor, gt: torch.Tensor, *, dim: int = 1, eps: float = 0.0) -> torch.Tensor:
    """Per-pixel ``sqrt(sum_c (pred_c - gt_c)^2 + eps)`` over the flow channel ``dim`` (size 2).

    ``pred``, ``gt``: equal shapes, e.g. ``(B, 2, H, W)`` or ``(B, 2, T, H, W)`` (``dim=1``) or
    ``(H, W, 2)`` (``dim=-1``) -> the shape without ``dim``.  Computed in float32, or float64 if an
    input is float64.  ``eps > 0`` keeps the gradient finite where the error is 0 (a training loss).
    """
    if pred.shape != gt.shape or pred.dim() == 0 or pred.shape[dim] != 2:
        raise ValueError(f"flow: expected equal shapes with 2 channels in dim {dim}, got {tuple(pred.shape)} "
                         f"and {tuple(gt.shape)}")
    dtype = torch.promote_types(torch.promote_types(pred.dtype, gt.dtype), torch.float32)
    squared = (pred.to(dtype) - gt.to(dtype)).pow(2).sum(dim=dim)
    return (squared + eps).sqrt() if eps else squared.sqrt()
