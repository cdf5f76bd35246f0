"""Tensor Sketch φ (LGD Eq. 4-5, Gao et al. CVPR'16): fast path vs explicit reference, buffers and
seeds, unbiasedness of ⟨φ(a), φ(b)⟩ for (aᵀb)², variance ~ 1/d."""
from __future__ import annotations

import pytest
import torch

from repro.ops.tensor_sketch import (
    TensorSketch,
    complex_mul_real,
    count_sketch,
    count_sketch_matrix,
    count_sketch_scatter,
    draw_sketch_hashes,
    real_spectra,
    tensor_sketch,
    tensor_sketch_reference,
)

SKETCHES = 2000  # independent sketches (seeds 0..1999) per estimate


def _pair(c=16, seed=123):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(c, generator=g, dtype=torch.float64)
    b = a + 0.5 * torch.randn(c, generator=g, dtype=torch.float64)  # correlated: (aᵀb)² well above 0
    return a, b


def _estimates(a, b, d, shared_pair=False):
    """⟨φ(a), φ(b)⟩ for SKETCHES independent sketches (seeds 0..SKETCHES-1)."""
    ab = torch.stack([a, b])  # (2, C)
    out = []
    for seed in range(SKETCHES):
        if shared_pair:
            h, s, _, _ = draw_sketch_hashes(a.numel(), d, seed)
            pa, pb = tensor_sketch(ab, h, s, h, s, d)
        else:
            pa, pb = TensorSketch(a.numel(), d, seed=seed).double()(ab)
        out.append(pa @ pb)
    return torch.stack(out)  # (SKETCHES,)


# ---------------------------------------------------------------------------------------------
# fast == reference
# ---------------------------------------------------------------------------------------------
def test_count_sketch_matches_dense_matrix():
    h1, s1, _, _ = draw_sketch_hashes(20, 8, seed=3)
    x = torch.randn(4, 5, 20, dtype=torch.float64)
    dense = x @ count_sketch_matrix(h1, s1.double(), 8).T
    torch.testing.assert_close(count_sketch(x, h1, s1, 8), dense, rtol=0, atol=1e-12)
    m = count_sketch_matrix(h1, s1, 8)
    assert m.shape == (8, 20) and (m.abs().sum(0) == 1).all()  # one ±1 per input channel


@pytest.mark.parametrize("c, d", [(7, 16), (32, 8), (48, 64), (10, 15)])
def test_fast_matches_reference_values_and_gradients(c, d):
    ts = TensorSketch(c, d, seed=c + d).double()
    x = torch.randn(3, 4, c, dtype=torch.float64, requires_grad=True)
    fast = ts(x)
    ref = tensor_sketch_reference(x, ts.h1, ts.s1, ts.h2, ts.s2, d)
    assert fast.shape == (3, 4, d) and fast.dtype == torch.float64
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-10)
    w = torch.randn_like(fast)
    (g_fast,) = torch.autograd.grad((fast * w).sum(), x)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), x)
    torch.testing.assert_close(g_fast, g_ref, rtol=0, atol=1e-10)


def test_reference_is_the_sketch_of_the_outer_product():
    # φ(x) = count sketch of x⊗x with hash (h1(i) + h2(j)) mod d and sign s1(i) s2(j).
    c, d = 6, 5
    h1, s1, h2, s2 = draw_sketch_hashes(c, d, seed=9)
    x = torch.randn(c, dtype=torch.float64)
    expected = torch.zeros(d, dtype=torch.float64)
    for i in range(c):
        for j in range(c):
            expected[(h1[i] + h2[j]) % d] += s1[i] * s2[j] * x[i] * x[j]
    torch.testing.assert_close(tensor_sketch_reference(x, h1, s1, h2, s2, d), expected, rtol=0, atol=1e-12)


def test_spectrum_mean_then_irfft_is_mean_of_sketches():
    ts = TensorSketch(12, 32, seed=1).double()
    x = torch.randn(2, 9, 12, dtype=torch.float64)
    via_spectrum = torch.fft.irfft(ts.spectrum(x).mean(1), n=32, dim=-1)
    torch.testing.assert_close(via_spectrum, ts(x).mean(1), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# buffers, seeds, state dict
# ---------------------------------------------------------------------------------------------
def test_buffers_fixed_by_seed_and_round_trip_state_dict():
    before = torch.random.get_rng_state()
    ts = TensorSketch(64, 128, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)  # no global RNG touched
    assert list(ts.parameters()) == []
    assert set(ts.state_dict()) == {"h1", "s1", "h2", "s2"}
    assert ts.h1.dtype == torch.int64 and 0 <= int(ts.h1.min()) and int(ts.h1.max()) < 128
    assert set(ts.s1.unique().tolist()) == {-1.0, 1.0}
    assert not torch.equal(ts.h1, ts.h2)  # two independent pairs
    again = TensorSketch(64, 128, seed=5)
    for name in ("h1", "s1", "h2", "s2"):
        assert torch.equal(getattr(ts, name), getattr(again, name))
    assert not torch.equal(ts.h1, TensorSketch(64, 128, seed=6).h1)
    other = TensorSketch(64, 128, seed=99)
    other.load_state_dict(ts.state_dict())
    x = torch.randn(3, 64)
    torch.testing.assert_close(other(x), ts(x), rtol=0, atol=0)


def test_bad_input_is_one_line_error():
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 8\)"):
        TensorSketch(8, 16)(torch.randn(2, 9))
    with pytest.raises(ValueError, match="must be >= 1"):
        TensorSketch(0, 16)


