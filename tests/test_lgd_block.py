"""LGD block (Qiu et al. CVPR'19 Eq. 1-3, 8, 9): fast layer vs loop reference, zero-initialised
global->local projection == the wrapped residual unit exactly, per-video global vector over
segments (LGD-2D), parameter counts (3C²/8 per block; ResNet-50 paper form 7,544,832), variants."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from timm.models.resnet import Bottleneck

from repro.layers.diffusion import (
    LGDDiffusion,
    LGDResidual,
    global_pool,
    lgd_diffusion_reference,
    lgd_extra_params,
    lgd_network_extra_params,
    reduced_channels,
)

RESNET50 = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3
RESNET101 = [256] * 3 + [512] * 4 + [1024] * 23 + [2048] * 3


class _Unit3d(nn.Module):
    """A minimal 3-D residual unit ending in ``act3`` (stands in for a P3D bottleneck)."""

    def __init__(self, c_in: int, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(c_in, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm3d(c)
        self.shortcut = nn.Identity() if c_in == c else nn.Conv3d(c_in, c, 1, bias=False)
        self.act3 = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act3(self.bn(self.conv(x)) + self.shortcut(x))


def _bottleneck(c_in: int, planes: int, stride: int = 1) -> Bottleneck:
    down = None
    if stride != 1 or c_in != planes * 4:
        down = nn.Sequential(nn.Conv2d(c_in, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
    return Bottleneck(c_in, planes, stride=stride, downsample=down)


def _randomise_bn(module: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.weight.data.copy_(1 + 0.2 * torch.randn(m.num_features, generator=gen))
            m.bias.data.copy_(0.2 * torch.randn(m.num_features, generator=gen))
    return module.eval()


# ---------------------------------------------------------------------------------------------
# fast == reference
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["full", "v1", "v2"])
@pytest.mark.parametrize("shape, segments, c_in", [((6, 32, 5, 4), 3, 32), ((2, 32, 3, 4, 5), 1, 16)])
def test_layer_matches_reference_values_and_gradients(variant, shape, segments, c_in):
    torch.manual_seed(0)
    layer = LGDDiffusion(32, c_in, variant=variant).double()
    local = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    g = torch.randn(shape[0] // segments, c_in, dtype=torch.float64, requires_grad=True)
    x, g_new = layer(local, g, segments)
    dense = [layer.w_xg.matrix()] + ([None, None] if variant == "v1" else [layer.w_gx.matrix(), layer.w_gg.matrix()])
    x_ref, g_ref = lgd_diffusion_reference(local, g, *dense, segments=segments, variant=variant)
    assert x.shape == local.shape and g_new.shape == (g.shape[0], 32)
    torch.testing.assert_close(x, x_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(g_new, g_ref, rtol=0, atol=1e-12)
    wx, wg = torch.randn_like(x), torch.randn_like(g_new)
    grads = torch.autograd.grad((x * wx).sum() + (g_new * wg).sum(), (local, g))
    grads_ref = torch.autograd.grad((x_ref * wx).sum() + (g_ref * wg).sum(), (local, g))
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_global_update_reads_the_updated_local_map():
    # Eq. 3: g_l = ReLU(W^{g,x} P(x_l) + W^{g,g} g_{l-1}) with x_l the *output* of Eq. 2 (pitfall 11).
    torch.manual_seed(1)
    layer = LGDDiffusion(32, 16)
    local, g = torch.randn(2, 32, 4, 4), torch.randn(2, 16)
    x, g_new = layer(local, g)
    torch.testing.assert_close(g_new, torch.relu(layer.w_gx(global_pool(x)) + layer.w_gg(g)))
    assert not torch.allclose(g_new, torch.relu(layer.w_gx(global_pool(local)) + layer.w_gg(g)))


# ---------------------------------------------------------------------------------------------
# zero-initialised W^{x,g}: the block adds nothing to the local path
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["2d_bottleneck", "3d_unit"])
def test_zero_g2l_local_output_equals_wrapped_residual_exactly(kind):
    torch.manual_seed(0)
    if kind == "2d_bottleneck":
        unit, x, segments, c_in = _randomise_bn(_bottleneck(32, 16, stride=2)), torch.randn(6, 32, 8, 8), 3, 32
    else:
        unit, x, segments, c_in = _randomise_bn(_Unit3d(8, 64)), torch.randn(2, 8, 3, 5, 5), 1, 8
    baseline = copy.deepcopy(unit)
    block = LGDResidual(unit, 64, c_in, zero_init_g2l=True)
    g = torch.randn(x.shape[0] // segments, c_in) * 10
    with torch.no_grad():
        x_new, g_new = block(x, g, segments)
        expected = baseline(x)
    assert torch.equal(x_new, expected)
    assert g_new.shape == (g.shape[0], 64) and g_new.abs().sum() > 0
    # Without the zero init the same block does change the local path.
    block.diffusion.zero_init_g2l = False
    block.diffusion.reset_parameters()
    with torch.no_grad():
        assert not torch.allclose(block(x, g, segments)[0], expected)


def test_zero_init_network_equals_baseline_and_projection_still_learns():
    # A small LGD network (stem -> 3 units across a stage transition), g_1 = P(stem output).
    torch.manual_seed(0)
    stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
    units = [_randomise_bn(_bottleneck(c_in, planes, stride), seed)
             for seed, (c_in, planes, stride) in enumerate([(16, 8, 1), (32, 8, 1), (32, 16, 2)])]
    baseline = nn.Sequential(stem, *copy.deepcopy(units))
    blocks = [LGDResidual(u, 4 * p, c_in, zero_init_g2l=True) for u, p, c_in in zip(units, (8, 8, 16), (16, 32, 32))]
    video = torch.randn(6, 3, 8, 8)  # 2 videos x 3 segments
    x = stem(video)
    g = global_pool(x, segments=3)
    for block in blocks:
        x, g = block(x, g, segments=3)
    assert torch.equal(x, baseline(video))
    (x.sum() + g.sum()).backward()
    for block in blocks:
        assert block.diffusion.w_xg.expand.weight.grad.abs().sum() > 0  # W_1 = 0 still receives gradient


# ---------------------------------------------------------------------------------------------
# LGD-2D: one global vector per video
# ---------------------------------------------------------------------------------------------
def test_global_vector_pools_over_all_segments_of_a_video():
    torch.manual_seed(0)
    layer = LGDDiffusion(32, 32)
    n, s = 2, 3
    local, g = torch.randn(n * s, 32, 4, 4), torch.randn(n, 32)
    x, g_new = layer(local, g, segments=s)
    per_video = x.reshape(n, s, 32, 16).mean(dim=(1, 3))  # P over all S frames and positions
    torch.testing.assert_close(g_new, torch.relu(layer.w_gx(per_video) + layer.w_gg(g)))
    per_frame = torch.relu(layer.w_gx(global_pool(x)) + layer.w_gg(g.repeat_interleave(s, 0)))  # (N·S, C): wrong
    assert not torch.allclose(g_new, per_frame.reshape(n, s, 32).mean(1), atol=1e-4)
    # Changing the last frame of video 0 changes video 0's global vector only.
    changed = local.clone()
    changed[s - 1] += 1.0
    x2, g2 = layer(changed, g, segments=s)
    assert not torch.allclose(g2[0], g_new[0]) and torch.equal(g2[1], g_new[1])
    # Global -> local: video 0's vector reaches all 3 of its frames and none of video 1's.
    g3 = g.clone()
    g3[0] += 1.0
    x3, _ = layer(local, g3, segments=s)
    assert all(not torch.equal(x3[i], x[i]) for i in range(s))
    assert torch.equal(x3[s:], x[s:])


# ---------------------------------------------------------------------------------------------
# parameter counts
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["full", "v1", "v2"])
@pytest.mark.parametrize("c, c_in", [(256, None), (256, 64), (2048, 1024), (48, 32), (8, 16)])
def test_added_parameters_equal_analytic_count(variant, c, c_in):
    layer = LGDDiffusion(c, c_in, variant=variant)
    assert sum(p.numel() for p in layer.parameters()) == lgd_extra_params(c, c_in, variant=variant)
    assert all(m.bias is None for m in layer.modules() if isinstance(m, nn.Linear))


def test_paper_form_is_three_eighths_c_squared():
    for c in (256, 512, 1024, 2048):
        assert reduced_channels(c) == c // 16
        assert 8 * lgd_extra_params(c) == 3 * c * c  # 3C² -> 3C²/8 (§3.1)
        assert 8 * lgd_extra_params(c, variant="v1") == c * c  # v1 keeps only W^{x,g}
        assert lgd_extra_params(c, variant="v2") == lgd_extra_params(c)


def test_resnet_totals():
    # Paper form (C_in = C everywhere) on ResNet-50's 16 units, and via the modules themselves.
    assert lgd_network_extra_params(RESNET50) == 7_544_832
    assert sum(sum(p.numel() for p in LGDDiffusion(c).parameters()) for c in RESNET50) == 7_544_832
    assert lgd_network_extra_params(RESNET101) == 14_229_504
    # Real stage transitions (g_{l-1} has C_{l-1} channels, g_1 from the 64-channel stem) change
    # W^{x,g} and W^{g,g} of the 4 stage-first blocks by (C_{l-1} - C)·Ĉ each: 2·175,104 fewer.
    assert lgd_network_extra_params(RESNET50, stem_channels=64) == 7_544_832 - 2 * 175_104 == 7_194_624
    assert lgd_network_extra_params(RESNET101, stem_channels=64) == 14_229_504 - 2 * 175_104
    assert lgd_network_extra_params(RESNET50, variant="v1") == 7_544_832 // 3
    # The authors' later code has the same weights with real dims (2·C_in·Ĉ + 4·C·Ĉ per block) plus
    # 3 biases of Ĉ and 3 of C per block: brief B.2's 7,242,768.
    assert 7_194_624 + 3 * sum(c // 16 + c for c in RESNET50) == 7_242_768


def test_wrapping_timm_resnet50_adds_exactly_the_real_dims_count():
    import timm

    net = timm.create_model("resnet50", pretrained=False, num_classes=10)
    before = sum(p.numel() for p in net.parameters())
    added, c_in = 0, 64
    for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
        for i, unit in enumerate(stage):
            c = unit.conv3.out_channels
            stage[i] = LGDResidual(unit, c, c_in)
            added += sum(p.numel() for p in stage[i].diffusion.parameters())
            c_in = c
    assert sum(p.numel() for p in net.parameters()) - before == added == 7_194_624


# ---------------------------------------------------------------------------------------------
# variants, errors
# ---------------------------------------------------------------------------------------------
def test_variants_run_and_differ_from_full():
    torch.manual_seed(0)
    local, g = torch.randn(2, 32, 3, 4, 4), torch.randn(2, 32)
    full = LGDDiffusion(32)
    out = {"full": full(local, g)}
    for variant in ("v1", "v2"):
        layer = LGDDiffusion(32, variant=variant)
        layer.w_xg.load_state_dict(full.w_xg.state_dict())  # the same W^{x,g} in every variant
        out[variant] = layer(local, g)
    x1, g1 = out["v1"]
    torch.testing.assert_close(x1, out["full"][0])  # v1 keeps Eq. 2 ...
    torch.testing.assert_close(g1, global_pool(x1))  # ... and its global path is P(x_l) (Eq. 8)
    assert not torch.allclose(g1, out["full"][1])
    x2, _ = out["v2"]
    assert not torch.allclose(x2, out["full"][0])  # gating (Eq. 9) instead of adding
    assert not hasattr(LGDDiffusion(32, variant="v1"), "w_gx")


def test_bad_inputs_are_one_line_errors():
    layer = LGDDiffusion(32, 16)
    with pytest.raises(ValueError, match="expected one of"):
        LGDDiffusion(32, variant="v3")
    with pytest.raises(ValueError, match=r"global vector expected \(N, 16\)"):
        layer(torch.randn(2, 32, 4, 4), torch.randn(2, 32))
    with pytest.raises(ValueError, match="local map expected"):
        layer(torch.randn(2, 16, 4, 4), torch.randn(2, 16))
    with pytest.raises(ValueError, match="N·segments"):
        layer(torch.randn(4, 32, 4, 4), torch.randn(2, 16), segments=3)
    with pytest.raises(ValueError, match="final nn.ReLU"):
        LGDResidual(nn.Conv2d(3, 3, 1), 3)


@pytest.mark.parametrize("variant", ["full", "v1", "v2"])
def test_block_macs_one_matvec_per_projection_per_video(variant):
    from repro.profile import count_macs

    class _Call(nn.Module):  # count_macs passes positional tensors; fix segments = 3
        def __init__(self, layer):
            super().__init__()
            self.layer = layer

        def forward(self, local, g):
            return self.layer(local, g, 3)

    layer = LGDDiffusion(64, 32, variant=variant)
    report = count_macs(_Call(layer), (torch.randn(6, 64, 5, 5), torch.randn(2, 32)), warn_uncounted=False)
    assert report.uncounted == {}
    assert report.by_operator["linear"] == 2 * lgd_extra_params(64, 32, variant=variant)  # 2 videos
    assert report.by_operator["mean"] == 6 * 64 * 25  # P over all frames, once per block
