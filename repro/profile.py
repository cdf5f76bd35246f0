"""Parameters, multiply-accumulates (MACs) and latency of a model.

MAC counting (:func:`count_macs`) traces one real forward pass with fvcore's
``FlopCountAnalysis``.  fvcore counts one fused multiply-add as one "flop", so its totals are
MACs; ``gflops`` in :func:`profile` is ``2 * MACs / 1e9``.  fvcore counts conv, linear/matmul/
bmm/einsum, batch/group/layer norm, 2-D upsampling, ``adaptive_avg_pool2d`` and grid sampling,
and silently skips or reports as unsupported everything else.  We add handles so that the ops
our models use are counted, with these conventions (per output element, per channel, unless
stated):

================================  ==========================================================
op                                MACs
================================  ==========================================================
elementwise (add, mul, div, sub,  1 (one arithmetic op; transcendental ones count 1 too,
relu, sigmoid, exp, where, ...)   comparisons and clamps count 1)
softmax / log_softmax             3 per element (exp, running sum, divide)
reductions (sum, mean, max, ...)  1 per *input* element (var/std/norm: 2; logsumexp: 3)
max/avg pool 1/2/3-D              kernel volume (a k^d window: k^d reads/adds)
adaptive avg/max pool             1 per *input* element (fvcore's adaptive_avg_pool2d rule)
grid_sampler (bilinear)           4 for 4-D input, 8 for 5-D (trilinear: 8 corners);
                                  nearest 1; bicubic 16.  fvcore's own rule is 4 for both.
upsample                          nearest 1, linear 2, bilinear 4, trilinear 8, bicubic 16
anti-aliased upsample (``_aa``)   taps per output element: per resized dim, 2 x max(1, in/out)
                                  (bilinear) or 4 x max(1, in/out) (bicubic), multiplied
FFT (fft*, ifft*, _fft_c2c)       2.5 * N * log2(N) per complex transform of N points
                                  (the usual 5 N log2 N real flops, halved to MACs)
real FFT (rfft*, irfft*, r2c/c2r) half of that: 1.25 * N * log2(N), N = real signal size
baddbmm                           b * m * n * k (as bmm)
embedding_bag (weighted sum)      indices x embedding dim (one multiply-add per gathered row
                                  element; the trajectory conv's bilinear taps)
index_add                         one addition per source element (Tensor Sketch's count sketch)
================================  ==========================================================

Pure data movement (view, permute, cat, slicing, padding, ...) is *declared* zero-cost in
:data:`ZERO_COST_OPS` and its calls are listed in ``MacReport.zero_cost``.  Any other op is
returned in ``MacReport.uncounted`` (op -> number of calls) and a :class:`UncountedOpsWarning`
names it: nothing is dropped silently.

Reference figures: torchvision's documented GMACs for its video models (r3d_18 40.70,
r2plus1d_18 40.52, mc3_18 43.34) and 2-D ResNets (resnet18 1.81, resnet50 4.09) are exactly the
conv + linear MACs.  They are ``MacReport.dense_macs`` here.  ``MacReport.macs`` also counts BN
(+0.1 to 0.3 %, fvcore's default) and the elementwise/pooling ops above (+0.05 to 0.4 %), which
matter for motion-representation models (TV-L1 iterations, cost volumes, warps) whose cost is
largely not convolution.

Latency (:func:`measure_latency`): median and spread of ``repeats`` timed forward passes under
``torch.inference_mode`` after ``warmup`` untimed ones, with a chosen thread count (restored
afterwards), on one backend of :mod:`repro.deploy.backends` (eager, channels-last, torch.compile,
ONNX Runtime, TensorRT); ``profile(..., backend="all")`` times every backend in one interleaved run
(:func:`repro.deploy.backends.time_backends`) and reports ``backends: {name: {latency_ms, ...} |
{error}}``.
"""
from __future__ import annotations

import copy
import math
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape
from torch import Tensor

from repro.deploy.backends import BACKENDS, latency_stats, prepare_backend, register_backend, time_backends
from repro.deploy.onnx import ONNX_OPSET  # noqa: F401 - re-exported

__all__ = [
    "MacReport",
    "LatencyReport",
    "UncountedOpsWarning",
    "ZERO_COST_OPS",
    "EXTRA_OP_HANDLES",
    "DENSE_OPERATORS",
    "LATENCY_BACKENDS",
    "register_latency_backend",
    "count_params",
    "count_macs",
    "measure_latency",
    "profile",
    "example_inputs",
    "is_model_op",
    "MAC_CONVENTION",
]