# ---------------------------------------------------------------------------------------------
# E⟨φ(a), φ(b)⟩ = (aᵀb)²
# ---------------------------------------------------------------------------------------------
def test_inner_product_is_unbiased_for_squared_dot_product():
    a, b = _pair()
    truth = float(a @ b) ** 2
    est = _estimates(a, b, d=32)
    mean, se = float(est.mean()), float(est.std()) / SKETCHES**0.5
    z = (mean - truth) / se
    assert abs(z) < 3.0, (truth, mean, se, z)
    assert se < 0.02 * truth  # the test has power: a 6 % bias would fail it


def test_one_shared_hash_pair_is_biased():
    # Pitfall: using (h1, s1) twice makes s(i)s(j) non-orthogonal over (i, j); the test above
    # must be able to see that.
    a, b = _pair()
    truth = float(a @ b) ** 2
    est = _estimates(a, b, d=32, shared_pair=True)
    z = (float(est.mean()) - truth) / (float(est.std()) / SKETCHES**0.5)
    assert z > 10.0


def test_variance_shrinks_like_one_over_d():
    a, b = _pair()
    var = {d: float(_estimates(a, b, d).var()) for d in (8, 32, 128)}
    assert var[8] > var[32] > var[128]
    assert 2.5 < var[8] / var[32] < 6.5 and 2.5 < var[32] / var[128] < 6.5, var


# ---------------------------------------------------------------------------------------------
# real-arithmetic formulation (ONNX export)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("c, d", [(7, 16), (10, 15), (48, 64)])
def test_real_spectra_equal_the_fast_path(c, d):
    ts = TensorSketch(c, d, seed=c + d).double()
    x = torch.randn(3, 4, c, dtype=torch.float64)
    fast_spectrum, fast = ts.spectrum(x), ts(x)
    with real_spectra(ts) as switched:
        assert switched == 1 and ts.spectra == "real"
        spectrum = ts.spectrum(x)
        assert spectrum.shape == (3, 4, d // 2 + 1, 2) and not spectrum.is_complex()
        torch.testing.assert_close(torch.view_as_complex(spectrum), fast_spectrum, rtol=0, atol=1e-10)
        torch.testing.assert_close(ts.inverse(spectrum.mean(1)), fast.mean(1), rtol=0, atol=1e-10)
        torch.testing.assert_close(ts(x), fast, rtol=0, atol=1e-10)
    assert ts.spectra == "complex"  # restored: training keeps the fast path


def test_real_parts_match_their_complex_definitions():
    a, b = torch.randn(5, 9, dtype=torch.complex128), torch.randn(5, 9, dtype=torch.complex128)
    product = complex_mul_real(torch.view_as_real(a), torch.view_as_real(b))
    torch.testing.assert_close(torch.view_as_complex(product), a * b, rtol=0, atol=1e-12)
    h, s, _, _ = draw_sketch_hashes(20, 8, seed=3)
    x = torch.randn(4, 5, 20, dtype=torch.float64)
    torch.testing.assert_close(count_sketch_scatter(x, h, s, 8), count_sketch(x, h, s, 8), rtol=0, atol=1e-12)


def test_real_spectra_have_no_backward_and_bad_choice_is_one_line():
    ts = TensorSketch(6, 8, spectra="real")
    with pytest.raises(NotImplementedError, match="spectra='complex'"):
        ts(torch.randn(2, 6, requires_grad=True)).sum().backward()
    with pytest.raises(ValueError, match="spectra expected 'complex' or 'real', got 'fft'"):
        TensorSketch(6, 8, spectra="fft")


@pytest.mark.parametrize("d", [64, 128, 100])
def test_onnx_export_matches_reference(tmp_path, d):
    """ONNX has no complex dtype: the exported sketch is real arithmetic and two ONNX DFT nodes
    per φ, and ONNX Runtime agrees with the explicit-matrix reference (any batch size)."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from repro.deploy.onnx import export_onnx, ort_session

    ts = TensorSketch(32, d, seed=d).eval()
    path = export_onnx(ts, torch.randn(2, 5, 32), tmp_path / "ts.onnx", input_names=["x"])
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("DFT") == 3 and "ScatterElements" in ops  # rfft x2, irfft; count sketch
    assert ts.spectra == "complex"
    x = torch.randn(3, 5, 32)
    (got,) = ort_session(path, threads=1).run(None, {"x": x.numpy()})
    ref = tensor_sketch_reference(x.double(), ts.h1, ts.s1, ts.h2, ts.s2, d).numpy()
    assert got.shape == (3, 5, d) and abs(got - ref).max() <= 1e-4
