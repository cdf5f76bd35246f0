"""Optional native (C) gather of the trajectory convolution's fast path (inference only).

:func:`repro.ops.trajectory_conv.trajectory_conv`'s ``gather`` path mixes channels first (one GEMM
into a table of ``y_τ = w_τ·x`` rows, pixel-major) and then sums, for every output pixel, its
centre row and the four bilinear corners of each side tap τ at the trajectory position (Eq. 1-3).
In PyTorch that sum is three steps with a round trip through memory each: the tap rows and
weights as tensors ``(P, 1 + 8Δt)``, ``embedding_bag``, and a transposed copy of the
``(P, C_out)`` result into the channels-first output.  At res2 of S3D-ResNet-18 (64 channels,
8 x 56²) those three took about 5 of the op's 12-14 ms (profiled, one thread), memory-bound,
beside a GEMM at ~70 % of the core's fp32 rate; with this pass the op went from 1.23-1.32x to
1.08-1.13x the ``Conv3d`` it replaces (``benchmarks/bench_trajectory.py``, paired rounds).

:func:`trajectory_gather_native` does the three in one pass: for a block of 16 pixels it computes
each side tap's corners and weights from the position planes, accumulates the weighted table
rows in a ``16 x C_out`` buffer (the channel loop vectorised by the compiler), and writes the
block to the channels-first output, 16 consecutive pixels a channel.  Same sums as the PyTorch
path in another order (tap by tap rather than corner by corner): equal to float rounding
(``tests/test_trajectory_native.py``).  A position that is not a number contributes nothing here
(the PyTorch path propagates it).

The kernel is plain C, built on first use by :mod:`repro.ops.native`; ``REPRO_TRAJECTORY_NATIVE=0``
keeps the PyTorch path.  With more than one torch thread the frames are split over that many
Python threads (a foreign call releases the GIL).
"""
from __future__ import annotations

import ctypes
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from repro.ops import native

__all__ = ["native_unavailable", "trajectory_gather_native"]

SWITCH = "REPRO_TRAJECTORY_NATIVE"

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define BLOCK 16

/* Frames [f0, f1) of the N*T frames.  table: (N*T*H*W*K, C) rows, row pixel*K + slot holds
   y_tau = w_tau x at that pixel, slot = tau + dt; pos: (2, S, N*T, H*W), the x then y planes of
   the side taps tau = -dt..-1, 1..dt (S = 2 dt); bias: (C) or NULL; out: (N, C, T*H*W). */
