"""TVNet Table 3 models: the end-to-end action net in its three modes and the flow-input
baseline classifier (tiny clips, TVNet-10, random init)."""
from __future__ import annotations

import pytest
import torch

from repro.models.contract import ModelOutput, takes_flow
from repro.models.tvnet_action import FLOW_LOSS_WEIGHT, FlowStreamNet, TVNetActionNet
from repro.registry import create_model

FRAMES, SIZE, CLASSES = 3, 16, 5


def _action_net(mode: str, **kwargs) -> TVNetActionNet:
    return create_model("tvnet_10_action", num_classes=CLASSES, num_frames=FRAMES, backbone="small", width=4,
                        tvnet_mode=mode, image_size=(SIZE, SIZE), **kwargs)


def _clip(batch: int = 2) -> torch.Tensor:
    """A textured clip translating one pixel right per frame (ImageNet-normalised-ish values)."""
    torch.manual_seed(0)
    base = torch.rand(batch, 3, SIZE + FRAMES, SIZE + FRAMES)
    frames = [base[:, :, :SIZE, t:t + SIZE] for t in range(FRAMES - 1, -1, -1)]
    return torch.stack(frames, dim=2) * 4 - 2


def test_frozen_mode_has_no_trainable_tvnet_params():
    torch.manual_seed(0)
    model = _action_net("frozen")
    assert [n for n, p in model.named_parameters() if p.requires_grad and n.startswith("tvnet.")] == []
    assert sum(p.numel() for p in model.classifier.parameters() if p.requires_grad) > 0
    model.train()
    logits = model(_clip())
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, CLASSES)
    logits.sum().backward()
    assert all(p.grad is None for p in model.tvnet.parameters())
    assert model.classifier.cnn[0].weight.grad is not None


@pytest.mark.parametrize("mode", ["finetune", "finetune_flow_loss"])
def test_finetune_modes_train_tvnet(mode):
    torch.manual_seed(0)
    model = _action_net(mode)
    trainable = {n for n, p in model.tvnet.named_parameters() if p.requires_grad}
    assert {"u0", "forward_x", "forward_y", "divergence_x", "divergence_y"} <= trainable
    model.eval()
    assert model(_clip()).shape == (2, CLASSES)  # evaluation: logits only, in every mode


def test_finetune_without_flow_loss_returns_logits_only():
    torch.manual_seed(0)
    model = _action_net("finetune").train()
    out = model(_clip())
    assert isinstance(out, torch.Tensor) and out.shape == (2, CLASSES)
    assert model.forward_output(_clip()).losses == {}  # no flow loss in this mode
    out.logsumexp(1).mean().backward()
    assert model.tvnet.forward_x.grad is not None and model.tvnet.forward_x.grad.abs().sum() > 0


def test_flow_loss_mode_returns_weighted_aux_loss_with_gradient_to_tvnet():
    torch.manual_seed(0)
    model = _action_net("finetune_flow_loss").train()
    clip = _clip()
    out = model.forward_output(clip)
    assert isinstance(out, ModelOutput) and out.flow is None
    logits, aux = out.logits, out.losses
    assert logits.shape == (2, CLASSES) and set(aux) == {"flow"}
    flow_term = aux["flow"]
    assert flow_term.dim() == 0 and torch.isfinite(flow_term) and flow_term > 0
    # lambda L_f with lambda = 0.1 (Eq. 13), L_f recomputed from the net's own flows
    with torch.no_grad():
        flow, frames = model.compute_flow(clip)
        torch.testing.assert_close(flow_term.detach(), FLOW_LOSS_WEIGHT * model.flow_loss(flow, frames))
    flow_term.backward()  # the flow term alone reaches TVNet's u0 and difference filters
    for name in ("u0", "forward_x", "forward_y", "divergence_x", "divergence_y"):
        grad = getattr(model.tvnet, name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert model.classifier.cnn[0].weight.grad is None  # L_f does not depend on the classifier


def test_action_net_takes_no_precomputed_flow_and_checks_frames():
    model = _action_net("frozen")
    assert not takes_flow(model)
    with pytest.raises(ValueError, match="T=3"):
        model(torch.zeros(1, 3, FRAMES + 1, SIZE, SIZE))


def test_bad_mode_and_untrainable_tvnet_are_rejected():
    with pytest.raises(ValueError, match="tvnet_mode"):
        _action_net("all")
    from repro.models.tvnet import TVNet

    with pytest.raises(ValueError, match="trainable='all'"):
        TVNetActionNet(TVNet(1, 1, 2), CLASSES, FRAMES, "small", tvnet_mode="finetune")


def test_flow_stream_net_uses_the_clip_flows():
    torch.manual_seed(0)
    model = create_model("flow_stream_net", num_classes=CLASSES, num_frames=FRAMES, backbone="small", width=4)
    assert isinstance(model, FlowStreamNet) and takes_flow(model)
    model.eval()
    video = torch.zeros(2, 3, FRAMES, SIZE, SIZE)
    flow_fwd = torch.randn(2, 2, FRAMES, SIZE, SIZE)
    logits = model(video, flow_fwd=flow_fwd, flow_bwd=None)
    assert logits.shape == (2, CLASSES)
    # the last forward flow points past the clip and is not used
    changed = flow_fwd.clone()
    changed[:, :, -1] = 100.0
    torch.testing.assert_close(model(video, flow_fwd=changed), logits)
    with pytest.raises(ValueError, match="flow_fwd"):
        model(video)


def test_frozen_action_net_equals_flow_stream_net_on_tvnet_flow():
    """Same classifier weights: the end-to-end net is the baseline classifier on TVNet's flow."""
    torch.manual_seed(0)
    action = _action_net("frozen").eval()
    stream = create_model("flow_stream_net", num_classes=CLASSES, num_frames=FRAMES, backbone="small", width=4).eval()
    stream.classifier.load_state_dict(action.classifier.state_dict())
    clip = _clip()
    flow, _ = action.compute_flow(clip)
    flow_fwd = torch.cat((flow, torch.zeros_like(flow[:, :, :1])), dim=2)
    torch.testing.assert_close(stream(clip, flow_fwd=flow_fwd), action(clip))


def test_registered_action_net_passes_classifier_args():
    """Spec ``model_args`` (width, dropout) reach the classifier, TVNet args reach TVNet."""
    model = create_model("tvnet_50_action", num_classes=CLASSES, num_frames=FRAMES, backbone="small", width=4,
                         dropout=0.0, tvnet_mode="finetune", image_size=[SIZE, SIZE])
    assert model.classifier.cnn[-2].p == 0.0 and model.classifier.cnn[0].out_channels == 4
    assert model.tvnet.trainable == "all" and tuple(model.tvnet.u0.shape[-2:]) == (SIZE, SIZE)
