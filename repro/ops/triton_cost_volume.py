"""Fused cosine cost volume + soft-argmax in Triton (Disentangling Dynamics, CVPR 2018, §3.3,
Eq. 1-2).

One program handles BLOCK_P pixels of one sample n: it computes ‖f0‖ of its pixels once, then
for each of the D = (2d+1)² displacements the dot product with the shifted f1 and ‖f1‖ at the
shifted position in the same pass over C (cosine with ε on each norm, f1 zero outside the map:
cosine 0), and folds the cost into an **online softmax** over D (running max, running sum and
the two running sums weighted by dx and dy), so the D costs are never stored.  Output: the
displacement map ``(N, 2, H, W)`` (channel 0 = x, 1 = y, feature-map pixels), optionally the
cost volume ``(N, D, H, W)`` too.  Same contract and border convention (``mask_outside``) as
:func:`repro.ops.cost_volume.cost_volume_displacement`; values equal it up to float rounding.

Forward only (the inference / deployment path); train with the differentiable PyTorch path.
Tensors must be contiguous; offsets are int32 (fine below 2**31 elements per tensor); math in
fp32 whatever the input dtype.  ‖f1‖ is recomputed per displacement (one extra FMA per element
read) instead of being passed in: the op is bound by reading f1, not by arithmetic.

On a machine without a GPU, set ``TRITON_INTERPRET=1`` **before** importing this module and the
kernel runs on CPU tensors in Triton's interpreter (that is how the tests run it).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from repro.ops.cost_volume import DEFAULT_EPS, num_displacements

__all__ = [
    "cost_volume_displacement_triton",
    "cost_volume_softargmax_kernel",
    "kernel_is_interpreted",
    "compile_cost_volume",
    "launch_grid",
]

DEFAULT_BLOCK_P = 64  # pixels per program


# Only builtins of ``triton.language`` are used (``tl.full``, no ``tl.zeros`` / ``tl.sum``): its
# ``@jit`` helpers are compiled-mode objects when triton was imported before ``TRITON_INTERPRET=1``
# was set, and the interpreter cannot call those.  Channels are looped one at a time (1-D
# accumulators, no reduction), which is also the fast form for the interpreter.
@triton.jit
def cost_volume_softargmax_kernel(
    f0_ptr, f1_ptr,  # inputs: (N, C, H, W) each, contiguous
    C, H, W,  # int32 scalars
    inv_tau, eps,  # fp32 scalars: 1/τ and the ε on each norm
    disp_ptr,  # output: (N, 2, H, W) fp32
    cost_ptr,  # output: (N, D, H, W) fp32, written only if WRITE_COST
    MAX_DISP: tl.constexpr, MASK_OUTSIDE: tl.constexpr, WRITE_COST: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """Grid ``(cdiv(H·W, BLOCK_P), N)``: one program = BLOCK_P pixels of sample n."""
    SIDE: tl.constexpr = 2 * MAX_DISP + 1
    D: tl.constexpr = SIDE * SIDE
    pid_p = tl.program_id(0)
    n = tl.program_id(1)
    hw = H * W
    pix = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = pix < hw
    y = pix // W
    x = pix % W
    f0_n = f0_ptr + n * C * hw
    f1_n = f1_ptr + n * C * hw

    # ‖f0‖ of this block, once.
    ss0 = tl.full([BLOCK_P], 0.0, dtype=tl.float32)
    for c in range(0, C):
        a = tl.load(f0_n + c * hw + pix, mask=pmask, other=0.0).to(tl.float32)
        ss0 += a * a
    inv0 = 1.0 / tl.maximum(tl.sqrt(ss0), eps)

    # Finite start, so exp(m_old - m_new) is never exp(-inf + inf) = nan.
    run_max = tl.full([BLOCK_P], -1e30, dtype=tl.float32)
    run_sum = tl.full([BLOCK_P], 0.0, dtype=tl.float32)
    run_x = tl.full([BLOCK_P], 0.0, dtype=tl.float32)
    run_y = tl.full([BLOCK_P], 0.0, dtype=tl.float32)
    for k in range(0, D):  # k = (dy + d)·(2d+1) + (dx + d)
        dy = k // SIDE - MAX_DISP
        dx = k % SIDE - MAX_DISP
        y1 = y + dy
        x1 = x + dx
        inside = (y1 >= 0) & (y1 < H) & (x1 >= 0) & (x1 < W)
        off1 = y1 * W + x1
        dot = tl.full([BLOCK_P], 0.0, dtype=tl.float32)
        ss1 = tl.full([BLOCK_P], 0.0, dtype=tl.float32)
        for c in range(0, C):
            a = tl.load(f0_n + c * hw + pix, mask=pmask, other=0.0).to(tl.float32)
            b = tl.load(f1_n + c * hw + off1, mask=pmask & inside, other=0.0).to(tl.float32)  # 0 outside: cosine 0
            dot += a * b
            ss1 += b * b
        cost = dot * inv0 / tl.maximum(tl.sqrt(ss1), eps)
        if WRITE_COST:
            tl.store(cost_ptr + (n * D + k) * hw + pix, cost, mask=pmask)
        logit = cost * inv_tau
        if MASK_OUTSIDE:
            use = inside
        else:
            use = pix >= 0  # every displacement is a candidate
        # Online softmax over D (Eq. 2) with the expectation of Eq. 1 accumulated alongside.
        new_max = tl.where(use, tl.maximum(run_max, logit), run_max)
        rescale = tl.exp(run_max - new_max)
        p = tl.exp(tl.where(use, logit - new_max, -1e30))  # 0 for excluded entries, no overflow
        run_sum = run_sum * rescale + p
        run_x = run_x * rescale + p * dx
        run_y = run_y * rescale + p * dy
        run_max = new_max

    total = tl.where(run_sum > 0, run_sum, 1.0)  # > 0 on real pixels (k = centre is always used)
    out = disp_ptr + n * 2 * hw + pix
    tl.store(out, run_x / total, mask=pmask)  # channel 0 = x
    tl.store(out + hw, run_y / total, mask=pmask)  # channel 1 = y


def kernel_is_interpreted() -> bool:
    """True when this module was imported with ``TRITON_INTERPRET=1`` (kernels run on CPU)."""
    return type(cost_volume_softargmax_kernel).__name__ == "InterpretedFunction"


def launch_grid(n: int, h: int, w: int, block_p: int = DEFAULT_BLOCK_P) -> tuple[int, int]:
    return (triton.cdiv(h * w, block_p), n)


def cost_volume_displacement_triton(
    f0: torch.Tensor,
    f1: torch.Tensor,
    max_disp: int,
    temperature: float | torch.Tensor,
    *,
    mask_outside: bool = True,
    eps: float = DEFAULT_EPS,
    return_cost: bool = False,
    block_p: int = DEFAULT_BLOCK_P,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Displacement map ``(N, 2, H, W)`` fp32 (and the cost volume ``(N, D, H, W)`` fp32 if
    ``return_cost``) by the fused kernel.  Contract of
    :func:`repro.ops.cost_volume.cost_volume_displacement`; no autograd."""
    if f0.dim() != 4 or f1.shape != f0.shape:
        raise ValueError(f"f0, f1: expected two (N, C, H, W) tensors of one shape, got {tuple(f0.shape)} and {tuple(f1.shape)}")
    if f1.device != f0.device:
        raise ValueError(f"f1 is on {f1.device} but f0 is on {f0.device}")
    if isinstance(max_disp, bool) or not isinstance(max_disp, int) or max_disp < 0:
        raise ValueError(f"max_disp: expected an int >= 0, got {max_disp!r}")
    tau = float(temperature.detach()) if isinstance(temperature, torch.Tensor) else float(temperature)
    if not tau > 0:
        raise ValueError(f"temperature: expected > 0, got {temperature!r}")
    if f0.device.type == "cpu" and not kernel_is_interpreted():
        raise RuntimeError(
            "cost_volume_displacement_triton on CPU tensors needs Triton's interpreter: set TRITON_INTERPRET=1 "
            "before importing repro.ops.triton_cost_volume (or move the tensors to a GPU)"
        )
    n, channels, height, width = f0.shape
    f0 = f0.detach().contiguous()
    f1 = f1.detach().contiguous()
    disp = torch.empty((n, 2, height, width), device=f0.device, dtype=torch.float32)
    d = num_displacements(max_disp)
    cost = torch.empty((n, d, height, width) if return_cost else (1,), device=f0.device, dtype=torch.float32)
    if disp.numel() > 0:
        cost_volume_softargmax_kernel[launch_grid(n, height, width, block_p)](
            f0, f1, channels, height, width, 1.0 / tau, float(eps), disp, cost,
            MAX_DISP=max_disp, MASK_OUTSIDE=bool(mask_outside), WRITE_COST=bool(return_cost),
            BLOCK_P=block_p,
        )
    return (disp, cost) if return_cost else disp


