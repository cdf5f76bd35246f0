"""A row's metrics from its seeds: means over seeds, every seed's figures in the details."""
from __future__ import annotations

import pytest

from repro.engine.aggregate import SeedRun, aggregate_seeds


def _run(top1: float, top5: float, seconds: float, **kw) -> SeedRun:
    return SeedRun({"top1": top1, "top5": top5, "count": 10.0}, [{"epoch": 1, "train_loss": top1 / 100}],
                   seconds, threads=2, **kw)


def test_one_seed_keeps_its_numbers_and_history():
    mean, details = aggregate_seeds({3: _run(40.0, 90.0, 12.345)})
    assert mean == {"top1": 40.0, "top5": 90.0}
    assert details == {"train_time_s": 12.35, "history": [{"epoch": 1, "train_loss": 0.4}], "val_videos": 10,
                       "train_threads": {"3": 2}}


def test_several_seeds_mean_and_per_seed_details():
    runs = {0: _run(42.2, 80.0, 10.0, motionnet_pretrain={"epochs": 2}),
            1: SeedRun({"top1": 64.1, "top5": 90.0, "epe": 1.5, "count": 10.0}, [], 20.0, None,
                       init={"from": "a.pt"}, same_run_as="/runs/x")}
    mean, details = aggregate_seeds(runs)
    assert mean == {"top1": pytest.approx(53.15), "top5": pytest.approx(85.0)}  # "epe": not in every seed
    assert details["per_seed"] == {"0": {"top1": 42.2, "top5": 80.0}, "1": {"top1": 64.1, "top5": 90.0}}
    assert details["train_time_s"] == 15.0 and details["train_time_s_per_seed"] == {"0": 10.0, "1": 20.0}
    assert details["history"] == {"0": runs[0].history, "1": []}
    assert details["train_threads"] == {"0": 2, "1": None}
    assert details["init"] == {"1": {"from": "a.pt"}} and details["same_run_as"] == {"1": "/runs/x"}
    assert details["motionnet_pretrain"] == {"0": {"epochs": 2}}


def test_the_mean_follows_the_seed_order_given():
    # float sums depend on order: the row's seed order is the one summed in
    runs = {s: _run(v, 0.0, 1.0) for s, v in ((2, 0.1), (0, 0.2), (1, 0.3))}
    assert aggregate_seeds(runs)[0]["top1"] == (0.1 + 0.2 + 0.3) / 3


def test_no_seed_is_an_error():
    with pytest.raises(ValueError, match="no seed"):
        aggregate_seeds({})
