"""Latency backends: one registry that the profiler, the ``profile`` job and the benchmarks share.

A backend turns ``(model, inputs, threads)`` into ``run_once()``: every preparation step
(conversion, export, compilation, engine build) happens there, outside the timed region.  A
backend that cannot run on this machine says why (:attr:`Backend.unavailable`) instead of failing:

==================  ==========================================================================
name                what runs
==================  ==========================================================================
``eager``           the module as is
``channels_last_3d``  a copy in channels-last memory format (5-D: ``channels_last_3d``, 4-D:
                    ``channels_last``), inputs converted once
``compile``         ``torch.compile`` (inductor; on the CPU it generates C++ and needs a compiler)
``onnxruntime``     the graph exported by :func:`repro.deploy.onnx.export_onnx` (fixed shapes)
                    in an ONNX Runtime CPU session
``tensorrt``        a TensorRT engine of that graph, trajectory sampling as the plugin of
                    :mod:`repro.deploy.tensorrt` (CUDA inputs)
==================  ==========================================================================

:func:`time_backends` times several backends in one *interleaved* run (A, B, C, A, B, C, ...),
so that load from other processes on a shared machine hits every backend alike, and returns
``{name: {latency_ms, ...} | {error}}``.

    >>> time_backends(model, (video,), "all", threads=1)["compile"]["latency_ms"]
"""
from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from repro.engine.memory_format import channels_last, to_channels_last

__all__ = ["Backend", "BACKENDS", "BackendUnavailable", "register_backend", "availability",
           "resolve_backends", "prepare_backend", "time_backends", "interleaved_ms", "latency_stats", "CLOCKS"]

Runner = Callable[[], Any]
Factory = Callable[[nn.Module, tuple[Any, ...], int], Runner]


class BackendUnavailable(RuntimeError):
    """The backend cannot run here; the message says why (no GPU, no TensorRT, no compiler)."""


@dataclass(frozen=True)
class Backend:
    """A named runner factory; ``check()`` returns why it cannot run here, or None."""

    name: str
    factory: Factory
    check: Callable[[], str | None] = lambda: None
    doc: str = ""

    @property
    def unavailable(self) -> str | None:
        return self.check()

    def __call__(self, model: nn.Module, inputs: tuple[Any, ...], threads: int) -> Runner:
        reason = self.check()
        if reason is not None:
            raise BackendUnavailable(f"backend '{self.name}' unavailable: {reason}")
        return self.factory(model, inputs, threads)


BACKENDS: dict[str, Backend] = {}
"""Name -> :class:`Backend`, in registration order (the order ``"all"`` times them)."""


def register_backend(name: str, check: Callable[[], str | None] | None = None,
                     doc: str = "") -> Callable[[Factory], Factory]:
    """Register ``factory(model, inputs, threads) -> run_once`` under ``name``."""

    def wrap(factory: Factory) -> Factory:
        BACKENDS[name] = Backend(name, factory, check or (lambda: None), doc or (factory.__doc__ or "").strip())
        return factory

    return wrap


# ----------------------------------------------------------------------------------------------
# availability checks
# ----------------------------------------------------------------------------------------------
def _missing_module(module: str) -> str | None:
    import importlib.util

    return None if importlib.util.find_spec(module) is not None else f"Python package '{module}' is not installed"


def _no_cpp_compiler() -> str | None:
    # inductor's CPU code is C++ built at run time (torch._inductor.cpp_builder honours $CXX)
    candidates = [os.environ.get("CXX"), "g++", "c++", "clang++"]
    if any(c and shutil.which(c) for c in candidates):
        return None
    return "torch.compile (inductor) needs a C++ compiler on the CPU; none found (set $CXX or install g++)"


def _no_tensorrt() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine (TensorRT runs on NVIDIA GPUs only)"
    missing = _missing_module("tensorrt")
    if missing:
        return f"TensorRT >= 10.9 is not installed ({missing})"
    return None