def compile_cost_volume(
    max_disp: int,
    dtype: str = "fp32",
    *,
    mask_outside: bool = True,
    block_p: int = DEFAULT_BLOCK_P,
    target=None,
):
    """Compile the kernel ahead of time (``dtype`` of f0/f1: ``"fp32"`` or ``"fp16"``; outputs
    fp32; no cost output).  ``target``: a ``triton.backends.compiler.GPUTarget``, default the
    current device.  Returns Triton's compiled kernel (``.asm["ptx"]``, ``.metadata``)."""
    if dtype not in ("fp32", "fp16"):
        raise ValueError(f"dtype: expected 'fp32' or 'fp16', got {dtype!r}")
    signature = {
        "f0_ptr": f"*{dtype}", "f1_ptr": f"*{dtype}", "C": "i32", "H": "i32", "W": "i32",
        "inv_tau": "fp32", "eps": "fp32", "disp_ptr": "*fp32", "cost_ptr": "*fp32",
        "MAX_DISP": "constexpr", "MASK_OUTSIDE": "constexpr", "WRITE_COST": "constexpr",
        "BLOCK_P": "constexpr",
    }
    constexprs = {
        "MAX_DISP": max_disp, "MASK_OUTSIDE": mask_outside, "WRITE_COST": False,
        "BLOCK_P": block_p,
    }
    source = triton.compiler.ASTSource(fn=cost_volume_softargmax_kernel, signature=signature, constexprs=constexprs)
    return triton.compile(source, target=target) if target is not None else triton.compile(source)
