"""Top-k, mean class accuracy, EPE, checkpoints and RNG state round trips."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn as nn

from repro.engine.checkpoint import (atomic_torch_save, capture_rng_state, load_checkpoint, load_init_weights,
                                     restore_rng_state)
from repro.engine.distributed import TrainBatchSampler, eval_shard
from repro.engine.metrics import ClassificationMeter, EPEMeter, end_point_error


def test_classification_meter_hand_computed():
    meter = ClassificationMeter(num_classes=6)
    logits = torch.tensor([
        [9, 1, 0, 0, 0, 0],  # label 0: top1 hit
        [0, 1, 9, 2, 3, 4],  # label 1: miss in top1, 5th: a top-5 hit
        [0, 9, 1, 0, 0, 0],  # label 2: miss, 2nd
        [-1, 5, 4, 3, 2, 9],  # label 0: miss, and last of six: not in the top 5
    ], dtype=torch.float)
    labels = torch.tensor([0, 1, 2, 0])
    meter.update(logits[:3], labels[:3])
    meter.update(logits[3:], labels[3:])
    m = meter.compute()
    assert m["count"] == 4
    assert m["top1"] == pytest.approx(25.0)
    assert m["top5"] == pytest.approx(75.0)
    # per-class recall: class 0: 1/2, class 1: 0/1, class 2: 0/1 (classes 3-5 absent)
    assert m["mean_class_acc"] == pytest.approx(100.0 * (0.5 + 0 + 0) / 3)
    assert m["avg_top1_top5"] == pytest.approx((m["top1"] + m["top5"]) / 2)


def test_classification_meter_validates():
    meter = ClassificationMeter(3)
    with pytest.raises(ValueError, match="logits"):
        meter.update(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        meter.update(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="no samples"):
        meter.compute()


def test_epe():
    pred = torch.zeros(1, 2, 2, 2, 2)
    gt = torch.zeros(1, 2, 2, 2, 2)
    gt[:, 0] = 3.0
    gt[:, 1] = 4.0
    assert torch.allclose(end_point_error(pred, gt), torch.full((1, 2, 2, 2), 5.0))
    meter = EPEMeter()
    meter.update(pred, gt)
    meter.update(gt, gt)
    assert meter.compute() == pytest.approx(2.5)
    with pytest.raises(ValueError, match="flow"):
        end_point_error(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))


def test_rng_state_roundtrip_through_weights_only_checkpoint(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.randn()  # leaves a cached gaussian in some numpy versions
    state = capture_rng_state()
    atomic_torch_save({"rng": state}, tmp_path / "c.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
    loaded = load_checkpoint(tmp_path / "c.pt")  # weights_only=True inside
    restore_rng_state(loaded["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2] and got[3] == expected[3]
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed away


def test_load_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")


def test_init_weights_drop_mismatched_classifier(tmp_path):
    torch.manual_seed(0)
    src = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 400))
    atomic_torch_save({"model": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "k400.pt")
    dst = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 174))
    fresh_head = dst[2].weight.clone()
    report = load_init_weights(dst, tmp_path / "k400.pt")
    assert report["dropped"] == ["2.weight", "2.bias"]
    assert torch.equal(dst[0].weight, src[0].weight)
    assert torch.equal(dst[2].weight, fresh_head)
    with pytest.raises(ValueError, match="shape mismatch"):
        load_init_weights(dst, tmp_path / "k400.pt", strict_shapes=True)


def test_train_batches_split_global_batches_across_ranks():
    one = list(TrainBatchSampler(10, 4, seed=0, epoch=1))
    assert len(one) == 2 and all(len(b) == 4 for b in one)  # last incomplete batch dropped
    r0 = list(TrainBatchSampler(10, 4, seed=0, epoch=1, rank=0, world_size=2))
    r1 = list(TrainBatchSampler(10, 4, seed=0, epoch=1, rank=1, world_size=2))
    for full, a, b in zip(one, r0, r1):
        assert sorted(a + b) == sorted(full)  # same samples and same augmentation seeds
    assert list(TrainBatchSampler(10, 4, seed=0, epoch=1, start_batch=1)) == one[1:]
    assert list(TrainBatchSampler(10, 4, seed=0, epoch=2)) != one  # a new order each epoch
    with pytest.raises(ValueError, match="divisible"):
        TrainBatchSampler(10, 3, seed=0, epoch=0, world_size=2)


def test_eval_shards_cover_each_video_once():
    shards = [eval_shard(7, r, 3) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(7))


class _ViewLogits(nn.Module):
    """Logits = the clip's first pixel values on the class axis (so a test sets them directly)."""

    def forward(self, video):  # (B, C=3, T, H, W) -> (B, 3)
        return video[:, :, 0, 0, 0]


def test_evaluate_averages_views_per_video():
    from repro.engine.trainer import evaluate

    def clip(scores):
        v = torch.zeros(3, 1, 1, 1)
        v[:, 0, 0, 0] = torch.tensor(scores)
        return v

    samples = [  # (V=2, C, T, H, W) per video
        {"video": torch.stack([clip([9.0, 0.0, 0.0]), clip([0.0, 1.0, 0.0])]), "label": 0, "index": 0},  # view avg -> 0
        {"video": torch.stack([clip([0.0, 0.0, 2.0]), clip([0.0, 0.0, 2.0])]), "label": 1, "index": 1},  # -> 2, wrong
        {"video": torch.stack([clip([0.0, 3.0, 0.0]), clip([2.9, 0.0, 0.0])]), "label": 1, "index": 2},  # -> 1
    ]
    metrics = evaluate(_ViewLogits(), samples, num_classes=3, batch_size=2)
    assert metrics["count"] == 3  # videos, not views
    assert metrics["top1"] == pytest.approx(200.0 / 3)
    # per class: class 0 1/1, class 1 1/2 (class 2 absent)
    assert metrics["mean_class_acc"] == pytest.approx(75.0)
