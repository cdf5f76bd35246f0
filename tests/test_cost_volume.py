"""Cosine cost volume, soft-argmax and WTA displacement (Disentangling Dynamics §3.3, Eq. 1-2):
fast path vs loop references, border convention, integer shifts recovered, gradients, memory,
fvcore MACs, input errors."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn as nn

from repro.ops.cost_volume import (
    cosine_cost_volume,
    cosine_cost_volume_reference,
    cost_volume_displacement,
    displacement_offsets,
    num_displacements,
    outside_mask,
    soft_argmax_displacement,
    soft_argmax_displacement_reference,
    wta_displacement,
    wta_displacement_reference,
)
from repro.profile import count_macs


def _pair(n=2, c=6, h=7, w=9, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g, dtype=dtype), torch.randn(n, c, h, w, generator=g, dtype=dtype)


def _cosine_all_loops(f0: list, f1: list, d: int, eps: float = 1e-6) -> list:
    """Pure Python, one pixel and one displacement at a time: ``out[k][y][x]`` for one sample."""
    channels, height, width = len(f0), len(f0[0]), len(f0[0][0])
    out = []
    for dy in range(-d, d + 1):
        for dx in range(-d, d + 1):
            plane = [[0.0] * width for _ in range(height)]
            for y in range(height):
                for x in range(width):
                    if 0 <= y + dy < height and 0 <= x + dx < width:
                        a = [f0[c][y][x] for c in range(channels)]
                        b = [f1[c][y + dy][x + dx] for c in range(channels)]
                        dot = sum(u * v for u, v in zip(a, b))
                        na = max(math.sqrt(sum(u * u for u in a)), eps)
                        nb = max(math.sqrt(sum(v * v for v in b)), eps)
                        plane[y][x] = dot / (na * nb)
            out.append(plane)
    return out


def _shifted_pair(dx: int, dy: int, n=2, c=16, h=12, w=14, seed=0):
    """f1 = f0 moved by (dx, dy): f1[y+dy, x+dx] = f0[y, x]; fresh random features where nothing moved in."""
    g = torch.Generator().manual_seed(seed)
    f0 = torch.randn(n, c, h, w, generator=g)
    f1 = torch.randn(n, c, h, w, generator=g)
    ys, xs = slice(max(0, -dy), min(h, h - dy)), slice(max(0, -dx), min(w, w - dx))
    ys1, xs1 = slice(ys.start + dy, ys.stop + dy), slice(xs.start + dx, xs.stop + dx)
    f1[:, :, ys1, xs1] = f0[:, :, ys, xs]
    interior = torch.zeros(h, w, dtype=torch.bool)
    interior[ys, xs] = True  # pixels of f0 whose match is inside f1
    return f0, f1, interior


# ---------------------------------------------------------------------------------------------
# cost volume values
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [1, 2])
def test_all_loops_tiny_case(d):
    f0, f1 = _pair(n=1, c=2, h=4, w=5)
    expected = torch.tensor(_cosine_all_loops(f0[0].tolist(), f1[0].tolist(), d), dtype=torch.float64)
    assert expected.shape == (num_displacements(d), 4, 5)
    torch.testing.assert_close(cosine_cost_volume_reference(f0, f1, d)[0], expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(cosine_cost_volume(f0, f1, d)[0], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("d", [0, 1, 2, 3, 5])
def test_fast_matches_reference(d):
    f0, f1 = _pair()  # d = 5 is wider than the 7-row map: whole displacement planes are outside
    fast = cosine_cost_volume(f0, f1, d)
    assert fast.shape == (2, (2 * d + 1) ** 2, 7, 9)
    torch.testing.assert_close(fast, cosine_cost_volume_reference(f0, f1, d), rtol=0, atol=1e-12)


def test_float32_matches_float64_reference():
    f0, f1 = _pair(dtype=torch.float32)
    fast = cosine_cost_volume(f0, f1, 2)
    torch.testing.assert_close(fast.double(), cosine_cost_volume_reference(f0.double(), f1.double(), 2), rtol=0, atol=1e-6)


def test_displacement_index_and_axes():
    """k = (dy + d)(2d+1) + (dx + d); dy moves along H, dx along W."""
    d = 2
    offsets = displacement_offsets(d)
    for k in range(num_displacements(d)):
        assert (offsets[0, k].item(), offsets[1, k].item()) == (k % 5 - d, k // 5 - d)
    f0, f1 = _pair(n=1)
    cost = cosine_cost_volume(f0, f1, d)
    y, x, dy, dx = 3, 4, -1, 2
    k = (dy + d) * 5 + (dx + d)
    expected = torch.nn.functional.cosine_similarity(f0[0, :, y, x], f1[0, :, y + dy, x + dx], dim=0)
    torch.testing.assert_close(cost[0, k, y, x], expected, rtol=0, atol=1e-12)


def test_border_convention_zero_outside():
    """Positions (y+dy, x+dx) outside the map: f1 is zero-padded, cosine exactly 0."""
    f0, f1 = _pair(h=5, w=6)
    cost = cosine_cost_volume(f0, f1, 2)
    outside = outside_mask(2, 5, 6)
    assert outside.shape == (25, 5, 6)
    assert outside[12].sum() == 0  # the zero displacement is always inside
    assert outside[0, 0, 0] and not outside[0, 2, 2] and outside[24, 4, 5] and not outside[24, 2, 3]
    assert (cost[:, outside] == 0).all()
    assert (cost[:, ~outside] != 0).all()  # random features: every in-map cosine is non-zero


def test_cosine_properties():
    f0, f1 = _pair()
    cost = cosine_cost_volume(f0, f1, 2)
    assert cost.abs().max() <= 1 + 1e-12
    torch.testing.assert_close(cosine_cost_volume(f0, f0, 2)[:, 12], torch.ones(2, 7, 9, dtype=torch.float64))
    # Invariant to positive per-pixel scaling of either map (cosine, not FlowNet's dot product).
    scale = torch.rand(2, 1, 7, 9, dtype=torch.float64) * 5 + 0.1
    torch.testing.assert_close(cosine_cost_volume(f0 * scale, f1 / scale, 2), cost, rtol=0, atol=1e-12)


def test_zero_feature_vectors_give_zero_cost_and_finite_gradients():
    f0, f1 = _pair(n=1, c=4, h=5, w=5)
    f0[:, :, 1, 1] = 0  # post-ReLU features have exact-zero vectors
    f1[:, :, 2, 2] = 0
    f0.requires_grad_(True)
    f1.requires_grad_(True)
    cost = cosine_cost_volume(f0, f1, 1)
    assert (cost[0, :, 1, 1] == 0).all()
    assert cost[0, 8, 1, 1] == 0 and cost[0, 0, 3, 3] == 0  # both see f1's zero vector at (2, 2)
    cost.sum().backward()
    assert torch.isfinite(f0.grad).all() and torch.isfinite(f1.grad).all()


# ---------------------------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------------------------
def test_gradcheck_cost_volume():
    f0, f1 = _pair(n=1, c=3, h=4, w=5)
    assert torch.autograd.gradcheck(lambda a, b: cosine_cost_volume(a, b, 1), (f0.requires_grad_(), f1.requires_grad_()))


@pytest.mark.parametrize("mask_outside", [True, False])
def test_gradcheck_soft_argmax_and_fused(mask_outside):
    f0, f1 = _pair(n=1, c=3, h=4, w=5)
    log_tau = torch.tensor(math.log(0.3), dtype=torch.float64, requires_grad=True)
    cost = cosine_cost_volume(f0, f1, 1).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda c, lt: soft_argmax_displacement(c, 1, lt.exp(), mask_outside=mask_outside), (cost, log_tau)
    )
    assert torch.autograd.gradcheck(
        lambda a, b: cost_volume_displacement(a, b, 1, 0.3, mask_outside=mask_outside),
        (f0.requires_grad_(), f1.requires_grad_()),
    )


def test_fast_gradients_match_reference():
    f0, f1 = _pair(n=2, c=5, h=6, w=7)
    g = torch.Generator().manual_seed(3)
    upstream = torch.randn(2, 2, 6, 7, generator=g, dtype=torch.float64)
    grads = []
    for cv, sa in ((cosine_cost_volume, soft_argmax_displacement),
                   (cosine_cost_volume_reference, soft_argmax_displacement_reference)):
        a, b = f0.clone().requires_grad_(), f1.clone().requires_grad_()
        log_tau = torch.tensor(math.log(0.2), dtype=torch.float64, requires_grad=True)
        out = sa(cv(a, b, 2), 2, log_tau.exp())
        (out * upstream).sum().backward()
        grads.append((out.detach(), a.grad, b.grad, log_tau.grad))
    for fast, ref in zip(*grads):
        torch.testing.assert_close(fast, ref, rtol=0, atol=1e-12)


def test_saved_memory_is_not_the_unfolded_volume():
    """Training memory O(C·H·W + D·H·W): the tensors autograd keeps for the cost volume's backward
    are (views of) the two normalised maps, never a (C, D, H, W) tensor."""
    c, h, w, d = 32, 12, 12, 4
    f0, f1 = _pair(n=1, c=c, h=h, w=w, dtype=torch.float32)
    storages: dict[int, int] = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        cost = cosine_cost_volume(f0.requires_grad_(), f1.requires_grad_(), d)
    saved = sum(storages.values()) // 4  # float32 elements
    unfolded = c * num_displacements(d) * h * w
    assert cost.shape == (1, 81, h, w)
    assert saved <= 4 * c * (h + 2 * d) * (w + 2 * d)  # inputs, normalised maps, padded map, norms
    assert saved < unfolded / 5


# ---------------------------------------------------------------------------------------------
# soft-argmax and WTA
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mask_outside", [True, False])
@pytest.mark.parametrize("temperature", [0.05, 1.0])
def test_soft_argmax_matches_eq2_marginals(mask_outside, temperature):
    f0, f1 = _pair()
    cost = cosine_cost_volume(f0, f1, 2)
    fast = soft_argmax_displacement(cost, 2, temperature, mask_outside=mask_outside)
    ref = soft_argmax_displacement_reference(cost, 2, temperature, mask_outside=mask_outside)
    assert fast.shape == (2, 2, 7, 9)
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-12)
    assert fast.abs().max() <= 2


def test_uniform_costs_and_the_border_mask():
    """Equal costs: the expectation over the window is 0 unmasked; masked, a corner pixel averages
    its in-map displacements only (here dx, dy in {0, 1} at (0, 0))."""
    cost = torch.zeros(1, 9, 3, 3, dtype=torch.float64)
    masked = soft_argmax_displacement(cost, 1, 0.1)
    unmasked = soft_argmax_displacement(cost, 1, 0.1, mask_outside=False)
    assert unmasked.abs().max() == 0
    torch.testing.assert_close(masked[0, :, 0, 0], torch.tensor([0.5, 0.5], dtype=torch.float64))
    torch.testing.assert_close(masked[0, :, 2, 1], torch.tensor([0.0, -0.5], dtype=torch.float64))
    assert masked[0, :, 1, 1].abs().max() == 0
    # WTA on ties: lowest k, i.e. (-1, -1) unmasked; the first in-map k masked.
    assert wta_displacement(cost, 1, mask_outside=False)[0, :, 1, 1].tolist() == [-1.0, -1.0]
    assert wta_displacement(cost, 1)[0, :, 0, 0].tolist() == [0.0, 0.0]
    for mask in (True, False):
        assert torch.equal(wta_displacement(cost, 1, mask_outside=mask), wta_displacement_reference(cost, 1, mask_outside=mask))


def test_masked_outside_displacements_never_win():
    """Costs favouring an outside displacement: masked, WTA and soft-argmax stay in the map."""
    cost = torch.full((1, 9, 3, 3), 0.1)
    cost[:, 0] = 1.0  # (dx, dy) = (-1, -1): outside for row 0 and column 0
    wta = wta_displacement(cost, 1)
    assert wta[0, :, 1, 1].tolist() == [-1.0, -1.0]
    assert wta[0, :, 0, 0].tolist() == [0.0, 0.0]  # a tie among in-map entries: the first, (0, 0)
    assert wta_displacement(cost, 1, mask_outside=False)[0, :, 0, 0].tolist() == [-1.0, -1.0]
    soft = soft_argmax_displacement(cost, 1, 0.01)
    assert soft[0, 1, 0].min() >= 0 and soft[0, 0, :, 0].min() >= 0  # row 0 / column 0 never move out
    assert soft[0, :, 1, 1].tolist() == pytest.approx([-1.0, -1.0], abs=1e-6)


@pytest.mark.parametrize("mask_outside", [True, False])
def test_wta_matches_reference_and_small_temperature_limit(mask_outside):
    f0, f1 = _pair(seed=5)
    cost = cosine_cost_volume(f0, f1, 2)
    wta = wta_displacement(cost, 2, mask_outside=mask_outside)
    assert torch.equal(wta, wta_displacement_reference(cost, 2, mask_outside=mask_outside))
    assert wta.dtype == cost.dtype and not wta.requires_grad
    # τ -> 0 reduces Eq. 2 to WTA (§3.3) where the best cost leads the runner-up by a margin.
    top2 = cost.masked_fill(outside_mask(2, 7, 9), -2.0) if mask_outside else cost
    gap = top2.topk(2, dim=1).values.diff(dim=1).abs()[:, 0]
    clear = gap > 0.05
    soft = soft_argmax_displacement(cost, 2, 1e-3, mask_outside=mask_outside)
    assert clear.sum() > 50
    torch.testing.assert_close(soft.permute(0, 2, 3, 1)[clear], wta.permute(0, 2, 3, 1)[clear], rtol=0, atol=1e-6)


@pytest.mark.parametrize("dx, dy", [(2, -1), (-3, 0), (0, 0), (1, 3), (-2, -2)])
def test_integer_shift_is_recovered(dx, dy):
    """A feature map moved by (dx, dy) is recovered: soft-argmax at τ = 0.02 within 0.05 px on the
    pixels whose match is in the map, WTA exactly (x channel first)."""
    d = 3
    f0, f1, interior = _shifted_pair(dx, dy)
    truth = torch.tensor([float(dx), float(dy)])
    for mask_outside in (True, False):
        soft = cost_volume_displacement(f0, f1, d, 0.02, mask_outside=mask_outside)
        err = (soft - truth[None, :, None, None]).abs().amax(dim=1)[:, interior]
        assert err.max() < 0.05, err.max()
        wta = wta_displacement(cosine_cost_volume(f0, f1, d), d, mask_outside=mask_outside)
        assert (wta == truth[None, :, None, None]).all(dim=1)[:, interior].all()


def test_two_equal_matches_give_a_subpixel_estimate():
    """Soft assignment yields sub-pixel values where WTA cannot (§3.3's argument for Eq. 1-2)."""
    d = 2
    cost = torch.zeros(1, num_displacements(d), 5, 5, dtype=torch.float64)
    cost[:, (0 + d) * 5 + (1 + d)] = 0.9  # (dx, dy) = (1, 0)
    cost[:, (0 + d) * 5 + (2 + d)] = 0.9  # (dx, dy) = (2, 0)
    soft = soft_argmax_displacement(cost, d, 0.01, mask_outside=False)
    torch.testing.assert_close(soft[0, :, 2, 2], torch.tensor([1.5, 0.0], dtype=torch.float64), rtol=0, atol=1e-12)
    assert wta_displacement(cost, d, mask_outside=False)[0, :, 2, 2].tolist() == [1.0, 0.0]


# ---------------------------------------------------------------------------------------------
# fvcore MACs
# ---------------------------------------------------------------------------------------------
class _Displacement(nn.Module):
    def __init__(self, max_disp: int, temperature: float, mask_outside: bool) -> None:
        super().__init__()
        self.max_disp, self.temperature, self.mask_outside = max_disp, temperature, mask_outside

    def forward(self, f0: torch.Tensor, f1: torch.Tensor) -> torch.Tensor:
        return cost_volume_displacement(f0, f1, self.max_disp, self.temperature, mask_outside=self.mask_outside)


@pytest.mark.parametrize("mask_outside", [True, False])
def test_macs_are_counted_and_match_the_formula(mask_outside):
    n, c, h, w, d = 2, 8, 6, 7, 2
    dd, hw = num_displacements(d), h * w
    f0, f1 = _pair(n=n, c=c, h=h, w=w, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an UncountedOpsWarning fails the test
        report = count_macs(_Displacement(d, 0.1, mask_outside), (f0, f1))
    assert report.uncounted == {}
    expected = {
        "mul": n * c * dd * hw,  # the products
        "sum": n * c * dd * hw,  # their accumulation over C (1 per input element)
        "linalg_vector_norm": 2 * 2 * n * c * hw,  # two maps
        "clamp_min": 2 * n * hw,
        "div": 2 * n * c * hw + n * dd * hw,  # normalisation, cost / τ
        "softmax": 3 * n * dd * hw,
        "conv": 2 * n * dd * hw,  # Eq. 1's expectation as a 1×1 conv
    }
    if mask_outside:
        expected["masked_fill"] = n * dd * hw
    assert report.by_operator == expected
    assert report.macs == sum(expected.values())
    assert report.model_macs == 5 * n * dd * hw  # softmax + conv (the products are elementwise ops)


def test_onnx_export_runs_in_onnxruntime():
    """The fast path is plain aten ops: it exports (opset 17, the harness's latency backend) and
    ONNX Runtime gives the same displacement map."""
    ort = pytest.importorskip("onnxruntime")
    import io

    f0, f1 = _pair(n=1, c=8, h=9, w=10, dtype=torch.float32)
    model = _Displacement(2, 0.05, True)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (f0, f1), buffer, opset_version=17, dynamo=False, input_names=["f0", "f1"])
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"f0": f0.numpy(), "f1": f1.numpy()})[0])
    torch.testing.assert_close(got, model(f0, f1), rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# input errors
# ---------------------------------------------------------------------------------------------
def test_bad_inputs_are_named():
    f0, f1 = _pair(n=1)
    with pytest.raises(ValueError, match="f1 .* must have the shape of f0"):
        cosine_cost_volume(f0, f1[:, :3], 1)
    with pytest.raises(ValueError, match=r"f0: expected \(N, C, H, W\)"):
        cosine_cost_volume(f0[0], f1[0], 1)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="max_disp"):
            cosine_cost_volume(f0, f1, bad)
    cost = cosine_cost_volume(f0, f1, 1)
    with pytest.raises(ValueError, match=r"cost: expected \(N, D=25, H, W\) for max_disp=2"):
        soft_argmax_displacement(cost, 2, 0.1)
    with pytest.raises(ValueError, match="D=25"):
        wta_displacement(cost, 2)
    for bad in (0.0, -1.0, torch.tensor([0.1, 0.2])):
        with pytest.raises(ValueError, match="temperature"):
            soft_argmax_displacement(cost, 1, bad)
    with pytest.raises(ValueError, match="impl"):
        cost_volume_displacement(f0, f1, 1, 0.1, impl="cuda")