int trajectory_gather(const float *restrict table, const float *restrict pos, const float *restrict bias,
                      float *restrict out, int64_t N, int64_t T, int64_t H, int64_t W, int64_t C,
                      int64_t dt, int64_t f0, int64_t f1) {
    const int64_t HW = H * W, K = 2 * dt + 1, S = 2 * dt, NT = N * T;
    float *acc = malloc(sizeof(float) * BLOCK * C);
    if (!acc) return 1;
    for (int64_t f = f0; f < f1; ++f) {
        const int64_t t = f % T;
        float *outf = out + (f / T) * C * T * HW + t * HW; /* out[n, c, t, p] = outf[c * T * HW + p] */
        for (int64_t p0 = 0; p0 < HW; p0 += BLOCK) {
            const int64_t B = HW - p0 < BLOCK ? HW - p0 : BLOCK;
            for (int64_t b = 0; b < B; ++b) { /* the centre tap, weight 1 */
                const float *restrict centre = table + ((f * HW + p0 + b) * K + dt) * C;
                float *restrict a = acc + b * C;
                for (int64_t c = 0; c < C; ++c) a[c] = centre[c] + (bias ? bias[c] : 0.0f);
            }
            for (int64_t s = 0; s < S; ++s) {
                const int64_t tau = s < dt ? s - dt : s - dt + 1;
                if (t + tau < 0 || t + tau >= T) continue; /* temporal zero padding */
                const int64_t frame = f + tau, slot = tau + dt;
                const float *px = pos + (s * NT + f) * HW + p0, *py = pos + ((S + s) * NT + f) * HW + p0;
                for (int64_t b = 0; b < B; ++b) {
                    const float x = px[b], y = py[b];
                    /* every corner outside the frame (or not a number): zero padding */
                    if (!(x > -1.0f && x < (float)W && y > -1.0f && y < (float)H)) continue;
                    const float x0 = floorf(x), y0 = floorf(y), fx = x - x0, fy = y - y0;
                    const int64_t ix = (int64_t)x0, iy = (int64_t)y0;
                    float *restrict a = acc + b * C;
                    for (int64_t dy = 0; dy < 2; ++dy) {
                        const int64_t yy = iy + dy;
                        if (yy < 0 || yy >= H) continue;
                        const float wy = dy ? fy : 1.0f - fy;
                        for (int64_t dx = 0; dx < 2; ++dx) {
                            const int64_t xx = ix + dx;
                            if (xx < 0 || xx >= W) continue;
                            const float w = wy * (dx ? fx : 1.0f - fx);
                            const float *restrict row = table + ((frame * HW + yy * W + xx) * K + slot) * C;
                            for (int64_t c = 0; c < C; ++c) a[c] += w * row[c];
                        }
                    }
                }
            }
            for (int64_t c = 0; c < C; ++c) /* the block, channels-first */
                for (int64_t b = 0; b < B; ++b) outf[c * T * HW + p0 + b] = acc[b * C + c];
        }
    }
    free(acc);
    return 0;
}
"""


@functools.lru_cache(maxsize=1)
def _load() -> tuple[Any, str | None]:
    return native.load_function("trajectory", _SOURCE, "trajectory_gather", [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 8)


def native_unavailable() -> str | None:
    """Why :func:`trajectory_gather_native` cannot run here (None: it can; builds it if needed)."""
    return native.disabled(SWITCH) or _load()[1]


def trajectory_gather_native(table: torch.Tensor, positions: torch.Tensor, bias: torch.Tensor | None,
                             shape: tuple[int, int, int, int], dt: int) -> torch.Tensor:
    """The gather and tap sum of the fast path, channels-first, in one native pass (no autograd).

    ``table (N·T·H·W·K, C_out)``: row ``pixel·K + τ + Δt`` is ``w_τ·x`` at that pixel;
    ``positions (2, 2Δt, N·T, H·W)``: the side taps' trajectory positions, x plane then y plane
    (:func:`repro.ops.trajectory_conv._position_planes`); ``shape`` ``(N, T, H, W)``.
    Returns ``(N, C_out, T·H·W)`` float32.
    """
    why = native_unavailable()
    if why is not None:
        raise RuntimeError(f"native trajectory gather unavailable: {why}")
    n, length, height, width = shape
    k, frames = 2 * dt + 1, n * length
    c_out = table.shape[1]
    if table.shape[0] != frames * height * width * k or tuple(positions.shape) != (2, 2 * dt, frames, height * width):
        raise ValueError(f"trajectory_gather_native: table {tuple(table.shape)} / positions {tuple(positions.shape)} "
                         f"do not match shape {shape} and dt={dt}")
    table = table.detach().to(torch.float32).contiguous()
    positions = positions.detach().to(torch.float32).contiguous()
    bias = None if bias is None else bias.detach().to(torch.float32).contiguous()
    out = table.new_empty((n, c_out, length * height * width))
    gather = _load()[0]
    args = (table.data_ptr(), positions.data_ptr(), 0 if bias is None else bias.data_ptr(), out.data_ptr(),
            n, length, height, width, c_out, dt)

    def run(f0: int, f1: int) -> None:
        if gather(*args, f0, f1) != 0:
            raise MemoryError("trajectory_gather: out of memory for its accumulator")

    workers = min(torch.get_num_threads(), frames)
    if workers <= 1:
        run(0, frames)
    else:
        bounds = [frames * i // workers for i in range(workers + 1)]
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, bounds[:-1], bounds[1:]))
    return out
