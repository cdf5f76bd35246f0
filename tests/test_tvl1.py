"""TV-L1 ops: convolution versions against the plain per-pixel references (values and gradients)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from repro.ops.tvl1 import (
    GRAD_IS_ZERO,
    DifferenceKernels,
    centred_gradient,
    centred_gradient_reference,
    default_difference_kernels,
    depthwise_conv2d,
    divergence,
    divergence_reference,
    forward_gradient,
    forward_gradient_reference,
    from_row_halo,
    linearised_data_term,
    to_row_halo,
    tvl1_energy,
    tvl1_iteration,
    tvl1_iteration_fused,
    tvl1_iteration_reference,
    warp_bilinear,
    warp_bilinear_reference,
)

H, W = 5, 6


def _random_kernels(gen: torch.Generator, dtype=torch.float64) -> DifferenceKernels:
    base = default_difference_kernels(2, dtype=dtype)
    return DifferenceKernels(*(k + 0.3 * torch.randn(k.shape, generator=gen, dtype=dtype) for k in base))


def test_depthwise_conv2d_equals_conv2d():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 7, 9, dtype=torch.float64)
    for shape in ((2, 1, 1, 2), (2, 1, 2, 1), (2, 1, 1, 3), (2, 1, 3, 3)):
        weight = torch.randn(shape, dtype=torch.float64)
        torch.testing.assert_close(depthwise_conv2d(x, weight), F.conv2d(x, weight, groups=2))


def test_centred_gradient_matches_reference_and_paper_interior():
    torch.manual_seed(0)
    image = torch.randn(1, 1, H, W, dtype=torch.float64)
    dx, dy = centred_gradient(image)
    rdx, rdy = centred_gradient_reference(image[0, 0])
    torch.testing.assert_close(dx[0, 0], rdx)
    torch.testing.assert_close(dy[0, 0], rdy)
    # Eq. (3) in the interior; release's one-sided half difference on the border.
    torch.testing.assert_close(dx[0, 0, 2, 3], (image[0, 0, 2, 4] - image[0, 0, 2, 2]) / 2)
    torch.testing.assert_close(dx[0, 0, 1, 0], (image[0, 0, 1, 1] - image[0, 0, 1, 0]) / 2)
    torch.testing.assert_close(dy[0, 0, H - 1, 2], (image[0, 0, H - 1, 2] - image[0, 0, H - 2, 2]) / 2)


@pytest.mark.parametrize("trained", [False, True])
def test_forward_gradient_and_divergence_match_reference(trained):
    gen = torch.Generator().manual_seed(1)
    kernels = _random_kernels(gen) if trained else default_difference_kernels(2, dtype=torch.float64)
    u = torch.randn(2, 2, H, W, generator=gen, dtype=torch.float64)
    px = torch.randn(2, 2, H, W, generator=gen, dtype=torch.float64)
    py = torch.randn(2, 2, H, W, generator=gen, dtype=torch.float64)
    ux, uy = forward_gradient(u, kernels)
    div = divergence(px, py, kernels)
    for n in range(2):
        for d in range(2):
            kfx = tuple(kernels.forward_x[d].flatten().tolist())
            kfy = tuple(kernels.forward_y[d].flatten().tolist())
            rx, ry = forward_gradient_reference(u[n, d], kfx, kfy)
            torch.testing.assert_close(ux[n, d], rx)
            torch.testing.assert_close(uy[n, d], ry)
            kdx = tuple(kernels.divergence_x[d].flatten().tolist())
            kdy = tuple(kernels.divergence_y[d].flatten().tolist())
            torch.testing.assert_close(div[n, d], divergence_reference(px[n, d], py[n, d], kdx, kdy))
    if not trained:
        # Eq. (4) boundary and Eq. (5) border cases, spelled out.
        assert torch.all(ux[..., -1] == 0) and torch.all(uy[..., -1, :] == 0)
        torch.testing.assert_close(div[0, 0, 2, 0], px[0, 0, 2, 0] + py[0, 0, 2, 0] - py[0, 0, 1, 0])
        torch.testing.assert_close(div[0, 0, 2, W - 1], -px[0, 0, 2, W - 2] + py[0, 0, 2, W - 1] - py[0, 0, 1, W - 1])


def test_divergence_is_minus_adjoint_of_forward_gradient():
    """<grad u, p> = -<u, div p>: the discrete pair of Eq. (4)/(5) is adjoint (Chambolle)."""
    torch.manual_seed(2)
    u = torch.randn(1, 2, H, W, dtype=torch.float64)
    px, py = torch.randn(1, 2, H, W, dtype=torch.float64), torch.randn(1, 2, H, W, dtype=torch.float64)
    ux, uy = forward_gradient(u)
    # Only the p entries that the forward difference can reach take part (last col/row of p are 0 in TV-L1).
    px[..., -1] = 0
    py[..., -1, :] = 0
    lhs = (ux * px).sum() + (uy * py).sum()
    torch.testing.assert_close(lhs, -(u * divergence(px, py)).sum())


def test_warp_matches_eq10_reference_including_border():
    torch.manual_seed(3)
    image = torch.randn(1, 3, H, W, dtype=torch.float64)
    flow = 2.5 * torch.randn(1, 2, H, W, dtype=torch.float64)  # many samples fall outside
    torch.testing.assert_close(warp_bilinear(image, flow)[0], warp_bilinear_reference(image[0], flow[0]))
    # integer shift moves pixels exactly
    shift = torch.zeros(1, 2, H, W, dtype=torch.float64)
    shift[:, 0] = 1.0
    torch.testing.assert_close(warp_bilinear(image, shift)[..., :-1], image[..., 1:])


def _iteration_inputs(gen: torch.Generator, dtype=torch.float64):
    image0 = 50 * torch.randn(1, 1, H, W, generator=gen, dtype=dtype)
    image1 = 50 * torch.randn(1, 1, H, W, generator=gen, dtype=dtype)
    flow0 = 0.7 * torch.randn(1, 2, H, W, generator=gen, dtype=dtype)
    warped_grad, grad_sq, rho_c = linearised_data_term(image0, image1, centred_gradient(image1), flow0)
    u = flow0 + 0.3 * torch.randn(1, 2, H, W, generator=gen, dtype=dtype)
    px = 0.5 * torch.randn(1, 2, H, W, generator=gen, dtype=dtype)
    py = 0.5 * torch.randn(1, 2, H, W, generator=gen, dtype=dtype)
    return u, px, py, warped_grad, grad_sq, rho_c


@pytest.mark.parametrize("trained", [False, True])
def test_tvl1_iteration_conv_matches_per_pixel_reference(trained):
    gen = torch.Generator().manual_seed(4)
    u, px, py, warped_grad, grad_sq, rho_c = _iteration_inputs(gen)
    kernels = _random_kernels(gen) if trained else None
    new = tvl1_iteration(u, px, py, warped_grad, grad_sq, rho_c, kernels=kernels)
    ref = tvl1_iteration_reference(u[0], px[0], py[0], warped_grad[0], grad_sq[0, 0], rho_c[0, 0], kernels=kernels)
    for fast, slow in zip(new, ref):
        torch.testing.assert_close(fast[0], slow)
    # all three thresholding cases of Algorithm 1 were exercised
    rho = rho_c + (warped_grad * u).sum(1, keepdim=True)
    lt = 0.15 * 0.3
    assert (rho < -lt * grad_sq).any() and (rho > lt * grad_sq).any() and ((rho.abs() <= lt * grad_sq)).any()


def test_tvl1_iteration_gradients_match_reference():
    gen = torch.Generator().manual_seed(5)
    inputs = [t.requires_grad_() for t in _iteration_inputs(gen)]
    kernels = DifferenceKernels(*(k.requires_grad_() for k in _random_kernels(gen)))
    weights = [torch.randn(1, 2, H, W, generator=gen, dtype=torch.float64) for _ in range(3)]

    def scalar(outputs):
        return sum((o.reshape(1, 2, H, W) * w).sum() for o, w in zip(outputs, weights))

    fast = torch.autograd.grad(scalar(tvl1_iteration(*inputs, kernels=kernels)), inputs + list(kernels))
    u, px, py, g, gs, rc = inputs
    ref_out = tvl1_iteration_reference(u[0], px[0], py[0], g[0], gs[0, 0], rc[0, 0], kernels=kernels)
    slow = torch.autograd.grad(scalar(ref_out), inputs + list(kernels))
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b)


def test_tvl1_iteration_gradcheck():
    gen = torch.Generator().manual_seed(6)
    inputs = tuple(t.requires_grad_() for t in _iteration_inputs(gen))
    assert torch.autograd.gradcheck(lambda *x: tvl1_iteration(*x), inputs, eps=1e-6, atol=1e-5)


def _iterate(step, state, data, kernels_per_iter):
    for kernels in kernels_per_iter:
        state = step(*state, *data, kernels=kernels)
    return state


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("pair", ["random", "shifted"])
def test_fused_iteration_matches_conv_iteration_from_p_zero(trained, pair):
    """The row-halo iteration (inference fast path) is tvl1_iteration, from p = 0 over many
    iterations (its precondition holds throughout), on random data terms and on a shifted pair."""
    gen = torch.Generator().manual_seed(7)
    height, width = 9, 11
    image1 = 255 * torch.rand(1, 1, height, width, generator=gen, dtype=torch.float64)
    image0 = torch.roll(image1, shifts=(1, 2), dims=(2, 3)) if pair == "shifted" else \
        255 * torch.rand(1, 1, height, width, generator=gen, dtype=torch.float64)
    flow0 = 0.5 * torch.randn(1, 2, height, width, generator=gen, dtype=torch.float64)
    data = linearised_data_term(image0, image1, centred_gradient(image1), flow0)
    kernels = [_random_kernels(gen) if trained else None for _ in range(20)]
    zeros = torch.zeros_like(flow0)
    plain = _iterate(tvl1_iteration, (flow0, zeros, zeros), data, kernels)
    fused = _iterate(tvl1_iteration_fused, tuple(to_row_halo(t) for t in (flow0, zeros, zeros)), data, kernels)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(from_row_halo(a), b, atol=1e-9, rtol=1e-9)
        assert torch.all(a[..., 0, :] == 0) and torch.all(a[..., -1, :] == 0)  # halo rows stay 0
    assert (plain[0] - flow0).abs().max() > 0.1  # the flow moved


def test_fused_iteration_gradients_match_conv_iteration():
    """Training may take the fused path too: same gradients for u0 and the trainable filters."""
    gen = torch.Generator().manual_seed(8)
    image0, image1 = (255 * torch.rand(1, 1, H, W, generator=gen, dtype=torch.float64) for _ in range(2))
    flow0 = (0.5 * torch.randn(1, 2, H, W, generator=gen, dtype=torch.float64)).requires_grad_()
    kernels = [DifferenceKernels(*(k.requires_grad_() for k in _random_kernels(gen))) for _ in range(3)]
    leaves = [flow0] + [k for ks in kernels for k in ks]
    weights = [torch.randn(1, 2, H, W, generator=gen, dtype=torch.float64) for _ in range(3)]
    data = linearised_data_term(image0, image1, centred_gradient(image1), flow0)
    zeros = torch.zeros_like(flow0)
    plain = _iterate(tvl1_iteration, (flow0, zeros, zeros), data, kernels)
    fused = _iterate(tvl1_iteration_fused, tuple(to_row_halo(t) for t in (flow0, zeros, zeros)), data, kernels)

    def scalar(outputs):
        return sum((o * w).sum() for o, w in zip(outputs, weights))

    grads_fused = torch.autograd.grad(scalar(from_row_halo(t) for t in fused), leaves, retain_graph=True)
    grads_plain = torch.autograd.grad(scalar(plain), leaves)
    for a, b in zip(grads_fused, grads_plain):
        torch.testing.assert_close(a, b)


def test_stabilised_divisions_give_finite_gradients_on_flat_images():
    """Sec. 4.1 / Eq. (12): a constant image and zero flow still have finite gradients."""
    image = torch.full((1, 1, H, W), 7.0, dtype=torch.float64)
    flow0 = torch.zeros(1, 2, H, W, dtype=torch.float64, requires_grad=True)
    warped_grad, grad_sq, rho_c = linearised_data_term(image, image, centred_gradient(image), flow0)
    assert torch.all(grad_sq == GRAD_IS_ZERO)
    zeros = torch.zeros(1, 2, H, W, dtype=torch.float64)
    u, px, py = tvl1_iteration(flow0, zeros, zeros, warped_grad, grad_sq, rho_c)
    (grad,) = torch.autograd.grad((u.sum() + px.sum() + py.sum()), flow0)
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(u, torch.zeros_like(u))


def test_tvl1_energy_exact_warp_values():
    torch.manual_seed(7)
    image1 = torch.randn(1, 1, H, W, dtype=torch.float64)
    flow = torch.zeros(1, 2, H, W, dtype=torch.float64)
    flow[:, 0] = 1.0  # constant flow: no TV term, rho = I1(x+1) - I0(x)
    image0 = warp_bilinear(image1, flow)
    assert tvl1_energy(flow, image0, image1, eps=0.0).item() == pytest.approx(0.0, abs=1e-12)
    image0_shifted = image0 + 2.0
    assert tvl1_energy(flow, image0_shifted, image1, lam=0.5, eps=0.0).item() == pytest.approx(1.0)
    # a flow step of 3 along x between two columns costs |grad u_1| = 3 on one column of H pixels
    step = torch.zeros(1, 2, H, W, dtype=torch.float64)
    step[:, 0, :, 3:] = 3.0
    energy = tvl1_energy(step, image0, image0, lam=0.0, eps=0.0)
    assert energy.item() == pytest.approx(3.0 * H / (H * W))
