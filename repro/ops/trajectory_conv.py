"""Trajectory convolution (Zhao, Xiong & Lin, "Trajectory Convolution for Action Recognition",
NeurIPS 2018, §3.1-3.3).

A temporal ``(2Δt+1) x 1 x 1`` convolution whose taps are read along motion trajectories instead
of at a fixed pixel (Eq. 1)::

    y_t(p) = sum_{τ=-Δt..Δt} w_τ · x_{t+τ}(p̃_{t+τ}),        p̃_t = p

Trajectories follow the flow iteratively (Eq. 2): ``p̃_{t+1} = p̃_t + ω→_t(p̃_t)`` with the forward
flow and ``p̃_{t-1} = p̃_t + ω←_t(p̃_t)`` with the backward flow, the flow itself being read
bilinearly at non-integer positions.  Features at fractional positions are read by bilinear
interpolation (Eq. 3), zeros outside the frame.  Time is zero-padded (stride 1, T in = T out),
so with zero flow the op is exactly ``F.conv3d(x, w, b, padding=(Δt, 0, 0))`` (§3.2: trajectory
conv = 3-D deformable conv with zero temporal offset).

Tensor conventions
------------------
* ``x``: ``(N, C, T, H, W)`` features.
* ``flow_fwd``, ``flow_bwd``: ``(N, 2, T, H, W)`` displacements **in pixels of the feature map**;
  channel 0 = x (width), channel 1 = y (height).  ``flow_fwd[:, :, t]`` moves a point of frame t to
  frame t+1, ``flow_bwd[:, :, t]`` to frame t-1.  ``flow_fwd[:, :, T-1]`` and ``flow_bwd[:, :, 0]``
  only matter for :func:`trajectory_offsets` (the conv reads zero padding there).
* ``weight``: ``(C_out, C_in, 2Δt+1, 1, 1)`` exactly like the temporal ``nn.Conv3d`` it replaces.
* Flow is read with zeros outside the frame (a point that left the frame stops moving); flow
  frames outside ``[0, T)`` are zero.  Those positions only feed taps that read zero padding or
  out-of-frame features, so the choice does not change the output in-frame.

Implementations
---------------
* :func:`trajectory_conv_reference`: loops over n, t, τ with the explicit bilinear formula.
* :func:`trajectory_conv` (default ``sampler="gather"``): trajectories for all τ with 4-D
  ``grid_sample`` on ``(N·T, 2, H, W)``; then the channels are mixed *first* -- one matmul
  ``(K·C_out, C_in) x (C_in, T·H·W)``, exactly the MACs of the ``Conv3d`` it replaces -- and the
  mixed taps are read bilinearly at the trajectory points with four row gathers per tap on a
  pixels-by-channels table (bilinear reading is linear and the same for every channel, so it
  commutes with the channel mix).  Exports to ONNX as MatMul + Gather.  At inference on the CPU
  the gather, the tap sum and the channels-first store are one native pass
  (:mod:`repro.ops.trajectory_native`); with autograd, ``embedding_bag``.
* ``sampler="grid_sample"``: one batched 4-D ``grid_sample`` on ``(N·T·2Δt, C, H, W)`` for the non-centre taps (the centre
  tap is read directly), then 1×1 convolutions (matmuls).  4-D only: 5-D GridSample does not
  export to TensorRT.  ``sampler="triton"`` replaces the sampling by the fused Triton kernel of
  :mod:`repro.ops.triton_trajectory` (forward only); ``sampler="trt_plugin"`` computes the same
  values but exports the sampling as one custom ONNX node ``trajectory_sample`` with
  ``plugin_namespace="repro"`` for the TensorRT plugin in :mod:`repro.deploy.tensorrt`.

Authors' release (open-mmlab/mmaction v1, ``trajectory_conv_package``): a CUDA 3-D deformable
conv fed with the one-step flow as (Δh, Δw) offsets; for Δt = 1 (the only kernel the paper uses)
that equals Eq. 2, which this module also follows for Δt > 1.
"""
from __future__ import annotations

import functools
import math
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.weak import WeakTensorKeyDictionary

from repro.ops.capture import capturing_graph
from repro.ops.trajectory_native import native_unavailable, trajectory_gather_native
from repro.ops.warp import bilinear_sample_reference, pixel_grid, sample_at

