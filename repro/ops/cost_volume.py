"""Cosine cost volume and soft-argmax displacement map (Zhao, Xiong & Lin, "Recognize Actions by
Disentangling Components of Dynamics", CVPR 2018, §3.3, Fig. 4, Eq. 1-2; Table 3).

Cost volume (§3.3 "Cost volume construction"): for a pair of feature maps ``f0 = F_t`` and
``f1 = F_{t+1}``, ``C(i, j, δi, δj) = cos(f0(i, j), f1(i+δi, j+δj))`` for ``|δi|, |δj| <= d``
(the paper's ΔH = ΔW = d).  Cosine similarity, **not** FlowNet's unnormalised dot product (§3.3
contrasts the two)::

    cos_ε(a, b) = <a, b> / (max(‖a‖, ε) · max(‖b‖, ε))

Departure from the usual ``<a, b> / (‖a‖‖b‖ + ε)``: the ε sits on each norm separately so that
each map can be normalised once (``f / max(‖f‖, ε)``, as ``F.normalize``) before the D dot
products; the two agree whenever both norms are >= ε, and a zero vector (common after ReLU)
has cosine 0 with everything, with finite gradients.

Soft assignment (§3.3 "Cost volume processing", Eq. 2): one **joint** softmax over all
D = (2d+1)² displacements of ``C / τ``; Eq. 1 then takes the expected displacement (the marginals
ρ^y, ρ^x of Eq. 2 summed against δi, δj are the same expectation).  The paper notes the
expectation "can be obtained by 2D convolution": here a fixed 1×1 convolution with weights
``(δx_k, δy_k)`` over the D channels.  τ → 0 is the winner-take-all (WTA) assignment of
Table 3's "Cost volume + WTA" row (:func:`wta_displacement`).

Conventions
-----------
* ``f0, f1``: ``(N, C, H, W)``; cost volume ``(N, D, H, W)`` with displacement index
  ``k = (dy + d)·(2d+1) + (dx + d)`` (row-major over (dy, dx)); ``dy`` moves along H, ``dx``
  along W, i.e. ``C[n, k, y, x] = cos(f0[n, :, y, x], f1[n, :, y+dy, x+dx])``.
* Displacement maps ``(N, 2, H, W)``: **channel 0 = x, channel 1 = y** (the harness's flow
  convention, ``repro/ops/warp.py``; the paper writes v = (v^y, v^x)), in pixels of the feature
  map (×stride for image pixels).  A feature at (y, x) in f0 found at (y+dy, x+dx) in f1 gives
  v = (dx, dy): a forward flow from t to t+1.
* **Borders** (the paper is silent): f1 is zero-padded, so a displaced position outside the map
  has cosine exactly 0 in the cost volume.  :func:`soft_argmax_displacement` and
  :func:`wta_displacement` exclude those entries by default (``mask_outside=True``: set to −∞
  before the softmax / argmax, so an out-of-map position never counts as a match);
  ``mask_outside=False`` keeps them as cosine-0 candidates (the plain reading of Eq. 2 on a
  zero-padded volume).  The zero displacement is always inside, so no pixel is left without a
  candidate.

Implementations
---------------
* :func:`cosine_cost_volume`: normalise once, zero-pad f1 by d, then a loop over the D shifts, each
  a shifted elementwise product summed over C, a few pairs at a time, with a hand-written backward
  (:class:`_ShiftedDots`; autograd through the plain loop zero-fills a padded map per shift, 4x
  slower).  Memory O(C·H·W + D·H·W) (forward, and the two normalised maps saved for backward);
  the unfolded (C, D, H, W) tensor is never built.  Differentiable.
* :func:`cosine_cost_volume_reference`: loops over displacements with explicit index ranges and
  the cosine formula from the raw features (no padding, no pre-normalisation).
* :func:`soft_argmax_displacement_reference`: Eq. 2's marginals and Eq. 1's sums, loop by loop.
* :func:`cost_volume_displacement`: cost volume + soft-argmax in one call.  With a fixed τ
  (:class:`_CostVolumeSoftArgmax`): the volume and its soft-argmax a chunk of pairs at a time, the
  expectation as a matmul, a hand-written backward (the volume of every pair, its softmax and the
  1×1 conv over D channels took 0.5 s more of a mini motion-branch step); with a learnt τ or inside
  a graph capture, the two functions above.  ``impl="triton"`` runs the fused kernel of
  :mod:`repro.ops.triton_cost_volume` (forward only).
* :func:`cost_volume_displacement_frames`: the same for each pair of consecutive frames of a
  ``(B·L, C, H, W)`` stack (the model's call), each frame normalised once.

MACs (fvcore with ``repro.profile``'s rules, per pair): normalisation ``2·(3·C·H·W + H·W)``
(norm 2/element, clamp 1/pixel, divide 1/element), products ``C·D·H·W`` (``mul``) plus
``C·D·H·W`` (``sum`` over C, 1 per input element); soft-argmax ``D·H·W`` (÷τ) + ``D·H·W``
(mask, if on) + ``3·D·H·W`` (softmax) + ``2·D·H·W`` (the 1×1 expectation conv).  The dot
products are elementwise ``mul`` + ``sum`` (fast on CPU, ONNX-exportable, and autograd saves only
views of the normalised maps), so they count in ``MacReport.macs`` (2 per product: multiply and
add) but not in the headline ``model_macs``; ``einsum`` would count C·D·H·W there but runs ~10x
slower on CPU (batched 1×C·C×1 matmuls).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from repro.ops.capture import capturing_graph

__all__ = [
    "DEFAULT_EPS",
    "num_displacements",
    "displacement_offsets",
    "outside_mask",
    "normalize_features",
    "cosine_cost_volume",
    "cosine_cost_volume_reference",
    "soft_argmax_displacement",
    "soft_argmax_displacement_reference",
    "wta_displacement",
    "wta_displacement_reference",
    "cost_volume_displacement",
    "cost_volume_displacement_frames",
    "consecutive_pairs",
]

DEFAULT_EPS = 1e-6  # on each norm; MotionSqueeze's L2 normalisation uses the same value
Temperature = float | torch.Tensor


# ----------------------------------------------------------------------------------------------
# shapes, displacement table, input checks
# ----------------------------------------------------------------------------------------------
def num_displacements(max_disp: int) -> int:
    """D = (2d+1)², the number of displacements in the window (the paper's (2ΔH+1)(2ΔW+1))."""
    return (2 * max_disp + 1) ** 2


def displacement_offsets(max_disp: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(2, D)`` table: row 0 = dx_k, row 1 = dy_k for ``k = (dy+d)(2d+1) + (dx+d)``."""
    r = torch.arange(-max_disp, max_disp + 1, device=device, dtype=dtype)
    dy, dx = torch.meshgrid(r, r, indexing="ij")  # (2d+1, 2d+1), row-major over (dy, dx)
    return torch.stack((dx.reshape(-1), dy.reshape(-1)))


def outside_mask(max_disp: int, height: int, width: int, *, device=None) -> torch.Tensor:
    """``(D, H, W)`` bool: True where ``(y+dy, x+dx)`` falls outside the ``H×W`` map."""
    side = 2 * max_disp + 1
    mask = torch.ones(side, side, height, width, dtype=torch.bool, device=device)
    for i, dy in enumerate(range(-max_disp, max_disp + 1)):
        for j, dx in enumerate(range(-max_disp, max_disp + 1)):
            mask[i, j, max(0, -dy) : min(height, height - dy), max(0, -dx) : min(width, width - dx)] = False
    return mask.reshape(side * side, height, width)


def _spatial_size(t: torch.Tensor) -> tuple[int, int]:
    # int(): under tracing (fvcore, ONNX) shape entries are traced values whose arithmetic would be
    # recorded as ops; the window's index ranges must stay Python ints.
    return int(t.shape[2]), int(t.shape[3])


def _check_max_disp(max_disp: int) -> int:
    if isinstance(max_disp, bool) or not isinstance(max_disp, int) or max_disp < 0:
        raise ValueError(f"max_disp: expected an int >= 0 (window (2d+1)²), got {max_disp!r}")
    return max_disp


def _check_pair(f0: torch.Tensor, f1: torch.Tensor) -> None:
    if f0.dim() != 4:
        raise ValueError(f"f0: expected (N, C, H, W) features, got {tuple(f0.shape)}")
    if f1.shape != f0.shape:
        raise ValueError(f"f1 {tuple(f1.shape)} must have the shape of f0 {tuple(f0.shape)}")


def _check_cost(cost: torch.Tensor, max_disp: int) -> None:
    _check_max_disp(max_disp)
    d = num_displacements(max_disp)
    if cost.dim() != 4 or cost.shape[1] != d:
        raise ValueError(f"cost: expected (N, D={d}, H, W) for max_disp={max_disp}, got {tuple(cost.shape)}")


def _check_temperature(temperature: Temperature) -> None:
    value = temperature.detach() if isinstance(temperature, torch.Tensor) else torch.tensor(float(temperature))
    if value.numel() != 1 or not bool(value > 0):
        raise ValueError(f"temperature: expected one value > 0, got {temperature!r}")


# ----------------------------------------------------------------------------------------------
# cost volume (§3.3, Fig. 4)
# ----------------------------------------------------------------------------------------------
#: Pairs per chunk of the cost volume's loops: as many as keep one pair-chunk's ``(n, C, H, W)`` map
#: under this many elements (256 KB in float32, about a core's L2; one pair at least).  Measured on
#: the mini motion branch (112 pairs of 16 x 64² maps, d = 4, one thread): forward + backward
#: 1.7 s a pair at a time vs 3.2 s all pairs at once; and at full size, where one shift's product of
#: every pair is a fresh mapping of the CPU allocator, half the time went to page faults.
CHUNK_ELEMENTS = 1 << 16


def normalize_features(f: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """``f / max(‖f‖, ε)`` over channels: ``(N, C, H, W)`` -> same shape, unit vectors (or 0)."""
    # Departs from <a, b> / (‖a‖‖b‖ + ε): ε on each norm, so each map is normalised once.
    return f / torch.linalg.vector_norm(f, dim=1, keepdim=True).clamp_min(eps)


def _normalized_pair(f0: torch.Tensor, f1: torch.Tensor, d: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)``: ``f0`` normalised ``(N, C, H, W)`` and ``f1`` normalised, zero-padded by ``d``
    ``(N, C, H+2d, W+2d)`` (zeros outside: cosine 0 there)."""
    return normalize_features(f0, eps), F.pad(normalize_features(f1, eps), (d, d, d, d))


def _shifts(d: int):
    """``(k, dy, dx)`` over the window, ``k = (dy+d)(2d+1) + (dx+d)``."""
    side = 2 * d + 1
    for k in range(side * side):
        yield k, k // side - d, k % side - d


def _pair_chunks(a: torch.Tensor):
    n, c, height, width = (int(s) for s in a.shape)
    step = max(1, CHUNK_ELEMENTS // max(1, c * height * width))
    return [slice(i, i + step) for i in range(0, n, step)]


def _shifted_dots_plain(a: torch.Tensor, b: torch.Tensor, d: int) -> torch.Tensor:
    """``(N, D, H, W)``: ``<a[:, :, y, x], b[:, :, y+dy+d, x+dx+d]>`` for each shift; ``b`` is ``a``'s
    shape padded by ``d``.  Plain ops (``mul`` + ``sum`` per shift): traced by fvcore's counter and
    the ONNX exporter; autograd's backward of it zero-fills a padded map per shift (slow)."""
    height, width = int(a.shape[2]), int(a.shape[3])
    planes = []
    for _, dy, dx in _shifts(d):
        shifted = b[:, :, d + dy : d + dy + height, d + dx : d + dx + width]  # a view
        planes.append((a * shifted).sum(dim=1))  # (N, H, W)
    return torch.stack(planes, dim=1)


def _windows(b: torch.Tensor, d: int, height: int, width: int) -> list[torch.Tensor]:
    """The ``(2d+1)²`` shifted windows of ``b (n, C, H+2d, W+2d)``, views ``(n, C, H, W)`` in ``k``
    order (:func:`_shifts`): window ``k`` is ``b[:, :, d+dy : d+dy+H, d+dx : d+dx+W]``.  One strided
    view unbound, ~3x cheaper per window than slicing (81 windows a pair, forward and backward)."""
    sn, sc, sh, sw = b.stride()
    side = 2 * d + 1
    grid = b.as_strided((side, side, *b.shape[:2], height, width), (sh, sw, sn, sc, sh, sw), b.storage_offset())
    return [window for row in grid.unbind(0) for window in row.unbind(0)]  # unbind: no copy (flatten would)


def _dots_chunk(a: torch.Tensor, b: torch.Tensor, d: int, out: torch.Tensor) -> None:
    """:func:`_shifted_dots_plain` of one chunk of pairs into ``out`` ``(n, D, H, W)``: ``a (n, C, H, W)``,
    ``b (n, C, H+2d, W+2d)``."""
    for window, plane in zip(_windows(b, d, *_spatial_size(a)), out.unbind(1)):
        torch.sum(a * window, dim=1, out=plane)  # (n, H, W)


def _dots_backward_chunk(a: torch.Tensor, b: torch.Tensor, grad: torch.Tensor, grad_a: torch.Tensor,
                         grad_b: torch.Tensor, d: int) -> None:
    """:func:`_dots_chunk`'s backward for ``grad (n, D, H, W)``, accumulated in place into ``grad_a``
    (``a``'s shape) and ``grad_b`` (``b``'s): ``∂a += Σ_k g_k · b_k``, ``∂b[k's window] += g_k · a``."""
    size = _spatial_size(a)
    for window, grad_window, gk in zip(_windows(b, d, *size), _windows(grad_b, d, *size), grad.split(1, dim=1)):
        grad_a.addcmul_(gk, window)  # gk (n, 1, H, W), broadcast over C
        grad_window.addcmul_(gk, a)


class _ShiftedDots(torch.autograd.Function):
    """:func:`_shifted_dots_plain`'s numbers with a hand-written backward, a few pairs at a time
    (cache-sized chunks): ``∂a = Σ_k g_k · b_k``, ``∂b[k's window] += g_k · a``, accumulated in
    place (``addcmul_``).  Measured (112 pairs of 16 x 64², d = 4, one thread): forward 0.8 s vs
    1.8 s, backward 0.9 s vs 4 s for autograd through the plain loop."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, d: int) -> torch.Tensor:
        out = a.new_empty(a.shape[0], num_displacements(d), *_spatial_size(a))  # (N, D, H, W)
        for p in _pair_chunks(a):
            _dots_chunk(a[p], b[p], d, out[p])
        ctx.save_for_backward(a, b)
        ctx.d = d
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, b = ctx.saved_tensors
        grad_a, grad_b = torch.zeros_like(a), torch.zeros_like(b)
        for p in _pair_chunks(a):
            _dots_backward_chunk(a[p], b[p], grad[p], grad_a[p], grad_b[p], ctx.d)
        return grad_a, grad_b, None


def cosine_cost_volume(f0: torch.Tensor, f1: torch.Tensor, max_disp: int, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Cosine cost volume ``(N, D, H, W)`` between ``f0 = F_t`` and ``f1 = F_{t+1}`` (§3.3).

    ``C[n, k, y, x] = cos_ε(f0[n, :, y, x], f1[n, :, y+dy, x+dx])``, ``k = (dy+d)(2d+1) + (dx+d)``;
    0 where ``(y+dy, x+dx)`` is outside the map (f1 zero-padded).  Fast path: a loop over the D
    shifts of the normalised maps, never building the unfolded ``(N, C, D, H, W)`` tensor, with a
    hand-written backward (:class:`_ShiftedDots`); inside a graph capture (ONNX export, fvcore's
    trace, ``torch.compile``) the same loop in plain ops (:func:`_shifted_dots_plain`).
    """
    _check_pair(f0, f1)
    d = _check_max_disp(max_disp)
    a, b = _normalized_pair(f0, f1, d, eps)
    if capturing_graph():
        return torch.cat([_shifted_dots_plain(a[p], b[p], d) for p in _pair_chunks(a)])
    return _ShiftedDots.apply(a, b, d)


def cosine_cost_volume_reference(
    f0: torch.Tensor, f1: torch.Tensor, max_disp: int, eps: float = DEFAULT_EPS
) -> torch.Tensor:
    """Obviously-correct cost volume: Python loops over the displacements, each computing
    ``<a, b> / (max(‖a‖, ε)·max(‖b‖, ε))`` from the raw features on the explicit in-map index
    range (zeros elsewhere).  Same contract as :func:`cosine_cost_volume`; differentiable."""
    _check_pair(f0, f1)
    d = _check_max_disp(max_disp)
    n, _, height, width = f0.shape
    out = f0.new_zeros(n, num_displacements(d), height, width)
    k = 0
    for dy in range(-d, d + 1):
        for dx in range(-d, d + 1):
            y0, y1 = max(0, -dy), min(height, height - dy)  # y with 0 <= y+dy < H
            x0, x1 = max(0, -dx), min(width, width - dx)
            if y0 < y1 and x0 < x1:
                a = f0[:, :, y0:y1, x0:x1]
                b = f1[:, :, y0 + dy : y1 + dy, x0 + dx : x1 + dx]
                dot = (a * b).sum(dim=1)
                norms = a.norm(dim=1).clamp_min(eps) * b.norm(dim=1).clamp_min(eps)
                out[:, k, y0:y1, x0:x1] = dot / norms
            k += 1
    return out


# ----------------------------------------------------------------------------------------------
# soft assignment (Eq. 1-2) and winner-take-all
# ----------------------------------------------------------------------------------------------
def _masked(cost: torch.Tensor, max_disp: int, mask_outside: bool) -> torch.Tensor:
    if not mask_outside:
        return cost
    # Paper silent on borders: out-of-map displacements are excluded from Eq. 2 (−∞).
    outside = outside_mask(max_disp, *_spatial_size(cost), device=cost.device)
    return cost.masked_fill(outside, float("-inf"))


def soft_argmax_displacement(
    cost: torch.Tensor, max_disp: int, temperature: Temperature, *, mask_outside: bool = True
) -> torch.Tensor:
    """Displacement map ``(N, 2, H, W)`` (x, y) = expected displacement under one joint softmax of
    ``cost / τ`` over the D displacements (Eq. 2, then Eq. 1).

    ``temperature``: a float or a 0-dim tensor (e.g. a learnable ``exp(log_τ)``), > 0.
    ``mask_outside``: exclude out-of-map displacements (see the module's border convention).
    """
    _check_cost(cost, max_disp)
    _check_temperature(temperature)
    logits = _masked(cost / temperature, max_disp, mask_outside)  # (N, D, H, W)
    prob = torch.softmax(logits, dim=1)  # Eq. 2: one joint distribution over (δi, δj)
    weight = displacement_offsets(max_disp, device=cost.device, dtype=prob.dtype)
    return F.conv2d(prob, weight[:, :, None, None])  # Eq. 1 as the paper's "2D convolution"


def soft_argmax_displacement_reference(
    cost: torch.Tensor, max_disp: int, temperature: Temperature, *, mask_outside: bool = True
) -> torch.Tensor:
    """Eq. 2 and Eq. 1 written out: exponentials, the marginals ρ^y(δi) and ρ^x(δj) by explicit
    loops over the window, then ``v^y = Σ ρ^y(δi)·δi``, ``v^x = Σ ρ^x(δj)·δj``."""
    _check_cost(cost, max_disp)
    _check_temperature(temperature)
    d = max_disp
    side = 2 * d + 1
    n, _, height, width = cost.shape
    logits = cost / temperature
    if mask_outside:
        logits = logits.masked_fill(outside_mask(d, height, width, device=cost.device), float("-inf"))
    # Subtracting the per-pixel maximum leaves Eq. 2 unchanged and keeps exp finite.
    e = torch.exp(logits - logits.amax(dim=1, keepdim=True)).reshape(n, side, side, height, width)
    total = e.sum(dim=(1, 2))  # Σ_δi' Σ_δj' exp(c/τ)
    v_x = cost.new_zeros(n, height, width)
    v_y = cost.new_zeros(n, height, width)
    for i, di in enumerate(range(-d, d + 1)):
        rho_y = e[:, i].sum(dim=1) / total  # ρ^y(δi) = Σ_δj' exp / total
        v_y = v_y + rho_y * di
    for j, dj in enumerate(range(-d, d + 1)):
        rho_x = e[:, :, j].sum(dim=1) / total  # ρ^x(δj) = Σ_δi' exp / total
        v_x = v_x + rho_x * dj
    return torch.stack((v_x, v_y), dim=1)  # channel 0 = x (harness), paper order is (y, x)


def wta_displacement(cost: torch.Tensor, max_disp: int, *, mask_outside: bool = True) -> torch.Tensor:
    """Winner-take-all displacement ``(N, 2, H, W)`` (x, y): the argmax displacement per pixel
    (Table 3's "Cost volume + WTA"; the τ → 0 limit of Eq. 2).  Ties go to the lowest index k.
    Piecewise constant: no gradient flows to the cost volume (§4.2's point against hard
    assignment), so the result is returned detached."""
    _check_cost(cost, max_disp)
    index = _masked(cost.detach(), max_disp, mask_outside).argmax(dim=1)  # (N, H, W)
    offsets = displacement_offsets(max_disp, device=cost.device, dtype=cost.dtype)  # (2, D)
    return offsets[:, index].transpose(0, 1).contiguous()


def wta_displacement_reference(cost: torch.Tensor, max_disp: int, *, mask_outside: bool = True) -> torch.Tensor:
    """WTA by a scan over k keeping the first strict maximum (same tie rule as ``argmax``)."""
    _check_cost(cost, max_disp)
    d = max_disp
    n, _, height, width = cost.shape
    outside = outside_mask(d, height, width, device=cost.device)
    best = cost.new_full((n, height, width), float("-inf"))
    out = cost.new_zeros(n, 2, height, width)
    k = 0
    for dy in range(-d, d + 1):
        for dx in range(-d, d + 1):
            value = cost[:, k].detach()
            if mask_outside:
                value = value.masked_fill(outside[k], float("-inf"))
            better = value > best
            best = torch.where(better, value, best)
            out[:, 0] = torch.where(better, float(dx), out[:, 0])
            out[:, 1] = torch.where(better, float(dy), out[:, 1])
            k += 1
    return out


# ----------------------------------------------------------------------------------------------
# fused: cost volume + soft-argmax
# ----------------------------------------------------------------------------------------------
def _soft_argmax_chunk(cost: torch.Tensor, offsets: torch.Tensor, temperature: Temperature,
                       outside: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 2 and Eq. 1 on one chunk of pairs, :func:`soft_argmax_displacement`'s numbers: ``cost
    (n, D, H, W)`` -> ``(prob (n, D, H·W), disp (n, 2, H·W))``; ``outside (D, H·W)`` or None."""
    logits = cost.flatten(2) / temperature  # (n, D, H·W)
    if outside is not None:
        logits.masked_fill_(outside, float("-inf"))  # as _masked: out-of-map displacements excluded
    prob = torch.softmax(logits, dim=1)
    return prob, torch.matmul(offsets, prob)  # (2, D) @ (n, D, H·W): Eq. 1's expectation (the 1×1 conv)


def _soft_argmax_backward_chunk(prob: torch.Tensor, disp: torch.Tensor, grad: torch.Tensor,
                                offsets: torch.Tensor, temperature: Temperature) -> torch.Tensor:
    """``∂cost (n, D, H·W)`` from ``∂disp (n, 2, H·W)``: the softmax's Jacobian through the
    expectation, ``∂logit_k = p_k·(<off_k, g> − <v, g>)``, ``∂cost = ∂logit / τ`` (0 where masked)."""
    grad_prob = torch.matmul(offsets.t(), grad)  # (D, 2) @ (n, 2, H·W) -> (n, D, H·W): <off_k, g>
    grad_prob -= (grad * disp).sum(dim=1, keepdim=True)  # Σ_j p_j <off_j, g> = <v, g>
    return grad_prob.mul_(prob).div_(temperature)


class _CostVolumeSoftArgmax(torch.autograd.Function):
    """:func:`cosine_cost_volume` + :func:`soft_argmax_displacement` on the normalised pair ``(a, b)``
    (as :class:`_ShiftedDots`), a cache-sized chunk of pairs at a time: the ``(N, D, H, W)`` volume is
    never whole, and the expectation is a matmul (the 1×1 conv over D channels ran ~1 s forward and
    backward at the mini motion branch).  Saves ``a``, ``b``, the per-chunk probabilities and the
    map; backward: :func:`_soft_argmax_backward_chunk` then :func:`_dots_backward_chunk`.  A fixed
    ``temperature`` only (no gradient for τ: :func:`cost_volume_displacement` takes the plain path
    for a learnt one)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, d: int, temperature: Temperature,
                mask_outside: bool) -> torch.Tensor:
        (n, _, h, w), count = a.shape, num_displacements(d)
        offsets = displacement_offsets(d, device=a.device, dtype=a.dtype)  # (2, D)
        outside = outside_mask(d, h, w, device=a.device).flatten(1) if mask_outside else None  # (D, H·W)
        disp, probs = a.new_empty(n, 2, h * w), []
        for p in _pair_chunks(a):
            cost = a.new_empty(a[p].shape[0], count, h, w)  # (n, D, H, W), this chunk's volume
            _dots_chunk(a[p], b[p], d, cost)
            prob, disp[p] = _soft_argmax_chunk(cost, offsets, temperature, outside)
            probs.append(prob)
        ctx.save_for_backward(a, b, disp, offsets, *probs)
        ctx.d, ctx.temperature = d, temperature
        return disp.view(n, 2, h, w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, b, disp, offsets, *probs = ctx.saved_tensors
        (n, _, h, w), d = a.shape, ctx.d
        grad = grad.reshape(n, 2, h * w)
        grad_a, grad_b = torch.zeros_like(a), torch.zeros_like(b)
        for p, prob in zip(_pair_chunks(a), probs):
            grad_cost = _soft_argmax_backward_chunk(prob, disp[p], grad[p], offsets, ctx.temperature)
            _dots_backward_chunk(a[p], b[p], grad_cost.view(-1, prob.shape[1], h, w), grad_a[p], grad_b[p], d)
        return grad_a, grad_b, None, None, None


def _plain_ops(temperature: Temperature) -> bool:
    """Whether the displacement takes the plain ops instead of :class:`_CostVolumeSoftArgmax`: inside
    a graph capture (traced graphs and MAC counts see the reference composition) or with a learnt τ
    (the fused backward gives τ no gradient)."""
    return capturing_graph() or (isinstance(temperature, torch.Tensor) and temperature.requires_grad)


def cost_volume_displacement(
    f0: torch.Tensor,
    f1: torch.Tensor,
    max_disp: int,
    temperature: Temperature,
    *,
    mask_outside: bool = True,
    eps: float = DEFAULT_EPS,
    impl: Literal["torch", "triton"] = "torch",
) -> torch.Tensor:
    """Displacement map ``(N, 2, H, W)`` (x, y) from a feature pair: :func:`cosine_cost_volume`
    followed by :func:`soft_argmax_displacement` (§3.3, Eq. 1-2).

    ``impl="torch"``: differentiable, memory O(C·H·W + D·H·W).  ``impl="triton"``: the fused
    kernel of :mod:`repro.ops.triton_cost_volume` (forward only, fp32 out; the D costs stay in
    registers, memory O(H·W) beyond the inputs).
    """
    if impl == "triton":
        from repro.ops.triton_cost_volume import cost_volume_displacement_triton

        return cost_volume_displacement_triton(f0, f1, max_disp, temperature, mask_outside=mask_outside, eps=eps)
    if impl != "torch":
        raise ValueError(f"impl: expected 'torch' or 'triton', got {impl!r}")
    if _plain_ops(temperature):
        cost = cosine_cost_volume(f0, f1, max_disp, eps)
        return soft_argmax_displacement(cost, max_disp, temperature, mask_outside=mask_outside)
    _check_pair(f0, f1)
    d = _check_max_disp(max_disp)
    _check_temperature(temperature)
    # NCHW: the shifted products run ~15 % faster than on channels-last maps (the trainer's features)
    return _CostVolumeSoftArgmax.apply(*_normalized_pair(f0.contiguous(), f1.contiguous(), d, eps), d, temperature,
                                       mask_outside)


def consecutive_pairs(f: torch.Tensor, num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B·L, C, H, W)`` frames -> ``(f0, f1)``, each ``(B·(L-1), C, H, W)``: frames ``t`` and
    ``t+1`` of every snippet (pair ``j`` of snippet ``b`` at index ``b·(L-1) + j``)."""
    v = f.reshape(int(f.shape[0]) // num_frames, num_frames, *f.shape[1:])
    return v[:, :-1].flatten(0, 1), v[:, 1:].flatten(0, 1)


def cost_volume_displacement_frames(
    f: torch.Tensor,
    num_frames: int,
    max_disp: int,
    temperature: Temperature,
    *,
    mask_outside: bool = True,
    eps: float = DEFAULT_EPS,
) -> torch.Tensor:
    """:func:`cost_volume_displacement` of each pair of consecutive frames: ``f (B·L, C, H, W)``, ``L =
    num_frames`` frames per snippet -> ``(B·(L-1), 2, H, W)``, pair ``j`` of snippet ``b`` at
    ``b·(L-1) + j`` (frame j -> j+1).  Same numbers; each frame is normalised once, not once per
    pair it is in (a mini motion step normalised 224 maps for 128 frames)."""
    if int(f.shape[0]) % num_frames or num_frames < 2:
        raise ValueError(f"f: expected (B·L, C, H, W) with L={num_frames} >= 2 dividing {int(f.shape[0])}")
    if _plain_ops(temperature):  # the per-pair ops
        return cost_volume_displacement(*consecutive_pairs(f, num_frames), max_disp, temperature,
                                        mask_outside=mask_outside, eps=eps)
    d = _check_max_disp(max_disp)
    _check_temperature(temperature)
    unit = normalize_features(f.contiguous(), eps)  # (B·L, C, H, W), NCHW as in cost_volume_displacement
    a, b = consecutive_pairs(unit, num_frames)  # (B·(L-1), C, H, W) each
    return _CostVolumeSoftArgmax.apply(a.contiguous(), F.pad(b, (d, d, d, d)), d, temperature, mask_outside)
