"""The ``profile`` job: params, MACs and latency of a row's full-scale model on this machine.

It needs no data: the model is built with the paper's arguments (``row.model``) and fed the
paper's per-clip input (``row.input_shape``), so its numbers are stored at scale ``full``.
Latency is only measured when the table has a latency/FPS column (it is machine dependent; the
machine is in the provenance).
"""
from __future__ import annotations

from repro.jobs import JobContext, JobOutput, NotRunnable, register_job
from repro.registry import model_entry

LATENCY_KEYS = {"latency_s", "latency_ms", "fps"}
PROFILE_KEYS = {"params", "params_m", "macs", "gmacs", "gflops"} | LATENCY_KEYS


@register_job("profile")
def profile_job(ctx: JobContext) -> JobOutput:
    from repro.profile import profile

    row = ctx.row
    if row.model is None:
        raise NotRunnable(row.needs or "no model named for this row")
    unknown = set(ctx.wanted) - PROFILE_KEYS
    if unknown:
        raise NotRunnable(f"the profile job does not measure {sorted(unknown)}")
    entry = model_entry(row.model.name)
    shape = row.input_shape or entry.default_input
    if shape is None:
        raise NotRunnable(f"row gives no input_shape and model '{entry.name}' has no default_input")
    timed = bool(LATENCY_KEYS & set(ctx.wanted))
    prof = profile(row.model.name, shape, latency=timed, threads=ctx.threads, **row.model.args)
    metrics: dict[str, float] = {key: prof[key] for key in ("params", "macs", "gmacs", "gflops")}
    metrics["params_m"] = prof["params"] / 1e6
    if timed:
        metrics.update(latency_ms=prof["latency_ms"], latency_s=prof["latency_ms"] / 1e3,
                       fps=1e3 / prof["latency_ms"] * shape[0])
    details = {k: v for k, v in prof.items() if k not in metrics}
    data = "full-scale architecture at the paper's input" + (", latency on this machine's CPU" if timed else "")
    return JobOutput(metrics=metrics, data=data, seed=0, details=details)
