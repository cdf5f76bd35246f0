"""The built-in motion benchmark: exact ground truth, determinism, on-disk layout."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from repro.data import synth
from repro.data.flo import read_flo
from repro.data.video_io import read_video

TINY = synth.Preset(
    "tiny", 32, 32, 6, ("moving_something_left", "rotating_something_clockwise", "something_getting_darker"),
    train_per_class=2, val_per_class=1, flow_splits=("train", "val"),
)  # fmt: skip


def bilinear_warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``image`` (H, W, C) at ``p + flow(p)``; returns the warped image and an in-bounds mask."""
    H, W = image.shape[:2]
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    x, y = xs + flow[..., 0], ys + flow[..., 1]
    inside = (x >= 0) & (x <= W - 1) & (y >= 0) & (y <= H - 1)
    x, y = np.clip(x, 0, W - 1), np.clip(y, 0, H - 1)
    x0, y0 = np.minimum(np.floor(x).astype(int), W - 2), np.minimum(np.floor(y).astype(int), H - 2)
    ax, ay = (x - x0)[..., None], (y - y0)[..., None]
    img = image.astype(np.float64)
    out = (img[y0, x0] * (1 - ax) * (1 - ay) + img[y0, x0 + 1] * ax * (1 - ay)
           + img[y0 + 1, x0] * (1 - ax) * ay + img[y0 + 1, x0 + 1] * ax * ay)  # fmt: skip
    return out, inside


def consistent_pixels(masks_from, masks_to, flow, margin=2):
    """Pixels whose layer is visible at the flow target too, away from layer boundaries and borders."""
    H, W = masks_from.shape
    ys, xs = np.mgrid[0:H, 0:W]
    tx = np.rint(xs + flow[..., 0]).astype(int)
    ty = np.rint(ys + flow[..., 1]).astype(int)
    inside = (tx >= margin) & (tx < W - margin) & (ty >= margin) & (ty < H - margin)
    same = np.zeros_like(inside)
    same[inside] = masks_to[ty[inside], tx[inside]] == masks_from[inside]
    interior = np.ones((H, W), bool)
    for layer in (0, 1, 2):
        for m in (masks_from, masks_to):
            edge = ndimage.binary_dilation(m == layer, iterations=margin) & ~ndimage.binary_erosion(m == layer, iterations=margin)
            if layer == 0:
                continue  # background edges are the object/occluder edges already
            interior &= ~edge if m is masks_from else ~edge[np.clip(ty, 0, H - 1), np.clip(tx, 0, W - 1)]
    border = np.zeros((H, W), bool)
    border[margin:-margin, margin:-margin] = True
    return same & interior & border & inside


@pytest.mark.parametrize("class_name", ["moving_something_left", "rotating_something_clockwise",
                                        "moving_something_closer", "moving_something_quickly"])  # fmt: skip
def test_gt_flow_warps_next_frame_back_exactly(class_name):
    # smooth textures (low frequencies) so bilinear interpolation itself is accurate
    rng = np.random.default_rng(3)
    spec = synth.sample_clip_spec(class_name, rng, height=64, width=64, num_frames=8, object_freq=(0.02, 0.04),
                                  background_max_freq=0.05, occluder=True)  # fmt: skip
    frames, fwd, bwd, masks = synth.render_clip(spec)
    assert fwd.shape == bwd.shape == (7, 64, 64, 2) and fwd.dtype == np.float32
    errors_fwd, errors_bwd = [], []
    for t in range(7):
        warped, _ = bilinear_warp(frames[t + 1], fwd[t])  # frame t+1 pulled back onto frame t's grid
        ok = consistent_pixels(masks[t], masks[t + 1], fwd[t])
        assert ok.mean() > 0.5
        errors_fwd.append(np.abs(warped - frames[t])[ok])
        warped_b, _ = bilinear_warp(frames[t], bwd[t])  # frame t pulled onto frame t+1's grid
        ok_b = consistent_pixels(masks[t + 1], masks[t], bwd[t])
        errors_bwd.append(np.abs(warped_b - frames[t + 1])[ok_b])
    e_f, e_b = np.concatenate(errors_fwd), np.concatenate(errors_bwd)
    # uint8 rounding (<= 0.5) + bilinear error of smooth textures; a 0.5 px flow error gives ~5 levels
    assert e_f.mean() < 0.8 and e_b.mean() < 0.8, (e_f.mean(), e_b.mean())
    assert np.percentile(e_f, 99) < 2.5 and np.percentile(e_b, 99) < 2.5