__all__ = [
    "trajectory_conv",
    "trajectory_conv_reference",
    "trajectory_sample",
    "trajectory_positions",
    "trajectory_offsets",
    "conv_from_samples",
    "TrajectoryConv3d",
    "PLUGIN_NAMESPACE",
    "PLUGIN_OP_TYPE",
]

Sampler = Literal["gather", "grid_sample", "triton", "trt_plugin"]
PLUGIN_NAMESPACE = "repro"
PLUGIN_OP_TYPE = "trajectory_sample"


# ----------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------
def _check_flows(flow_fwd: torch.Tensor, flow_bwd: torch.Tensor, like: torch.Tensor | None = None) -> None:
    for name, flow in (("flow_fwd", flow_fwd), ("flow_bwd", flow_bwd)):
        if flow.dim() != 5 or flow.shape[1] != 2:
            raise ValueError(f"{name}: expected (N, 2, T, H, W) pixel displacements, got {tuple(flow.shape)}")
    if flow_fwd.shape != flow_bwd.shape:
        raise ValueError(f"flow_fwd {tuple(flow_fwd.shape)} and flow_bwd {tuple(flow_bwd.shape)} differ in shape")
    if like is not None:
        n, _, t, h, w = like.shape
        if (flow_fwd.shape[0], *flow_fwd.shape[2:]) != (n, t, h, w):
            raise ValueError(
                f"flows {tuple(flow_fwd.shape)} must match x (N={n}, T={t}, H={h}, W={w}) "
                "(down-sample the flow to the feature resolution first)"
            )


def _check_x(x: torch.Tensor) -> None:
    if x.dim() != 5:
        raise ValueError(f"x: expected (N, C, T, H, W), got {tuple(x.shape)}")


def _kernel_half_width(weight: torch.Tensor, in_channels: int) -> int:
    if weight.dim() != 5 or weight.shape[3:] != (1, 1) or weight.shape[2] % 2 != 1:
        raise ValueError(
            f"weight: expected (C_out, C_in, 2Δt+1, 1, 1) like a temporal Conv3d, got {tuple(weight.shape)}"
        )
    if weight.shape[1] != in_channels:
        raise ValueError(f"weight has C_in={weight.shape[1]} but x has C={in_channels} channels")
    # int(): under ONNX tracing shape entries are traced values; Δt must stay a Python int.
    return int(weight.shape[2]) // 2


def _shift_time(seq: torch.Tensor, shift: int) -> torch.Tensor:
    """``out[:, t] = seq[:, t + shift]`` for ``0 <= t + shift < T``, zeros elsewhere; ``seq (N, T, ...)``."""
    if shift == 0:
        return seq
    length = seq.shape[1]
    if abs(shift) >= length:
        return torch.zeros_like(seq)
    pad = seq.new_zeros((seq.shape[0], abs(shift)) + tuple(seq.shape[2:]))
    if shift > 0:
        return torch.cat((seq[:, shift:], pad), dim=1)
    return torch.cat((pad, seq[:, : length + shift]), dim=1)


# ----------------------------------------------------------------------------------------------
# trajectories (Eq. 2)
# ----------------------------------------------------------------------------------------------
def _positions_by_tau(flow_fwd: torch.Tensor, flow_bwd: torch.Tensor, dt: int) -> dict[int, torch.Tensor]:
    """Absolute pixel positions ``(N·T, H, W, 2)`` of the trajectory through each pixel, per τ."""
    n, _, length, height, width = flow_fwd.shape
    base = pixel_grid(height, width, device=flow_fwd.device, dtype=flow_fwd.dtype)
    positions = {0: base.expand(n * length, height, width, 2)}
    for sign, flow in ((1, flow_fwd), (-1, flow_bwd)):
        if dt == 0:
            break
        flow_seq = flow.transpose(1, 2)  # (N, T, 2, H, W): frame t's flow at index t
        # First step starts on the integer grid, where bilinear reading is the flow value itself.
        pos = base + flow_seq.reshape(n * length, 2, height, width).permute(0, 2, 3, 1)
        positions[sign] = pos
        for step in range(2, dt + 1):
            # Eq. 2 iterated: read the flow of frame t + sign·(step-1) at the current position.
            flow_step = _shift_time(flow_seq, sign * (step - 1)).reshape(n * length, 2, height, width)
            pos = pos + sample_at(flow_step, pos).permute(0, 2, 3, 1)
            positions[sign * step] = pos
    return positions


