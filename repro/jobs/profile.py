"""The ``profile`` job: params, MACs and latency of a row's full-scale model on this machine.

It needs no data: the model is built with the paper's arguments (``row.model``) and fed the
paper's per-clip input (``row.input_shape``), so it runs -- and its results are stored -- at scale
``full`` whatever scale is asked for.  Latency is only measured when the table wants a latency or
speed key (it is machine dependent; the machine is in the provenance).

Keys (``measure: "profile:<key>"``):

* ``params``, ``params_m`` (millions), ``macs``, ``gmacs``, ``gflops`` (= 2 x MACs);
* ``latency_ms``, ``latency_s``: median forward time of one input; ``fps``: inputs per second
  (clips for a video model: ``batch / latency``);
* ``latency_ms_per_frame`` and ``frame_fps``: the same per frame (``batch x T`` frames of a
  ``(B, C, T, H, W)`` clip; ``batch`` for an image input), as per-frame speed tables print it;
* ``<latency key>@<backend>`` (e.g. ``latency_s@onnxruntime``, ``fps@compile``): the same key
  through one backend of :mod:`repro.deploy.backends`; the unsuffixed keys are ``eager``.  Every
  backend a row's columns ask for is timed in **one interleaved run**, so a speed table can show a
  row's latency per backend side by side (one column per backend, its key naming the backend).  A
  backend that cannot run here (TensorRT without a GPU) leaves its columns empty and says why in
  the result's ``details.backend_errors``;
* every latency key's 10th-90th percentile range over the timed repeats goes to
  ``details.spread`` (:func:`latency_spread`), the interval :mod:`repro.claims` gives a latency claim;
* per part of a model that declares its parts (Dynamics Table 9's shared displacement map and each
  branch's own layers; Table 3's motion-branch FPS), all measured in the one run of the row:
  ``part_ms_per_frame:<part>`` (median time / frames), ``part_fps:<part>`` (frames per second),
  ``part_gmacs:<part>`` (exact fvcore MACs of the part per input, in G), and the hardware-free /
  same-run ratios ``part_macs_ratio:<a>/<b>`` and ``part_time_ratio:<a>/<b>`` (e.g. the
  displacement map's share of the whole, ``part_time_ratio:displacement/full``).  The hook: a model
  with a method ``profile_parts(inputs) -> {part: (module, module_inputs)}`` has each ``module``
  timed on its ``module_inputs`` (``DynamicsNet.profile_parts`` documents its parts), every timed
  part in **one interleaved run** (part A, B, C, A, B, C, ...; the whole model is part ``full``),
  with each timed key's 10th-90th percentile range over the rounds in ``details.spread`` (for a
  time ratio: of the per-round paired ratio), the interval :mod:`repro.claims` gives a latency
  claim (:func:`time_parts`).  A part the table asks for and the model does not have (Dynamics' static branch builds no
  displacement map) costs 0 (ms, MACs; fps 0), and a ratio involving one is 0 (every row of a
  table is asked every key).
"""
from __future__ import annotations

from typing import Any

from repro.jobs.base import Job, JobContext, JobOutput, NotRunnable

__all__ = ["PROFILE", "PROFILE_KEYS", "PART_KEY", "PART_KEYS", "frames_per_input", "time_parts", "latency_metrics",
           "latency_spread", "split_backend"]

PART_KEY = "part_ms_per_frame"
#: Per-part keys ``<kind>:<part>`` (ratios: ``<kind>:<a>/<b>``); the timed ones need a latency run.
PART_KEYS = (PART_KEY, "part_fps", "part_gmacs", "part_macs_ratio", "part_time_ratio")
_TIMED_PART_KEYS = (PART_KEY, "part_fps", "part_time_ratio")
LATENCY_KEYS = ("latency_s", "latency_ms", "fps", "latency_ms_per_frame", "frame_fps")
PROFILE_KEYS = ("params", "params_m", "macs", "gmacs", "gflops", *LATENCY_KEYS,
                *(f"{k}@*" for k in LATENCY_KEYS), *(f"{k}:*" for k in PART_KEYS))
