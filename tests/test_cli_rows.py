"""``table<N>`` says per row whether it reused a stored result (commit, date) or ran it (time)."""
import json
import re

from repro.cli import main

SPEC = """
paper: tvnet
table: 1
title: Toy EPE table
text_columns: [{key: method, label: Methods}]
metrics:
  - {key: epe, label: EPE, unit: px, higher_is_better: false, measure: "flow:epe"}
defaults:
  mini: {dataset: synth, preset: mini, size: 32}
rows:
  - {id: dis, label: DIS-Fast, kind: baseline, reported: {epe: 4.0}, flow_method: dis-fast}
  - {id: paper_only, label: FlowNet, kind: cited, cite: "[9]", reported: {epe: 5.0}}
"""


def test_table_reports_ran_then_reused(tmp_path, capsys):
    (tmp_path / "specs" / "tvnet").mkdir(parents=True)
    (tmp_path / "specs" / "tvnet" / "table1.yaml").write_text(SPEC)
    dirs = ["--specs", str(tmp_path / "specs"), "--results", str(tmp_path / "results"),
            "--tables", str(tmp_path / "tables"), "--work-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")]
    assert main(["table1", "--paper", "tvnet", "-q", *dirs]) == 0
    first = capsys.readouterr().out
    assert re.search(r"^  dis +flow +ran \(\d+\.\d s\)$", first, re.M), first
    assert "paper_only" not in first.split("rows:")[-1]  # cited rows are neither run nor reused
    saved = json.loads((tmp_path / "results" / "mini" / "tvnet" / "table1" / "dis.flow.json").read_text())
    commit, date = (saved["provenance"]["commit"] or "?")[:10], saved["provenance"]["date"][:16].replace("T", " ")
    assert main(["table1", "--paper", "tvnet", "-q", "--format", "json", *dirs]) == 0
    runs = json.loads(capsys.readouterr().out)[0]["runs"]
    assert runs == [{"row": "dis", "job": "flow", "scale": "mini", "report": f"reused ({commit}, {date})",
                     "reused_from": {"commit": saved["provenance"]["commit"] or "", "date": saved["provenance"]["date"]},
                     "ran_s": None}]


def test_no_run_rendering_respects_the_umask(tmp_path, capsys):
    """``umask 022; python -m repro table<N> --no-run`` leaves 0644 files, also where a 0600 one stood."""
    import os
    import stat

    tables = tmp_path / "tables"
    (tables / "tvnet").mkdir(parents=True)
    old = tables / "tvnet" / "table3.md"
    old.write_text("stale")
    old.chmod(0o600)
    previous = os.umask(0o022)
    try:
        assert main(["table3", "--paper", "tvnet", "--no-run", "-q", "--tables", str(tables)]) == 0
    finally:
        os.umask(previous)
    written = sorted(p for p in tables.rglob("*") if p.is_file())
    assert {p.suffix for p in written} >= {".md", ".csv", ".tex", ".png"}
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {p.name: "0o644" for p in written}
    assert old.read_text() != "stale"
