"""TensorRT plugin ``repro::cost_volume_softargmax``: Disentangling Dynamics' cosine cost volume
and soft-argmax (CVPR 2018, §3.3, Eq. 1-2) as one node, run by the fused Triton kernel of
:mod:`repro.ops.triton_cost_volume` (the D costs never leave registers).

* ONNX: :func:`cost_volume_displacement_plugin` computes :func:`repro.ops.cost_volume.cost_volume_displacement`
  in PyTorch and exports as one node ``op_type="cost_volume_softargmax"`` (domain ``repro``,
  attributes ``max_disp`` (int), ``inv_tau``, ``eps`` (float), ``mask_outside`` (int),
  ``plugin_namespace="repro"``, ``plugin_version="1"``); inputs ``f0, f1 (N, C, H, W)``; output the
  displacement map ``(N, 2, H, W)`` fp32 (channel 0 = x).  A model routes its cost volume through
  it while exporting for TensorRT.
* TensorRT: :func:`register` declares the plugin with ``tensorrt.plugin`` (``@trtp.register``:
  shape and dtype, ``@trtp.autotune``: fp32/fp16 inputs, linear format, ``@trtp.impl``: the Triton
  kernel launched on TensorRT's stream).  JIT only: the kernel takes the temperature and ε as fp32
  arguments *between* its input and output pointers, where TensorRT's AOT launch passes only int32
  extras, so an ``@trtp.aot_impl`` needs a kernel variant with them as compile-time constants.
"""
from __future__ import annotations

import torch

from repro.ops.cost_volume import DEFAULT_EPS, cost_volume_displacement
from repro.ops.trajectory_conv import PLUGIN_NAMESPACE

__all__ = ["PLUGIN_OP_TYPE", "PLUGIN_ID", "cost_volume_displacement_plugin", "register"]

PLUGIN_OP_TYPE = "cost_volume_softargmax"
PLUGIN_ID = f"{PLUGIN_NAMESPACE}::{PLUGIN_OP_TYPE}"

_registered = False


class _CostVolumePluginOp(torch.autograd.Function):
    """The fused op whose ONNX export is the plugin node (forward: the PyTorch path)."""

    @staticmethod
    def forward(ctx, f0, f1, max_disp, inv_tau, eps, mask_outside):  # type: ignore[override]
        return cost_volume_displacement(f0, f1, max_disp, 1.0 / inv_tau, mask_outside=mask_outside, eps=eps)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        raise NotImplementedError("the cost-volume plugin op is for export/inference; train with impl='torch'")

    @staticmethod
    def symbolic(g, f0, f1, max_disp, inv_tau, eps, mask_outside):
        out = g.op(f"{PLUGIN_NAMESPACE}::{PLUGIN_OP_TYPE}", f0, f1, max_disp_i=max_disp, inv_tau_f=inv_tau, eps_f=eps,
                   mask_outside_i=int(mask_outside), plugin_namespace_s=PLUGIN_NAMESPACE, plugin_version_s="1")
        sizes = f0.type().sizes() if hasattr(f0.type(), "sizes") else None
        if sizes is not None and len(sizes) == 4:
            n, _, h, w = sizes
            out.setType(f0.type().with_dtype(torch.float32).with_sizes([n, 2, h, w]))
        return out


def cost_volume_displacement_plugin(f0: torch.Tensor, f1: torch.Tensor, max_disp: int, temperature: float | torch.Tensor,
                                    *, mask_outside: bool = True, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """:func:`~repro.ops.cost_volume.cost_volume_displacement` (same values) that exports as the
    plugin node; the temperature becomes a constant attribute (``inv_tau = 1/τ``)."""
    tau = float(temperature.detach()) if isinstance(temperature, torch.Tensor) else float(temperature)
    return _CostVolumePluginOp.apply(f0, f1, int(max_disp), 1.0 / tau, float(eps), bool(mask_outside))


def register() -> None:
    """Register the plugin with TensorRT's plugin registry (imports tensorrt, torch, triton)."""
    global _registered
    if _registered:
        return
    import tensorrt as trt
    import tensorrt.plugin as trtp

    from repro.ops import triton_cost_volume as tcv

    @trtp.register(PLUGIN_ID)
    def cost_volume_desc(f0: trtp.TensorDesc, f1: trtp.TensorDesc, max_disp: int, inv_tau: float, eps: float,
                         mask_outside: int) -> trtp.TensorDesc:
        shape = f0.shape_expr  # (N, C, H, W) -> (N, 2, H, W), fp32 whatever the input dtype
        return trtp.from_shape_expr((shape[0], 2, shape[2], shape[3]), dtype=trt.float32)

    @trtp.autotune(PLUGIN_ID)
    def cost_volume_autotune(f0, f1, max_disp: int, inv_tau: float, eps: float, mask_outside: int, outputs) -> list:
        # (f0, f1, displacement): the features share fp32 or fp16, the displacement is fp32.
        return [trtp.AutoTuneCombination("FP32|FP16, FP32|FP16, FP32|FP32", "LINEAR")]

    @trtp.impl(PLUGIN_ID)
    def cost_volume_impl(f0, f1, max_disp: int, inv_tau: float, eps: float, mask_outside: int, outputs,
                         stream: int) -> None:
        with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
            f0_t, f1_t = torch.as_tensor(f0, device="cuda"), torch.as_tensor(f1, device="cuda")
            disp = torch.as_tensor(outputs[0], device="cuda")
            n, c, h, w = f0_t.shape
            unused_cost = torch.empty((1,), device="cuda", dtype=torch.float32)
            tcv.cost_volume_softargmax_kernel[tcv.launch_grid(n, h, w)](
                f0_t, f1_t, c, h, w, float(inv_tau), float(eps), disp, unused_cost,
                MAX_DISP=max_disp, MASK_OUTSIDE=bool(mask_outside), WRITE_COST=False, BLOCK_P=tcv.DEFAULT_BLOCK_P,
            )

    _registered = True