class UncountedOpsWarning(UserWarning):
    """A traced op has no MAC rule; its calls are in ``MacReport.uncounted``."""


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------
def count_params(model: nn.Module) -> int:
    """Number of parameters (shared tensors counted once, buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------
# MAC rules (fvcore op handles: (inputs, outputs) lists of torch._C.Value -> number)
# --------------------------------------------------------------------------------------------
Handle = Callable[[list[Any], list[Any]], float]


def _numel(value: Any) -> int:
    shape = get_shape(value)
    return math.prod(shape) if shape is not None else 0


def _constant(value: Any) -> Any:
    """The Python value of a constant graph input (kernel sizes, dims, modes), else None."""
    node = value.node()
    if node.kind() == "prim::Constant":
        return value.toIValue()
    if node.kind() == "prim::ListConstruct":
        items = [_constant(v) for v in node.inputs()]
        return None if any(i is None for i in items) else items
    return None


def _per_output(scale: float) -> Handle:
    def handle(inputs: list[Any], outputs: list[Any]) -> float:
        return scale * _numel(outputs[0])

    return handle


def _per_input(scale: float) -> Handle:
    def handle(inputs: list[Any], outputs: list[Any]) -> float:
        return scale * _numel(inputs[0])

    return handle


def _pool_handle(inputs: list[Any], outputs: list[Any]) -> float:
    # aten::{max,avg}_pool{1,2,3}d(input, kernel_size, ...): kernel volume per output element.
    kernel = _constant(inputs[1])
    if kernel is None:
        # Kernel computed from shapes at trace time (e.g. flow pooled to the feature resolution):
        # such windows tile the input, so each input element is read once.
        return _numel(inputs[0])
    out_shape = get_shape(outputs[0])
    kernel = list(kernel) if isinstance(kernel, (list, tuple)) else [kernel]
    spatial_dims = len(out_shape) - 2 if out_shape is not None and len(out_shape) > 2 else len(kernel)
    if len(kernel) == 1:
        kernel = kernel * spatial_dims
    return math.prod(kernel) * _numel(outputs[0])


def _grid_sampler_handle(inputs: list[Any], outputs: list[Any]) -> float:
    # aten::grid_sampler(input, grid, interpolation_mode, padding_mode, align_corners);
    # mode 0 bilinear (2^d corners), 1 nearest, 2 bicubic (4-D only).
    mode = _constant(inputs[2])
    shape = get_shape(inputs[0])
    spatial_dims = len(shape) - 2 if shape is not None else 2
    taps = {0: 2**spatial_dims, 1: 1, 2: 16}.get(mode, 2**spatial_dims)
    return taps * _numel(outputs[0])


def _fft_handle(real: bool, inverse: bool, multi_dim: bool) -> Handle:
    """MACs of an FFT: transforms x (2.5 or 1.25) * N * log2(N); see the module table.

    Signatures: fft_{fft,ifft,rfft,irfft}(input, n, dim, norm) and
    fft_{fft2,rfft2,fftn,rfftn,...}(input, s, dim, norm).  N is the signal size along the
    transformed dims: the real side for r2c/c2r, the output for c2c.
    """

    def handle(inputs: list[Any], outputs: list[Any]) -> float:
        in_shape, out_shape = get_shape(inputs[0]), get_shape(outputs[0])
        if in_shape is None or out_shape is None:
            return 0
        ndim = len(out_shape)
        size_arg, dim_arg = _constant(inputs[1]), _constant(inputs[2])
        if not multi_dim:
            dims = [-1 if dim_arg is None else int(dim_arg)]
        elif dim_arg is not None:
            dims = [int(d) for d in dim_arg]
        elif size_arg is not None:
            dims = list(range(-len(size_arg), 0))
        else:
            dims = list(range(ndim))
        dims = [d % ndim for d in dims]
        if real and not inverse:  # rfft: signal = input, zero-padded/trimmed to n / s if given
            signal = [in_shape[d] for d in dims]
            if size_arg is not None:
                sizes = [size_arg] if not isinstance(size_arg, (list, tuple)) else list(size_arg)
                signal = [int(s) if s not in (None, -1) else signal[i] for i, s in enumerate(sizes)]
        else:  # c2c and irfft: the output is the signal
            signal = [out_shape[d] for d in dims]
        n = math.prod(signal)
        transforms = math.prod(s for i, s in enumerate(out_shape) if i not in dims)
        per_point = 1.25 if real else 2.5
        return transforms * per_point * n * math.log2(n) if n > 1 else 0

    return handle


def _private_fft_handle(real: bool) -> Handle:
    # aten::_fft_{r2c,c2r,c2c}(self, dim, normalization, onesided/last_dim_size/forward).
    def handle(inputs: list[Any], outputs: list[Any]) -> float:
        in_shape, out_shape = get_shape(inputs[0]), get_shape(outputs[0])
        dims = _constant(inputs[1])
        if in_shape is None or out_shape is None or dims is None:
            return 0
        ndim = len(out_shape)
        dims = [int(d) % ndim for d in dims]
        # r2c: the real input is the signal; c2r: the real output; c2c: either.
        signal_shape = in_shape if _numel(inputs[0]) >= _numel(outputs[0]) else out_shape
        n = math.prod(signal_shape[d] for d in dims)
        transforms = math.prod(s for i, s in enumerate(out_shape) if i not in dims)
        return transforms * (1.25 if real else 2.5) * n * math.log2(n) if n > 1 else 0

    return handle


def _antialias_handle(taps_per_dim: int) -> Handle:
    """aten::_upsample_{bilinear,bicubic}2d_aa(input, size, ...): when shrinking by ``s`` the
    filter widens to ``taps_per_dim * s`` input pixels per dim (torch's separable AA kernel)."""

    def handle(inputs: list[Any], outputs: list[Any]) -> float:
        in_shape, out_shape = get_shape(inputs[0]), get_shape(outputs[0])
        if in_shape is None or out_shape is None:
            return 0
        taps = 1.0
        for n_in, n_out in zip(in_shape[2:], out_shape[2:]):
            taps *= taps_per_dim * max(1.0, n_in / max(n_out, 1))
        return taps * _numel(outputs[0])

    return handle


def _embedding_bag_handle(inputs: list[Any], outputs: list[Any]) -> float:
    # aten::embedding_bag(weight (rows, D), indices, offsets, ...): every index gathers one row of
    # D values and adds it (weighted) into its bag.
    weight = get_shape(inputs[0])
    return _numel(inputs[1]) * (weight[-1] if weight else 0)


def _baddbmm_handle(inputs: list[Any], outputs: list[Any]) -> float:
    # aten::baddbmm(self, batch1 (b, n, k), batch2 (b, k, m), beta, alpha)
    b, n, k = get_shape(inputs[1])
    return b * n * k * get_shape(inputs[2])[-1]


_ELEMENTWISE = (
    "add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div", "div_", "neg", "abs", "sign",
    "reciprocal", "square", "pow", "sqrt", "rsqrt", "exp", "log", "log1p", "expm1", "sin", "cos",
    "atan2", "erf", "sigmoid", "sigmoid_", "tanh", "tanh_", "relu", "relu_", "relu6", "leaky_relu",
    "leaky_relu_", "gelu", "silu", "silu_", "hardswish", "hardsigmoid", "hardtanh", "hardtanh_",
    "softplus", "elu", "clamp", "clamp_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_",
    "maximum", "minimum", "where", "masked_fill", "masked_fill_", "floor", "ceil", "round", "trunc",
    "frac", "remainder", "floor_divide", "fmod", "eq", "ne", "gt", "ge", "lt", "le", "__and__",
    "__or__", "logical_and", "logical_or", "logical_not", "bitwise_not", "isnan", "isinf",
    "nan_to_num", "lerp", "addcmul", "addcdiv",
)
_REDUCTIONS = {
    "sum": 1, "mean": 1, "prod": 1, "amax": 1, "amin": 1, "max": 1, "min": 1, "argmax": 1,
    "argmin": 1, "cumsum": 1, "cumprod": 1, "all": 1, "any": 1, "var": 2, "std": 2,
    "var_mean": 2, "std_mean": 2, "norm": 2, "linalg_vector_norm": 2, "frobenius_norm": 2,
    "logsumexp": 3,
}
_UPSAMPLE = {
    "upsample_nearest1d": 1, "upsample_nearest2d": 1, "upsample_nearest3d": 1,
    "upsample_linear1d": 2, "upsample_bilinear2d": 4, "upsample_trilinear3d": 8,
    "upsample_bicubic2d": 16,
}


def _extra_handles() -> dict[str, Handle]:
    handles: dict[str, Handle] = {f"aten::{op}": _per_output(1) for op in _ELEMENTWISE}
    handles.update({f"aten::{op}": _per_input(scale) for op, scale in _REDUCTIONS.items()})
    handles.update({f"aten::{op}": _per_output(scale) for op, scale in _UPSAMPLE.items()})
    for op in ("softmax", "_softmax", "log_softmax", "_log_softmax"):
        handles[f"aten::{op}"] = _per_output(3)
    for op in ("max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
               "max_pool2d_with_indices", "max_pool3d_with_indices"):
        handles[f"aten::{op}"] = _pool_handle
    for op in ("adaptive_avg_pool1d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
               "adaptive_max_pool2d", "adaptive_max_pool3d"):
        handles[f"aten::{op}"] = _per_input(1)
    for op in ("grid_sampler", "grid_sampler_2d", "grid_sampler_3d"):
        handles[f"aten::{op}"] = _grid_sampler_handle
    for name in ("fft", "ifft", "hfft", "ihfft"):
        handles[f"aten::fft_{name}"] = _fft_handle(real=name in ("hfft", "ihfft"), inverse=name == "hfft", multi_dim=False)
    handles["aten::fft_rfft"] = _fft_handle(real=True, inverse=False, multi_dim=False)
    handles["aten::fft_irfft"] = _fft_handle(real=True, inverse=True, multi_dim=False)
    for suffix in ("2", "n"):
        handles[f"aten::fft_fft{suffix}"] = _fft_handle(real=False, inverse=False, multi_dim=True)
        handles[f"aten::fft_ifft{suffix}"] = _fft_handle(real=False, inverse=True, multi_dim=True)
        handles[f"aten::fft_rfft{suffix}"] = _fft_handle(real=True, inverse=False, multi_dim=True)
        handles[f"aten::fft_irfft{suffix}"] = _fft_handle(real=True, inverse=True, multi_dim=True)
    handles["aten::_fft_r2c"] = _private_fft_handle(real=True)
    handles["aten::_fft_c2r"] = _private_fft_handle(real=True)
    handles["aten::_fft_c2c"] = _private_fft_handle(real=False)
    handles["aten::baddbmm"] = _baddbmm_handle
    handles["aten::embedding_bag"] = _embedding_bag_handle
    # aten::index_add(self, dim, index, source, alpha): each source element is added once
    handles["aten::index_add"] = lambda inputs, outputs: _numel(inputs[3])
    handles["aten::_upsample_bilinear2d_aa"] = _antialias_handle(2)
    handles["aten::_upsample_bicubic2d_aa"] = _antialias_handle(4)
    return handles


EXTRA_OP_HANDLES: dict[str, Handle] = _extra_handles()
"""Our MAC rules for ops fvcore skips (or, for grid_sampler, counts differently)."""

ZERO_COST_OPS: frozenset[str] = frozenset(
    f"aten::{op}"
    for op in (
        # shape / view / layout
        "view", "view_as", "reshape", "reshape_as", "_reshape_alias", "_unsafe_view", "flatten",
        "unflatten", "squeeze", "squeeze_", "unsqueeze", "unsqueeze_", "permute", "transpose",
        "transpose_", "t", "numpy_T", "movedim", "swapaxes", "expand", "expand_as",
        "broadcast_to", "contiguous", "as_strided", "alias", "detach", "detach_", "to", "type_as",
        "resolve_conj", "resolve_neg", "real", "imag", "view_as_real", "view_as_complex",
        "complex", "lift_fresh", "size", "numel", "dim", "Int", "Float", "ScalarImplicit",
        "scalar_tensor", "item",
        # copying, indexing, concatenation, padding
        "clone", "copy_", "slice", "select", "narrow", "split", "split_with_sizes", "chunk",
        "unbind", "cat", "concat", "stack", "index", "index_select", "gather", "take",
        "index_put_", "index_put", "masked_select", "nonzero", "roll", "flip", "repeat",
        "repeat_interleave", "tile", "constant_pad_nd", "pad", "reflection_pad1d",
        "reflection_pad2d", "reflection_pad3d", "replication_pad1d", "replication_pad2d",
        "replication_pad3d", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "fill_",
        "zero_", "detach_copy",
        # constructors
        "zeros", "zeros_like", "ones", "ones_like", "empty", "empty_like", "full", "full_like",
        "new_zeros", "new_ones", "new_empty", "new_full", "arange", "linspace", "eye", "meshgrid",
        "rand", "randn", "rand_like", "randn_like", "bernoulli_",
        # dropout: identity at inference (the mask multiply in training is not counted)
        "dropout", "dropout_", "feature_dropout", "alpha_dropout",
    )
)
"""Ops declared free (data movement/constructors); their calls go to ``MacReport.zero_cost``."""

MAC_CONVENTION = ("one fused multiply-add = 1 MAC (fvcore); FLOPs = 2 x MACs; 'macs' counts conv, linear/matmul "
                  "and the papers' sampling/softmax/FFT ops; 'macs_all' adds BN, activations, pooling, elementwise")

DENSE_OPERATORS: frozenset[str] = frozenset({"conv", "linear", "addmm", "matmul", "mm", "bmm", "baddbmm", "einsum"})
"""``by_operator`` keys summed in ``MacReport.dense_macs`` (torchvision's documented GMACs)."""


def is_model_op(op: str) -> bool:
    """Ops counted in the headline ``MacReport.model_macs``: dense layers plus the motion ops the
    papers define (grid sampling for warps and trajectories, softmax of cost volumes, FFTs of
    Tensor Sketch, resampling).  Normalisation, activations, pooling and elementwise arithmetic
    are left out, as torchvision and the papers leave them out of their GMACs."""
    return op in DENSE_OPERATORS or op.startswith(("grid_sampler", "fft_", "_fft_", "upsample", "_upsample")) or "softmax" in op


@dataclass(frozen=True)
class MacReport:
    """MACs of one forward pass.

    ``macs``: everything counted.  ``by_operator``: MACs per op (fvcore's short names, e.g.
    ``conv``).  ``uncounted``: op -> calls with no MAC rule (counted 0).  ``handled``: MACs of
    the ops counted by our :data:`EXTRA_OP_HANDLES`.  ``zero_cost``: op -> calls of ops declared
    free.  ``by_module``: MACs per top-level child module.
    """

    macs: int
    by_operator: dict[str, int]
    uncounted: dict[str, int]
    handled: dict[str, int]
    zero_cost: dict[str, int] = field(default_factory=dict)
    by_module: dict[str, int] = field(default_factory=dict)

    @property
    def model_macs(self) -> int:
        """The headline MAC count (see :func:`is_model_op`); ``macs`` is everything counted."""
        return sum(v for k, v in self.by_operator.items() if is_model_op(k))

    @property
    def dense_macs(self) -> int:
        """Conv + linear/matmul MACs only: the convention of torchvision's GMACs column."""
        return sum(v for k, v in self.by_operator.items() if k in DENSE_OPERATORS)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "dense_macs": self.dense_macs, "model_macs": self.model_macs}

    def summary(self) -> str:
        lines = [f"MACs {self.macs:,} ({self.macs / 1e9:.3f} G; dense conv+linear {self.dense_macs / 1e9:.3f} G)"]
        for op, macs in sorted(self.by_operator.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {op:<28} {macs:>18,}" + ("  [repro rule]" if op in self.handled else ""))
        if self.uncounted:
            lines.append("  NOT COUNTED (no MAC rule): " + ", ".join(f"{k} x{v}" for k, v in sorted(self.uncounted.items())))
        return "\n".join(lines)


def _as_tuple(inputs: Tensor | Sequence[Any]) -> tuple[Any, ...]:
    return (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)


def _short(op: str) -> str:
    return op.split("::", 1)[-1]


def count_macs(model: nn.Module, inputs: Tensor | Sequence[Any], *, warn_uncounted: bool = True) -> MacReport:
    """Count the MACs of ``model(*inputs)`` (one traced forward, eval mode, no grad).

    See the module docstring for the per-op conventions.  The model's train/eval mode is
    restored afterwards.
    """
    inputs = _as_tuple(inputs)
    calls: Counter[str] = Counter()

    def logged(op: str, handle: Handle) -> Handle:
        def run(op_inputs: list[Any], op_outputs: list[Any]) -> float:
            calls[op] += 1
            return handle(op_inputs, op_outputs)

        return run

    def free(op_inputs: list[Any], op_outputs: list[Any]) -> float:
        return 0

    analysis = FlopCountAnalysis(model, inputs)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    analysis.set_op_handle(**{op: logged(op, h) for op, h in EXTRA_OP_HANDLES.items()})
    # A handle (even one returning 0) overrides fvcore's silent ignore list, so every op in
    # ZERO_COST_OPS is seen and its calls are reported.
    analysis.set_op_handle(**{op: logged(op, free) for op in ZERO_COST_OPS})

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            by_operator = {op: int(round(v)) for op, v in analysis.by_operator().items()}
            uncounted = dict(analysis.unsupported_ops())
            module_macs = analysis.by_module()
            by_module = {name: int(round(module_macs[name])) for name, _ in model.named_children() if name in module_macs}
    finally:
        model.train(was_training)

    zero_cost = {_short(op): n for op, n in calls.items() if op in ZERO_COST_OPS}
    handled = {
        _short(op): by_operator.get(_short(op), 0) for op in calls if op in EXTRA_OP_HANDLES
    }
    if uncounted and warn_uncounted:
        warnings.warn(
            "MACs not counted (no rule) for: " + ", ".join(f"{k} x{v}" for k, v in sorted(uncounted.items())),
            UncountedOpsWarning,
            stacklevel=2,
        )
    return MacReport(
        macs=sum(by_operator.values()),
        by_operator=by_operator,
        uncounted=uncounted,
        handled=handled,
        zero_cost=zero_cost,
        by_module=by_module,
    )


# --------------------------------------------------------------------------------------------
# Latency
# --------------------------------------------------------------------------------------------
# The backends live in repro.deploy.backends (one registry for the profiler, the profile job and
# the benchmarks); these names stay for callers of before that move.
LATENCY_BACKENDS = BACKENDS
register_latency_backend = register_backend


@dataclass(frozen=True)
class LatencyReport:
    """Forward-pass latency in milliseconds: median, inter-quartile range, 10th/90th percentile."""

    median_ms: float
    iqr_ms: float
    p10: float
    p90: float
    repeats: int
    threads: int
    backend: str = "eager"
    warmup: int = 0
    times_ms: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "times_ms": list(self.times_ms)}


