"""LGD-2D / LGD-3D networks (repro.models.lgd): parameter overhead, exact reduction to the baseline
when W^{x,g} = 0, the per-video global vector of LGD-2D, Eq. 6 through the model contract, stage 2
initialised from stage 1, the "Long" pool1 stride."""
from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

from repro.engine.checkpoint import load_init_weights
from repro.layers.diffusion import lgd_network_extra_params
from repro.models.lgd import two_head_correction
from repro.profile import count_params
from repro.registry import create_model

BASELINE = {"lgd3d_resnet50": "p3d_resnet50", "lgd2d_resnet50": "c2d_resnet50",
            "lgd3d_resnet101": "p3d_resnet101", "lgd2d_resnet101": "c2d_resnet101"}
SMALL = {"lgd3d_resnet50": (2, 3, 4, 32, 32), "lgd2d_resnet50": (2, 3, 3, 32, 32)}


def _pair(name: str, variant: str = "full", **kwargs):
    torch.manual_seed(0)
    base = create_model(BASELINE[name], **kwargs)
    torch.manual_seed(1)
    lgd = create_model(name, variant=variant, **kwargs)
    return base, lgd


@pytest.mark.parametrize("name,blocks", [("lgd3d_resnet50", 7_194_624), ("lgd2d_resnet50", 7_194_624),
                                         ("lgd3d_resnet101", 13_879_296)])
def test_added_parameters_are_the_low_rank_weights_plus_the_global_head(name, blocks):
    base, lgd = _pair(name)
    channels = lgd.lgd_channels()
    # paper form (every W square, C/16 rank): 3C^2/8 per block
    assert sum(3 * c * c // 8 for c in channels) == (7_544_832 if len(channels) == 16 else 14_229_504)
    # ours: W^{x,g} and W^{g,g} read g_{l-1} with the previous unit's (the 64-ch stem's) channels
    assert lgd_network_extra_params(channels, stem_channels=64) == blocks
    global_head = 2048 * 400 + 400
    assert count_params(lgd) - count_params(base) == blocks + global_head
    assert set(base.state_dict()) <= set(lgd.state_dict())  # every baseline key, same name


def test_v1_keeps_only_the_global_to_local_projection():
    base, lgd = _pair("lgd3d_resnet50", variant="v1")
    assert count_params(lgd) - count_params(base) == 2_339_840 + 2048 * 400 + 400
    assert all(unit.lgd.variant == "v1" and not hasattr(unit.lgd, "w_gx") for unit in lgd.lgd_units())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_zero_global_to_local_projection_gives_the_baseline_exactly(name):
    base, lgd = _pair(name, num_classes=5, width=0.25, dropout=0.3)
    lgd = create_model(name, num_classes=5, width=0.25, dropout=0.3, zero_init_g2l=True)
    missing, unexpected = lgd.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(".lgd." in k or k.startswith("fc_g.") for k in missing)
    x = torch.randn(SMALL[name])
    base.eval(), lgd.eval()
    with torch.no_grad():
        torch.testing.assert_close(lgd(x), base(x), rtol=0, atol=0)
        # the global path is alive all the same: g_L is not the pooled local map
        _, g, _ = lgd.forward_lgd(x)
        assert g.shape == (2, lgd.num_features) and g.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(SMALL))
