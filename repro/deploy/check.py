"""Export a model and check the file: ONNX Runtime runs it and agrees with eager PyTorch.

:func:`export_and_check` is what ``python -m repro export`` does: :func:`repro.deploy.onnx.export_onnx`
(dynamic batch), ``onnx.checker``, one ONNX Runtime run on the example inputs, and the largest
absolute difference from the eager model's output.  It also lists the graph's custom ops (nodes
outside the default ONNX domain, e.g. the TensorRT plugin ``repro::trajectory_sample`` when
``plugins=True``): ONNX Runtime cannot run those, so a plugin graph is checked structurally only.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from repro.deploy.onnx import ONNX_OPSET, export_onnx, ort_session

__all__ = ["export_and_check", "custom_ops", "graph_summary", "MAX_ABS_DIFF"]

#: Largest |ONNX Runtime - eager| accepted by ``python -m repro export`` (fp32 outputs), absolute
#: (the deployment issue's bar).  Every built model's logits are O(1) at initialisation -- LGD's
#: combination classifier too, whose W_c starts at a data-dependent scale
#: (:mod:`repro.layers.kernel_head`) -- so fp32 rounding stays far below it.
MAX_ABS_DIFF = 1e-3


def custom_ops(graph: Any) -> dict[str, int]:
    """``"domain::op_type"`` -> count of every node outside the default ONNX domain (or marked as a
    TensorRT plugin by a ``plugin_namespace`` attribute)."""
    found: Counter[str] = Counter()
    for node in graph.node:
        namespace = next((a.s.decode() for a in node.attribute if a.name == "plugin_namespace"), None)
        domain = node.domain if node.domain not in ("", "ai.onnx") else namespace
        if domain:
            found[f"{domain}::{node.op_type}"] += 1
    return dict(found)


def graph_summary(path: str | os.PathLike) -> dict[str, Any]:
    """Opset, node count per op type, custom ops, and input/output shapes (``"batch"`` when dynamic)."""
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model)

    def dims(value: Any) -> list:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    return {
        "opset": {op.domain or "ai.onnx": op.version for op in model.opset_import},
        "nodes": dict(Counter(n.op_type for n in model.graph.node)),
        "custom_ops": custom_ops(model.graph),
        "inputs": {i.name: dims(i) for i in model.graph.input},
        "outputs": {o.name: dims(o) for o in model.graph.output},
    }


def export_and_check(model: nn.Module, inputs: tuple[torch.Tensor, ...], path: str | os.PathLike, *,
                     input_names: list[str] | None = None, plugins: bool = False,
                     threads: int | None = 1) -> dict[str, Any]:
    """Export ``model(*inputs)`` to ``path`` and check it; returns a JSON-able report:
    ``path``, ``opset``, ``nodes``, ``custom_ops``, ``inputs``/``outputs`` (shapes), and unless
    the graph holds custom ops, ``ort_ok``, ``max_abs_diff`` (ONNX Runtime vs eager), ``tolerance``
    (:data:`MAX_ABS_DIFF`) and ``ok`` (``max_abs_diff <= tolerance``).  ``plugins``: trajectory
    sampling as TensorRT plugin nodes.  The eager output is computed first, before the export's
    trace: a module finishing its initialisation on its first forward (LGD's combination
    classifier) must do so before its weights are traced into the graph."""
    model = model.eval()
    names = input_names or [f"input_{i}" for i in range(len(inputs))]
    path = Path(path)
    with torch.no_grad():
        expected = model(*inputs)  # first: see the docstring
        if plugins:
            from repro.deploy.tensorrt.engine import plugin_samplers
            from repro.ops.trajectory_conv import PLUGIN_NAMESPACE

            with plugin_samplers(model):
                export_onnx(model, inputs, path, input_names=names, output_names=["output"],
                            custom_opsets={PLUGIN_NAMESPACE: 1})
        else:
            export_onnx(model, inputs, path, input_names=names, output_names=["output"])
    report: dict[str, Any] = {"path": str(path), "opset_expected": ONNX_OPSET, **graph_summary(path)}
    if report["custom_ops"]:
        report.update(ort_ok=None, max_abs_diff=None, tolerance=None, ok=None,
                      note="custom ops (TensorRT plugins): ONNX Runtime cannot run this graph; build an engine")
        return report
    session = ort_session(path, threads)
    (got, *_) = session.run(None, {n: x.detach().cpu().numpy() for n, x in zip(names, inputs)})
    expected = expected.detach().cpu().numpy()
    diff = float(np.max(np.abs(got - expected))) if got.size else 0.0
    report.update(ort_ok=True, max_abs_diff=diff, tolerance=MAX_ABS_DIFF, ok=diff <= MAX_ABS_DIFF,
                  output_shape=list(got.shape))
    return report
