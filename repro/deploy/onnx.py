"""ONNX export and ONNX Runtime sessions: the one place the project does either.

Every exported graph (the profiler's ``onnxruntime`` latency backend, the benchmarks, the
TensorRT plugin engine builder, the tests) goes through :func:`export_onnx`, so the opset and
the exporter are chosen once, here, and every runtime reads the same graph.

    >>> path = export_onnx(model, (video, flow_fwd, flow_bwd), "traj.onnx",
    ...                    input_names=["video", "flow_fwd", "flow_bwd"])
    >>> session = ort_session(path, threads=1)
    >>> (logits,) = session.run(None, {"video": video.numpy(), ...})
"""
from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.nn as nn

from repro.fileio import atomic_write

__all__ = ["ONNX_OPSET", "ExportError", "export_onnx", "ort_session"]

#: The ONNX opset of every exported graph.  Why 17 and not newer:
#:
#: * ONNX ``GridSample`` takes 4-D input from opset 16; 5-D input needs opset 20 and TensorRT
#:   rejects it, so the warps sample frames as ``(N*T, C, H, W)`` (:mod:`repro.ops.warp`; see
#:   /work/shared/REFERENCES.md, "Export and TensorRT");
#: * the TorchScript exporter (``dynamo=False``) honours opset 17 exactly, where the dynamo
#:   exporter starts at 18 and would change the graphs (and their 4-D GridSample) behind our back.
ONNX_OPSET = 17


class ExportError(Exception):
    """The exporter cannot express the model at :data:`ONNX_OPSET`; the message is one line."""


def _export_error(e: Exception) -> ExportError:
    """One line for an exporter failure: the operator it cannot express, when it names one."""
    text = str(e).strip()
    op = re.search(r"operator '([^']+)'", text)
    if op is not None:
        message = f"the ONNX exporter cannot express {op[1]} at opset {ONNX_OPSET}"
        newer = re.search(r"added in version (\d+)", text)
        if newer is not None:
            message += (f" (it can from opset {newer[1]}; why the project stays at {ONNX_OPSET}: "
                        "ONNX_OPSET in repro/deploy/onnx.py)")
        return ExportError(message)
    first = text.splitlines()[0] if text else type(e).__name__
    return ExportError(f"the ONNX exporter failed at opset {ONNX_OPSET}: {type(e).__name__}: {first}")


@contextlib.contextmanager
def _exporter_log_off() -> Iterator[None]:
    """The TorchScript exporter's log off during an export (``verbose=False``), as before after.

    Torch 2.x's ``setup_onnx_logging`` tests the function ``_C._jit_is_onnx_log_enabled`` (always
    true) instead of its value, so every export turns the log on (and never back off: one plain
    ``torch.onnx.export`` leaves it on for the process), and a failed export prints its whole
    TorchScript graph to stdout ("Torch IR graph at exception: ...") before raising.  The failure
    is ours to report, in one line (:class:`ExportError`).  Without that function (another torch)
    nothing is patched.
    """
    try:
        from torch.onnx._internal.torchscript_exporter import utils
    except ImportError:
        utils = None
    if utils is None or not hasattr(utils, "setup_onnx_logging"):
        yield
        return

    @contextlib.contextmanager
    def setup_onnx_logging(verbose: bool) -> Iterator[None]:
        was = torch._C._jit_is_onnx_log_enabled()
        torch._C._jit_set_onnx_log_enabled(bool(verbose))
        try:
            yield
        finally:
            torch._C._jit_set_onnx_log_enabled(was)

    with mock.patch.object(utils, "setup_onnx_logging", setup_onnx_logging):
        yield


def export_onnx(model: nn.Module, inputs: torch.Tensor | Sequence[Any], path: str | os.PathLike, *,
                input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
                dynamic_batch: bool = True, custom_opsets: dict[str, int] | None = None) -> Path:
    """Export ``model(*inputs)`` to ``path`` at :data:`ONNX_OPSET` with the TorchScript exporter.

    ``input_names`` default to ``input_0, input_1, ...``; ``dynamic_batch`` makes dim 0 of every
    input (and of every named output) a ``"batch"`` dimension, so one file serves any batch size
    (``False``: the example's shapes are baked in).  ``custom_opsets`` declares the domains of
    custom nodes (e.g. the TensorRT plugin's, :data:`repro.ops.trajectory_conv.PLUGIN_NAMESPACE`).
    The file is written atomically; the exporter's warnings (tracer notes) are silenced.

    ONNX has no complex dtype: every :class:`~repro.ops.tensor_sketch.TensorSketch` of ``model``
    exports its spectra as real ``(..., 2)`` tensors and ONNX ``DFT`` nodes
    (:func:`~repro.ops.tensor_sketch.real_spectra`; same values, the model is restored after).
    An operator the exporter cannot express raises :class:`ExportError` (one line, naming it).
    A module still pending its first-forward initialisation (LGD's combination classifier sets
    W_c's scale from its first batch, :mod:`repro.layers.kernel_head`) gets one eager forward on
    ``inputs`` first, so the graph holds the weights eager PyTorch computes with.
    """
    from torch.onnx.errors import OnnxExporterError

    from repro.ops.tensor_sketch import real_spectra

    args = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    names = list(input_names) if input_names is not None else [f"input_{i}" for i in range(len(args))]
    outputs = list(output_names) if output_names is not None else None
    dynamic_axes = {name: {0: "batch"} for name in names + (outputs or [])} if dynamic_batch else None
    path = Path(path)
    if isinstance(model, nn.Module) and any(getattr(m, "scale_pending", False) for m in model.modules()):
        with torch.no_grad():
            model(*args)  # the pending initialisation runs eagerly, not inside the trace
    sketches = real_spectra(model) if isinstance(model, nn.Module) else contextlib.nullcontext()
    with atomic_write(path) as tmp, warnings.catch_warnings(), sketches, _exporter_log_off():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, args, str(tmp), opset_version=ONNX_OPSET, dynamo=False, input_names=names,
                              output_names=outputs, dynamic_axes=dynamic_axes, custom_opsets=custom_opsets)
        except OnnxExporterError as e:
            raise _export_error(e) from e
    return path


def ort_session(path: str | os.PathLike, threads: int | None = None):
    """An ONNX Runtime CPU session of ``path``; ``threads``: intra-op threads (one inter-op
    thread), ``None``: ONNX Runtime's default."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
