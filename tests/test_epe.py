"""End-point error (TVNet Eq. 14): the one implementation against a per-pixel loop."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from repro.flow.train import endpoint_error
from repro.ops.epe import end_point_error


def _loop_epe(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``(B, 2, H, W)`` -> ``(B, H, W)``, one pixel at a time."""
    out = torch.empty(pred.shape[0], *pred.shape[2:], dtype=torch.float64)
    for b in range(pred.shape[0]):
        for y in range(pred.shape[2]):
            for x in range(pred.shape[3]):
                du = float(pred[b, 0, y, x]) - float(gt[b, 0, y, x])
                dv = float(pred[b, 1, y, x]) - float(gt[b, 1, y, x])
                out[b, y, x] = math.sqrt(du * du + dv * dv)
    return out


def test_matches_the_loop_and_3_4_5():
    g = torch.Generator().manual_seed(0)
    pred, gt = torch.randn(2, 2, 3, 4, generator=g), torch.randn(2, 2, 3, 4, generator=g)
    got = end_point_error(pred, gt)
    assert got.shape == (2, 3, 4) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), _loop_epe(pred, gt), rtol=1e-6, atol=1e-6)
    assert end_point_error(torch.zeros(1, 2, 1, 1), torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)).item() == 5.0


def test_channel_last_float64_and_eps():
    g = torch.Generator().manual_seed(1)
    pred, gt = torch.randn(3, 5, 2, generator=g, dtype=torch.float64), torch.randn(3, 5, 2, generator=g,
                                                                                  dtype=torch.float64)
    got = end_point_error(pred, gt, dim=-1)
    assert got.dtype == torch.float64
    expected = _loop_epe(pred.permute(2, 0, 1).unsqueeze(0), gt.permute(2, 0, 1).unsqueeze(0))[0]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    # eps keeps the gradient finite where the flows agree (TVNet's supervised loss)
    same = torch.zeros(1, 2, 2, 2, requires_grad=True)
    end_point_error(same, torch.zeros(1, 2, 2, 2), eps=1e-20).sum().backward()
    assert torch.isfinite(same.grad).all()


def test_flow_benchmark_mean_over_valid_pixels():
    flow = np.zeros((2, 2, 2), np.float32)
    target = np.zeros((2, 2, 2), np.float32)
    target[0, 0] = (3.0, 4.0)
    valid = np.array([[True, True], [False, False]])
    assert endpoint_error(flow, target, valid) == pytest.approx(2.5)
    assert endpoint_error(flow, target) == pytest.approx(1.25)


def test_bad_shapes_name_the_flow():
    with pytest.raises(ValueError, match="flow"):
        end_point_error(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="flow"):
        end_point_error(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 3))
