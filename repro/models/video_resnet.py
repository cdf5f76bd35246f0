"""Video ResNets on timm's names: C2D/TSN, R3D, MC3, R(2+1)D, P3D-A and S3D.

Every network here keeps timm's ResNet names (``conv1``, ``bn1``, ``layer1`` ... ``layer4``,
``fc``; inside a block ``conv1``, ``bn1``, ``conv2``, ``bn2`` [, ``conv3``, ``bn3``],
``downsample.0/1``), so a timm 2D checkpoint maps onto them name by name, and the 3D-only parts
have their own names (``conv1_t``/``bn1_t`` temporal convs; ``conv_s``/``conv_t`` inside an
R(2+1)D factorised conv).  The blocks are in :mod:`repro.layers`; weight loading and inflation in
:mod:`repro.models._builder`; TrajectoryNet's positions in :mod:`repro.models.temporal_positions`.

Families (all take ``(N, C, T, H, W)`` and return logits ``(N, num_classes)``):

* ``c2d_resnet{18,34,50,101}`` -- TSN-style 2D baseline (LGD Fig. 3 "LGD-2D" local path without
  the LGD blocks): timm's 2D ResNet on every frame (frames folded into the batch), features
  averaged over time, space and frames (TSN average consensus), then ``fc``.  The modules *are*
  timm's, so the parameter count is exactly timm's.
* ``r3d_{18,34}``, ``mc3_{18,34}``, ``r2plus1d_{18,34}`` -- exactly torchvision's
  ``torchvision.models.video`` networks (Tran et al., "A Closer Look at Spatiotemporal
  Convolutions", CVPR 2018).  As in torchvision, the three differ only by the list of conv makers
  (:mod:`repro.layers.conv_makers`) and the stem.
  :func:`repro.models._builder.torchvision_to_repro_state_dict` maps torchvision's weights onto ours.
* ``p3d_resnet{50,101}`` -- P3D-A ResNet as laid out in LGD (Qiu et al., CVPR 2019) Table 1:
  every 3x3 conv becomes a 1x3x3 spatial conv then a 3x1x1 temporal conv in series, stem
  1x7x7 + 3x1x1, no spatial max pool, temporal max pools ``pool1`` (after the stem) and ``pool2``
  (after res2), 16x112x112 in, 4x7x7 out of res5.
* ``s3d_resnet{18,34,50}`` -- TrajectoryNet's Separable-3D ResNet (Zhao et al., NeurIPS 2018,
  Sec. 3.4 and 4.2): after every 2D spatial conv of a residual block, a 3x1x1 temporal conv +
  BN + ReLU; dropout 0.2 before ``fc``.  Temporal down-sampling as in the authors' ``ResNet_S3D``
  (open-mmlab/mmaction v1): stem max pool with temporal stride 2 and ``pool2`` (3x1x1, stride 2)
  after ``layer1``.

``pretrained_file=`` a local checkpoint: this very network's weights, or a timm 2D ResNet's,
inflated (see :mod:`repro.models._builder`).

Trajectory-convolution hook (S3D and P3D): ``model(x, temporal_inputs={"layer2.1.conv1_t": extra})``
calls the temporal conv at that path as ``module(features, extra)``
(:func:`repro.models.temporal_positions.replace_temporal_conv` swaps one in).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import timm
import torch.nn as nn
from torch import Tensor

from repro.layers.conv_makers import Conv2Plus1d, Conv3dFull, Conv3dSpatial, ConvMaker
from repro.layers.heads import VideoHead
from repro.layers.residual_blocks import (
    SeparableBasicBlock,
    SeparableBlock,
    SeparableBottleneck,
    VideoBasicBlock,
    shortcut,
)
from repro.layers.separable import temporal_conv
from repro.layers.stems import separable_stem_conv, video_stem_conv
from repro.layers.weight_init import init_video_weights
from repro.layers.width import stage_channels
from repro.models._builder import load_pretrained_video
from repro.models.contract import VideoModel
from repro.models.temporal_positions import temporal_conv_paths
from repro.registry import register_model

__all__ = [
    "C2DResNet",
    "VideoResNet",
    "SeparableResNet",
    "check_video_input",
]

_VIDEO_INPUT = (1, 3, 16, 112, 112)
# TSN / LGD-2D sample T=3 snippets ("triple frames", LGD Sec. 5.2; TSN's default K=3).
_TSN_INPUT = (1, 3, 3, 224, 224)
_TEST_INPUT = (2, 3, 4, 32, 32)  # the contract test's small clip (2 clips: BN in training mode)
_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def check_video_input(x: Tensor, in_chans: int, name: str) -> None:
    if x.dim() != 5 or x.shape[1] != in_chans:
        raise ValueError(f"{name} expects input (N, {in_chans}, T, H, W); got shape {tuple(x.shape)}")


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------
class C2DResNet(VideoHead, VideoModel):
    """TSN-style 2D ResNet on each frame with average consensus (LGD-2D's local path).

    The stem and stages are timm's own modules (``timm.create_model(arch)``), so state-dict keys
    and parameter count equal timm's.  ``forward_features`` returns ``(N, C, T, h, w)``.  The
    average over frames is taken on features before ``fc``; as ``fc`` is affine this equals
    TSN's average of per-frame class scores.  A 4-D input ``(N, C, H, W)`` is one frame.
    """

    def __init__(self, arch: str, num_classes: int = 400, dropout: float = 0.0, in_chans: int = 3,
                 width: float = 1.0) -> None:
        super().__init__()
        # ``width`` != 1: timm's own ResNet with every stage (and the stem) cut by stage_channels,
        # the mini protocol's stand-in (as SeparableResNet's width); 1.0 is exactly timm's arch.
        cut = {} if width == 1.0 else dict(stem_width=stage_channels(64, width),
                                           channels=tuple(stage_channels(c, width) for c in (64, 128, 256, 512)))
        net2d = timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans, **cut)
        self.arch, self.in_chans, self.num_classes, self.width = arch, in_chans, num_classes, width
        self.conv1, self.bn1, self.act1, self.maxpool = net2d.conv1, net2d.bn1, net2d.act1, net2d.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net2d.layer1, net2d.layer2, net2d.layer3, net2d.layer4
        self.num_features = net2d.num_features
        self.global_pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = net2d.fc

    def forward_features(self, x: Tensor) -> Tensor:
        if x.dim() == 4:
            x = x.unsqueeze(2)
        check_video_input(x, self.in_chans, type(self).__name__)
        n, t = x.shape[0], x.shape[2]
        x = x.transpose(1, 2).flatten(0, 1)  # fold time into the batch: (N*T, C, H, W)
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.unflatten(0, (n, t)).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class VideoResNet(VideoHead, VideoModel):
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
        self.conv1 = video_stem_conv(stem, in_chans)
        self.bn1 = nn.BatchNorm3d(64)
        self.act1 = nn.ReLU(inplace=True)
        in_planes = 64
        for i, (maker, depth) in enumerate(zip(conv_makers, layers)):
            planes, stride = 64 * 2**i, 1 if i == 0 else 2
            downsample = None
            if stride != 1 or in_planes != planes:
                downsample = shortcut(in_planes, planes, maker.downsample_stride(stride))
            blocks = [VideoBasicBlock(in_planes, planes, maker, stride, downsample)]
            blocks += [VideoBasicBlock(planes, planes, maker) for _ in range(1, depth)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            in_planes = planes
        self.num_features = in_planes
        self.global_pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_planes, num_classes)
        init_video_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        check_video_input(x, self.in_chans, type(self).__name__)
        x = self.act1(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class SeparableResNet(VideoHead, VideoModel):
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
        block: type[SeparableBlock],
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
        self.conv1 = separable_stem_conv(in_chans, stem)
        self.bn1 = nn.BatchNorm3d(stem)
        self.act1 = nn.ReLU(inplace=True)
        self.stem_temporal_conv = stem_temporal_conv
        if stem_temporal_conv:
            self.conv1_t = temporal_conv(stem)
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
                downsample = shortcut(in_planes, out_planes, (1, stride, stride))
            blocks = [block(in_planes, planes, stride, downsample)]
            blocks += [block(out_planes, planes) for _ in range(1, depth)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            in_planes = out_planes
        self.num_features = in_planes
        self.global_pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_planes, num_classes)
        init_video_weights(self)

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
        check_video_input(x, self.in_chans, type(self).__name__)
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
# Builders: one per network class; each registered variant is one line of arguments
# --------------------------------------------------------------------------------------------
def _create_c2d(variant: str, arch: str, pretrained_file: str | None = None, **kwargs: Any) -> C2DResNet:
    model = C2DResNet(arch, **kwargs)
    if pretrained_file is not None:
        if model.width != 1.0:
            raise ValueError(f"pretrained_file: a width-{model.width} network has no 2-D checkpoint to load; use width=1.0")
        load_pretrained_video(model, arch, pretrained_file, model.in_chans)
    return model


def _create_video_resnet(variant: str, depth: int, conv_makers: Sequence[ConvMaker], stem: str,
                         pretrained_file: str | None = None, inflate_mode: str = "mean", **kwargs: Any) -> VideoResNet:
    model = VideoResNet(conv_makers, _DEPTHS[depth], stem, **kwargs)
    if pretrained_file is not None:
        load_pretrained_video(model, f"resnet{depth}", pretrained_file, model.in_chans, inflate_mode=inflate_mode)
    return model


def _separable_pools(variant: str) -> tuple[nn.Module, nn.Module, bool]:
    """``(pool1, pool2, stem_temporal_conv)`` of an ``"s3d"`` or ``"p3d"`` network."""
    if variant == "s3d":
        # Authors' ResNet_S3D defaults: stem max pool kernel (1, 3, 3) with stride (2, 2, 2);
        # pool2 (3, 1, 1) stride 2 after layer1.  16 frames -> 8 -> 4.  (Their 5x1x1 stem
        # temporal conv is built but never called in forward, so it is left out here.)
        pool1 = nn.MaxPool3d((1, 3, 3), stride=(2, 2, 2), padding=(0, 1, 1))
        pool2 = nn.MaxPool3d((3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0))
        return pool1, pool2, False
    # LGD Table 1: conv1 = 1x7x7 + 3x1x1 (16x56x56, no spatial max pool);
    # pool1 and pool2 = 2x1x1 max, stride (2, 1, 1).
    return nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1)), nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1)), True


def _create_separable(variant: str, depth: int, kind: str, pretrained_file: str | None = None,
                      temporal_init: str = "identity", **kwargs: Any) -> SeparableResNet:
    block = SeparableBasicBlock if depth < 50 else SeparableBottleneck
    pool1, pool2, stem_t = _separable_pools(kind)
    model = SeparableResNet(block, _DEPTHS[depth], pool1, pool2, stem_temporal_conv=stem_t, **kwargs)
    if pretrained_file is not None:
        if model.width != 1.0:
            raise ValueError(f"pretrained_file: a width-{model.width} network has no 2-D checkpoint to load; use width=1.0")
        load_pretrained_video(model, f"resnet{depth}", pretrained_file, model.in_chans, temporal_init=temporal_init)
    return model


# --------------------------------------------------------------------------------------------
# Registered variants.  Common keyword arguments: num_classes (400), pretrained_file, dropout,
# in_chans (3); S3D / P3D also width, temporal_init; R3D / MC3 / R(2+1)D also inflate_mode.
# --------------------------------------------------------------------------------------------
_C2D = dict(paper="lgd", default_input=_TSN_INPUT, test_input=(2, 3, 2, 32, 32), tags=("baseline", "tsn", "2d"))
_TV = dict(default_input=_VIDEO_INPUT, test_input=_TEST_INPUT, tags=("baseline", "torchvision"))
_S3D = dict(paper="trajectorynet", default_input=_VIDEO_INPUT, test_input=_TEST_INPUT, tags=("baseline", "s3d"))
_P3D = dict(paper="lgd", default_input=_VIDEO_INPUT, test_input=_TEST_INPUT, tags=("baseline", "p3d"))
_R3D = (Conv3dFull,) * 4
_MC3 = (Conv3dFull,) + (Conv3dSpatial,) * 3
_R2PLUS1D = (Conv2Plus1d,) * 4


@register_model(**_C2D)
def c2d_resnet18(num_classes: int = 400, **kwargs: Any) -> C2DResNet:
    """TSN-style C2D ResNet-18 (timm ``resnet18`` per frame + average consensus)."""
    return _create_c2d("c2d_resnet18", "resnet18", num_classes=num_classes, **kwargs)


@register_model(**_C2D)
def c2d_resnet34(num_classes: int = 400, **kwargs: Any) -> C2DResNet:
    """TSN-style C2D ResNet-34."""
    return _create_c2d("c2d_resnet34", "resnet34", num_classes=num_classes, **kwargs)


@register_model(**_C2D)
def c2d_resnet50(num_classes: int = 400, **kwargs: Any) -> C2DResNet:
    """TSN-style C2D ResNet-50 (LGD Table 2a "TSN baseline")."""
    return _create_c2d("c2d_resnet50", "resnet50", num_classes=num_classes, **kwargs)


@register_model(**_C2D)
def c2d_resnet101(num_classes: int = 400, **kwargs: Any) -> C2DResNet:
    """TSN-style C2D ResNet-101."""
    return _create_c2d("c2d_resnet101", "resnet101", num_classes=num_classes, **kwargs)


@register_model(**_TV)
def r3d_18(num_classes: int = 400, **kwargs: Any) -> VideoResNet:
    """R3D-18 (Tran et al. CVPR 2018), identical to ``torchvision.models.video.r3d_18``."""
    model_args = dict(depth=18, conv_makers=_R3D, stem="r3d", num_classes=num_classes)
    return _create_video_resnet("r3d_18", **dict(model_args, **kwargs))


@register_model(**_TV)
def r3d_34(num_classes: int = 400, **kwargs: Any) -> VideoResNet:
    """R3D-34: torchvision's R3D design with ResNet-34 depths (3, 4, 6, 3)."""
    model_args = dict(depth=34, conv_makers=_R3D, stem="r3d", num_classes=num_classes)
    return _create_video_resnet("r3d_34", **dict(model_args, **kwargs))


@register_model(**_TV)
def mc3_18(num_classes: int = 400, **kwargs: Any) -> VideoResNet:
    """MC3-18: 3D convs in ``layer1`` only, 1x3x3 after; identical to torchvision's ``mc3_18``."""
    model_args = dict(depth=18, conv_makers=_MC3, stem="r3d", num_classes=num_classes)
    return _create_video_resnet("mc3_18", **dict(model_args, **kwargs))


@register_model(**_TV)
def mc3_34(num_classes: int = 400, **kwargs: Any) -> VideoResNet:
    """MC3-34: MC3 with ResNet-34 depths."""
    model_args = dict(depth=34, conv_makers=_MC3, stem="r3d", num_classes=num_classes)
    return _create_video_resnet("mc3_34", **dict(model_args, **kwargs))


@register_model(**_TV)
def r2plus1d_18(num_classes: int = 400, **kwargs: Any) -> VideoResNet:
    """R(2+1)D-18, identical to ``torchvision.models.video.r2plus1d_18``."""
    model_args = dict(depth=18, conv_makers=_R2PLUS1D, stem="r2plus1d", num_classes=num_classes)
    return _create_video_resnet("r2plus1d_18", **dict(model_args, **kwargs))


@register_model(**_TV)
def r2plus1d_34(num_classes: int = 400, **kwargs: Any) -> VideoResNet:
    """R(2+1)D-34 (Tran et al. Table 4) in torchvision's design."""
    model_args = dict(depth=34, conv_makers=_R2PLUS1D, stem="r2plus1d", num_classes=num_classes)
    return _create_video_resnet("r2plus1d_34", **dict(model_args, **kwargs))


@register_model(**_S3D)
def s3d_resnet18(num_classes: int = 400, **kwargs: Any) -> SeparableResNet:
    """Separable-3D ResNet-18, TrajectoryNet's base model (Sec. 4.2, dropout 0.2).  Table 3
    lists 15.2M parameters for Something-Something V1 (``num_classes=174``)."""
    model_args = dict(depth=18, kind="s3d", dropout=0.2, num_classes=num_classes)
    return _create_separable("s3d_resnet18", **dict(model_args, **kwargs))


@register_model(**_S3D)
def s3d_resnet34(num_classes: int = 400, **kwargs: Any) -> SeparableResNet:
    """Separable-3D ResNet-34."""
    model_args = dict(depth=34, kind="s3d", dropout=0.2, num_classes=num_classes)
    return _create_separable("s3d_resnet34", **dict(model_args, **kwargs))


@register_model(**_S3D)
def s3d_resnet50(num_classes: int = 400, **kwargs: Any) -> SeparableResNet:
    """Separable-3D ResNet-50 (one temporal conv per bottleneck, after the 1x3x3)."""
    model_args = dict(depth=50, kind="s3d", dropout=0.2, num_classes=num_classes)
    return _create_separable("s3d_resnet50", **dict(model_args, **kwargs))


# LGD does not state a dropout for P3D; 0.0 by default.
@register_model(**_P3D)
def p3d_resnet50(num_classes: int = 400, **kwargs: Any) -> SeparableResNet:
    """P3D-A ResNet-50 as in LGD Table 1 (LGD-3D local path without the LGD blocks)."""
    model_args = dict(depth=50, kind="p3d", dropout=0.0, num_classes=num_classes)
    return _create_separable("p3d_resnet50", **dict(model_args, **kwargs))


@register_model(**_P3D)
def p3d_resnet101(num_classes: int = 400, **kwargs: Any) -> SeparableResNet:
    """P3D-A ResNet-101 (LGD Sec. 4.2: Table 1 with more blocks)."""
    model_args = dict(depth=101, kind="p3d", dropout=0.0, num_classes=num_classes)
    return _create_separable("p3d_resnet101", **dict(model_args, **kwargs))