def test_the_cost_volume_in_chunks_of_pairs_is_the_same_numbers(monkeypatch):
    import repro.ops.cost_volume as cv

    torch.manual_seed(0)
    f0, f1 = torch.randn(5, 4, 6, 7, requires_grad=True), torch.randn(5, 4, 6, 7)
    whole = cv.cosine_cost_volume(f0, f1, 2)
    monkeypatch.setattr(cv, "CHUNK_ELEMENTS", 2 * 4 * 6 * 7)  # two pairs a chunk: 2 + 2 + 1
    chunked = cv.cosine_cost_volume(f0, f1, 2)
    assert torch.equal(whole, chunked)
    (g_whole,) = torch.autograd.grad(whole.square().sum(), f0)
    (g_chunked,) = torch.autograd.grad(chunked.square().sum(), f0)
    torch.testing.assert_close(g_whole, g_chunked)


def test_hand_written_backward_matches_autograd_through_the_plain_loop(monkeypatch):
    """The fast path (:class:`_ShiftedDots`, its own backward, a few pairs at a time) and the plain
    loop a graph capture records give the same costs and the same gradients for both maps."""
    import repro.ops.cost_volume as cv

    monkeypatch.setattr(cv, "CHUNK_ELEMENTS", 2 * 3 * 5 * 6)  # two pairs a chunk: 2 + 1
    g = torch.Generator().manual_seed(5)
    d = 2
    a = torch.randn(3, 3, 5, 6, generator=g, dtype=torch.float64)
    b = torch.nn.functional.pad(torch.randn(3, 3, 5, 6, generator=g, dtype=torch.float64), (d,) * 4)
    upstream = torch.randn(3, num_displacements(d), 5, 6, generator=g, dtype=torch.float64)
    results = []
    for fn in (lambda x, y: cv._ShiftedDots.apply(x, y, d), lambda x, y: cv._shifted_dots_plain(x, y, d)):
        x, y = a.clone().requires_grad_(), b.clone().requires_grad_()
        out = fn(x, y)
        (out * upstream).sum().backward()
        results.append((out.detach(), x.grad, y.grad))
    for fast, plain in zip(*results):
        torch.testing.assert_close(fast, plain, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x, y: cv._ShiftedDots.apply(x, y, d),
                                    (a[:, :, :3, :4].clone().requires_grad_(), b[:, :, :7, :8].clone().requires_grad_()))