DEFAULT_BACKEND = "eager"


def split_backend(key: str) -> tuple[str, str]:
    """``"fps@compile"`` -> ``("fps", "compile")``; an unsuffixed key is :data:`DEFAULT_BACKEND`'s."""
    base, sep, backend = key.partition("@")
    return base, (backend if sep else DEFAULT_BACKEND)


def latency_metrics(ms: float, shape: tuple[int, ...] | list[int], suffix: str = "") -> dict[str, float]:
    """The latency keys of one median forward time ``ms`` of an input of ``shape``."""
    frames = frames_per_input(shape)
    values = {"latency_ms": ms, "latency_s": ms / 1e3, "fps": 1e3 / ms * shape[0],
              "latency_ms_per_frame": ms / frames, "frame_fps": 1e3 / ms * frames}
    return {f"{key}{suffix}": value for key, value in values.items()}


def latency_spread(p10_ms: float, p90_ms: float, shape: tuple[int, ...] | list[int],
                   suffix: str = "") -> dict[str, list[float]]:
    """``{key: [lo, hi]}``: the latency keys of the 10th and 90th percentile forward times over the
    repeats (``lo <= hi``: an FPS key's ``lo`` comes from the 90th percentile time)."""
    at_p10, at_p90 = latency_metrics(p10_ms, shape, suffix), latency_metrics(p90_ms, shape, suffix)
    return {key: sorted((at_p10[key], at_p90[key])) for key in at_p10}


def _is_part(key: str) -> bool:
    return key.partition(":")[0] in PART_KEYS and ":" in key


def frames_per_input(shape: tuple[int, ...] | list[int]) -> int:
    """Frames in one input of ``shape``: ``B x T`` for a clip ``(B, C, T, H, W)``, ``B`` otherwise."""
    return int(shape[0]) * (int(shape[2]) if len(shape) == 5 else 1)


def _needs(row, scale: str) -> str | None:
    return (row.needs or "no model named") if row.model is None else None


#: Rounds of the interleaved part timing (every part once a round): at most PART_REPEATS, at
#: least PART_MIN_REPEATS, as many as fit PART_BUDGET_S by the warm-up round's time (Dynamics'
#: three-branch model at 224² takes ~40 s a round on one core), after PART_WARMUP warm-up rounds.
PART_REPEATS, PART_MIN_REPEATS, PART_BUDGET_S, PART_WARMUP = 10, 3, 100.0, 1


