"""Stem convs of the video ResNets (the network keeps them as ``conv1`` so that timm / torchvision
checkpoint names map onto it; BN and ReLU follow as ``bn1`` / ``act1``).

* R3D / MC3: ``3 x 7 x 7`` conv to 64 channels, stride (1, 2, 2) (torchvision ``BasicStem``).
* R(2+1)D: ``1 x 7 x 7`` to 45 channels + BN + ReLU, ``3 x 1 x 1`` to 64 (``R2Plus1dStem``).
* separable (S3D / P3D-A): ``1 x 7 x 7`` conv, stride (1, 2, 2) (LGD Table 1 "conv1").
"""
from __future__ import annotations

import torch.nn as nn

from repro.layers.conv_makers import Conv2Plus1d

__all__ = ["video_stem_conv", "separable_stem_conv"]


def video_stem_conv(kind: str, in_chans: int) -> nn.Module:
    """``kind`` ``"r3d"`` or ``"r2plus1d"``: ``(N, in_chans, T, H, W) -> (N, 64, T, H/2, W/2)``."""
    if kind == "r3d":
        return nn.Conv3d(in_chans, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False)
    if kind == "r2plus1d":
        return Conv2Plus1d(in_chans, 64, 45, stride=2, spatial_kernel=7, temporal_stride=1)
    raise ValueError(f"stem must be 'r3d' or 'r2plus1d'; got {kind!r}")


def separable_stem_conv(in_chans: int, out_chans: int) -> nn.Conv3d:
    """``1 x 7 x 7`` conv, stride (1, 2, 2): ``(N, in_chans, T, H, W) -> (N, out_chans, T, H/2, W/2)``."""
    return nn.Conv3d(in_chans, out_chans, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)
