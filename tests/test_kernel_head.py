"""LGD combination classifier (Eq. 4-5, 7): ϕ = [mean_i φ(x^i), φ(g)] -> fc; shapes, segments,
gradients, no trainable sketch, MACs against the analytic formula."""
from __future__ import annotations

import math

import pytest
import torch

from repro.layers.kernel_head import DEFAULT_SKETCH_DIM, CombinationClassifier, signed_sqrt_l2
from repro.profile import count_macs, count_params


def _inputs(n=2, c=8, spatial=(3, 4, 5), seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, *spatial, generator=g, dtype=dtype), torch.randn(n, c, generator=g, dtype=dtype)


def test_defaults_and_parameter_count():
    head = CombinationClassifier(2048, 600)
    assert head.sketch_dim == DEFAULT_SKETCH_DIM == 8192 and not head.signed_sqrt
    # Only fc is trainable: 2d·K + K = 16384·600 + 600 (brief B.2: 9,831,000).
    assert count_params(head) == 9_831_000
    assert [name for name, _ in head.named_parameters()] == ["fc.weight", "fc.bias"]


@pytest.mark.parametrize("spatial, segments", [((3, 4, 5), 1), ((4, 5), 1), ((4, 5), 3)])
def test_features_equal_mean_of_sketches_over_all_positions_of_a_video(spatial, segments):
    head = CombinationClassifier(8, 5, sketch_dim=32, seed=2).double()
    x, g = _inputs(n=2 * segments, spatial=spatial)
    g = g[:2]
    feats = head.features(x, g, segments=segments)
    assert feats.shape == (2, 64)
    for v in range(2):
        frames = x[v * segments:(v + 1) * segments]  # (S, C, *sp): all frames of video v
        positions = frames.reshape(segments, 8, -1).permute(0, 2, 1).reshape(-1, 8)  # (S·P, C)
        expected = torch.cat([head.sketch(positions).mean(0), head.sketch(g[v])])
        torch.testing.assert_close(feats[v], expected, rtol=0, atol=1e-10)
    logits = head(x, g, segments=segments)
    torch.testing.assert_close(logits, head.fc(feats), rtol=0, atol=0)
    assert logits.shape == (2, 5)


def test_inner_product_of_features_is_eq4_sketched_kernel():
    # ⟨ϕ, ϕ'⟩ = (1/N²) Σ_i Σ_j ⟨φ(x^i), φ(x'^j)⟩ + ⟨φ(g), φ(g')⟩  (last line of Eq. 4)
    head = CombinationClassifier(8, 3, sketch_dim=16, seed=4).double()
    x, g = _inputs(n=2, spatial=(2, 3))
    f = head.features(x, g)
    phi = head.sketch(x.flatten(2).transpose(1, 2))  # (2, N, d)
    local = (phi[0] @ phi[1].T).mean()
    torch.testing.assert_close(f[0] @ f[1], local + head.sketch(g[0]) @ head.sketch(g[1]), rtol=1e-12, atol=1e-10)


def test_gradients_reach_fc_and_both_inputs_and_sketch_is_fixed():
    head = CombinationClassifier(8, 4, sketch_dim=32)
    x, g = _inputs(dtype=torch.float32)
    x.requires_grad_(True)
    g.requires_grad_(True)
    head(x, g).square().sum().backward()
    assert head.fc.weight.grad.abs().sum() > 0 and head.fc.bias.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0 and g.grad.abs().sum() > 0
    assert all(not b.requires_grad for b in head.sketch.buffers())
    assert list(head.sketch.parameters()) == []


def test_signed_sqrt_option_normalises_each_half():
    head = CombinationClassifier(8, 4, sketch_dim=32, signed_sqrt=True).double()
    x, g = _inputs()
    f = head.features(x, g)
    torch.testing.assert_close(f[:, :32].norm(dim=1), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(f[:, 32:].norm(dim=1), torch.ones(2, dtype=torch.float64))
    y = torch.tensor([-4.0, 0.0, 9.0], dtype=torch.float64)
    torch.testing.assert_close(signed_sqrt_l2(y), torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64) / 13**0.5)


def test_bad_inputs_are_one_line_errors():
    head = CombinationClassifier(8, 4, sketch_dim=16)
    x, g = _inputs(dtype=torch.float32)
    with pytest.raises(ValueError, match="x_global expected"):
        head(x, g[:, :4])
    with pytest.raises(ValueError, match="x_local expected"):
        head(x[:, :4], g)
    with pytest.raises(ValueError, match="N·segments"):
        head(x, g, segments=3)