def availability(names: Iterable[str] | None = None) -> dict[str, str | None]:
    """Backend name -> why it cannot run here (None: it can)."""
    return {name: BACKENDS[name].unavailable for name in (names or BACKENDS)}


# ----------------------------------------------------------------------------------------------
# the backends
# ----------------------------------------------------------------------------------------------
def _tensor_inputs(inputs: tuple[Any, ...], backend: str) -> None:
    if not all(isinstance(x, Tensor) for x in inputs):
        raise TypeError(f"the {backend} backend takes tensor inputs only")


@register_backend("eager", doc="the module as is")
def _eager(model: nn.Module, inputs: tuple[Any, ...], threads: int) -> Runner:
    return lambda: model(*inputs)


@register_backend("channels_last_3d", doc="a channels-last copy of the module and its inputs")
def _channels_last_backend(model: nn.Module, inputs: tuple[Any, ...], threads: int) -> Runner:
    # A copy, so that the caller's model keeps its memory format.
    converted = to_channels_last(copy.deepcopy(model))
    converted_inputs = tuple(channels_last(x) for x in inputs)
    return lambda: converted(*converted_inputs)


@register_backend("compile", check=lambda: _missing_module("triton") if torch.cuda.is_available() else _no_cpp_compiler(),
                  doc="torch.compile (inductor)")
def _compile_backend(model: nn.Module, inputs: tuple[Any, ...], threads: int) -> Runner:
    compiled = torch.compile(model, backend="inductor", dynamic=False)
    compiled(*inputs)  # compile now, outside the timed region (minutes for a large model)
    return lambda: compiled(*inputs)


@register_backend("onnxruntime", check=lambda: _missing_module("onnxruntime"),
                  doc="the exported ONNX graph (fixed shapes) in ONNX Runtime's CPU provider")
def _onnxruntime_backend(model: nn.Module, inputs: tuple[Any, ...], threads: int) -> Runner:
    from repro.deploy.onnx import export_onnx, ort_session

    _tensor_inputs(inputs, "onnxruntime")
    names = [f"input_{i}" for i in range(len(inputs))]
    with tempfile.TemporaryDirectory() as tmp:
        # the example's shapes baked in (no dynamic batch): the graph timed is the one timed before
        path = export_onnx(model, inputs, os.path.join(tmp, "model.onnx"), input_names=names, dynamic_batch=False)
        session = ort_session(path, threads)
    feed = {name: x.detach().cpu().numpy() for name, x in zip(names, inputs)}
    return lambda: session.run(None, feed)


@register_backend("tensorrt", check=_no_tensorrt,
                  doc="a TensorRT engine (plugins for the trajectory sampling) on the GPU")
def _tensorrt_backend(model: nn.Module, inputs: tuple[Any, ...], threads: int) -> Runner:
    from repro.deploy.tensorrt.engine import engine_runner

    _tensor_inputs(inputs, "tensorrt")
    return engine_runner(model, tuple(x.cuda() for x in inputs))


# ----------------------------------------------------------------------------------------------
# preparing and timing
# ----------------------------------------------------------------------------------------------
def resolve_backends(names: str | Sequence[str]) -> list[str]:
    """``"all"`` -> every registered backend; ``"a,b"`` or a list -> those (unknown: ValueError)."""
    if isinstance(names, str):
        names = list(BACKENDS) if names == "all" else [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        raise ValueError(f"backend {', '.join(map(repr, unknown)) or '(none)'} unknown; "
                         f"expected 'all' or some of {', '.join(BACKENDS)}")
    return list(names)


def prepare_backend(name: str, model: nn.Module, inputs: tuple[Any, ...], threads: int) -> Runner:
    """``run_once`` of backend ``name`` (:class:`BackendUnavailable` says why it cannot run)."""
    if name not in BACKENDS:
        raise ValueError(f"backend {name!r} unknown; available: {sorted(BACKENDS)}")
    return BACKENDS[name](model, inputs, threads)


def latency_stats(times_ms: Sequence[float]) -> dict[str, float]:
    """Median, inter-quartile range, 10th/90th percentile and minimum of ``times_ms``."""
    p10, p25, p50, p75, p90 = np.percentile(times_ms, [10, 25, 50, 75, 90])
    return {"latency_ms": float(p50), "latency_iqr_ms": float(p75 - p25), "latency_p10_ms": float(p10),
            "latency_p90_ms": float(p90), "latency_min_ms": float(min(times_ms))}


def _error(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}" if not isinstance(err, BackendUnavailable) else str(err)


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "thread": time.thread_time}
"""``wall``: elapsed time.  ``thread``: CPU time of the calling thread -- with one intra-op thread
(the work runs on the caller) that is the latency minus the time the OS gave the core to other
processes, the steadier figure on a shared machine; meaningless with worker threads or a GPU."""


