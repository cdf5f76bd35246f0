"""A row's result from its seeds: the mean of each metric and the per-seed details (pure).

Training a row is a loop over its seeds (:func:`repro.engine.job.train_row`), each leaving a
:class:`SeedRun`; :func:`aggregate_seeds` turns them into the row's metrics and the ``details``
its result file keeps.  The papers report one number per cell; where a spec asks for several
seeds at mini scale the cell is their mean, and every seed's own figures stay in the details.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SeedRun", "aggregate_seeds"]


@dataclass(frozen=True)
class SeedRun:
    """What training one seed left: its metrics (percent; ``count`` = videos evaluated), its
    history, wall time, torch threads (``None``: not recorded) and what it started from."""

    metrics: dict[str, float]
    history: list[dict[str, float]]
    train_time_s: float
    threads: int | None = None
    init: dict[str, Any] | None = None  # weights it was initialised from
    motionnet_pretrain: dict[str, Any] | None = None  # MotionNet pre-training report
    same_run_as: str | None = None  # the identical run it re-used


def _by_seed(runs: dict[int, SeedRun], field: str) -> dict[str, Any]:
    return {str(s): getattr(r, field) for s, r in runs.items() if getattr(r, field) is not None}


def aggregate_seeds(runs: dict[int, SeedRun]) -> tuple[dict[str, float], dict[str, Any]]:
    """``(metrics, details)`` of a row trained on the seeds of ``runs`` (in the row's seed order).

    ``metrics``: the mean over seeds of every metric all seeds report (``count`` left out).
    ``details``: mean wall time, the history (one seed: its list; several: by seed), the videos
    evaluated, the per-seed metrics and times (several seeds), threads, and the per-seed
    ``init`` / ``motionnet_pretrain`` / ``same_run_as`` where any seed has one.
    """
    if not runs:
        raise ValueError("aggregate_seeds: no seed was trained")
    seeds = list(runs)
    keys = sorted(set.intersection(*(set(r.metrics) for r in runs.values())) - {"count"})
    mean = {k: sum(runs[s].metrics[k] for s in seeds) / len(seeds) for k in keys}
    first = runs[seeds[0]]
    details: dict[str, Any] = {
        "train_time_s": round(sum(r.train_time_s for r in runs.values()) / len(runs), 2),
        "history": first.history if len(seeds) == 1 else {str(s): runs[s].history for s in seeds},
        "val_videos": int(first.metrics.get("count", 0)),
    }
    if len(seeds) > 1:
        details["per_seed"] = {str(s): {k: runs[s].metrics[k] for k in keys} for s in seeds}
        details["train_time_s_per_seed"] = {str(s): round(runs[s].train_time_s, 2) for s in seeds}
    details["train_threads"] = {str(s): runs[s].threads for s in seeds}
    for name in ("init", "motionnet_pretrain", "same_run_as"):
        if by_seed := _by_seed(runs, name):
            details[name] = by_seed
    return mean, details
