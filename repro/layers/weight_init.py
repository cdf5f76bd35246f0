"""torchvision's video-ResNet weight initialisation."""
from __future__ import annotations

import torch.nn as nn

__all__ = ["init_video_weights"]


def init_video_weights(model: nn.Module) -> None:
    """Kaiming (fan_out) convs with zero bias, BN weight 1 / bias 0, fc N(0, 0.01) with zero bias."""
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
