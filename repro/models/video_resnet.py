"""Video ResNets built from timm's 2D ResNets: C2D/TSN, R3D, MC3, R(2+1)D, P3D-A and S3D.

Every network here keeps timm's ResNet names (``conv1``, ``bn1``, ``layer1`` ... ``layer4``,
``fc``; inside a block ``conv1``, ``bn1``, ``conv2``, ``bn2`` [, ``conv3``, ``bn3``],
``downsample.0/1``), so a timm 2D checkpoint maps onto them name by name, and the 3D-only parts
have their own names (``conv1_t``/``bn1_t`` temporal convs; ``conv_s``/``conv_t`` inside an
R(2+1)D factorised conv).

Families (all take ``(N, C, T, H, W)`` and return logits ``(N, num_classes)``):

* ``c2d_resnet{18,34,50,101}`` -- TSN-style 2D baseline (LGD Fig. 3 "LGD-2D" local path without
  the LGD blocks): timm's 2D ResNet on every frame (frames folded into the batch), features
  averaged over time, space and frames (TSN average consensus), then ``fc``.  The modules *are*
  timm's, so the parameter count is exactly timm's.
* ``r3d_{18,34}``, ``mc3_{18,34}``, ``r2plus1d_{18,34}`` -- exactly torchvision's
  ``torchvision.models.video`` networks (Tran et al., "A Closer Look at Spatiotemporal
  Convolutions", CVPR 2018).  As in torchvision, the three differ only by the list of conv makers
  (:class:`Conv3dFull`, :class:`Conv3dSpatial`, :class:`Conv2Plus1d`) and the stem.
  :func:`torchvision_to_repro_state_dict` maps torchvision's weights onto ours.
* ``p3d_resnet{50,101}`` -- P3D-A ResNet as laid out in LGD (Qiu et al., CVPR 2019) Table 1:
  every 3x3 conv becomes a 1x3x3 spatial conv then a 3x1x1 temporal conv in series, stem
  1x7x7 + 3x1x1, no spatial max pool, temporal max pools ``pool1`` (after the stem) and ``pool2``
  (after res2), 16x112x112 in, 4x7x7 out of res5.
* ``s3d_resnet{18,34,50}`` -- TrajectoryNet's Separable-3D ResNet (Zhao et al., NeurIPS 2018,
  Sec. 3.4 and 4.2): after every 2D spatial conv of a residual block, a 3x1x1 temporal conv +
  BN + ReLU; dropout 0.2 before ``fc``.  Temporal down-sampling as in the authors' ``ResNet_S3D``
  (open-mmlab/mmaction v1): stem max pool with temporal stride 2 and ``pool2`` (3x1x1, stride 2)
  after ``layer1``.

Inflation (``pretrained_file=`` a local timm 2D ResNet checkpoint, see :func:`inflate_from_2d`):

* a conv whose 2D counterpart has the same name and channels gets the 2D kernel: ``1 x k x k``
  convs get it unchanged; full ``t x k x k`` convs get it repeated over time and divided by
  ``t`` (I3D inflation, Carreira & Zisserman 2017, Sec. 2.3; ``inflate_mode="center"`` puts it on
  the centre tap instead, which makes a video of identical frames give exactly the 2D output even
  at the clip borders);
* BN layers and ``fc`` (when the class count matches) are copied;
* temporal ``3 x 1 x 1`` convs (``*_t``) start as the identity (centre tap = identity matrix), as
  LGD Sec. 5.2 does for P3D ("the temporal convolutions ... are initialized as an identity
  mapping"); we use the same for S3D, where TrajectoryNet does not say.  Inflated P3D then
  computes the 2D network frame by frame (up to each fresh temporal BN's 1/sqrt(1 + eps));
  inflated S3D differs from it only by the ReLU S3D inserts after ``bn2`` of a basic block;
* R(2+1)D's factorised convs have ``mid_planes`` channels that no 2D net has: they keep their
  random init and a warning lists them (Tran et al. train R(2+1)D from scratch).

Trajectory-convolution hook (S3D and P3D): each separable block keeps its temporal convs as
separately named modules listed in ``block.temporal_conv_names``.  :func:`replace_temporal_conv`
swaps one for another module, and ``model(x, temporal_inputs={"layer2.1.conv1_t": offsets})``
calls the module at that path as ``module(features, offsets)``.  TrajectoryNet's Caffe-style
positions translate to these paths (:data:`CAFFE_TO_TIMM`, :func:`resolve_temporal_position`):

    =================  ====================================================
    paper (Table 2)    module path
    =================  ====================================================
    res2a              ``layer1.0``   (all temporal convs of the block)
    res2b1             ``layer1.1``
    res3a.conv1        ``layer2.0.conv1_t``  (first temporal conv)
    res3b1.conv1       ``layer2.1.conv1_t``  (the paper's default position)
    res3b1.conv1,2     ``layer2.1.conv1_t`` and ``layer2.1.conv2_t``
    =================  ====================================================

``convK`` means the K-th temporal conv of the block in forward order (a bottleneck block has only
one, ``conv2_t``, so ``.conv1`` names it).  Note the authors' released code puts the trajectory
conv on the block's *second* temporal conv while the paper says ``conv1``; pick it explicitly.
"""
from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import timm
import torch
import torch.nn as nn
from torch import Tensor