def test_wrong_flow_is_detected_by_the_warp_check():
    # the check above has teeth: a flow off by half a pixel fails it
    spec = synth.sample_clip_spec("moving_something_right", np.random.default_rng(5), height=64, width=64,
                                  num_frames=4, object_freq=(0.02, 0.04), background_max_freq=0.05, camera=False)  # fmt: skip
    frames, fwd, _, masks = synth.render_clip(spec)
    obj = consistent_pixels(masks[0], masks[1], fwd[0]) & (masks[0] == synth.LAYER_OBJECT)
    good, _ = bilinear_warp(frames[1], fwd[0])
    bad, _ = bilinear_warp(frames[1], fwd[0] + np.array([0.5, 0.0], np.float32))
    assert np.abs(good - frames[0])[obj].mean() * 3 < np.abs(bad - frames[0])[obj].mean()


def test_flow_of_forward_and_backward_are_inverse():
    spec = synth.sample_clip_spec("rotating_something_counterclockwise", np.random.default_rng(7), num_frames=5)
    _, fwd, bwd, masks = synth.render_clip(spec)
    for t in range(4):
        ok = consistent_pixels(masks[t], masks[t + 1], fwd[t])
        back, _ = bilinear_warp(bwd[t], fwd[t])  # bwd sampled at the forward target
        roundtrip = fwd[t] + back
        # bilinear sampling of a smooth (affine) field: tiny error, far below a pixel
        assert np.abs(roundtrip[ok]).max() < 0.05


def test_analytic_motion_of_each_class():
    mid_speed = {"moving_something_left": (-1, 0), "moving_something_right": (1, 0),
                 "moving_something_up": (0, -1), "moving_something_down": (0, 1)}  # fmt: skip
    for name, (sx, sy) in mid_speed.items():
        spec = synth.sample_clip_spec(name, np.random.default_rng(0))
        vx, vy = spec.obj.vel
        speed = math.hypot(vx, vy)
        assert 1.2 <= speed <= 2.0
        assert vx * sx + vy * sy > speed * math.cos(math.radians(16))
    assert synth.sample_clip_spec("rotating_something_clockwise", np.random.default_rng(0)).obj.ang_vel > 0
    assert synth.sample_clip_spec("moving_something_away", np.random.default_rng(0)).obj.log_scale_rate < 0
    assert synth.sample_clip_spec("something_getting_brighter", np.random.default_rng(0)).obj.log_gain_rate > 0
    still = synth.sample_clip_spec("holding_something_still", np.random.default_rng(0)).obj
    assert still.vel == (0.0, 0.0) and still.ang_vel == 0 and still.log_scale_rate == 0 and still.hue_rate == 0
    assert synth.sample_clip_spec("holding_a_star_still", np.random.default_rng(0)).obj.shape == "star"


def test_time_reversed_pairs_have_identical_frame_statistics():
    # Single-frame guarantee (docs/builtin_benchmark.md): e.g. "left" and "right" show the same
    # distribution of frames; check a few moments of the pooled pixel statistics agree.
    def stats(name):
        vals = []
        for i in range(40):
            spec = synth.sample_clip_spec(name, np.random.default_rng([11, i]), height=32, width=32, num_frames=8)
            frames, _, _, masks = synth.render_clip(spec)
            vals.append([(masks == 1).mean(), frames.mean(), frames.std()])
        return np.array(vals).mean(0)

    for a, b in [("moving_something_closer", "moving_something_away"),
                 ("something_getting_brighter", "something_getting_darker")]:  # fmt: skip
        sa, sb = stats(a), stats(b)
        np.testing.assert_allclose(sa, sb, rtol=0.08)


