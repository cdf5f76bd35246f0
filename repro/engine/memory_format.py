"""Channels-last memory format for training, evaluation and the ``channels_last_3d`` backend.

Same model, same arithmetic up to float summation order: only the strides change.  On this
project's CPUs oneDNN's 3-D convolutions run faster on channels-last tensors (a mini
TrajectoryNet training step: 109 -> 126 clips/s, ``benchmarks/bench_train.py``), so the trainer
keeps 5-D weights and clips in ``channels_last_3d`` (4-D ones in ``channels_last``).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["channels_last", "to_channels_last"]


def channels_last(x: Any) -> Any:
    """``x`` in channels-last memory format when it is a 4-D or 5-D tensor; anything else as is."""
    if isinstance(x, Tensor) and x.dim() == 5:
        return x.contiguous(memory_format=torch.channels_last_3d)
    if isinstance(x, Tensor) and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def to_channels_last(model: nn.Module) -> nn.Module:
    """``model`` with its 5-D (and 4-D) parameters and buffers made channels-last, in place."""
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            tensor.data = channels_last(tensor.data)
    return model
