"""BN-Inception (Inception-v2 with batch normalisation), the 2D backbone of TSN and of Dynamics.

Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing Internal
Covariate Shift", ICML 2015, Sec. 4.2 and Fig. 5 (the Inception network with BN after every conv,
5x5 convs replaced by two 3x3 convs, stride-2 inception blocks 3c and 4e).  The variant built here
is the one TSN released as Caffe ``bn_inception`` (Wang et al., "Temporal Segment Networks",
ECCV 2016, Sec. 3.2 "Network Architectures") and that "Recognize Actions by Disentangling
Components of Dynamics" (Zhao, Xiong, Lin, CVPR 2018, Sec. 3.1) builds on:

* every conv has a bias (Caffe) and is followed by BN and ReLU;
* pools use ``ceil_mode=True`` (Caffe's rounding); the inception avg pools include padding;
* ``inception_5b``'s pool branch is a **max** pool (3x3, stride 1) + 1x1 projection, every other
  stride-1 block uses an avg pool; the stride-2 blocks (3c, 4e) pass the max-pooled input on
  without projection;
* global average pool, dropout, ``fc`` (1024 -> classes).

Channel table (Ioffe & Szegedy Fig. 5; :data:`BLOCKS`): 1x1 | 3x3 reduce -> 3x3 | double-3x3
reduce -> 3x3 -> 3x3 | pool -> proj.  With 1000 classes: 11,295,240 parameters (10,270,240
without ``fc``) and 2,032,600,064 conv + linear MACs at 1x3x224x224 (2.03 GMACs: 2,031,576,064 conv +
1,024,000 fc, counted by fvcore through :mod:`repro.profile`).

Names follow TSN-PyTorch / Cadene's ``pretrainedmodels`` port, so a converted TSN or Caffe
checkpoint maps key by key: each conv is a flat attribute (``conv1_7x7_s2``,
``inception_3a_1x1``, ``inception_3a_3x3_reduce``, ``inception_3a_double_3x3_1``,
``inception_3a_pool_proj``, ...) and its BN is ``<conv>_bn``; the classifier is ``fc``.
:func:`load_bninception_state` also accepts TSN's ``base_model.`` / ``new_fc.`` keys, Cadene's
``last_linear.`` and Caffe's ``/`` separators.  Those weights expect BGR images in [0, 255]
minus the mean [104, 117, 128] (std 1); normalisation is the data pipeline's job, not the model's.

Stages (:attr:`BNInception.stage_names`) split the network at block boundaries:
``conv1`` (conv1_7x7_s2 + BN + ReLU: Dynamics' shared 64-channel low-level feature), ``pool1``,
``conv2`` (conv2_3x3_reduce and conv2_3x3), ``pool2``, ``inception_3a`` ... ``inception_5b``.
``forward_until(x, name)`` returns the output of stage ``name``; ``forward_from(f, name)``
continues from it to the logits, so ``forward_from(forward_until(x, n), n) == forward(x)``;
``forward_stages(x, start, end)`` runs the stages in between (for temporal pooling inserted at
``pool2``, ``inception_3c``, ``inception_4e``, Dynamics Sec. 4.2).

For the mini protocol ``width`` scales every conv's output channels (:func:`stage_channels`:
rounded to a multiple of 8, at least 8) and ``conv1_stride=1`` keeps conv1 at full resolution
(Dynamics Table 3's "224 map" vs "112 map").
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from repro.layers.width import stage_channels
from repro.models._builder import load_checkpoint_state
from repro.models.contract import VideoModel
from repro.registry import register_model

__all__ = [
    "InceptionSpec",
    "BLOCKS",
    "STAGE_NAMES",
    "FEATURE_STAGES",
    "BNInception",
    "tsn_key",
    "load_bninception_state",
    "bninception",
]

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InceptionSpec:
    """Output channels of one inception block's branches (Ioffe & Szegedy 2015, Fig. 5).

    ``c1x1 == 0`` and ``pool_proj == 0`` mark a stride-2 block: no 1x1 branch, and the pool branch
    is the stride-2 max pool of the input itself (its channels pass through unchanged).
    """

    c1x1: int
    c3x3_reduce: int
    c3x3: int
    double_reduce: int
    double: int
    pool: str  # "avg" or "max"
    pool_proj: int
    stride: int = 1


BLOCKS: dict[str, InceptionSpec] = {
    "inception_3a": InceptionSpec(64, 64, 64, 64, 96, "avg", 32),  # -> 256
    "inception_3b": InceptionSpec(64, 64, 96, 64, 96, "avg", 64),  # -> 320
    "inception_3c": InceptionSpec(0, 128, 160, 64, 96, "max", 0, stride=2),  # -> 576
    "inception_4a": InceptionSpec(224, 64, 96, 96, 128, "avg", 128),  # -> 576
    "inception_4b": InceptionSpec(192, 96, 128, 96, 128, "avg", 128),  # -> 576
    "inception_4c": InceptionSpec(160, 128, 160, 128, 160, "avg", 128),  # -> 608
    "inception_4d": InceptionSpec(96, 128, 192, 160, 192, "avg", 128),  # -> 608
    "inception_4e": InceptionSpec(0, 128, 192, 192, 256, "max", 0, stride=2),  # -> 1056
    "inception_5a": InceptionSpec(352, 192, 320, 160, 224, "avg", 128),  # -> 1024
    # 5b's pool branch is a max pool (Ioffe & Szegedy Fig. 5, TSN's prototxt); 5a's an avg pool.
    "inception_5b": InceptionSpec(352, 192, 320, 192, 224, "max", 128),  # -> 1024
}

STAGE_NAMES: tuple[str, ...] = ("conv1", "pool1", "conv2", "pool2", *BLOCKS)
# Dynamics: conv1 is the shared low-level feature (Sec. 3.1); temporal pools follow pool2,
# inception_3c and inception_4e (Sec. 4.2); inception_5b gives the 1024-d branch output.
FEATURE_STAGES: tuple[str, ...] = ("conv1", "pool2", "inception_3c", "inception_4e", "inception_5b")


def _pool_3x3_s2(x: Tensor) -> Tensor:
    # Caffe pooling: 3x3, stride 2, no padding, output size rounded up.
    return F.max_pool2d(x, 3, stride=2, ceil_mode=True)


class BNInception(VideoModel):
    """BN-Inception on ``(N, in_chans, H, W)`` -> logits ``(N, num_classes)``.

    ``num_classes=0`` replaces ``fc`` by the identity (the model returns the pooled
    ``num_features``-d vector).  ``features_only`` (True, or a sequence of stage names) makes
    ``forward`` return ``{stage: feature map}`` (default :data:`FEATURE_STAGES`, the points where
    Dynamics' static branch pools over time and the branches tap) and drops ``fc``.
    ``partial_bn=True`` is TSN's partial BN (Sec. 3.2 "Network Training"): in training mode every
    BN but the first keeps its running statistics and affine parameters frozen.
    ``feature_channels[stage]`` gives each stage's output channels.  H and W must keep the inputs
    of the stride-2 blocks 3c and 4e even (e.g. a multiple of 32, or of 16 with
    ``conv1_stride=1``): their conv and pool branches round odd sizes differently and could not
    be concatenated (in Caffe as here).
    """

    stage_names: tuple[str, ...] = STAGE_NAMES

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        width: float = 1.0,
        conv1_stride: int = 2,
        drop_rate: float = 0.0,
        partial_bn: bool = False,
        features_only: bool | Sequence[str] = False,
    ) -> None:
        super().__init__()
        if conv1_stride not in (1, 2):
            raise ValueError(f"conv1_stride: expected 1 or 2, got {conv1_stride}")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate: expected a probability in [0, 1), got {drop_rate}")
        self.feature_names = tuple(FEATURE_STAGES if features_only is True else features_only or ())
        for name in self.feature_names:
            if name not in STAGE_NAMES:
                raise ValueError(f"features_only: unknown stage '{name}'; stages are {', '.join(STAGE_NAMES)}")
        num_classes = 0 if self.feature_names else num_classes
        self.num_classes, self.in_chans, self.width = num_classes, in_chans, width
        self.conv1_stride, self.partial_bn = conv1_stride, partial_bn
        self._conv_bn("conv1_7x7_s2", in_chans, stage_channels(64, width), 7, conv1_stride)
        self._conv_bn("conv2_3x3_reduce", stage_channels(64, width), stage_channels(64, width), 1)
        channels = self._conv_bn("conv2_3x3", stage_channels(64, width), stage_channels(192, width), 3)
        self.feature_channels: dict[str, int] = {"conv1": stage_channels(64, width), "pool1": stage_channels(64, width),
                                                 "conv2": channels, "pool2": channels}
        for name, spec in BLOCKS.items():
            channels = self._inception(name, spec, channels, width)
            self.feature_channels[name] = channels
        self.num_features = channels
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(channels, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    # ---------------------------------------------------------------------------------- build
    def _conv_bn(self, name: str, cin: int, cout: int, k: int, stride: int = 1) -> int:
        # Caffe's bn_inception keeps the conv bias although a BN follows (redundant but part of
        # the published parameter count and of every converted checkpoint).
        self.add_module(name, nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=True))
        # PyTorch momentum 0.1 (Cadene's port writes Caffe's 0.9, which PyTorch reads as 1 - 0.9).
        self.add_module(f"{name}_bn", nn.BatchNorm2d(cout, eps=1e-5))
        return cout

    def _inception(self, name: str, spec: InceptionSpec, cin: int, width: float) -> int:
        ch = lambda c: stage_channels(c, width)  # noqa: E731
        out = 0
        if spec.c1x1:
            out += self._conv_bn(f"{name}_1x1", cin, ch(spec.c1x1), 1)
        self._conv_bn(f"{name}_3x3_reduce", cin, ch(spec.c3x3_reduce), 1)
        out += self._conv_bn(f"{name}_3x3", ch(spec.c3x3_reduce), ch(spec.c3x3), 3, spec.stride)
        self._conv_bn(f"{name}_double_3x3_reduce", cin, ch(spec.double_reduce), 1)
        self._conv_bn(f"{name}_double_3x3_1", ch(spec.double_reduce), ch(spec.double), 3)
        out += self._conv_bn(f"{name}_double_3x3_2", ch(spec.double), ch(spec.double), 3, spec.stride)
        out += self._conv_bn(f"{name}_pool_proj", cin, ch(spec.pool_proj), 1) if spec.pool_proj else cin
        return out

    def _init_weights(self) -> None:
        # Ioffe & Szegedy do not state the init; He init for convs, TSN's N(0, 0.001) for fc.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.001)
                nn.init.zeros_(m.bias)

    # -------------------------------------------------------------------------------- forward
    def _cbr(self, x: Tensor, name: str) -> Tensor:
        return F.relu(self._modules[f"{name}_bn"](self._modules[name](x)))

    def _block(self, x: Tensor, name: str, spec: InceptionSpec) -> Tensor:
        # x: (N, C_in, h, w) -> (N, C_out, h/stride, w/stride)
        if spec.stride == 2 and (x.shape[-2] % 2 or x.shape[-1] % 2):
            raise ValueError(
                f"BNInception: {name} needs an even input size (its stride-2 conv and pool branches round odd "
                f"sizes differently); got {tuple(int(s) for s in x.shape[-2:])}: use H, W a multiple of {16 * self.conv1_stride}"
            )
        branches = [self._cbr(x, f"{name}_1x1")] if spec.c1x1 else []
        branches.append(self._cbr(self._cbr(x, f"{name}_3x3_reduce"), f"{name}_3x3"))
        d = self._cbr(self._cbr(x, f"{name}_double_3x3_reduce"), f"{name}_double_3x3_1")
        branches.append(self._cbr(d, f"{name}_double_3x3_2"))
        if spec.stride == 2:
            branches.append(_pool_3x3_s2(x))
        else:
            pooled = (F.max_pool2d(x, 3, stride=1, padding=1, ceil_mode=True) if spec.pool == "max"
                      else F.avg_pool2d(x, 3, stride=1, padding=1, ceil_mode=True, count_include_pad=True))
            branches.append(self._cbr(pooled, f"{name}_pool_proj"))
        return torch.cat(branches, dim=1)

    def _stage(self, x: Tensor, name: str) -> Tensor:
        if name == "conv1":
            return self._cbr(x, "conv1_7x7_s2")  # (N, 64, H/s, W/s)
        if name in ("pool1", "pool2"):
            return _pool_3x3_s2(x)
        if name == "conv2":
            return self._cbr(self._cbr(x, "conv2_3x3_reduce"), "conv2_3x3")
        return self._block(x, name, BLOCKS[name])

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"BNInception expects input (N, {self.in_chans}, H, W); got shape {tuple(x.shape)}")

    def _index(self, name: str | None, default: int) -> int:
        if name is None:
            return default
        if name not in STAGE_NAMES:
            raise ValueError(f"BNInception: unknown stage '{name}'; stages are {', '.join(STAGE_NAMES)}")
        return STAGE_NAMES.index(name)

    def forward_stages(self, x: Tensor, start: str | None = None, end: str | None = None) -> Tensor:
        """Run the stages after ``start`` (None: from the image) up to and including ``end``
        (None: ``inception_5b``).  ``x`` is the image or the output of stage ``start``."""
        first, last = self._index(start, -1) + 1, self._index(end, len(STAGE_NAMES) - 1)
        if first > last:
            raise ValueError(f"BNInception: stage '{end}' does not come after '{start}'")
        if start is None:
            self._check_input(x)
        for name in STAGE_NAMES[first:last + 1]:
            x = self._stage(x, name)
        return x

    def forward_until(self, x: Tensor, name: str) -> Tensor:
        """Output of stage ``name`` for the image ``x``."""
        return self.forward_stages(x, None, name)

    def forward_from(self, x: Tensor, name: str, pre_logits: bool = False) -> Tensor:
        """Logits (or pooled features) from ``x``, the output of stage ``name``."""
        if name != STAGE_NAMES[-1]:
            x = self.forward_stages(x, name, None)
        return self.forward_head(x, pre_logits=pre_logits)

    def forward_intermediates(self, x: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        """Feature maps of the stages ``names``, by name (runs only as far as the last one)."""
        for name in names:
            self._index(name, 0)
        self._check_input(x)
        out, last = {}, max(STAGE_NAMES.index(n) for n in names)
        for name in STAGE_NAMES[:last + 1]:
            x = self._stage(x, name)
            if name in names:
                out[name] = x
        return out

    def forward_features(self, x: Tensor) -> Tensor:
        """``(N, in_chans, H, W)`` -> ``(N, 1024, H/32, W/32)`` (``inception_5b``; H/16 with ``conv1_stride=1``)."""
        return self.forward_stages(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        # Global average pool (Caffe's 7x7 avg pool at 224 input; adaptive so other sizes work).
        x = self.dropout(F.adaptive_avg_pool2d(x, 1).flatten(1))
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor]:
        if self.feature_names:
            return self.forward_intermediates(x, self.feature_names)
        return self.forward_head(self.forward_features(x))

    # -------------------------------------------------------------------------- partial BN
    #: The BN partial BN leaves training: the one after the layer that sees the input (a net fed
    #: past conv1, as Dynamics' per-pair motion net, names its own).
    partial_bn_first = "conv1_7x7_s2_bn"

    def train(self, mode: bool = True) -> BNInception:
        super().train(mode)
        if mode and self.partial_bn:
            # TSN partial BN: only the first BN (conv1_7x7_s2_bn) adapts; the rest stay frozen.
            for name, m in self.named_modules():
                if isinstance(m, nn.BatchNorm2d) and name != self.partial_bn_first:
                    m.eval()
                    m.weight.requires_grad_(False)
                    m.bias.requires_grad_(False)
        return self


# ------------------------------------------------------------------------------ checkpoints
def tsn_key(key: str) -> str:
    """Map a TSN-PyTorch / Cadene / Caffe-converted key onto this module's names."""
    key = key.replace("/", "_").removeprefix("base_model.")
    for prefix in ("new_fc.", "last_linear."):
        if key.startswith(prefix):
            return "fc." + key[len(prefix):]
    return key


def load_bninception_state(model: BNInception, path: str | os.PathLike) -> list[str]:
    """Load a local BN-Inception checkpoint into ``model`` by name; returns the keys loaded.

    The file holds a state dict (or one under ``state_dict`` / ``model``).  ``fc`` is skipped
    when the class counts differ or the file has none (a backbone-only checkpoint).  A 3-channel
    ``conv1_7x7_s2`` loaded into a model with another ``in_chans`` (flow stacks, RGB differences)
    gets TSN's cross-modality init (Wang et al. 2016, Sec. 3.2): the weights averaged over the RGB
    channels and replicated over the new ones.  Any other missing, extra or mis-shaped tensor
    raises one ``ValueError`` naming the file and the first such key.
    """
    state = {tsn_key(k): v for k, v in load_checkpoint_state(path).items()}
    own = model.state_dict()
    if "fc.weight" in state and ("fc.weight" not in own or own["fc.weight"].shape != state["fc.weight"].shape):
        _logger.info("fc not loaded from %s: %s in the file, model has %d classes",
                     path, tuple(state["fc.weight"].shape), model.num_classes)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    conv1, own_conv1 = state.get("conv1_7x7_s2.weight"), own["conv1_7x7_s2.weight"]
    if conv1 is not None and conv1.shape[1] == 3 and model.in_chans != 3 and conv1.shape[0] == own_conv1.shape[0]:
        state["conv1_7x7_s2.weight"] = conv1.mean(dim=1, keepdim=True).expand_as(own_conv1).clone()
    optional = {k for k in own if k.endswith("num_batches_tracked") or k.startswith("fc.")}
    for key in own:
        if key not in state and key not in optional:
            raise ValueError(f"pretrained_file '{os.fspath(path)}': missing '{key}' for {type(model).__name__}")
    for key, value in state.items():
        if key not in own:
            raise ValueError(f"pretrained_file '{os.fspath(path)}': unexpected key '{key}' for {type(model).__name__}")
        if value.shape != own[key].shape:
            raise ValueError(f"pretrained_file '{os.fspath(path)}': '{key}' has shape {tuple(value.shape)}, "
                             f"the model expects {tuple(own[key].shape)} (width/in_chans differ?)")
    model.load_state_dict({**own, **state})
    return sorted(state)


# ------------------------------------------------------------------------------ constructor
@register_model(paper="dynamics", default_input=(1, 3, 224, 224), test_input=(2, 3, 64, 64), tags=("backbone", "tsn", "2d"))
def bninception(num_classes: int = 1000, pretrained_file: str | None = None, in_chans: int = 3, width: float = 1.0,
                conv1_stride: int = 2, drop_rate: float = 0.0, partial_bn: bool = False,
                features_only: bool | Sequence[str] = False, **kwargs: Any) -> BNInception:
    """BN-Inception (Ioffe & Szegedy 2015) as TSN uses it; ``pretrained_file`` a local checkpoint."""
    if kwargs:
        raise TypeError(f"bninception: unexpected arguments {sorted(kwargs)}")
    model = BNInception(num_classes=num_classes, in_chans=in_chans, width=width, conv1_stride=conv1_stride,
                        drop_rate=drop_rate, partial_bn=partial_bn, features_only=features_only)
    if pretrained_file is not None:
        load_bninception_state(model, pretrained_file)
    return model
