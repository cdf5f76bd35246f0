"""TensorRT quickly deployable plugin ``repro::trajectory_sample`` (TensorRT >= 10.9).

The plugin runs the fused Triton kernel of :mod:`repro.ops.triton_trajectory`: trajectory
tracking (TrajectoryNet Eq. 2) + bilinear gather of the ``K = 2Δt+1`` taps (Eq. 3).  Inputs
``x (N, C, T, H, W)`` (fp32 or fp16), ``flow_fwd``, ``flow_bwd`` ``(N, 2, T, H, W)`` fp32; attribute
``dt``; output ``(N, T, K, C, H, W)`` in x's dtype.  The 1×1 convolution of Eq. 1 stays an
ordinary ONNX Conv that TensorRT handles itself.

Two implementations are registered:

* ``@trtp.impl`` (JIT): a Python callback launching the Triton kernel on TensorRT's stream;
  needs Python + torch + triton at run time.
* ``@trtp.aot_impl`` (AOT): the kernel compiled to PTX at build time and embedded in the engine;
  the engine then runs in any TensorRT runtime (trtexec, C++).  Chosen by the ONNX node attribute
  ``aot=1`` (see :mod:`repro.deploy.tensorrt.engine`).

Nothing here imports TensorRT at module import time: :func:`repro.deploy.tensorrt.plugins.register`
calls :func:`register` (idempotent).
"""
from __future__ import annotations

from repro.ops.trajectory_conv import PLUGIN_NAMESPACE, PLUGIN_OP_TYPE

PLUGIN_ID = f"{PLUGIN_NAMESPACE}::{PLUGIN_OP_TYPE}"  # the exported node: op_type + plugin_namespace

_registered = False


def register() -> None:
    """Register the plugin with TensorRT's plugin registry (imports tensorrt, torch, triton)."""
    global _registered
    if _registered:
        return
    try:
        import tensorrt as trt
        import tensorrt.plugin as trtp
    except ImportError as err:  # pragma: no cover - depends on the machine
        raise ImportError(
            "the repro::trajectory_sample plugin needs TensorRT >= 10.9 with its Python `tensorrt.plugin` "
            "module (install `tensorrt` on a machine with CUDA)"
        ) from err
    import torch

    from repro.ops import triton_trajectory as tt

    block_p = tt.DEFAULT_BLOCK_P
    block_c = tt.DEFAULT_BLOCK_C

    @trtp.register(PLUGIN_ID)
    def trajectory_sample_desc(
        x: trtp.TensorDesc, flow_fwd: trtp.TensorDesc, flow_bwd: trtp.TensorDesc, dt: int
    ) -> trtp.TensorDesc:
        shape = x.shape_expr  # (N, C, T, H, W)
        out_shape = (shape[0], shape[2], 2 * dt + 1, shape[1], shape[3], shape[4])
        return trtp.from_shape_expr(out_shape, dtype=x.dtype)

    @trtp.autotune(PLUGIN_ID)
    def trajectory_sample_autotune(x, flow_fwd, flow_bwd, dt: int, outputs) -> list:
        # (x, flow_fwd, flow_bwd, out): x and out share fp32 or fp16, flows stay fp32.
        return [trtp.AutoTuneCombination("FP32|FP16, FP32|FP32, FP32|FP32, FP32|FP16", "LINEAR")]

    @trtp.impl(PLUGIN_ID)
    def trajectory_sample_impl(x, flow_fwd, flow_bwd, dt: int, outputs, stream: int) -> None:
        with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
            x_t = torch.as_tensor(x, device="cuda")
            ff_t = torch.as_tensor(flow_fwd, device="cuda")
            fb_t = torch.as_tensor(flow_bwd, device="cuda")
            out_t = torch.as_tensor(outputs[0], device="cuda")
            n, c, t, h, w = x_t.shape
            tt.trajectory_sample_kernel[tt.launch_grid(n, t, h, w, block_p)](
                x_t, ff_t, fb_t, c, t, h, w, out_t, DT=dt, BLOCK_P=block_p, BLOCK_C=block_c
            )

    @trtp.aot_impl(PLUGIN_ID)
    def trajectory_sample_aot_impl(x, flow_fwd, flow_bwd, dt: int, outputs, tactic: int):
        dtype = "fp16" if x.dtype == trt.float16 else "fp32"
        compiled = tt.compile_trajectory_sample(dt, dtype, block_p=block_p, block_c=block_c)
        shape = x.shape_expr
        n, c, t, h, w = (shape[i] for i in range(5))
        launch = trtp.KernelLaunchParams()
        launch.grid_x = trtp.cdiv(h * w, block_p)
        launch.grid_y = n * t
        launch.block_x = compiled.metadata.num_warps * 32
        launch.shared_mem = compiled.metadata.shared
        # int32 kernel arguments between the input and output pointers: C, T, H, W.
        extra_args = trtp.SymIntExprs.from_tuple([trtp.SymInt32(e) for e in (c, t, h, w)])
        ptx = tt.ptx_for_tensorrt(compiled)  # drops Triton's unused hidden scratch parameters
        return compiled.metadata.name.encode(), ptx.encode(), launch, extra_args

    _registered = True
