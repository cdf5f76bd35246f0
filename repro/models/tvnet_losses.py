"""TVNet's losses (Fan et al., CVPR 2018): end-point error (Eq. 14), the flow loss ``L_f`` (Eq. 1)
and the multi-task loss of end-to-end action recognition (Eq. 13)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from repro.ops.tvl1 import tvl1_energy

if TYPE_CHECKING:
    from repro.models.tvnet import TVNet

__all__ = ["epe", "epe_loss", "tvnet_flow_loss", "tvnet_multitask_loss"]

def epe(flow: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample average end-point error, Eq. (14); ``flow``/``target`` ``(N, 2, H, W)``,
    ``valid`` optional ``(N, H, W)`` bool mask -> ``(N,)``."""
    if flow.shape != target.shape or flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow/target: expected equal (N, 2, H, W) shapes, got {tuple(flow.shape)}, "
                         f"{tuple(target.shape)}")
    error = torch.sqrt(((flow - target) ** 2).sum(1) + 1e-20)  # tiny epsilon: finite gradient at 0
    if valid is None:
        return error.flatten(1).mean(1)
    weights = valid.to(error.dtype)
    return (error * weights).flatten(1).sum(1) / weights.flatten(1).sum(1).clamp_min(1)


def epe_loss(flow: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Supervised training loss of Sec. 5.1: the mean EPE over the batch."""
    return epe(flow, target, valid).mean()


def tvnet_flow_loss(model: "TVNet", flow: torch.Tensor, frame0: torch.Tensor, frame1: torch.Tensor) -> torch.Tensor:
    """``L_f``: Eq. (1) with exact warping, on the frames as the model sees them (grey, [0, 255])."""
    image0, image1 = model.preprocess(frame0, frame1)
    return tvl1_energy(flow, image0, image1, lam=model.lam, eps=model.eps)


def tvnet_multitask_loss(
    logits: torch.Tensor, labels: torch.Tensor, model: "TVNet", flow: torch.Tensor, clip: torch.Tensor,
    flow_weight: float = 0.1,
) -> torch.Tensor:
    """Eq. (13): ``L = L_c + lambda L_f`` with ``lambda = 0.1`` (Sec. 4.3; not TV-L1's lambda).

    ``flow (N, 2, T-1, H, W)`` from :meth:`TVNetActionNet.forward_with_flow` on ``clip``.
    """
    n, c, t, h, w = clip.shape
    first = clip[:, :, :-1].transpose(1, 2).reshape(-1, c, h, w)
    second = clip[:, :, 1:].transpose(1, 2).reshape(-1, c, h, w)
    pair_flow = flow.transpose(1, 2).reshape(-1, 2, h, w)
    return F.cross_entropy(logits, labels) + flow_weight * tvnet_flow_loss(model, pair_flow, first, second)
