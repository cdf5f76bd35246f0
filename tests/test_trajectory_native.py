"""The optional native gather of the trajectory conv's fast path against the PyTorch path and the
loop reference (values, not timings).

Tolerance: the native pass sums the same float32 products tap by tap (the PyTorch path corner by
corner, then adds the bias): equal to rounding, a few 1e-6 on outputs of order 10 here.
"""
from __future__ import annotations

import pytest
import torch

from repro.ops import native, trajectory_native
from repro.ops.trajectory_conv import _native_positions, _takes_native, trajectory_conv, trajectory_conv_reference
from repro.ops.trajectory_native import SWITCH, native_unavailable, trajectory_gather_native

needs_native = pytest.mark.skipif(native_unavailable() is not None, reason=f"native gather: {native_unavailable()}")


def _case(n, c, t, h, w, dt, flow_scale, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, t, h, w, generator=g)
    flows = [torch.randn(n, 2, t, h, w, generator=g) * flow_scale for _ in range(2)]
    weight = torch.randn(c + 3, c, 2 * dt + 1, 1, 1, generator=g)
    bias = torch.randn(c + 3, generator=g)
    return x, *flows, weight, bias


def _pytorch_path(monkeypatch, *args):
    monkeypatch.setenv(SWITCH, "0")
    try:
        return trajectory_conv(*args)
    finally:
        monkeypatch.delenv(SWITCH)


@needs_native
@pytest.mark.parametrize("n, c, t, h, w, dt, flow_scale", [
    (1, 16, 4, 8, 8, 1, 2.0),  # one clip, 64 pixels: whole blocks of 16
    (2, 5, 4, 7, 9, 1, 6.0),  # 63 pixels a frame (a partial block), flows far out of the frame
    (2, 37, 5, 6, 11, 2, 3.0),  # Δt = 2: chained positions, two taps a side
    (1, 3, 3, 4, 4, 0, 1.0),  # K = 1: the centre tap only
])
@pytest.mark.parametrize("with_bias", [True, False])
def test_native_equals_pytorch_path_and_reference(monkeypatch, n, c, t, h, w, dt, flow_scale, with_bias):
    x, ff, fb, weight, bias = _case(n, c, t, h, w, dt, flow_scale)
    bias = bias if with_bias else None
    with torch.no_grad():
        assert _takes_native(x, ff, fb, weight, bias)
        fast = trajectory_conv(x, ff, fb, weight, bias)
        plain = _pytorch_path(monkeypatch, x, ff, fb, weight, bias)
        reference = trajectory_conv_reference(x, ff, fb, weight, bias)
    assert fast.shape == plain.shape == (n, c + 3, t, h, w) and fast.is_contiguous()
    assert (fast - plain).abs().max().item() < 2e-5
    assert (fast - reference).abs().max().item() < 5e-4  # the reference chains Δt = 2 by grid_sample


@needs_native
def test_threads_split_the_frames_exactly():
    x, ff, fb, weight, bias = _case(2, 8, 3, 5, 6, 1, 2.0)
    threads = torch.get_num_threads()
    try:
        with torch.no_grad():
            torch.set_num_threads(1)
            one = trajectory_conv(x, ff, fb, weight, bias)
            torch.set_num_threads(3)
            three = trajectory_conv(x, ff, fb, weight, bias)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, three)  # the same sums per pixel, whichever thread ran its frame


@needs_native
def test_a_shifted_clip_is_gathered_from_the_neighbour_frames():
    # integer flow (+1, 0) forward and (-1, 0) backward: tap τ = +1 reads frame t+1 one pixel right
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(1, 2, 3, 4, 5)
    ff = torch.zeros(1, 2, 3, 4, 5)
    ff[:, 0] = 1.0
    fb = -ff
    weight = torch.zeros(2, 2, 3, 1, 1)
    weight[0, 0, 2] = 1.0  # output 0 = channel 0 of the τ = +1 tap
    with torch.no_grad():
        out = trajectory_gather_native(*_table_and_positions(x, ff, fb, weight), None, (1, 3, 4, 5), 1)
    out = out.view(1, 2, 3, 4, 5)
    expected = torch.zeros(3, 4, 5)
    expected[:2, :, :4] = x[0, 0, 1:, :, 1:]  # frame t+1, column x+1; the last frame and column pad 0
    assert torch.equal(out[0, 0], expected) and not out[0, 1].any()


def _table_and_positions(x, ff, fb, weight):
    n, c, t, h, w = x.shape
    k = weight.shape[2]
    w_all = weight.reshape(weight.shape[0], c, k).permute(2, 0, 1).reshape(-1, c)
    table = (x.reshape(n, c, -1).transpose(1, 2) @ w_all.t()).reshape(-1, weight.shape[0])
    return table, _native_positions(ff, fb, k // 2, (n, t, h, w))


def test_not_taken_with_autograd_channels_last_float64_or_when_off(monkeypatch):
    x, ff, fb, weight, bias = _case(1, 4, 3, 4, 4, 1, 1.0)
    assert not _takes_native(x, ff, fb, weight.requires_grad_(), bias)  # training: the autograd path
    with torch.no_grad():
        assert not _takes_native(x.to(memory_format=torch.channels_last_3d), ff, fb, weight, bias)
        assert not _takes_native(x.double(), ff, fb, weight, bias)
        monkeypatch.setenv(SWITCH, "0")
        assert f"{SWITCH}=0" in native_unavailable()
        assert not _takes_native(x, ff, fb, weight, bias)
        with pytest.raises(RuntimeError, match="native trajectory gather unavailable"):
            trajectory_gather_native(*_table_and_positions(x, ff, fb, weight), None, (1, 3, 4, 4), 1)


def test_no_compiler_says_why(monkeypatch):
    trajectory_native._load.cache_clear()
    try:
        monkeypatch.setattr(native, "compiler", lambda: None)
        assert "no C compiler" in native_unavailable()
        x, ff, fb, weight, bias = _case(1, 4, 3, 4, 4, 1, 1.0)
        with torch.no_grad():  # the PyTorch path runs instead
            assert not _takes_native(x, ff, fb, weight, bias)
            assert trajectory_conv(x, ff, fb, weight, bias).shape == (1, 7, 3, 4, 4)
    finally:
        trajectory_native._load.cache_clear()
