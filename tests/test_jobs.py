"""Job declarations, the run identity and the work-folder layout."""
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from repro.jobs import JOBS, JobContext
from repro.spec.loader import load_specs
from repro.spec.schema import Row

SPECS = Path(__file__).resolve().parents[1] / "specs"


def test_each_job_is_declared_once_with_its_scales_and_data_needs():
    assert sorted(JOBS) == ["flow", "profile", "train"]
    assert JOBS["profile"].scale_for("mini") == "full" and JOBS["profile"].scale_for("full") == "full"
    assert JOBS["train"].scale_for("small") == "small" and JOBS["flow"].scale_for("mini") == "mini"
    assert JOBS["train"].reads_data and not JOBS["flow"].reads_data and not JOBS["profile"].reads_data
    assert JOBS["profile"].offers("part_ms_per_frame:shared") and not JOBS["profile"].offers("frame_fpz")
    assert JOBS["train"].plans("top1@ucf101") and not JOBS["train"].offers("top1@ucf101")


def test_missing_reasons_come_from_the_declaration():
    cited = Row(id="c", label="C", kind="cited")
    needs = Row(id="n", label="N", kind="method", needs="a branch not implemented")
    model = Row.model_validate({"id": "m", "label": "M", "kind": "method", "model": {"name": "s3d_resnet18"},
                                "mini": {"dataset": "synth"}})
    assert JOBS["train"].missing_reason(cited, "mini") == "cited from another paper"
    assert JOBS["profile"].missing_reason(needs, "full") == "a branch not implemented"
    assert JOBS["train"].missing_reason(model, "full") == "no 'full' configuration in the spec"
    assert JOBS["train"].missing_reason(model, "mini", ["top1"]) is None
    assert JOBS["train"].missing_reason(model, "mini", ["top1@hmdb51"]) == "the train job does not measure top1@hmdb51 yet"


def test_job_modules_import_without_the_engine():
    import subprocess
    import sys

    code = "import sys, repro.jobs; assert 'repro.engine.job' not in sys.modules and 'repro.flow.job' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


