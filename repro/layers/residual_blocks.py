"""Video residual blocks with timm's module names (``conv1``, ``bn1``, ``act1`` ... ``downsample``).

* :class:`VideoBasicBlock` -- torchvision's video ``BasicBlock`` (R3D / MC3 / R(2+1)D), its convs
  made by a conv maker (:mod:`repro.layers.conv_makers`).
* :class:`SeparableBasicBlock` -- S3D basic block (TrajectoryNet Sec. 4.2).
* :class:`SeparableBottleneck` -- P3D-A / S3D bottleneck (LGD Table 1).

Separable blocks keep their temporal convs as separately named modules listed in
``temporal_conv_names``; ``block(x, temporal_inputs={"conv1_t": extra})`` calls that conv as
``conv(x, extra)`` -- the hook TrajectoryNet uses to feed trajectories
(:mod:`repro.models.temporal_positions`).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn as nn
from torch import Tensor

from repro.layers.conv_makers import ConvMaker, r2plus1d_mid_planes
from repro.layers.separable import spatial_conv, temporal_conv

__all__ = ["shortcut", "VideoBasicBlock", "SeparableBlock", "SeparableBasicBlock", "SeparableBottleneck"]


def shortcut(in_planes: int, out_planes: int, stride: tuple[int, int, int]) -> nn.Sequential:
    """The projection shortcut ``downsample``: 1x1x1 conv with ``stride`` + BN."""
    return nn.Sequential(nn.Conv3d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm3d(out_planes))


class VideoBasicBlock(nn.Module):
    """torchvision's video ``BasicBlock`` with timm's names: conv1-bn1-act1-conv2-bn2 (+) act2."""

    expansion = 1

    def __init__(
        self, in_planes: int, planes: int, conv_maker: ConvMaker, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        # torchvision computes mid_planes once from (in_planes, planes) and uses it for *both*
        # convs of the block (so conv2 of a stage's first block is not 3x3x3-parameter-matched).
        mid_planes = r2plus1d_mid_planes(in_planes, planes)
        self.conv1 = conv_maker(in_planes, planes, mid_planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv_maker(planes, planes, mid_planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return self.act2(x + shortcut)


class SeparableBlock(nn.Module):
    """Shared plumbing of S3D / P3D-A blocks: temporal convs callable with an extra input."""

    temporal_conv_names: tuple[str, ...] = ()

    def _temporal(self, name: str, x: Tensor, temporal_inputs: Mapping[str, Any] | None) -> Tensor:
        conv = getattr(self, name)
        if temporal_inputs is not None and name in temporal_inputs:
            return conv(x, temporal_inputs[name])
        return conv(x)


class SeparableBasicBlock(SeparableBlock):
    """S3D basic block (TrajectoryNet Sec. 4.2): a 3x1x1 temporal conv + BN + ReLU after each
    1x3x3 spatial conv.  Order: conv1-bn1-act1, conv1_t-bn1_t-act1_t, conv2-bn2-act2_s,
    conv2_t-bn2_t, (+ shortcut), act2.  The ReLU after ``bn2_t`` is the block's output ReLU
    after the residual sum, as in the authors' ``ResNet_S3D``.
    """

    expansion = 1
    temporal_conv_names = ("conv1_t", "conv2_t")

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = spatial_conv(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv1_t = temporal_conv(planes)
        self.bn1_t = nn.BatchNorm3d(planes)
        self.act1_t = nn.ReLU(inplace=True)
        self.conv2 = spatial_conv(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.act2_s = nn.ReLU(inplace=True)
        self.conv2_t = temporal_conv(planes)
        self.bn2_t = nn.BatchNorm3d(planes)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor, temporal_inputs: Mapping[str, Any] | None = None) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act1_t(self.bn1_t(self._temporal("conv1_t", x, temporal_inputs)))
        x = self.act2_s(self.bn2(self.conv2(x)))
        x = self.bn2_t(self._temporal("conv2_t", x, temporal_inputs))
        return self.act2(x + shortcut)


class SeparableBottleneck(SeparableBlock):
    """P3D-A / S3D bottleneck (LGD Table 1): 1x1x1, 1x3x3, 3x1x1, 1x1x1.

    Order: conv1-bn1-act1, conv2-bn2-act2, conv2_t-bn2_t-act2_t, conv3-bn3, (+ shortcut), act3.
    """

    expansion = 4
    temporal_conv_names = ("conv2_t",)

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv3d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = spatial_conv(planes, planes, stride)  # stride on the 3x3 conv, as in timm
        self.bn2 = nn.BatchNorm3d(planes)
        self.act2 = nn.ReLU(inplace=True)
        self.conv2_t = temporal_conv(planes)
        self.bn2_t = nn.BatchNorm3d(planes)
        # BN + ReLU after the temporal conv as TrajectoryNet Sec. 4.2 states; the authors'
        # ResNet_S3D bottleneck and Qiu's later P3D-A re-implementation drop one of the two.
        self.act2_t = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv3d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out_planes)
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor, temporal_inputs: Mapping[str, Any] | None = None) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = self.act2_t(self.bn2_t(self._temporal("conv2_t", x, temporal_inputs)))
        x = self.bn3(self.conv3(x))
        return self.act3(x + shortcut)
