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


def test_fps_is_the_median_of_repeated_calls(monkeypatch):
    """One slow call (a page fault, a busy neighbour) must not set a method's FPS: each pair is timed
    over at least 3 calls and its median counts."""
    import numpy as np

    from repro.flow.methods import FlowMethod
    from repro.flow.pairs import warped_texture_pair

    class Stepping(FlowMethod):
        name = "stepping"

        def __init__(self):
            self.calls = 0

        def compute(self, frame0, frame1):
            self.calls += 1
            bench_time[0] += 10.0 if self.calls == 2 else 0.01  # the 1st timed call is slow (call 1: warm-up)
            return np.zeros((*frame0.shape[:2], 2), np.float32)

    bench_time = [0.0]
    method = Stepping()
    monkeypatch.setattr(bench.time, "perf_counter", lambda: bench_time[0])
    rows = bench.run_flowbench([method], {"synth": [warped_texture_pair(16, 16, seed=0)]}, [None], progress=False,
                               min_seconds=0.0)
    assert method.calls == 1 + 3  # warm-up, then three timed calls
    assert rows[0].seconds == pytest.approx(0.01) and rows[0].fps == pytest.approx(100.0)
