"""MotionNet (TrajectoryNet §3.5): shapes, the unsupervised loss, learning a translation."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from repro.models.motionnet import (
    STRIDES,
    MotionNet,
    bidirectional_flows,
    unsupervised_loss,
)
from repro.registry import create_model


def _translating_texture(n: int, height: int, width: int, shift: int, frames: int = 2, seed: int = 0) -> torch.Tensor:
    """Smooth random texture moving ``shift`` px to the right per frame: (N, 3, frames, H, W) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    margin = shift * frames + 4
    base = torch.rand(n, 3, height, width + 2 * margin, generator=g)
    base = F.avg_pool2d(F.pad(base, (2, 2, 2, 2), mode="circular"), 5, stride=1)
    clip = [base[..., margin - k * shift : margin - k * shift + width] for k in range(frames)]
    return torch.stack(clip, dim=2)


def test_shapes_and_registry():
    torch.manual_seed(0)
    net = create_model("motionnet_17", width=0.125)
    assert isinstance(net, MotionNet) and net.num_flows == 16
    frames = torch.rand(1, 3, 17, 50, 60)
    out = net.forward_scales(frames)  # not a multiple of 32: padded and cropped
    torch.testing.assert_close(net(frames), out.flow)  # forward: the flow tensor alone
    assert out.flow.shape == (1, 2, 16, 50, 60)
    for stride in STRIDES:
        assert out.flows[stride].shape == (1, 2, 16, -(-50 // stride), -(-60 // stride))
    with pytest.raises(ValueError, match="frames"):
        net(torch.rand(1, 3, 2, 32, 32))


def test_full_size_parameter_count():
    # width=1 is the authors' layout (64-128-256-512-512-1024 encoder)
    n = sum(p.numel() for p in create_model("motionnet_2").parameters())
    assert 40e6 < n < 44e6


def test_loss_prefers_the_true_flow():
    clip = _translating_texture(1, 32, 48, shift=2)
    flows = {}
    for stride in STRIDES:
        h, w = -(-32 // stride), -(-48 // stride)
        flows[stride] = torch.full((1, 2, 1, h, w), 0.0)
    zero_terms = unsupervised_loss(clip, flows)
    true_flows = {s: f.clone() for s, f in flows.items()}
    true_flows[2][:, 0] = 1.0  # 2 px at full resolution = 1 px at stride 2
    only_fine = {2: true_flows[2]}
    assert unsupervised_loss(clip, only_fine)["photometric"] < unsupervised_loss(clip, {2: flows[2]})["photometric"]
    assert set(zero_terms) == {"photometric", "ssim", "smoothness", "total"}
    torch.testing.assert_close(
        zero_terms["total"], zero_terms["photometric"] + zero_terms["ssim"] + zero_terms["smoothness"]
    )


def test_gradient_reaches_every_layer():
    torch.manual_seed(0)
    net = MotionNet(2, width=0.125)
    clip = _translating_texture(1, 32, 32, shift=1)
    out = net.forward_scales(clip)
    unsupervised_loss(clip, out.flows)["total"].backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_learns_direction_of_a_translating_texture():
    torch.manual_seed(0)
    net = MotionNet(2, width=0.125)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for step in range(25):
        clip = _translating_texture(2, 32, 32, shift=2, seed=step)
        out = net.forward_scales(clip)
        loss = unsupervised_loss(clip, out.flows)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5
    with torch.no_grad():
        flow = net(_translating_texture(2, 32, 32, shift=2, seed=100))
    mean_x, mean_y = float(flow[:, 0].mean()), float(flow[:, 1].mean())
    assert 0.5 < mean_x < 4.0, mean_x  # truth: +2 px
    assert abs(mean_y) < 0.75 * mean_x, mean_y


@pytest.mark.parametrize("frames", [2, 17])
def test_bidirectional_flows(frames):
    torch.manual_seed(0)
    net = MotionNet(frames, width=0.125)
    clip = _translating_texture(1, 32, 32, shift=1, frames=6)
    fwd, bwd, terms = bidirectional_flows(net, clip, with_loss=True)
    assert fwd.flow.shape == bwd.flow.shape == (1, 2, 6, 32, 32)
    assert fwd.flows[8].shape == (1, 2, 6, 4, 4)
    assert terms["total"].dim() == 0 and torch.isfinite(terms["total"])
    torch.testing.assert_close(terms["total"], terms["total_fwd"] + terms["total_bwd"])
    # backward flow of frame t comes from the reversed clip: check against a direct call
    if frames == 2:
        pair = torch.stack((clip[:, :, 3], clip[:, :, 2]), dim=2)
        torch.testing.assert_close(bwd.flow[:, :, 3], net(pair)[:, :, 0], rtol=1e-5, atol=1e-5)
