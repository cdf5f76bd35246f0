"""Full scale on real-layout data: tiny UCF101 / HMDB51 / Something-Something V1 / Kinetics sets
built from the built-in benchmark's renderer in their official layouts, pre-computed flow by
`repro flow extract`, `repro list` telling which rows start, and `repro train --smoke`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from repro.data import readers, synth
from repro.data.video_io import write_video

SIZE, FRAMES = 32, 8  # tiny frames: TV-L1 of a pair takes milliseconds


def _clip(class_name: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    spec = synth.sample_clip_spec(class_name, rng, height=SIZE, width=SIZE, num_frames=FRAMES)
    return synth.render_clip(spec, rng)[0]  # (T, H, W, 3) uint8


_SYNTH = ("moving_something_left", "moving_something_right")


def make_ucf101(root: Path) -> Path:
    """UCF101's layout: ``UCF-101/<Class>/v_<Class>_gXX_cYY.avi`` and ``ucfTrainTestlist/`` with
    CRLF line ends, including the HandstandPushups folder whose files say ``HandStandPushups``."""
    root = root / "ucf101"
    classes = ["ApplyEyeMakeup", "HandstandPushups"]
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_bytes(b"1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n")
    train, test = [], []
    for ci, (folder, stem) in enumerate(zip(classes, ["ApplyEyeMakeup", "HandStandPushups"])):
        for g in (1, 2, 3):
            name = f"{folder}/v_{stem}_g{g:02d}_c01.avi"
            write_video(root / "UCF-101" / name, _clip(_SYNTH[ci], 10 * ci + g))
            (test if g == 3 else train).append((name, ci + 1))
    for fold in (1, 2, 3):
        (lists / f"trainlist0{fold}.txt").write_bytes("".join(f"{n} {c}\r\n" for n, c in train).encode())
        (lists / f"testlist0{fold}.txt").write_bytes("".join(f"{n}\r\n" for n, _ in test).encode())
    return root


def make_hmdb51(root: Path) -> Path:
    """HMDB51's layout: ``hmdb51_org/<class>/<name>.avi`` and ``testTrainMulti_7030_splits/``."""
    root = root / "hmdb51"
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for ci, c in enumerate(["brush_hair", "cartwheel"]):
        lines = []
        for k in range(3):
            name = f"{c}_clip_{k}.avi"
            write_video(root / "hmdb51_org" / c / name, _clip(_SYNTH[ci], 100 + 10 * ci + k))
            lines.append(f"{name} {2 if k == 2 else 1} ")
        for fold in (1, 2, 3):
            (splits / f"{c}_test_split{fold}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_sthv1(root: Path) -> Path:
    """Something-Something V1: ``20bn-something-something-v1/<id>/00001.jpg`` + ``;`` CSVs."""
    import cv2

    root = root / "sthv1"
    labels = ["Moving something from left to right", "Moving something from right to left"]
    (root).mkdir(parents=True)
    (root / "something-something-v1-labels.csv").write_text("\n".join(labels) + "\n")
    rows = {"train": [], "validation": []}
    for ci, label in enumerate(labels):
        for k in range(3):
            vid = str(1000 + 10 * ci + k)
            folder = root / "20bn-something-something-v1" / vid
            folder.mkdir(parents=True)
            for t, frame in enumerate(_clip(_SYNTH[1 - ci], 200 + 10 * ci + k), 1):
                cv2.imwrite(str(folder / f"{t:05d}.jpg"), frame[..., ::-1])
            rows["validation" if k == 2 else "train"].append(f"{vid};{label}")
    for split, lines in rows.items():
        (root / f"something-something-v1-{split}.csv").write_text("\n".join(lines) + "\n")
    return root


def make_kinetics(root: Path) -> Path:
    """Kinetics-400: ``{train,validate}.csv`` and ``<split>/<label>/<ytid>_<start>_<end>.mp4``."""
    root = root / "kinetics400"
    root.mkdir(parents=True)
    for split, csv_name, ks in (("train", "train.csv", (0, 1)), ("val", "validate.csv", (2,))):
        lines = ["label,youtube_id,time_start,time_end,split"]
        for ci, label in enumerate(["abseiling", "air drumming"]):
            for k in ks:
                ytid = f"yt{ci}{k}xxxxxxx"
                lines.append(f"{label},{ytid},{10 * k},{10 * k + 10},{split}")
                path = root / split / label / f"{readers.kinetics_file_stem(ytid, 10 * k, 10 * k + 10)}.mp4"
                write_video(path, _clip(_SYNTH[ci], 300 + 10 * ci + k))
        (root / csv_name).write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("full_scale") / "data"
    for make in (make_ucf101, make_hmdb51, make_sthv1, make_kinetics):
        make(d)
    return d


def _repro(*argv: str, capsys) -> tuple[int, str]:
    from repro.cli import main

    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


# ----------------------------------------------------------------------------------------------
def test_readers_take_every_real_layout(data_dir):
    ucf = readers.read_ucf101(data_dir / "ucf101", "train", fold=2)
    assert ucf.classes == ["ApplyEyeMakeup", "HandstandPushups"] and not ucf.skipped
    assert [r.label for r in ucf.records] == [0, 0, 1, 1]
    assert ucf.records[2].path.name == "v_HandStandPushups_g01_c01.avi" and ucf.records[2].path.is_file()
    hmdb = readers.read_hmdb51(data_dir / "hmdb51", "test", fold=3)
    assert [(r.video_id, r.label) for r in hmdb.records] == [("brush_hair_clip_2", 0), ("cartwheel_clip_2", 1)]
    sth = readers.read_sthv1(data_dir / "sthv1", "val")
    assert [(r.video_id, r.label) for r in sth.records] == [("1002", 0), ("1012", 1)]
    kin = readers.read_kinetics(data_dir / "kinetics400", "val")
    assert [r.label for r in kin.records] == [0, 1] and not kin.skipped


def test_flow_extract_writes_reads_and_resumes(data_dir, capsys):
    from repro.data.datasets import FlowFolderSource
    from repro.flow.extract import dataset_videos, extract_dataset
    from repro.flow.methods import create_flow_method

    code, out = _repro("flow", "extract", "--dataset", "sthv1", "--data-dir", str(data_dir), "--method", "tvl1",
                       "--workers", "2", "-q", "--format", "json", capsys=capsys)
    assert code == 0, out
    report = json.loads(out[out.index("{"):])
    assert report["videos"] == 6 and report["extracted"] == 6 and report["failed"] == []
    folder = readers.flow_video_dir(data_dir / "sthv1", "tvl1", "1000")
    assert sorted(p.name for p in folder.glob("x_*.jpg")) == [f"x_{k:05d}.jpg" for k in range(1, FRAMES)]
    assert len(list(folder.glob("bx_*.jpg"))) == FRAMES - 1 and (folder / "done.json").is_file()
    # read back: the flow of pair 2 -> 3 within the quantisation step (+ JPEG loss) of TV-L1's
    rec = next(r for r in dataset_videos("sthv1", data_dir / "sthv1") if r.video_id == "1000")
    frames = np.stack([__import__("repro.data.video_io", fromlist=["x"]).read_image(rec.path / f"{t:05d}.jpg")
                       for t in range(1, FRAMES + 1)])
    want = create_flow_method("tvl1")(frames[2], frames[3])
    fwd, bwd, fwd_ok, bwd_ok = FlowFolderSource(data_dir / "sthv1", "tvl1")(rec, [2, 0, FRAMES - 1], FRAMES)
    assert fwd_ok.tolist() == [True, True, False] and bwd_ok.tolist() == [True, False, True]
    assert np.abs(fwd[0] - np.clip(want, -20, 20)).mean() < 0.3 and not fwd[2].any()
    # resumable: a killed run's partial folder is ignored, finished videos are skipped
    (folder.parent / "1001.partial-999").mkdir()
    import shutil

    shutil.rmtree(readers.flow_video_dir(data_dir / "sthv1", "tvl1", "1011"))
    again = extract_dataset("sthv1", data_dir, "tvl1", progress=False)
    assert (again.done_before, again.extracted) == (5, 1)
    # torchrun ranks share the videos: rank 1 of 2 owns videos 1, 3, 5 of the sorted list
    assert extract_dataset("sthv1", data_dir, "tvl1", progress=False, rank=1, world_size=2).mine == 3


def test_tsn_named_extraction_is_read(tmp_path):
    """An extraction with TSN's ``flow_x_``/``flow_y_`` names and no backward flow, nested by class
    as MMAction2's UCF101 rawframes are (``<method>/<Class>/<video>/``)."""
    import cv2

    from repro.data.datasets import FlowFolderSource
    from repro.data.readers import VideoRecord
    from repro.flow.quantize import quantize_flow

    folder = readers.flow_root(tmp_path, "tvl1") / "ApplyEyeMakeup" / "v1"
    folder.mkdir(parents=True)
    flows = [np.full((4, 4, 2), k + 1.0, np.float32) for k in range(3)]  # pair k: (k+1, k+1) px
    for k, f in enumerate(flows, 1):
        x, y = quantize_flow(f)
        cv2.imwrite(str(folder / f"flow_x_{k:05d}.jpg"), x)
        cv2.imwrite(str(folder / f"flow_y_{k:05d}.jpg"), y)
    rec = VideoRecord("v1", tmp_path / "UCF-101" / "ApplyEyeMakeup" / "v1.avi", 0)
    fwd, bwd, fwd_ok, bwd_ok = FlowFolderSource(tmp_path, "tvl1")(rec, [1, 2], 4)
    assert np.allclose(fwd[:, 0, 0, 0], [2.0, 3.0], atol=0.2)  # frame 1 -> 2 is pair 2
    assert np.allclose(bwd[:, 0, 0, 0], [-1.0, -2.0], atol=0.2)  # approximated by -(frame i-1 -> i)
    assert fwd_ok.all() and bwd_ok.all()
    from repro.flow.extract import missing_videos

    assert missing_videos(tmp_path, "tvl1", [rec, VideoRecord("v2", rec.path.with_name("v2.avi"), 0)]) == ["v2"]


# ----------------------------------------------------------------------------------------------
def _small_specs(dest: Path) -> Path:
    """The real TrajectoryNet Table 3 and TVNet Table 3 specs with their full clips shrunk to
    32 px (a CPU smoke test; everything else -- datasets, flow, schedule, views -- as written)."""
    import yaml

    root = Path(__file__).resolve().parents[1] / "specs"
    for paper in ("trajectorynet", "tvnet"):
        spec = yaml.safe_load((root / paper / "table3.yaml").read_text())
        spec["defaults"]["full"]["size"] = SIZE
        for row in spec["rows"]:
            args = (row.get("model") or {}).get("args", {})
            if "image_size" in args:
                args["image_size"] = [SIZE, SIZE]
        (dest / paper).mkdir(parents=True, exist_ok=True)
        (dest / paper / "table3.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest


@pytest.fixture(scope="module")
def setup(data_dir, tmp_path_factory) -> dict[str, Path]:
    import timm

    from repro.flow.extract import extract_dataset

    root = tmp_path_factory.mktemp("full_scale_setup")
    init = root / "resnet18_imagenet.pth"  # an ImageNet-format timm ResNet-18 file (random weights)
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), init)
    extract_dataset("sthv1", data_dir, "tvl1", progress=False)
    return {"specs": _small_specs(root / "specs"), "init": init, "results": root / "results"}


