"""Local and Global Diffusion (LGD) block of Qiu et al., "Learning Spatio-Temporal Representation
with Local and Global Diffusion", CVPR 2019, §3.1 (Eq. 1-3), §5.3 (Eq. 8-9, Table 2).

A block maps the pair {x_{l-1}, g_{l-1}} to {x_l, g_l} (Eq. 1)::

    x_l = ReLU( F(x_{l-1}) + US(W^{x,g} g_{l-1}) )          global -> local   (Eq. 2)
    g_l = ReLU( W^{g,x} P(x_l) + W^{g,g} g_{l-1} )           local -> global   (Eq. 3)

F is the residual unit **including its shortcut** (the global residual is added after the
identity, before the unit's final ReLU), US broadcasts a vector to every position, P is global
average pooling of the **updated** map x_l.  Ablations of Table 2:

* ``variant="v1"`` (Eq. 8): ``g_l = P(x_l)``; Eq. 2 unchanged (still reads g_{l-1}).
* ``variant="v2"`` (Eq. 9): ``x_l = ReLU(F(x_{l-1}) ⊙ US(sigmoid(W^{x,g} g_{l-1})))``; Eq. 3 unchanged.

Low rank (§3.1): every projection is ``W = W_1 W_2`` with ``W_2 ∈ R^{Ĉ×C_in}`` (``reduce``),
``W_1 ∈ R^{C×Ĉ}`` (``expand``), ``Ĉ = C/16`` with C the block's output channels, no bias and no
nonlinearity in between.  Paper form (all of W^{x,g}, W^{g,x}, W^{g,g} square, C_in = C):
3 · 2 · C · C/16 = 3C²/8 extra weights per block.  At a stage transition g_{l-1} has C_{l-1} ≠ C
channels, so the two projections that read g_{l-1} (W^{x,g} in Eq. 2 and W^{g,g} in Eq. 3) are
C×C_{l-1}: ``(C_{l-1} + C)·Ĉ`` weights each (:func:`lgd_extra_params`).

LGD-2D (§4.1): frames of a video are folded into the batch (``segments`` S consecutive maps per
video, video-major), but g is **per video**: P averages over all S frames and positions, and US
broadcasts a video's vector to all its frames.

This module is backbone-independent: :class:`LGDDiffusion` takes the pre-activation output
F(x_{l-1}) of any residual unit; :class:`LGDResidual` wraps a unit whose final ReLU is the
attribute ``act_attr`` (timm/harness bottlenecks: ``act3``; basic blocks: ``act2``).
:func:`global_pool` gives the initial g_1 = P(x_1) of the stem output (§4.1).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "VARIANTS",
    "reduced_channels",
    "lgd_extra_params",
    "lgd_network_extra_params",
    "global_pool",
    "LowRankLinear",
    "LGDDiffusion",
    "LGDResidual",
    "lgd_diffusion_reference",
]

Variant = Literal["full", "v1", "v2"]
VARIANTS: tuple[str, ...] = ("full", "v1", "v2")
REDUCTION = 16  # Ĉ = C/16 (§3.1, "through cross-validation")


def reduced_channels(channels: int, reduction: int = REDUCTION) -> int:
    """Ĉ = C // reduction.  For width-cut mini backbones with C < reduction we keep Ĉ = 1."""
    return max(1, int(channels) // int(reduction))


def lgd_extra_params(
    channels: int, global_in_channels: int | None = None, *, reduction: int = REDUCTION, variant: str = "full"
) -> int:
    """Weights one block adds: ``(C_in + C)·Ĉ`` per projection reading g_{l-1}, ``2C·Ĉ`` for W^{g,x}.

    ``global_in_channels=None`` is the paper form (C_in = C): 3C²/8 (full, v2) or C²/8 (v1).
    """
    _check_variant(variant)
    c, c_in = int(channels), int(channels if global_in_channels is None else global_in_channels)
    rank = reduced_channels(c, reduction)
    w_xg = (c_in + c) * rank
    if variant == "v1":  # Eq. 8: only W^{x,g}
        return w_xg
    return w_xg + 2 * c * rank + (c_in + c) * rank  # + W^{g,x} + W^{g,g}


def lgd_network_extra_params(
    channels: Sequence[int], stem_channels: int | None = None, *, reduction: int = REDUCTION, variant: str = "full"
) -> int:
    """Sum of :func:`lgd_extra_params` over a network's blocks (output channels in order).

    ``stem_channels=None``: paper form, every block as if C_in = C (ResNet-50: 7,544,832).  With
    ``stem_channels``, g_{l-1} has the previous block's channels (the stem's for the first block):
    ResNet-50 7,194,624 (= the authors' later code, 7,242,768, without its 48,144 biases).
    """
    total, previous = 0, stem_channels
    for c in channels:
        total += lgd_extra_params(c, None if stem_channels is None else previous, reduction=reduction, variant=variant)
        previous = c
    return total


def global_pool(x: torch.Tensor, segments: int = 1) -> torch.Tensor:
    """P per video: ``(N·S, C, *spatial) -> (N, C)``, the mean over all S frames and positions."""
    if x.dim() < 3 or segments < 1 or x.shape[0] % segments:
        raise ValueError(
            f"global_pool: expected (N·S, C, ...) with N·S divisible by segments={segments}, got {tuple(x.shape)}"
        )
    return x.unflatten(0, (-1, segments)).flatten(3).mean(dim=(1, 3))  # (N, S, C, P) -> (N, C)


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"LGD variant: expected one of {VARIANTS}, got {variant!r}")


