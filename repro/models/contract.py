"""The model <-> engine contract: what a registered model takes, gives and asks to be trained with.

Every registered model is an ``nn.Module`` that also derives from :class:`VideoModel` and so
declares:

* ``inputs`` -- the names of the tensors ``forward`` takes, in order: ``("video",)`` or
  ``("video", "flow_fwd", "flow_bwd")`` (pre-computed or ground-truth flow).  The engine passes a
  batch's ``video`` positionally and the other names it has as keywords.
* ``example_inputs(shape)`` -- tensors for one clip of ``shape`` ``(N, C, T, H, W)``: what
  profiling, export and the contract test feed ``forward``.
* ``forward(*inputs) -> Tensor`` -- one plain tensor: logits ``(N, num_classes)`` for a classifier,
  the predicted flow for a flow network.  Plain tensors keep tracing (fvcore), ONNX export and
  latency measurement free of wrappers.
* ``forward_output(*inputs) -> ModelOutput`` -- everything training and evaluation read: logits,
  the named auxiliary losses the model adds to the cross-entropy in training mode (already
  weighted by the model; the run's ``loss_weights`` scale them further), and an optional
  predicted flow that evaluation scores by end-point error.  The default wraps ``forward``.
* ``training_stages()`` -- :class:`TrainingStage` objects run before the main training, each asked
  for by the run config field of its ``name`` (TrajectoryNet's MotionNet declares its unsupervised
  pre-training, :mod:`repro.models.motionnet_pretrain`).  The engine runs what is declared and
  knows nothing about MotionNet.

A plain ``nn.Module`` whose ``forward(video)`` returns logits is treated as ``inputs=("video",)``
with no losses, no flow and no stages (:func:`model_inputs`, :func:`model_output`).

    >>> out = model.forward_output(video, flow_fwd=flow)      # ModelOutput(logits, losses, flow)
    >>> logits = model(*model.example_inputs((1, 3, 16, 112, 112)))   # a plain tensor
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
from torch import Tensor

__all__ = [
    "FLOW_INPUTS",
    "FLOW_INPUT_SCALE",
    "require_flows",
    "ModelOutput",
    "TrainingStage",
    "VideoModel",
    "OutputForward",
    "example_input",
    "model_inputs",
    "takes_flow",
    "model_output",
    "model_example_inputs",
    "training_stages",
]

#: The optional flow inputs a model may declare after ``"video"``.
FLOW_INPUTS = ("flow_fwd", "flow_bwd")
#: A flow stream's input is the flow in pixels / 20 (FlowNet's convention).
FLOW_INPUT_SCALE = 1.0 / 20.0


def require_flows(flow_fwd: Tensor | None, flow_bwd: Tensor | None, video: Tensor) -> tuple[Tensor, Tensor]:
    """The forward and backward flows ``(N, 2, T, H, W)`` of ``video``, checked; a missing backward
    flow is approximated from the forward one."""
    if flow_fwd is None:
        raise ValueError("flow_fwd: this model needs the flow (N, 2, T, H, W) of the video (source='flow')")
    n, _, length, height, width = video.shape
    for name, flow in (("flow_fwd", flow_fwd), ("flow_bwd", flow_bwd)):
        if flow is not None and tuple(flow.shape) != (n, 2, length, height, width):
            raise ValueError(f"{name}: expected {(n, 2, length, height, width)} like the video, got {tuple(flow.shape)}")
    if flow_bwd is None:
        # Approximation when only forward flow is stored: the point at p in frame t came from
        # about p - flow_fwd[t-1](p) (exact for locally constant motion).
        flow_bwd = -torch.nn.functional.pad(flow_fwd, (0, 0, 0, 0, 1, 0))[:, :, :length]
    return flow_fwd, flow_bwd


@dataclass
class ModelOutput:
    """The one output type of ``forward_output``.

    ``logits``: ``(N, num_classes)`` (``None`` for a flow network).  ``losses``: name -> scalar
    auxiliary loss (training mode; weighted by the model, e.g. TrajectoryNet's ``"unsup"`` =
    0.01 x MotionNet's unsupervised loss).  ``flow``: a predicted forward flow
    ``(N, 2, T', H, W)`` in pixels, scored against ground truth, or ``None``.
    """

    logits: Tensor | None
    losses: dict[str, Tensor] = field(default_factory=dict)
    flow: Tensor | None = None

    def __post_init__(self) -> None:
        for name, value in self.losses.items():
            if not isinstance(value, Tensor) or value.dim() != 0:
                got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise TypeError(f"ModelOutput.losses['{name}']: expected a scalar tensor, got {got}")


class TrainingStage:
    """A stage a model runs before its main training (e.g. unsupervised pre-training of a part).

    ``name`` is the run-config field that asks for the stage and carries its settings (a dict).
    The engine calls, on the main process, :meth:`run` (train in place and save to ``out``, or
    re-use ``out`` if it already holds the same stage), then on every other process :meth:`load`;
    both return a JSON-able report for the run's details.  :meth:`cache_path` says where the
    result lives under the engine's cache folder, keyed by everything that determines it.
    """

    name: ClassVar[str] = ""

    def cache_path(self, cache_root: Path, settings: dict[str, Any], data: str, seed: int) -> Path:
        raise NotImplementedError

    def run(self, train_set: Any, settings: dict[str, Any], *, out: Path, seed: int,
            progress: bool) -> dict[str, Any]:
        raise NotImplementedError

    def load(self, out: Path) -> dict[str, Any]:
        raise NotImplementedError


def example_input(name: str, shape: tuple[int, ...]) -> Tensor:
    """A random tensor for input ``name`` of a clip of ``shape`` ``(N, C, T, H, W)``: the clip
    itself for ``"video"``, flows of a few pixels ``(N, 2, T, H, W)`` for ``flow_fwd``/``flow_bwd``."""
    if name == "video":
        return torch.randn(shape)
    if name in FLOW_INPUTS:
        n, _, length, height, width = shape
        return 2.0 * torch.randn(n, 2, length, height, width)
    raise ValueError(f"no example for input '{name}' (known: video, {', '.join(FLOW_INPUTS)})")


class VideoModel(nn.Module):
    """Mixin declaring the contract (module docstring); subclasses set ``inputs`` (class or
    instance attribute) and override what differs from the defaults."""

    inputs: tuple[str, ...] = ("video",)

    def example_inputs(self, shape: tuple[int, ...]) -> tuple[Tensor, ...]:
        return tuple(example_input(name, tuple(shape)) for name in self.inputs)

    def forward_output(self, *args: Any, **kwargs: Any) -> ModelOutput:
        return ModelOutput(logits=self(*args, **kwargs))

    def training_stages(self) -> tuple[TrainingStage, ...]:
        return ()


def _bare(model: nn.Module) -> nn.Module:
    while isinstance(model, (nn.parallel.DistributedDataParallel, OutputForward)):
        model = model.module
    return model


def model_inputs(model: nn.Module) -> tuple[str, ...]:
    """The inputs ``model`` declares (``("video",)`` for a plain module)."""
    return tuple(getattr(_bare(model), "inputs", ("video",)))


def takes_flow(model: nn.Module) -> bool:
    """Whether the model takes pre-computed / ground-truth flow (``flow_fwd`` among its inputs)."""
    return "flow_fwd" in model_inputs(model)


def model_output(model: nn.Module, *args: Any, **kwargs: Any) -> ModelOutput:
    """``model.forward_output(...)``; a plain module's logits tensor wrapped in a :class:`ModelOutput`.
    ``model`` may be ``DistributedDataParallel(OutputForward(net))``, which is called as itself."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        if not isinstance(model.module, OutputForward):
            raise TypeError("wrap the model in OutputForward before DistributedDataParallel")
        logits, losses, flow = model(*args, **kwargs)
        return ModelOutput(logits, dict(losses), flow)
    make = getattr(model, "forward_output", None)
    out = make(*args, **kwargs) if callable(make) else model(*args, **kwargs)
    if isinstance(out, Tensor):
        return ModelOutput(logits=out)
    if not isinstance(out, ModelOutput):
        raise TypeError(f"{type(model).__name__}: forward must return a tensor (or forward_output a ModelOutput); "
                        f"got {type(out).__name__}")
    return out


def model_example_inputs(model: nn.Module, shape: tuple[int, ...]) -> tuple[Tensor, ...]:
    """``model.example_inputs(shape)``; one random clip for a plain module."""
    make = getattr(_bare(model), "example_inputs", None)
    return tuple(make(tuple(shape))) if callable(make) else (torch.randn(*shape),)


def training_stages(model: nn.Module) -> tuple[TrainingStage, ...]:
    make = getattr(_bare(model), "training_stages", None)
    return tuple(make()) if callable(make) else ()


class OutputForward(nn.Module):
    """``OutputForward(model)(*inputs)`` runs ``model.forward_output`` as its ``forward`` and returns
    ``(logits, losses, flow)`` -- plain containers, so DistributedDataParallel (which only hooks
    ``forward``) sees every tensor of the training graph.  :func:`model_output` of it rebuilds the
    :class:`ModelOutput`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.module = model

    @property
    def inputs(self) -> tuple[str, ...]:
        return model_inputs(self.module)

    def forward(self, *args: Any, **kwargs: Any) -> tuple[Tensor | None, dict[str, Tensor], Tensor | None]:
        out = model_output(self.module, *args, **kwargs)
        return out.logits, out.losses, out.flow

    def forward_output(self, *args: Any, **kwargs: Any) -> ModelOutput:
        logits, losses, flow = self(*args, **kwargs)
        return ModelOutput(logits, dict(losses), flow)
