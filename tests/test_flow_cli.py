"""`python -m repro flow` / `flowbench` on tiny files the test writes; colour wheel; JPEG storage."""
from __future__ import annotations

import json

import numpy as np
import pytest

from repro.data.flo import read_flo
from repro.data.video_io import read_image, write_png, write_video
from repro.flow.commands import add_commands, parse_size
from repro.flow.pairs import warped_texture_pair
from repro.flow.quantize import dequantize_flow, quantize_flow, read_flow_jpegs, write_flow_jpegs
from repro.flow.viz import flow_to_colour, make_colour_wheel



def _run(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="repro")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_colour_wheel_matches_middlebury_layout():
    wheel = make_colour_wheel()
    assert wheel.shape == (55, 3)
    np.testing.assert_array_equal(wheel[0], [255, 0, 0])  # red
    np.testing.assert_array_equal(wheel[15], [255, 255, 0])  # yellow after the 15-step RY ramp
    np.testing.assert_array_equal(wheel[21], [0, 255, 0])  # green after YG = 6
    flow = np.array([[[1.0, 0.0], [0.0, 0.0], [np.nan, 0.0], [-1.0, 0.0]]])
    image = flow_to_colour(flow)
    assert image.dtype == np.uint8 and image.shape == (1, 4, 3)
    np.testing.assert_array_equal(image[0, 0], [255, 0, 0])  # rightwards = red, full saturation
    np.testing.assert_array_equal(image[0, 1], [255, 255, 255])  # no motion = white
    np.testing.assert_array_equal(image[0, 2], [0, 0, 0])  # unknown = black
    assert image[0, 3, 0] < 50 and image[0, 3, 2] > 200  # leftwards = cyan/blue side


def test_quantisation_roundtrip(tmp_path):
    flow = np.stack(np.meshgrid(np.linspace(-25, 25, 40), np.linspace(-5, 5, 30)), -1).astype(np.float32)
    x, y = quantize_flow(flow, bound=20)
    assert x.dtype == np.uint8 and x.min() == 0 and x.max() == 255  # clipped at +-20
    back = dequantize_flow(x, y, bound=20)
    inside = np.abs(flow) <= 20
    assert np.abs(back - flow)[inside].max() <= 20 / 255 + 1e-5  # half a step of 40/255
    write_flow_jpegs(tmp_path, 1, flow, bound=20)
    assert (tmp_path / "x_00001.jpg").is_file() and (tmp_path / "y_00001.jpg").is_file()
    jpeg = read_flow_jpegs(tmp_path, 1, bound=20)
    assert np.abs(jpeg - np.clip(flow, -20, 20)).mean() < 0.3


def test_parse_size():
    assert parse_size("240x320") == (240, 320)
    assert parse_size("native") is None
    with pytest.raises(Exception, match="HEIGHTxWIDTH"):
        parse_size("240")