def trajectory_positions(flow_fwd: torch.Tensor, flow_bwd: torch.Tensor, dt: int) -> torch.Tensor:
    """Absolute trajectory positions ``(N, T, 2Δt+1, H, W, 2)`` (x, y in pixels), τ = -Δt..Δt."""
    _check_flows(flow_fwd, flow_bwd)
    if dt < 0:
        raise ValueError(f"dt: expected >= 0, got {dt}")
    n, _, length, height, width = flow_fwd.shape
    by_tau = _positions_by_tau(flow_fwd, flow_bwd, dt)
    stacked = torch.stack([by_tau[tau] for tau in range(-dt, dt + 1)], dim=1)  # (N·T, K, H, W, 2)
    return stacked.reshape(n, length, 2 * dt + 1, height, width, 2)


def trajectory_offsets(flow_fwd: torch.Tensor, flow_bwd: torch.Tensor, dt: int) -> torch.Tensor:
    """Trajectory offsets ``Δp_τ = p̃_{t+τ} - p`` as a ``(N, 2·(2Δt+1), T, H, W)`` map (§3.3).

    Channels are ``[Δx_{-Δt}, Δy_{-Δt}, ..., Δx_{+Δt}, Δy_{+Δt}]``; the centre pair (τ = 0) is zero.
    For kernel 3 the informative channels ``[0, 1, 4, 5]`` are the "trajectory (# dim=4)" motion
    feature of Table 3.
    """
    positions = trajectory_positions(flow_fwd, flow_bwd, dt)  # (N, T, K, H, W, 2)
    n, length, k, height, width, _ = positions.shape
    base = pixel_grid(height, width, device=positions.device, dtype=positions.dtype)
    offsets = positions - base.view(1, 1, 1, height, width, 2)
    return offsets.permute(0, 2, 5, 1, 3, 4).reshape(n, 2 * k, length, height, width)


# ----------------------------------------------------------------------------------------------
# sampling (Eq. 3) and the convolution (Eq. 1)
# ----------------------------------------------------------------------------------------------
def trajectory_sample(
    x: torch.Tensor,
    flow_fwd: torch.Tensor,
    flow_bwd: torch.Tensor,
    dt: int,
    *,
    include_center: bool = True,
) -> torch.Tensor:
    """Trajectory-aligned samples ``x_{t+τ}(p̃_{t+τ})`` as ``(N, T, K', C, H, W)``.

    ``K' = 2Δt+1`` (τ = -Δt..Δt) or ``2Δt`` without the centre tap.  Taps whose frame ``t+τ`` is
    outside the clip are zero (temporal zero padding).  This layout is what the Triton kernel and
    the TensorRT plugin produce; ``.reshape(N·T, K'·C, H, W)`` feeds a 1×1 convolution.
    """
    _check_x(x)
    _check_flows(flow_fwd, flow_bwd, like=x)
    n, channels, length, height, width = x.shape
    positions = _positions_by_tau(flow_fwd, flow_bwd, dt)
    x_seq = x.transpose(1, 2)  # (N, T, C, H, W)
    side_taps = [tau for tau in range(-dt, dt + 1) if tau != 0]
    if not side_taps:
        return x_seq.unsqueeze(2).contiguous()
    frames = torch.stack([_shift_time(x_seq, tau) for tau in side_taps], dim=2)  # (N, T, S, C, H, W)
    grids = torch.stack(
        [positions[tau].reshape(n, length, height, width, 2) for tau in side_taps], dim=2
    )  # (N, T, S, H, W, 2)
    taps = len(side_taps)
    sampled = sample_at(
        frames.reshape(n * length * taps, channels, height, width),
        grids.reshape(n * length * taps, height, width, 2),
    ).reshape(n, length, taps, channels, height, width)
    if not include_center:
        return sampled
    return torch.cat((sampled[:, :, :dt], x_seq.unsqueeze(2), sampled[:, :, dt:]), dim=2)


