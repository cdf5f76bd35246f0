"""Video ResNets: torchvision equivalence, timm parameter parity, inflation, the temporal hook."""
from __future__ import annotations

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from repro.models._builder import inflate_conv_weight, torchvision_to_repro_state_dict
from repro.models.temporal_positions import replace_temporal_conv, resolve_temporal_position, temporal_conv_paths
from repro.registry import create_model


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomise_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics so that copied/inflated BN layers are really checked."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


def _timm_checkpoint(tmp_path, arch: str, num_classes: int = 1000) -> tuple[nn.Module, str]:
    net = timm.create_model(arch, pretrained=False, num_classes=num_classes).eval()
    _randomise_bn(net)
    path = tmp_path / f"{arch}.pth"
    torch.save(net.state_dict(), path)
    return net, str(path)


def _frames(net2d_input: torch.Tensor, t: int) -> torch.Tensor:
    return net2d_input.unsqueeze(2).expand(-1, -1, t, -1, -1).contiguous()


@pytest.mark.parametrize(
    "name, params", [("r3d_18", 33_371_472), ("mc3_18", 11_695_440), ("r2plus1d_18", 31_505_325)]
)
def test_same_network_as_torchvision(name: str, params: int) -> None:
    torch.manual_seed(0)
    reference = getattr(torchvision.models.video, name)(num_classes=400).eval()
    ours = create_model(name, num_classes=400).eval()
    assert _n_params(ours) == _n_params(reference) == params
    ours.load_state_dict(torchvision_to_repro_state_dict(reference.state_dict()))  # strict: same tensors
    x = torch.randn(2, 3, 8, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name, params", [("c2d_resnet18", 11_689_512), ("c2d_resnet50", 25_557_032)])
def test_c2d_has_timm_parameter_count(name: str, params: int) -> None:
    model = create_model(name, num_classes=1000)
    assert _n_params(model) == _n_params(timm.create_model(name.removeprefix("c2d_"))) == params


def test_c2d_identical_frames_equal_2d_net(tmp_path) -> None:
    torch.manual_seed(0)
    net2d, path = _timm_checkpoint(tmp_path, "resnet18")
    model = create_model("c2d_resnet18", num_classes=1000, pretrained_file=path).eval()
    frame = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = net2d(frame)
        torch.testing.assert_close(model(_frames(frame, 3)), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model(frame), expected, atol=1e-5, rtol=1e-5)  # 4-D = one frame


@pytest.mark.parametrize("name", ["r3d_18", "mc3_18"])
def test_inflated_3d_net_on_identical_frames_equals_2d_net(tmp_path, name: str) -> None:
    # With centre inflation, zero temporal padding cannot change anything, so a clip of one
    # repeated frame gives exactly the 2D net's logits.  torchvision's R3D has no max pool, so
    # the 2D twin is timm's resnet18 without it.
    torch.manual_seed(0)
    net2d, path = _timm_checkpoint(tmp_path, "resnet18", num_classes=400)
    net2d.maxpool = nn.Identity()
    model = create_model(name, num_classes=400, pretrained_file=path, inflate_mode="center").eval()
    frame = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(_frames(frame, 4)), net2d(frame), atol=1e-5, rtol=1e-5)


def test_i3d_mean_inflation_is_a_boring_video_fixed_point() -> None:
    torch.manual_seed(0)
    w2d = torch.randn(5, 4, 3, 3)
    frame = torch.randn(1, 4, 9, 9)
    video = _frames(frame, 6)
    w3d = inflate_conv_weight(w2d, 3, mode="mean")
    assert torch.allclose(w3d.sum(2), w2d, atol=1e-6)
    out3d = F.conv3d(video, w3d, padding=(1, 1, 1))
    out2d = F.conv2d(frame, w2d, padding=1)
    for t in range(1, 5):  # interior frames; the borders see zero padding (I3D's caveat)
        torch.testing.assert_close(out3d[:, :, t], out2d, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out3d[:, :, 0], out2d * 2 / 3, atol=1e-5, rtol=1e-5)