from repro.registry import register_model

__all__ = [
    "Conv3dFull",
    "Conv3dSpatial",
    "Conv2Plus1d",
    "r2plus1d_mid_planes",
    "stage_channels",
    "VideoBasicBlock",
    "SeparableBasicBlock",
    "SeparableBottleneck",
    "C2DResNet",
    "VideoResNet",
    "SeparableResNet",
    "InflationReport",
    "load_checkpoint_state",
    "inflate_conv_weight",
    "inflate_from_2d",
    "torchvision_to_repro_state_dict",
    "CAFFE_TO_TIMM",
    "temporal_conv_paths",
    "resolve_temporal_position",
    "replace_temporal_conv",
]

_logger = logging.getLogger(__name__)

_VIDEO_INPUT = (1, 3, 16, 112, 112)
# TSN / LGD-2D sample T=3 snippets ("triple frames", LGD Sec. 5.2; TSN's default K=3).
_TSN_INPUT = (1, 3, 3, 224, 224)


# --------------------------------------------------------------------------------------------
# Conv makers (R3D / MC3 / R(2+1)D differ only by these)
# --------------------------------------------------------------------------------------------
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


ConvMaker = Callable[..., nn.Module]


def stage_channels(channels: int, width: float) -> int:
    """``channels`` scaled by the width multiplier, at least 8 and a multiple of 8 (the rounding
    timm and MobileNet use for width multipliers); ``width=1`` returns ``channels``."""
    if width <= 0:
        raise ValueError(f"width: expected a positive multiplier, got {width}")
    return max(8, int(round(channels * width / 8)) * 8)


def _temporal_conv(planes: int, stride: int = 1) -> nn.Conv3d:
    # bias=False: a BN follows.  The authors' ResNet_S3D uses bias=True here (+2 * planes
    # parameters per block, 3,840 for ResNet-18); the BN makes that bias redundant.
    return nn.Conv3d(planes, planes, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False)


def _spatial_conv(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)


# --------------------------------------------------------------------------------------------
# Residual blocks
# --------------------------------------------------------------------------------------------
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


class _SeparableBlock(nn.Module):
    """Shared plumbing of S3D / P3D-A blocks: temporal convs callable with an extra input."""

    temporal_conv_names: tuple[str, ...] = ()

    def _temporal(self, name: str, x: Tensor, temporal_inputs: Mapping[str, Any] | None) -> Tensor:
        conv = getattr(self, name)
        if temporal_inputs is not None and name in temporal_inputs:
            return conv(x, temporal_inputs[name])
        return conv(x)


