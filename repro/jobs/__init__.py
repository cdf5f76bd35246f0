"""Jobs reproduce a table row's metrics: ``profile`` (params, MACs, latency), ``train`` (train +
evaluate a classifier), ``flow`` (optical-flow accuracy and speed).

A table column says which job reproduces it (``measure: "train:top1"``).  Each job is declared
once, in its own module of this package (:class:`~repro.jobs.base.Job`); :data:`JOBS` lists them.
The runner (:mod:`repro.runner`) decides what to run and writes results; jobs only measure.
Import order is one way: ``repro.jobs`` -> ``repro.jobs.<name>`` -> ``repro.jobs.base``; the
modules that do the work (``repro.engine.job``, ``repro.flow.job``, ``repro.profile``) are imported
inside each ``run`` and import only ``repro.jobs.base``.
"""
from __future__ import annotations

from repro.jobs.base import Job, JobContext, JobOutput, NotRunnable
from repro.jobs.flow import FLOW
from repro.jobs.profile import PROFILE
from repro.jobs.train import TRAIN

__all__ = ["JOBS", "Job", "JobContext", "JobOutput", "NotRunnable", "get_job"]

#: Every job, by name (the ``<job>`` of a column's ``measure``).
JOBS: dict[str, Job] = {job.name: job for job in (PROFILE, TRAIN, FLOW)}


def get_job(name: str) -> Job:
    try:
        return JOBS[name]
    except KeyError:
        raise KeyError(f"unknown job {name!r}; expected one of {sorted(JOBS)}") from None