def test_flow_command_on_two_pngs(tmp_path, capsys):
    pair = warped_texture_pair(40, 48, seed=7, max_flow=1.5)
    write_png(tmp_path / "a.png", pair.frame0)
    write_png(tmp_path / "b.png", pair.frame1)
    code = _run(["flow", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--method", "tvnet-30",
                 "--out", str(tmp_path / "f.flo"), "--viz", str(tmp_path / "f.png"), "--format", "json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "tvnet-30" and report["width"] == 48
    flow = read_flo(tmp_path / "f.flo")
    assert flow.shape == (40, 48, 2)
    epe = np.sqrt(((flow - pair.flow) ** 2).sum(-1))[pair.valid].mean()
    zero = np.sqrt((pair.flow**2).sum(-1))[pair.valid].mean()
    assert epe < 0.5 * zero
    assert read_image(tmp_path / "f.png").shape == (40, 48, 3)
    assert _run(["flow", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--method", "dis-fast",
                 "--out", str(tmp_path / "f.npy")]) == 0
    assert np.load(tmp_path / "f.npy").shape == (40, 48, 2)
    assert _run(["flow", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--method", "bogus",
                 "--out", str(tmp_path / "g.flo")]) == 2
    assert "unknown flow method" in capsys.readouterr().err


def test_flow_command_on_a_video(tmp_path, capsys):
    frames = np.stack([warped_texture_pair(32, 48, seed=9, max_flow=0.5 + k).frame0 for k in range(4)])
    write_video(tmp_path / "clip.mp4", frames)
    assert _run(["flow", str(tmp_path / "clip.mp4"), "--method", "tvnet-10", "--out", str(tmp_path / "jpg"),
                 "--batch", "2", "-q", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pairs"] == 3 and report["bound"] == 20.0
    names = sorted(p.name for p in (tmp_path / "jpg").iterdir())
    assert names == ["x_00001.jpg", "x_00002.jpg", "x_00003.jpg", "y_00001.jpg", "y_00002.jpg", "y_00003.jpg"]
    assert _run(["flow", str(tmp_path / "clip.mp4"), "--method", "dis-fast", "--out", str(tmp_path / "npy"),
                 "--as", "npy", "-q"]) == 0
    stored = sorted((tmp_path / "npy").iterdir())
    assert [p.name for p in stored] == ["flow_00001.npy", "flow_00002.npy", "flow_00003.npy"]
    assert np.load(stored[0]).shape == (32, 48, 2)


def test_flowbench_tiny(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert _run(["flowbench", "--size", "32x40", "--method", "tvnet-10", "--method", "dis-fast", "--synth-pairs", "2",
                 "--batch", "2", "--out", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    for token in ("EPE", "rho err", "FPS", "tvnet-10", "dis-fast", "synth", "stereo_motorcycle", "(batch 2)"):
        assert token in text
    payload = json.loads(out.read_text())
    rows = {(r["dataset"], r["method"]): r for r in payload["rows"]}
    assert set(rows) == {(d, m) for d in ("synth", "stereo_motorcycle")
                         for m in ("tvnet-10", "dis-fast", "tvnet-10 (batch 2)")}
    for row in payload["rows"]:
        assert row["size"] == "32x40" and row["epe"] is not None and row["rho_error"] >= 0 and row["fps"] > 0
    assert rows[("synth", "tvnet-10")]["pairs"] == 2
    # batched TVNet computes the same flow as one pair at a time
    assert rows[("synth", "tvnet-10 (batch 2)")]["epe"] == pytest.approx(rows[("synth", "tvnet-10")]["epe"], abs=1e-4)


def test_rho_error_definition():
    from repro.flow.bench import photometric_error

    pair = warped_texture_pair(24, 32, seed=3, max_flow=1.0)
    rho_gt, inside = photometric_error(pair.frame0, pair.frame1, pair.flow)
    rho_zero, inside_zero = photometric_error(pair.frame0, pair.frame1, np.zeros_like(pair.flow))
    assert inside_zero == 1.0 and 0.8 < inside <= 1.0
    assert rho_gt < 0.5 * rho_zero  # the true flow explains the frames (up to uint8 rounding)
    grey = np.full((6, 8), 10.0)
    out_of_frame = np.zeros((6, 8, 2))
    out_of_frame[..., 0] = 100.0
    assert photometric_error(grey, grey + 5, np.zeros((6, 8, 2))) == (pytest.approx(5.0), 1.0)
    assert photometric_error(grey, grey, out_of_frame)[1] == 0.0  # nothing left to compare


def test_middlebury_folder(tmp_path, capsys):
    from repro.data.flo import write_flo
    from repro.flow.pairs import middlebury_pairs

    pair = warped_texture_pair(24, 32, seed=4, max_flow=1.0)
    flow = pair.flow.copy()
    flow[0, 0] = 1e10  # Middlebury's unknown-flow marker
    for layout in ("flat", "split"):
        root = tmp_path / layout
        data = root / ("other-data" if layout == "split" else "") / "Seq"
        gt = root / ("other-gt-flow" if layout == "split" else "") / "Seq"
        write_png(data / "frame10.png", pair.frame0)
        write_png(data / "frame11.png", pair.frame1)
        write_flo(gt / "flow10.flo", flow)
        (loaded,) = middlebury_pairs(root)
        assert loaded.name == "middlebury/Seq" and not loaded.valid[0, 0] and loaded.valid.sum() == 24 * 32 - 1
        np.testing.assert_array_equal(loaded.frame0, pair.frame0)
    assert _run(["flowbench", "--size", "native", "--method", "dis-fast", "--synth-pairs", "0", "--no-stereo",
                 "--middlebury", str(tmp_path / "flat"), "-q", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["dataset"], r["size"]) for r in rows] == [("middlebury", "native")] and rows[0]["epe"] < 0.5
