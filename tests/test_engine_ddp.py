"""Two CPU processes (gloo) train and evaluate like one process does."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from repro.engine.distributed import shutdown_distributed
from repro.engine.testing import TinyVideoNet, ToyMotionDataset
from repro.engine.trainer import fit, resolve_settings
from repro.spec.schema import RunConfig

EVAL_VIDEOS = 15  # odd on purpose: the shards differ in size, nothing may be counted twice


def _setup(checkpoint_every_batch: bool = False) -> tuple:
    cfg = RunConfig(dataset="toy", epochs=3, batch_size=8, lr=0.2, lr_schedule={"type": "cosine"}, weight_decay=1e-4)
    settings = resolve_settings(cfg, seed=11, checkpoint_interval_s=0.0 if checkpoint_every_batch else 600.0)
    torch.manual_seed(11)
    # no BatchNorm (per-process batch statistics would differ) and no dropout: the averaged DDP
    # gradient of two half batches then equals the single-process gradient of the whole batch
    model = TinyVideoNet(4, width=6, batch_norm=False)
    train = ToyMotionDataset(32, frames=3, size=12, seed=1)
    val = ToyMotionDataset(EVAL_VIDEOS, frames=3, size=12, seed=2, train=False)
    return settings, model, train, val


def _worker(rank: int, world: int, store: str, out: str, run_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        # checkpoints after every batch: exercises the collective checkpoint path (RNG gather,
        # partial-sum reduction, rank 0's clock broadcast) without changing the result
        settings, model, train, val = _setup(checkpoint_every_batch=True)
        result = fit(model, train, val, settings, run_dir, num_classes=4, progress=False)
        if rank == 0:
            torch.save({"model": model.state_dict(), "metrics": result.metrics,
                        "history": json.dumps(result.history)}, out)
    finally:
        shutdown_distributed()  # as the engine does: a barrier first, so no rank tears gloo down mid-collective


@pytest.mark.slow  # spawns two fresh interpreters (~15-20 s on 2 busy cores)
def test_two_process_ddp_matches_single_process(tmp_path: Path):
    out = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(out), str(tmp_path / "run")), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert (last["epoch"], last["batch_in_epoch"]) == (3, 0) and len(last["rng"]) == 2

    torch.set_num_threads(1)
    settings, model, train, val = _setup()
    single = fit(model, train, val, settings, None, num_classes=4, progress=False)

    assert ddp["metrics"]["count"] == EVAL_VIDEOS == single.metrics["count"]
    for key in ("top1", "top5", "mean_class_acc"):
        assert ddp["metrics"][key] == pytest.approx(single.metrics[key], abs=1e-6), key
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(ddp["model"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    history = json.loads(ddp["history"])
    for got, want in zip(history, single.history):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-4)
        assert got["train_top1"] == pytest.approx(want["train_top1"])
    assert single.history[-1]["train_loss"] < single.history[0]["train_loss"]  # it trained
