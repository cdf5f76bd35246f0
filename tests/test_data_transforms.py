"""Spatial transforms on (C, T, H, W) tensors, and their effect on flow."""
from __future__ import annotations

import pytest
import torch

from repro.data import transforms as tf


def video(c=3, t=2, h=8, w=12):
    return torch.arange(c * t * h * w, dtype=torch.float32).view(c, t, h, w)


def test_ten_crop_corners_centre_and_flips():
    x = video(h=8, w=10)
    boxes = tf.ten_crop_boxes(8, 10, 6)
    assert len(boxes) == 10
    assert [(b.top, b.left) for b in boxes[:5]] == [(0, 0), (0, 4), (2, 0), (2, 4), (1, 2)]
    assert [b.flip for b in boxes] == [False] * 5 + [True] * 5
    top_left = tf.apply_box(x, boxes[0])
    assert torch.equal(top_left, x[..., :6, :6])
    assert torch.equal(tf.apply_box(x, boxes[5]), x[..., :6, :6].flip(-1))


def test_three_crop_along_long_side():
    boxes = tf.three_crop_boxes(6, 12, 6)
    assert [(b.top, b.left) for b in boxes] == [(0, 0), (0, 3), (0, 6)]
    boxes = tf.three_crop_boxes(12, 6, 6)
    assert [(b.top, b.left) for b in boxes] == [(0, 0), (3, 0), (6, 0)]


def test_resize_scales_flow_displacements():
    flow = torch.ones(2, 3, 8, 12)
    flow[1] *= 2.0
    out = tf.resize(flow, (4, 24), is_flow=True)
    assert out.shape == (2, 3, 4, 24)
    assert torch.allclose(out[0], torch.full_like(out[0], 2.0))  # u * 24/12
    assert torch.allclose(out[1], torch.full_like(out[1], 1.0))  # v * 4/8
    img = tf.resize(torch.full((3, 1, 8, 12), 7, dtype=torch.uint8), (4, 6))
    assert img.dtype == torch.uint8 and (img == 7).all()


def test_hflip_negates_u_only():
    flow = torch.randn(2, 2, 4, 5)
    out = tf.hflip(flow, is_flow=True)
    assert torch.equal(out[0], -flow[0].flip(-1))
    assert torch.equal(out[1], flow[1].flip(-1))


def test_flow_stays_consistent_with_frames_under_resize_and_flip():
    # a horizontal ramp shifted by 2 px: flow u = 2 everywhere; after x2 upsampling u = 4, after flip -4
    w = 16
    ramp = torch.arange(w, dtype=torch.float32).expand(8, w)
    frames = torch.stack([ramp, ramp - 2.0])[None]  # frame1(x) = frame0(x - 2): content moves right by 2
    flow = torch.zeros(2, 1, 8, w)
    flow[0] = 2.0
    big_flow = tf.resize(flow, (16, 2 * w), is_flow=True)
    assert torch.allclose(big_flow[0], torch.full_like(big_flow[0], 4.0))
    flipped = tf.hflip(big_flow, is_flow=True)
    assert torch.allclose(flipped[0], torch.full_like(flipped[0], -4.0))
    flipped_frames = tf.hflip(tf.resize(frames, (16, 2 * w)))
    # in the flipped frames content moves left: frame1(x) = frame0(x + 4) away from borders
    f0, f1 = flipped_frames[0, 0, 4], flipped_frames[0, 1, 4]
    assert torch.allclose(f1[2:20], f0[6:24], atol=1e-4)


def test_multi_scale_crop_is_deterministic_and_within_bounds():
    for seed in range(20):
        a = tf.multi_scale_crop_box(64, 80, 56, generator=torch.Generator().manual_seed(seed))
        b = tf.multi_scale_crop_box(64, 80, 56, generator=torch.Generator().manual_seed(seed))
        assert a == b
        assert a.height in {64, 56, 48, 42} and a.width in {64, 56, 48, 42}
        assert a.top + a.height <= 64 and a.left + a.width <= 80 and a.out_size == (56, 56)


def test_scale_jitter_keeps_aspect():
    h, w = tf.scale_jitter_size(120, 160, (128, 160), generator=torch.Generator().manual_seed(0))
    assert 128 <= h <= 160 and abs(w / h - 160 / 120) < 0.02


def test_clip_transform_train_and_test_views():
    x = torch.randint(0, 256, (3, 4, 64, 80), dtype=torch.uint8)
    flow = torch.randn(2, 4, 64, 80)
    train = tf.ClipTransform(size=56, train=True)
    v1, f1 = train(x, {"flow_fwd": flow}, generator=torch.Generator().manual_seed(1))
    v2, f2 = train(x, {"flow_fwd": flow}, generator=torch.Generator().manual_seed(1))
    assert len(v1) == 1 and v1[0].shape == (3, 4, 56, 56) and v1[0].dtype == torch.float32
    assert torch.equal(v1[0], v2[0]) and torch.equal(f1["flow_fwd"][0], f2["flow_fwd"][0])
    views, _ = tf.ClipTransform(size=56, train=False, crops=10)(x)
    assert len(views) == 10 and all(v.shape == (3, 4, 56, 56) for v in views)
    raw, _ = tf.ClipTransform(size=56, train=False, normalize=False)(x)
    assert raw[0].max() <= 255 and raw[0].max() > 200
    # normalisation: (x / 255 - mean) / std
    mid = tf.normalize(torch.full((3, 1, 1, 1), 255, dtype=torch.uint8))
    assert torch.allclose(mid.flatten(), (1 - torch.tensor(tf.IMAGENET_MEAN)) / torch.tensor(tf.IMAGENET_STD))
    with pytest.raises(ValueError, match="crops"):
        tf.ClipTransform(size=56, train=False, crops=5)
    with pytest.raises(ValueError, match="does not fit"):
        tf.crop(x, 10, 10, 60, 60)
