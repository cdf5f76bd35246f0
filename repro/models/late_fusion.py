"""Late fusion of two streams (Simonyan & Zisserman 2014): an appearance network on the RGB clip
and a motion network on its forward flow, their class scores averaged.

TrajectoryNet Table 3's two-stream S3D and LGD Tables 4-6's two-stream LGD-3D are such pairs.  The
papers train each stream on its own and average the two trained streams' scores; trained as one
module (``forward`` at training), the averaged logits are optimised instead -- say so in a spec that
trains one.  A stream that adds auxiliary training losses (LGD's stage-1 two heads, Eq. 6) is not
fused: its correction term is defined for its own logits, not for their average.
"""
from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from repro.models.contract import FLOW_INPUT_SCALE, FLOW_INPUTS, VideoModel, model_output, require_flows

__all__ = ["LateFusion"]


class LateFusion(VideoModel):
    """``(appearance(video) + motion(flow_fwd / 20)) / 2``.

    ``appearance`` takes the clip ``(N, 3, T, H, W)``; ``motion`` takes the forward flow in pixels
    scaled by :data:`~repro.models.contract.FLOW_INPUT_SCALE` ``(N, 2, T, H, W)`` (a 2-channel
    network).  Equal weights: neither paper states its fusion weights.
    """

    inputs = ("video", *FLOW_INPUTS)

    def __init__(self, appearance: nn.Module, motion: nn.Module) -> None:
        super().__init__()
        self.appearance, self.motion = appearance, motion

    def forward(self, video: Tensor, flow_fwd: Tensor | None = None, flow_bwd: Tensor | None = None) -> Tensor:
        flow_fwd, _ = require_flows(flow_fwd, flow_bwd, video)
        # [unstated] equal weights
        return 0.5 * (self._stream(self.appearance, video) + self._stream(self.motion, flow_fwd * FLOW_INPUT_SCALE))

    def _stream(self, net: nn.Module, x: Tensor) -> Tensor:
        if not self.training:
            return net(x)
        out = model_output(net, x)
        if out.losses:
            raise ValueError(f"LateFusion: the {type(net).__name__} stream adds auxiliary training losses "
                             f"({', '.join(out.losses)}); train the streams apart and fuse their scores")
        return out.logits