def _runs(setup, data_dir, capsys) -> dict[str, str]:
    code, out = _repro("list", "--scale", "full", "--data-dir", str(data_dir), "--specs", str(setup["specs"]),
                       "--results", str(setup["results"]), "--format", "json", capsys=capsys)
    assert code == 0, out
    tables = json.loads(out[out.index("["):])
    return {f"{t['paper']}:{r['id']}": r["runs"]["train@full"] for t in tables for r in t["rows"]
            if "train@full" in r["runs"]}


def test_list_marks_runnable_exactly_the_rows_that_start(setup, data_dir, capsys, monkeypatch):
    monkeypatch.delenv("REPRO_IMAGENET_INIT", raising=False)
    runs = _runs(setup, data_dir, capsys)
    assert "ImageNet weights file" in runs["trajectorynet:trajectory_dim4"]  # init: imagenet, no file given
    assert "not extracted" in runs["tvnet:tvl1"] and "not extracted" in runs["tvnet:dis_fast"]
    monkeypatch.setenv("REPRO_IMAGENET_INIT", str(setup["init"]))
    runs = _runs(setup, data_dir, capsys)
    runnable = sorted(k for k, v in runs.items() if v == "runnable")
    assert runnable == ["trajectorynet:appearance", "trajectorynet:motion_feature", "trajectorynet:trajectory_dim4",
                        "trajectorynet:two_stream", "tvnet:tvnet50", "tvnet:tvnet50_frozen",
                        "tvnet:tvnet50_no_flow_loss"]
    # a row called missing does not start either, with the same reason
    code, out = _repro("train", "tvnet:table3:tvl1", "--scale", "full", "--data-dir", str(data_dir), "--specs",
                       str(setup["specs"]), "--smoke", "-q", capsys=capsys)
    assert code == 2 and "flow 'tvl1' not extracted for 6 of 6 videos" in out
    # a training set smaller than one batch: one line, no traceback
    code, out = _repro("train", "tvnet:table3:tvnet50", "--scale", "full", "--data-dir", str(data_dir), "--specs",
                       str(setup["specs"]), "--results", str(setup["results"]), "--work-dir",
                       str(setup["results"].parent / "runs"), "-q", capsys=capsys)
    assert code == 2 and "4 training videos, fewer than one batch of 128 (pass --batch-size)" in out
    assert "Traceback" not in out


