"""Every registered model follows the model contract (repro.models.contract), in the spirit of
torchvision's ``test_video_model``: it builds, takes its example inputs, runs forward and backward,
returns a ModelOutput (and a plain tensor from ``forward``), keeps its pinned parameter count and
one type per name, and profiles with every op counted -- at a small input, to stay fast."""
from __future__ import annotations

import typing

import pytest
import torch

from repro.engine.testing import TinyVideoNet
from repro.models.contract import (
    ModelOutput,
    OutputForward,
    VideoModel,
    model_inputs,
    model_output,
    takes_flow,
    training_stages,
)
from repro.profile import count_params, profile
from repro.registry import create_model, list_models, model_entry

#: Parameters of every registered model at its default arguments (seed-independent).  Reference
#: figures are checked elsewhere (torchvision / timm parity in test_video_resnet.py, TrajectoryNet
#: Table 3 in test_trajectorynet.py); this pins them so a refactor cannot move them silently.
PARAMS = {
    "c2d_resnet101": 43_319_760, "c2d_resnet18": 11_381_712, "c2d_resnet34": 21_489_872,
    "c2d_resnet50": 24_327_632, "flow_stream_net": 11_250_277,
    "lgd2d_resnet50": 32_341_856, "lgd2d_resnet101": 58_018_656, "lgd3d_resnet50": 36_134_240,
    "lgd3d_resnet101": 65_162_080, "mc3_18": 11_695_440, "mc3_34": 21_951_056,
    # two stage-2 LGD-3D R101 streams (70,076,880 each: the combination classifier in place of the
    # two stage-1 heads) less the flow stream's conv1 input channel (64 x 1 x 1 x 7 x 7 = 3,136)
    "lgd3d_two_stream_resnet101": 140_150_624,
    "motionnet_17": 42_687_136, "motionnet_2": 41_800_906, "p3d_resnet101": 50_463_184,
    "p3d_resnet50": 28_120_016, "r2plus1d_18": 31_505_325, "r2plus1d_34": 61_831_661, "r3d_18": 33_371_472,
    "r3d_34": 63_681_104, "s3d_resnet18": 15_567_312, "s3d_resnet34": 29_049_808, "s3d_resnet50": 28_107_600,
    "s3d_two_stream_resnet18": 31_131_488, "trajectorynet_resnet18": 15_567_312,
    "tvnet_10": 166, "tvnet_30": 486, "tvnet_50": 806, "tvnet_3_1_10": 498, "tvnet_1_3_10": 486,
    "tvnet_10_action": 11_250_443, "tvnet_30_action": 11_250_763, "tvnet_50_action": 11_251_083,
    "tvnet_3_1_10_action": 11_250_775, "tvnet_1_3_10_action": 11_250_763,
    # Dynamics (issue 14): BN-Inception at 1000 classes is the paper's 11,295,240 (test_bninception.py);
    # each branch at 101 classes is a BN-Inception (10,373,765); the motion branch's per-pair net
    # (motion_layout="pairs", the default since the Table 9 reading, issue 14) feeds the 2-channel map
    # to conv2_3x3_reduce: 2x64 + 64 instead of 64x64 + 64 weights, -3,968 (the "stack" reading was
    # 10,417,861: a 14-channel conv1).
    "bninception": 11_295_240, "dynamics_static_bninception": 10_373_765, "dynamics_motion_bninception": 10_369_797,
    "dynamics_change_bninception": 10_373_765, "dynamics_rgb_diff_bninception": 10_373_765,
    "dynamics_static_motion_bninception": 20_733_962, "dynamics_full_bninception": 31_098_127,
}
#: Default class count of the classifiers (flow networks have none).
CLASSES = {"flow_stream_net": 101, **{f"tvnet_{s}_action": 101 for s in ("10", "30", "50", "3_1_10", "1_3_10")},
           "bninception": 1000, **{name: 101 for name in PARAMS if name.startswith("dynamics_")}}
FLOW_NETS = {"motionnet_2", "motionnet_17", "tvnet_10", "tvnet_30", "tvnet_50", "tvnet_3_1_10", "tvnet_1_3_10"}


def project_models() -> list[str]:
    """The models registered by the project's model modules (``repro.models.*``); a test may register
    its own (tests/test_engine_cli.py's ``engine_test_tiny_net``) in the same process."""
    return list_models(builtin=True)


def test_every_registered_model_is_pinned_here():
    assert sorted(PARAMS) == project_models()


def test_models_registered_by_tests_are_not_project_models():
    from repro.registry import _MODELS, register_model

    def contract_test_only_net(num_classes: int = 2) -> torch.nn.Module:
        return torch.nn.Linear(3, num_classes)

    register_model(contract_test_only_net)
    try:
        assert "contract_test_only_net" in list_models() and "contract_test_only_net" not in project_models()
        assert "bninception" in project_models()
    finally:
        del _MODELS["contract_test_only_net"]


