"""The timm-style classification head of the video networks: global average pool, dropout, fc."""
from __future__ import annotations

import torch.nn as nn
from torch import Tensor

__all__ = ["VideoHead"]


class VideoHead(nn.Module):
    """Mixin giving ``forward_head(features (N, C, T, h, w)) -> logits (N, num_classes)``.

    The network defines ``global_pool`` (``nn.AdaptiveAvgPool3d(1)``), ``dropout`` and ``fc``
    as its own attributes (timm's names, so state-dict keys stay ``fc.weight`` ...).
    """

    global_pool: nn.Module
    dropout: nn.Module
    fc: nn.Linear

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(self.global_pool(x).flatten(1))  # (N, C)
        return x if pre_logits else self.fc(x)
