"""Flow pictures for the report: TVNet and classical methods on one synthetic pair with known flow,
drawn with the Middlebury colour wheel (:mod:`repro.flow.viz`), one shared colour scale."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FLOW_METHODS", "render_flow_pictures", "colour_wheel_legend"]

#: Quick at the pair's size (a few seconds together on one core): TVNet (the paper's 50 iterations)
#: and the classical methods of TVNet Table 1.
FLOW_METHODS = ("tvnet-50", "tvl1", "dis-fast", "farneback")


def colour_wheel_legend(size: int = 96) -> np.ndarray:
    """The colour wheel itself: each pixel coloured as the flow pointing from the centre to it."""
    from repro.flow.viz import flow_to_colour

    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    c = (size - 1) / 2
    flow = np.stack([xs - c, ys - c], axis=-1)
    outside = np.hypot(flow[..., 0], flow[..., 1]) > c
    image = flow_to_colour(flow, max_flow=c)
    image[outside] = 255
    return image


def render_flow_pictures(out_dir: Path, methods=FLOW_METHODS, size: tuple[int, int] = (96, 128),
                         seed: int = 0, motion: str = "rotating_something_clockwise") -> list[dict[str, Any]]:
    """Write ``frame0.png``, ``frame1.png``, ``gt.png``, ``wheel.png`` and ``<method>.png`` under
    ``out_dir``; return one entry per picture (file, caption, EPE against the known flow).  A rotating
    object (``motion``) shows every direction of the wheel; a translation would show one colour."""
    from repro.data.video_io import write_png
    from repro.flow.methods import create_flow_method
    from repro.flow.pairs import synthetic_benchmark_pairs
    from repro.flow.train import endpoint_error
    from repro.flow.viz import flow_to_colour

    out_dir.mkdir(parents=True, exist_ok=True)
    pair = synthetic_benchmark_pairs(size, count=1, seed=seed, classes=[motion])[0]
    scale = float(np.hypot(pair.flow[..., 0], pair.flow[..., 1]).max()) or 1.0
    shown = [{"file": "frame0.png", "caption": "frame 0"}, {"file": "frame1.png", "caption": "frame 1"},
             {"file": "gt.png", "caption": f"known flow (max {scale:.2f} px)"},
             {"file": "wheel.png", "caption": "colour wheel: direction = hue, length = saturation"}]
    write_png(out_dir / "frame0.png", pair.frame0)
    write_png(out_dir / "frame1.png", pair.frame1)
    write_png(out_dir / "gt.png", flow_to_colour(pair.flow, max_flow=scale))
    write_png(out_dir / "wheel.png", colour_wheel_legend())
    for name in methods:
        method = create_flow_method(name)
        start = time.perf_counter()
        flow = method(pair.frame0, pair.frame1)
        seconds = time.perf_counter() - start
        epe = endpoint_error(flow, pair.flow, pair.valid)
        file = f"{name}.png"
        write_png(out_dir / file, flow_to_colour(flow, max_flow=scale))
        shown.append({"file": file, "caption": f"{method.name}: EPE {epe:.3f} px ({seconds:.2f} s)", "epe": epe,
                      "method": method.name})
    return [{**s, "pair": pair.name} for s in shown]
