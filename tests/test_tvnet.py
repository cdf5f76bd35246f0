"""TVNet: structure, gradients through the unrolled network, convergence to TV-L1, losses, registry."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from repro.flow.methods import OpenCVTVL1, TVNetFlow
from repro.flow.pairs import warped_texture_pair
from repro.flow.train import endpoint_error
from repro.models.tvnet import (
    TVNet,
    epe,
    load_tvnet,
    num_pyramid_scales,
    parse_tvnet_name,
    pyramid_size,
    save_tvnet,
    tvnet_flow_loss,
    tvnet_multitask_loss,
)
from repro.models.tvnet_action import TVNetActionNet
from repro.registry import create_model, list_models



def _tensors(pair):
    to_t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float()  # noqa: E731
    return to_t(pair.frame0), to_t(pair.frame1)


def test_names_and_pyramid_rules():
    assert parse_tvnet_name("tvnet-50") == (1, 1, 50)
    assert parse_tvnet_name("TVNet-3-1-10") == (3, 1, 10)
    assert parse_tvnet_name("tvnet_1_3_10") == (1, 3, 10)
    with pytest.raises(ValueError, match="tvnet-Ns-Nw-Ni"):
        parse_tvnet_name("tvnet-3-1")
    # release: 1 + log(sqrt(H^2+W^2)/4)/log(2) = 7.64 at 240x320 -> capped by Ns
    assert num_pyramid_scales(240, 320, 5) == 5
    assert num_pyramid_scales(240, 320, 9) == 7
    assert num_pyramid_scales(12, 16, 5) == 3  # diag 20 -> 1 + floor(log2(5)) = 3
    assert pyramid_size(240, 320, 0.5**4) == (15, 20)
    assert TVNet(3, 1, 10).name == "TVNet-3-1-10"


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="image_size"):
        TVNet(1, 1, 5, trainable="u0")
    with pytest.raises(ValueError, match="num_iters"):
        TVNet(1, 1, 0)
    with pytest.raises(ValueError, match="frame0/frame1"):
        TVNet(1, 1, 2)(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))


def test_parameters_per_layer_and_trainable_modes():
    fixed = TVNet(2, 3, 4)
    assert fixed.forward_x.shape == (2, 3, 4, 2, 1, 1, 2)
    assert not any(p.requires_grad for p in fixed.parameters())
    u0_only = TVNet(1, 1, 4, trainable="u0", image_size=(12, 16))
    assert [n for n, p in u0_only.named_parameters() if p.requires_grad] == ["u0"]
    assert u0_only.u0.shape == (1, 2, 12, 16)
    every = TVNet(1, 1, 4, trainable="all", image_size=(12, 16))
    trained = {n for n, p in every.named_parameters() if p.requires_grad}
    assert trained == {"u0", "forward_x", "forward_y", "divergence_x", "divergence_y"}  # centred fixed (release)


def test_zero_motion_gives_zero_flow_and_clip_interface():
    torch.manual_seed(0)
    frame = torch.rand(2, 3, 12, 16) * 255
    flow = TVNet(2, 2, 5)(frame, frame)
    assert flow.shape == (2, 2, 12, 16)
    assert flow.abs().max() < 1e-4
    clip = torch.rand(1, 3, 4, 12, 16) * 255
    flows = TVNet(1, 1, 3)(clip)
    assert flows.shape == (1, 2, 3, 12, 16)
    torch.testing.assert_close(flows[:, :, 1], TVNet(1, 1, 3)(clip[:, :, 1], clip[:, :, 2]))


def test_gradcheck_through_unrolled_multiscale_network():
    """torch.autograd.gradcheck on tiny double inputs: frames, u0 and every filter."""
    torch.manual_seed(1)
    model = TVNet(2, 2, 2, trainable="all", image_size=(8, 10)).double()
    with torch.no_grad():
        model.u0.normal_(0, 0.3)
        for name in ("forward_x", "forward_y", "divergence_x", "divergence_y"):
            getattr(model, name).add_(0.05 * torch.randn_like(getattr(model, name)))
    frame0 = (torch.rand(1, 1, 8, 10, dtype=torch.float64) * 255).requires_grad_()
    frame1 = (torch.rand(1, 1, 8, 10, dtype=torch.float64) * 255).requires_grad_()
    names = ("u0", "forward_x", "divergence_y")

    def run(u0, fx, dy):
        params = dict(zip(names, (u0, fx, dy)))
        return torch.func.functional_call(model, params, (frame0.detach(), frame1.detach()))

    # Finite differences of frames are taken in grey levels; the network is piecewise smooth.
    assert torch.autograd.gradcheck(lambda f0, f1: model(f0, f1), (frame0, frame1), eps=1e-4, atol=1e-4, rtol=1e-3)
    inputs = tuple(getattr(model, n).detach().clone().requires_grad_() for n in names)
    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)


def test_untrained_tvnet_converges_toward_tvl1_solution():
    """EPE falls with iterations and matches OpenCV TV-L1 at equal scales/warps/iterations."""
    pair = warped_texture_pair(48, 64, seed=3, max_flow=1.5)
    zero_epe = endpoint_error(np.zeros_like(pair.flow), pair.flow, pair.valid)
    errors = {}
    for iters in (5, 20, 60):
        flow = TVNetFlow(TVNet(1, 1, iters))(pair.frame0, pair.frame1)
        errors[iters] = endpoint_error(flow, pair.flow, pair.valid)
    assert errors[60] < errors[20] < errors[5] < zero_epe
    for structure in ((1, 1, 60), (3, 2, 20)):
        ours = endpoint_error(TVNetFlow(TVNet(*structure))(pair.frame0, pair.frame1), pair.flow, pair.valid)
        theirs = endpoint_error(OpenCVTVL1(structure)(pair.frame0, pair.frame1), pair.flow, pair.valid)
        assert ours < 0.5 * zero_epe
        assert abs(ours - theirs) <= 0.15 * theirs + 0.01, (structure, ours, theirs)


def test_bicubic_warp_variant_runs_and_is_close():
    pair = warped_texture_pair(32, 40, seed=4, max_flow=1.0)
    f0, f1 = _tensors(pair)
    bilinear = TVNet(1, 2, 10)(f0, f1)
    bicubic = TVNet(1, 2, 10, warp_mode="bicubic")(f0, f1)
    assert (bilinear - bicubic).abs().mean() < 0.1


def test_losses():
    pair = warped_texture_pair(24, 32, seed=5, max_flow=1.0)
    f0, f1 = _tensors(pair)
    gt = torch.from_numpy(pair.flow).permute(2, 0, 1)[None]
    assert epe(gt, gt).item() == pytest.approx(0.0, abs=1e-8)
    shifted = gt + torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
    assert epe(shifted, gt).item() == pytest.approx(5.0, rel=1e-5)
    model = TVNet(1, 1, 3)
    # the energy is lower at the true flow than at zero flow (Eq. 1 with exact warping)
    assert tvnet_flow_loss(model, gt, f0, f1) < tvnet_flow_loss(model, torch.zeros_like(gt), f0, f1)
    clip = torch.stack([f0[0], f1[0], f1[0]], dim=1)[None]  # (1, 3, T=3, H, W)
    flows = model(clip)
    logits = torch.tensor([[2.0, 0.0]])
    loss = tvnet_multitask_loss(logits, torch.tensor([0]), model, flows, clip, flow_weight=0.1)
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([0])) + 0.1 * tvnet_flow_loss(
        model, flows.transpose(1, 2).reshape(-1, 2, 24, 32), clip[:, :, :-1].transpose(1, 2).reshape(-1, 3, 24, 32),
        clip[:, :, 1:].transpose(1, 2).reshape(-1, 3, 24, 32))
    torch.testing.assert_close(loss, expected)


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(2)
    model = TVNet(1, 1, 3, trainable="all", image_size=(12, 16))
    with torch.no_grad():
        model.u0.normal_()
        model.forward_x.mul_(1.1)
    path = tmp_path / "tvnet.pt"
    save_tvnet(model, path)
    loaded = load_tvnet(path)
    assert loaded.config() == model.config()
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)


def test_registered_constructors():
    names = list_models("tvnet*")
    flow_names = {"tvnet_10", "tvnet_30", "tvnet_50", "tvnet_3_1_10", "tvnet_1_3_10"}
    assert flow_names | {f"{n}_action" for n in flow_names} <= set(names)
    flow_net = create_model("tvnet_3_1_10")
    assert isinstance(flow_net, TVNet) and flow_net.name == "TVNet-3-1-10"
    torch.manual_seed(0)
    action = create_model("tvnet_10_action", num_classes=5, num_frames=3, backbone="resnet18")
    assert isinstance(action, TVNetActionNet) and action.tvnet.name == "TVNet-1-1-10"
    logits = action(torch.rand(2, 3, 3, 32, 32) * 255)
    assert logits.shape == (2, 5)
    # a name never changes the type it returns: the flow network refuses a class count
    with pytest.raises(ValueError, match="tvnet_10_action"):
        create_model("tvnet_10", num_classes=5)


@pytest.mark.slow
def test_compiled_iterations_match_eager():
    """torch.compile-fused iterations (opt-in speed path; the inductor kernel, not the native
    solver, which tests/test_tvl1_native.py checks) compute the same flow."""
    pair = warped_texture_pair(24, 32, seed=6, max_flow=1.0)
    f0, f1 = _tensors(pair)
    model = TVNet(2, 1, 5)
    with torch.inference_mode():
        eager = model(f0, f1)
        fused = model.use_compiled_iterations(native=False)(f0, f1)
    torch.testing.assert_close(fused, eager, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("iters", [1, 7, 40])
def test_without_preprocessing_tvnet_equals_opencv_tvl1(iters):
    """One scale, one warp from u = 0 needs no interpolation, so TVNet is *exactly* TV-L1 there:
    without the release's normalisation/smoothing it reproduces OpenCV's DualTVL1 (float rounding)."""
    from repro.flow.methods import to_grey_uint8

    pair = warped_texture_pair(30, 40, seed=8, max_flow=2.0)
    grey0, grey1 = to_grey_uint8(pair.frame0), to_grey_uint8(pair.frame1)
    theirs = OpenCVTVL1((1, 1, iters))(grey0, grey1)
    model = TVNet(1, 1, iters, normalise=False, presmooth=False)
    ours = TVNetFlow(model)(grey0[..., None], grey1[..., None])
    assert np.abs(theirs).max() > 0.1
    np.testing.assert_allclose(ours, theirs, atol=2e-4)
