"""Fused trajectory sampling in Triton (TrajectoryNet, NeurIPS 2018, Eq. 2-3).

One kernel follows the trajectories of :mod:`repro.ops.trajectory_conv` (Eq. 2, flow read
bilinearly, zeros outside the frame) and gathers the ``K = 2Δt+1`` trajectory-aligned bilinear
samples (Eq. 3) of every pixel, writing ``(N, T, K, C, H, W)``, the layout that
:func:`repro.ops.trajectory_conv.conv_from_samples` turns into Eq. 1 with one 1×1 convolution.
Values equal :func:`repro.ops.trajectory_conv.trajectory_sample` (up to float rounding).

Forward only (inference / the TensorRT plugin); train with the differentiable grid_sample path.

The kernel's arguments are ordered ``(input pointers, int32 scalars, output pointer, constexprs)``
so that a TensorRT AOT plugin can launch it directly (:mod:`repro.deploy.tensorrt.trajectory_sample`).  Tensors
must be contiguous; offsets are int32 (fine below 2**31 elements per tensor).

On a machine without a GPU, set ``TRITON_INTERPRET=1`` **before** importing this module and the
kernel runs on CPU tensors in Triton's interpreter (that is how the tests run it).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = [
    "trajectory_sample_triton",
    "trajectory_sample_kernel",
    "kernel_is_interpreted",
    "compile_trajectory_sample",
    "launch_grid",
    "ptx_for_tensorrt",
]

DEFAULT_BLOCK_P = 64  # pixels per program
DEFAULT_BLOCK_C = 16  # channels per inner iteration


@triton.jit
def _bilinear_corners(px, py, height, width, valid):
    """Flat offsets, weights and masks of the four bilinear neighbours of (px, py)."""
    # Clamping moves nothing that matters (a point more than one pixel outside samples zero)
    # and keeps the int32 conversion safe for huge displacements.
    px = tl.minimum(tl.maximum(px, -2.0), width + 1.0)
    py = tl.minimum(tl.maximum(py, -2.0), height + 1.0)
    x0f = tl.floor(px)
    y0f = tl.floor(py)
    fx = px - x0f
    fy = py - y0f
    x0 = x0f.to(tl.int32)
    y0 = y0f.to(tl.int32)
    x1 = x0 + 1
    y1 = y0 + 1
    in_x0 = (x0 >= 0) & (x0 < width)
    in_x1 = (x1 >= 0) & (x1 < width)
    in_y0 = (y0 >= 0) & (y0 < height)
    in_y1 = (y1 >= 0) & (y1 < height)
    m00 = valid & in_y0 & in_x0
    m01 = valid & in_y0 & in_x1
    m10 = valid & in_y1 & in_x0
    m11 = valid & in_y1 & in_x1
    o00 = y0 * width + x0
    o01 = y0 * width + x1
    o10 = y1 * width + x0
    o11 = y1 * width + x1
    w00 = (1.0 - fx) * (1.0 - fy)
    w01 = fx * (1.0 - fy)
    w10 = (1.0 - fx) * fy
    w11 = fx * fy
    return o00, o01, o10, o11, w00, w01, w10, w11, m00, m01, m10, m11


@triton.jit
def _read_flow(flow_ptr, n, frame, px, py, pmask, T, H, W):
    """Bilinear read of the 2-channel flow of ``frame`` (zeros outside the frame or the clip)."""
    hw = H * W
    frame_ok = (frame >= 0) & (frame < T)
    frame_c = tl.minimum(tl.maximum(frame, 0), T - 1)
    o00, o01, o10, o11, w00, w01, w10, w11, m00, m01, m10, m11 = _bilinear_corners(px, py, H, W, pmask & frame_ok)
    base_x = flow_ptr + (n * 2 * T + frame_c) * hw  # channel 0 (x)
    base_y = base_x + T * hw  # channel 1 (y)
    dx = (
        w00 * tl.load(base_x + o00, mask=m00, other=0.0).to(tl.float32)
        + w01 * tl.load(base_x + o01, mask=m01, other=0.0).to(tl.float32)
        + w10 * tl.load(base_x + o10, mask=m10, other=0.0).to(tl.float32)
        + w11 * tl.load(base_x + o11, mask=m11, other=0.0).to(tl.float32)
    )
    dy = (
        w00 * tl.load(base_y + o00, mask=m00, other=0.0).to(tl.float32)
        + w01 * tl.load(base_y + o01, mask=m01, other=0.0).to(tl.float32)
        + w10 * tl.load(base_y + o10, mask=m10, other=0.0).to(tl.float32)
        + w11 * tl.load(base_y + o11, mask=m11, other=0.0).to(tl.float32)
    )
    return dx, dy


@triton.jit
def _gather_tap(
    x_ptr, out_ptr, n, t, frame, tap, px, py, pix, pmask, C, T, H, W,
    K: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """Write ``out[n, t, tap, :, pix] = x[n, :, frame](px, py)`` (zeros if ``frame`` is padding)."""
    hw = H * W
    frame_ok = (frame >= 0) & (frame < T)
    frame_c = tl.minimum(tl.maximum(frame, 0), T - 1)
    o00, o01, o10, o11, w00, w01, w10, w11, m00, m01, m10, m11 = _bilinear_corners(px, py, H, W, pmask & frame_ok)
    x_frame = x_ptr + (n * C * T + frame_c) * hw  # + c * T * hw
    out_tap = out_ptr + ((n * T + t) * K + tap) * C * hw  # + c * hw + pix
    for c0 in range(0, C, BLOCK_C):
        cs = c0 + tl.arange(0, BLOCK_C)
        cmask = (cs < C)[:, None]
        x_rows = x_frame + cs[:, None] * (T * hw)
        value = (
            w00[None, :] * tl.load(x_rows + o00[None, :], mask=cmask & m00[None, :], other=0.0).to(tl.float32)
            + w01[None, :] * tl.load(x_rows + o01[None, :], mask=cmask & m01[None, :], other=0.0).to(tl.float32)
            + w10[None, :] * tl.load(x_rows + o10[None, :], mask=cmask & m10[None, :], other=0.0).to(tl.float32)
            + w11[None, :] * tl.load(x_rows + o11[None, :], mask=cmask & m11[None, :], other=0.0).to(tl.float32)
        )
        out_rows = out_tap + cs[:, None] * hw + pix[None, :]
        tl.store(out_rows, value.to(out_ptr.dtype.element_ty), mask=cmask & pmask[None, :])


@triton.jit
def trajectory_sample_kernel(
    x_ptr, flow_fwd_ptr, flow_bwd_ptr,  # inputs: (N, C, T, H, W), (N, 2, T, H, W) x 2, contiguous
    C, T, H, W,  # int32 scalars
    out_ptr,  # output: (N, T, 2*DT+1, C, H, W), contiguous
    DT: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """Grid ``(cdiv(H·W, BLOCK_P), N·T)``: one program = BLOCK_P pixels of one (n, t)."""
    K: tl.constexpr = 2 * DT + 1
    pid_p = tl.program_id(0)
    pid_nt = tl.program_id(1)
    n = pid_nt // T
    t = pid_nt % T
    pix = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = pix < H * W
    px0 = (pix % W).to(tl.float32)
    py0 = (pix // W).to(tl.float32)
    # τ = 0: the pixel itself (bilinear at an integer position is an exact copy).
    _gather_tap(x_ptr, out_ptr, n, t, t, DT, px0, py0, pix, pmask, C, T, H, W, K, BLOCK_C)
    for direction in tl.static_range(2):
        px = px0
        py = py0
        for step in tl.static_range(DT):
            if direction == 0:  # forward: frame t+step -> t+step+1
                src = t + step
                dx, dy = _read_flow(flow_fwd_ptr, n, src, px, py, pmask, T, H, W)
                dst = src + 1
                tap = DT + step + 1
            else:  # backward: frame t-step -> t-step-1
                src = t - step
                dx, dy = _read_flow(flow_bwd_ptr, n, src, px, py, pmask, T, H, W)
                dst = src - 1
                tap = DT - step - 1
            px = px + dx  # Eq. 2
            py = py + dy
            _gather_tap(x_ptr, out_ptr, n, t, dst, tap, px, py, pix, pmask, C, T, H, W, K, BLOCK_C)


def kernel_is_interpreted() -> bool:
    """True when this module was imported with ``TRITON_INTERPRET=1`` (kernels run on CPU)."""
    return type(trajectory_sample_kernel).__name__ == "InterpretedFunction"


def launch_grid(n: int, t: int, h: int, w: int, block_p: int = DEFAULT_BLOCK_P) -> tuple[int, int]:
    return (triton.cdiv(h * w, block_p), n * t)


def trajectory_sample_triton(
    x: torch.Tensor,
    flow_fwd: torch.Tensor,
    flow_bwd: torch.Tensor,
    dt: int,
    *,
    block_p: int = DEFAULT_BLOCK_P,
    block_c: int = DEFAULT_BLOCK_C,
) -> torch.Tensor:
    """Trajectory-aligned samples ``(N, T, 2Δt+1, C, H, W)`` computed by the fused Triton kernel.

    Same contract as :func:`repro.ops.trajectory_conv.trajectory_sample`; no autograd.
    """
    if x.dim() != 5:
        raise ValueError(f"x: expected (N, C, T, H, W), got {tuple(x.shape)}")
    n, channels, length, height, width = x.shape
    for name, flow in (("flow_fwd", flow_fwd), ("flow_bwd", flow_bwd)):
        if tuple(flow.shape) != (n, 2, length, height, width):
            raise ValueError(f"{name}: expected {(n, 2, length, height, width)}, got {tuple(flow.shape)}")
        if flow.device != x.device:
            raise ValueError(f"{name} is on {flow.device} but x is on {x.device}")
    if dt < 0:
        raise ValueError(f"dt: expected >= 0, got {dt}")
    if x.device.type == "cpu" and not kernel_is_interpreted():
        raise RuntimeError(
            "trajectory_sample_triton on CPU tensors needs Triton's interpreter: set TRITON_INTERPRET=1 "
            "before importing repro.ops.triton_trajectory (or move the tensors to a GPU)"
        )
    x = x.contiguous()
    flow_fwd = flow_fwd.to(torch.float32).contiguous()
    flow_bwd = flow_bwd.to(torch.float32).contiguous()
    out = torch.empty((n, length, 2 * dt + 1, channels, height, width), device=x.device, dtype=x.dtype)
    if out.numel() == 0:
        return out
    grid = launch_grid(n, length, height, width, block_p)
    trajectory_sample_kernel[grid](
        x, flow_fwd, flow_bwd, channels, length, height, width, out,
        DT=dt, BLOCK_P=block_p, BLOCK_C=block_c,
    )
    return out


def compile_trajectory_sample(
    dt: int,
    dtype: str = "fp32",
    *,
    block_p: int = DEFAULT_BLOCK_P,
    block_c: int = DEFAULT_BLOCK_C,
    target=None,
):
    """Compile the kernel ahead of time (for the TensorRT AOT plugin).

    ``dtype`` of x / out: ``"fp32"`` or ``"fp16"`` (flows are always fp32).  ``target``: a
    ``triton.backends.compiler.GPUTarget``; default is the current device.  Returns Triton's
    compiled kernel (``.asm["ptx"]``, ``.metadata.name``, ``.metadata.num_warps``,
    ``.metadata.shared``).
    """
    if dtype not in ("fp32", "fp16"):
        raise ValueError(f"dtype: expected 'fp32' or 'fp16', got {dtype!r}")
    signature = {
        "x_ptr": f"*{dtype}",
        "flow_fwd_ptr": "*fp32",
        "flow_bwd_ptr": "*fp32",
        "C": "i32",
        "T": "i32",
        "H": "i32",
        "W": "i32",
        "out_ptr": f"*{dtype}",
        "DT": "constexpr",
        "BLOCK_P": "constexpr",
        "BLOCK_C": "constexpr",
    }
    source = triton.compiler.ASTSource(
        fn=trajectory_sample_kernel,
        signature=signature,
        constexprs={"DT": dt, "BLOCK_P": block_p, "BLOCK_C": block_c},
    )
    return triton.compile(source, target=target) if target is not None else triton.compile(source)


_KERNEL_ARGS = 8  # x, flow_fwd, flow_bwd, C, T, H, W, out (what a TensorRT AOT plugin passes)


def ptx_for_tensorrt(compiled, num_args: int = _KERNEL_ARGS) -> str:
    """PTX of ``compiled`` with Triton's hidden trailing parameters removed.

    Triton >= 3.3 appends ``global_scratch`` / ``profile_scratch`` pointers to every kernel's
    parameter list; a TensorRT AOT plugin launches with exactly (inputs, int32 extras, outputs).
    When the kernel uses no scratch memory those parameters are never read, so their
    declarations are dropped here; otherwise this raises instead of producing a broken engine.
    """
    meta = compiled.metadata
    for field in ("global_scratch_size", "profile_scratch_size"):
        if getattr(meta, field, 0):
            raise RuntimeError(f"kernel needs {field}={getattr(meta, field)}; cannot launch it from TensorRT")
    ptx: str = compiled.asm["ptx"]
    name = meta.name
    start = ptx.index(f".entry {name}(")
    end = ptx.index(")", start)
    header = f".entry {name}("
    params_text = ptx[start + len(header) : end]
    params = [line.strip().rstrip(",") for line in params_text.strip().splitlines() if line.strip()]
    if len(params) < num_args:
        raise RuntimeError(f"kernel {name} declares {len(params)} parameters, expected at least {num_args}")
    dropped = params[num_args:]
    body = ptx[end:]
    for decl in dropped:
        param_name = decl.split()[-1]
        if param_name in body:
            raise RuntimeError(f"hidden parameter {param_name} is used by the kernel; cannot drop it")
    kept = ",\n".join("\t" + p for p in params[:num_args])
    return ptx[:start] + header + "\n" + kept + "\n" + body
