"""Optimiser, learning-rate schedule and BN handling as the papers train their networks.

* SGD with momentum (all four papers), Adam/AdamW for the rows that ask for it.
* Per-branch learning rates (``RunConfig.branch_lr``: parameter-name prefix -> multiplier), e.g.
  TrajectoryNet fine-tunes MotionNet with a smaller rate than the backbone (Sec. 4.2).
* Schedules: constant, step (every ``step_size`` epochs), multi-step (TrajectoryNet Sec. 4.1:
  "initial learning rate of 0.01 ... reduced by 1/10 every 40 epochs") and cosine, each with an
  optional linear warm-up.  The schedule is a pure function of the (fractional) epoch, so a
  resumed run sets exactly the rate the uninterrupted run would have set.
* Partial BN (TSN, Wang et al. 2016, Sec. 3.2): every BatchNorm except the first is frozen.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn as nn

from repro.spec.schema import LRSchedule

__all__ = [
    "param_groups",
    "build_optimizer",
    "lr_factor",
    "set_learning_rate",
    "apply_partial_bn",
]

WARMUP_START = 0.01  # lr factor at the first warm-up iteration
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _branch_multiplier(name: str, branch_lr: dict[str, float]) -> float:
    """The multiplier of the longest prefix of ``branch_lr`` that ``name`` starts with (else 1)."""
    best, mult = -1, 1.0
    for prefix, m in branch_lr.items():
        if name.startswith(prefix) and len(prefix) > best:
            best, mult = len(prefix), float(m)
    return mult


def param_groups(model: nn.Module, branch_lr: dict[str, float] | None = None) -> list[dict]:
    """Split the trainable parameters into groups by learning-rate multiplier.

    Each group carries ``lr_mult`` (used by :func:`set_learning_rate`) and ``names`` (for error
    messages and tests).  A prefix of ``branch_lr`` that matches no parameter is an error: it is
    almost always a typo in the spec.
    """
    branch_lr = dict(branch_lr or {})
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for prefix in branch_lr:
        if not any(n.startswith(prefix) for n in names):
            roots = sorted({n.split(".")[0] for n in names})
            raise ValueError(f"branch_lr: prefix {prefix!r} matches no trainable parameter "
                             f"(top-level modules: {roots})")
    groups: dict[float, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        mult = _branch_multiplier(name, branch_lr)
        group = groups.setdefault(mult, {"params": [], "names": [], "lr_mult": mult})
        group["params"].append(param)
        group["names"].append(name)
    if not groups:
        raise ValueError("model has no trainable parameters")
    return [groups[m] for m in sorted(groups, reverse=True)]


def build_optimizer(model: nn.Module, *, name: str, lr: float, momentum: float = 0.9,
                    weight_decay: float = 0.0, branch_lr: dict[str, float] | None = None) -> torch.optim.Optimizer:
    """The optimiser a row's ``RunConfig`` names, with one parameter group per lr multiplier.

    Weight decay applies to every parameter, BN and biases included, as in the authors' MMAction
    (v1) configs, which pass ``weight_decay`` straight to ``torch.optim.SGD``.
    """
    groups = param_groups(model, branch_lr)
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer: expected one of 'sgd', 'adam', 'adamw', got {name!r}")


def lr_factor(epoch: float, *, epochs: int, schedule: LRSchedule | None, warmup_epochs: float = 0.0) -> float:
    """Multiplier of the base learning rate at fractional ``epoch`` (0 <= epoch < epochs).

    ``step`` and ``multistep`` change at whole epochs (as the papers state them); ``cosine``
    decays per iteration to 0 at ``epochs``.  During warm-up the factor is additionally scaled
    linearly from 0.01 to 1 over ``warmup_epochs`` (Goyal et al. 2017 style, per iteration;
    the 0.01 floor keeps the very first step from being a no-op).
    """
    schedule = schedule or LRSchedule(type="constant")
    if schedule.type == "constant":
        factor = 1.0
    elif schedule.type == "step":
        if not schedule.step_size or schedule.step_size <= 0:
            raise ValueError("lr_schedule: type 'step' needs a positive step_size (epochs)")
        factor = schedule.gamma ** (int(epoch) // schedule.step_size)
    elif schedule.type == "multistep":
        factor = schedule.gamma ** sum(1 for m in schedule.milestones if int(epoch) >= m)
    elif schedule.type == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * min(epoch / max(epochs, 1), 1.0)))
    else:  # pragma: no cover - the schema restricts the type
        raise ValueError(f"lr_schedule: unknown type {schedule.type!r}")
    if warmup_epochs > 0 and epoch < warmup_epochs:
        factor *= WARMUP_START + (1.0 - WARMUP_START) * epoch / warmup_epochs
    return factor


def set_learning_rate(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> float:
    """Set every group's lr to ``base_lr * factor * lr_mult``; return the base group's rate."""
    for g in optimizer.param_groups:
        g["lr"] = base_lr * factor * g.get("lr_mult", 1.0)
    return base_lr * factor


def _bn_layers(model: nn.Module) -> Iterable[nn.Module]:
    return (m for m in model.modules() if isinstance(m, _BN_TYPES))


def apply_partial_bn(model: nn.Module) -> int:
    """Partial BN (TSN Sec. 3.2): freeze statistics and affine parameters of every BatchNorm but
    the first.  Call after each ``model.train()`` (which would switch them back to training).

    Returns how many BN layers were frozen.
    """
    frozen = 0
    for i, bn in enumerate(_bn_layers(model)):
        if i == 0:
            continue
        bn.eval()
        for p in bn.parameters(recurse=False):
            p.requires_grad_(False)
        frozen += 1
    return frozen


def iteration_schedule(iterations: int, schedule: dict | None, steps_per_epoch: int) -> tuple[int, dict]:
    """A schedule the paper states in iterations (TVNet Sec. 5.2: "18000 iterations, lr /10 after
    10000 and 16000") as the engine's epochs of a dataset with ``steps_per_epoch`` steps:
    ``(epochs, lr_schedule)`` with ``epochs = ceil(iterations / steps_per_epoch)`` and every
    milestone / step size rounded to the nearest epoch.

    Departure: the engine decays at whole epochs and stops at the end of one, so a milestone may
    move by up to half an epoch and the run may take up to one epoch more than ``iterations``
    (UCF101 split 1 at batch 128: 74 steps an epoch, 18000 -> 244 epochs = 18056 steps, decays at
    epochs 135 and 216 = steps 9990 and 15984).
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch: expected >= 1, got {steps_per_epoch}")
    sched = dict(schedule or {"type": "constant"})
    to_epochs = lambda it: max(1, int(round(it / steps_per_epoch)))  # noqa: E731
    if sched.get("unit", "epoch") == "iteration":
        sched["milestones"] = [to_epochs(m) for m in sched.get("milestones") or []]
        if sched.get("step_size"):
            sched["step_size"] = to_epochs(sched["step_size"])
        sched["unit"] = "epoch"
    return int(math.ceil(iterations / steps_per_epoch)), sched