def interleaved_ms(runners: dict[Any, Runner], repeats: int, warmup: int = 0, clock: str = "wall",
                   rotate: bool = False) -> dict[Any, list[float]]:
    """Milliseconds of each runner over ``repeats`` round-robin rounds (A, B, C, A, B, C, ...), after
    ``warmup`` untimed calls of each, on ``clock`` (:data:`CLOCKS`); CUDA is synchronised around
    each call when present.  ``rotate``: each round starts one runner later (A B C, B C A, C A B,
    ...), so no runner always follows the same one -- what ran just before a few-millisecond op
    (caches, allocator state) moved it by up to 40 % here (``benchmarks/bench_trajectory.py``)."""
    if clock not in CLOCKS:
        raise ValueError(f"clock: expected one of {', '.join(CLOCKS)}, got {clock!r}")
    now = CLOCKS[clock]
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for run in runners.values():
        for _ in range(warmup):
            run()
    times: dict[Any, list[float]] = {key: [] for key in runners}
    keys = list(runners)
    for round_ in range(repeats):
        first = round_ % len(keys) if rotate else 0
        for key in keys[first:] + keys[:first]:
            run = runners[key]
            sync()
            start = now()
            run()
            sync()  # kernels are asynchronous
            times[key].append((now() - start) * 1e3)
    return times


def time_backends(model: nn.Module, inputs: Tensor | Sequence[Any], names: str | Sequence[str] = "all", *,
                  threads: int | None = None, warmup: int = 3, repeats: int = 10,
                  clock: str = "wall") -> dict[str, dict[str, Any]]:
    """Time ``names`` on ``model(*inputs)`` in one interleaved run (on ``clock``, :data:`CLOCKS`).

    Each backend is prepared once (a backend that cannot run, or fails to prepare, reports
    ``{"error": why}``), warmed up ``warmup`` times, then the ready ones run round-robin for
    ``repeats`` rounds.  Returns ``{name: {latency_ms, latency_iqr_ms, latency_p10_ms,
    latency_p90_ms, latency_min_ms, repeats, threads, device, times_ms} | {error}}``.
    The model runs in eval mode under ``torch.inference_mode`` with ``threads`` intra-op threads
    (the previous count and mode are restored).
    """
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    names = resolve_backends(names)
    previous_threads, was_training = torch.get_num_threads(), model.training
    threads = previous_threads if threads is None else int(threads)
    out: dict[str, dict[str, Any]] = {}
    runners: dict[str, Runner] = {}
    model.eval()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for name in names:
                try:
                    run = prepare_backend(name, model, inputs, threads)
                    for _ in range(warmup):
                        run()
                    runners[name] = run
                except Exception as err:  # noqa: BLE001 - reported per backend, the others still run
                    out[name] = {"error": _error(err)}
            times = interleaved_ms(runners, repeats, clock=clock)
    finally:
        torch.set_num_threads(previous_threads)
        model.train(was_training)
    for name in runners:
        device = "cuda" if name == "tensorrt" else str(next((x.device for x in inputs if isinstance(x, Tensor)), "cpu"))
        out[name] = {**latency_stats(times[name]), "repeats": repeats, "threads": threads, "device": device,
                     "times_ms": times[name]}
    return {name: out[name] for name in names}
