"""Optimiser groups, learning-rate schedules, warm-up, partial BN."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from repro.engine.optim import (WARMUP_START, apply_partial_bn, build_optimizer, lr_factor, param_groups,
                                set_learning_rate)
from repro.engine.testing import TinyVideoNet
from repro.engine.trainer import resolve_settings
from repro.spec.schema import LRSchedule, RunConfig


def test_multistep_matches_trajectorynet_protocol():
    # Sec. 4.1: lr 0.01, divided by 10 every 40 epochs, 100 epochs
    sched = LRSchedule(type="multistep", milestones=[40, 80], gamma=0.1)
    assert [lr_factor(e, epochs=100, schedule=sched) for e in (0, 39.99, 40, 79.5, 80, 99)] == \
        pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_step_schedule_and_missing_step_size():
    sched = LRSchedule(type="step", step_size=3, gamma=0.5)
    assert [lr_factor(e, epochs=10, schedule=sched) for e in (0, 2.9, 3, 6.5, 9)] == pytest.approx(
        [1, 1, 0.5, 0.25, 0.125])
    with pytest.raises(ValueError, match="step_size"):
        lr_factor(0, epochs=10, schedule=LRSchedule(type="step"))


def test_cosine_and_constant():
    sched = LRSchedule(type="cosine")
    assert lr_factor(0, epochs=8, schedule=sched) == pytest.approx(1.0)
    assert lr_factor(4, epochs=8, schedule=sched) == pytest.approx(0.5)
    assert lr_factor(6, epochs=8, schedule=sched) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.75)))
    assert lr_factor(3.3, epochs=8, schedule=None) == 1.0


def test_warmup_is_linear_then_schedule():
    sched = LRSchedule(type="constant")
    assert lr_factor(0, epochs=5, schedule=sched, warmup_epochs=2) == pytest.approx(WARMUP_START)
    assert lr_factor(1, epochs=5, schedule=sched, warmup_epochs=2) == pytest.approx(WARMUP_START + (1 - WARMUP_START) / 2)
    assert lr_factor(2, epochs=5, schedule=sched, warmup_epochs=2) == 1.0


def test_branch_lr_groups_longest_prefix_wins():
    torch.manual_seed(0)
    model = TinyVideoNet(3, width=4)
    groups = param_groups(model, {"stem": 0.1, "stem.0": 0.5, "fc": 10.0})
    by_mult = {g["lr_mult"]: g["names"] for g in groups}
    assert by_mult[0.5] == ["stem.0.weight"]
    assert by_mult[0.1] == ["stem.1.weight", "stem.1.bias"]
    assert by_mult[10.0] == ["fc.weight", "fc.bias"]
    assert by_mult[1.0] == ["block.0.weight", "block.1.weight", "block.1.bias"]
    opt = build_optimizer(model, name="sgd", lr=0.2, momentum=0.9, weight_decay=1e-4,
                          branch_lr={"stem": 0.1, "stem.0": 0.5, "fc": 10.0})
    assert sorted(g["lr"] for g in opt.param_groups) == pytest.approx([0.02, 0.1, 0.2, 2.0])
    set_learning_rate(opt, 0.2, 0.5)
    assert sorted(g["lr"] for g in opt.param_groups) == pytest.approx([0.01, 0.05, 0.1, 1.0])
    assert all(g["momentum"] == 0.9 and g["weight_decay"] == 1e-4 for g in opt.param_groups)


def test_branch_lr_unknown_prefix_is_an_error():
    with pytest.raises(ValueError, match="motionnet"):
        param_groups(TinyVideoNet(3), {"motionnet": 0.1})


def test_optimizer_kinds():
    model = nn.Linear(2, 2)
    assert isinstance(build_optimizer(model, name="adam", lr=1e-3), torch.optim.Adam)
    assert isinstance(build_optimizer(model, name="adamw", lr=1e-3), torch.optim.AdamW)
    with pytest.raises(ValueError, match="optimizer"):
        build_optimizer(model, name="lamb", lr=1e-3)


def test_partial_bn_freezes_all_but_first():
    torch.manual_seed(0)
    model = TinyVideoNet(3, width=4).train()
    assert apply_partial_bn(model) == 1
    first, second = model.stem[1], model.block[1]
    assert first.training and first.weight.requires_grad
    assert not second.training and not second.weight.requires_grad and not second.bias.requires_grad
    before = second.running_mean.clone()
    model(torch.randn(2, 3, 2, 6, 6) * 5 + 3)
    assert torch.equal(second.running_mean, before)  # frozen statistics
    assert not torch.equal(first.running_mean, torch.zeros(4))  # the first BN still updates
    names = [n for g in param_groups(model) for n in g["names"]]
    assert "block.1.weight" not in names and "stem.1.weight" in names


def test_resolve_settings_defaults_and_overrides():
    s = resolve_settings(RunConfig(dataset="synth", lr=0.01, epochs=3), seed=4, num_workers=2)
    assert (s.lr, s.epochs, s.batch_size, s.seed, s.num_workers) == (0.01, 3, 16, 4, 2)
    assert s.schedule.type == "cosine"
    with pytest.raises(TypeError, match="bogus"):
        resolve_settings(None, seed=0, bogus=1)