def time_parts(model: Any, inputs: tuple, wanted: list[str], threads: int | None, frames: int,
               spread: dict[str, list[float]] | None = None, *, repeats: int = PART_REPEATS,
               warmup: int = PART_WARMUP, budget_s: float = PART_BUDGET_S,
               timing: dict[str, Any] | None = None) -> dict[str, float]:
    """The wanted per-part keys (module docstring) of a model with ``profile_parts``: each part
    needed is counted (MACs) and the timed ones run in **one interleaved run**
    (:func:`repro.deploy.backends.interleaved_ms`: every part once per round; ``warmup`` untimed
    rounds, then up to ``repeats`` rounds, as many as fit ``budget_s`` and at least
    :data:`PART_MIN_REPEATS`; ``timing["repeats"]`` gets the count), so load from other processes
    hits every part alike and a time ratio compares the same rounds.

    Times are medians over the rounds; ``part_time_ratio:<a>/<b>`` is the ratio of the two medians.
    When ``spread`` (a dict) is given it is filled with ``{key: [lo, hi]}``, the 10th-90th
    percentile range over the rounds of each timed key -- of the per-round *paired* ratio
    ``t_a[i] / t_b[i]`` for a time ratio (widened to hold the value) -- which
    :mod:`repro.claims` reads as the measurement's interval (MAC keys are exact: no spread)."""
    import numpy as np

    from repro.profile import count_macs

    hook = getattr(model, "profile_parts", None)
    if not callable(hook):
        raise NotRunnable(f"{type(model).__name__} declares no parts (profile_parts()) to time")
    parts = hook(inputs)
    macs: dict[str, float] = {}

    def part_macs(part: str) -> float:
        if part not in parts:
            return 0.0
        same = next(q for q in parts if parts[q] is parts[part])  # "shared" is "displacement": one count
        if same not in macs:
            macs[same] = float(count_macs(*parts[same], warn_uncounted=False).model_macs)
        return macs[same]

    keys = [(key, *key.partition(":")[::2]) for key in wanted]
    timed = sorted({p for key, kind, part in keys if kind in _TIMED_PART_KEYS
                    for p in (part.partition("/")[::2] if "/" in part else (part,)) if p in parts})
    # a part that is another's very (module, inputs) (Dynamics' "shared" is "displacement") runs once
    first = {p: next(q for q in timed if parts[q] is parts[p]) for p in timed}
    runs = _interleaved_parts({p: parts[p] for p in timed if first[p] == p}, threads, repeats, warmup, budget_s)
    times = {p: runs[first[p]] for p in timed}  # timed before any MAC count (run_profile's order)
    if timing is not None and runs:
        timing["repeats"] = len(next(iter(runs.values())))  # rounds timed (warm-up rounds not counted)
    ms = {p: float(np.median(t)) / frames for p, t in times.items()}
    band = {p: [float(v) / frames for v in np.percentile(t, [10, 90])] for p, t in times.items()}

    out: dict[str, float] = {}
    for key, kind, part in keys:
        a, _, b = part.partition("/")
        if kind in ("part_macs_ratio", "part_time_ratio"):
            # every row of a table is asked every key: a ratio the row's model cannot form is 0
            if a not in parts or b not in parts:
                out[key] = 0.0
            elif kind == "part_macs_ratio":
                out[key] = part_macs(a) / part_macs(b)
            else:
                out[key] = ms[a] / ms[b]
                paired = np.asarray(times[a]) / np.asarray(times[b])  # same round: the same load
                lo, hi = np.percentile(paired, [10, 90])
                _put(spread, key, min(float(lo), out[key]), max(float(hi), out[key]))
        elif kind == PART_KEY:
            out[key] = ms.get(part, 0.0)
            if part in band:
                _put(spread, key, *band[part])
        elif kind == "part_fps":
            out[key] = 1e3 / ms[part] if part in ms else 0.0
            if part in band:
                _put(spread, key, 1e3 / band[part][1], 1e3 / band[part][0])
        else:  # part_gmacs
            out[key] = part_macs(part) / 1e9
    return out


def _put(spread: dict[str, list[float]] | None, key: str, lo: float, hi: float) -> None:
    if spread is not None:
        spread[key] = [lo, hi]


def _interleaved_parts(parts: dict[str, tuple], threads: int | None, repeats: int, warmup: int,
                       budget_s: float = PART_BUDGET_S) -> dict[str, list[float]]:
    """Milliseconds of each ``{name: (module, inputs)}`` over interleaved rounds (``repeats`` at
    most, :data:`PART_MIN_REPEATS` at least, as many as fit ``budget_s`` by the last warm-up round),
    in eval mode under ``torch.inference_mode`` with ``threads`` threads (count and modes restored)."""
    import time

    import torch

    from repro.deploy.backends import interleaved_ms

    if not parts:
        return {}
    previous, modes = torch.get_num_threads(), {name: m.training for name, (m, _) in parts.items()}
    torch.set_num_threads(previous if threads is None else int(threads))
    try:
        for module, _ in parts.values():
            module.eval()
        with torch.inference_mode():
            runners = {name: (lambda m=m, x=x: m(*x)) for name, (m, x) in parts.items()}
            round_s = 0.0
            for _ in range(warmup):
                start = time.perf_counter()
                for run in runners.values():
                    run()
                round_s = time.perf_counter() - start
            rounds = repeats if not round_s else max(min(repeats, PART_MIN_REPEATS), min(repeats, int(budget_s / round_s)))
            return interleaved_ms(runners, rounds)
    finally:
        torch.set_num_threads(previous)
        for name, (module, _) in parts.items():
            module.train(modes[name])


