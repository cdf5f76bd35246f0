"""The two convs of a separable (S3D / P3D-A) layer: ``1 x 3 x 3`` in space, ``3 x 1 x 1`` in time.

TrajectoryNet Sec. 4.2 (S3D) and LGD Table 1 (P3D-A) factorise every ``3 x 3 x 3`` conv into a
spatial conv followed by a temporal conv; a BN (+ ReLU) follows each, so neither has a bias.
"""
from __future__ import annotations

import torch.nn as nn

__all__ = ["spatial_conv", "temporal_conv"]


def spatial_conv(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    """``1 x 3 x 3`` conv, spatial stride ``stride``: ``(N, C, T, H, W) -> (N, C', T, H/s, W/s)``."""
    return nn.Conv3d(in_planes, out_planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)


def temporal_conv(planes: int, stride: int = 1) -> nn.Conv3d:
    """``3 x 1 x 1`` conv, temporal stride ``stride``: ``(N, C, T, H, W) -> (N, C, T/s, H, W)``."""
    # bias=False: a BN follows.  The authors' ResNet_S3D uses bias=True here (+2 * planes
    # parameters per block, 3,840 for ResNet-18); the BN makes that bias redundant.
    return nn.Conv3d(planes, planes, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False)
