"""The flow job measures a TVNet Table 1 row end to end and the result lands with provenance."""
import json

from repro.cli import main

SPEC = """
paper: tvnet
table: 1
title: Toy EPE table
text_columns: [{key: method, label: Methods}]
metrics:
  - {key: epe, label: EPE, unit: px, higher_is_better: false, measure: "flow:epe"}
  - {key: fps, label: FPS, unit: fps, measure: "flow:fps"}
defaults:
  mini: {dataset: synth, preset: mini, size: 32, epochs: 3, batch_size: 4}
rows:
  - {id: tvnet_plain, label: TVNet-1-1-5, kind: method, reported: {epe: 3.0}, flow_method: tvnet-1-1-5, flow_training: none}
  - {id: tvnet_u0, label: TVNet-1-1-5 u0, kind: method, reported: {epe: 2.0}, flow_method: tvnet-1-1-5, flow_training: u0}
  - {id: dis, label: DIS-Fast, kind: baseline, reported: {epe: 4.0}, flow_method: dis-fast}
claims:
  - {id: u0-helps, text: training u0 lowers EPE, metric: epe, a: tvnet_u0, op: "<", b: tvnet_plain}
"""


def test_flow_rows_run_and_render(tmp_path, capsys):
    (tmp_path / "specs" / "tvnet").mkdir(parents=True)
    (tmp_path / "specs" / "tvnet" / "table1.yaml").write_text(SPEC)
    dirs = ["--specs", str(tmp_path / "specs"), "--results", str(tmp_path / "results"),
            "--tables", str(tmp_path / "tables"), "--work-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")]
    assert main(["table1", "--paper", "tvnet", "--format", "json", "-q", *dirs]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["id"]: r for r in out[0]["rows"]}
    for rid in ("tvnet_plain", "tvnet_u0", "dis"):
        epe = rows[rid]["reproduced"]["epe"]
        assert 0.0 < epe < 3.0, (rid, epe)  # a real flow on sub-pixel-to-2px synthetic motion
        assert rows[rid]["reproduced"]["fps"] > 0
        assert rows[rid]["sources"]["epe"]["scale"] == "mini"
    saved = json.loads((tmp_path / "results" / "mini" / "tvnet" / "table1" / "tvnet_u0.flow.json").read_text())
    train = saved["details"]["train"]["0"]  # one seed (the spec's default); per seed: its own pairs
    assert train["iters"] == 3 and saved["provenance"]["commit"] is not None
    # what ran is the spec: the optimiser settings recorded are the spec's (resolved) ones
    assert saved["details"]["run_config"]["epochs"] == 3 and saved["details"]["run_config"]["batch_size"] == 4
    assert train["optimizer"] == saved["details"]["run_config"]["optimizer"] == "sgd"
    assert train["train_loss_before"] > 0 and train["train_loss_after"] > 0
    assert "built-in benchmark" in saved["provenance"]["data"]
    md = (tmp_path / "tables" / "tvnet" / "table1.md").read_text()
    assert "training u0 lowers EPE" in md and "mini: synthetic ground-truth pairs 32×32" in md
    # cached: a second run does not re-run (the file is unchanged)
    before = saved["provenance"]["date"]
    assert main(["table1", "--paper", "tvnet", "-q", *dirs]) == 0
    again = json.loads((tmp_path / "results" / "mini" / "tvnet" / "table1" / "tvnet_u0.flow.json").read_text())
    assert again["provenance"]["date"] == before


DYNAMICS_SPEC = """
paper: dynamics
table: 3
title: Toy displacement-map table
metrics:
  - {key: acc, label: Accuracy, unit: "%", measure: "train:top1"}
  - {key: epe, label: EPE, unit: px, higher_is_better: false, measure: "flow:epe"}
defaults:
  mini: {dataset: synth, preset: mini, frames: 2, size: 32, epochs: 1, batch_size: 4, model_args: {width: 0.25}}
rows:
  - id: soft
    label: Disp. map
    kind: method
    reported: {acc: 80.0}
    model: {name: dynamics_static_motion_bninception, args: {num_classes: 12, conv1_stride: 2, max_disp: 2}}
  - id: wta
    label: WTA
    kind: method
    reported: {acc: 70.0}
    model: {name: dynamics_static_motion_bninception, args: {num_classes: 12, conv1_stride: 1, max_disp: 4, matcher: wta}}
"""


def test_a_row_without_a_flow_method_is_measured_with_its_models_matcher_and_jobs_selects(tmp_path, capsys):
    """Dynamics Table 3's EPE column: the model's matcher, window and map stride; `--jobs flow` runs
    that column alone (the training rows stay unrun and say why)."""
    (tmp_path / "specs" / "dynamics").mkdir(parents=True)
    (tmp_path / "specs" / "dynamics" / "table3.yaml").write_text(DYNAMICS_SPEC)
    dirs = ["--specs", str(tmp_path / "specs"), "--results", str(tmp_path / "results"),
            "--tables", str(tmp_path / "tables"), "--work-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")]
    assert main(["table3", "--paper", "dynamics", "--jobs", "flow", "--format", "json", "-q", *dirs]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)[0]["rows"]}
    for rid, method in (("soft", "dispmap-s2-d4-t0.01"), ("wta", "dispmap-wta-d4")):
        saved = json.loads((tmp_path / "results" / "mini" / "dynamics" / "table3" / f"{rid}.flow.json").read_text())
        assert saved["details"]["method"] == method
        assert 0.0 < rows[rid]["reproduced"]["epe"] < 3.0 and "acc" not in rows[rid]["reproduced"]
        assert "train@mini not run (--jobs)" in rows[rid]["status"]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))
    assert main(["table3", "--paper", "dynamics", "--jobs", "nope", "-q", *dirs]) == 2
    assert "--jobs: unknown job nope" in capsys.readouterr().err