def _backends_wanted(wanted: list[str]) -> list[str]:
    """The backends the wanted latency keys name, in order (unknown ones: NotRunnable)."""
    from repro.deploy.backends import BACKENDS

    names = []
    for key in wanted:
        base, backend = split_backend(key)
        if base in LATENCY_KEYS and backend not in names:
            if backend not in BACKENDS:
                raise NotRunnable(f"column key '{key}': no backend '{backend}' (expected one of {', '.join(BACKENDS)})")
            names.append(backend)
    return names


def run_profile(ctx: JobContext) -> JobOutput:
    import torch

    from repro.profile import example_inputs, profile
    from repro.registry import create_model, model_entry

    row = ctx.row
    if row.model is None:
        raise NotRunnable(row.needs or "no model named for this row")
    entry = model_entry(row.model.name)
    shape = tuple(row.input_shape or entry.default_input or ())
    if not shape:
        raise NotRunnable(f"row gives no input_shape and model '{entry.name}' has no default_input")
    parts = [k for k in ctx.wanted if _is_part(k)]
    backends = _backends_wanted(ctx.wanted)
    # timed part keys run in their own interleaved run (time_parts), the whole model among them
    # as part "full": no separate whole-model latency run unless a latency column asks for one.
    # The parts run first, before any MAC count: on a machine quietened for a while (quiet.sh)
    # the timing comes first and the (load-independent) counting after.
    spread: dict[str, list[float]] = {}
    timing: dict[str, Any] = {}
    part_metrics: dict[str, float] = {}
    if parts:
        torch.manual_seed(0)
        model = create_model(row.model.name, **row.model.args)
        part_metrics = time_parts(model, example_inputs(model, shape), parts, ctx.threads, frames_per_input(shape),
                                  spread, timing=timing)
    timed = bool(backends)
    # one backend: timed alone; several: one interleaved run, {name: {latency_ms} | {error}}
    one = backends[0] if backends == [DEFAULT_BACKEND] else None
    prof = profile(row.model.name, shape, latency=timed, backend=one or backends or DEFAULT_BACKEND,
                   threads=ctx.threads, **row.model.args)
    metrics: dict[str, float] = {key: prof[key] for key in ("params", "macs", "gmacs", "gflops")}
    metrics["params_m"] = prof["params"] / 1e6
    stats = ("latency_ms", "latency_p10_ms", "latency_p90_ms")
    timings = {one: {k: prof[k] for k in stats}} if timed and one else prof.get("backends", {})
    errors = {}
    for backend, run in timings.items():
        if "error" in run:
            errors[backend] = run["error"]  # its columns stay empty; the reason is kept
            continue
        suffix = "" if backend == DEFAULT_BACKEND else f"@{backend}"
        metrics.update(latency_metrics(run["latency_ms"], shape, suffix))
        # each latency key's 10th-90th percentile range over the repeats (repro.claims' interval)
        spread.update(latency_spread(run["latency_p10_ms"], run["latency_p90_ms"], shape, suffix))
    metrics.update(part_metrics)
    details = {k: v for k, v in prof.items() if k not in metrics}
    if spread:  # the 10th-90th percentile range of each timed key (repro.claims' interval)
        details["spread"] = spread
    if part_metrics:
        details["part_timing"] = {"method": "one interleaved run of every timed part (median over rounds)",
                                  "repeats": timing.get("repeats"), "warmup": PART_WARMUP,
                                  "threads": ctx.threads if ctx.threads is not None else torch.get_num_threads()}
    if errors:
        details["backend_errors"] = errors
    data = "full-scale architecture at the paper's input" + (
        f", latency on this machine ({', '.join(backends)})" if timed else "") + (
        ", per-part latency on this machine (one interleaved run)" if part_metrics else "")
    return JobOutput(metrics=metrics, data=data, seed=0, details=details)


PROFILE = Job(name="profile", keys=PROFILE_KEYS, scales=("full",), reads_data=False, uses_run_config=False,
              needs=_needs, run=run_profile,
              doc="params, MACs and latency of the full-scale model at the paper's input (no data)")
