"""BN-Inception: TSN's parameter/MAC anchors, names, shapes, stage splitting, checkpoints."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from repro.cli import main
from repro.models.bninception import BLOCKS, FEATURE_STAGES, STAGE_NAMES, BNInception, tsn_key
from repro.models.video_resnet import stage_channels
from repro.profile import count_macs, count_params, profile
from repro.registry import create_model, model_entry

# 1x3x224x224, fvcore via repro.profile: conv 2,031,576,064 + fc 1,024,000.
TSN_PARAMS, TSN_BACKBONE_PARAMS, TSN_MACS, TSN_CONV_MACS = 11_295_240, 10_270_240, 2_032_600_064, 2_031_576_064


def _mini(**kw) -> BNInception:
    return BNInception(**{"num_classes": 12, "width": 0.25, **kw})


def _randomise_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, so that copies are really checked."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def _tsn_conv_names() -> list[str]:
    """Every conv of TSN's bn_inception, in the TSN-PyTorch naming."""
    names = ["conv1_7x7_s2", "conv2_3x3_reduce", "conv2_3x3"]
    for block, spec in BLOCKS.items():
        branches = ["3x3_reduce", "3x3", "double_3x3_reduce", "double_3x3_1", "double_3x3_2"]
        branches = (["1x1"] if spec.c1x1 else []) + branches + (["pool_proj"] if spec.pool_proj else [])
        names += [f"{block}_{b}" for b in branches]
    return names


# ------------------------------------------------------------------------------ anchors
def test_parameter_count_is_tsn_bn_inception() -> None:
    model = create_model("bninception")
    assert count_params(model) == TSN_PARAMS
    assert sum(p.numel() for n, p in model.named_parameters() if not n.startswith("fc.")) == TSN_BACKBONE_PARAMS
    assert model.fc.in_features == model.num_features == 1024
    assert count_params(create_model("bninception", num_classes=101)) == 10_373_765


def test_macs_at_224_are_pinned() -> None:
    out = profile("bninception")  # registry default input 1x3x224x224
    assert out["input_shape"] == [1, 3, 224, 224]
    assert out["params"] == TSN_PARAMS
    assert out["macs"] == out["dense_macs"] == TSN_MACS and round(out["gmacs"], 2) == 2.03
    assert out["macs_by_operator"]["conv"] == TSN_CONV_MACS and out["macs_by_operator"]["linear"] == 1024 * 1000
    assert out["uncounted_ops"] == {}


def test_conv_macs_match_an_independent_count() -> None:
    """fvcore's conv MACs = sum over convs of out elements x (C_in x k x k), counted with hooks."""
    model = BNInception().eval()
    total = []

    def hook(m: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        total.append(out.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1])

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    assert len(total) == 69 and sum(total) == TSN_CONV_MACS
    # conv1 stride 1 (Dynamics' "224 map"): everything after conv1 sees 4x the positions.
    wide = count_macs(BNInception(conv1_stride=1), torch.randn(1, 3, 224, 224)).by_operator["conv"]
    conv1 = 112 * 112 * 64 * 3 * 49
    assert wide == 4 * conv1 + 4 * (TSN_CONV_MACS - conv1)


def test_cli_profile_prints_the_anchors(capsys) -> None:
    assert main(["profile", "bninception", "--input", "1x3x224x224"]) == 0
    text = capsys.readouterr().out
    assert "11,295,240" in text and "2.03 GMACs" in text


def test_registry_entry() -> None:
    entry = model_entry("bninception")
    assert entry.paper == "dynamics" and entry.default_input == (1, 3, 224, 224)
    with pytest.raises(TypeError, match="unexpected arguments"):
        create_model("bninception", dropout=0.5)


# ------------------------------------------------------------------------------ structure
def test_tsn_names_conv_bias_and_bn_after_every_conv() -> None:
    model = BNInception()
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert list(convs) == _tsn_conv_names()
    for name, conv in convs.items():
        assert conv.bias is not None, name  # Caffe: bias on every conv
        bn = model.get_submodule(f"{name}_bn")
        assert isinstance(bn, nn.BatchNorm2d) and bn.affine and bn.num_features == conv.out_channels
    keys = set(model.state_dict())
    assert {"conv1_7x7_s2.weight", "conv1_7x7_s2_bn.running_var", "inception_3a_double_3x3_1.bias",
            "inception_5b_pool_proj_bn.weight", "fc.weight", "fc.bias"} <= keys
    assert not any(k.startswith(("inception_3c_1x1", "inception_3c_pool_proj", "inception_4e_pool_proj")) for k in keys)


