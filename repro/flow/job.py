"""The ``flow`` job: end-point error, photometric (ρ) error and speed of a row's flow method.

Rows of TVNet Tables 1–2 name a method (``flow_method: tvnet-1-1-50``, ``tvl1-5-5-50``, ...)
and, for TVNet, how it is trained first (``flow_training: none | u0 | all``, Table 1).  A row that
names none but whose model computes a displacement map (Dynamics Table 3) is measured with its
model's matcher on fixed features (:class:`repro.flow.methods.DisplacementMapFlow`).

Data per scale:
* ``synth`` (mini/small): ground-truth pairs rendered by the built-in benchmark's generator at
  the row's ``size``; for each of the run's seeds ``k``, trainable TVNets are trained on one set
  of pairs (generator seed ``2k``, mini-batch order seed ``k``) and every number is measured on
  held-out pairs (generator seed ``2k + 1``): seed k of every row sees the same pairs, so claims
  compare rows seed by seed.  The paper instead trains and evaluates on Middlebury's 8 training
  pairs (Sec. 5.1).
* ``middlebury`` (full): ``<data-dir>/middlebury`` in the official layout (``other-data`` +
  ``other-gt-flow``); train and evaluate on the same 8 pairs, as the paper does.

Training follows the row's run config (``optimizer``, ``lr``, ``momentum``, ``epochs`` = updates,
``batch_size``): what runs is what the spec says, and the result records it
(``details.run_config``) with the training loss on every training pair before and after.
"""
from __future__ import annotations

import math
import statistics

import torch

from repro.flow.bench import run_flowbench
from repro.flow.methods import DisplacementMapFlow, FlowMethod, TVNetFlow, create_flow_method
from repro.flow.pairs import FlowPair, middlebury_pairs, synthetic_benchmark_pairs
from repro.flow.train import train_tvnet_on_pairs, training_loss
from repro.jobs.base import JobContext, JobOutput, NotRunnable
from repro.jobs.flow import FLOW_KEYS
from repro.models.tvnet import TVNet, parse_tvnet_name
from repro.spec.schema import resolved_config

TRAIN_PAIRS, EVAL_PAIRS = 32, 16


def _pairs(ctx: JobContext, seed: int) -> tuple[list[FlowPair], list[FlowPair], str]:
    cfg = ctx.config
    if cfg.dataset == "synth":
        size = (cfg.size or 64, cfg.size or 64)
        train = synthetic_benchmark_pairs(size=size, count=TRAIN_PAIRS, seed=2 * seed)
        held_out = synthetic_benchmark_pairs(size=size, count=EVAL_PAIRS, seed=2 * seed + 1)
        data = (f"built-in benchmark GT pairs {size[0]}x{size[1]} "
                f"({len(held_out)} held-out pairs, trained on {len(train)} others, per seed)")
        return train, held_out, data
    if cfg.dataset == "middlebury":
        root = ctx.data_dir / "middlebury"
        if not root.is_dir():
            raise NotRunnable(f"Middlebury flow data not found at {root} (other-data/ + other-gt-flow/)")
        pairs = middlebury_pairs(root)
        return pairs, pairs, f"Middlebury training pairs ({len(pairs)})"
    raise NotRunnable(f"the flow job has no data for dataset '{cfg.dataset}' (synth or middlebury)")