def test_mean_inflation_loads_repeated_kernels(tmp_path) -> None:
    torch.manual_seed(0)
    net2d, path = _timm_checkpoint(tmp_path, "resnet18")
    model = create_model("r3d_18", pretrained_file=path)
    w2d = net2d.layer2[0].conv1.weight
    torch.testing.assert_close(model.layer2[0].conv1.weight, w2d.unsqueeze(2).repeat(1, 1, 3, 1, 1) / 3)
    torch.testing.assert_close(model.layer2[0].downsample[0].weight, net2d.layer2[0].downsample[0].weight[:, :, None])
    torch.testing.assert_close(model.layer3[1].bn2.running_var, net2d.layer3[1].bn2.running_var)


def _exact_identity_temporal_bn(model: nn.Module) -> None:
    """Fresh BN computes x / sqrt(1 + eps) in eval mode; make the temporal ones exactly x."""
    for name, m in model.named_modules():
        if name.endswith("_t") and isinstance(m, nn.BatchNorm3d):
            m.running_var.fill_(1.0 - m.eps)


def _resnet2d_with_relu_before_sum(net2d: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's BasicBlock ResNet, but with a ReLU after bn2 (before the residual sum), as S3D has."""
    x = net2d.maxpool(net2d.act1(net2d.bn1(net2d.conv1(x))))
    for stage in (net2d.layer1, net2d.layer2, net2d.layer3, net2d.layer4):
        for blk in stage:
            shortcut = x if blk.downsample is None else blk.downsample(x)
            out = F.relu(blk.bn1(blk.conv1(x)))
            out = F.relu(blk.bn2(blk.conv2(out)))
            x = F.relu(out + shortcut)
    return net2d.fc(x.mean((2, 3)))


def test_s3d_starts_as_its_2d_net(tmp_path) -> None:
    # Temporal convs start as the identity, so only the inserted ReLUs separate S3D on a
    # repeated frame from the 2D ResNet.
    torch.manual_seed(0)
    net2d, path = _timm_checkpoint(tmp_path, "resnet18", num_classes=10)
    model = create_model("s3d_resnet18", num_classes=10, pretrained_file=path).eval()
    _exact_identity_temporal_bn(model)
    assert model.layer1[0].conv2_t.weight[:, :, 1, 0, 0].equal(torch.eye(64))
    frame = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = _resnet2d_with_relu_before_sum(net2d, frame)
        torch.testing.assert_close(model(_frames(frame, 8)), expected, atol=1e-5, rtol=1e-5)


def test_p3d_starts_as_the_2d_net(tmp_path) -> None:
    # P3D-A's bottleneck already has a ReLU after bn2, so with identity temporal convs it is
    # the 2D ResNet-50 on a repeated frame; LGD Table 1 has no spatial max pool.
    torch.manual_seed(0)
    net2d, path = _timm_checkpoint(tmp_path, "resnet50", num_classes=10)
    net2d.maxpool = nn.Identity()
    model = create_model("p3d_resnet50", num_classes=10, pretrained_file=path).eval()
    _exact_identity_temporal_bn(model)
    frame = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        # 1e-4: float32 rounding over 50 layers of 3D vs 2D kernels (values are O(1)).
        torch.testing.assert_close(model(_frames(frame, 8)), net2d(frame), atol=1e-4, rtol=1e-5)


def test_pretrained_file_round_trip_of_a_video_checkpoint(tmp_path) -> None:
    torch.manual_seed(0)
    trained = create_model("s3d_resnet18", num_classes=7)
    _randomise_bn(trained)
    path = tmp_path / "s3d.pth"
    torch.save({"state_dict": trained.state_dict()}, path)
    loaded = create_model("s3d_resnet18", num_classes=7, pretrained_file=str(path))
    for key, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_pretrained_file_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        create_model("r3d_18", pretrained_file=str(tmp_path / "missing.pth"))
    _, path = _timm_checkpoint(tmp_path, "resnet34")
    with pytest.raises(ValueError, match="resnet18"):
        create_model("r3d_18", pretrained_file=path)


def test_r2plus1d_inflation_warns_about_factorised_convs(tmp_path) -> None:
    _, path = _timm_checkpoint(tmp_path, "resnet18")
    with pytest.warns(UserWarning, match="conv_s"):
        create_model("r2plus1d_18", pretrained_file=path)


def test_shapes_of_p3d_follow_lgd_table1() -> None:
    model = create_model("p3d_resnet50", num_classes=600).eval()
    x = torch.randn(1, 3, 16, 112, 112)
    with torch.no_grad():
        stem = model.forward_stem(x)
        assert stem.shape == (1, 64, 8, 56, 56)  # pool1 output, Table 1
        assert model.forward_features(x).shape == (1, 2048, 4, 7, 7)  # res5
        assert model(x).shape == (1, 600)


def test_bad_input_shape_is_explained() -> None:
    model = create_model("r3d_18")
    with pytest.raises(ValueError, match=r"\(N, 3, T, H, W\)"):
        model(torch.randn(1, 3, 32, 32))


def test_caffe_positions_resolve_to_timm_paths() -> None:
    s3d18 = create_model("s3d_resnet18")
    assert resolve_temporal_position(s3d18, "res3b1.conv1") == ["layer2.1.conv1_t"]
    assert resolve_temporal_position(s3d18, "res3a.conv1") == ["layer2.0.conv1_t"]
    assert resolve_temporal_position(s3d18, "res3b1.conv1,2") == ["layer2.1.conv1_t", "layer2.1.conv2_t"]
    assert resolve_temporal_position(s3d18, "res2b1") == ["layer1.1.conv1_t", "layer1.1.conv2_t"]
    assert resolve_temporal_position(s3d18, "layer4.0.conv2_t") == ["layer4.0.conv2_t"]
    assert len(temporal_conv_paths(s3d18)) == 16
    with pytest.raises(ValueError, match="no block layer2.2"):
        resolve_temporal_position(s3d18, "res3b2.conv1")
    with pytest.raises(ValueError, match="conv1..conv2"):
        resolve_temporal_position(s3d18, "res3b1.conv3")
    p3d = create_model("p3d_resnet50")
    assert resolve_temporal_position(p3d, "res4c.conv1") == ["layer3.2.conv2_t"]  # bottleneck: one
    assert temporal_conv_paths(p3d)[0] == "conv1_t"


class _ShiftedTemporalConv(nn.Module):
    """Stand-in for a trajectory conv: the old conv plus an extra input added to its output."""

    def __init__(self, conv: nn.Conv3d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x)
        return out if extra is None else out + extra


def test_replace_temporal_conv_and_feed_it() -> None:
    torch.manual_seed(0)
    model = create_model("s3d_resnet18", num_classes=5).eval()
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        before = model(x)
    old = model.layer2[1].conv1_t
    assert replace_temporal_conv(model, "res3b1.conv1", _ShiftedTemporalConv) == ["layer2.1.conv1_t"]
    assert isinstance(model.layer2[1].conv1_t, _ShiftedTemporalConv) and model.layer2[1].conv1_t.conv is old
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)  # no extra input: same function
        zero = torch.zeros(1, 128, 2, 4, 4)
        torch.testing.assert_close(model(x, temporal_inputs={"layer2.1.conv1_t": zero}), before)
        shifted = model(x, temporal_inputs={"layer2.1.conv1_t": zero + 1.0})
    assert (shifted - before).abs().max() > 1e-3
    with pytest.raises(KeyError, match="layer9"):
        model(x, temporal_inputs={"layer9.0.conv1_t": zero})


def test_width_multiplier_scales_every_stage() -> None:
    from repro.layers.width import stage_channels

    assert [stage_channels(c, 0.25) for c in (64, 128, 256, 512)] == [16, 32, 64, 128]
    assert stage_channels(64, 1.0) == 64 and stage_channels(64, 0.05) == 8
    model = create_model("s3d_resnet18", num_classes=5, width=0.25)
    assert model.conv1.out_channels == 16 and model.layer4[0].conv2_t.out_channels == 128
    assert model.num_features == 128 and model.fc.in_features == 128
    assert model(torch.randn(2, 3, 8, 32, 32)).shape == (2, 5)
    full = sum(p.numel() for p in create_model("s3d_resnet18", num_classes=5).parameters())
    narrow = sum(p.numel() for p in model.parameters())
    assert 14 < full / narrow < 17  # conv params scale with width**2 (the fc with width)
    with pytest.raises(ValueError, match="width"):
        create_model("s3d_resnet18", width=0.5, pretrained_file="weights.pth")