def test_render_is_pure_and_spec_json_roundtrips():
    spec = synth.sample_clip_spec("something_changing_texture", np.random.default_rng(2), num_frames=4)
    again = synth.ClipSpec.from_json(spec.to_json())
    assert again == spec
    a, b = synth.render_clip(spec), synth.render_clip(again)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    frames = a[0]
    assert not np.array_equal(frames[0], frames[-1])  # the texture changes
    with pytest.raises(ValueError, match="unknown class"):
        synth.sample_clip_spec("juggling", np.random.default_rng(0))


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generate_is_deterministic_and_idempotent(tmp_path):
    # same seed -> same bytes, also when rendered by 2 worker processes
    a = synth.generate(tmp_path / "a", TINY, seed=4, progress=False, frames_format="png")
    b = synth.generate(tmp_path / "b", TINY, seed=4, progress=False, frames_format="png", workers=2)
    da, db = _digest(a), _digest(b)
    assert da == db and len(da) > 20
    c = synth.generate(tmp_path / "c", TINY, seed=5, progress=False, frames_format="png")
    assert _digest(c)["videos/train_00000.mp4"] != da["videos/train_00000.mp4"]
    # idempotent: a second call with the same config rewrites nothing
    mtimes = {p: p.stat().st_mtime_ns for p in a.rglob("*") if p.is_file()}
    synth.generate(a, TINY, seed=4, progress=False, frames_format="png")
    assert {p: p.stat().st_mtime_ns for p in a.rglob("*") if p.is_file()} == mtimes


def test_generated_layout_matches_the_renderer(tmp_path):
    root = synth.generate(tmp_path / "s", TINY, seed=1, progress=False, frames_format="npy")
    meta = json.loads((root / "meta.json").read_text())
    assert meta["classes"] == list(TINY.classes) and meta["seed"] == 1
    assert meta["generator_version"] == synth.GENERATOR_VERSION
    assert (root / "classes.txt").read_text().splitlines() == list(TINY.classes)
    rows = (root / "train.csv").read_text().splitlines()
    assert rows[0] == "video_id,path,label,class_name,num_frames" and len(rows) == 1 + 6
    vid, rel, label, cls, n = rows[2].split(",")
    assert (vid, int(label), cls, int(n)) == ("train_00001", 1, TINY.classes[1], 6)
    specs = synth.load_specs(root, "train")
    frames, fwd, bwd, masks = synth.render_clip(specs[1])
    np.testing.assert_array_equal(synth.read_frames(root, vid), frames)
    np.testing.assert_array_equal(synth.read_masks(root, vid), masks)
    np.testing.assert_array_equal(read_flo(root / "flow" / vid / "fwd_0003.flo"), fwd[3])
    np.testing.assert_array_equal(read_flo(root / "flow" / vid / "bwd_0000.flo"), bwd[0])
    decoded = read_video(root / rel)
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 6  # lossy codec, but close


def test_presets_are_sane():
    for p in synth.PRESETS.values():
        assert synth._resolve_preset(p) is p
        assert all(c in synth.CLASSES for c in p.classes)
    mini = synth.PRESETS["mini"]
    comps = {synth.CLASSES[c].component for c in mini.classes}
    assert comps == {"motion", "appearance_change", "static"}
    with pytest.raises(ValueError, match="unknown preset"):
        synth._resolve_preset("huge")


def test_preset_nuisance_knobs_keep_the_other_draws():
    base = synth.sample_clip_spec("moving_something_left", np.random.default_rng(3))
    easy = synth.sample_clip_spec("moving_something_left", np.random.default_rng(3), camera=False, occluder=False,
                                  background_contrast=0.5)
    assert easy.obj == base.obj and easy.cam_vel == (0.0, 0.0) and easy.occluder is None
    assert easy.background.freqs == base.background.freqs
    np.testing.assert_allclose(np.array(easy.background.amps), 0.5 * np.array(base.background.amps))