class _TwoParts(nn.Module):
    """A model declaring a shared stage and its own head through the profile hook."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Conv3d(3, 4, 3, padding=1)
        self.own = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2))

    def forward(self, x):
        return self.own(self.shared(x))

    def profile_parts(self, inputs):
        (x,) = inputs
        return {"shared": (self.shared, (x,)), "own": (self.own, (self.shared(x).detach(),))}


def test_profile_parts_hook_times_each_declared_part_per_frame():
    from repro.jobs.profile import frames_per_input, time_parts
    from repro.profile import count_macs

    model = _TwoParts()
    x = torch.randn(2, 3, 4, 8, 8)
    assert frames_per_input(x.shape) == 8 and frames_per_input((3, 3, 32, 32)) == 3
    assert JOBS["profile"].offers("part_time_ratio:shared/own") and JOBS["profile"].offers("part_gmacs:own")
    wanted = ["part_ms_per_frame:shared", "part_ms_per_frame:own", "part_ms_per_frame:absent", "part_fps:own",
              "part_gmacs:shared", "part_gmacs:absent", "part_macs_ratio:own/shared", "part_time_ratio:shared/own"]
    out = time_parts(model, (x,), wanted, threads=1, frames=8)
    assert set(out) == set(wanted)
    assert out["part_ms_per_frame:shared"] > 0 and out["part_ms_per_frame:own"] > 0
    assert out["part_ms_per_frame:absent"] == 0.0 and out["part_gmacs:absent"] == 0.0  # absent: costs nothing
    assert out["part_fps:own"] == pytest.approx(1e3 / out["part_ms_per_frame:own"])
    # exact MACs: the conv's 3*4*27 per output voxel; the head's linear layer 4*2 per clip (pooling is free)
    conv_macs = 2 * 4 * 8 * 8 * 4 * 3 * 27
    assert out["part_gmacs:shared"] == pytest.approx(conv_macs / 1e9)
    head = count_macs(model.own, (torch.zeros(2, 4, 4, 8, 8),)).model_macs
    assert out["part_macs_ratio:own/shared"] == pytest.approx(head / conv_macs)
    # the ratio comes from the same run's times
    assert out["part_time_ratio:shared/own"] == pytest.approx(out["part_ms_per_frame:shared"] / out["part_ms_per_frame:own"])
    # one interleaved run: every timed key has its 10th-90th percentile range over the rounds
    spread = {}
    out = time_parts(model, (x,), wanted, threads=1, frames=8, spread=spread, repeats=5, warmup=1)
    assert set(spread) == {"part_ms_per_frame:shared", "part_ms_per_frame:own", "part_fps:own", "part_time_ratio:shared/own"}
    for key, (lo, hi) in spread.items():
        assert lo <= out[key] <= hi, key
    assert spread["part_fps:own"] == pytest.approx([1e3 / spread["part_ms_per_frame:own"][1],
                                                    1e3 / spread["part_ms_per_frame:own"][0]])
    assert time_parts(model, (x,), ["part_time_ratio:own/absent"], threads=1, frames=8) == {
        "part_time_ratio:own/absent": 0.0}  # a ratio the model cannot form


def test_profile_job_reports_per_frame_speed(tmp_path, monkeypatch):
    import repro.profile as prof_mod
    from repro.jobs.profile import run_profile

    spec = load_specs(SPECS)["trajectorynet:table3"]
    row = spec.row("appearance")
    fake = {"params": 10, "macs": 20, "gmacs": 2e-8, "gflops": 4e-8, "latency_ms": 50.0,
            "latency_p10_ms": 40.0, "latency_p90_ms": 80.0}  # profile(latency=True, backend="eager")
    monkeypatch.setattr(prof_mod, "profile", lambda *a, **k: dict(fake))
    ctx = JobContext(spec=spec, row=row, scale="full", wanted=["frame_fps", "latency_ms_per_frame"],
                     results_dir=tmp_path, work_dir=tmp_path, data_dir=tmp_path)
    out = run_profile(ctx)
    frames = row.input_shape[0] * row.input_shape[2]
    assert out.metrics["latency_ms_per_frame"] == pytest.approx(50.0 / frames)
    assert out.metrics["frame_fps"] == pytest.approx(1e3 / 50.0 * frames)
    assert out.metrics["fps"] == pytest.approx(1e3 / 50.0 * row.input_shape[0])
    assert out.details["spread"]["latency_ms_per_frame"] == pytest.approx([40.0 / frames, 80.0 / frames])


def test_layout_composes_every_path():
    from repro import layout

    assert layout.result_path("r", "full", "tvnet", 3, "a", "train") == Path("r/full/tvnet/table3/a.train.json")
    assert layout.parse_result_name("a_b-1.profile.json") == ("a_b-1", "profile")
    assert layout.parse_result_name("a_b.json") is None
    assert layout.seed_dir(layout.row_work_dir("w", "mini", "p", 2, "r"), 1) == Path("w/mini/p/table2/r/seed1")


def test_identity_normalises_once():
    from repro.identity import code_fingerprint, digest, normal, normal_settings, run_key

    assert digest({"a": (1, 2), "b": Path("x")}) == digest({"b": "x", "a": [1, 2]})
    assert normal({"k": (1, {"p": Path("q")})}) == {"k": [1, {"p": "q"}]}
    fp = {"epochs": 2, "identity": {"model": "m", "model_args": {"num_classes": 174}, "num_classes": 12,
                                    "config": {"dataset": "synth", "flow": "none", "momentum": 0.9}}}
    same = {"epochs": 2, "identity": {"model": "m", "model_args": {}, "num_classes": 12,
                                      "config": {"dataset": "synth"}}}
    assert normal_settings(fp) == normal_settings(same)
    assert run_key(fp, None) == run_key(same, None) != run_key(same, {"synth": 1})
    assert len(code_fingerprint()) == 16 and code_fingerprint() == code_fingerprint()


def test_resolved_config_is_the_one_place_defaults_live():
    from repro.engine.trainer import resolve_settings
    from repro.spec.schema import RUN_DEFAULTS, RunConfig, resolved_config

    r = resolved_config(RunConfig(dataset="synth", lr=0.01))
    assert r["lr"] == 0.01 and r["epochs"] == RUN_DEFAULTS["epochs"] and r["frames"] == RUN_DEFAULTS["frames"]
    s = resolve_settings(None, seed=0)
    assert (s.epochs, s.batch_size, s.lr, s.weight_decay) == tuple(RUN_DEFAULTS[k] for k in ("epochs", "batch_size",
                                                                                                 "lr", "weight_decay"))
    assert s.optimizer == "sgd" and s.momentum == 0.9


def test_list_jobs_shows_the_declarations(capsys):
    import json

    from repro.cli import main

    assert main(["list", "--jobs", "--format", "json"]) == 0
    jobs = {j["name"]: j for j in json.loads(capsys.readouterr().out)}
    assert jobs["profile"]["scales"] == ["full"] and "frame_fps" in jobs["profile"]["keys"]
    assert jobs["train"]["reads_data"] is True and jobs["flow"]["keys"] == ["epe", "rho", "fps"]


def test_code_fingerprint_covers_the_code_that_computes_results_only():
    from repro import identity

    assert identity._computes_results("engine/trainer.py") and identity._computes_results("ops/tvl1.py")
    assert identity._computes_results("deploy/backends.py")  # latency is measured through it
    for presentation in ("render.py", "claims.py", "report/site.py", "migrations/index_runs.py",
                         "deploy/tensorrt/plugins.py", "standins.py"):
        assert not identity._computes_results(presentation), presentation
    assert identity._computes_results("models/render.py")  # a bare name is the package's own module only
