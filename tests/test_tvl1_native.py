"""The optional native TV-L1 solver against its plain PyTorch reference (values, not timings).

Tolerance: the native solver runs the same float32 maths in another order (and multiplies by
Eq. (11)'s reciprocal instead of dividing twice), so results agree to rounding: a few 1e-6 px after
50 iterations here.  The TVNet-level check states the project's bound, max |flow diff| <= 1e-3 px.
"""
from __future__ import annotations

import pytest
import torch

from repro.flow.pairs import synthetic_benchmark_pairs
from repro.models.tvnet import TVNet
from repro.ops import native, tvl1_native
from repro.ops.tvl1 import DifferenceKernels, centred_gradient, default_difference_kernels, linearised_data_term
from repro.ops.tvl1_native import native_unavailable, stack_taps, tvl1_solve_native, tvl1_solve_reference

needs_native = pytest.mark.skipif(native_unavailable() is not None, reason=f"native solver: {native_unavailable()}")

#: the project's bound for a fast path against the eager TVNet (pixels)
FLOW_TOLERANCE = 1e-3


def _problem(n: int, height: int, width: int, iters: int, trained: bool, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    image0 = torch.rand(n, 1, height, width, generator=gen) * 255
    image1 = torch.roll(image0, (1, 2), (2, 3)) + torch.rand(n, 1, height, width, generator=gen) * 8
    flow0 = torch.randn(n, 2, height, width, generator=gen) * 0.5
    data = linearised_data_term(image0, image1, centred_gradient(image1), flow0)
    base = default_difference_kernels(2)
    kernels = DifferenceKernels(*(
        k.unsqueeze(0).repeat(iters, 1, 1, 1, 1) + (0.1 * torch.randn(iters, *k.shape, generator=gen) if trained else 0)
        for k in base))
    # arbitrary dual variables: the reference never reads p's last column (x) / last row (y)
    px, py = (torch.randn(n, 2, height, width, generator=gen) * 0.1 for _ in range(2))
    return (flow0, px, py, *data), kernels


def test_stack_taps_layout():
    kernels = DifferenceKernels(*(torch.arange(8.0).view(2, 2, 1, 1, 2) + 10 * f for f in range(4)))
    taps = stack_taps(kernels)
    assert taps.shape == (2, 16)
    # row k: filter f, tap t, channel d at f*4 + t*2 + d; kernels[f][k, d] = 10 f + 4 k + 2 d + t
    for f in range(4):
        for t in range(2):
            for d in range(2):
                assert taps[1, f * 4 + t * 2 + d] == 10 * f + 4 + 2 * d + t


@needs_native
@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("shape", [(1, 2, 2), (2, 5, 7), (1, 24, 33)])
def test_native_solver_equals_reference(trained, shape):
    n, height, width = shape
    iters = 30  # > BLOCK: two wavefront blocks
    tensors, kernels = _problem(n, height, width, iters, trained)
    expected = tvl1_solve_reference(*tensors, kernels)
    inputs = [t.clone() for t in tensors]
    got = tvl1_solve_native(*tensors, kernels)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)
    for a, b in zip(tensors, inputs):  # inputs untouched
        assert torch.equal(a, b)


@needs_native
def test_native_solver_rejects_mismatched_shapes():
    tensors, kernels = _problem(1, 4, 5, 2, False)
    with pytest.raises(ValueError, match="grad_sq: expected shape"):
        tvl1_solve_native(*tensors[:4], tensors[4][..., :-1], tensors[5], kernels)


@needs_native
def test_tvnet_native_path_matches_eager_on_benchmark_pairs():
    """TVNet-1-1-50 at 240x320 on the built-in benchmark's pairs: the inference fast path (native
    solver) against the plain eager forward, within FLOW_TOLERANCE px."""
    pairs = synthetic_benchmark_pairs((240, 320), count=2, seed=1)
    frames0 = torch.stack([torch.from_numpy(p.frame0).permute(2, 0, 1).float() for p in pairs])
    frames1 = torch.stack([torch.from_numpy(p.frame1).permute(2, 0, 1).float() for p in pairs])
    model = TVNet(1, 1, 50).eval()
    with torch.inference_mode():
        eager = model(frames0, frames1)
        fast_model = TVNet(1, 1, 50).eval().use_compiled_iterations()
        assert fast_model._takes_native(frames0)
        fast = fast_model(frames0, frames1)
    assert (fast - eager).abs().max().item() <= FLOW_TOLERANCE


@needs_native
def test_tvnet_native_path_multiscale_multiwarp_trained_filters():
    """Several scales and warps (p carried across warps) and perturbed filters."""
    gen = torch.Generator().manual_seed(4)
    frame0 = torch.rand(2, 3, 40, 48, generator=gen) * 255
    frame1 = torch.roll(frame0, (1, -1), (2, 3))
    model = TVNet(2, 2, 12, trainable="all", image_size=(40, 48)).eval()
    with torch.no_grad():
        for f in (model.forward_x, model.forward_y, model.divergence_x, model.divergence_y):
            f.add_(0.05 * torch.randn(f.shape, generator=gen))
        model.u0.add_(0.3 * torch.randn(model.u0.shape, generator=gen))
    with torch.inference_mode():
        eager = model(frame0, frame1)
        fast = model.use_compiled_iterations()(frame0, frame1)
    assert (fast - eager).abs().max().item() <= FLOW_TOLERANCE


def test_native_path_not_taken_with_autograd_or_when_off():
    model = TVNet(1, 1, 3, trainable="all", image_size=(8, 8)).use_compiled_iterations()
    x = torch.zeros(1, 1, 8, 8)
    assert not model._takes_native(x)  # trainable parameters, autograd on: the inductor path
    assert not model.use_compiled_iterations(native=False)._takes_native(x)
    assert not TVNet(1, 1, 3).use_compiled_iterations()._takes_native(x.double())


def test_unavailable_says_why(monkeypatch):
    tvl1_native._load.cache_clear()
    try:
        monkeypatch.setenv("REPRO_TVL1_NATIVE", "0")
        assert "REPRO_TVL1_NATIVE=0" in native_unavailable()
        assert not TVNet(1, 1, 3).use_compiled_iterations()._takes_native(torch.zeros(1, 1, 8, 8))
        with pytest.raises(RuntimeError, match="native TV-L1 solver unavailable"):
            tvl1_solve_native(*_problem(1, 4, 5, 1, False)[0], _problem(1, 4, 5, 1, False)[1])
        monkeypatch.delenv("REPRO_TVL1_NATIVE")
        monkeypatch.setattr(native, "compiler", lambda: None)
        tvl1_native._load.cache_clear()
        assert "no C compiler" in native_unavailable()
    finally:
        tvl1_native._load.cache_clear()
