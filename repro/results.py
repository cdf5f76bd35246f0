"""Measured results with provenance: ``results/<scale>/<paper>/table<N>/<row>.<job>.json``.

A result file holds the metrics one job measured for one table row at one scale, and the
provenance needed to trust it (git commit, code fingerprint, spec hash, seed(s), library
versions, machine, threads, scale, data, date, command).  A row's ``profile`` and ``train``
results are two files: neither overwrites the other.  Files are written atomically (temp file in the same
folder + ``os.replace``) under an advisory lock, so two concurrent runs never corrupt one.

Reported numbers never come from here and reproduced numbers never come from anywhere else.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro import layout
from repro.fileio import atomic_write_text, lock_beside
from repro.identity import code_fingerprint

__all__ = [
    "Result",
    "atomic_write_text",
    "default_results_dir",
    "load_results",
    "provenance",
    "read_result",
    "result_path",
    "write_result",
]

SCHEMA_VERSION = 1


def default_results_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "results"


def result_path(root: Path | str, scale: str, paper: str, table: int, row: str, job: str) -> Path:
    return layout.result_path(root, scale, paper, table, row, job)


#: What the harness itself writes into the checkout; edits there do not change what a run measures.
OUTPUT_DIRS = ("results", "tables")


def code_is_dirty(repo: Path | str | None = None) -> bool | None:
    """Whether tracked files other than the harness's own outputs (:data:`OUTPUT_DIRS`) differ
    from HEAD: the ``dirty`` flag of provenance.  Counting ``results/`` would mark every row but
    the first of a table run dirty, because the first row's result was just written there."""
    excluded = [f":(exclude){d}" for d in OUTPUT_DIRS]
    out = _git("status", "--porcelain", "--untracked-files=no", "--", ".", *excluded, cwd=repo)
    return None if out is None else bool(out)


def _git(*args: str, cwd: Path | str | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd or Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def provenance(*, scale: str, seed: int | list[int] | None, spec_hash: str | None, command: str | None = None,
               data: str | None = None, **extra: Any) -> dict[str, Any]:
    """Everything needed to trust (and redo) a measurement."""
    import numpy
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    for name in ("timm", "torchvision", "cv2", "onnxruntime", "fvcore"):
        with contextlib.suppress(Exception):
            versions[name] = __import__(name).__version__
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    commit = _git("rev-parse", "HEAD")
    dirty = code_is_dirty() if commit else None
    return {
        "commit": commit,
        "dirty": dirty,
        "spec_hash": spec_hash,
        "code": code_fingerprint(),
        "seed": seed,
        "scale": scale,
        "data": data,
        "versions": versions,
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "gpu": gpu, "platform": platform.platform()},
        "threads": torch.get_num_threads(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        **extra,
    }


@dataclass(frozen=True)
class Result:
    scale: str
    paper: str
    table: int
    row: str
    job: str
    metrics: dict[str, float]
    provenance: dict[str, Any]
    path: Path
    #: ``{seed: metrics}`` when ``metrics`` is a mean over several seeds (``details.per_seed``).
    per_seed: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def data(self) -> str | None:
        return self.provenance.get("data")


def write_result(root: Path | str, *, scale: str, paper: str, table: int, row: str, job: str,
                 metrics: dict[str, float], provenance: dict[str, Any], details: dict[str, Any] | None = None) -> Path:
    """Atomically write one row's measured metrics with their provenance."""
    if "commit" not in provenance:
        raise ValueError("provenance must carry 'commit' (build it with repro.results.provenance)")
    path = result_path(root, scale, paper, table, row, job)
    doc = {
        "schema": SCHEMA_VERSION,
        "paper": paper,
        "table": table,
        "row": row,
        "scale": scale,
        "job": job,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "provenance": provenance,
        "details": details or {},
    }
    with lock_beside(path):
        atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=False) + "\n")
    return path


def _parse(path: Path) -> Result:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        per_seed = {int(seed): {k: float(v) for k, v in m.items()}
                    for seed, m in (doc.get("details") or {}).get("per_seed", {}).items()}
        return Result(doc["scale"], doc["paper"], int(doc["table"]), doc["row"], doc["job"],
                      dict(doc["metrics"]), dict(doc["provenance"]), path, per_seed)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a valid result file ({e})") from None


def read_result(root: Path | str, scale: str, paper: str, table: int, row: str, job: str) -> Result | None:
    path = result_path(root, scale, paper, table, row, job)
    return _parse(path) if path.is_file() else None


#: Key of a result: ``(scale, paper, table, row, job)``.
ResultKey = tuple[str, str, int, str, str]


def load_results(root: Path | str | None = None) -> dict[ResultKey, Result]:
    """Every result under ``root`` keyed ``(scale, paper, table, row, job)``.  A file whose name
    is not ``<row>.<job>.json`` (e.g. one written before results were per job) is an error naming
    it: run ``python -m repro.migrations.results_per_job`` once."""
    root = Path(root) if root is not None else default_results_dir()
    out: dict[ResultKey, Result] = {}
    if not root.is_dir():
        return out
    for path in sorted(root.glob("*/*/table*/*.json")):
        named = layout.parse_result_name(path.name)
        r = _parse(path)
        if named != (r.row, r.job):
            raise ValueError(f"{path}: a result file is named <row>.<job>.json ({r.row}.{r.job}.json); "
                             "migrate old results with `python -m repro.migrations.results_per_job`")
        out[(r.scale, r.paper, r.table, r.row, r.job)] = r
    return out
