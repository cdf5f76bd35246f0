"""TrajectoryNet model (NeurIPS 2018 §3.4-3.5, Tables 2-4) on S3D-ResNet-18."""
from __future__ import annotations

import pytest
import torch

from repro.deploy.onnx import export_onnx, ort_session
from repro.models.trajectorynet import (
    TrajectoryNet,
    TrajectoryTemporalConv,
    chain_flows,
    downsample_flow,
)
from repro.ops.trajectory_conv import trajectory_positions
from repro.registry import create_model

SMALL = (1, 3, 8, 64, 64)  # res3 features: 2 x 8 x 8


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _video_and_flow(shape=SMALL, scale=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, _, t, h, w = shape
    video = torch.randn(shape, generator=g)
    flow = torch.randn(n, 2, t, h, w, generator=g) * scale
    return video, flow, -flow


# ---------------------------------------------------------------------------------------------
# flow plumbing
# ---------------------------------------------------------------------------------------------
def test_downsample_avg_rescales_displacements():
    flow = torch.zeros(1, 2, 2, 16, 24)
    flow[:, 0] = 8.0
    flow[:, 1] = -4.0
    out = downsample_flow(flow, (2, 3), "avg")
    assert out.shape == (1, 2, 2, 2, 3)
    torch.testing.assert_close(out[:, 0], torch.full((1, 2, 2, 3), 1.0))  # 8 px / 8
    torch.testing.assert_close(out[:, 1], torch.full((1, 2, 2, 3), -0.5))


def test_downsample_max_keeps_the_largest_vector_with_its_sign():
    flow = torch.zeros(1, 2, 1, 4, 4)
    flow[0, :, 0, 0, 0] = torch.tensor([-6.0, 2.0])  # largest magnitude in the top-left window
    flow[0, :, 0, 1, 1] = torch.tensor([3.0, 3.0])
    flow[0, :, 0, 3, 3] = torch.tensor([1.0, -2.0])  # alone in the bottom-right window
    out = downsample_flow(flow, (2, 2), "max")
    torch.testing.assert_close(out[0, :, 0, 0, 0], torch.tensor([-3.0, 1.0]))  # halved
    torch.testing.assert_close(out[0, :, 0, 1, 1], torch.tensor([0.5, -1.0]))
    assert out[0, :, 0, 0, 1].abs().max() == 0


def test_chain_flows_follows_the_trajectory_over_the_temporal_stride():
    flow = torch.zeros(1, 2, 8, 10, 10)
    flow[:, 0] = 0.5
    fwd, bwd = chain_flows(flow, -flow, stride=4)
    assert fwd.shape == (1, 2, 2, 10, 10)
    torch.testing.assert_close(fwd[0, 0, 0, 5, 2], torch.tensor(2.0))  # 4 steps of 0.5 px
    torch.testing.assert_close(bwd[0, 0, 1, 5, 5], torch.tensor(-2.0))


@pytest.mark.parametrize("stride", [2, 4])
def test_chain_flows_equals_trajectory_positions_at_plus_minus_stride(stride):
    g = torch.Generator().manual_seed(0)
    fwd_in = torch.randn(2, 2, 8, 7, 9, generator=g) * 1.5
    bwd_in = torch.randn(2, 2, 8, 7, 9, generator=g) * 1.5
    fwd, bwd = chain_flows(fwd_in, bwd_in, stride)
    positions = trajectory_positions(fwd_in, bwd_in, stride)[:, ::stride]  # (N, T/s, 2s+1, h, w, 2)
    base = torch.stack(torch.meshgrid(torch.arange(7.0), torch.arange(9.0), indexing="ij")[::-1], dim=-1)
    torch.testing.assert_close(fwd, (positions[:, :, -1] - base).permute(0, 4, 1, 2, 3))
    torch.testing.assert_close(bwd, (positions[:, :, 0] - base).permute(0, 4, 1, 2, 3))


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "position, paths",
    [
        ("res2b1.conv1", ["layer1.1.conv1_t"]),
        ("res3a.conv1", ["layer2.0.conv1_t"]),
        ("res3b1.conv1", ["layer2.1.conv1_t"]),
        ("res3b1.conv1,2", ["layer2.1.conv1_t", "layer2.1.conv2_t"]),
    ],
)
def test_table2_positions(position, paths):
    model = create_model("trajectorynet_resnet18", num_classes=5, positions=position)
    assert model.trajectory_paths == paths
    assert all(isinstance(model.backbone.get_submodule(p), TrajectoryTemporalConv) for p in paths)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"positions": "res3b1.conv1,2", "downsample": "max"},
        {"positions": "res2b1.conv1", "motion": "trajectory"},
        {"motion": "feature"},
        {"motion": "feature", "motion_feature": "flow"},
    ],
)
def test_zero_flow_equals_the_s3d_backbone(kwargs):
    torch.manual_seed(0)
    model = create_model("trajectorynet_resnet18", num_classes=7, **kwargs).eval()
    torch.manual_seed(0)
    s3d = create_model("s3d_resnet18", num_classes=7).eval()  # same init sequence
    video, flow, _ = _video_and_flow()
    zero = torch.zeros_like(flow)
    with torch.no_grad():
        expected = s3d(video)
        torch.testing.assert_close(model(video, zero, zero), expected, rtol=1e-4, atol=1e-5)
        assert (model(video, flow, -flow) - expected).abs().max() > 1e-4  # flows matter


