"""Channel counts under a width multiplier (timm's / MobileNet's rounding)."""
from __future__ import annotations

__all__ = ["stage_channels"]


def stage_channels(channels: int, width: float) -> int:
    """``channels`` scaled by the width multiplier, at least 8 and a multiple of 8 (the rounding
    timm and MobileNet use for width multipliers); ``width=1`` returns ``channels``."""
    if width <= 0:
        raise ValueError(f"width: expected a positive multiplier, got {width}")
    return max(8, int(round(channels * width / 8)) * 8)
