"""Jobs reproduce a table row's metrics: ``profile`` (params, MACs, latency), ``train`` (train +
evaluate a classifier), ``flow`` (optical-flow accuracy and speed).

A table column says which job reproduces it (``measure: "train:top1"``).  A job is a function
``job(ctx: JobContext) -> JobOutput``; :data:`JOBS` maps names to them.  The runner
(:mod:`repro.runner`) decides what to run and writes results; jobs only measure.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.spec.schema import Row, RunConfig, TableSpec

__all__ = ["JOBS", "JobContext", "JobOutput", "NotRunnable", "job_reads_dataset", "job_scales", "register_job"]


class NotRunnable(RuntimeError):
    """The row cannot be run by this job at this scale; the message says what is missing."""


@dataclass
class JobContext:
    spec: TableSpec
    row: Row
    scale: str
    #: The metric keys this job must report for the row (the ``<key>`` of ``measure``).
    wanted: list[str]
    results_dir: Path
    work_dir: Path  # checkpoints, caches and data for this run
    data_dir: Path  # where datasets (the built-in benchmark included) live
    progress: bool = True
    resume: bool = True
    threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> RunConfig | None:
        return self.row.run_config(self.scale)


@dataclass
class JobOutput:
    metrics: dict[str, float]
    data: str  # what the numbers were measured on, shown beside them in every table
    seed: int | list[int] | None = None
    details: dict[str, Any] = field(default_factory=dict)


JobFn = Callable[[JobContext], JobOutput]
JOBS: dict[str, JobFn] = {}

#: Scales at which a job can run.  ``profile`` measures the full-scale architecture itself (no
#: data needed), so its results are stored at scale ``full``.
_JOB_SCALES: dict[str, tuple[str, ...]] = {"profile": ("full",), "train": ("mini", "small", "full"),
                                            "flow": ("mini", "small", "full")}


#: Jobs that read the row's dataset (their cached results depend on what the data is, not only
#: on the spec; see :func:`repro.runner.data_fingerprint`).  ``flow`` renders its own GT pairs.
_JOBS_READING_DATASET = frozenset({"train"})


def job_reads_dataset(job: str) -> bool:
    return job in _JOBS_READING_DATASET


def register_job(name: str) -> Callable[[JobFn], JobFn]:
    def wrap(fn: JobFn) -> JobFn:
        JOBS[name] = fn
        return fn

    return wrap


def job_scales(job: str) -> tuple[str, ...]:
    return _JOB_SCALES.get(job, ())


def load_jobs() -> dict[str, JobFn]:
    """Import the modules that define jobs (explicit list; no scanning)."""
    import repro.profile_job  # noqa: F401

    for optional in ("repro.engine.job", "repro.flow.job"):
        try:
            __import__(optional)
        except ModuleNotFoundError as e:  # a job whose module is not written yet is simply absent
            if e.name != optional:
                raise
    return JOBS