def test_imagenet_init_zeroes_the_global_residual_and_matches_the_baseline(name, tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "resnet50.pt"
    torch.save(timm.create_model("resnet50", pretrained=False).state_dict(), ckpt)
    base = create_model(BASELINE[name], num_classes=1000, pretrained_file=str(ckpt)).eval()
    lgd = create_model(name, num_classes=1000, pretrained_file=str(ckpt)).eval()
    assert all(unit.lgd.w_xg.expand.weight.abs().sum() == 0 for unit in lgd.lgd_units())
    assert all(unit.lgd.w_gx.expand.weight.abs().sum() > 0 for unit in lgd.lgd_units())  # Xavier elsewhere
    x = torch.randn(1, *SMALL[name][1:])
    with torch.no_grad():
        torch.testing.assert_close(lgd(x), base(x), rtol=0, atol=0)
    # from scratch W^{x,g} is Xavier, so the output differs
    scratch = create_model(name, num_classes=1000).eval()
    scratch.load_state_dict(lgd.state_dict(), strict=False)
    for unit in scratch.lgd_units():
        unit.lgd.reset_parameters()
    with torch.no_grad():
        assert not torch.equal(scratch(x), base(x))


def test_lgd2d_global_vector_is_per_video_not_per_frame():
    torch.manual_seed(0)
    model = create_model("lgd2d_resnet50", num_classes=5, width=0.25).eval()
    x = torch.randn(2, 3, 3, 32, 32)
    y = x.clone()
    y[0, :, 2] += 1.0  # change the last frame of video 0 only
    with torch.no_grad():
        local_x, g_x, segments = model.forward_lgd(x)
        local_y, g_y, _ = model.forward_lgd(y)
    assert segments == 3 and g_x.shape == (2, model.num_features) and local_x.shape[0] == 6
    assert not torch.allclose(local_x[0], local_y[0])  # frame 0 of video 0 sees frame 2 through g
    torch.testing.assert_close(local_x[3:], local_y[3:], rtol=0, atol=0)  # video 1 untouched
    torch.testing.assert_close(g_x[1], g_y[1], rtol=0, atol=0)


def test_stage1_loss_through_the_contract_is_eq6():
    torch.manual_seed(0)
    model = create_model("lgd3d_resnet50", num_classes=5, width=0.25).train()
    x, y = torch.randn(3, 3, 4, 32, 32), torch.tensor([0, 3, 4])
    out = model.forward_output(x)
    heads = model.head_logits(*model.forward_lgd(x))
    a, b = heads["local"], heads["global"]
    torch.testing.assert_close(out.logits, a + b)
    engine_loss = F.cross_entropy(out.logits, y) + out.losses["two_heads"]
    torch.testing.assert_close(engine_loss, F.cross_entropy(a, y) + F.cross_entropy(b, y))
    assert two_head_correction(a, b) >= 0
    # gradients equal too
    grad_engine = torch.autograd.grad(engine_loss, model.fc_g.weight, retain_graph=True)[0]
    grad_eq6 = torch.autograd.grad(F.cross_entropy(a, y) + F.cross_entropy(b, y), model.fc_g.weight)[0]
    torch.testing.assert_close(grad_engine, grad_eq6)


@pytest.mark.parametrize("predict", ["local", "global", "sum"])
def test_stage1_prediction_head_at_test_time(predict):
    torch.manual_seed(0)
    model = create_model("lgd2d_resnet50", num_classes=5, width=0.25, predict=predict).eval()
    x = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        heads = model.head_logits(*model.forward_lgd(x))
        expected = {"local": heads["local"], "global": heads["global"], "sum": heads["local"] + heads["global"]}
        torch.testing.assert_close(model(x), expected[predict], rtol=0, atol=0)
        assert model.forward_output(x).losses == {}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_stage2_starts_from_stage1_weights(name, tmp_path):
    torch.manual_seed(0)
    stage1 = create_model(name, num_classes=5, width=0.25)
    path = tmp_path / "final.pt"
    torch.save({"state_dict": stage1.state_dict()}, path)
    torch.manual_seed(1)
    stage2 = create_model(name, num_classes=5, width=0.25, stage=2, sketch_dim=256)
    assert not hasattr(stage2, "fc") and not hasattr(stage2, "fc_g")
    report = load_init_weights(stage2, path)  # what RunConfig.init = "row:..." calls
    assert sorted(report["unexpected"]) == ["fc.bias", "fc.weight", "fc_g.bias", "fc_g.weight"]
    assert report["missing"] and all(k.startswith("head_c.") for k in report["missing"])
    own, first = stage2.state_dict(), stage1.state_dict()
    shared = [k for k in own if not k.startswith("head_c.")]
    assert any(".lgd." in k for k in shared)
    assert all(torch.equal(own[k], first[k]) for k in shared)
    stage2.eval()
    with torch.no_grad():
        x = torch.randn(SMALL[name])
        local, g, segments = stage2.forward_lgd(x)
        torch.testing.assert_close(stage2(x), stage2.head_c(local, g, segments), rtol=0, atol=0)  # Eq. 7 only
        assert stage2(x).shape == (2, 5) and stage2.forward_output(x).losses == {}


def test_long_setting_changes_pool1_temporal_stride():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad():
        normal = create_model("lgd3d_resnet50", num_classes=5, width=0.25).eval().forward_lgd(x)[0]
        long = create_model("lgd3d_resnet50", num_classes=5, width=0.25, pool1_stride=4).eval().forward_lgd(x)[0]
    assert normal.shape[2] == 4 and long.shape[2] == 2  # 16 -> 8 -> 4 vs 16 -> 4 -> 2 (LGD §5.4)


def test_p3d_table1_shapes_at_full_size():
    model = create_model("lgd3d_resnet50", num_classes=5, width=0.25).eval()
    with torch.no_grad():
        local, g, _ = model.forward_lgd(torch.randn(1, 3, 16, 112, 112))
    assert local.shape[2:] == (4, 7, 7) and g.shape == (1, model.num_features)  # LGD Table 1 res5


@pytest.mark.parametrize("kwargs,match", [({"variant": "v3"}, "variant"), ({"stage": 3}, "stage"),
                                          ({"predict": "mean"}, "predict"), ({"pool1_stride": 0}, "pool1_stride")])
def test_bad_arguments_are_one_line_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model("lgd3d_resnet50", num_classes=5, width=0.25, **kwargs)


def test_stage2_rows_start_from_a_stage1_row_of_the_same_network():
    from repro.spec.loader import load_spec
    from repro.spec.refs import parse_row_ref

    spec = load_spec("specs/lgd/table3.yaml")
    rows = {r.id: r for r in spec.rows}
    chained = [r for r in spec.rows if r.model and r.model.args.get("stage") == 2]
    assert len(chained) == 6  # every Com row of Table 3 (R50/R101 x LGD-2D/3D, + Long)
    for row in chained:
        paper, table, source = parse_row_ref(row.full.init[4:])
        assert (paper, int(table)) == ("lgd", 3)
        first = rows[source]
        assert first.model.name == row.model.name and first.model.args.get("stage", 1) == 1
        assert "pretrained_file" in first.full.model_args  # the Img row: ImageNet-initialised
    long = [r for r in chained if r.model.args.get("pool1_stride") == 4]
    assert [r.full.frames for r in long] == [128, 128]


# --------------------------------------------------------------------------------------------
# The committed profile results (results/full/lgd/, the '# param.' and GMACs columns of LGD
# Tables 2-3) against the analytic counts: read from the JSON files, nothing rebuilt.
# --------------------------------------------------------------------------------------------
RESNET50_CHANNELS = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3


def _committed_profile(table: int, *rows: str) -> list[dict[str, float]]:
    """Each row's committed ``profile`` metrics, checked fresh for the current spec (a stale count
    must fail here, not pass); a missing file is a failure, never a skip."""
    from pathlib import Path

    from repro.identity import result_key
    from repro.results import load_results
    from repro.spec.loader import load_spec

    root = Path(__file__).resolve().parents[1]
    spec = load_spec(root / "specs" / "lgd" / f"table{table}.yaml")
    results = load_results(root / "results")
    out = []
    for row in rows:
        r = results.get(("full", "lgd", table, row, "profile"))
        assert r is not None, f"results/full/lgd/table{table}/{row}.profile.json missing: run the profile job"
        assert r.provenance["spec_hash"] == result_key(spec, spec.row(row), "profile", "full"), f"{row}: stale"
        assert r.details["uncounted_ops"] == {}, f"{row}: ops with no MAC rule {r.details['uncounted_ops']}"
        out.append(r.metrics)
    return out


@pytest.mark.parametrize("lgd_row,base_row", [("lgd3d_block", "p3d_baseline"), ("lgd2d_block", "tsn_baseline"),
                                              ("lgd3d_block_v2", "p3d_baseline"), ("lgd3d_block_v1", "p3d_baseline"),
                                              ("lgd2d_block_v1", "tsn_baseline")])
def test_committed_table2_counts_differ_from_the_baseline_by_the_low_rank_weights(lgd_row, base_row):
    """Table 2 (K = 600, stage 1, local head predicts): params differ by the LGD blocks' low-rank
    weights plus the global head fc_g; MACs by each low-rank product once per video, less the last
    unit's Eq. 3 update (W^{g,x}, W^{g,g}: C²/4), which the local prediction never reads."""
    lgd, base = _committed_profile(2, lgd_row, base_row)
    variant = {"_v1": "v1", "_v2": "v2"}.get(lgd_row[-3:], "full")
    blocks = lgd_network_extra_params(RESNET50_CHANNELS, stem_channels=64, variant=variant)
    assert blocks == {"full": 7_194_624, "v2": 7_194_624, "v1": 2_339_840}[variant]
    assert lgd["params"] - base["params"] == blocks + 2048 * 600 + 600
    last_eq3 = 0 if variant == "v1" else 2048 * 2048 // 4  # Eq. 8 (v1) has no W^{g,x}, W^{g,g}
    assert lgd["macs"] - base["macs"] == blocks - last_eq3


def test_committed_stage2_counts_add_the_combination_classifier():
    """Table 3's LGD-3D R50 + Com row (stage 2, Tensor Sketch d = 8192, K = 600) vs Table 2's P3D
    baseline: params + LGD weights + W_c (2d·K + K) - fc; MACs + every low-rank product (g_L is
    now read) + W_c - fc + the sketch's FFTs (kernel_head docstring: rfft 2(P+1)·1.25·d·log2 d,
    irfft 2·1.25·d·log2 d, P = 4·7·7 positions of res5)."""
    (com,), (base,) = _committed_profile(3, "lgd3d_r50_img_com"), _committed_profile(2, "p3d_baseline")
    d, k, c, positions = 8192, 600, 2048, 4 * 7 * 7
    blocks = lgd_network_extra_params(RESNET50_CHANNELS, stem_channels=64)
    assert com["params"] - base["params"] == blocks + (2 * d * k + k) - (c * k + k)
    ffts = 2 * (positions + 1) * 1.25 * d * 13 + 2 * 1.25 * d * 13  # log2(8192) = 13
    assert com["macs"] - base["macs"] == blocks + 2 * d * k - c * k + ffts


@pytest.mark.parametrize("table", [4, 5, 6])
def test_committed_two_stream_counts_are_the_rgb_and_flow_rows_added(table):
    """Tables 4-6's LGD-3D Two-stream (late fusion) counts exactly the table's RGB and Flow rows
    together: both streams' weights, both forwards' MACs (the mean of the two scores is no MAC)."""
    fused, rgb, flow = _committed_profile(table, "lgd3d_two_stream", "lgd3d_rgb", "lgd3d_flow")
    assert fused["params"] == rgb["params"] + flow["params"]
    assert fused["macs"] == rgb["macs"] + flow["macs"]
