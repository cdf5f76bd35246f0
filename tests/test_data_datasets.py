"""Datasets on the built-in benchmark: item format, GT flow through the transforms, determinism."""
from __future__ import annotations

import json

import pytest
import torch

from repro.data import synth
from repro.data.commands import add_commands
from repro.data.datasets import build_dataset

TINY = synth.Preset(
    "tiny", 48, 48, 8, ("moving_something_left", "moving_something_right", "holding_a_star_still"),
    train_per_class=2, val_per_class=1, flow_splits=("val",),
)  # fmt: skip


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return synth.generate(tmp_path_factory.mktemp("synth") / "tiny", TINY, seed=0, progress=False)


def test_train_item_format_and_determinism(synth_root):
    ds = build_dataset("synth", synth_root, "train", frames=4, step=2, size=40)
    assert len(ds) == 6 and ds.num_classes == 3 and ds.num_skipped == 0
    item = ds[4]
    assert item["video"].shape == (3, 4, 40, 40) and item["video"].dtype == torch.float32
    assert item["label"] == 1 and item["index"] == 4 and item["num_views"] == 1
    assert torch.equal(ds[4]["video"], item["video"])  # same seed, epoch, index -> same clip
    ds.set_epoch(1)
    assert any(not torch.equal(ds[i]["video"], build_dataset("synth", synth_root, "train", frames=4, step=2, size=40)[i]["video"]) for i in range(6))


def test_multi_view_testing(synth_root):
    ds = build_dataset("synth", synth_root, "val", frames=4, size=40, views=(2, 10))
    item = ds[0]
    assert item["video"].shape == (20, 3, 4, 40, 40) and item["num_views"] == 20
    # view 5 is the flip of view 0 (same clip, top-left crop)
    assert torch.equal(item["video"][5], item["video"][0].flip(-1))


@pytest.mark.parametrize("split", ["val", "train"])  # .flo files for val, re-rendered for train
def test_gt_flow_follows_resize_crop_and_flip(synth_root, split):
    ds = build_dataset("synth", synth_root, split, frames=4, size=56, resize=64, train=False, with_flow=True, normalize=False)
    index = 1
    item = ds[index]
    spec = synth.load_specs(synth_root, split)[index]
    _, fwd, bwd, _ = synth.render_clip(spec)
    # test clip: 4 of 8 frames centred -> video frames 2..5; resize 48 -> 64 (x4/3), centre crop 56 (offset 4)
    scale = 64 / 48
    gt = torch.from_numpy(fwd[2:6]).permute(3, 0, 1, 2)
    expected = torch.nn.functional.interpolate(gt.permute(1, 0, 2, 3), size=(64, 64), mode="bilinear", align_corners=False)
    expected = expected.permute(1, 0, 2, 3)[..., 4:60, 4:60] * scale
    assert item["flow_fwd"].shape == (2, 4, 56, 56)
    assert torch.allclose(item["flow_fwd"], expected, atol=1e-4)
    assert item["flow_fwd_valid"].tolist() == [True] * 4 and item["flow_bwd_valid"].tolist() == [True] * 4
    # bwd at sampled frame k maps video frame 2+k to 1+k: file bwd_{1+k}
    b0 = torch.from_numpy(bwd[1]).permute(2, 0, 1)[None]
    b0 = torch.nn.functional.interpolate(b0, size=(64, 64), mode="bilinear", align_corners=False)[0, :, 4:60, 4:60] * scale
    assert torch.allclose(item["flow_bwd"][:, 0], b0, atol=1e-4)
    # a flipped training view negates u
    tr = build_dataset("synth", synth_root, split, frames=8, size=48, train=True, augment="none", resize=48,
                       with_flow=True, flip=True)  # fmt: skip
    ref = torch.from_numpy(fwd[0]).permute(2, 0, 1)
    flips = 0
    for seed in range(8):
        tr.seed = seed
        it = tr[index]
        f0 = it["flow_fwd"][:, 0]
        mirrored = torch.stack([-ref[0].flip(-1), ref[1].flip(-1)])
        assert torch.allclose(f0, ref, atol=1e-5) or torch.allclose(f0, mirrored, atol=1e-5)
        flips += int(torch.allclose(f0, mirrored, atol=1e-5))
        assert it["flow_fwd_valid"].tolist() == [True] * 7 + [False]  # no frame after the last one
        assert it["flow_bwd_valid"].tolist() == [False] + [True] * 7
    assert 0 < flips < 8


def test_with_flow_only_for_synth(tmp_path):
    with pytest.raises(ValueError, match="only 'synth'"):
        build_dataset("ucf101", tmp_path, "train", with_flow=True)
    with pytest.raises(ValueError, match="unknown dataset"):
        build_dataset("imagenet", tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="repro data synth"):
        build_dataset("synth", tmp_path, "train")


def test_tsn_segments_dataset(synth_root):
    ds = build_dataset("synth", synth_root, "val", segments=3, snippet_len=2, size=40)
    assert ds[0]["video"].shape == (3, 6, 40, 40)


def test_cli_synth_json(tmp_path, capsys, monkeypatch):
    import argparse

    monkeypatch.setitem(synth.PRESETS, "tiny", TINY)
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["data", "synth", "--out", str(tmp_path / "s"), "--preset", "mini", "--seed", "3", "--format", "json"])
    args.preset = "tiny"  # keep the test small; the parser only offers the real presets
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_clips"] == {"train": 6, "val": 3} and out["seed"] == 3 and out["reused"] is False and out["bytes"] > 0
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["reused"] is True


def test_dataloader_with_spawned_workers(synth_root):
    # the dataset (flow source included) must pickle for spawn-based DataLoader workers
    import pickle

    from torch.utils.data import DataLoader

    ds = build_dataset("synth", synth_root, "train", frames=4, size=40, with_flow=True)
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[2]["flow_fwd"], ds[2]["flow_fwd"])
    batch = next(iter(DataLoader(ds, batch_size=3, num_workers=0)))
    assert batch["video"].shape == (3, 3, 4, 40, 40) and batch["flow_bwd"].shape == (3, 2, 4, 40, 40)
    assert batch["label"].tolist() == [0, 1, 2] and batch["index"].tolist() == [0, 1, 2]


def test_no_random_flip_by_default_on_direction_labelled_sets(synth_root, tmp_path):
    assert build_dataset("synth", synth_root, "train").transform.flip is False
    (tmp_path / "ucfTrainTestlist").mkdir()
    (tmp_path / "ucfTrainTestlist" / "classInd.txt").write_text("1 A\n")
    (tmp_path / "ucfTrainTestlist" / "trainlist01.txt").write_text("")
    assert build_dataset("ucf101", tmp_path, "train").transform.flip is True
