"""A row that ``list`` calls runnable at mini runs: the model its spec names, built as the engine
builds it (the row's arguments with the mini run's ``model_args``), takes one clip of the mini
run's shape (frames x size x size, flow too where it declares flow inputs) and gives one logit per
class.  Catches specs whose clip length does not match the model's frames and segments before a
training lane spends an hour to find out."""
from __future__ import annotations

import pytest
import torch

from repro.engine.job import build_row_model
from repro.jobs import JOBS
from repro.models.contract import model_example_inputs
from repro.spec.loader import load_specs
from repro.spec.schema import resolved_config

CLASSES = 12  # the built-in benchmark's


def _runnable_mini_train_rows() -> list[str]:
    rows = []
    for key, spec in sorted(load_specs().items()):
        if not any(m.job == "train" for m in spec.metrics):
            continue  # the table's columns ask no training (a profile or flow table)
        for row in spec.rows:
            if JOBS["train"].missing_reason(row, "mini") is None:
                rows.append(f"{key}:{row.id}")
    return rows


MINI_ROWS = _runnable_mini_train_rows()


def test_every_paper_has_runnable_mini_rows():
    assert {r.split(":")[0] for r in MINI_ROWS} == {"trajectorynet", "tvnet", "dynamics", "lgd"}


@pytest.mark.parametrize("key", MINI_ROWS)
def test_runnable_mini_row_takes_its_runs_clip(key):
    paper, table, row_id = key.split(":")
    row = load_specs()[f"{paper}:{table}"].row(row_id)
    cfg = row.run_config("mini")
    run = resolved_config(cfg)
    torch.manual_seed(0)
    model = build_row_model(row, cfg, num_classes=CLASSES).eval()
    shape = (1, 3, run["frames"], run["size"], run["size"])
    with torch.no_grad():
        out = model(*model_example_inputs(model, shape))
    assert out.shape == (1, CLASSES), f"{key}: {tuple(out.shape)} for a {shape} clip"
    assert torch.isfinite(out).all()
