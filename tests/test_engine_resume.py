"""A run killed with SIGKILL and resumed ends exactly where an uninterrupted run ends (CPU)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import torch
    from repro.engine.testing import TinyVideoNet, ToyMotionDataset
    from repro.engine.trainer import fit, resolve_settings
    from repro.spec.schema import RunConfig

    run_dir, pause_at, workers, interval = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    torch.set_num_threads(1)
    cfg = RunConfig(dataset="toy", epochs=3, batch_size=8, lr=0.1, warmup_epochs=0.5, clip_grad=5.0,
                    lr_schedule={"type": "cosine"}, loss_weights={"feature_l2": 0.01})
    settings = resolve_settings(cfg, seed=3, num_workers=workers, checkpoint_interval_s=interval)
    torch.manual_seed(3)
    model = TinyVideoNet(4, dropout=0.3, aux_loss=True)

    def on_checkpoint(path, state):
        # pause_at "E:B": stop (and wait to be killed) once epoch E, batch B is on disk
        if pause_at != "none" and f"{state['epoch']}:{state['batch_in_epoch']}" == pause_at:
            open(os.path.join(run_dir, "PAUSED"), "w").close()
            time.sleep(300)

    result = fit(model, ToyMotionDataset(40, seed=1), ToyMotionDataset(16, seed=2, train=False), settings,
                 run_dir, num_classes=4, progress=False, on_checkpoint=on_checkpoint)
    print(json.dumps({"metrics": result.metrics, "history": result.history, "resumed_from": result.resumed_from}))
    """
)


def _start(script: Path, run_dir: Path, pause_at: str, workers: int, interval: float) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), str(run_dir), pause_at, str(workers), str(interval)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _kill_when_paused(proc: subprocess.Popen, run_dir: Path) -> None:
    deadline = time.monotonic() + 120
    while not (run_dir / "PAUSED").exists():
        assert proc.poll() is None, f"child ended before pausing: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, "child never reached the checkpoint to kill at"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    (run_dir / "PAUSED").unlink()


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "final.pt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    script = root / "train_tiny.py"
    script.write_text(SCRIPT)
    run_dir = root / "uninterrupted"
    result = _finish(_start(script, run_dir, "none", workers=0, interval=600.0))
    assert result["resumed_from"] is None
    return script, result, _final_weights(run_dir)


@pytest.mark.slow  # five fresh Python processes (torch import dominates): ~25 s on 2 busy cores
@pytest.mark.parametrize("pause_at,workers,interval", [
    ("1:0", 0, 600.0),  # killed right after the first epoch's checkpoint
    ("1:2", 2, 0.0),  # killed mid-epoch (time-based checkpoint each batch), resumed with 2 workers
], ids=["after-epoch-1", "mid-epoch-2-workers"])
def test_kill9_and_resume_equals_uninterrupted(reference, tmp_path, pause_at, workers, interval):
    script, expected, expected_weights = reference
    run_dir = tmp_path / "killed"
    _kill_when_paused(_start(script, run_dir, pause_at, workers, interval), run_dir)
    assert not (run_dir / "final.pt").exists()
    assert (run_dir / "last.pt").is_file()
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert f"{state['epoch']}:{state['batch_in_epoch']}" == pause_at

    resumed = _finish(_start(script, run_dir, "none", workers, interval))
    epoch, batch = (int(v) for v in pause_at.split(":"))
    assert resumed["resumed_from"] == {"epoch": epoch, "batch": batch}
    assert resumed["metrics"] == expected["metrics"]
    assert resumed["history"] == expected["history"]
    weights = _final_weights(run_dir)
    assert weights.keys() == expected_weights.keys()
    for name, tensor in expected_weights.items():
        assert torch.equal(weights[name], tensor), name
    # the run learned something, so the comparison is not between two untouched models
    assert expected["history"][-1]["train_top1"] > 25.0


class _Interrupt(Exception):
    pass


def test_interrupted_in_process_resume_matches(tmp_path):
    """Fast in-process variant: an exception right after the mid-epoch checkpoint (2, 1), then a
    fresh model resumed from disk, ends with the uninterrupted run's weights and history."""
    from repro.engine.testing import TinyVideoNet, ToyMotionDataset
    from repro.engine.trainer import fit, resolve_settings
    from repro.spec.schema import RunConfig

    cfg = RunConfig(dataset="toy", epochs=3, batch_size=8, lr=0.1, lr_schedule={"type": "multistep", "milestones": [2]},
                    loss_weights={"feature_l2": 0.01})
    settings = resolve_settings(cfg, seed=5, checkpoint_interval_s=0.0)

    def run(run_dir, stop_at=None):
        torch.manual_seed(5)
        model = TinyVideoNet(4, width=4, dropout=0.5, aux_loss=True)

        def hook(path, state):
            if stop_at == (state["epoch"], state["batch_in_epoch"]):
                raise _Interrupt

        result = fit(model, ToyMotionDataset(24, frames=3, size=12), ToyMotionDataset(8, frames=3, size=12, train=False),
                     settings, run_dir, num_classes=4, progress=False, on_checkpoint=hook)
        return result, model.state_dict()

    expected, expected_weights = run(tmp_path / "a")
    with pytest.raises(_Interrupt):
        run(tmp_path / "b", stop_at=(2, 1))
    resumed, weights = run(tmp_path / "b")
    assert resumed.resumed_from == {"epoch": 2, "batch": 1}
    assert resumed.history == expected.history
    assert resumed.metrics == expected.metrics
    for name, tensor in expected_weights.items():
        assert torch.equal(weights[name], tensor), name
    assert expected.history[0]["lr"] == pytest.approx(0.1) and expected.history[2]["lr"] == pytest.approx(0.01)
