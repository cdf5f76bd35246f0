"""Whether the code now runs inside a graph capture: an ONNX export, ``torch.compile`` or
``torch.jit.trace`` (fvcore's counting traces too).  Ops that cache tensors between eager calls
or change their state on a first call must not do it there: a captured graph would hold the
cached values as constants, or record the one-off change."""
from __future__ import annotations

import torch

__all__ = ["capturing_graph"]


def capturing_graph() -> bool:
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling() or torch.jit.is_tracing()
