"""The names of the built-in models, as a plain list: what :func:`repro.registry.is_model` answers
without importing the model families (and torch), so that loading the specs for ``list`` or a
``--no-run`` rendering stays fast.  ``tests/test_cli_imports.py`` checks it equals the registry's
names after :mod:`repro.models.catalog` is loaded: add a new model's name here."""
from __future__ import annotations

__all__ = ["MODEL_NAMES"]

MODEL_NAMES = frozenset({
    "c2d_resnet18", "c2d_resnet34", "c2d_resnet50", "c2d_resnet101",
    "r3d_18", "r3d_34", "mc3_18", "mc3_34", "r2plus1d_18", "r2plus1d_34",
    "p3d_resnet50", "p3d_resnet101",
    "s3d_resnet18", "s3d_resnet34", "s3d_resnet50", "s3d_two_stream_resnet18", "flow_stream_net",
    "trajectorynet_resnet18", "motionnet_2", "motionnet_17",
    "tvnet_10", "tvnet_30", "tvnet_50", "tvnet_1_3_10", "tvnet_3_1_10",
    "tvnet_10_action", "tvnet_30_action", "tvnet_50_action", "tvnet_1_3_10_action", "tvnet_3_1_10_action",
    "bninception", "dynamics_static_bninception", "dynamics_motion_bninception", "dynamics_change_bninception",
    "dynamics_rgb_diff_bninception", "dynamics_static_motion_bninception", "dynamics_full_bninception",
    "lgd2d_resnet50", "lgd2d_resnet101", "lgd3d_resnet50", "lgd3d_resnet101", "lgd3d_two_stream_resnet101",
})