class SeparableBasicBlock(_SeparableBlock):
    """S3D basic block (TrajectoryNet Sec. 4.2): a 3x1x1 temporal conv + BN + ReLU after each
    1x3x3 spatial conv.  Order: conv1-bn1-act1, conv1_t-bn1_t-act1_t, conv2-bn2-act2_s,
    conv2_t-bn2_t, (+ shortcut), act2.  The ReLU after ``bn2_t`` is the block's output ReLU
    after the residual sum, as in the authors' ``ResNet_S3D``.
    """

    expansion = 1
    temporal_conv_names = ("conv1_t", "conv2_t")

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _spatial_conv(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv1_t = _temporal_conv(planes)
        self.bn1_t = nn.BatchNorm3d(planes)
        self.act1_t = nn.ReLU(inplace=True)
        self.conv2 = _spatial_conv(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.act2_s = nn.ReLU(inplace=True)
        self.conv2_t = _temporal_conv(planes)
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


class SeparableBottleneck(_SeparableBlock):
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
        self.conv2 = _spatial_conv(planes, planes, stride)  # stride on the 3x3 conv, as in timm
        self.bn2 = nn.BatchNorm3d(planes)
        self.act2 = nn.ReLU(inplace=True)
        self.conv2_t = _temporal_conv(planes)
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


def _downsample(in_planes: int, out_planes: int, stride: tuple[int, int, int]) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm3d(out_planes))


def _init_video_weights(model: nn.Module) -> None:
    """torchvision's video-ResNet init: Kaiming (fan_out) convs, BN 1/0, fc N(0, 0.01)."""
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def _check_video_input(x: Tensor, in_chans: int, name: str) -> None:
    if x.dim() != 5 or x.shape[1] != in_chans:
        raise ValueError(f"{name} expects input (N, {in_chans}, T, H, W); got shape {tuple(x.shape)}")


class _VideoHead(nn.Module):
    """Shared timm-style head: ``forward_head`` = global average pool, dropout, fc."""

    global_pool: nn.Module
    dropout: nn.Module
    fc: nn.Linear

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(self.global_pool(x).flatten(1))
        return x if pre_logits else self.fc(x)


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------
class C2DResNet(_VideoHead):
    """TSN-style 2D ResNet on each frame with average consensus (LGD-2D's local path).

    The stem and stages are timm's own modules (``timm.create_model(arch)``), so state-dict keys
    and parameter count equal timm's.  ``forward_features`` returns ``(N, C, T, h, w)``.  The
    average over frames is taken on features before ``fc``; as ``fc`` is affine this equals
    TSN's average of per-frame class scores.  A 4-D input ``(N, C, H, W)`` is one frame.
    """

    def __init__(self, arch: str, num_classes: int = 400, dropout: float = 0.0, in_chans: int = 3) -> None:
        super().__init__()
        net2d = timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans)
        self.arch, self.in_chans, self.num_classes = arch, in_chans, num_classes
        self.conv1, self.bn1, self.act1, self.maxpool = net2d.conv1, net2d.bn1, net2d.act1, net2d.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net2d.layer1, net2d.layer2, net2d.layer3, net2d.layer4
        self.num_features = net2d.num_features
        self.global_pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = net2d.fc

    def forward_features(self, x: Tensor) -> Tensor:
        if x.dim() == 4:
            x = x.unsqueeze(2)
        _check_video_input(x, self.in_chans, type(self).__name__)
        n, t = x.shape[0], x.shape[2]
        x = x.transpose(1, 2).flatten(0, 1)  # fold time into the batch: (N*T, C, H, W)
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.unflatten(0, (n, t)).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class VideoResNet(_VideoHead):
    """torchvision's ``VideoResNet`` (R3D / MC3 / R(2+1)D) with timm's module names.

    ``conv_makers`` gives one conv maker per stage; ``stem`` is ``"r3d"`` (3x7x7 conv, stride
    (1, 2, 2)) or ``"r2plus1d"`` (1x7x7 to 45 channels, BN, ReLU, 3x1x1 to 64).  There is no
    max pool.  ``forward_features`` returns ``(N, 512, T/8, H/16, W/16)`` for R3D/R(2+1)D.
    """

    def __init__(
        self,
        conv_makers: Sequence[ConvMaker],
        layers: Sequence[int],
        stem: str = "r3d",
        num_classes: int = 400,
        dropout: float = 0.0,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if len(conv_makers) != 4 or len(layers) != 4:
            raise ValueError(f"conv_makers and layers need 4 entries; got {len(conv_makers)} and {len(layers)}")
        self.in_chans, self.num_classes = in_chans, num_classes
        if stem == "r3d":
            self.conv1: nn.Module = nn.Conv3d(in_chans, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False)
        elif stem == "r2plus1d":
            self.conv1 = Conv2Plus1d(in_chans, 64, 45, stride=2, spatial_kernel=7, temporal_stride=1)
        else:
            raise ValueError(f"stem must be 'r3d' or 'r2plus1d'; got {stem!r}")
        self.bn1 = nn.BatchNorm3d(64)
        self.act1 = nn.ReLU(inplace=True)
        in_planes = 64
        for i, (maker, depth) in enumerate(zip(conv_makers, layers)):
            planes, stride = 64 * 2**i, 1 if i == 0 else 2
            downsample = None
            if stride != 1 or in_planes != planes:
                downsample = _downsample(in_planes, planes, maker.downsample_stride(stride))
            blocks = [VideoBasicBlock(in_planes, planes, maker, stride, downsample)]
            blocks += [VideoBasicBlock(planes, planes, maker) for _ in range(1, depth)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            in_planes = planes
        self.num_features = in_planes
        self.global_pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_planes, num_classes)
        _init_video_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        _check_video_input(x, self.in_chans, type(self).__name__)
        x = self.act1(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class SeparableResNet(_VideoHead):
    """S3D / P3D-A ResNet: separable blocks, stem, temporal max pools ``pool1`` and ``pool2``.

    ``stem_temporal_conv`` adds ``conv1_t``-``bn1_t``-``act1_t`` after the 1x7x7 stem conv
    (P3D, LGD Table 1 "conv1").  ``pool1`` follows the stem, ``pool2`` follows ``layer1``.
    Blocks only stride in space; the shortcut conv is 1x1x1 with stride (1, 2, 2).

    ``width`` multiplies every channel count (``stage_channels``); 1.0 is the published
    network.  Narrow nets are how the mini protocol fits a CPU (they load no 2-D weights).

    ``forward_features(x, temporal_inputs)``: ``temporal_inputs`` maps temporal-conv module paths
    (see :func:`temporal_conv_paths`) to an extra argument for that module, which is then called
    as ``module(features, extra)`` -- the hook TrajectoryNet uses to feed trajectories.
    """

    def __init__(
        self,
        block: type[_SeparableBlock],
        layers: Sequence[int],
        pool1: nn.Module,
        pool2: nn.Module,
        stem_temporal_conv: bool = False,
        num_classes: int = 400,
        dropout: float = 0.0,
        in_chans: int = 3,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        stem = stage_channels(64, width)
        self.in_chans, self.num_classes, self.width = in_chans, num_classes, width
        self.conv1 = nn.Conv3d(in_chans, stem, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(stem)
        self.act1 = nn.ReLU(inplace=True)
        self.stem_temporal_conv = stem_temporal_conv
        if stem_temporal_conv:
            self.conv1_t = _temporal_conv(stem)
            self.bn1_t = nn.BatchNorm3d(stem)
            self.act1_t = nn.ReLU(inplace=True)
        self.pool1 = pool1
        self.pool2 = pool2
        in_planes = stem
        for i, depth in enumerate(layers):
            planes, stride = stage_channels(64 * 2**i, width), 1 if i == 0 else 2
            out_planes = planes * block.expansion
            downsample = None
            if stride != 1 or in_planes != out_planes:
                downsample = _downsample(in_planes, out_planes, (1, stride, stride))
            blocks = [block(in_planes, planes, stride, downsample)]
            blocks += [block(out_planes, planes) for _ in range(1, depth)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            in_planes = out_planes
        self.num_features = in_planes
        self.global_pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_planes, num_classes)
        _init_video_weights(self)

    def stages(self) -> list[nn.Sequential]:
        """``[layer1, layer2, layer3, layer4]``; each is a sequence of residual units."""
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward_stem(self, x: Tensor, temporal_inputs: Mapping[str, Any] | None = None) -> Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        if self.stem_temporal_conv:
            conv_t = self.conv1_t
            extra = None if temporal_inputs is None else temporal_inputs.get("conv1_t")
            x = conv_t(x) if extra is None else conv_t(x, extra)
            x = self.act1_t(self.bn1_t(x))
        return self.pool1(x)

    def forward_features(self, x: Tensor, temporal_inputs: Mapping[str, Any] | None = None) -> Tensor:
        _check_video_input(x, self.in_chans, type(self).__name__)
        if temporal_inputs:
            unknown = set(temporal_inputs) - set(temporal_conv_paths(self))
            if unknown:
                raise KeyError(
                    f"temporal_inputs names no temporal conv: {sorted(unknown)}; "
                    f"known: {temporal_conv_paths(self)}"
                )
        x = self.forward_stem(x, temporal_inputs)
        for i, stage in enumerate(self.stages()):
            for j, blk in enumerate(stage):
                prefix = f"layer{i + 1}.{j}."
                extra = None
                if temporal_inputs:
                    extra = {k[len(prefix):]: v for k, v in temporal_inputs.items() if k.startswith(prefix)}
                x = blk(x, extra or None)
            if i == 0:
                x = self.pool2(x)
        return x

    def forward(self, x: Tensor, temporal_inputs: Mapping[str, Any] | None = None) -> Tensor:
        return self.forward_head(self.forward_features(x, temporal_inputs))


# --------------------------------------------------------------------------------------------
# Weights: checkpoint files, I3D inflation, torchvision mapping
# --------------------------------------------------------------------------------------------
@dataclass
class InflationReport:
    """What :func:`inflate_from_2d` did, by 3D parameter/buffer name."""

    copied: list[str] = field(default_factory=list)  # same shape (BN, fc, 1xkxk as 1-frame)
    inflated: list[str] = field(default_factory=list)  # 2D kernel spread over t > 1 frames
    identity: list[str] = field(default_factory=list)  # temporal convs set to the identity
    kept_init: list[str] = field(default_factory=list)  # no 2D counterpart: random init kept
    unused_2d: list[str] = field(default_factory=list)  # 2D tensors that went nowhere


def load_checkpoint_state(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a state dict from a local file with ``torch.load(weights_only=True)``.

    Accepts a bare state dict or one nested under ``state_dict`` / ``model``; strips a
    ``module.`` prefix (DataParallel).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained_file '{path}' does not exist")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"pretrained_file '{path}': expected a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def inflate_conv_weight(weight_2d: Tensor, temporal_size: int, mode: str = "mean") -> Tensor:
    """``(O, I, k, k)`` -> ``(O, I, t, k, k)``.

    ``"mean"``: repeat over ``t`` and divide by ``t`` (I3D Sec. 2.3, "boring video" fixed
    point away from the clip borders).  ``"center"``: 2D kernel on the centre tap, zeros
    elsewhere (exact fixed point everywhere, including zero-padded borders).
    """
    if weight_2d.dim() != 4:
        raise ValueError(f"weight_2d must be (O, I, kH, kW); got shape {tuple(weight_2d.shape)}")
    if mode == "mean":
        return weight_2d.unsqueeze(2).repeat(1, 1, temporal_size, 1, 1) / temporal_size
    if mode == "center":
        out = weight_2d.new_zeros(*weight_2d.shape[:2], temporal_size, *weight_2d.shape[2:])
        out[:, :, temporal_size // 2] = weight_2d
        return out
    raise ValueError(f"inflate mode must be 'mean' or 'center'; got {mode!r}")


def _identity_temporal_kernel(weight: Tensor) -> Tensor:
    out_c, in_c, t = weight.shape[:3]
    kernel = torch.zeros_like(weight)
    kernel[:, :, t // 2, 0, 0] = torch.eye(out_c, in_c, dtype=weight.dtype)
    return kernel


def _is_temporal_conv_weight(name: str, tensor: Tensor) -> bool:
    return (
        name.endswith("_t.weight")
        and tensor.dim() == 5
        and tensor.shape[0] == tensor.shape[1]
        and tensor.shape[3:] == (1, 1)
    )


@torch.no_grad()
def inflate_from_2d(
    model: nn.Module, state_2d: Mapping[str, Tensor], mode: str = "mean", temporal_init: str = "identity"
) -> InflationReport:
    """Copy/inflate a timm 2D ResNet state dict into a video ResNet of this module, by name.

    ``temporal_init``: ``"identity"`` sets square ``*_t`` temporal convs to the identity (LGD
    Sec. 5.2); ``"default"`` keeps their random init.
    """
    if temporal_init not in ("identity", "default"):
        raise ValueError(f"temporal_init must be 'identity' or 'default'; got {temporal_init!r}")
    report = InflationReport()
    used: set[str] = set()
    own = model.state_dict()
    for name, target in own.items():
        source = state_2d.get(name)
        if source is not None and source.shape == target.shape:
            target.copy_(source)
            report.copied.append(name)
            used.add(name)
        elif source is not None and target.dim() == 5 and source.dim() == 4 and (
            target.shape[:2] + target.shape[3:] == source.shape
        ):
            t = target.shape[2]
            target.copy_(source.unsqueeze(2) if t == 1 else inflate_conv_weight(source, t, mode))
            (report.copied if t == 1 else report.inflated).append(name)
            used.add(name)
        elif temporal_init == "identity" and _is_temporal_conv_weight(name, target):
            target.copy_(_identity_temporal_kernel(target))
            report.identity.append(name)
        elif not name.endswith("num_batches_tracked"):
            report.kept_init.append(name)
    report.unused_2d = [k for k in state_2d if k not in used and not k.endswith("num_batches_tracked")]
    return report


def _torchvision_key(key: str) -> str:
    """One torchvision video-ResNet key -> ours (see :func:`torchvision_to_repro_state_dict`)."""
    rules = (
        (r"^stem\.0\.(.+)$", r"conv1.\1"),  # R3D/MC3 stem conv; R(2+1)D fixed below
        (r"^stem\.1\.(.+)$", r"bn1.\1"),
        (r"^(layer\d\.\d+)\.conv(\d)\.0\.0\.(.+)$", r"\1.conv\2.conv_s.\3"),  # Conv2Plus1D [0]
        (r"^(layer\d\.\d+)\.conv(\d)\.0\.1\.(.+)$", r"\1.conv\2.bn_s.\3"),
        (r"^(layer\d\.\d+)\.conv(\d)\.0\.3\.(.+)$", r"\1.conv\2.conv_t.\3"),
        (r"^(layer\d\.\d+)\.conv(\d)\.0\.(weight|bias)$", r"\1.conv\2.\3"),
        (r"^(layer\d\.\d+)\.conv(\d)\.1\.(.+)$", r"\1.bn\2.\3"),
    )
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key  # downsample.0/1, fc keep their names


def torchvision_to_repro_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Map a ``torchvision.models.video`` r3d/mc3/r2plus1d state dict onto :class:`VideoResNet`.

    torchvision: ``stem.{0,1}`` (R(2+1)D: ``stem.{0,1,3,4}``), ``layerX.Y.convK.{0,1}`` where
    ``convK.0`` is the conv (a ``Conv2Plus1D`` sequential ``{0,1,3}`` for R(2+1)D) and
    ``convK.1`` its BN.  Ours: ``conv1``/``bn1`` (``conv1.conv_s/bn_s/conv_t``), ``convK`` and
    ``bnK`` (``convK.conv_s/bn_s/conv_t``); ``downsample`` and ``fc`` are unchanged.
    """
    r2plus1d_stem = any(k.startswith("stem.3.") for k in state_dict)
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if r2plus1d_stem and key.startswith("stem."):
            idx, rest = key.split(".", 2)[1:]
            new = {"0": "conv1.conv_s", "1": "conv1.bn_s", "3": "conv1.conv_t", "4": "bn1"}[idx] + "." + rest
        else:
            new = _torchvision_key(key)
        out[new] = value
    return out


def _is_video_state(state: Mapping[str, Tensor]) -> bool:
    return any(v.dim() == 5 for v in state.values())


def _load_pretrained(
    model: nn.Module,
    arch_2d: str,
    pretrained_file: str | os.PathLike,
    in_chans: int,
    inflate_mode: str = "mean",
    temporal_init: str = "identity",
) -> InflationReport | None:
    """Load ``pretrained_file`` into ``model``: a video checkpoint of this very model directly;
    a timm 2D ``arch_2d`` checkpoint by loading it into the 2D net then inflating."""
    state = load_checkpoint_state(pretrained_file)
    if _is_video_state(state):
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"pretrained_file '{pretrained_file}' does not fit {type(model).__name__}: {err}") from err
        return None
    fc_weight = state.get("fc.weight")
    num_classes_2d = fc_weight.shape[0] if fc_weight is not None else 0
    in_chans_2d = state["conv1.weight"].shape[1] if "conv1.weight" in state else 3
    net2d = timm.create_model(arch_2d, pretrained=False, num_classes=num_classes_2d, in_chans=in_chans_2d)
    try:
        net2d.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"pretrained_file '{pretrained_file}' is not a timm '{arch_2d}' checkpoint: {err}") from err
    state_2d = dict(net2d.state_dict())
    if in_chans != in_chans_2d:
        state_2d["conv1.weight"] = timm.models.adapt_input_conv(in_chans, state_2d["conv1.weight"], in_chans_2d)
    report = inflate_from_2d(model, state_2d, mode=inflate_mode, temporal_init=temporal_init)
    if num_classes_2d != getattr(model, "num_classes", num_classes_2d):
        _logger.info("fc not loaded: %d classes in %s, %d in the model", num_classes_2d, pretrained_file, model.num_classes)
    own = model.state_dict()
    missed_convs = [k for k in report.kept_init if k.endswith("weight") and own[k].dim() == 5]
    if missed_convs:
        warnings.warn(
            f"{type(model).__name__}: {len(missed_convs)} conv weights have no 2D counterpart in "
            f"'{pretrained_file}' and keep their random init: {missed_convs[:6]}{' ...' if len(missed_convs) > 6 else ''}",
            stacklevel=3,
        )
    return report


# --------------------------------------------------------------------------------------------
# Temporal-conv positions (TrajectoryNet hook)
# --------------------------------------------------------------------------------------------
CAFFE_TO_TIMM: dict[str, str] = {"res2": "layer1", "res3": "layer2", "res4": "layer3", "res5": "layer4"}
"""Caffe ResNet stage names (TrajectoryNet Table 2) -> timm stage names."""

_CAFFE_POSITION = re.compile(r"^(res[2-5])([a-z])(\d*)(?:\.conv([\d,]+))?$")


def temporal_conv_paths(model: nn.Module) -> list[str]:
    """Module paths of every replaceable temporal conv, e.g. ``layer2.1.conv1_t``."""
    paths = ["conv1_t"] if getattr(model, "stem_temporal_conv", False) else []
    for name, module in model.named_modules():
        if isinstance(module, _SeparableBlock):
            paths += [f"{name}.{t}" for t in module.temporal_conv_names]
    return paths


def _caffe_block_index(letter: str, number: str, position: str) -> int:
    # ResNet-50 Caffe names count blocks a, b, c, ...; ResNet-101 ones a, b1, b2, ...
    if number:
        if letter != "b":
            raise ValueError(f"position '{position}': a numbered block must be 'b<k>' (e.g. res3b1)")
        return int(number)
    return ord(letter) - ord("a")


def resolve_temporal_position(model: nn.Module, position: str) -> list[str]:
    """Module paths of the temporal convs named by ``position``.

    ``position`` is a Caffe-style name (``res3b1.conv1``, ``res3b1.conv1,2``, ``res2a``; see the
    module docstring) or a module path from :func:`temporal_conv_paths`.
    """
    known = temporal_conv_paths(model)
    if position in known:
        return [position]
    match = _CAFFE_POSITION.match(position)
    if match is None:
        raise ValueError(f"position '{position}' is neither a Caffe name like 'res3b1.conv1' nor one of {known}")
    stage, letter, number, convs = match.groups()
    block_path = f"{CAFFE_TO_TIMM[stage]}.{_caffe_block_index(letter, number, position)}"
    try:
        block = model.get_submodule(block_path)
    except AttributeError:
        raise ValueError(f"position '{position}': the model has no block {block_path}") from None
    if not isinstance(block, _SeparableBlock):
        raise ValueError(f"position '{position}': {block_path} is a {type(block).__name__}, not a separable block")
    names = block.temporal_conv_names
    if convs is None:
        return [f"{block_path}.{n}" for n in names]
    paths = []
    for k in convs.split(","):
        if not 1 <= int(k) <= len(names):
            raise ValueError(f"position '{position}': {block_path} has temporal convs {list(names)} (conv1..conv{len(names)})")
        paths.append(f"{block_path}.{names[int(k) - 1]}")
    return paths


def replace_temporal_conv(model: nn.Module, position: str, factory: Callable[[nn.Conv3d], nn.Module]) -> list[str]:
    """Replace the temporal conv(s) at ``position`` with ``factory(old_conv)``; returns the paths.

    The new module is called as ``module(x)``, or as ``module(x, extra)`` when the forward pass
    gets ``temporal_inputs={path: extra}``.
    """
    paths = resolve_temporal_position(model, position)
    for path in paths:
        parent_path, _, attr = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        setattr(parent, attr, factory(getattr(parent, attr)))
    return paths


# --------------------------------------------------------------------------------------------
# Constructors
# --------------------------------------------------------------------------------------------
def _c2d(arch: str, num_classes: int, pretrained_file: str | None, dropout: float, in_chans: int) -> C2DResNet:
    model = C2DResNet(arch, num_classes=num_classes, dropout=dropout, in_chans=in_chans)
    if pretrained_file is not None:
        _load_pretrained(model, arch, pretrained_file, in_chans)
    return model


@register_model(paper="lgd", default_input=_TSN_INPUT, tags=("baseline", "tsn", "2d"))
def c2d_resnet18(num_classes: int = 400, pretrained_file: str | None = None, dropout: float = 0.0, in_chans: int = 3, **kwargs: Any) -> C2DResNet:
    """TSN-style C2D ResNet-18 (timm ``resnet18`` per frame + average consensus)."""
    return _c2d("resnet18", num_classes, pretrained_file, dropout, in_chans, **kwargs)


@register_model(paper="lgd", default_input=_TSN_INPUT, tags=("baseline", "tsn", "2d"))
def c2d_resnet34(num_classes: int = 400, pretrained_file: str | None = None, dropout: float = 0.0, in_chans: int = 3, **kwargs: Any) -> C2DResNet:
    """TSN-style C2D ResNet-34."""
    return _c2d("resnet34", num_classes, pretrained_file, dropout, in_chans, **kwargs)


@register_model(paper="lgd", default_input=_TSN_INPUT, tags=("baseline", "tsn", "2d"))
def c2d_resnet50(num_classes: int = 400, pretrained_file: str | None = None, dropout: float = 0.0, in_chans: int = 3, **kwargs: Any) -> C2DResNet:
    """TSN-style C2D ResNet-50 (LGD Table 2a "TSN baseline")."""
    return _c2d("resnet50", num_classes, pretrained_file, dropout, in_chans, **kwargs)


@register_model(paper="lgd", default_input=_TSN_INPUT, tags=("baseline", "tsn", "2d"))
def c2d_resnet101(num_classes: int = 400, pretrained_file: str | None = None, dropout: float = 0.0, in_chans: int = 3, **kwargs: Any) -> C2DResNet:
    """TSN-style C2D ResNet-101."""
    return _c2d("resnet101", num_classes, pretrained_file, dropout, in_chans, **kwargs)


_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def _video_resnet(
    depth: int,
    conv_makers: Sequence[ConvMaker],
    stem: str,
    num_classes: int,
    pretrained_file: str | None,
    dropout: float,
    in_chans: int,
    inflate_mode: str = "mean",
) -> VideoResNet:
    model = VideoResNet(conv_makers, _DEPTHS[depth], stem, num_classes=num_classes, dropout=dropout, in_chans=in_chans)
    if pretrained_file is not None:
        _load_pretrained(model, f"resnet{depth}", pretrained_file, in_chans, inflate_mode=inflate_mode)
    return model


_R3D = (Conv3dFull,) * 4
_MC3 = (Conv3dFull,) + (Conv3dSpatial,) * 3
_R2PLUS1D = (Conv2Plus1d,) * 4
_TAGS_TV = ("baseline", "torchvision")


@register_model(default_input=_VIDEO_INPUT, tags=_TAGS_TV)
def r3d_18(num_classes: int = 400, pretrained_file: str | None = None, dropout: float = 0.0, in_chans: int = 3, **kwargs: Any) -> VideoResNet:
    """R3D-18 (Tran et al. CVPR 2018), identical to ``torchvision.models.video.r3d_18``."""
    return _video_resnet(18, _R3D, "r3d", num_classes, pretrained_file, dropout, in_chans, **kwargs)


@register_model(default_input=_VIDEO_INPUT, tags=_TAGS_TV)
def r3d_34(num_classes: int = 400, pretrained_file: str | None = None, dropout: float = 0.0, in_chans: int = 3, **kwargs: Any) -> VideoResNet:
    """R3D-34: torchvision's R3D design with ResNet-34 depths (3, 4, 6, 3)."""
    return _video_resnet(34, _R3D, "r3d", num_classes, pretrained_file, dropout, in_chans, **kwargs)


@register_model(default_input=_VIDEO_INPUT, tags=_TAGS_TV)
def mc3_18(num_classes: int = 400, pretrained_file: str | None = None, dropout: float = 0.0, in_chans: int = 3, **kwargs: Any) -> VideoResNet:
    """MC3-18: 3D convs in ``layer1`` only, 1x3x3 after; identical to torchvision's ``mc3_18``."""
    return _video_resnet(18, _MC3, "r3d", num_classes, pretrained_file, dropout, in_chans, **kwargs)


@register_model(default_input=_VIDEO_INPUT, tags=_TAGS_TV)
def mc3_34(num_classes: int = 400, pretrained_file: str | None = None, dropout: float = 0.0, in_chans: int = 3, **kwargs: Any) -> VideoResNet:
    """MC3-34: MC3 with ResNet-34 depths."""
    return _video_resnet(34, _MC3, "r3d", num_classes, pretrained_file, dropout, in_chans, **kwargs)


@register_model(default_input=_VIDEO_INPUT, tags=_TAGS_TV)
def r2plus1d_18(num_classes: int = 400, pretrained_file: str | None = None, dropout: float = 0.0, in_chans: int = 3, **kwargs: Any) -> VideoResNet:
    """R(2+1)D-18, identical to ``torchvision.models.video.r2plus1d_18``."""
    return _video_resnet(18, _R2PLUS1D, "r2plus1d", num_classes, pretrained_file, dropout, in_chans, **kwargs)


@register_model(default_input=_VIDEO_INPUT, tags=_TAGS_TV)
def r2plus1d_34(num_classes: int = 400, pretrained_file: str | None = None, dropout: float = 0.0, in_chans: int = 3, **kwargs: Any) -> VideoResNet:
    """R(2+1)D-34 (Tran et al. Table 4) in torchvision's design."""
    return _video_resnet(34, _R2PLUS1D, "r2plus1d", num_classes, pretrained_file, dropout, in_chans, **kwargs)


def _separable(
    depth: int,
    num_classes: int,
    pretrained_file: str | None,
    dropout: float,
    in_chans: int,
    *,
    variant: str,
    temporal_init: str = "identity",
    width: float = 1.0,
) -> SeparableResNet:
    block = SeparableBasicBlock if depth < 50 else SeparableBottleneck
    if variant == "s3d":
        # Authors' ResNet_S3D defaults: stem max pool kernel (1, 3, 3) with stride (2, 2, 2);
        # pool2 (3, 1, 1) stride 2 after layer1.  16 frames -> 8 -> 4.  (Their 5x1x1 stem
        # temporal conv is built but never called in forward, so it is left out here.)
        pool1 = nn.MaxPool3d((1, 3, 3), stride=(2, 2, 2), padding=(0, 1, 1))
        pool2 = nn.MaxPool3d((3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0))
        stem_t = False
    else:
        # LGD Table 1: conv1 = 1x7x7 + 3x1x1 (16x56x56, no spatial max pool);
        # pool1 and pool2 = 2x1x1 max, stride (2, 1, 1).
        pool1 = nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1))
        pool2 = nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1))
        stem_t = True
    model = SeparableResNet(
        block, _DEPTHS[depth], pool1, pool2, stem_temporal_conv=stem_t,
        num_classes=num_classes, dropout=dropout, in_chans=in_chans, width=width,
    )
    if pretrained_file is not None:
        if width != 1.0:
            raise ValueError(f"pretrained_file: a width-{width} network has no 2-D checkpoint to load; use width=1.0")
        _load_pretrained(model, f"resnet{depth}", pretrained_file, in_chans, temporal_init=temporal_init)
    return model


@register_model(paper="trajectorynet", default_input=_VIDEO_INPUT, tags=("baseline", "s3d"))
def s3d_resnet18(num_classes: int = 400, pretrained_file: str | None = None, dropout: float = 0.2, in_chans: int = 3, **kwargs: Any) -> SeparableResNet:
    """Separable-3D ResNet-18, TrajectoryNet's base model (Sec. 4.2, dropout 0.2).  Table 3
    lists 15.2M parameters for Something-Something V1 (``num_classes=174``)."""
    return _separable(18, num_classes, pretrained_file, dropout, in_chans, variant="s3d", **kwargs)


@register_model(paper="trajectorynet", default_input=_VIDEO_INPUT, tags=("baseline", "s3d"))
def s3d_resnet34(num_classes: int = 400, pretrained_file: str | None = None, dropout: float = 0.2, in_chans: int = 3, **kwargs: Any) -> SeparableResNet:
    """Separable-3D ResNet-34."""
    return _separable(34, num_classes, pretrained_file, dropout, in_chans, variant="s3d", **kwargs)


@register_model(paper="trajectorynet", default_input=_VIDEO_INPUT, tags=("baseline", "s3d"))
def s3d_resnet50(num_classes: int = 400, pretrained_file: str | None = None, dropout: float = 0.2, in_chans: int = 3, **kwargs: Any) -> SeparableResNet:
    """Separable-3D ResNet-50 (one temporal conv per bottleneck, after the 1x3x3)."""
    return _separable(50, num_classes, pretrained_file, dropout, in_chans, variant="s3d", **kwargs)


# LGD does not state a dropout for P3D; 0.0 by default.
@register_model(paper="lgd", default_input=_VIDEO_INPUT, tags=("baseline", "p3d"))
def p3d_resnet50(num_classes: int = 400, pretrained_file: str | None = None, dropout: float = 0.0, in_chans: int = 3, **kwargs: Any) -> SeparableResNet:
    """P3D-A ResNet-50 as in LGD Table 1 (LGD-3D local path without the LGD blocks)."""
    return _separable(50, num_classes, pretrained_file, dropout, in_chans, variant="p3d", **kwargs)


@register_model(paper="lgd", default_input=_VIDEO_INPUT, tags=("baseline", "p3d"))
def p3d_resnet101(num_classes: int = 400, pretrained_file: str | None = None, dropout: float = 0.0, in_chans: int = 3, **kwargs: Any) -> SeparableResNet:
    """P3D-A ResNet-101 (LGD Sec. 4.2: Table 1 with more blocks)."""
    return _separable(101, num_classes, pretrained_file, dropout, in_chans, variant="p3d", **kwargs)
