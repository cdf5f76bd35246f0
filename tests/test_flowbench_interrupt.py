"""Ctrl-C in flowbench keeps every finished (size, data set) and says so, or says it kept nothing."""
import json

import pytest

import repro.flow.bench as bench
from repro.cli import main


def _interrupt_on_call(monkeypatch, n: int) -> None:
    real, calls = bench._score, {"n": 0}

    def score(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, "_score", score)


ARGS = ["flowbench", "--size", "16x16", "--size", "24x24", "--method", "dis-fast", "--method", "farneback",
        "--synth-pairs", "1", "--no-stereo", "-q"]


def test_interrupt_keeps_finished_sizes(tmp_path, monkeypatch, capsys):
    _interrupt_on_call(monkeypatch, 3)  # 16x16 (2 scores) finished; interrupted in 24x24
    out = tmp_path / "bench.json"
    assert main([*ARGS, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "kept the 2 finished rows (16x16 synth)" in err and str(out) in err
    payload = json.loads(out.read_text())
    assert payload["interrupted"] is True
    assert sorted((r["size"], r["method"]) for r in payload["rows"]) == [("16x16", "dis-fast"), ("16x16", "farneback")]
    assert all(r["pairs"] == 1 and r["epe"] >= 0 for r in payload["rows"])


@pytest.mark.parametrize("with_out", [True, False])
def test_interrupt_before_anything_finished_says_nothing_kept(tmp_path, monkeypatch, capsys, with_out):
    _interrupt_on_call(monkeypatch, 1)
    out = tmp_path / "bench.json"
    assert main([*ARGS, *(["--out", str(out)] if with_out else [])]) == 130
    err = capsys.readouterr().err
    assert "nothing kept" in err and not out.exists()
