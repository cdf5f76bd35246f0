"""Where a trajectory conv goes: TrajectoryNet's Caffe-style positions -> module paths.

Separable networks (S3D, P3D-A; :mod:`repro.layers.residual_blocks`) keep each temporal conv as a
separately named module listed in ``block.temporal_conv_names``.  :func:`replace_temporal_conv`
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

import re
from collections.abc import Callable

import torch.nn as nn

from repro.layers.residual_blocks import SeparableBlock

__all__ = ["CAFFE_TO_TIMM", "temporal_conv_paths", "resolve_temporal_position", "replace_temporal_conv"]

CAFFE_TO_TIMM: dict[str, str] = {"res2": "layer1", "res3": "layer2", "res4": "layer3", "res5": "layer4"}
"""Caffe ResNet stage names (TrajectoryNet Table 2) -> timm stage names."""

_CAFFE_POSITION = re.compile(r"^(res[2-5])([a-z])(\d*)(?:\.conv([\d,]+))?$")


def temporal_conv_paths(model: nn.Module) -> list[str]:
    """Module paths of every replaceable temporal conv, e.g. ``layer2.1.conv1_t``."""
    paths = ["conv1_t"] if getattr(model, "stem_temporal_conv", False) else []
    for name, module in model.named_modules():
        if isinstance(module, SeparableBlock):
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
    if not isinstance(block, SeparableBlock):
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