def test_stage_shapes_at_224() -> None:
    model = BNInception().eval()
    with torch.no_grad():
        feats = model.forward_intermediates(torch.randn(1, 3, 224, 224), STAGE_NAMES)
    shapes = {k: tuple(v.shape[1:]) for k, v in feats.items()}
    assert shapes == {
        "conv1": (64, 112, 112), "pool1": (64, 56, 56), "conv2": (192, 56, 56), "pool2": (192, 28, 28),
        "inception_3a": (256, 28, 28), "inception_3b": (320, 28, 28), "inception_3c": (576, 14, 14),
        "inception_4a": (576, 14, 14), "inception_4b": (576, 14, 14), "inception_4c": (608, 14, 14),
        "inception_4d": (608, 14, 14), "inception_4e": (1056, 7, 7), "inception_5a": (1024, 7, 7),
        "inception_5b": (1024, 7, 7),
    }
    assert model.feature_channels == {k: v[0] for k, v in shapes.items()}


@pytest.mark.parametrize("size, stride, hw", [(64, 2, [32, 8, 4, 2, 2]), (112, 1, [112, 28, 14, 7, 7])])
def test_mini_shapes_width_quarter(size: int, stride: int, hw: list[int]) -> None:
    model = _mini(conv1_stride=stride).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        feats = model.forward_intermediates(x, FEATURE_STAGES)
        logits = model(x)
    assert logits.shape == (2, 12)
    assert [f.shape[-1] for f in feats.values()] == hw  # ceil-mode pools: 32 -> 16 -> 8 (floor would give 15 -> 7)
    assert [f.shape[1] for f in feats.values()] == [16, 48, 144, 264, 256]
    assert feats["conv1"].shape[1] == stage_channels(64, 0.25)


def test_width_scales_every_conv() -> None:
    full, mini = BNInception(), _mini()
    full_convs = {n: m for n, m in full.named_modules() if isinstance(m, nn.Conv2d)}
    for name, conv in mini.named_modules():
        if isinstance(conv, nn.Conv2d):
            assert conv.out_channels == stage_channels(full_convs[name].out_channels, 0.25), name
    assert count_params(mini) < count_params(full) / 12


def test_odd_size_at_a_stride_2_block_is_a_clear_error() -> None:
    model = _mini().eval()
    with pytest.raises(ValueError, match=r"inception_4e needs an even input size.*\(7, 7\).*multiple of 32"):
        model(torch.randn(1, 3, 112, 112))  # 112 -> 56 -> 28 -> 14 -> 7 at 4e: Caffe fails as well
    with pytest.raises(ValueError, match=r"expects input \(N, 3, H, W\)"):
        model(torch.randn(1, 2, 64, 64))


