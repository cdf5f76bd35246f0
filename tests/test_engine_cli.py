"""`repro train|eval <paper>:<table>:<row>` on a tiny spec, a tiny model and a tiny benchmark."""
from __future__ import annotations

import argparse
import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from repro.engine.commands import add_commands
from repro.engine.testing import TinyVideoNet
from repro.registry import is_model, register_model

MODEL = "engine_test_tiny_net"
if not is_model(MODEL):
    @register_model(name=MODEL)
    def engine_test_tiny_net(num_classes: int = 400, pretrained_file: str | None = None, **kwargs) -> TinyVideoNet:
        return TinyVideoNet(num_classes=num_classes, **kwargs)

SPEC = textwrap.dedent(
    f"""
    paper: trajectorynet
    table: 3
    title: engine test
    metrics:
      - {{key: top1, label: Top-1, unit: "%", measure: "train:top1"}}
      - {{key: top5, label: Top-5, unit: "%", measure: "train:top5"}}
    defaults:
      mini: {{dataset: synth, preset: tiny, frames: 4, size: 24, epochs: 2, batch_size: 4, lr: 0.05,
              weight_decay: 1.0e-4, lr_schedule: {{type: cosine}}, seeds: [0]}}
    rows:
      - id: appearance
        label: appearance
        kind: baseline
        model: {{name: {MODEL}, args: {{num_classes: 174, width: 4}}}}
      - id: with-flow
        label: with flow
        kind: method
        model: {{name: {MODEL}, args: {{num_classes: 174, width: 4, takes_flow: true, predicts_flow: true}}}}
        mini: {{flow: gt, seeds: [0, 1], partial_bn: true, branch_lr: {{fc: 2.0}}, warmup_epochs: 0.5,
                clip_grad: 10.0}}
      - id: finetuned
        label: fine-tuned from appearance
        kind: method
        model: {{name: {MODEL}, args: {{num_classes: 174, width: 4}}}}
        mini: {{init: "row:trajectorynet:table3:appearance", epochs: 1}}
      - id: motionnet-frozen
        label: MotionNet-(2), pre-trained without labels, frozen
        kind: method
        model:
          name: trajectorynet_resnet18
          args: {{num_classes: 174, width: 0.125, source: motionnet_2, motionnet_mode: frozen, motionnet_width: 0.125}}
        mini: {{epochs: 1, motionnet_pretrain: {{epochs: 2, batch_size: 4}}}}
    """
)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    from repro.data import synth

    root = tmp_path_factory.mktemp("engine_cli")
    preset = synth.Preset("tiny", 32, 32, 8, ("moving_something_left", "moving_something_right",
                                               "something_getting_brighter", "holding_something_still"),
                          train_per_class=4, val_per_class=2)
    synth.generate(root / "data" / "synth" / "tiny", preset, seed=0, progress=False)
    (root / "specs" / "trajectorynet").mkdir(parents=True)
    (root / "specs" / "trajectorynet" / "table3.yaml").write_text(SPEC)
    return {"specs": root / "specs", "data": root / "data", "work": root / "runs", "results": root / "results"}


