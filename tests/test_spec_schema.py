"""Malformed spec fixtures each fail at load with the file, the row/field and what was expected."""
from pathlib import Path

import pytest

from repro.spec.loader import SpecError, load_spec, load_specs

BAD = Path(__file__).parent / "fixtures" / "bad_specs"

CASES = {
    "unknown_key": ("row 'a' (rows[0])", "field modle", "did you mean 'model'?"),
    "wrong_type": ("row 'a' (rows[0])", "field reported.top1", "valid number", "'high'"),
    "unknown_model": ("row 'a' (rows[0])", "field model.name", "unknown model 's3d_resnt18'"),
    "duplicate_row": ("row 'a' (rows[1])", "field id", "duplicate row id (first at rows[0])"),
    "claim_missing_row": ("claim 'b-beats-a' (claims[0])", "field a", "names row 'bb'", "did you mean 'b'?"),
    "unknown_metric": ("field reported.top_1", "not a metric of this table", "did you mean 'top1'?"),
    "bad_kind": ("field kind", "'method', 'baseline' or 'cited'", "'ours'"),
    "bad_yaml": ("not valid YAML at line 11",),
    "bad_measure": ("metrics[0]", "field measure", "'<job>:<metric>'", "'training:top1'"),
    "unknown_paper": ("field paper", "unknown paper 'trajnet'"),
    "missing_rows": ("field rows", "required field is missing"),
    # TSN: frames is the whole clip (segments x snippet length); 8 frames cannot make 3 segments
    "segments_frames": ("row 'a' (rows[0])", "field mini", "segments: 3 must divide frames (8)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_spec_gives_clear_error(case):
    with pytest.raises(SpecError) as info:
        load_specs(BAD / case)
    msg = str(info.value)
    assert msg.startswith(str(BAD / case / "trajectorynet" / "table3.yaml") + ": "), msg
    for part in CASES[case]:
        assert part in msg, f"{part!r} not in {msg!r}"
    assert "Traceback" not in msg and "\n" not in msg


def test_every_fixture_has_a_case():
    assert sorted(p.name for p in BAD.iterdir()) == sorted(CASES)


def test_unknown_model_suggests_registered_name(tmp_path):
    spec = (BAD / "unknown_model" / "trajectorynet" / "table3.yaml").read_text()
    path = tmp_path / "trajectorynet" / "table3.yaml"
    path.parent.mkdir()
    path.write_text(spec.replace("s3d_resnt18", "r2plus1d_81"))
    with pytest.raises(SpecError, match=r"did you mean 'r2plus1d_18'\?"):
        load_spec(path)


def test_file_name_must_match_table(tmp_path):
    text = (BAD / "duplicate_row" / "trajectorynet" / "table3.yaml").read_text().replace("id: a, label: A again", "id: b, label: B")
    path = tmp_path / "trajectorynet" / "table4.yaml"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(SpecError, match="expected 'table3.yaml'"):
        load_spec(path)


def test_defaults_merge_one_level(tmp_path):
    path = tmp_path / "trajectorynet" / "table3.yaml"
    path.parent.mkdir()
    path.write_text("""
paper: trajectorynet
table: 3
title: Toy
metrics: [{key: top1, label: Top-1, unit: '%', measure: 'train:top1'}]
defaults:
  mini: {dataset: synth, epochs: 2, lr: 0.1, model_args: {width: 8}}
rows:
  - {id: a, label: A, kind: baseline, model: {name: r3d_18}, mini: {lr: 0.01, model_args: {depth: 2}}}
  - {id: b, label: B, kind: cited, cite: '[1]', reported: {top1: 3.0}}
""")
    spec = load_spec(path)
    a = spec.row("a").mini
    assert (a.dataset, a.epochs, a.lr) == ("synth", 2, 0.01)
    assert a.model_args == {"width": 8, "depth": 2}
    assert spec.row("b").mini is None  # cited rows are never run


def test_a_row_left_out_at_one_scale_says_why(tmp_path):
    import textwrap

    from repro.runner import plan_table
    from repro.spec.loader import SpecError, load_spec

    text = textwrap.dedent("""
        paper: trajectorynet
        table: 7
        title: t
        metrics: [{key: top1, label: Top-1, measure: "train:top1"}]
        defaults:
          mini: {dataset: synth, preset: mini}
          full: {dataset: sthv1}
        rows:
          - id: kinetics
            label: Kinetics pre-trained
            kind: method
            model: {name: s3d_resnet18, args: {num_classes: 174}}
            mini: false
            needs: a Kinetics pre-trained start
    """)
    path = tmp_path / "table7.yaml"
    path.write_text(text)
    spec = load_spec(path)
    row = spec.row("kinetics")
    assert row.mini is None and row.full is not None and row.full.dataset == "sthv1"
    (task,) = plan_table(spec, "mini", tmp_path / "results")
    assert task.state == "missing" and task.reason == "a Kinetics pre-trained start"

    path.write_text(text.replace("    mini: false\n", ""))  # runnable at every scale: needs nothing
    with pytest.raises(SpecError, match="needs"):
        load_spec(path)


def _copy_specs(tmp_path):
    import shutil

    root = Path(__file__).resolve().parents[1] / "specs"
    shutil.copytree(root, tmp_path / "specs")
    return tmp_path / "specs"


def test_measure_key_the_job_does_not_report_exits_2_with_one_line(tmp_path, capsys):
    from repro.cli import main

    specs = _copy_specs(tmp_path)
    path = specs / "trajectorynet" / "table3.yaml"
    text = path.read_text()
    assert 'measure: "profile:params_m"' in text  # the key the test misspells must be in the spec
    path.write_text(text.replace('measure: "profile:params_m"', 'measure: "profile:params_mm"'))
    assert main(["list", "--specs", str(specs), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for part in ("table3.yaml", "column 'params'", "params_mm", "did you mean 'params_m'?", "it offers params"):
        assert part in err, err


def test_measure_of_an_unknown_job_names_the_jobs(tmp_path):
    specs = _copy_specs(tmp_path)
    path = specs / "trajectorynet" / "table3.yaml"
    path.write_text(path.read_text().replace('measure: "train:top1"', 'measure: "trian:top1"'))
    with pytest.raises(SpecError, match=r"unknown job 'trian'.*did you mean 'train'\?"):
        load_specs(specs)


def test_every_measure_is_a_key_its_job_reports_or_plans():
    from repro.jobs import JOBS

    for spec in load_specs().values():
        for m in spec.metrics:
            if m.job:
                assert JOBS[m.job].offers(m.job_key) or JOBS[m.job].plans(m.job_key), (spec.key, m.measure)
