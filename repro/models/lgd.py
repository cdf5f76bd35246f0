"""LGD-2D and LGD-3D networks of Qiu et al., "Learning Spatio-Temporal Representation with Local and
Global Diffusion", CVPR 2019 (§3-4, Fig. 3, Table 1), with the two training stages of §4.3.

* ``lgd2d_resnet{50,101}`` -- TSN ResNet (:class:`C2DResNet`, frames folded into the batch, T = 3
  "triple frames") with an LGD block on every residual unit.  The global vector is **per video**:
  P averages over all T frames and positions, US broadcasts a video's vector to all its frames.
* ``lgd3d_resnet{50,101}`` -- P3D-A ResNet of LGD Table 1 (:class:`SeparableResNet`) with an LGD
  block on every residual unit.  ``pool1_stride=4`` is the 128-frame "Long" setting (§5.4).

Wiring (:mod:`repro.layers.diffusion`): each bottleneck's final ReLU ``act3`` becomes the identity
and an :class:`LGDDiffusion` named ``lgd`` is attached to the unit, so ``F(x_{l-1})`` (residual +
shortcut) gets ``US(W^{x,g} g_{l-1})`` before the ReLU (Eq. 2) and ``g_l`` is updated from the
pooled **updated** map (Eq. 3).  Every backbone key keeps its baseline name (``layer1.0.conv1.weight``,
``fc.weight``), so a baseline or timm checkpoint loads by name; the LGD weights are
``layerI.J.lgd.*``, the global head ``fc_g.*``, the combination classifier ``head_c.*``.
g_1 = P(stem output) (§4.1), the stem having 64 channels, and W^{x,g}, W^{g,g} of a unit read
g_{l-1} with the previous unit's channels (the stem's for the first unit).

Parameters added to the baseline (default K = 400 classes), pinned in tests/test_lgd_models.py:
the low-rank weights ``lgd_network_extra_params(channels, stem_channels=64)`` -- ResNet-50:
7,194,624 (the paper's square form, every W as if C_{l-1} = C_l, would be 7,544,832; ours is
smaller because the first unit of each stage reads a narrower g_{l-1}: 64->256, 256->512,
512->1024, 1024->2048; 2 x 175,104 fewer), ResNet-101: 13,879,296 (paper form 14,229,504) -- plus
the stage-1 global head ``fc_g`` (2048·K + K = 819,600 at K = 400).  v1 keeps only W^{x,g}:
2,339,840 on ResNet-50.

MACs (``python -m repro profile``, 1x3x16x112x112 / 1x3x3x224x224, K = 400): lgd3d_resnet50
22,572,517,376 vs p3d_resnet50 22,566,371,328 (+6,146,048, +0.03 %); lgd2d_resnet50 12,268,374,016
vs c2d_resnet50 12,262,227,968 (+6,146,048).  The difference is the low-rank products a stage-1
*prediction* uses: each weight once per video (7,194,624) less the last unit's Eq. 3 update
(1,048,576), whose g_L, like ``fc_g``, no test-time output of ``predict="local"`` reads (the traced
graph drops them).  Elementwise ops (GAP, add, ReLU) add ~0.06 G in the all-ops count.

Two stages (§4.3), as two rows of a table chained by the run config's ``init:``:

* ``stage=1`` (Eq. 6): local head ``fc`` on P(x_L) (the baseline's own head) and global head
  ``fc_g`` on g_L, loss CE(local) + CE(global).  The engine's contract adds the cross-entropy of
  ``ModelOutput.logits`` to the model's named losses, and the model never sees labels, so in
  training mode ``logits = a + b`` (the sum of both heads' logits) and ``losses["two_heads"] =
  mean(lse(a) + lse(b) - lse(a + b))``: CE(a + b, y) + that term = CE(a, y) + CE(b, y) exactly,
  values and gradients (``loss_weights`` must leave ``two_heads`` at 1.0).  The training accuracy
  the trainer logs is therefore that of a + b.  **Which head predicts at stage-1 test time is
  unstated** (Table 2 evaluates stage-1 models): ``predict="local"`` (default; as the authors'
  later code returns at eval, and it makes a zero-initialised W^{x,g} reproduce the baseline
  exactly), ``"global"`` or ``"sum"``.  :meth:`LGDNetwork.head_logits` returns both heads.
* ``stage=2`` (Eq. 7): the two stage-1 heads are dropped and the combination classifier
  (:class:`CombinationClassifier`, Tensor Sketch d = 8192 by assumption) predicts; the whole
  network is tuned with its cross-entropy alone.  A stage-2 row sets ``model_args: {stage: 2}``
  and ``init: row:<paper>:<table>:<stage-1 row>``; the engine's ``load_init_weights`` then loads
  every backbone and LGD weight of stage 1's ``final.pt`` and reports ``fc``/``fc_g`` as
  unexpected and ``head_c`` as missing (tests/test_lgd_models.py checks it).  W_c's scale is an
  assumption (LGD states no init for it): ϕ is second order (‖ϕ‖ ~ ‖x_L‖²; at initialisation
  LGD-3D R50's logits would have std ~2e3), so the classifier rescales its fresh W_c on its first
  forward (the first stage-2 training batch) to logits of RMS 1 (:mod:`repro.layers.kernel_head`).

Initialisation (§5.2): from scratch, Xavier for the LGD projections (the convs keep the
baseline's init, so a baseline and its LGD network differ only by the blocks); with
``pretrained_file=`` (ImageNet ResNet, inflated for LGD-3D with identity temporal convs) W^{x,g}
starts at zero, so the network computes exactly its baseline at step 0.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from repro.layers.diffusion import VARIANTS, LGDDiffusion, global_pool
from repro.layers.kernel_head import DEFAULT_SKETCH_DIM, CombinationClassifier
from repro.models._builder import load_pretrained_video
from repro.models.contract import ModelOutput
from repro.models.late_fusion import LateFusion
from repro.models.video_resnet import (
    _DEPTHS,
    _TEST_INPUT,
    _TSN_INPUT,
    _VIDEO_INPUT,
    C2DResNet,
    SeparableResNet,
    _separable_pools,
    check_video_input,
)
from repro.layers.residual_blocks import SeparableBottleneck
from repro.registry import register_model

__all__ = ["LGDNetwork", "LGD2D", "LGD3D", "two_head_correction", "PREDICT"]

PREDICT = ("local", "global", "sum")


def two_head_correction(a: Tensor, b: Tensor) -> Tensor:
    """``mean(lse(a) + lse(b) - lse(a + b))`` over the batch, so that
    ``CE(a + b, y) + two_head_correction(a, b) = CE(a, y) + CE(b, y)`` (Eq. 6) for every label y:
    ``CE(z, y) = lse(z) - z_y`` and ``(a + b)_y = a_y + b_y``.  Non-negative."""
    return (torch.logsumexp(a, 1) + torch.logsumexp(b, 1) - torch.logsumexp(a + b, 1)).mean()


class LGDNetwork:
    """Mixin: LGD blocks on a ResNet's units, the stage-1 heads or the stage-2 classifier.

    The backbone class provides ``layer1..layer4``, ``fc``, ``dropout``, ``forward_head`` and
    ``_lgd_stem(video) -> (x (N·S, C, ...), n, segments)``; :meth:`_lgd_after_stage` may pool.
    """

    def _init_lgd(self, variant: str, stage: int, predict: str, zero_init_g2l: bool, sketch_dim: int,
                  signed_sqrt: bool, stem_channels: int) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
        if stage not in (1, 2):
            raise ValueError(f"stage: expected 1 (two heads, Eq. 6) or 2 (combination classifier, Eq. 7), got {stage!r}")
        if predict not in PREDICT:
            raise ValueError(f"predict: expected one of {PREDICT}, got {predict!r}")
        self.variant, self.stage, self.predict = variant, stage, predict
        previous = stem_channels
        for unit in self.lgd_units():
            if not isinstance(getattr(unit, "act3", None), nn.ReLU):
                raise ValueError(f"LGD: {type(unit).__name__} has no final ReLU 'act3' to move after Eq. 2")
            channels = unit.bn3.num_features
            unit.act3 = nn.Identity()  # the ReLU of Eq. 2 comes after the global residual
            unit.lgd = LGDDiffusion(channels, previous, variant=variant, zero_init_g2l=zero_init_g2l)
            previous = channels
        k = self.num_classes
        if stage == 1:
            self.fc_g = nn.Linear(self.num_features, k)  # W_g of Eq. 6; W_x is the baseline's fc
        else:
            del self.fc  # Eq. 7: the stage-1 heads are dropped
            self.head_c = CombinationClassifier(self.num_features, k, sketch_dim, signed_sqrt=signed_sqrt,
                                                dropout=self.dropout.p)

    def lgd_units(self) -> list[nn.Module]:
        """Every residual unit, in order (each carries one LGD block)."""
        return [unit for stage in (self.layer1, self.layer2, self.layer3, self.layer4) for unit in stage]

    def lgd_channels(self) -> list[int]:
        return [unit.lgd.channels for unit in self.lgd_units()]

    def forward_lgd(self, video: Tensor) -> tuple[Tensor, Tensor, int]:
        """``(x_L (N·S, C, [T,] h, w), g_L (N, C), S)``: the last local map and global vector."""
        x, segments = self._lgd_stem(video)
        g = global_pool(x, segments)  # g_1 = P(x_1) of the stem output (§4.1), per video
        for i, stage in enumerate((self.layer1, self.layer2, self.layer3, self.layer4)):
            for unit in stage:
                x, g = unit.lgd(unit(x), g, segments)  # Eq. 2-3 around F = the unit incl. shortcut
            x = self._lgd_after_stage(i, x)
        return x, g, segments

    def head_logits(self, x: Tensor, g: Tensor, segments: int) -> dict[str, Tensor]:
        """Stage 1: ``{"local": W_x P(x_L), "global": W_g g_L}``, each ``(N, K)`` (Eq. 6)."""
        local = self.forward_head(self._as_video_map(x, segments))  # the baseline's own pool + fc
        return {"local": local, "global": self.fc_g(self.dropout(g))}

    def forward_output(self, video: Tensor) -> ModelOutput:
        x, g, segments = self.forward_lgd(video)
        if self.stage == 2:
            return ModelOutput(self.head_c(x, g, segments))  # Eq. 7
        heads = self.head_logits(x, g, segments)
        a, b = heads["local"], heads["global"]
        if self.training:  # Eq. 6 through the contract: CE(a + b) + correction = CE(a) + CE(b)
            return ModelOutput(a + b, {"two_heads": two_head_correction(a, b)})
        return ModelOutput({"local": a, "global": b, "sum": a + b}[self.predict])

    def forward(self, video: Tensor) -> Tensor:
        return self.forward_output(video).logits

    def _lgd_after_stage(self, index: int, x: Tensor) -> Tensor:
        return x


class LGD2D(LGDNetwork, C2DResNet):
    """LGD-2D (§4.1): TSN ResNet per frame; the T input frames of a clip are the video's segments,
    one global vector per video.  ``(N, 3, T, H, W) -> (N, K)``."""

    def __init__(self, arch: str, num_classes: int = 400, dropout: float = 0.0, in_chans: int = 3,
                 width: float = 1.0, *, variant: str = "full", stage: int = 1, predict: str = "local",
                 zero_init_g2l: bool = False, sketch_dim: int = DEFAULT_SKETCH_DIM, signed_sqrt: bool = False) -> None:
        C2DResNet.__init__(self, arch, num_classes=num_classes, dropout=dropout, in_chans=in_chans, width=width)
        self._init_lgd(variant, stage, predict, zero_init_g2l, sketch_dim, signed_sqrt, self.bn1.num_features)

    def _lgd_stem(self, video: Tensor) -> tuple[Tensor, int]:
        check_video_input(video, self.in_chans, type(self).__name__)
        t = video.shape[2]
        x = video.transpose(1, 2).flatten(0, 1)  # (N·T, C, H, W), video-major
        return self.maxpool(self.act1(self.bn1(self.conv1(x)))), t

    def _as_video_map(self, x: Tensor, segments: int) -> Tensor:
        return x.unflatten(0, (-1, segments)).transpose(1, 2)  # (N, C, T, h, w), as C2DResNet

    def forward_features(self, x: Tensor) -> Tensor:
        local, _, segments = self.forward_lgd(x)
        return self._as_video_map(local, segments)


class LGD3D(LGDNetwork, SeparableResNet):
    """LGD-3D (§4.2): P3D-A ResNet of LGD Table 1.  ``(N, 3, T, H, W) -> (N, K)``; 16x112x112 in,
    res5 4x7x7.  ``pool1_stride``: temporal stride (and kernel) of ``pool1``, 2 by Table 1, 4 for
    the 128-frame "Long" model (§5.4: 128 -> 32 -> 16 frames inside)."""

    def __init__(self, depth: int, num_classes: int = 400, dropout: float = 0.0, in_chans: int = 3,
                 width: float = 1.0, *, pool1_stride: int = 2, variant: str = "full", stage: int = 1,
                 predict: str = "local", zero_init_g2l: bool = False, sketch_dim: int = DEFAULT_SKETCH_DIM,
                 signed_sqrt: bool = False) -> None:
        if depth not in (50, 101):
            raise ValueError(f"LGD-3D depth: expected 50 or 101, got {depth}")
        if pool1_stride < 1:
            raise ValueError(f"pool1_stride: expected a positive temporal stride, got {pool1_stride}")
        pool1, pool2, stem_t = _separable_pools("p3d")
        if pool1_stride != 2:
            # §5.4 states only the stride; a kernel equal to the stride (2 in Table 1) pools every frame.
            pool1 = nn.MaxPool3d((pool1_stride, 1, 1), stride=(pool1_stride, 1, 1))
        SeparableResNet.__init__(self, SeparableBottleneck, _DEPTHS[depth], pool1, pool2, stem_temporal_conv=stem_t,
                                 num_classes=num_classes, dropout=dropout, in_chans=in_chans, width=width)
        self.depth, self.pool1_stride = depth, pool1_stride
        self._init_lgd(variant, stage, predict, zero_init_g2l, sketch_dim, signed_sqrt, self.bn1.num_features)

    def _lgd_stem(self, video: Tensor) -> tuple[Tensor, int]:
        check_video_input(video, self.in_chans, type(self).__name__)
        return self.forward_stem(video), 1

    def _lgd_after_stage(self, index: int, x: Tensor) -> Tensor:
        return self.pool2(x) if index == 0 else x  # Table 1: pool2 after res2

    def _as_video_map(self, x: Tensor, segments: int) -> Tensor:
        return x

    def forward_features(self, x: Tensor, temporal_inputs: Any = None) -> Tensor:
        if temporal_inputs:
            raise ValueError("LGD3D: temporal_inputs (trajectory convs) are not supported with LGD blocks")
        return self.forward_lgd(x)[0]


# --------------------------------------------------------------------------------------------
# Builders and registered variants
# --------------------------------------------------------------------------------------------
def _finish(model: LGDNetwork, arch_2d: str, pretrained_file: str | None, **load: Any) -> LGDNetwork:
    """Load an ImageNet (timm 2D) checkpoint, or one of this very network, and zero W^{x,g} after an
    ImageNet load (§5.2) so the global residual vanishes at the start."""
    if pretrained_file is None:
        return model
    if model.width != 1.0:
        raise ValueError(f"pretrained_file: a width-{model.width} network has no 2-D checkpoint to load; use width=1.0")
    if load_pretrained_video(model, arch_2d, pretrained_file, model.in_chans, **load) is not None:
        for unit in model.lgd_units():  # a 2-D (ImageNet) checkpoint was inflated: §5.2 init
            unit.lgd.zero_init_g2l = True
            unit.lgd.reset_parameters()
    return model


def _create_lgd2d(name: str, depth: int, pretrained_file: str | None = None, **kwargs: Any) -> LGD2D:
    return _finish(LGD2D(f"resnet{depth}", **kwargs), f"resnet{depth}", pretrained_file)


def _create_lgd3d(name: str, depth: int, pretrained_file: str | None = None, temporal_init: str = "identity",
                  **kwargs: Any) -> LGD3D:
    return _finish(LGD3D(depth, **kwargs), f"resnet{depth}", pretrained_file, temporal_init=temporal_init)


# Common keyword arguments: num_classes (400), variant ("full" | "v1" | "v2"), stage (1 | 2),
# predict ("local" | "global" | "sum", stage 1), width, dropout, pretrained_file, zero_init_g2l,
# sketch_dim, signed_sqrt; LGD-3D also pool1_stride (4 = "Long"), temporal_init.
_LGD2D = dict(paper="lgd", default_input=_TSN_INPUT, test_input=(2, 3, 2, 32, 32), tags=("lgd", "tsn", "2d"))
_LGD3D = dict(paper="lgd", default_input=_VIDEO_INPUT, test_input=_TEST_INPUT, tags=("lgd", "p3d"))


@register_model(**_LGD2D)
def lgd2d_resnet50(num_classes: int = 400, **kwargs: Any) -> LGD2D:
    """LGD-2D ResNet-50 (TSN ResNet-50 + LGD blocks, §4.1)."""
    model_args = dict(depth=50, num_classes=num_classes)
    return _create_lgd2d("lgd2d_resnet50", **dict(model_args, **kwargs))


@register_model(**_LGD2D)
def lgd2d_resnet101(num_classes: int = 400, **kwargs: Any) -> LGD2D:
    """LGD-2D ResNet-101."""
    model_args = dict(depth=101, num_classes=num_classes)
    return _create_lgd2d("lgd2d_resnet101", **dict(model_args, **kwargs))


@register_model(**_LGD3D)
def lgd3d_resnet50(num_classes: int = 400, **kwargs: Any) -> LGD3D:
    """LGD-3D ResNet-50 (P3D-A of LGD Table 1 + LGD blocks, §4.2)."""
    model_args = dict(depth=50, num_classes=num_classes)
    return _create_lgd3d("lgd3d_resnet50", **dict(model_args, **kwargs))


@register_model(**_LGD3D)
def lgd3d_resnet101(num_classes: int = 400, **kwargs: Any) -> LGD3D:
    """LGD-3D ResNet-101 (Tables 3-7's network)."""
    model_args = dict(depth=101, num_classes=num_classes)
    return _create_lgd3d("lgd3d_resnet101", **dict(model_args, **kwargs))


@register_model(paper="lgd", default_input=_VIDEO_INPUT, test_input=_TEST_INPUT, tags=("lgd", "p3d", "two_stream", "flow_input"))
def lgd3d_two_stream_resnet101(num_classes: int = 400, stage: int = 2, **kwargs: Any) -> LateFusion:
    """LGD-3D Two-stream (Tables 4-6): an RGB and a flow LGD-3D ResNet-101 (2 input channels), scores
    averaged (:class:`repro.models.late_fusion.LateFusion`; the fusion weights are not stated).  The
    streams are the tables' RGB and Flow rows, stage 2 (combination classifier, Eq. 7) by default;
    ``kwargs`` go to both (e.g. ``pool1_stride=4``)."""
    common = dict(num_classes=num_classes, stage=stage, **kwargs)
    return LateFusion(lgd3d_resnet101(**common), lgd3d_resnet101(in_chans=2, **common))
