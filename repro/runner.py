"""Decide what can be reproduced for each row, run what is not cached, write results.

A *task* is one (row, job, scale): the job named by the table's metric columns
(``measure: "<job>:<key>"``) at the scale its declaration says it runs at for the scale asked
for (:meth:`repro.jobs.Job.scale_for`).  A task is cached when its result file
(``<row>.<job>.json``) holds every wanted key and its ``spec_hash`` is the task's
:func:`repro.identity.result_key`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from repro.identity import result_key, run_id
from repro.jobs import JOBS, JobContext, NotRunnable
from repro.results import provenance, read_result, write_result
from repro.spec.schema import Row, TableSpec

__all__ = ["Task", "plan", "plan_table", "run_tasks", "report_lines"]

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
    reused_from: dict[str, str] = field(default_factory=dict)  # a cached result's commit and date
    ran: bool = False  # run by this invocation (``elapsed_s`` says how long)

    @property
    def ref(self) -> str:
        return f"{self.spec.paper}:table{self.spec.table}:{self.row.id}"

    def report(self) -> str:
        """What became of this task, for the per-row report of ``table<N>``: ``reused (commit, date)``,
        ``ran (time)``, ``failed: ...``, ``missing: ...`` or ``not run``."""
        if self.error:
            return f"failed: {self.error}"
        if self.ran:
            return f"ran ({_duration(self.elapsed_s or 0.0)})"
        if self.state == "cached":
            commit = (self.reused_from.get("commit") or "?")[:10]
            date = (self.reused_from.get("date") or "?")[:16].replace("T", " ")
            return f"reused ({commit}, {date})"
        if self.state == "missing":
            return f"missing: {self.reason}"
        return "not run"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes} min {sec:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def report_lines(tasks: list[Task]) -> list[str]:
    """One line per (row, job) of a table run: which rows were reused and which were run, and for how long."""
    width = max((len(t.row.id) for t in tasks), default=0)
    return [f"  {t.row.id:<{width}}  {t.job:<8} {t.report()}" for t in tasks if t.row.kind != "cited"]


def _wanted_by_job(spec: TableSpec) -> dict[str, list[str]]:
    by_job: dict[str, list[str]] = {}
    for m in spec.metrics:
        if m.job:
            by_job.setdefault(m.job, []).append(m.job_key)
    return by_job


def plan_table(spec: TableSpec, scale: str, results_dir: Path, rows: list[str] | None = None,
               force: bool = False, data_dir: Path | None = None) -> list[Task]:
    """The row's tasks; with ``data_dir`` a task is "missing" too when the data there lacks what
    its run needs (:attr:`repro.jobs.Job.data_needs`)."""
    tasks: list[Task] = []
    for row in spec.rows:
        if rows and row.id not in rows:
            continue
        for name, wanted in _wanted_by_job(spec).items():
            job = JOBS[name]
            run_scale = job.scale_for(scale)
            if run_scale is None:
                continue
            reason = job.missing_reason(row, run_scale, wanted, data_dir=data_dir)
            if reason:
                tasks.append(Task(spec, row, name, run_scale, wanted, "missing", reason))
                continue
            cached = None if force else read_result(results_dir, run_scale, spec.paper, spec.table, row.id, name)
            fresh = (cached is not None and cached.provenance.get("spec_hash") == result_key(spec, row, name, run_scale)
                     and all(k in cached.metrics for k in wanted))
            tasks.append(Task(spec, row, name, run_scale, wanted, "cached" if fresh else "pending",
                              metrics=dict(cached.metrics) if fresh else {},
                              reused_from={k: str(cached.provenance.get(k) or "") for k in ("commit", "date")}
                              if fresh else {}))
    return tasks


def plan(specs: dict[str, TableSpec], scale: str, results_dir: Path, force: bool = False) -> list[Task]:
    return [t for spec in specs.values() for t in plan_table(spec, scale, results_dir, force=force)]


def run_tasks(tasks: list[Task], *, results_dir: Path, work_dir: Path, data_dir: Path, progress: bool = True,
              threads: int | None = None, command: str | None = None) -> list[Task]:
    """Run every pending task; a failing task is reported, never stops the others."""
    from tqdm.auto import tqdm

    pending = [t for t in tasks if t.state == "pending"]
    bar = tqdm(pending, desc="reproducing", unit="row", disable=not progress or not pending, leave=False)
    for task in bar:
        bar.set_postfix_str(f"{task.ref} [{task.job}]")
        ctx = JobContext(spec=task.spec, row=task.row, scale=task.scale, wanted=task.wanted,
                         results_dir=results_dir, work_dir=work_dir, data_dir=data_dir, progress=progress,
                         threads=threads)
        start = time.perf_counter()
        try:
            out = JOBS[task.job].run(ctx)
        except NotRunnable as e:
            task.state, task.reason = "missing", str(e)
            continue
        except KeyboardInterrupt:
            # The rows finished before are written; say so, and which one was cut short.
            done = [t for t in pending if t.ran]
            log.warning("interrupted during %s [%s]; %d finished row(s) of this run kept in %s", task.ref, task.job,
                        len(done), results_dir)
            raise
        except Exception as e:
            log.exception("%s [%s] failed", task.ref, task.job)
            task.error = f"{type(e).__name__}: {e}"
            continue
        task.elapsed_s = time.perf_counter() - start
        key = result_key(task.spec, task.row, task.job, task.scale)
        prov = provenance(scale=task.scale, seed=out.seed, spec_hash=key, run_id=run_id(key), command=command,
                          data=out.data, job=task.job, elapsed_s=round(task.elapsed_s, 2), threads=threads)
        write_result(results_dir, scale=task.scale, paper=task.spec.paper, table=task.spec.table, row=task.row.id,
                     job=task.job, metrics=out.metrics, provenance=prov, details=out.details)
        task.state, task.metrics, task.ran = "cached", dict(out.metrics), True
        log.info("%s [%s] %s", task.ref, task.job, task.report())
    return tasks
