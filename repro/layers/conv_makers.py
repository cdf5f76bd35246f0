"""Conv makers of torchvision's video ResNets (Tran et al., "A Closer Look at Spatiotemporal
Convolutions", CVPR 2018): R3D, MC3 and R(2+1)D differ only by which of these each stage uses.

A conv maker is called ``maker(in_planes, out_planes, mid_planes, stride)`` and tells the shortcut
its stride with ``maker.downsample_stride(stride)``.
"""
from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn
from torch import Tensor

__all__ = ["ConvMaker", "r2plus1d_mid_planes", "Conv3dFull", "Conv3dSpatial", "Conv2Plus1d"]

ConvMaker = Callable[..., nn.Module]


def r2plus1d_mid_planes(in_planes: int, out_planes: int) -> int:
    """Channels between R(2+1)D's spatial and temporal conv: same parameters as a 3x3x3 conv.

    Tran et al. CVPR 2018 Sec. 3.5: M_i = floor(t d^2 N_{i-1} N_i / (d^2 N_{i-1} + t N_i)).
    """
    return (in_planes * out_planes * 3 * 3 * 3) // (in_planes * 3 * 3 + 3 * out_planes)


class Conv3dFull(nn.Conv3d):
    """Full ``3 x 3 x 3`` conv, stride ``s`` in time and space (R3D; MC3's ``layer1``)."""

    def __init__(self, in_planes: int, out_planes: int, mid_planes: int | None = None, stride: int = 1) -> None:
        super().__init__(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)

    @staticmethod
    def downsample_stride(stride: int) -> tuple[int, int, int]:
        return (stride, stride, stride)


class Conv3dSpatial(nn.Conv3d):
    """``1 x 3 x 3`` conv, spatial stride only (MC3's ``layer2``..``layer4``)."""

    def __init__(self, in_planes: int, out_planes: int, mid_planes: int | None = None, stride: int = 1) -> None:
        super().__init__(
            in_planes, out_planes, kernel_size=(1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False
        )

    @staticmethod
    def downsample_stride(stride: int) -> tuple[int, int, int]:
        return (1, stride, stride)


class Conv2Plus1d(nn.Module):
    """R(2+1)D factorised conv: ``1 x k x k`` to ``mid_planes`` + BN + ReLU, then ``t x 1 x 1``.

    The stride ``s`` applies to space in ``conv_s`` and to time in ``conv_t``.  The stem uses
    ``spatial_kernel=7, temporal_stride=1`` (torchvision's ``R2Plus1dStem``).
    """

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        mid_planes: int,
        stride: int = 1,
        *,
        spatial_kernel: int = 3,
        temporal_kernel: int = 3,
        temporal_stride: int | None = None,
    ) -> None:
        super().__init__()
        temporal_stride = stride if temporal_stride is None else temporal_stride
        k, t = spatial_kernel, temporal_kernel
        self.conv_s = nn.Conv3d(
            in_planes, mid_planes, (1, k, k), stride=(1, stride, stride), padding=(0, k // 2, k // 2), bias=False
        )
        self.bn_s = nn.BatchNorm3d(mid_planes)
        self.act_s = nn.ReLU(inplace=True)
        self.conv_t = nn.Conv3d(
            mid_planes, out_planes, (t, 1, 1), stride=(temporal_stride, 1, 1), padding=(t // 2, 0, 0), bias=False
        )

    @staticmethod
    def downsample_stride(stride: int) -> tuple[int, int, int]:
        return (stride, stride, stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_t(self.act_s(self.bn_s(self.conv_s(x))))
