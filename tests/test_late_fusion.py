"""Late fusion (TrajectoryNet Table 3's two-stream S3D, LGD Tables 4-6's two-stream LGD-3D)."""
import pytest
import torch

from repro.models.contract import FLOW_INPUT_SCALE
from repro.registry import create_model


def test_the_fused_logits_are_the_mean_of_the_rgb_stream_and_the_flow_stream_on_flow_over_20():
    torch.manual_seed(0)
    model = create_model("lgd3d_two_stream_resnet101", num_classes=5, width=0.25).eval()
    video, flow = torch.randn(2, 3, 4, 32, 32), 3 * torch.randn(2, 2, 4, 32, 32)
    with torch.no_grad():
        fused = model(video, flow)
        expected = 0.5 * (model.appearance(video) + model.motion(flow * FLOW_INPUT_SCALE))
    torch.testing.assert_close(fused, expected, rtol=0, atol=0)
    assert model.motion.in_chans == 2 and model.appearance.stage == model.motion.stage == 2
    with pytest.raises(ValueError, match="flow_fwd: this model needs the flow"):
        model(video)


def test_streams_with_auxiliary_training_losses_are_not_fused_in_training():
    model = create_model("lgd3d_two_stream_resnet101", num_classes=5, width=0.25, stage=1).train()
    with pytest.raises(ValueError, match="auxiliary training losses \\(two_heads\\)"):
        model(torch.randn(2, 3, 4, 32, 32), torch.randn(2, 2, 4, 32, 32))
