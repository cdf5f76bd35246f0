"""The TensorRT plugins of the project, registered together.

Each plugin module (:mod:`repro.deploy.tensorrt.trajectory_sample`: TrajectoryNet's trajectory
sampling; :mod:`repro.deploy.tensorrt.cost_volume`: Disentangling Dynamics' cost volume +
soft-argmax) declares one plugin with
TensorRT's Python plugin API (``tensorrt.plugin``: ``@trtp.register`` for shapes and dtypes,
``@trtp.autotune`` for formats, ``@trtp.impl`` / ``@trtp.aot_impl`` running a Triton kernel).
The exported ONNX names each as the TensorRT ONNX parser expects: ``op_type`` = the plugin name,
attribute ``plugin_namespace`` = ``"repro"`` (plus the op's own attributes), see
:data:`PLUGIN_OP_TYPES`.
"""
from __future__ import annotations

from repro.ops.trajectory_conv import PLUGIN_OP_TYPE as TRAJECTORY_SAMPLE

COST_VOLUME_SOFTARGMAX = "cost_volume_softargmax"  # == repro.deploy.tensorrt.cost_volume.PLUGIN_OP_TYPE

__all__ = ["PLUGIN_OP_TYPES", "register"]

#: ONNX ``op_type`` of every plugin node (op type = plugin name, namespace ``repro``).
PLUGIN_OP_TYPES: tuple[str, ...] = (TRAJECTORY_SAMPLE, COST_VOLUME_SOFTARGMAX)


def register() -> None:
    """Register every plugin with TensorRT's plugin registry (idempotent; imports tensorrt)."""
    from repro.deploy.tensorrt import cost_volume, trajectory_sample

    trajectory_sample.register()
    cost_volume.register()
