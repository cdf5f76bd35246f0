"""Readers of the real data sets, each on tiny fixtures written here (videos through PyAV)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from repro.data import readers
from repro.data.datasets import build_dataset
from repro.data.flo import write_flo
from repro.data.video_io import VideoDecodeError, count_frames, read_video, write_png, write_video


def tiny_video(path: Path, value: int, frames: int = 10, size: int = 32) -> np.ndarray:
    """Frame t is a flat grey of ``value + 8 t`` (easy to recognise after lossy coding)."""
    clip = np.stack([np.full((size, size, 3), min(value + 8 * t, 255), np.uint8) for t in range(frames)])
    write_video(path, clip)
    return clip


def corrupt(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)


def test_video_io_roundtrip_and_errors(tmp_path):
    clip = tiny_video(tmp_path / "a.mp4", 40, frames=12)
    assert count_frames(tmp_path / "a.mp4") == 12
    got = read_video(tmp_path / "a.mp4", [11, 0, 5])
    assert got.shape == (3, 32, 32, 3)
    assert np.abs(got.astype(int) - clip[[11, 0, 5]]).max() <= 3
    with pytest.raises(VideoDecodeError, match="past the end"):
        read_video(tmp_path / "a.mp4", [12])
    corrupt(tmp_path / "bad.mp4")
    with pytest.raises(VideoDecodeError, match="bad.mp4"):
        read_video(tmp_path / "bad.mp4")
    with pytest.raises(VideoDecodeError, match="not found"):
        count_frames(tmp_path / "nope.mp4")


# ---------------------------------------------------------------------------------------------
@pytest.fixture
def ucf_root(tmp_path):
    root = tmp_path / "ucf"
    classes = ["ApplyEyeMakeup", "Basketball"]
    (root / "ucfTrainTestlist").mkdir(parents=True)
    (root / "ucfTrainTestlist" / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Basketball\n")
    train, test = [], []
    for ci, c in enumerate(classes):
        for g in (1, 2):
            name = f"{c}/v_{c}_g0{g}_c01.avi"
            tiny_video(root / "UCF-101" / name, 30 + 100 * ci)
            (train if g == 1 else test).append(name)
    (root / "ucfTrainTestlist" / "trainlist01.txt").write_text("".join(f"{n} {classes.index(n.split('/')[0]) + 1}\n" for n in train))
    (root / "ucfTrainTestlist" / "testlist01.txt").write_text("".join(f"{n}\n" for n in test))
    return root


def test_ucf101_reader(ucf_root):
    ann = readers.read_ucf101(ucf_root, "train")
    assert ann.classes == ["ApplyEyeMakeup", "Basketball"]
    assert [(r.video_id, r.label) for r in ann.records] == [("v_ApplyEyeMakeup_g01_c01", 0), ("v_Basketball_g01_c01", 1)]
    test = readers.read_ucf101(ucf_root, "test")
    assert [r.label for r in test.records] == [0, 1] and not test.skipped
    ds = build_dataset("ucf101", ucf_root, "test", frames=4, step=2, size=28, resize=32)
    item = ds[1]
    assert item["video"].shape == (3, 4, 28, 28) and item["label"] == 1 and item["index"] == 1
    # test clip of 4x2 from 10 frames starts at (10 - 8) // 2 = 1: frames 1, 3, 5, 7 -> grey 138, 154, 170, 186
    raw = build_dataset("ucf101", ucf_root, "test", frames=4, step=2, size=28, resize=32, normalize=False)[1]["video"]
    assert np.allclose(raw[0, :, 14, 14].numpy(), [138, 154, 170, 186], atol=3)


def test_missing_and_corrupt_videos_are_counted_and_skipped(ucf_root, caplog):
    (ucf_root / "UCF-101" / "Basketball" / "v_Basketball_g02_c01.avi").unlink()
    corrupt(ucf_root / "UCF-101" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g02_c01.avi")
    lines = (ucf_root / "ucfTrainTestlist" / "testlist01.txt").read_text()
    (ucf_root / "ucfTrainTestlist" / "testlist01.txt").write_text(lines + "Basketball/v_Basketball_g01_c01.avi\n")
    ds = build_dataset("ucf101", ucf_root, "test", frames=2, size=28, resize=32)
    assert len(ds) == 2 and ds.num_skipped == 1 and ds.skipped[0].reason == "missing"
    with caplog.at_level(logging.WARNING):
        item = ds[0]  # the corrupt one: skipped, the next video is returned instead
    assert item["index"] == 1 and item["label"] == 1
    assert ds.num_skipped == 2 and "v_ApplyEyeMakeup_g02_c01" in ds.skipped[1].video_id
    assert any("skipping" in r.message for r in caplog.records)
    assert ds[0]["index"] == 1 and ds.num_skipped == 2  # not retried, not double counted
    probed = build_dataset("ucf101", ucf_root, "test", frames=2, size=28, resize=32, probe=True)
    assert probed.num_skipped == 2


# ---------------------------------------------------------------------------------------------
def test_hmdb51_reader(tmp_path):
    root = tmp_path / "hmdb"
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for ci, c in enumerate(["brush_hair", "cartwheel"]):
        lines = []
        for k, flag in enumerate([1, 2, 0]):
            name = f"{c}_clip{k}.avi"
            tiny_video(root / c / name, 20 + 90 * ci, frames=6)
            lines.append(f"{name} {flag} ")
        (splits / f"{c}_test_split1.txt").write_text("\n".join(lines) + "\n")
    train = readers.read_hmdb51(root, "train")
    test = readers.read_hmdb51(root, "test")
    assert train.classes == ["brush_hair", "cartwheel"]
    assert [(r.video_id, r.label) for r in train.records] == [("brush_hair_clip0", 0), ("cartwheel_clip0", 1)]
    assert [r.video_id for r in test.records] == ["brush_hair_clip1", "cartwheel_clip1"]
    item = build_dataset("hmdb51", root, "test", frames=4, size=28, resize=32, views=(2, 3))[1]
    assert item["video"].shape == (6, 3, 4, 28, 28) and item["num_views"] == 6 and item["label"] == 1
    with pytest.raises(FileNotFoundError, match="split files"):
        readers.read_hmdb51(root, "train", fold=2)


# ---------------------------------------------------------------------------------------------
def test_something_something_v1_reader(tmp_path):
    root = tmp_path / "sth"
    labels = ["Holding something", "Pushing something from left to right"]
    (root / "something-something-v1-labels.csv").parent.mkdir(parents=True)
    (root / "something-something-v1-labels.csv").write_text("\n".join(labels) + "\n")
    (root / "something-something-v1-train.csv").write_text("100;Pushing something from left to right\n101;Holding something\n")
    (root / "something-something-v1-validation.csv").write_text("200;Holding something\n")
    for vid, value in (("100", 10), ("101", 120), ("200", 60)):
        for t in range(7):
            write_png(root / "20bn-something-something-v1" / vid / f"{t + 1:05d}.jpg".replace(".jpg", ".png"), np.full((24, 32, 3), value + t, np.uint8))
    # JPEG frames as SSv1 stores them
    import cv2

    for folder in (root / "20bn-something-something-v1").iterdir():
        for png in sorted(folder.glob("*.png")):
            cv2.imwrite(str(png.with_suffix(".jpg")), cv2.imread(str(png)))
            png.unlink()
    train = readers.read_sthv1(root, "train")
    assert train.classes == labels
    assert [(r.video_id, r.label, r.kind) for r in train.records] == [("100", 1, "frames"), ("101", 0, "frames")]
    ds = build_dataset("sthv1", root, "val", frames=4, size=24, resize=24, normalize=False)
    item = ds[0]
    assert item["video"].shape == (3, 4, 24, 24) and item["label"] == 0
    # 4 of 7 frames, centred: start (7 - 4) // 2 = 1 -> values 61..64 (JPEG is near-lossless on flat images)
    assert np.allclose(item["video"][0, :, 12, 12].numpy(), [61, 62, 63, 64], atol=2)
    (root / "something-something-v1-validation.csv").write_text("200;Unknown label\n")
    with pytest.raises(ValueError, match="Unknown label"):
        readers.read_sthv1(root, "val")


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", [400, 600])
def test_kinetics_reader(tmp_path, version):
    root = tmp_path / f"k{version}"
    rows = [("abseiling", "aaaaaaaaaaa", 14, 24, "train"), ('"passing American football (in game)"', "bbbbbbbbbbb", 0, 10, "train")]
    val_rows = [("abseiling", "ccccccccccc", 5, 15, "val"), ("abseiling", "missingvid0", 0, 10, "val")]
    header = "label,youtube_id,time_start,time_end,split\n"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / f"kinetics-{version}_train.csv").write_text(header + "".join(",".join(map(str, r)) + "\n" for r in rows))
    (root / "annotations" / f"kinetics-{version}_val.csv").write_text(header + "".join(",".join(map(str, r)) + "\n" for r in val_rows))
    tiny_video(root / "train" / "abseiling" / "aaaaaaaaaaa_000014_000024.mp4", 50)
    tiny_video(root / "train" / "passing American football (in game)" / "bbbbbbbbbbb_000000_000010.mp4", 150)
    tiny_video(root / "val" / "ccccccccccc_000005_000015.mp4", 90)
    train = readers.read_kinetics(root, "train", version=version)
    assert train.classes == ["abseiling", "passing American football (in game)"]
    assert [(r.video_id, r.label) for r in train.records] == [("aaaaaaaaaaa_000014_000024", 0), ("bbbbbbbbbbb_000000_000010", 1)]
    ds = build_dataset(f"kinetics{version}", root, "val", frames=4, size=28, resize=32)
    assert len(ds) == 1 and ds.num_skipped == 1 and ds.skipped[0].video_id == "missingvid0_000000_000010"
    assert ds[0]["label"] == 0 and ds[0]["video"].shape == (3, 4, 28, 28)


# ---------------------------------------------------------------------------------------------
def test_middlebury_reader(tmp_path):
    root = tmp_path / "middlebury"
    rng = np.random.default_rng(0)
    for seq in ("Dimetrodon", "RubberWhale", "NoGT"):
        for name in ("frame10.png", "frame11.png"):
            write_png(root / "other-data" / seq / name, rng.integers(0, 255, (20, 24, 3), dtype=np.uint8))
    for seq in ("Dimetrodon", "RubberWhale"):
        flow = rng.normal(size=(20, 24, 2)).astype(np.float32)
        flow[0, 0] = 1e10  # unknown
        write_flo(root / "other-gt-flow" / seq / "flow10.flo", flow)
    pairs = readers.read_middlebury(root)
    assert [p.name for p in pairs] == ["Dimetrodon", "RubberWhale"]
    ds = build_dataset("middlebury", root, "train", crop=16, normalize=False)
    item = ds[1]
    assert item["video"].shape == (3, 2, 16, 16) and item["flow"].shape == (2, 16, 16)
    full = build_dataset("middlebury", root, "test")[0]
    assert not bool(full["valid"][0, 0]) and bool(full["valid"][1, 1]) and float(full["flow"][0, 0, 0]) == 0.0
    with pytest.raises(ValueError, match="NoGT"):
        readers.read_middlebury(root, sequences=["NoGT"])


def test_decord_backend_is_optional(tmp_path):
    from repro.data.video_io import decord_available

    tiny_video(tmp_path / "a.mp4", 40, frames=3)
    if decord_available():
        assert read_video(tmp_path / "a.mp4", [2], backend="decord").shape == (1, 32, 32, 3)
    else:
        with pytest.raises(ImportError, match="decord"):
            read_video(tmp_path / "a.mp4", [0], backend="decord")
        assert read_video(tmp_path / "a.mp4", [2], backend="auto").shape == (1, 32, 32, 3)  # falls back to PyAV
