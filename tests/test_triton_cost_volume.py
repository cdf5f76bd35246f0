"""Fused Triton cost volume + soft-argmax (Dynamics §3.3, Eq. 1-2), run in Triton's CPU interpreter
against the PyTorch path and the loop references."""
from __future__ import annotations


import pytest
import torch

from tests._triton import interpreted, load_kernel_module

from repro.ops.cost_volume import (
    cosine_cost_volume,
    cosine_cost_volume_reference,
    cost_volume_displacement,
    soft_argmax_displacement_reference,
)

triton = pytest.importorskip("triton", reason="triton is not installed: the fused cost-volume kernel cannot be tested")


@pytest.fixture(scope="module")
def tcv():
    yield from interpreted("repro.ops.triton_cost_volume")


def _pair(n=2, c=5, h=6, w=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g), torch.randn(n, c, h, w, generator=g)


@pytest.mark.parametrize("mask_outside", [True, False])
@pytest.mark.parametrize("d", [0, 1, 2])
def test_triton_matches_reference(tcv, d, mask_outside):
    f0, f1 = _pair()
    # 42 pixels in blocks of 32: a partial block is exercised.
    disp, cost = tcv.cost_volume_displacement_triton(
        f0, f1, d, 0.1, mask_outside=mask_outside, return_cost=True, block_p=32
    )
    ref_cost = cosine_cost_volume_reference(f0.double(), f1.double(), d)
    ref_disp = soft_argmax_displacement_reference(ref_cost, d, 0.1, mask_outside=mask_outside)
    assert disp.shape == (2, 2, 6, 7) and cost.shape == (2, (2 * d + 1) ** 2, 6, 7)
    assert disp.dtype == cost.dtype == torch.float32
    torch.testing.assert_close(cost.double(), ref_cost, rtol=0, atol=1e-6)
    torch.testing.assert_close(disp.double(), ref_disp, rtol=0, atol=2e-5)
    torch.testing.assert_close(disp, cost_volume_displacement(f0, f1, d, 0.1, mask_outside=mask_outside), rtol=0, atol=2e-5)


def test_triton_small_temperature_and_impl_switch(tcv):
    """τ = 0.01 (logits up to ±100: the online softmax must rescale) via cost_volume_displacement(impl=...)."""
    f0, f1 = _pair(n=1, c=8, h=5, w=9, seed=1)
    torch.testing.assert_close(
        cost_volume_displacement(f0, f1, 2, 0.01, impl="triton"), cost_volume_displacement(f0, f1, 2, 0.01),
        rtol=0, atol=1e-4,
    )


def test_triton_recovers_an_integer_shift(tcv):
    g = torch.Generator().manual_seed(0)
    f0 = torch.randn(1, 16, 8, 9, generator=g)
    f1 = torch.randn(1, 16, 8, 9, generator=g)
    f1[:, :, 1:, :7] = f0[:, :, :-1, 2:]  # moved by (dx, dy) = (-2, +1)
    disp = tcv.cost_volume_displacement_triton(f0, f1, 2, 0.02)
    interior = disp[0, :, :-1, 2:]
    assert (interior[0] + 2).abs().max() < 0.05 and (interior[1] - 1).abs().max() < 0.05


def test_triton_zero_vectors_and_tensor_temperature(tcv):
    f0, f1 = _pair(n=1, c=4, h=4, w=4, seed=2)
    f0[:, :, 1, 2] = 0
    f1[:, :, 2, 2] = 0
    tau = torch.tensor(0.2, requires_grad=True)
    disp, cost = tcv.cost_volume_displacement_triton(f0, f1, 1, tau, return_cost=True)
    assert torch.isfinite(disp).all() and (cost[0, :, 1, 2] == 0).all()
    torch.testing.assert_close(cost, cosine_cost_volume(f0, f1, 1), rtol=0, atol=1e-6)
    torch.testing.assert_close(disp, cost_volume_displacement(f0, f1, 1, 0.2), rtol=0, atol=1e-5)


def test_triton_bad_inputs_are_named(tcv):
    f0, f1 = _pair(n=1)
    with pytest.raises(ValueError, match="f0, f1"):
        tcv.cost_volume_displacement_triton(f0, f1[:, :, :5], 1, 0.1)
    with pytest.raises(ValueError, match="temperature"):
        tcv.cost_volume_displacement_triton(f0, f1, 1, 0.0)
    with pytest.raises(ValueError, match="max_disp"):
        tcv.cost_volume_displacement_triton(f0, f1, -1, 0.1)


def test_aot_compile_for_a_gpu_target():
    """The kernel also compiles to PTX (sm_90) without a GPU: the interpreter accepts more than the compiler."""
    from triton.backends.compiler import GPUTarget

    module = load_kernel_module("repro.ops.triton_cost_volume", interpret=False)
    try:
        compiled = module.compile_cost_volume(4, "fp32", target=GPUTarget("cuda", 90, 32))
    except Exception as err:  # pragma: no cover - depends on the installed Triton backends
        pytest.skip(f"Triton cannot compile for CUDA here: {err}")
    assert ".entry cost_volume_softargmax_kernel(" in compiled.asm["ptx"]
    assert getattr(compiled.metadata, "global_scratch_size", 0) == 0


def test_cpu_tensors_without_the_interpreter_are_refused():
    module = load_kernel_module("repro.ops.triton_cost_volume", interpret=False)
    if module.kernel_is_interpreted():  # pragma: no cover - TRITON_INTERPRET=1 set for the whole run
        pytest.skip("TRITON_INTERPRET=1 is set for this process")
    f0, f1 = _pair(n=1)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        module.cost_volume_displacement_triton(f0, f1, 1, 0.1)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_triton_on_gpu_matches_pytorch(dtype):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    module = load_kernel_module("repro.ops.triton_cost_volume", interpret=False)
    g = torch.Generator().manual_seed(0)
    f0 = torch.randn(2, 64, 56, 56, generator=g).cuda()
    f1 = torch.randn(2, 64, 56, 56, generator=g).cuda()
    f0, f1 = f0.to(dtype), f1.to(dtype)
    got = module.cost_volume_displacement_triton(f0, f1, 4, 0.05)
    expected = cost_volume_displacement(f0.float(), f1.float(), 4, 0.05)  # fp32 math on the same values
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