def _train(ctx: JobContext, run: dict, train_pairs: list[FlowPair], seed: int) -> tuple[TVNet, dict]:
    """Train the row's TVNet as the run config says; the log with the full training loss before/after."""
    row = ctx.row
    if not row.flow_method.startswith("tvnet"):
        raise NotRunnable(f"only TVNet methods are trainable, not '{row.flow_method}'")
    if run["optimizer"] not in ("sgd", "adam"):
        raise NotRunnable(f"TVNet flow training runs sgd or adam, not '{run['optimizer']}'")
    scales, warps, iters = parse_tvnet_name(row.flow_method)
    model = TVNet(scales, warps, iters, trainable=row.flow_training, image_size=train_pairs[0].size)
    before = training_loss(model, train_pairs)
    log = train_tvnet_on_pairs(model, train_pairs, iters=run["epochs"], lr=run["lr"], optimizer=run["optimizer"],
                               momentum=run["momentum"], batch_size=min(run["batch_size"], len(train_pairs)),
                               seed=seed, progress=ctx.progress)
    after = training_loss(model, train_pairs)
    return model, {"iters": log["iters"], "optimizer": log["optimizer"], "lr": log["lr"],
                   "momentum": log["momentum"], "batch_size": log["batch_size"],
                   "train_loss_before": before, "train_loss_after": after,
                   "first_batch_loss": log["losses"][0] if log["losses"] else None,
                   "last_batch_loss": log["losses"][-1] if log["losses"] else None,
                   "seconds": round(log["seconds"], 2)}


def _row_method(ctx: JobContext) -> FlowMethod:
    """The flow method the row names, else its model's displacement matcher (Dynamics Table 3's EPE
    column: the model's matcher, window and temperature on a map of its conv1 stride)."""
    if ctx.row.flow_method is not None:
        return create_flow_method(ctx.row.flow_method)
    from repro.engine.job import build_row_model

    model = build_row_model(ctx.row, ctx.config, num_classes=2)  # only its displacement head is read
    head = getattr(model, "displacement", None)
    if head is None:
        raise NotRunnable(ctx.row.needs or "no flow_method named, and the row's model computes no displacement map")
    return DisplacementMapFlow.of_head(head, int(model.conv1_stride))


def flow_job(ctx: JobContext) -> JobOutput:
    row, cfg = ctx.row, ctx.config
    if row.flow_method is None and row.model is None:
        raise NotRunnable(row.needs or "no flow_method named for this row")
    unknown = set(ctx.wanted) - set(FLOW_KEYS)
    if unknown:
        raise NotRunnable(f"the flow job does not measure {sorted(unknown)}")
    if ctx.threads:
        torch.set_num_threads(ctx.threads)  # as the train job: --threads holds for flow rows too
    run = resolved_config(cfg)
    # one pair set for Middlebury (the paper's 8 pairs); one per seed on the built-in benchmark
    seeds = list(cfg.seeds) if cfg.dataset == "synth" else [cfg.seeds[0]]
    trained = row.flow_training in ("u0", "all")
    fixed = None if trained else _row_method(ctx)  # an untrained method: the same for every seed
    details: dict = {"method": row.flow_method or fixed.name, "training": row.flow_training or "none",
                     "run_config": {k: run[k] for k in ("dataset", "preset", "size", "seeds")} | (
                         {k: run[k] for k in ("optimizer", "lr", "momentum", "epochs", "batch_size")} if trained else {})}
    per_seed: dict[str, dict[str, float]] = {}
    train_logs: dict[str, dict] = {}
    data = ""
    for seed in seeds:
        train_pairs, eval_pairs, data = _pairs(ctx, seed)
        if trained:
            model, train_logs[str(seed)] = _train(ctx, run, train_pairs, seed)
            method = TVNetFlow(model, row.flow_method)
        else:
            method = fixed
        (cell,) = run_flowbench([method], {"eval": eval_pairs}, sizes=(None,), progress=ctx.progress)
        metrics = {"epe": cell.epe, "rho": cell.rho_error, "fps": cell.fps}
        per_seed[str(seed)] = {k: v for k, v in metrics.items() if not math.isnan(v)}
        details.setdefault("pairs", cell.pairs)
        details.setdefault("inside", cell.inside)
    keys = set.intersection(*(set(m) for m in per_seed.values()))
    mean = {k: statistics.fmean(m[k] for m in per_seed.values()) for k in sorted(keys)}
    if len(seeds) > 1:
        details["per_seed"] = per_seed
    if train_logs:
        details["train"] = train_logs
    return JobOutput(metrics=mean, data=data, seed=seeds[0] if len(seeds) == 1 else seeds, details=details)