def _check_inputs(model: VideoModel, inputs: tuple[torch.Tensor, ...], shape: tuple[int, ...]) -> None:
    assert len(inputs) == len(model.inputs) and model.inputs[0] == "video"
    assert tuple(inputs[0].shape) == shape
    for name, x in zip(model.inputs[1:], inputs[1:]):  # flows exist for clips (N, C, T, H, W) only
        n, _, length, height, width = shape
        assert name in ("flow_fwd", "flow_bwd") and tuple(x.shape) == (n, 2, length, height, width)


def _backward(model: torch.nn.Module, out: ModelOutput, video: torch.Tensor) -> None:
    target = out.logits if out.logits is not None else out.flow
    total = target.float().square().mean() + sum(out.losses.values(), torch.zeros(()))
    total.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if trainable:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for _, p in trainable)
        assert all(p.grad is None or torch.isfinite(p.grad).all() for _, p in trainable)
    else:  # a fixed network (plain TV-L1): the gradient reaches the input
        assert video.grad is not None and torch.isfinite(video.grad).all() and video.grad.abs().sum() > 0


@pytest.mark.parametrize("name", project_models())
def test_registered_model_follows_the_contract(name):
    entry = model_entry(name)
    torch.manual_seed(0)
    model = create_model(name)
    # one name, one type: what the constructor declares it returns
    assert isinstance(model, VideoModel) and isinstance(model, typing.get_type_hints(entry.fn)["return"])
    assert count_params(model) == PARAMS[name]
    shape = tuple(entry.test_input or entry.default_input)
    inputs = model.example_inputs(shape)
    _check_inputs(model, inputs, shape)

    model.train()
    video = inputs[0].requires_grad_(True)
    out = model.forward_output(*inputs)
    assert isinstance(out, ModelOutput)
    n = shape[0]
    if name in FLOW_NETS:
        assert out.logits is None and out.flow.shape == (n, 2, shape[2] - 1, *shape[3:])
    else:
        assert out.logits.shape == (n, CLASSES.get(name, 400)) and torch.isfinite(out.logits).all()
    assert all(v.dim() == 0 and torch.isfinite(v) for v in out.losses.values())
    _backward(model, out, video)

    model.eval()
    with torch.no_grad():  # forward: one plain tensor, the eval-mode output's logits (or flow)
        plain = model(*inputs)
        full = model.forward_output(*inputs)
    assert isinstance(plain, torch.Tensor)
    torch.testing.assert_close(plain, full.logits if full.logits is not None else full.flow, rtol=0, atol=0)

    result = profile(model, shape)
    assert result["uncounted_ops"] == {} and result["params"] == PARAMS[name] and result["macs"] > 0


def test_flow_inputs_and_stages_are_declared_not_sniffed():
    flow_fed = create_model("trajectorynet_resnet18", num_classes=3, width=0.25)
    assert takes_flow(flow_fed) and training_stages(flow_fed) == ()
    learnt = create_model("trajectorynet_resnet18", num_classes=3, width=0.25, source="motionnet_2",
                          motionnet_width=0.125)
    assert model_inputs(learnt) == ("video",) and not takes_flow(learnt)
    assert [stage.name for stage in training_stages(learnt)] == ["motionnet_pretrain"]
    plain = torch.nn.Linear(3, 2)  # a plain module: a video-only classifier without stages
    assert model_inputs(plain) == ("video",) and training_stages(plain) == ()
    assert model_output(plain, torch.ones(1, 3)).losses == {}


def test_output_forward_hands_ddp_plain_containers_of_the_same_output():
    torch.manual_seed(0)
    model = TinyVideoNet(3, width=4, aux_loss=True, predicts_flow=True, takes_flow=True).train()
    video, flow = torch.randn(2, 3, 2, 8, 8), torch.randn(2, 2, 2, 8, 8)
    wrapped = OutputForward(model)
    logits, losses, pred = wrapped(video, flow_fwd=flow)
    assert isinstance(losses, dict) and set(losses) == {"feature_l2"} and pred is None
    again = model_output(wrapped, video, flow_fwd=flow)
    torch.testing.assert_close(again.logits, logits)
    assert wrapped.inputs == ("video", "flow_fwd", "flow_bwd")
    model.eval()
    assert model_output(model, video, flow_fwd=flow).flow.shape == (2, 2, 2, 8, 8)


def test_model_output_rejects_non_scalar_losses():
    with pytest.raises(TypeError, match="losses\\['bad'\\]"):
        ModelOutput(torch.zeros(1, 2), {"bad": torch.zeros(3)})
