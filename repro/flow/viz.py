"""Middlebury colour-wheel visualisation of optical flow (Baker et al., IJCV 2011).

The wheel has 55 hues in six ramps -- red->yellow 15, yellow->green 6, green->cyan 4,
cyan->blue 11, blue->magenta 13, magenta->red 6 -- as in the benchmark's ``colorcode`` /
``flowToColor``.  Direction picks the hue (angle of ``(-u, -v)`` as in the reference code), the
magnitude normalised by the largest one (or ``max_flow``) the saturation; magnitudes beyond 1
are darkened.  Unknown flow (NaN, inf, or above 1e9) is drawn black.
"""
from __future__ import annotations

import numpy as np

__all__ = ["make_colour_wheel", "flow_to_colour"]

_RAMPS = ((15, (255, 0, 0), (255, 255, 0)), (6, (255, 255, 0), (0, 255, 0)), (4, (0, 255, 0), (0, 255, 255)),
          (11, (0, 255, 255), (0, 0, 255)), (13, (0, 0, 255), (255, 0, 255)), (6, (255, 0, 255), (255, 0, 0)))


def make_colour_wheel() -> np.ndarray:
    """``(55, 3)`` float RGB in [0, 255]: linear ramps between the six primaries/secondaries."""
    colours = []
    for steps, start, end in _RAMPS:
        start, end = np.asarray(start, float), np.asarray(end, float)
        for k in range(steps):
            colours.append(start + np.sign(end - start) * np.floor(255 * k / steps))  # floored as in colorcode
    return np.stack(colours)


def flow_to_colour(flow: np.ndarray, max_flow: float | None = None) -> np.ndarray:
    """``(H, W, 2)`` flow -> ``(H, W, 3)`` uint8 RGB image."""
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow: expected (H, W, 2), got {flow.shape}")
    u, v = flow[..., 0].copy(), flow[..., 1].copy()
    unknown = ~np.isfinite(u) | ~np.isfinite(v) | (np.abs(u) > 1e9) | (np.abs(v) > 1e9)
    u[unknown] = 0
    v[unknown] = 0
    radius = np.sqrt(u * u + v * v)
    scale = float(max_flow) if max_flow is not None else float(radius.max(initial=0.0))
    if scale > 0:
        u, v, radius = u / scale, v / scale, radius / scale
    wheel = make_colour_wheel()
    ncols = len(wheel)
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]
    position = (angle + 1) / 2 * (ncols - 1)
    k0 = np.floor(position).astype(int)
    k1 = (k0 + 1) % ncols
    frac = (position - k0)[..., None]
    colour = ((1 - frac) * wheel[k0] + frac * wheel[k1]) / 255.0
    inside = (radius <= 1)[..., None]
    saturated = 1 - radius[..., None] * (1 - colour)  # white at zero flow, full colour at radius 1
    colour = np.where(inside, saturated, colour * 0.75)
    colour[unknown] = 0
    return np.clip(np.floor(255 * colour), 0, 255).astype(np.uint8)