def test_inception_blocks_against_explicit_branches() -> None:
    """5a pools with avg (padding counted), 5b with max; 3c's pool branch is a ceil-mode max pool."""
    torch.manual_seed(0)
    model = _mini().eval()
    _randomise_bn(model)

    def cbr(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.relu(getattr(model, f"{name}_bn")(getattr(model, name)(x)))

    def block(x: torch.Tensor, name: str, pool) -> torch.Tensor:
        return torch.cat([cbr(x, f"{name}_1x1"), cbr(cbr(x, f"{name}_3x3_reduce"), f"{name}_3x3"),
                          cbr(cbr(cbr(x, f"{name}_double_3x3_reduce"), f"{name}_double_3x3_1"), f"{name}_double_3x3_2"),
                          cbr(pool(x), f"{name}_pool_proj")], dim=1)

    avg = lambda x: F.avg_pool2d(F.pad(x, (1, 1, 1, 1)), 3, stride=1)  # noqa: E731  zeros counted
    mx = lambda x: F.max_pool2d(F.pad(x, (1, 1, 1, 1), value=float("-inf")), 3, stride=1)  # noqa: E731
    with torch.no_grad():
        x4e = model.forward_until(torch.randn(2, 3, 64, 64), "inception_4e") - 0.3  # negatives: -inf vs 0 padding matters
        out5a = model.forward_stages(x4e, "inception_4e", "inception_5a")
        torch.testing.assert_close(out5a, block(x4e, "inception_5a", avg))
        out5b = model.forward_stages(out5a, "inception_5a", "inception_5b")
        torch.testing.assert_close(out5b, block(out5a, "inception_5b", mx))
        assert not torch.allclose(out5b, block(out5a, "inception_5b", avg))
        x3b = model.forward_until(torch.randn(1, 3, 64, 64), "inception_3b")
        out3c = model.forward_stages(x3b, "inception_3b", "inception_3c")
        pool = x3b.new_full((*x3b.shape[:2], 4, 4), float("-inf"))
        for i in range(4):  # ceil mode: window starts 0, 2, 4, 6 on an 8-map; the last is cut to 2 wide
            for j in range(4):
                pool[..., i, j] = x3b[..., 2 * i:2 * i + 3, 2 * j:2 * j + 3].amax(dim=(-2, -1))
        torch.testing.assert_close(out3c[:, -x3b.shape[1]:], pool)


# ------------------------------------------------------------------------------ splitting
def test_forward_until_and_from_compose_to_forward() -> None:
    torch.manual_seed(0)
    model = _mini(drop_rate=0.5).eval()
    _randomise_bn(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        for name in STAGE_NAMES:
            torch.testing.assert_close(model.forward_from(model.forward_until(x, name), name), ref)
        mid = model.forward_stages(model.forward_until(x, "pool2"), "pool2", "inception_4e")
        torch.testing.assert_close(mid, model.forward_until(x, "inception_4e"))
        torch.testing.assert_close(model.forward_head(model.forward_features(x)), ref)
    with pytest.raises(ValueError, match="unknown stage 'inception_6a'"):
        model.forward_until(x, "inception_6a")
    with pytest.raises(ValueError, match="does not come after"):
        model.forward_stages(x, "inception_4e", "pool2")


def test_features_only_returns_maps_by_name() -> None:
    torch.manual_seed(0)
    model = _mini(features_only=True).eval()
    assert model.fc.__class__ is nn.Identity and model.num_classes == 0
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = model(x)
        assert list(feats) == list(FEATURE_STAGES)
        for name, f in feats.items():
            torch.testing.assert_close(f, model.forward_until(x, name))
    chosen = _mini(features_only=("inception_3c",))
    assert list(chosen(x)) == ["inception_3c"]
    with pytest.raises(ValueError, match="features_only: unknown stage 'res4'"):
        _mini(features_only=("res4",))


# ------------------------------------------------------------------------------ training
def test_gradient_reaches_every_parameter_and_the_input() -> None:
    torch.manual_seed(0)
    model = _mini(in_chans=10).train()  # a 5-pair flow stack, as TSN's temporal stream
    x = torch.randn(2, 10, 64, 64, requires_grad=True)
    F.cross_entropy(model(x), torch.tensor([1, 7])).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_init_is_deterministic_given_the_seed() -> None:
    def build(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return _mini().state_dict()

    a, b, c = build(3), build(3), build(4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["inception_4a_1x1.weight"], c["inception_4a_1x1.weight"])
    assert a["fc.weight"].std() < 0.01 and torch.all(a["conv2_3x3.bias"] == 0)


def test_dropout_before_fc_only_in_training() -> None:
    torch.manual_seed(0)
    model = _mini(drop_rate=0.8)
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))
        feats = model.forward_from(model.forward_until(x, "inception_5b"), "inception_5b", pre_logits=True)
        model.train()
        dropped = model.dropout(feats)
    assert (dropped == 0).float().mean() > 0.5  # 80 % zeroed (of a 256-d vector)


def test_partial_bn_freezes_all_but_the_first_bn() -> None:
    torch.manual_seed(0)
    model = _mini(partial_bn=True).train()
    bns = {n: m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    before = {n: m.running_mean.clone() for n, m in bns.items()}
    model(torch.randn(2, 3, 64, 64))
    for name, bn in bns.items():
        first = name == "conv1_7x7_s2_bn"
        assert bn.training == first and bn.weight.requires_grad == first, name
        assert torch.equal(bn.running_mean, before[name]) != first, name


# ------------------------------------------------------------------------------ checkpoints
def test_pretrained_file_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    src = _mini().eval()
    _randomise_bn(src)
    path = tmp_path / "bninception_mini.pth"
    torch.save({"state_dict": src.state_dict(), "epoch": 3}, path)
    torch.manual_seed(1)
    dst = create_model("bninception", num_classes=12, width=0.25, pretrained_file=str(path)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)


def test_tsn_and_cadene_checkpoints_map_by_name(tmp_path) -> None:
    torch.manual_seed(0)
    src = _mini().eval()
    _randomise_bn(src)
    sd = src.state_dict()
    # TSN-PyTorch: DataParallel + base_model.*, classifier new_fc.*, no num_batches_tracked.
    tsn = {("module.new_fc." + k[3:]) if k.startswith("fc.") else "module.base_model." + k: v
           for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    torch.save(tsn, tmp_path / "tsn.pth")
    # Caffe-converted: "/" separators, classifier last_linear.*
    cadene = {("last_linear." + k[3:]) if k.startswith("fc.") else k.replace("inception_3a_", "inception_3a/"): v
              for k, v in sd.items()}
    torch.save(cadene, tmp_path / "cadene.pth")
    assert tsn_key("inception_3a/double_3x3_1_bn.weight") == "inception_3a_double_3x3_1_bn.weight"
    x = torch.randn(1, 3, 64, 64)
    for name in ("tsn.pth", "cadene.pth"):
        dst = create_model("bninception", num_classes=12, width=0.25, pretrained_file=str(tmp_path / name)).eval()
        with torch.no_grad():
            torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)


def test_fc_skipped_when_class_count_differs(tmp_path) -> None:
    torch.manual_seed(0)
    src = _mini(num_classes=1000).eval()
    _randomise_bn(src)
    torch.save(src.state_dict(), tmp_path / "imagenet.pth")
    torch.manual_seed(5)
    fresh_fc = _mini(num_classes=101).fc.weight.clone()
    torch.manual_seed(5)
    dst = create_model("bninception", num_classes=101, width=0.25, pretrained_file=str(tmp_path / "imagenet.pth")).eval()
    assert torch.equal(dst.fc.weight, fresh_fc)  # kept its own init
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(dst.forward_features(x), src.forward_features(x), rtol=0, atol=0)


def test_cross_modality_init_for_flow_input(tmp_path) -> None:
    """TSN Sec. 3.2: RGB conv1 weights averaged over channels and replicated for a 10-channel stack."""
    torch.manual_seed(0)
    src = _mini()
    torch.save(src.state_dict(), tmp_path / "rgb.pth")
    dst = create_model("bninception", num_classes=12, width=0.25, in_chans=10, pretrained_file=str(tmp_path / "rgb.pth"))
    w = dst.conv1_7x7_s2.weight
    assert w.shape[1] == 10
    torch.testing.assert_close(w, src.conv1_7x7_s2.weight.mean(1, keepdim=True).expand_as(w))
    assert torch.equal(dst.inception_4a_1x1.weight, src.inception_4a_1x1.weight)


def test_bad_checkpoints_give_one_line_errors(tmp_path) -> None:
    torch.manual_seed(0)
    torch.save(BNInception(num_classes=12, width=0.5).state_dict(), tmp_path / "wide.pth")
    with pytest.raises(ValueError, match=r"wide\.pth': 'conv1_7x7_s2\.weight' has shape \(32, 3, 7, 7\), "
                                         r"the model expects \(16, 3, 7, 7\)") as err:
        create_model("bninception", num_classes=12, width=0.25, pretrained_file=str(tmp_path / "wide.pth"))
    assert "\n" not in str(err.value)
    sd = _mini().state_dict()
    torch.save({k: v for k, v in sd.items() if not k.startswith("inception_5b_pool_proj_bn")}, tmp_path / "cut.pth")
    with pytest.raises(ValueError, match=r"cut\.pth': missing 'inception_5b_pool_proj_bn\.weight'"):
        create_model("bninception", num_classes=12, width=0.25, pretrained_file=str(tmp_path / "cut.pth"))
    torch.save({**sd, "layer1.0.conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"other\.pth': unexpected key 'layer1\.0\.conv1\.weight'"):
        create_model("bninception", num_classes=12, width=0.25, pretrained_file=str(tmp_path / "other.pth"))
    with pytest.raises(FileNotFoundError, match="nowhere.pth' does not exist"):
        create_model("bninception", pretrained_file=str(tmp_path / "nowhere.pth"))