@pytest.mark.parametrize("row", ["trajectorynet:table3:trajectory_dim4", "tvnet:table3:tvnet50", "tvnet:table3:tvl1"])
def test_smoke_runs_one_row_per_paper(row, setup, data_dir, capsys, monkeypatch):
    from repro.flow.extract import extract_dataset

    if row == "tvnet:table3:tvl1":
        extract_dataset("ucf101", data_dir, "tvl1", progress=False, workers=1)
    code, out = _repro("train", row, "--scale", "full", "--data-dir", str(data_dir), "--specs", str(setup["specs"]),
                       "--results", str(setup["results"]), "--init-file", str(setup["init"]), "--smoke", "-q",
                       "--format", "json", capsys=capsys)
    assert code == 0, out
    payload = json.loads(out[out.index("{"):])
    assert payload["smoke"] and payload["result_file"] is None and 0 <= payload["metrics"]["top1"] <= 100
    assert payload["num_classes"] == 2 and payload["num_train"] == 4 and payload["num_val"] == 2
    assert not setup["results"].exists()  # a smoke run writes no result
    if row.startswith("tvnet"):
        assert payload["data"].startswith("ucf101 split 1 (4 train / 2 val videos)")
    else:
        assert payload["data"] == "sthv1 val (4 train / 2 val videos), flow: tvl1"


