"""Temporal max pooling on frame-folded feature maps (Zhao, Xiong & Lin, "Recognize Actions by
Disentangling Components of Dynamics", CVPR 2018, §3.2, Fig. 3; §4.2 "Modeling static
appearance with 3D pooling", Tables 1-2).

A 2D network run per frame keeps its frames folded into the batch, ``(N·T, C, H, W)``.  The
static-appearance branch "selects the highest responses across neighbouring frames" (§3.2): a
max over windows of ``kernel`` consecutive frames, stride ``kernel``, after the spatial pools
``pool2``, ``inception_3c`` and ``inception_4e`` (the "gradual 3D pooling" of §4.2), so that a
spatial pool followed by this temporal pool is a 3D pool.  It has no parameters.

Choices the paper leaves unstated (the supplement holding them is not public; see
``shared/design/dynamics_lgd_brief.md`` §A.3):

* kernel = stride = 2 (8 frames -> 4 -> 2 -> 1 after the three pools);
* the kernel is **clamped** to the frames present, ``min(kernel, T)``: T = 1 passes through
  unchanged and T = 2 becomes 1 (Table 2's 1- and 2-frame rows; ``max_pool`` would raise on a
  window longer than the input);
* an odd T is rounded up (``ceil_mode``, Caffe's rounding, as BN-Inception's own pools): the last
  window holds a single frame, so no frame is dropped.

:func:`temporal_max_pool` is the fast path (one 2D max pool with a ``(k, 1)`` window over a
``(N, C, T, H·W)`` view); :func:`temporal_max_pool_reference` loops over the windows.
MACs (``repro.profile``): ``k`` per output element (the pool rule: kernel volume).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["pooled_frames", "temporal_max_pool", "temporal_max_pool_reference", "temporal_global_max"]


def pooled_frames(num_frames: int, kernel: int = 2) -> int:
    """Frames left after one pool: ``ceil(T / k)`` with ``k = min(kernel, T)``."""
    if num_frames < 1 or kernel < 1:
        raise ValueError(f"temporal pool: frames and kernel must be >= 1, got {num_frames} and {kernel}")
    k = min(kernel, num_frames)
    return -(-num_frames // k)


def _check(x: torch.Tensor, num_frames: int) -> int:
    if x.dim() != 4 or num_frames < 1 or int(x.shape[0]) % num_frames:
        raise ValueError(f"temporal pool: expected (N*T, C, H, W) with T={num_frames} dividing the batch, "
                         f"got {tuple(x.shape)}")
    return int(x.shape[0]) // num_frames


def temporal_max_pool(x: torch.Tensor, num_frames: int, kernel: int = 2) -> tuple[torch.Tensor, int]:
    """``(N·T, C, H, W)`` -> ``(N·T', C, H, W)``, ``T' = ceil(T / min(kernel, T))``; returns ``(y, T')``.

    Frame ``t'`` of each clip is the elementwise max of frames ``k·t' .. k·t'+k-1`` (those present).
    """
    n = _check(x, num_frames)
    k = min(kernel, num_frames)
    if k == 1:  # clamped: nothing to pool (T = 1, or kernel 1)
        return x, num_frames
    c, h, w = (int(s) for s in x.shape[1:])
    v = x.reshape(n, num_frames, c, h * w).transpose(1, 2)  # (N, C, T, H*W)
    v = F.max_pool2d(v, (k, 1), stride=(k, 1), ceil_mode=True)  # (N, C, T', H*W)
    t_out = int(v.shape[2])
    return v.transpose(1, 2).reshape(n * t_out, c, h, w), t_out


def temporal_max_pool_reference(x: torch.Tensor, num_frames: int, kernel: int = 2) -> tuple[torch.Tensor, int]:
    """Loop over clips and windows: ``y[n, t'] = max_{t in window t'} x[n, t]``."""
    n = _check(x, num_frames)
    k = min(kernel, num_frames)
    clips = x.reshape(n, num_frames, *x.shape[1:])
    out = []
    for i in range(n):
        for start in range(0, num_frames, k):
            window = clips[i, start : min(start + k, num_frames)]  # (<=k, C, H, W)
            out.append(torch.stack(list(window)).amax(dim=0) if len(window) > 1 else window[0])
    t_out = pooled_frames(num_frames, kernel)
    return torch.stack(out), t_out


def temporal_global_max(v: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``(N·T, D)`` per-frame vectors -> ``(N, D)``: the max over each clip's T frames (the "late"
    pooling of §4.2: one global temporal pooling of the final features)."""
    if v.dim() != 2 or int(v.shape[0]) % num_frames:
        raise ValueError(f"temporal pool: expected (N*T, D) with T={num_frames} dividing the batch, "
                         f"got {tuple(v.shape)}")
    if num_frames == 1:
        return v
    return v.reshape(int(v.shape[0]) // num_frames, num_frames, int(v.shape[1])).amax(dim=1)