def conv_from_samples(samples: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 1 on pre-gathered samples ``(N, T, K, C, H, W)`` -> ``(N, C_out, T, H, W)``."""
    n, length, k, channels, height, width = samples.shape
    c_out = weight.shape[0]
    if weight.shape[1:3] != (channels, k):
        raise ValueError(f"weight {tuple(weight.shape)} does not match samples (K={k}, C={channels})")
    c_out, channels, k = (int(d) for d in weight.shape[:3])  # the weight's: constants in a dynamic-batch graph
    w = weight.reshape(c_out, channels, k).permute(0, 2, 1).reshape(c_out, k * channels, 1, 1)
    out = F.conv2d(samples.reshape(-1, k * channels, height, width), w, bias)
    return out.reshape(n, length, c_out, height, width).transpose(1, 2).contiguous()


def trajectory_conv(
    x: torch.Tensor,
    flow_fwd: torch.Tensor,
    flow_bwd: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    sampler: Sampler = "gather",
) -> torch.Tensor:
    """Trajectory convolution (Eq. 1-3), fast path.  Returns ``(N, C_out, T, H, W)``.

    ``sampler``: ``"gather"`` (default; channels mixed by one matmul, then bilinear row gathers;
    differentiable w.r.t. x, flows, weight, bias; exports to ONNX as MatMul + Gather),
    ``"grid_sample"`` (sampling then mixing; differentiable; 4-D GridSample in ONNX), ``"triton"`` (fused Triton gather, forward only) or
    ``"trt_plugin"`` (same values as grid_sample; ONNX export emits one custom
    ``repro::trajectory_sample`` node for TensorRT).
    """
    _check_x(x)
    dt = _kernel_half_width(weight, x.shape[1])
    _check_flows(flow_fwd, flow_bwd, like=x)
    if sampler == "triton":
        from repro.ops.triton_trajectory import trajectory_sample_triton

        return conv_from_samples(trajectory_sample_triton(x, flow_fwd, flow_bwd, dt), weight, bias)
    if sampler == "trt_plugin":
        return conv_from_samples(_TrajectorySamplePluginOp.apply(x, flow_fwd, flow_bwd, dt), weight, bias)
    if sampler == "gather":
        return _trajectory_conv_gather(x, flow_fwd, flow_bwd, weight, bias, dt)
    if sampler != "grid_sample":
        raise ValueError(f"sampler: expected 'gather', 'grid_sample', 'triton' or 'trt_plugin', got {sampler!r}")

    n, _, length, height, width = x.shape
    c_out, channels = weight.shape[:2]  # the weight's (== x's, checked): static in a dynamic-batch ONNX graph
    w = weight.reshape(c_out, channels, 2 * dt + 1)
    # Centre tap (τ = 0, p̃_t = p) needs no sampling: an ordinary 1×1 convolution.
    centre = x.transpose(1, 2).reshape(n * length, channels, height, width)
    out = F.conv2d(centre, w[:, :, dt, None, None], bias)
    if dt > 0:
        side = trajectory_sample(x, flow_fwd, flow_bwd, dt, include_center=False)  # (N, T, 2Δt, C, H, W)
        w_side = torch.cat((w[:, :, :dt], w[:, :, dt + 1 :]), dim=2).permute(0, 2, 1)
        out = out + F.conv2d(
            side.reshape(n * length, 2 * dt * channels, height, width),
            w_side.reshape(c_out, 2 * dt * channels, 1, 1),
        )
    return out.reshape(n, length, c_out, height, width).transpose(1, 2).contiguous()


def _bilinear_corners(positions: torch.Tensor, limit: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The four bilinear corners of pixel ``positions (2, ...)`` (x plane, y plane) at once:
    ``index, weight`` of shape ``(4, ...)`` with ``index = y·W + x`` (int32) inside the frame
    (clamped) and ``weight`` 0 for corners outside it (zero padding, as
    ``grid_sample(padding_mode="zeros")``); ``limit`` is ``[W-1, H-1]`` shaped ``(2, 1, ...)``.
    Corners and axes are leading dimensions so every op runs along the contiguous pixels."""
    low = torch.floor(positions.detach())  # (2, ...): x0, y0 (indices carry no gradient)
    frac = positions - low
    coord = torch.stack((low, low + 1), dim=1)  # (axis, low/high neighbour, ...)
    clamped = torch.minimum(coord.clamp(min=0), limit)
    inside = (clamped == coord).to(positions.dtype)
    axis_weight = torch.stack((1 - frac, frac), dim=1) * inside  # (2, 2, ...), 0 outside the frame
    # index in floating point is exact (< H·W < 2^24, checked by the caller), one int32 cast
    index = (clamped[1].unsqueeze(1) * width + clamped[0].unsqueeze(0)).int()  # (dy, dx, ...)
    weight = axis_weight[1].unsqueeze(1) * axis_weight[0].unsqueeze(0)
    return index.flatten(0, 1), weight.flatten(0, 1)


def _position_planes(flow_fwd: torch.Tensor, flow_bwd: torch.Tensor, dt: int, base: torch.Tensor) -> torch.Tensor:
    """Trajectory positions of the side taps τ = -Δt..-1, 1..Δt as planes ``(2, 2Δt, N·T, H·W)``
    (x then y), the layout :func:`_bilinear_corners` works in; ``base`` is the pixel grid as
    ``(2, 1, 1, H·W)``."""
    n, _, length, height, width = flow_fwd.shape
    if dt == 1:  # one step from the integer grid: p + ω(p), no sampling (Eq. 2 at τ = ±1)
        flows = torch.stack((flow_bwd, flow_fwd), dim=1).transpose(0, 2)  # (2, S, N, T, H, W)
        return base + flows.reshape(2, 2, n * length, height * width)
    by_tau = _positions_by_tau(flow_fwd, flow_bwd, dt)  # τ -> (N·T, H, W, 2)
    taus = [t for t in range(-dt, dt + 1) if t != 0]
    return torch.stack([by_tau[t] for t in taus]).permute(4, 0, 1, 2, 3).reshape(2, len(taus), n * length, height * width)


def _tap_constants(shape: tuple[int, ...], dt: int, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """What :func:`_tap_rows` needs that depends on the shape ``(N, T, H, W)`` and Δt only (not on
    the flow): the centre rows, each side tap's row offset ``(S, N·T, 1)`` (frame ``t+τ``'s first
    table row, clamped, and the tap's slot), its temporal zero padding mask, the pixel grid and
    ``[W-1, H-1]``."""
    n, length, height, width = shape
    k, frames, area = 2 * dt + 1, n * length, height * width
    centre = (torch.arange(frames * area, device=device, dtype=torch.int32) * k + dt).view(1, -1)  # (1, P)
    taus = [t for t in range(-dt, dt + 1) if t != 0]
    tau = torch.tensor(taus, device=device, dtype=torch.int32).view(-1, 1, 1)  # (S, 1, 1)
    frame = torch.arange(frames, device=device, dtype=torch.int32).view(1, frames, 1)
    in_clip = (frame % length + tau >= 0) & (frame % length + tau < length)  # temporal zero padding
    base = pixel_grid(height, width, device=device, dtype=dtype).permute(3, 0, 1, 2).reshape(2, 1, 1, area)
    return {"centre": centre, "ones": torch.ones(centre.shape, dtype=dtype, device=device),
            "offset": (frame + tau).clamp(0, frames - 1) * (area * k) + (tau + dt),  # (S, N·T, 1)
            "in_clip": in_clip.to(dtype), "base": base,
            "limit": torch.tensor([width - 1, height - 1], device=device, dtype=dtype).view(2, 1, 1, 1, 1)}


_cached_tap_constants = functools.lru_cache(maxsize=32)(_tap_constants)


def _tap_rows(flow_fwd: torch.Tensor, flow_bwd: torch.Tensor, dt: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows and weights of every output pixel's taps in the mixed table (see below):
    ``(N·T·H·W, 1 + 4·2Δt)`` each -- the centre row (weight 1) and four bilinear corners per side
    tap, weight 0 for corners outside the frame or frames outside the clip (zero padding).
    All side taps and corners in one batch of tensor ops (the index work is shared by every channel)."""
    n, length, height, width = shape
    k, frames, area = 2 * dt + 1, n * length, height * width
    if frames * area * k >= 2**31 or area >= 2**24:
        raise ValueError(f"trajectory conv: {frames * area * k} table rows exceed int32 indexing; split the batch")
    # shape-only constants: built once per shape (a dozen small ops fewer per call), fresh when
    # traced (a dynamic-batch graph must compute them from the input's shape)
    constants = (_tap_constants if capturing_graph() else _cached_tap_constants)(shape, dt, flow_fwd.device, flow_fwd.dtype)
    centre, ones = constants["centre"], constants["ones"]
    if dt == 0:
        return centre.t(), ones.t()
    planes = _position_planes(flow_fwd, flow_bwd, dt, constants["base"])
    index, weight = _bilinear_corners(planes, constants["limit"], width)  # (4, S, N·T, H·W)
    # int32 rows (embedding_bag takes them): half the memory traffic of int64 index arithmetic
    rows = index * k + constants["offset"]  # (4, S, N·T, H·W): row of frame t+τ's corner, slot τ
    weight = weight * constants["in_clip"]
    # (P, 1 + 4S), written once in the layout embedding_bag reads: a cat to (1 + 4S, P) and a
    # transposed view would be copied twice (embedding_bag makes its input contiguous), ~6 % of
    # the op at res2
    rows = torch.cat((centre.t(), rows.reshape(-1, frames * area).t()), dim=1)
    weight = torch.cat((ones.t(), weight.reshape(-1, frames * area).t()), dim=1)
    return rows, weight


def _mixing_weight(weight: torch.Tensor) -> torch.Tensor:
    """``(C_out, C_in, K, 1, 1)`` -> ``(K·C_out, C_in)``, row ``j·C_out + o`` = ``w[o, :, j]`` (a copy)."""
    c_out, c_in, k = (int(d) for d in weight.shape[:3])  # constants in a dynamic-batch graph
    return weight.reshape(c_out, c_in, k).permute(2, 0, 1).reshape(k * c_out, c_in)


_MIXING_CACHE = WeakTensorKeyDictionary()


def _cached_mixing_weight(weight: torch.Tensor) -> torch.Tensor:
    """:func:`_mixing_weight`, kept between calls while ``weight`` is unchanged (same storage and
    version counter) and no gradient flows to it: at inference the copy (about 1 ms for res5's
    512x512x3 on one thread) is made once, not per forward.  (An in-place change through
    ``weight.data`` bumps no version counter and would go unseen: change weights in place under
    ``torch.no_grad()`` or by assignment.)"""
    if capturing_graph() or weight.is_inference() or (weight.requires_grad and torch.is_grad_enabled()):
        return _mixing_weight(weight)
    key = (weight._version, weight.data_ptr(), weight.shape, weight.dtype)
    hit = _MIXING_CACHE.get(weight)
    if hit is None or hit[0] != key:
        hit = (key, _mixing_weight(weight.detach()))
        _MIXING_CACHE[weight] = hit
    return hit[1]


def _trajectory_conv_gather(x: torch.Tensor, flow_fwd: torch.Tensor, flow_bwd: torch.Tensor, weight: torch.Tensor,
                            bias: torch.Tensor | None, dt: int) -> torch.Tensor:
    """Eq. 1-3 as one channel-mixing matmul, then a weighted sum of gathered rows per pixel."""
    n, _, length, height, width = x.shape
    c_out, c_in, k = (int(d) for d in weight.shape[:3])  # constants in a dynamic-batch graph
    # Departure in the order of operations only: Eq. 1 samples x then mixes channels; we mix
    # first, y_τ = w_τ·x for every pixel (the Conv3d's MACs, one GEMM), and sample y_τ -- equal,
    # since bilinear sampling is linear and has the same weights for every channel.
    w_all = _cached_mixing_weight(weight)  # (K·C_out, C_in)
    pixels = x.reshape(n, c_in, -1).transpose(1, 2)  # (N, T·H·W, C_in), a view (channels-first or -last)
    table = torch.matmul(pixels, w_all.t()).reshape(-1, c_out)  # row pixel·K + j: y_{τ=j-Δt} at pixel
    if _takes_native(x, flow_fwd, flow_bwd, weight, bias):
        # inference: tap weights, gather, sum and channels-first store in one native pass
        positions = _native_positions(flow_fwd, flow_bwd, dt, (n, length, height, width))
        out = trajectory_gather_native(table, positions, bias, (n, length, height, width), dt)
        return out.view(n, c_out, length, height, width)
    rows, weights = _tap_rows(flow_fwd, flow_bwd, dt, (n, length, height, width))  # (P, 1 + 8Δt)
    if torch.onnx.is_in_onnx_export():
        # ONNX has no weighted EmbeddingBag: one Gather of every tap's row, Mul, ReduceSum (same sum).
        out = (table[rows] * weights.unsqueeze(-1)).sum(dim=1)
    else:
        # One fused gather + weighted sum over each pixel's taps (Eq. 1 over τ, Eq. 3's corners).
        out = F.embedding_bag(rows, table, per_sample_weights=weights, mode="sum")
    if bias is not None:
        out = out + bias
    out = out.view(n, length * height * width, c_out)
    channels_last = x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()
    if channels_last and not torch.onnx.is_in_onnx_export():
        # channels-last input: the pixel-major result already is channels_last_3d (no copy)
        return out.view(n, length, height, width, c_out).permute(0, 4, 1, 2, 3)
    return _to_channels_first(out).view(n, c_out, length, height, width)


def _takes_native(x: torch.Tensor, *tensors: torch.Tensor | None) -> bool:
    """Whether the gather runs natively (:mod:`repro.ops.trajectory_native`): inference on the CPU
    in float32 with a channels-first input (a channels-last one needs no transposed store), outside
    graph captures, where the kernel builds (``REPRO_TRAJECTORY_NATIVE=0`` keeps PyTorch's)."""
    tensors = tuple(t for t in (x, *tensors) if t is not None)
    return (not capturing_graph() and x.device.type == "cpu" and x.dtype == torch.float32
            and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
            and not (x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous())
            and native_unavailable() is None)


def _native_positions(flow_fwd: torch.Tensor, flow_bwd: torch.Tensor, dt: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The side taps' positions ``(2, 2Δt, N·T, H·W)`` for the native gather (Eq. 2, as the tap rows')."""
    n, length, height, width = shape
    if dt == 0:
        return flow_fwd.new_empty((2, 0, n * length, height * width))
    base = _cached_tap_constants(shape, dt, flow_fwd.device, flow_fwd.dtype)["base"]
    return _position_planes(flow_fwd, flow_bwd, dt, base)


def _to_channels_first(rows: torch.Tensor) -> torch.Tensor:
    """``(N, P, C)`` -> contiguous ``(N, C, P)``: one 2-D transposed copy per clip, which PyTorch
    runs as a cache-blocked transpose (a 3-D or 5-D permuted copy takes the generic strided path,
    2-3x slower on the CPU)."""
    if torch.onnx.is_in_onnx_export() or rows.requires_grad or rows.shape[0] > 16:
        return rows.transpose(1, 2).contiguous()
    out = rows.new_empty((rows.shape[0], rows.shape[2], rows.shape[1]))
    for clip in range(rows.shape[0]):
        out[clip].copy_(rows[clip].t())
    return out


class _TrajectorySamplePluginOp(torch.autograd.Function):
    """:func:`trajectory_sample` whose ONNX export is one custom node for the TensorRT plugin.

    The node is ``op_type="trajectory_sample"`` with attributes ``dt`` and
    ``plugin_namespace="repro"`` (how TensorRT's ONNX parser finds a plugin registered as
    ``repro::trajectory_sample``).  Inputs ``x, flow_fwd, flow_bwd``; output ``(N, T, K, C, H, W)``.
    """

    @staticmethod
    def forward(ctx, x, flow_fwd, flow_bwd, dt):  # type: ignore[override]
        return trajectory_sample(x, flow_fwd, flow_bwd, dt)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        raise NotImplementedError("sampler='trt_plugin' is for export/inference; train with sampler='grid_sample'")

    @staticmethod
    def symbolic(g, x, flow_fwd, flow_bwd, dt):
        out = g.op(
            f"{PLUGIN_NAMESPACE}::{PLUGIN_OP_TYPE}",
            x,
            flow_fwd,
            flow_bwd,
            dt_i=dt,
            plugin_namespace_s=PLUGIN_NAMESPACE,
            plugin_version_s="1",
        )
        sizes = x.type().sizes() if hasattr(x.type(), "sizes") else None
        if sizes is not None and all(s is not None for s in sizes):
            n, c, t, h, w = sizes
            out.setType(x.type().with_sizes([n, t, 2 * dt + 1, c, h, w]))
        return out


# ----------------------------------------------------------------------------------------------
# reference
# ----------------------------------------------------------------------------------------------
def trajectory_conv_reference(
    x: torch.Tensor,
    flow_fwd: torch.Tensor,
    flow_bwd: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Obviously-correct trajectory convolution: loops over n, t, τ and the trajectory steps,
    vectorised over pixels only, with the explicit bilinear formula.  Same semantics as
    :func:`trajectory_conv`; differentiable; slow (tiny tensors only)."""
    _check_x(x)
    dt = _kernel_half_width(weight, x.shape[1])
    _check_flows(flow_fwd, flow_bwd, like=x)
    n_batch, _, length, height, width = x.shape
    c_out = weight.shape[0]
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=x.dtype, device=x.device),
        torch.arange(width, dtype=x.dtype, device=x.device),
        indexing="ij",
    )
    batch_out = []
    for n in range(n_batch):
        frames_out = []
        for t in range(length):
            acc = x.new_zeros(c_out, height, width)
            if bias is not None:
                acc = acc + bias[:, None, None]
            for tau in range(-dt, dt + 1):
                if not 0 <= t + tau < length:
                    continue  # temporal zero padding
                px, py = xs, ys  # p̃_t = p
                flow = flow_fwd if tau > 0 else flow_bwd
                step = 1 if tau > 0 else -1
                frame = t
                for _ in range(abs(tau)):  # Eq. 2, iterated |τ| times
                    disp = bilinear_sample_reference(flow[n, :, frame], px, py)
                    px, py = px + disp[0], py + disp[1]
                    frame += step
                feat = bilinear_sample_reference(x[n, :, t + tau], px, py)  # Eq. 3, (C, H, W)
                acc = acc + torch.einsum("oc,chw->ohw", weight[:, :, tau + dt, 0, 0], feat)  # Eq. 1
            frames_out.append(acc)
        batch_out.append(torch.stack(frames_out, dim=1))
    return torch.stack(batch_out, dim=0)


# ----------------------------------------------------------------------------------------------
# module
# ----------------------------------------------------------------------------------------------
class TrajectoryConv3d(nn.Module):
    """Drop-in replacement for a temporal ``nn.Conv3d`` with kernel ``(2Δt+1, 1, 1)``, stride 1,
    padding ``(Δt, 0, 0)``: ``forward(x, flow_fwd, flow_bwd)``.  Parameters are named and shaped
    like ``nn.Conv3d``'s so state dicts interchange."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 3,
        bias: bool = True,
        sampler: Sampler = "gather",
    ) -> None:
        super().__init__()
        if isinstance(kernel_size, int):
            kernel_size = (kernel_size, 1, 1)
        if len(kernel_size) != 3 or kernel_size[1:] != (1, 1) or kernel_size[0] % 2 != 1:
            raise ValueError(f"kernel_size: expected an odd temporal size K or (K, 1, 1), got {kernel_size}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = tuple(kernel_size)
        self.sampler: Sampler = sampler
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same initialisation as nn.Conv3d.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_conv3d(cls, conv: nn.Conv3d, sampler: Sampler = "gather") -> "TrajectoryConv3d":
        """Copy a temporal conv; with zero flow the result computes exactly what ``conv`` does."""
        k = conv.kernel_size[0]
        expected_padding = (k // 2, 0, 0)
        if (
            conv.kernel_size[1:] != (1, 1)
            or k % 2 != 1
            or tuple(conv.stride) != (1, 1, 1)
            or tuple(conv.padding) != expected_padding
            or tuple(conv.dilation) != (1, 1, 1)
            or conv.groups != 1
        ):
            raise ValueError(
                "from_conv3d: expected a temporal Conv3d with kernel (K, 1, 1), odd K, stride 1, "
                f"padding {expected_padding}, dilation 1, groups 1; got kernel {conv.kernel_size}, "
                f"stride {conv.stride}, padding {conv.padding}, dilation {conv.dilation}, groups {conv.groups}"
            )
        module = cls(conv.in_channels, conv.out_channels, conv.kernel_size, bias=conv.bias is not None, sampler=sampler)
        module.to(device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            module.weight.copy_(conv.weight)
            if conv.bias is not None:
                module.bias.copy_(conv.bias)
        return module

    def forward(self, x: torch.Tensor, flow_fwd: torch.Tensor, flow_bwd: torch.Tensor) -> torch.Tensor:
        return trajectory_conv(x, flow_fwd, flow_bwd, self.weight, self.bias, sampler=self.sampler)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"bias={self.bias is not None}, sampler={self.sampler!r}"
        )