@pytest.mark.parametrize("mask_outside", [True, False])
def test_fused_cost_volume_soft_argmax_matches_the_plain_composition(monkeypatch, mask_outside):
    """The training path (:class:`_CostVolumeSoftArgmax`: volume and soft-argmax a chunk of pairs at a
    time, its own backward) gives the numbers and gradients of :func:`cosine_cost_volume` followed by
    :func:`soft_argmax_displacement` (plain ops for the soft-argmax), chunked or not."""
    import repro.ops.cost_volume as cv

    g = torch.Generator().manual_seed(7)
    f0, f1 = (torch.randn(5, 3, 6, 7, generator=g, dtype=torch.float64) for _ in range(2))
    upstream = torch.randn(5, 2, 6, 7, generator=g, dtype=torch.float64)
    results = []
    for chunk, fn in ((cv.CHUNK_ELEMENTS, cv.cost_volume_displacement),
                      (2 * 3 * 6 * 7, cv.cost_volume_displacement),  # two pairs a chunk: 2 + 2 + 1
                      (cv.CHUNK_ELEMENTS, lambda a, b, d, t, **kw: cv.soft_argmax_displacement(
                          cv.cosine_cost_volume(a, b, d), d, t, **kw))):
        monkeypatch.setattr(cv, "CHUNK_ELEMENTS", chunk)
        a, b = f0.clone().requires_grad_(), f1.clone().requires_grad_()
        out = fn(a, b, 2, 0.1, mask_outside=mask_outside)
        (out * upstream).sum().backward()
        results.append((out.detach(), a.grad, b.grad))
    for fused, chunked, plain in zip(*results):
        torch.testing.assert_close(fused, plain, rtol=0, atol=1e-12)
        torch.testing.assert_close(chunked, plain, rtol=0, atol=1e-12)