def measure_latency(
    model: nn.Module,
    inputs: Tensor | Sequence[Any],
    warmup: int = 3,
    repeats: int = 10,
    threads: int | None = None,
    backend: str = "eager",
) -> LatencyReport:
    """Time ``repeats`` forward passes (after ``warmup``) with ``threads`` intra-op threads.

    ``threads=None`` keeps the current ``torch.get_num_threads()``; the previous count is
    restored on exit.  The model runs in eval mode (mode restored afterwards) under
    ``torch.inference_mode``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} unknown; available: {sorted(BACKENDS)}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0; got repeats={repeats}, warmup={warmup}")
    inputs = _as_tuple(inputs)
    previous_threads = torch.get_num_threads()
    threads = previous_threads if threads is None else int(threads)
    was_training = model.training
    model.eval()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            run = prepare_backend(backend, model, inputs, threads)
            on_cuda = any(isinstance(x, Tensor) and x.is_cuda for x in inputs)
            sync = torch.cuda.synchronize if on_cuda else (lambda: None)  # kernels are asynchronous
            for _ in range(warmup):
                run()
            sync()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                run()
                sync()
                times.append((time.perf_counter() - start) * 1e3)
    finally:
        torch.set_num_threads(previous_threads)
        model.train(was_training)
    p10, p25, p50, p75, p90 = np.percentile(times, [10, 25, 50, 75, 90])
    return LatencyReport(
        median_ms=float(p50), iqr_ms=float(p75 - p25), p10=float(p10), p90=float(p90),
        repeats=repeats, threads=threads, backend=backend, warmup=warmup, times_ms=tuple(times),
    )


# --------------------------------------------------------------------------------------------
# One call for the tables
# --------------------------------------------------------------------------------------------
def profile(
    model_name_or_module: str | nn.Module,
    input_shape: Sequence[int] | None = None,
    latency: bool = False,
    *,
    backend: str | Sequence[str] = "eager",
    warmup: int = 3,
    repeats: int = 10,
    threads: int | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    **model_kwargs: Any,
) -> dict[str, Any]:
    """Params, MACs (and latency) of a registered model name or a module, as a JSON-able dict.

    ``input_shape`` defaults to the registry's ``default_input`` for a name.  Keys: ``model``,
    ``input_shape``, ``params``, ``macs`` (the headline count, :attr:`MacReport.model_macs`),
    ``gmacs``, ``gflops`` (= 2 * MACs / 1e9), ``macs_all`` (every op counted, BN, activations,
    pooling and elementwise included), ``dense_macs``, ``gmacs_dense`` (conv + linear only), ``macs_by_operator``,
    ``uncounted_ops``, ``handled_ops``; with ``latency=True`` also ``latency_ms`` (median),
    ``latency_iqr_ms``, ``latency_p10_ms``, ``latency_p90_ms``, ``repeats``, ``threads``,
    ``backend``, ``device``.  ``backend="all"`` (or ``"a,b"``, a list) times those backends in
    one interleaved run instead: ``backends: {name: {latency_ms, ...} | {error: why}}``.  MACs are counted on the CPU; latency runs on ``device`` (a copy
    of the model is moved there, the caller's module stays put).
    """
    if isinstance(model_name_or_module, str):
        from repro.registry import create_model, model_entry

        name = model_name_or_module
        entry = model_entry(name)
        if input_shape is None:
            input_shape = entry.default_input
            if input_shape is None:
                raise ValueError(f"model '{name}' registers no default_input; pass input_shape")
        model = create_model(name, **model_kwargs)
    elif isinstance(model_name_or_module, nn.Module):
        if model_kwargs:
            raise TypeError(f"model kwargs {sorted(model_kwargs)} only apply to a registered model name")
        if input_shape is None:
            raise ValueError("input_shape is required when profiling a module")
        model, name = model_name_or_module, type(model_name_or_module).__name__
    else:
        raise TypeError(f"model_name_or_module must be a str or nn.Module; got {type(model_name_or_module).__name__}")
    input_shape = tuple(int(s) for s in input_shape)
    torch.manual_seed(seed)
    inputs = example_inputs(model, input_shape)
    macs = count_macs(model, inputs)
    result: dict[str, Any] = {
        "model": name,
        "input_shape": list(input_shape),
        "params": count_params(model),
        "macs": macs.model_macs,
        "gmacs": macs.model_macs / 1e9,
        "gflops": 2 * macs.model_macs / 1e9,
        "macs_all": macs.macs,
        "dense_macs": macs.dense_macs,
        "gmacs_dense": macs.dense_macs / 1e9,
        "macs_by_operator": macs.by_operator,
        "uncounted_ops": macs.uncounted,
        "handled_ops": macs.handled,
        "mac_convention": MAC_CONVENTION,
    }
    if latency:
        device = torch.device(device)
        timed_model = model if device.type == "cpu" else copy.deepcopy(model).to(device)
        timed_inputs = tuple(x.to(device) for x in inputs)
        if not isinstance(backend, str) or backend not in BACKENDS:  # "all" or a list: side by side, one interleaved run
            result["backends"] = _backends_side_by_side(timed_model, timed_inputs, backend, warmup, repeats, threads)
            result.update(device=str(device))
            return result
        timing = measure_latency(timed_model, timed_inputs, warmup=warmup, repeats=repeats, threads=threads, backend=backend)
        result.update(
            latency_ms=timing.median_ms, latency_iqr_ms=timing.iqr_ms, latency_p10_ms=timing.p10,
            latency_p90_ms=timing.p90, repeats=timing.repeats, threads=timing.threads, backend=timing.backend,
            device=str(device),
        )
    return result


def _backends_side_by_side(model: nn.Module, inputs: tuple[Tensor, ...], backends: str | Sequence[str], warmup: int,
                           repeats: int, threads: int | None) -> dict[str, dict[str, Any]]:
    """``{name: {latency_ms, ...} | {error}}`` of each backend (``"all"``, ``"a,b"`` or a list),
    without the raw times (``times_ms``)."""
    timed = time_backends(model, inputs, backends, threads=threads, warmup=warmup, repeats=repeats)
    return {name: {k: v for k, v in t.items() if k != "times_ms"} for name, t in timed.items()}


def example_inputs(model: nn.Module, input_shape: Sequence[int]) -> tuple[Tensor, ...]:
    """Inputs a model's forward takes for one clip of ``input_shape``: the model contract's
    ``example_inputs`` (:mod:`repro.models.contract`; e.g. video and flows for TrajectoryNet fed
    pre-computed flow); one random tensor for a plain module."""
    from repro.models.contract import model_example_inputs

    return model_example_inputs(model, tuple(input_shape))