@pytest.mark.parametrize("dataset", ["hmdb51", "kinetics400", "ucf101", "sthv1"])
def test_every_dataset_feeds_a_smoke_run(dataset, data_dir):
    """Each real layout through the engine's data path (smoke subset, one test view)."""
    from repro.engine.data import build_run_data, data_missing
    from repro.spec.schema import RunConfig

    cfg = RunConfig(dataset=dataset, split=3 if dataset in ("ucf101", "hmdb51") else "val", frames=4, size=24,
                    test_clips=25, test_crops=10)
    assert data_missing(cfg, data_dir) is None
    data = build_run_data(cfg, data_dir, "full", progress=False, smoke=True)
    assert data.num_classes == 2 and len(data.train) == 4 and len(data.val) == 2
    assert data.train[0]["video"].shape == (3, 4, 24, 24) and data.val[1]["video"].shape == (3, 4, 24, 24)
    assert data.val[1]["label"] == 1


# ----------------------------------------------------------------------------------------------
def test_eval_chunks_give_the_same_scores():
    """25 clips x 10 crops of a few videos: views through the model 1 at a time, 7 at a time
    (not a divisor) or all at once give the same scores (the model in eval mode)."""
    from torch.utils.data import Dataset

    from repro.engine.testing import TinyVideoNet
    from repro.engine.trainer import _forward_chunked, evaluate

    class Views(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return {"video": torch.randn(250, 3, 2, 8, 8, generator=g), "label": i % 2, "index": i}

    torch.manual_seed(0)
    model = TinyVideoNet(num_classes=4, width=4).eval()
    batch = {"video": torch.randn(20, 3, 2, 8, 8)}
    whole, _ = _forward_chunked(model, batch, torch.device("cpu"), False, None, None)
    for chunk in (1, 7, 20):
        part, _ = _forward_chunked(model, batch, torch.device("cpu"), False, None, chunk)
        assert torch.allclose(part, whole, atol=1e-5)
    scores = [evaluate(model, Views(), num_classes=4, batch_size=2, eval_chunk=c) for c in (1, 64, None)]
    assert scores[0] == scores[1] == scores[2] and scores[0]["count"] == 3


def test_split_forms_and_iteration_schedule():
    from repro.engine.optim import iteration_schedule
    from repro.spec.schema import RunConfig, split_folds

    assert [split_folds(s) for s in (1, "1", "split2", "1,2,3", "val", None)] == [[1], [1], [2], [1, 2, 3], None, None]
    assert RunConfig(dataset="ucf101", split=2).split == "2"
    with pytest.raises(ValueError, match="split"):
        RunConfig(dataset="ucf101", split="fold1")
    with pytest.raises(ValueError, match="iterations"):
        RunConfig(dataset="ucf101", lr_schedule={"type": "step", "step_size": 10, "unit": "iteration"})
    # TVNet Sec. 5.2 on UCF101 split 1 (9537 training videos) at batch 128: 74 steps an epoch
    epochs, sched = iteration_schedule(18000, {"type": "multistep", "milestones": [10000, 16000],
                                               "unit": "iteration", "gamma": 0.1}, 9537 // 128)
    assert (epochs, sched["milestones"], sched["unit"]) == (244, [135, 216], "epoch")


def test_several_folds_are_averaged(data_dir, monkeypatch, tmp_path):
    """``split: "1,2,3"``: one run per fold (own work folder), the mean over folds reported."""
    from repro.engine import job
    from repro.spec.schema import Row, TableSpec

    seen = []

    def fake(spec, row, scale, **kw):
        fold = int(row.run_config(scale).split)
        seen.append((row.id, fold))
        return job.RowRun({"top1": 10.0 * fold}, {0: {}}, f"ucf101 split {fold} (4 train / 2 val videos)", [0], {})

    monkeypatch.setattr(job, "train_row", lambda spec, row, scale, **kw: (
        job._train_folds(spec, row, scale, [1, 2, 3], **kw) if row.id == "r" else fake(spec, row, scale, **kw)))
    row = Row(id="r", label="r", kind="method", model={"name": "s3d_resnet18"},
              full={"dataset": "ucf101", "split": "1,2,3"})
    spec = TableSpec(paper="tvnet", table=4, title="t", rows=[row])
    run = job.train_row(spec, row, "full", work_root=tmp_path, data_dir=data_dir)
    assert seen == [("r-split1", 1), ("r-split2", 2), ("r-split3", 3)]
    assert run.metrics == {"top1": 20.0} and run.details["folds"]["3"] == {"top1": 30.0}
    assert run.data.startswith("ucf101 splits 1,2,3 (mean over folds)")


def test_imagenet_init_needs_its_file(tmp_path, monkeypatch):
    from repro.engine.job import imagenet_file
    from repro.jobs.base import NotRunnable
    from repro.spec.schema import RunConfig

    cfg = RunConfig(dataset="sthv1", init="imagenet")
    monkeypatch.delenv("REPRO_IMAGENET_INIT", raising=False)
    with pytest.raises(NotRunnable, match="--init-file FILE or set \\$REPRO_IMAGENET_INIT"):
        imagenet_file(cfg)
    with pytest.raises(NotRunnable, match="not found"):
        imagenet_file(cfg, tmp_path / "nope.pth")
    (tmp_path / "r18.pth").write_bytes(b"x")
    monkeypatch.setenv("REPRO_IMAGENET_INIT", str(tmp_path / "r18.pth"))
    assert imagenet_file(cfg) == tmp_path / "r18.pth" and imagenet_file(RunConfig(dataset="sthv1")) is None


def test_a_model_without_flow_inputs_reads_no_flow(data_dir):
    """A row inheriting its table's ``flow: tvl1`` whose model declares no flow input neither
    needs the extraction nor reads it; one whose model takes flow needs it."""
    from repro.engine.data import build_run_data, data_missing
    from repro.engine.job import row_takes_flow
    from repro.spec.schema import Row, RunConfig

    cfg = RunConfig(dataset="hmdb51", split=1, flow="tvl1", frames=4, size=24)
    assert "flow 'tvl1' not extracted for 6 of 6 videos" in data_missing(cfg, data_dir, wants_flow=True)
    assert data_missing(cfg, data_dir, wants_flow=False) is None
    item = build_run_data(cfg, data_dir, "full", progress=False, wants_flow=False, smoke=True).train[0]
    assert "flow_fwd" not in item and item["video"].shape == (3, 4, 24, 24)
    rgb = Row(id="a", label="a", kind="method", model={"name": "s3d_resnet18", "args": {"num_classes": 2}}, full=cfg)
    traj = Row(id="b", label="b", kind="method", full=cfg, model={"name": "trajectorynet_resnet18", "args": {
        "num_classes": 2, "positions": ["res3b1.conv1"], "motion": "none", "source": "flow"}})
    assert (row_takes_flow(rgb, cfg), row_takes_flow(traj, cfg)) == (False, True)