class LowRankLinear(nn.Module):
    """``y = W_1 W_2 g`` without bias: ``(..., C_in) -> (..., C)`` through rank Ĉ (§3.1)."""

    def __init__(self, in_features: int, out_features: int, rank: int) -> None:
        super().__init__()
        self.reduce = nn.Linear(in_features, rank, bias=False)  # W_2: (Ĉ, C_in)
        self.expand = nn.Linear(rank, out_features, bias=False)  # W_1: (C, Ĉ)

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        return self.expand(self.reduce(g))

    def matrix(self) -> torch.Tensor:
        """The full-rank product ``W = W_1 W_2``: ``(C, C_in)``."""
        return self.expand.weight @ self.reduce.weight


class LGDDiffusion(nn.Module):
    """Eq. 2-3 around a residual unit's pre-activation output: ``(F(x_{l-1}), g_{l-1}) -> (x_l, g_l)``.

    ``zero_init_g2l=True`` (§5.2, ImageNet initialisation) zeroes W_1 of W^{x,g}, so Eq. 2 adds
    exactly nothing at the start; W_2 keeps its Xavier init so W_1 still receives gradients.
    """

    def __init__(
        self,
        channels: int,
        global_in_channels: int | None = None,
        *,
        reduction: int = REDUCTION,
        variant: str = "full",
        zero_init_g2l: bool = False,
    ) -> None:
        super().__init__()
        _check_variant(variant)
        self.channels = int(channels)
        self.global_in_channels = int(channels if global_in_channels is None else global_in_channels)
        self.variant, self.zero_init_g2l = variant, bool(zero_init_g2l)
        rank = reduced_channels(self.channels, reduction)
        self.w_xg = LowRankLinear(self.global_in_channels, self.channels, rank)  # W^{x,g}, Eq. 2 / 9
        if variant != "v1":  # Eq. 8 has no W^{g,x}, W^{g,g}
            self.w_gx = LowRankLinear(self.channels, self.channels, rank)  # W^{g,x}, Eq. 3
            self.w_gg = LowRankLinear(self.global_in_channels, self.channels, rank)  # W^{g,g}, Eq. 3
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # §5.2 from scratch: Xavier for the projection matrices (here: for each low-rank factor).
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
        if self.zero_init_g2l:
            # §5.2 ImageNet init: W^{x,g} = 0.  For v2 this gives sigmoid(0) = 0.5, a constant gate,
            # not the identity (the paper defines the zero init for the LGD block only).
            nn.init.zeros_(self.w_xg.expand.weight)

    def _check(self, local: torch.Tensor, g: torch.Tensor, segments: int) -> None:
        name = type(self).__name__
        if local.dim() not in (4, 5) or local.shape[1] != self.channels:
            raise ValueError(f"{name}: local map expected (N·S, {self.channels}, [T,] H, W), got {tuple(local.shape)}")
        if g.dim() != 2 or g.shape[1] != self.global_in_channels:
            raise ValueError(f"{name}: global vector expected (N, {self.global_in_channels}), got {tuple(g.shape)}")
        if segments < 1 or local.shape[0] != g.shape[0] * segments:
            raise ValueError(
                f"{name}: local map has {local.shape[0]} maps, expected N·segments = {g.shape[0]}·{segments}"
            )

    def global_to_local(self, local: torch.Tensor, g: torch.Tensor, segments: int = 1) -> torch.Tensor:
        """Eq. 2 (Eq. 9 for v2): ``(N·S, C, *sp), (N, C_in) -> (N·S, C, *sp)``."""
        n, c = g.shape[0], self.channels
        frames = local.reshape(n, segments, c, -1)  # (N, S, C, P)
        residual = self.w_xg(g).view(n, 1, c, 1)  # US: one vector per video, to all S frames and P positions
        if self.variant == "v2":
            mixed = frames * torch.sigmoid(residual)
        else:
            mixed = frames + residual
        return F.relu(mixed).reshape(local.shape)

    def local_to_global(self, x: torch.Tensor, g: torch.Tensor, segments: int = 1) -> torch.Tensor:
        """Eq. 3 (Eq. 8 for v1) on the **updated** map: ``(N·S, C, *sp), (N, C_in) -> (N, C)``."""
        pooled = global_pool(x, segments)  # (N, C), per video
        if self.variant == "v1":
            return pooled
        return F.relu(self.w_gx(pooled) + self.w_gg(g))

    def forward(self, local: torch.Tensor, g: torch.Tensor, segments: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(local, g, segments)
        x = self.global_to_local(local, g, segments)
        return x, self.local_to_global(x, g, segments)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, global_in_channels={self.global_in_channels}, "
                f"variant={self.variant!r}, zero_init_g2l={self.zero_init_g2l}")