def _run(argv: list[str], dirs: dict[str, Path], capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="repro")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv + ["--specs", str(dirs["specs"]), "--data-dir", str(dirs["data"]),
                                     "--work-dir", str(dirs["work"]), "--results", str(dirs["results"]),
                                     "--format", "json", "--quiet"])
    torch.manual_seed(0)
    code = args.func(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_then_eval_then_chain(dirs, capsys):
    code, out, _ = _run(["train", "trajectorynet:table3:appearance"], dirs, capsys)
    assert code == 0
    payload = json.loads(out)
    assert payload["data"] == "built-in benchmark (synth tiny, 16 train / 8 val clips)"
    assert set(payload["metrics"]) == {"top1", "top5", "avg_top1_top5", "mean_class_acc"}
    assert 0.0 <= payload["metrics"]["top1"] <= 100.0
    assert payload["metrics"]["top5"] == 100.0  # 4 classes: the label is always in the top 5
    details = payload["details"]
    assert details["epochs"] == 2 and len(details["history"]) == 2 and details["num_classes"] == 4
    assert details["skipped_videos"] == 0
    # what ran is the spec: the resolved configuration is recorded, optimiser, lr and epochs as specified
    ran = details["run_config"]
    assert (ran["optimizer"], ran["lr"], ran["epochs"], ran["batch_size"]) == ("sgd", 0.05, 2, 4)
    assert (ran["dataset"], ran["preset"], ran["frames"], ran["size"]) == ("synth", "tiny", 4, 24)
    assert ran["model_args"] == {"width": 4} and ran["lr_schedule"]["type"] == "cosine"
    result = json.loads(Path(payload["result_file"]).read_text())
    assert result["metrics"]["top1"] == pytest.approx(payload["metrics"]["top1"])
    assert result["provenance"]["seed"] == 0 and result["provenance"]["spec_hash"]
    final = dirs["work"] / "mini" / "trajectorynet" / "table3" / "appearance" / "seed0" / "final.pt"
    assert final.is_file()

    # eval of the trained weights gives the training run's final numbers
    code, out, _ = _run(["eval", "trajectorynet:3:appearance"], dirs, capsys)
    assert code == 0
    evaluated = json.loads(out)["metrics"]
    for key in ("top1", "top5", "mean_class_acc"):
        assert evaluated[key] == pytest.approx(payload["metrics"][key])

    # a second train call re-uses the finished run instead of training again
    code, out, _ = _run(["train", "trajectorynet:table3:appearance", "--no-save"], dirs, capsys)
    assert json.loads(out)["metrics"] == payload["metrics"]

    # init: row:... loads the appearance row's weights (same classifier shape: nothing dropped)
    code, out, _ = _run(["train", "trajectorynet:table3:finetuned"], dirs, capsys)
    assert code == 0
    init = json.loads(out)["details"]["init"]["0"]
    assert init["from"] == str(final) and init["dropped"] == []


def test_flow_row_with_two_seeds(dirs, capsys):
    code, out, _ = _run(["train", "trajectorynet:table3:with-flow"], dirs, capsys)
    assert code == 0
    payload = json.loads(out)
    per_seed = payload["details"]["per_seed"]
    assert set(per_seed) == {"0", "1"}
    mean_top1 = (per_seed["0"]["top1"] + per_seed["1"]["top1"]) / 2
    assert payload["metrics"]["top1"] == pytest.approx(mean_top1)
    assert payload["seed"] == [0, 1]
    # the model predicts flow and the benchmark has GT flow: EPE is measured too
    final = torch.load(dirs["work"] / "mini" / "trajectorynet" / "table3" / "with-flow" / "seed1" / "final.pt",
                       weights_only=True)
    assert final["metrics"]["epe"] > 0
    assert payload["metrics"]["epe"] == pytest.approx((per_seed["0"]["epe"] + per_seed["1"]["epe"]) / 2)


def test_errors_name_the_problem(dirs, capsys):
    code, _, err = _run(["train", "trajectorynet:table3:nope"], dirs, capsys)
    assert code == 2 and "has no row 'nope'" in err
    code, _, err = _run(["train", "trajectorynet:three:appearance"], dirs, capsys)
    assert code == 2 and "table must be" in err


def test_train_job_through_the_runner_layout(dirs, capsys):
    """The job the runner calls: given the work root, it trains in the row's folder
    <work>/<scale>/<paper>/table<N>/<row> (repro.layout); JobOutput fields."""
    from repro.engine.job import train_job
    from repro.jobs import JobContext, NotRunnable
    from repro.spec.loader import load_specs

    spec = load_specs(dirs["specs"])["trajectorynet:table3"]
    _run(["train", "trajectorynet:table3:appearance", "--no-save"], dirs, capsys)  # trained (or cached)
    ctx = JobContext(spec=spec, row=spec.row("finetuned"), scale="mini", wanted=["top1", "top5"],
                     results_dir=dirs["results"], work_dir=dirs["work"], data_dir=dirs["data"], progress=False)
    out = train_job(ctx)
    assert set(out.metrics) >= {"top1", "top5", "avg_top1_top5", "mean_class_acc"}
    assert out.seed == 0
    assert out.data.startswith("built-in benchmark (synth tiny")
    assert out.details["epochs"] == 1 and out.details["skipped_videos"] == 0
    ctx.wanted = ["epe"]  # a table column this row cannot measure (no flow prediction)
    with pytest.raises(NotRunnable, match="epe"):
        train_job(ctx)


def test_changed_settings_set_old_checkpoints_aside(dirs):
    from repro.engine.job import train_row
    from repro.spec.loader import load_specs

    spec = load_specs(dirs["specs"])["trajectorynet:table3"]
    row = spec.row("appearance")
    kwargs = dict(work_root=dirs["work"], data_dir=dirs["data"], progress=False)
    before = train_row(spec, row, "mini", **kwargs)
    changed = train_row(spec, row, "mini", overrides={"epochs": 1}, **kwargs)  # a different run
    assert len(changed.details["history"]) == 1 and len(before.details["history"]) == 2
    seed_dir = dirs["work"] / "mini" / "trajectorynet" / "table3" / "appearance" / "seed0"
    assert list(seed_dir.glob("stale-*/final.pt"))


def test_row_identical_to_a_trained_row_reuses_its_run(dirs, tmp_path, monkeypatch):
    """Two tables' rows that are the same run (model, settings, data, seed) are trained once."""
    from repro.engine import job as engine_job
    from repro.spec.loader import load_specs

    spec = load_specs(dirs["specs"])["trajectorynet:table3"]
    first = spec.row("appearance")
    same = first.model_copy(update={"id": "appearance-in-another-table"})
    spec = spec.model_copy(update={"rows": [*spec.rows, same]})
    kwargs = dict(work_root=tmp_path / "runs", data_dir=dirs["data"], progress=False)
    trained = engine_job.train_row(spec, first, "mini", **kwargs)

    def no_training(*args, **kw):
        raise AssertionError("the identical row was trained again")

    monkeypatch.setattr(engine_job, "fit", no_training)
    reused = engine_job.train_row(spec, same, "mini", **kwargs)
    assert reused.metrics == trained.metrics
    assert reused.details["history"] == trained.details["history"]
    # recorded relative to the work root: a committed result names no machine's folders
    assert reused.details["same_run_as"] == {"0": "mini/trajectorynet/table3/appearance/seed0"}
    copied = tmp_path / "runs" / "mini" / "trajectorynet" / "table3" / "appearance-in-another-table" / "seed0"
    assert (copied / "final.pt").is_file()  # evaluable like any trained row
    # found by a lookup of the run's identity key, not by loading every checkpoint
    (entry,) = (tmp_path / "runs" / "mini" / "by-identity").glob("*.json")
    assert json.loads(entry.read_text())["run_dir"] == "../trajectorynet/table3/appearance/seed0"
    # runs finished before the index existed are indexed once, the first time a scale is looked up
    shutil.rmtree(entry.parent)
    third = first.model_copy(update={"id": "a-third-copy"})
    spec3 = spec.model_copy(update={"rows": [*spec.rows, third]})
    assert engine_job.train_row(spec3, third, "mini", **kwargs).details["same_run_as"] == {
        "0": "mini/trajectorynet/table3/appearance/seed0"}

    other_lr = same.model_copy(update={"id": "other-lr", "mini": same.mini.model_copy(update={"lr": 0.01})})
    with pytest.raises(AssertionError, match="trained again"):  # one setting differs: not the same run
        engine_job.train_row(spec.model_copy(update={"rows": [*spec.rows, other_lr]}), other_lr, "mini", **kwargs)


def test_flow_method_computed_once_per_video_and_cached(dirs):
    from repro.data.datasets import build_dataset
    from repro.engine.data import CachedClipDataset, decoded_split

    root = dirs["data"] / "synth" / "tiny"
    calls = []

    def pair_flow(frame0, frame1):  # a stand-in flow method: mean intensity change as a flow field
        calls.append(1)
        flow = np.zeros(frame0.shape[:2] + (2,), np.float32)
        flow[..., 0] = float(frame1.mean()) - float(frame0.mean())
        return flow

    ds = build_dataset("synth", root, "val", frames=4, size=24, train=False)
    decoded = decoded_split(root, "val", ds, flow="fake-method", pair_flow=pair_flow, progress=False)
    n_videos, n_frames = decoded.frames.shape[:2]
    assert len(calls) == n_videos * (n_frames - 1) * 2  # every neighbouring pair, both directions
    again = decoded_split(root, "val", ds, flow="fake-method", pair_flow=pair_flow, progress=False)
    assert len(calls) == n_videos * (n_frames - 1) * 2  # the second call only maps the cache
    frames = np.asarray(decoded.frames[0], dtype=np.float32)
    assert again.flow_fwd[0, 2, 0, 0, 0] == pytest.approx(frames[3].mean() - frames[2].mean(), abs=1e-4)
    assert again.flow_bwd[0, 2, 0, 0, 0] == pytest.approx(frames[2].mean() - frames[3].mean(), abs=1e-4)

    item = CachedClipDataset.wrap(ds, again)[0]
    assert item["flow_fwd"].shape == (2, 4, 24, 24) and item["video"].shape == (3, 4, 24, 24)
    assert item["flow_fwd_valid"].tolist() == [True, True, True, True]  # centre clip of 8 frames: 2..5


def test_killed_flow_computation_resumes_from_its_last_save(dirs, monkeypatch):
    from repro.data.datasets import build_dataset
    from repro.engine import data as engine_data

    root = dirs["data"] / "synth" / "tiny"
    ds = build_dataset("synth", root, "val", frames=4, size=24, train=False)
    monkeypatch.setattr(engine_data, "FLOW_CHECKPOINT_SECONDS", 0.0)  # save after every video
    calls = []

    def mean_change(frame0, frame1):
        calls.append(1)
        flow = np.zeros(frame0.shape[:2] + (2,), np.float32)
        flow[..., 1] = float(frame1.mean()) - float(frame0.mean())
        return flow

    frames = engine_data.decoded_split(root, "val", ds, progress=False).frames
    n_videos, pairs = frames.shape[0], 2 * (frames.shape[1] - 1)
    assert n_videos >= 3

    def killed_during_third_video(frame0, frame1):
        if len(calls) == 2 * pairs:
            raise KeyboardInterrupt  # what Ctrl-C or a kill leaves behind
        return mean_change(frame0, frame1)

    with pytest.raises(KeyboardInterrupt):
        engine_data.decoded_split(root, "val", ds, flow="resumable", pair_flow=killed_during_third_video,
                                  progress=False)
    calls.clear()
    resumed = engine_data.decoded_split(root, "val", ds, flow="resumable", pair_flow=mean_change, progress=False)
    assert len(calls) == (n_videos - 2) * pairs  # the two saved videos are not computed again
    calls.clear()
    fresh = engine_data._compute_flows(np.asarray(frames), np.full(n_videos, frames.shape[1]), ds.records,
                                       "resumable", ds, mean_change, "val", progress=False)
    np.testing.assert_array_equal(np.asarray(resumed.flow_fwd), fresh[0])
    np.testing.assert_array_equal(np.asarray(resumed.flow_bwd), fresh[1])
    assert not list((root / "decoded").glob(".val-flow-resumable-partial*"))  # cleaned up once complete


def test_flow_cache_over_worker_processes_equals_one_process(dirs, monkeypatch):
    """A named method's cache computed by a pool of processes (``--workers``; a run's default:
    every core) holds the very numbers one process computes, resuming after the saved videos."""
    import json

    from repro.data.datasets import build_dataset
    from repro.engine import data as engine_data
    from repro.flow import extract
    from repro.flow.methods import create_flow_method

    root = dirs["data"] / "synth" / "tiny"
    ds = build_dataset("synth", root, "val", frames=4, size=24, train=False)
    frames = np.asarray(engine_data.decoded_split(root, "val", ds, progress=False).frames)
    lengths = np.full(frames.shape[0], frames.shape[1])
    serial = engine_data._compute_flows(frames, lengths, ds.records, "tvl1-1-1-5", ds,
                                        create_flow_method("tvl1-1-1-5"), "val", progress=False)
    # a killed computation's save: the first two videos
    folder = root / "decoded"
    partial = folder / ".val-flow-tvl1-1-1-5-partial"
    key = json.loads((folder / "val-index.json").read_text())["key"]
    np.save(f"{partial}-fwd.npy", serial[0][:2])
    np.save(f"{partial}-bwd.npy", serial[1][:2])
    (folder / f"{partial.name}.json").write_text(json.dumps({"key": key, "flow": "tvl1-1-1-5", "done": 2}))
    pools, real_pool = [], extract.method_pool
    monkeypatch.setattr(extract, "method_pool", lambda *a, **k: pools.append(a) or real_pool(*a, **k))
    pooled = engine_data.decoded_split(root, "val", ds, flow="tvl1-1-1-5", progress=False, workers=2)
    assert pools == [("tvl1-1-1-5", 2)]
    np.testing.assert_array_equal(np.asarray(pooled.flow_fwd), serial[0])
    np.testing.assert_array_equal(np.asarray(pooled.flow_bwd), serial[1])
    assert np.abs(serial[0]).max() > 0.1  # the tiny benchmark's objects move: not a zero flow
    assert not list(folder.glob(partial.name + "*"))


def test_flow_computation_does_not_block_other_readers_of_the_split(dirs):
    """While one run computes a flow into the cache (TV-L1: about an hour at mini), runs that read
    the frames only or another flow of the same split go on."""
    import threading

    from repro.data.datasets import build_dataset
    from repro.engine.data import decoded_split

    root = dirs["data"] / "synth" / "tiny"
    ds = build_dataset("synth", root, "val", frames=4, size=24, train=False)
    decoded_split(root, "val", ds, progress=False)  # frames decoded before the slow flow starts
    other_readers_finished = []

    def read_frames_and_another_flow():
        frames = decoded_split(root, "val", ds, progress=False).frames
        other = decoded_split(root, "val", ds, flow="zeros", progress=False,
                              pair_flow=lambda a, b: np.zeros(a.shape[:2] + (2,), np.float32))
        other_readers_finished.append((frames.shape[0], other.flow_fwd.shape[0]))

    def slow_flow(frame0, frame1):  # runs while this flow's lock is held
        if not other_readers_finished:
            reader = threading.Thread(target=read_frames_and_another_flow, daemon=True)
            reader.start()
            reader.join(timeout=60)
            assert other_readers_finished, "a flow computation blocked another reader of the split"
        return np.zeros(frame0.shape[:2] + (2,), np.float32)

    decoded = decoded_split(root, "val", ds, flow="slow", pair_flow=slow_flow, progress=False)
    n = decoded.frames.shape[0]
    assert other_readers_finished == [(n, n)]


def test_unknown_flow_method_is_not_runnable(dirs, capsys, tmp_path):
    from repro.engine.job import train_row
    from repro.jobs import NotRunnable
    from repro.spec.loader import load_specs

    spec = load_specs(dirs["specs"])["trajectorynet:table3"]
    row = spec.row("with-flow")
    row = row.model_copy(update={"mini": row.mini.model_copy(update={"flow": "tvl-one"})})
    with pytest.raises(NotRunnable, match="unknown flow method 'tvl-one'"):
        train_row(spec, row, "mini", work_root=tmp_path, data_dir=dirs["data"], progress=False)


def test_missing_init_checkpoint_file_is_not_runnable(dirs, tmp_path):
    """An ``init:`` checkpoint file that is not there makes the row missing (as an unrun ``row:``
    init or an absent dataset does), not a failed run (LGD Tables 4-5's stage-1 checkpoints)."""
    from repro.engine.job import train_row
    from repro.jobs import NotRunnable
    from repro.spec.loader import load_specs

    spec = load_specs(dirs["specs"])["trajectorynet:table3"]
    row = spec.row("with-flow")
    row = row.model_copy(update={"mini": row.mini.model_copy(update={"init": str(tmp_path / "stage1.pt")})})
    with pytest.raises(NotRunnable, match="init checkpoint .*stage1.pt not found"):
        train_row(spec, row, "mini", work_root=tmp_path, data_dir=dirs["data"], progress=False)


def test_run_data_of_the_builtin_benchmark(dirs):
    from repro.engine.data import build_run_data
    from repro.spec.loader import load_specs

    cfg = load_specs(dirs["specs"])["trajectorynet:table3"].row("with-flow").mini
    data = build_run_data(cfg, dirs["data"], "mini", seed=3, progress=False)
    assert data.num_classes == 4 and len(data.train) == 16 and len(data.val) == 8
    assert data.train.transform.flip is False  # direction classes: no random flip
    assert getattr(data.train, "in_memory", False)
    item = data.train[5]
    assert item["video"].shape == (3, 4, 24, 24) and item["flow_fwd"].shape == (2, 4, 24, 24)
    assert item["label"] == int(data.train.records[5].label)
    data.train.set_epoch(1)
    assert not torch.equal(data.train[5]["video"], item["video"])  # a new augmentation each epoch
    data.train.set_epoch(0)
    assert torch.equal(data.train[5]["video"], item["video"])  # ... and the same one again


def test_tsn_segments_take_snippets_of_frames_over_segments(dirs):
    """``segments: K`` with ``frames: T``: K snippets of T/K consecutive frames (Dynamics w/ TSN:
    3 x 8), not K single frames; T must be a multiple of K."""
    from repro.engine.data import build_run_data
    from repro.jobs.base import NotRunnable
    from repro.spec.loader import load_specs

    cfg = load_specs(dirs["specs"])["trajectorynet:table3"].row("with-flow").mini
    cfg = cfg.model_copy(update={"segments": 2, "frames": 4, "flow": None})
    data = build_run_data(cfg, dirs["data"], "mini", seed=0, progress=False)
    assert data.train[0]["video"].shape[1] == 4 and (data.train.segments, data.train.snippet_len) == (2, 2)
    idx = data.val._indices(8, torch.Generator().manual_seed(0))[0].tolist()
    assert len(idx) == 4 and idx[1] == idx[0] + 1 and idx[3] == idx[2] + 1 and idx[2] > idx[1]
    with pytest.raises(NotRunnable, match="segments: 3 must divide frames"):
        build_run_data(cfg.model_copy(update={"segments": 3}), dirs["data"], "mini", seed=0, progress=False)


def test_decoded_cache_follows_the_video_files(dirs, tmp_path):
    import shutil

    from repro.data.datasets import build_dataset
    from repro.engine.data import decoded_split

    root = tmp_path / "tiny"
    shutil.copytree(dirs["data"] / "synth" / "tiny", root, ignore=shutil.ignore_patterns("decoded"))
    ds = build_dataset("synth", root, "val", frames=4, size=24, train=False)
    first = np.asarray(decoded_split(root, "val", ds, progress=False).frames[1])
    # replace video 1 by video 0 (as a regenerated benchmark would change the files)
    shutil.copyfile(ds.records[0].path, ds.records[1].path)
    second = np.asarray(decoded_split(root, "val", ds, progress=False).frames[1])
    zeroth = np.asarray(decoded_split(root, "val", ds, progress=False).frames[0])
    assert not np.array_equal(first, second) and np.array_equal(second, zeroth)


def test_motionnet_is_pretrained_without_labels_then_frozen(dirs):
    from repro.engine import checkpoint as ckpt_io
    from repro.engine.job import train_row
    from repro.models.motionnet_pretrain import pretrain_motionnet
    from repro.models.motionnet import motionnet_2
    from repro.spec.loader import load_specs

    spec = load_specs(dirs["specs"])["trajectorynet:table3"]
    run = train_row(spec, spec.row("motionnet-frozen"), "mini", work_root=dirs["work"], data_dir=dirs["data"],
                    progress=False)
    report = run.details["motionnet_pretrain"]["0"]
    losses = [h["unsup_loss"] for h in report["history"]]
    assert len(losses) == 2 and all(np.isfinite(losses)) and losses[1] < losses[0]
    pretrained = ckpt_io.load_checkpoint(report["file"])["state_dict"]
    final = ckpt_io.load_checkpoint(dirs["work"] / "mini" / "trajectorynet" / "table3" / "motionnet-frozen"
                                    / "seed0" / "final.pt")
    state = final["model"]
    for key, value in pretrained.items():  # frozen: classification training left MotionNet as pre-trained
        torch.testing.assert_close(state[f"motionnet.{key}"], value)
    # the same request re-uses the cached weights instead of training again
    again = motionnet_2(width=0.125)
    done = pretrain_motionnet(again, None, epochs=2, batch_size=4, lr=1e-3, video_mean=torch.zeros(1, 3, 1, 1, 1),
                              video_std=torch.ones(1, 3, 1, 1, 1), out=report["file"], seed=0, progress=False)
    assert done["history"] == report["history"]
    for key, value in again.state_dict().items():
        torch.testing.assert_close(value, pretrained[key])
    # a result assembled later from the finished run still says which pre-training it started from
    assembled = train_row(spec, spec.row("motionnet-frozen"), "mini", work_root=dirs["work"], data_dir=dirs["data"],
                          progress=False)
    assert assembled.details["motionnet_pretrain"]["0"] == report
    assert assembled.details["train_threads"] == run.details["train_threads"] == {"0": torch.get_num_threads()}


def test_motionnet_pretraining_repeats_bit_for_bit_on_the_same_threads(tmp_path):
    # Same seed, same data, same thread count: the same weights exactly (what a re-run of a row
    # at mini relies on; a different thread count sums floats in another order and drifts).
    from repro.models.motionnet_pretrain import pretrain_motionnet
    from repro.models.motionnet import motionnet_2

    g = torch.Generator().manual_seed(0)
    clips = [{"video": torch.rand(3, 3, 32, 32, generator=g)} for _ in range(4)]
    states = []
    for name in ("a.pt", "b.pt"):
        torch.manual_seed(0)
        net = motionnet_2(width=0.125)
        pretrain_motionnet(net, clips, epochs=1, batch_size=2, lr=1e-3, video_mean=torch.zeros(1, 3, 1, 1, 1),
                           video_std=torch.ones(1, 3, 1, 1, 1), out=tmp_path / name, seed=0, progress=False)
        states.append(net.state_dict())
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key


def test_a_row_started_beside_a_running_motionnet_pretraining_waits_and_reuses_it(tmp_path):
    # Table 4's three MotionNet-(2) rows ask for the same pre-trained MotionNet; run side by side,
    # the second must wait for the first's result instead of pre-training its own copy.
    import threading

    from repro.engine import checkpoint as ckpt_io
    from repro.models.motionnet_pretrain import pretrain_motionnet
    from repro.fileio import atomic_write, lock_beside
    from repro.models.motionnet import motionnet_2

    g = torch.Generator().manual_seed(0)
    clips = [{"video": torch.rand(3, 3, 32, 32, generator=g)} for _ in range(4)]
    kwargs = dict(epochs=1, batch_size=2, lr=1e-3, video_mean=torch.zeros(1, 3, 1, 1, 1),
                  video_std=torch.ones(1, 3, 1, 1, 1), seed=0, progress=False)
    out = tmp_path / "motionnet2.pt"
    finished = pretrain_motionnet(motionnet_2(width=0.125), clips, out=tmp_path / "elsewhere.pt", **kwargs)
    # what "the other process" saves; a history no training produces shows it was loaded, not re-made
    saved = {**finished, "history": [{"epoch": 1, "unsup_loss": -1.0}]}
    waiter_result = {}

    def second_row():
        waiter_result["done"] = pretrain_motionnet(motionnet_2(width=0.125), clips, out=out, **kwargs)

    with lock_beside(out):  # the first row is pre-training
        waiter = threading.Thread(target=second_row)
        waiter.start()
        waiter.join(timeout=1.0)
        assert waiter.is_alive() and not out.exists()  # waiting, not training a copy
        with atomic_write(out) as tmp:
            torch.save(saved, tmp)
    waiter.join(timeout=60)
    assert not waiter.is_alive()
    assert waiter_result["done"]["history"] == saved["history"]
    for key, value in ckpt_io.load_checkpoint(out)["state_dict"].items():
        torch.testing.assert_close(value, finished["state_dict"][key])


def test_checkpoint_settings_match_across_a_new_defaulted_config_field():
    from repro.engine.trainer import same_settings

    current = {"epochs": 2, "identity": {"model": "m", "config": {"dataset": "synth", "lr": 0.1, "motionnet_pretrain": None}}}
    older = {"epochs": 2, "identity": {"model": "m", "config": {"dataset": "synth", "lr": 0.1}}}  # before the field
    assert same_settings(older, current) and same_settings(current, older)
    assert not same_settings({**older, "epochs": 3}, current)
    assert not same_settings({"epochs": 2, "identity": {"model": "m", "config": {"dataset": "synth", "lr": 0.2}}}, current)
    assert not same_settings(None, current)


def test_a_train_command_result_is_what_the_runner_would_cache(dirs, capsys, monkeypatch):
    # With a built-in preset the cache key includes the preset's definition; `repro train` must
    # write the same key as the runner, or `repro table3` would train the row again.
    from repro.data import synth
    from repro.runner import plan_table
    from repro.spec.loader import load_specs

    meta = synth.read_meta(dirs["data"] / "synth" / "tiny")
    monkeypatch.setitem(synth.PRESETS, "tiny", synth.Preset(**{
        k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"]["preset"].items()}))
    code, _, _ = _run(["train", "trajectorynet:table3:appearance"], dirs, capsys)
    assert code == 0
    spec = load_specs(dirs["specs"])["trajectorynet:table3"]
    states = {t.row.id: t.state for t in plan_table(spec, "mini", dirs["results"], rows=["appearance"])}
    assert states == {"appearance": "cached"}


def test_checkpoint_settings_ignore_the_spec_head_size_the_data_replaces():
    from repro.engine.trainer import same_settings

    def fp(spec_classes, built_classes, dropout=0.2):
        return {"epochs": 2, "identity": {"model": "m", "num_classes": built_classes, "config": {"dataset": "synth"},
                                          "model_args": {"num_classes": spec_classes, "dropout": dropout}}}

    assert same_settings(fp(174, 12), fp(400, 12))  # Sth-Sth's and Kinetics' heads, both built with 12 classes
    no_flow = fp(174, 12)
    no_flow["identity"]["config"]["flow"] = "none"  # written out in the spec; the default is None
    assert same_settings(no_flow, fp(174, 12))
    assert not same_settings(fp(174, 12), fp(174, 10))
    assert not same_settings(fp(174, 12), fp(174, 12, dropout=0.5))


def test_provenance_says_which_videos_were_skipped():
    """A run whose data lost videos to decoding errors says so beside its numbers, with the counts used."""
    from repro.engine.data import RunData

    class Clips(list):
        def __init__(self, n, skipped):
            super().__init__(range(n))
            self.num_skipped = skipped

    clean = RunData(Clips(10, 0), Clips(4, 0), 2, Path("."), "ucf101 split 1 (10 train / 4 val videos)")
    assert clean.measured_on() == clean.description
    lossy = RunData(Clips(10, 2), Clips(4, 1), 2, Path("."), "ucf101 split 1 (10 train / 4 val videos)")
    assert lossy.measured_on() == ("ucf101 split 1 (10 train / 4 val videos); 3 undecodable videos skipped "
                                   "(8 train / 3 val used)")
