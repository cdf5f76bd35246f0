"""The displacement-map EPE diagnostic (benchmarks/bench_displacement.py): its EPE recovers a known shift."""
import importlib.util
import math
from pathlib import Path

import torch

from repro.ops.cost_volume import cosine_cost_volume, cost_volume_displacement, wta_displacement

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_displacement.py"
_spec = importlib.util.spec_from_file_location("bench_displacement", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _shifted(dx: int, dy: int, c: int = 8, size: int = 24, seed: int = 0):
    """Random features f0 and f1 = f0 moved by (dx, dy): f1[y + dy, x + dx] = f0[y, x] (wrapping)."""
    g = torch.Generator().manual_seed(seed)
    f0 = torch.randn(2, c, size, size, generator=g)
    return f0, torch.roll(f0, shifts=(dy, dx), dims=(2, 3))


def test_wta_and_a_cold_softmax_recover_a_shift_exactly_where_the_target_is_inside():
    f0, f1 = _shifted(2, 1)
    flow = torch.tensor([2.0, 1.0]).view(1, 2, 1, 1).expand(2, 2, 24, 24)
    valid = bench.target_inside(flow)
    assert not valid[:, -1].any() and not valid[:, :, -2:].any() and valid[:, :-1, :-2].all()
    wta = wta_displacement(cosine_cost_volume(f0, f1, 3), 3)
    out = bench.displacement_epe(wta, flow, valid, stride=1)
    assert out["all"] == 0.0 and out["moving"] == 0.0
    assert math.isclose(out["zero_all"], math.sqrt(5), rel_tol=1e-6) and out["pixels"] == 2 * 23 * 22
    soft = bench.displacement_epe(cost_volume_displacement(f0, f1, 3, 0.001), flow, valid, stride=1)
    assert soft["all"] < 1e-3
    assert bench.displacement_epe(torch.zeros_like(wta), flow, valid, 1)["all"] == out["zero_all"]


def test_the_epe_is_in_input_pixels_on_a_strided_grid():
    # features on a stride-2 grid moved by (1, -1) feature pixels = (2, -2) input pixels
    f0, f1 = _shifted(1, -1, size=12)
    flow = torch.tensor([2.0, -2.0]).view(1, 2, 1, 1).expand(2, 2, 24, 24)
    valid = bench.target_inside(flow)
    gt, ok = bench.flow_on_grid(flow, valid, 2)
    assert gt.shape == (2, 2, 12, 12) and torch.allclose(gt, flow[:, :, ::2, ::2])
    assert not ok[:, 0].any() and ok[:, 1:, :-1].all()  # a block is valid only if all its pixels are
    disp = wta_displacement(cosine_cost_volume(f0, f1, 2), 2)
    out = bench.displacement_epe(disp, flow, valid, stride=2)
    assert out["all"] == 0.0 and math.isclose(out["zero_all"], math.sqrt(8), rel_tol=1e-6)
    # the block average: a flow varying inside a block is compared by its mean
    ramp = torch.zeros(1, 2, 4, 4)
    ramp[:, 0] = torch.arange(4.0)
    assert bench.flow_on_grid(ramp, torch.ones(1, 4, 4, dtype=torch.bool), 2)[0][0, 0].tolist() == [[0.5, 2.5], [0.5, 2.5]]