class LGDResidual(nn.Module):
    """A residual unit turned into an LGD block: ``(x_{l-1}, g_{l-1}) -> (x_l, g_l)``.

    The unit's final activation ``act_attr`` (a ReLU) is replaced by ``nn.Identity`` **in place**
    so the unit returns F(x_{l-1}) (residual + shortcut); :class:`LGDDiffusion` applies the ReLU
    after adding the global residual.  Extra keyword arguments of ``forward`` go to the unit.
    """

    def __init__(self, unit: nn.Module, channels: int, global_in_channels: int | None = None,
                 *, act_attr: str = "act3", **diffusion_kwargs: Any) -> None:
        super().__init__()
        act = getattr(unit, act_attr, None)
        if not isinstance(act, nn.ReLU):
            raise ValueError(
                f"LGDResidual: {type(unit).__name__}.{act_attr} expected the unit's final nn.ReLU, "
                f"got {type(act).__name__}"
            )
        setattr(unit, act_attr, nn.Identity())
        self.unit = unit
        self.diffusion = LGDDiffusion(channels, global_in_channels, **diffusion_kwargs)

    def forward(
        self, x: torch.Tensor, g: torch.Tensor, segments: int = 1, **unit_kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.diffusion(self.unit(x, **unit_kwargs), g, segments)


def lgd_diffusion_reference(
    local: torch.Tensor,
    g: torch.Tensor,
    w_xg: torch.Tensor,
    w_gx: torch.Tensor | None,
    w_gg: torch.Tensor | None,
    segments: int = 1,
    variant: str = "full",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 2-3 / 8 / 9 with dense matrices (``W^{x,g}: (C, C_in)`` ...), one video and frame at a time."""
    _check_variant(variant)
    xs, gs = [], []
    for n in range(g.shape[0]):
        v = w_xg @ g[n]  # (C,)
        frames = []
        for s in range(segments):
            f = local[n * segments + s]  # (C, *sp)
            v_b = v.view(-1, *([1] * (f.dim() - 1)))
            frames.append(torch.relu(f * torch.sigmoid(v_b) if variant == "v2" else f + v_b))
        video = torch.stack(frames)  # (S, C, *sp)
        pooled = video.transpose(0, 1).reshape(video.shape[1], -1).mean(1)  # (C,): over S frames and positions
        gs.append(pooled if variant == "v1" else torch.relu(w_gx @ pooled + w_gg @ g[n]))
        xs.append(video)
    return torch.cat(xs), torch.stack(gs)