def test_macs_match_analytic_formula():
    n, c, k, d, spatial = 2, 64, 10, 256, (4, 7, 7)
    p = math.prod(spatial)
    head = CombinationClassifier(c, k, sketch_dim=d)
    report = count_macs(head, (torch.randn(n, c, *spatial), torch.randn(n, c)), warn_uncounted=False)
    transform = 1.25 * d * math.log2(d)
    assert report.by_operator["fft_rfft"] == round(n * 2 * (p + 1) * transform)
    assert report.by_operator["fft_irfft"] == round(n * 2 * transform)
    assert report.by_operator["linear"] == n * 2 * d * k
    bins = d // 2 + 1
    assert report.by_operator["mul"] == n * (2 * (p + 1) * c + (p + 1) * bins)
    assert report.by_operator["mean"] == n * p * bins
    # The count-sketch scatter: one addition per sketched element, n·2(P+1)·C in all.
    assert report.by_operator["index_add"] == n * 2 * (p + 1) * c
    assert set(report.by_operator) == {"fft_rfft", "fft_irfft", "linear", "mul", "mean", "index_add"}
    assert report.uncounted == {}


def test_real_spectra_features_equal_the_fast_path():
    """The export formulation (real spectra, ONNX DFT) gives the same ϕ; the head is restored."""
    from repro.ops.tensor_sketch import real_spectra

    head = CombinationClassifier(8, 5, sketch_dim=30, seed=4).double()
    x, _ = _inputs(n=6, spatial=(4, 5))
    _, g = _inputs(n=2, spatial=(4, 5), seed=1)
    fast = head.features(x, g, segments=3)
    with real_spectra(head) as switched:
        assert switched == 1
        torch.testing.assert_close(head.features(x, g, segments=3), fast, rtol=0, atol=1e-10)
    assert head.sketch.spectra == "complex"


def test_fresh_classifier_rescales_its_weights_once_so_initial_logits_are_order_one():
    """ϕ is second order (‖ϕ‖ ~ ‖x‖²): features 100x larger make ϕ 1e4x larger, yet the first
    forward of a fresh W_c gives logits (bias excluded) of RMS 1 -- by one scalar on W_c, once."""
    head = CombinationClassifier(8, 5, sketch_dim=32, seed=1).double()
    x, g = _inputs()
    x, g = 100 * x, 100 * g
    before = head.fc.weight.detach().clone()
    assert head.scale_pending
    logits = head(x, g)
    bias_free = logits - head.fc.bias
    assert bias_free.square().mean().sqrt().item() == pytest.approx(1.0, rel=1e-9)
    ratio = head.fc.weight.detach() / before
    torch.testing.assert_close(ratio, torch.full_like(ratio, ratio[0, 0].item()))  # one scalar
    assert not head.scale_pending
    w = head.fc.weight.detach().clone()
    head(2 * x, g)  # later batches never rescale
    torch.testing.assert_close(head.fc.weight.detach(), w, rtol=0, atol=0)
    untouched = CombinationClassifier(8, 5, sketch_dim=32, seed=1, init_logit_rms=None).double()
    w = untouched.fc.weight.detach().clone()
    untouched(x, g)
    torch.testing.assert_close(untouched.fc.weight.detach(), w, rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_loaded_or_traced_classifier_is_not_rescaled():
    trained = CombinationClassifier(8, 5, sketch_dim=32).double()
    x, g = _inputs()
    loaded = CombinationClassifier(8, 5, sketch_dim=32).double()
    loaded.load_state_dict(trained.state_dict())  # a stage-2 checkpoint: W_c keeps its scale
    assert not loaded.scale_pending
    torch.testing.assert_close(loaded(x, g), trained.fc(trained.features(x, g)), rtol=0, atol=0)
    fresh = CombinationClassifier(8, 5, sketch_dim=32).double()
    w = fresh.fc.weight.detach().clone()
    with torch.no_grad():
        torch.jit.trace(fresh, (x, g), check_trace=False)  # a trace never records the rescaling
    assert fresh.scale_pending
    torch.testing.assert_close(fresh.fc.weight.detach(), w, rtol=0, atol=0)
