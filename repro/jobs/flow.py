"""The ``flow`` job's declaration: end-point error, photometric error and speed of a row's flow
method (TVNet Tables 1-2).  It renders its own ground-truth pairs, so it reads no dataset.

The work is done by :func:`repro.flow.job.flow_job` (imported when the job runs).
"""
from __future__ import annotations

from repro.jobs.base import Job, JobContext, JobOutput

__all__ = ["FLOW", "FLOW_KEYS"]

FLOW_KEYS = ("epe", "rho", "fps")


def _needs(row, scale: str) -> str | None:
    if row.flow_method is None and row.model is None:
        return row.needs or "no flow method named"
    if row.run_config(scale) is None:
        return row.needs or f"no '{scale}' configuration in the spec"
    return None


def _run(ctx: JobContext) -> JobOutput:
    from repro.flow.job import flow_job

    return flow_job(ctx)


FLOW = Job(name="flow", keys=FLOW_KEYS, scales=("mini", "small", "full"), reads_data=False, needs=_needs, run=_run,
           doc="EPE, photometric error and speed of the row's flow method on ground-truth pairs")
