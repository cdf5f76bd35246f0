"""Decide what can be reproduced for each row, run what is not cached, write results.

A *task* is one (row, job, scale): the job named by the table's metric columns
(``measure: "<job>:<key>"``) at the scale it runs at (``profile`` always measures the
full-scale architecture; ``train`` and ``flow`` run at the scale asked for, default ``mini``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from repro.jobs import JobContext, NotRunnable, job_reads_dataset, job_scales, load_jobs
from repro.results import provenance, read_result, row_hash, write_result
from repro.spec.schema import Row, TableSpec

__all__ = ["Task", "plan", "plan_table", "run_tasks"]

log = logging.getLogger("repro")

TaskState = Literal["cached", "pending", "missing"]


@dataclass
class Task:
    spec: TableSpec
    row: Row
    job: str
    scale: str
    wanted: list[str]
    state: TaskState
    reason: str = ""  # why a task is missing (what the row still needs)
    error: str | None = None  # set when a run failed
    elapsed_s: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.spec.paper}:table{self.spec.table}:{self.row.id}"


def _missing_reason(row: Row, job: str, scale: str, jobs: dict) -> str | None:
    if row.kind == "cited":
        return "cited from another paper"
    if job not in jobs:
        return f"the '{job}' job is not implemented yet"
    if job in ("profile", "train") and row.model is None:
        return row.needs or "no model named"
    if job == "flow" and row.flow_method is None and row.model is None:
        return row.needs or "no flow method named"
    if job != "profile" and row.run_config(scale) is None:
        return row.needs or f"no '{scale}' configuration in the spec"
    return None


def plan_table(spec: TableSpec, scale: str, results_dir: Path, rows: list[str] | None = None,
               force: bool = False) -> list[Task]:
    jobs = load_jobs()
    by_job: dict[str, list[str]] = {}
    for m in spec.metrics:
        if m.job:
            by_job.setdefault(m.job, []).append(m.job_key)
    tasks: list[Task] = []
    for row in spec.rows:
        if rows and row.id not in rows:
            continue
        for job, wanted in by_job.items():
            run_scale = "full" if job == "profile" else scale
            if run_scale not in job_scales(job) and job in jobs:
                continue
            reason = _missing_reason(row, job, run_scale, jobs)
            if reason:
                tasks.append(Task(spec, row, job, run_scale, wanted, "missing", reason))
                continue
            cached = None if force else read_result(results_dir, run_scale, spec.paper, spec.table, row.id)
            fresh = (cached is not None and cached.provenance.get("spec_hash") == task_hash(spec, row, job, run_scale)
                     and all(k in cached.metrics for k in wanted))
            tasks.append(Task(spec, row, job, run_scale, wanted, "cached" if fresh else "pending",
                              metrics=dict(cached.metrics) if fresh else {}))
    return tasks


def data_fingerprint(row: Row, scale: str) -> dict | None:
    """The definition of the built-in benchmark preset a row's run reads at ``scale`` (None for
    real datasets, which the spec names completely, and for custom presets)."""
    cfg = row.run_config(scale)
    if not cfg or cfg.dataset != "synth":
        return None
    from repro.data import synth

    preset = synth.PRESETS.get(cfg.preset or "mini")
    return None if preset is None else {"synth": preset.to_dict(), "generator": synth.GENERATOR_VERSION}


def task_hash(spec: TableSpec, row: Row, job: str, scale: str) -> str:
    """Cache key of a row's result for ``job``: the row's spec, plus the data for jobs that read it."""
    return row_hash(spec, row.id, data_fingerprint(row, scale) if job_reads_dataset(job) else None)


def plan(specs: dict[str, TableSpec], scale: str, results_dir: Path, force: bool = False) -> list[Task]:
    return [t for spec in specs.values() for t in plan_table(spec, scale, results_dir, force=force)]


def run_tasks(tasks: list[Task], *, results_dir: Path, work_dir: Path, data_dir: Path, progress: bool = True,
              threads: int | None = None, command: str | None = None) -> list[Task]:
    """Run every pending task; a failing task is reported, never stops the others."""
    from tqdm.auto import tqdm

    jobs = load_jobs()
    pending = [t for t in tasks if t.state == "pending"]
    bar = tqdm(pending, desc="reproducing", unit="row", disable=not progress or not pending, leave=False)
    for task in bar:
        bar.set_postfix_str(f"{task.ref} [{task.job}]")
        ctx = JobContext(spec=task.spec, row=task.row, scale=task.scale, wanted=task.wanted,
                         results_dir=results_dir, work_dir=work_dir / task.scale / task.spec.paper /
                         f"table{task.spec.table}" / task.row.id, data_dir=data_dir, progress=progress,
                         threads=threads)
        start = time.perf_counter()
        try:
            out = jobs[task.job](ctx)
        except NotRunnable as e:
            task.state, task.reason = "missing", str(e)
            continue
        except Exception as e:
            log.exception("%s [%s] failed", task.ref, task.job)
            task.error = f"{type(e).__name__}: {e}"
            continue
        task.elapsed_s = time.perf_counter() - start
        prov = provenance(scale=task.scale, seed=out.seed, spec_hash=task_hash(task.spec, task.row, task.job, task.scale),
                          command=command, data=out.data, job=task.job, elapsed_s=round(task.elapsed_s, 2))
        write_result(results_dir, scale=task.scale, paper=task.spec.paper, table=task.spec.table, row=task.row.id,
                     job=task.job, metrics=out.metrics, provenance=prov, details=out.details)
        task.state, task.metrics = "cached", dict(out.metrics)
    return tasks
