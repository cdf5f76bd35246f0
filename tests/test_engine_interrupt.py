"""Ctrl-C (SIGINT) during training writes a checkpoint at the current batch, and the re-run
resumes from it and ends bit for bit where an uninterrupted run ends (CPU; issue 17)."""
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

    run_dir, hold_at = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)

    class Held(ToyMotionDataset):
        # the hold_at-th sample loaded: say READY and wait for GO (the test sends SIGINT meanwhile)
        loads = 0

        def __getitem__(self, index):
            Held.loads += 1
            if Held.loads == hold_at:
                open(os.path.join(run_dir, "READY"), "w").close()
                deadline = time.monotonic() + 120
                while not os.path.exists(os.path.join(run_dir, "GO")) and time.monotonic() < deadline:
                    time.sleep(0.02)
            return super().__getitem__(index)

    cfg = RunConfig(dataset="toy", epochs=3, batch_size=8, lr=0.1, warmup_epochs=0.5, clip_grad=5.0,
                    lr_schedule={"type": "cosine"}, loss_weights={"feature_l2": 0.01})
    settings = resolve_settings(cfg, seed=3, num_workers=0, checkpoint_interval_s=600.0)  # no timed checkpoints
    torch.manual_seed(3)
    model = TinyVideoNet(4, dropout=0.3, aux_loss=True)
    os.makedirs(run_dir, exist_ok=True)
    result = fit(model, Held(40, seed=1), ToyMotionDataset(16, seed=2, train=False), settings,
                 run_dir, num_classes=4, progress=False)
    print(json.dumps({"metrics": result.metrics, "history": result.history, "resumed_from": result.resumed_from}))
    """
)

# 40 samples, batch 8: epoch 1's first batch loads samples 41..48; hold in the middle of it
HOLD_AT = 44


def _start(script: Path, run_dir: Path, hold_at: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), str(run_dir), str(hold_at)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow  # three fresh Python processes (torch import dominates)
def test_sigint_checkpoints_mid_epoch_and_resumes_bit_for_bit(tmp_path):
    script = tmp_path / "train_tiny.py"
    script.write_text(SCRIPT)
    expected = _finish(_start(script, tmp_path / "uninterrupted", hold_at=0))
    expected_weights = torch.load(tmp_path / "uninterrupted" / "final.pt", weights_only=True)["model"]

    run_dir = tmp_path / "interrupted"
    proc = _start(script, run_dir, HOLD_AT)
    deadline = time.monotonic() + 120
    while not (run_dir / "READY").exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the child never reached the sample to interrupt at"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGINT)
    (run_dir / "GO").touch()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (-signal.SIGINT, 130, 1), err[-3000:]
    assert "KeyboardInterrupt" in err and "checkpoint" in err
    assert not (run_dir / "final.pt").exists()
    state = torch.load(run_dir / "last.pt", weights_only=True)
    # the batch being trained when Ctrl-C came was finished and saved: mid-epoch, not the epoch's start
    assert (state["epoch"], state["batch_in_epoch"]) == (1, 1)

    (run_dir / "READY").unlink()
    resumed = _finish(_start(script, run_dir, hold_at=0))
    assert resumed["resumed_from"] == {"epoch": 1, "batch": 1}
    assert resumed["metrics"] == expected["metrics"] and resumed["history"] == expected["history"]
    weights = torch.load(run_dir / "final.pt", weights_only=True)["model"]
    for name, tensor in expected_weights.items():
        assert torch.equal(weights[name], tensor), name
    assert expected["history"][-1]["train_top1"] > 25.0  # it learned: the comparison is not trivial
