"""The ``profile`` job: params, MACs and latency of a row's full-scale model on this machine.

It needs no data: the model is built with the paper's arguments (``row.model``) and fed the
paper's per-clip input (``row.input_shape``), so its numbers are stored at scale ``full``.
Latency is only measured when the table has a latency/FPS column (it is machine dependent; the
machine is in the provenance).
"""
from __future__ import annotations

import torch

from repro.jobs import JobContext, JobOutput, NotRunnable, register_job
from repro.registry import create_model, model_entry

LATENCY_KEYS = {"latency_s", "latency_ms", "fps"}
PROFILE_KEYS = {"params", "params_m", "macs", "gmacs", "gflops"} | LATENCY_KEYS


def example_inputs(model: torch.nn.Module, input_shape: list[int] | tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """Inputs a model's forward takes for one clip of ``input_shape``.

    Models that take more than a video (e.g. TrajectoryNet with pre-computed flow) define
    ``example_inputs(input_shape)``; the rest take one tensor.
    """
    make = getattr(model, "example_inputs", None)
    if callable(make):
        return tuple(make(tuple(input_shape)))
    return (torch.randn(*input_shape),)


@register_job("profile")
def profile_job(ctx: JobContext) -> JobOutput:
    from repro.profile import count_macs, count_params, measure_latency

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
    torch.manual_seed(0)
    model = create_model(row.model.name, **row.model.args).eval()
    inputs = example_inputs(model, shape)
    params = count_params(model)
    macs = count_macs(model, inputs)
    metrics: dict[str, float] = {
        "params": params,
        "params_m": params / 1e6,
        "macs": macs.macs,
        "gmacs": macs.macs / 1e9,
        "gflops": 2 * macs.macs / 1e9,
    }
    details = {"input_shape": list(shape), "model": row.model.name, "model_args": row.model.args,
               "uncounted_ops": dict(macs.uncounted), "mac_convention": "fvcore: one multiply-add = 1 MAC"}
    if LATENCY_KEYS & set(ctx.wanted):
        lat = measure_latency(model, inputs, threads=ctx.threads)
        metrics.update(latency_ms=lat.median_ms, latency_s=lat.median_ms / 1e3, fps=1e3 / lat.median_ms * shape[0])
        details["latency"] = {"median_ms": lat.median_ms, "iqr_ms": lat.iqr_ms, "repeats": lat.repeats,
                              "threads": lat.threads, "backend": lat.backend}
    data = "full-scale architecture at the paper's input" + (" (latency: this machine's CPU)" if "latency" in details else "")
    return JobOutput(metrics=metrics, data=data, seed=0, details=details)