def test_gradients_reach_flow_and_trajectory_conv():
    torch.manual_seed(0)
    model = create_model("trajectorynet_resnet18", num_classes=4, motion="trajectory")
    video, flow, _ = _video_and_flow(scale=1.5)
    flow.requires_grad_(True)
    logits = model(video, flow, -flow)
    assert logits.shape == (1, 4)
    logits.sum().backward()
    traj = model.backbone.get_submodule("layer2.1.conv1_t")
    assert flow.grad is not None and flow.grad.abs().sum() > 0
    assert traj.conv.weight.grad.abs().sum() > 0 and traj.offset_bn.weight.grad is not None


def test_backward_flow_defaults_to_negated_previous_forward_flow():
    torch.manual_seed(0)
    model = create_model("trajectorynet_resnet18", num_classes=3).eval()
    video, flow, _ = _video_and_flow()
    approx_bwd = -torch.nn.functional.pad(flow, (0, 0, 0, 0, 1, 0))[:, :, :-1]
    with torch.no_grad():
        torch.testing.assert_close(model(video, flow), model(video, flow, approx_bwd))
    with pytest.raises(ValueError, match="flow_fwd"):
        model(video)


def test_table3_parameter_counts():
    base = _count(create_model("s3d_resnet18", num_classes=174))
    appearance = _count(create_model("trajectorynet_resnet18", num_classes=174))
    feature = _count(create_model("trajectorynet_resnet18", num_classes=174, motion="feature"))
    trajectory = _count(create_model("trajectorynet_resnet18", num_classes=174, motion="trajectory"))
    two_stream = _count(create_model("s3d_two_stream_resnet18", num_classes=174))
    assert appearance == base  # trajectory conv adds no parameter (Table 3: 15.2M both)
    assert 0.6e6 < feature - base < 0.8e6  # Table 3: 15.9M - 15.2M
    assert 0 < trajectory - base < 2000  # 4 channels x 128 x 3 + BN
    assert abs(two_stream / base - 2.0) < 0.01  # Table 3: 30.4M


@pytest.mark.parametrize("source", ["motionnet_2", "motionnet_17"])
def test_motionnet_source_with_unsupervised_loss(source):
    torch.manual_seed(0)
    model = create_model(
        "trajectorynet_resnet18", num_classes=3, source=source, motionnet_mode="finetune_unsup", motionnet_width=0.125
    )
    video = torch.randn(SMALL)
    out = model.forward_output(video)
    logits, extras = out.logits, out.losses
    assert logits.shape == (1, 3) and set(extras) == {"unsup"} and extras["unsup"].dim() == 0
    assert out.flow is None  # return_flow is off
    (logits.sum() + extras["unsup"]).backward()
    assert model.motionnet.conv1[0].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert model(video).shape == (1, 3)  # evaluation: logits only


def test_frozen_motionnet_gets_no_gradient():
    torch.manual_seed(0)
    model = create_model("trajectorynet_resnet18", num_classes=3, source="motionnet_2", motionnet_width=0.125)
    out = model(torch.randn(SMALL))
    assert isinstance(out, torch.Tensor)
    out.sum().backward()
    assert all(p.grad is None for p in model.motionnet.parameters())
    assert model.backbone.fc.weight.grad is not None


def test_two_stream_averages_the_streams():
    torch.manual_seed(0)
    model = create_model("s3d_two_stream_resnet18", num_classes=6).eval()
    video, flow, _ = _video_and_flow()
    with torch.no_grad():
        expected = 0.5 * (model.appearance(video) + model.motion(flow / 20))
        torch.testing.assert_close(model(video, flow), expected)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="downsample"):
        TrajectoryNet(5, downsample="median")
    with pytest.raises(ValueError, match="source"):
        TrajectoryNet(5, source="tvl1")
    with pytest.raises(ValueError, match="position"):
        TrajectoryNet(5, positions="res9z.conv1")


def test_onnx_export_max_pool_and_trajectory_feature(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = create_model("trajectorynet_resnet18", num_classes=5, downsample="max", motion="trajectory").eval()
    video, flow, bwd = _video_and_flow(shape=(1, 3, 8, 32, 32))
    path = tmp_path / "trajectorynet.onnx"
    export_onnx(model, (video, flow, bwd), path, input_names=["video", "flow_fwd", "flow_bwd"], dynamic_batch=False)
    graph = onnx.load(str(path)).graph
    assert any(node.op_type == "GridSample" for node in graph.node)
    session = ort_session(path)
    (got,) = session.run(None, {"video": video.numpy(), "flow_fwd": flow.numpy(), "flow_bwd": bwd.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(video, flow, bwd), rtol=1e-3, atol=1e-4)
