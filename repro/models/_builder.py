"""Building models from weights: checkpoint files, I3D inflation of 2-D ResNets, torchvision key maps.

Every family file builds its network, then calls one of these to fill it from a local file
(``pretrained_file=``; never a hub):

* :func:`load_checkpoint_state` -- a state dict from a file (bare, or under ``state_dict`` /
  ``model``; a DataParallel ``module.`` prefix stripped).
* :func:`load_weights_into` -- that state dict straight into a model, one-line error on a mismatch.
* :func:`load_pretrained_video` -- a video checkpoint of the very model, or a timm 2-D ResNet
  checkpoint inflated by :func:`inflate_from_2d`:

  - a conv whose 2D counterpart has the same name and channels gets the 2D kernel: ``1 x k x k``
    convs get it unchanged; full ``t x k x k`` convs get it repeated over time and divided by
    ``t`` (I3D inflation, Carreira & Zisserman 2017, Sec. 2.3; ``inflate_mode="center"`` puts it on
    the centre tap instead, which makes a video of identical frames give exactly the 2D output even
    at the clip borders);
  - BN layers and ``fc`` (when the class count matches) are copied;
  - temporal ``3 x 1 x 1`` convs (``*_t``) start as the identity (centre tap = identity matrix), as
    LGD Sec. 5.2 does for P3D ("the temporal convolutions ... are initialized as an identity
    mapping"); we use the same for S3D, where TrajectoryNet does not say.  Inflated P3D then
    computes the 2D network frame by frame (up to each fresh temporal BN's 1/sqrt(1 + eps));
    inflated S3D differs from it only by the ReLU S3D inserts after ``bn2`` of a basic block;
  - R(2+1)D's factorised convs have ``mid_planes`` channels that no 2D net has: they keep their
    random init and a warning lists them (Tran et al. train R(2+1)D from scratch).

* :func:`torchvision_to_repro_state_dict` -- ``torchvision.models.video`` r3d / mc3 / r2plus1d
  weights onto :class:`repro.models.video_resnet.VideoResNet`'s timm-style names.
"""
from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import timm
import torch
import torch.nn as nn
from torch import Tensor

__all__ = [
    "InflationReport",
    "load_checkpoint_state",
    "load_weights_into",
    "inflate_conv_weight",
    "inflate_from_2d",
    "torchvision_to_repro_state_dict",
    "load_pretrained_video",
]

_logger = logging.getLogger(__name__)


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


def load_weights_into(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a state dict file (see :func:`load_checkpoint_state`) into ``model``, strictly."""
    state = load_checkpoint_state(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{os.fspath(path)}: weights do not fit {type(model).__name__}: {err}") from err


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


def load_pretrained_video(
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