def test_fused_path_leaves_a_learnt_temperature_to_autograd():
    """A temperature that needs a gradient (``learn_temperature``) takes the plain ops: τ gets its
    gradient, equal to the reference's."""
    f0, f1 = _pair(n=2, c=4, h=5, w=6)
    grads = []
    for fn in (cost_volume_displacement,
               lambda a, b, d, t: soft_argmax_displacement_reference(cosine_cost_volume_reference(a, b, d), d, t)):
        log_tau = torch.tensor(math.log(0.2), dtype=torch.float64, requires_grad=True)
        fn(f0, f1, 2, log_tau.exp()).square().sum().backward()
        grads.append(log_tau.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
def test_frames_api_matches_the_per_pair_call(channels_last):
    """:func:`cost_volume_displacement_frames` (each frame normalised once, then the fused path)
    gives :func:`cost_volume_displacement`'s numbers and gradients on the consecutive pairs of
    each snippet, for a channels-last input too (the trainer's layout)."""
    from repro.ops.cost_volume import cost_volume_displacement_frames

    g = torch.Generator().manual_seed(11)
    f = torch.randn(3 * 4, 5, 6, 7, generator=g, dtype=torch.float64)  # 3 snippets of 4 frames
    if channels_last:
        f = f.contiguous(memory_format=torch.channels_last)
    upstream = torch.randn(3 * 3, 2, 6, 7, generator=g, dtype=torch.float64)
    results = []
    for fn in (lambda x: cost_volume_displacement_frames(x, 4, 2, 0.1),
               lambda x: soft_argmax_displacement(cosine_cost_volume(
                   x.reshape(3, 4, 5, 6, 7)[:, :-1].flatten(0, 1),  # frames t
                   x.reshape(3, 4, 5, 6, 7)[:, 1:].flatten(0, 1), 2), 2, 0.1)):  # frames t+1
        x = f.detach().clone(memory_format=torch.preserve_format).requires_grad_()
        out = fn(x)
        (out * upstream).sum().backward()
        results.append((out.detach(), x.grad))
    for fast, plain in zip(*results):
        torch.testing.assert_close(fast, plain, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="L=5"):
        cost_volume_displacement_frames(f, 5, 2, 0.1)
