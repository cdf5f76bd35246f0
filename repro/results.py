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
#: Where an untracked file changes what runs (new code, a new spec): such files count as dirty.
CODE_DIRS = ("repro", "specs")


def dirty_files(repo: Path | str | None = None) -> list[str] | None:
    """Paths that make the checkout differ from HEAD in what it runs: tracked files changed
    anywhere but the harness's own outputs (:data:`OUTPUT_DIRS`), and untracked files under
    :data:`CODE_DIRS` (a new module imported by the code, a new spec).  ``None`` outside git."""
    excluded = [f":(exclude){d}" for d in OUTPUT_DIRS]
    out = _git("status", "--porcelain", "--untracked-files=all", "--", ".", *excluded, cwd=repo, strip=False)
    if out is None:
        return None
    paths = []
    for line in out.splitlines():
        if not line.strip():
            continue
        status, path = line[:2], line[3:].strip().strip('"')
        if status == "??" and not path.startswith(tuple(f"{d}/" for d in CODE_DIRS)):
            continue  # an untracked scratch file elsewhere runs nothing
        paths.append(path.split(" -> ")[-1])
    return paths


def code_is_dirty(repo: Path | str | None = None) -> bool | None:
    """Whether the checkout differs from HEAD in what it runs (:func:`dirty_files`): the ``dirty``
    flag of provenance.  Counting ``results/`` would mark every row but the first of a table run
    dirty, because the first row's result was just written there."""
    files = dirty_files(repo)
    return None if files is None else bool(files)


def _git(*args: str, cwd: Path | str | None = None, strip: bool = True) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd or Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() if strip else out.stdout  # porcelain status lines start with a space


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def provenance(*, scale: str, seed: int | list[int] | None, spec_hash: str | None, command: str | None = None,
               data: str | None = None, threads: int | None = None, **extra: Any) -> dict[str, Any]:
    """Everything needed to trust (and redo) a measurement.  ``threads``: the torch threads the
    job ran with when it set its own (the profile job restores the caller's afterwards); default:
    the current count."""
    import numpy
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    for name in ("timm", "torchvision", "cv2", "onnxruntime", "fvcore"):
        with contextlib.suppress(Exception):
            versions[name] = __import__(name).__version__
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    commit = _git("rev-parse", "HEAD")
    changed = dirty_files() if commit else None
    return {
        "commit": commit,
        "dirty": None if changed is None else bool(changed),
        # what differs from ``commit`` (first 50 paths), so a dirty result shows which code ran
        **({"dirty_files": changed[:50]} if changed else {}),
        "spec_hash": spec_hash,
        # the fingerprint of the package's source that ran: claims compare only rows run by the same
        "code": code_fingerprint(),
        "seed": seed,
        "scale": scale,
        "data": data,
        "versions": versions,
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "gpu": gpu, "platform": platform.platform()},
        # always: a row's numbers depend on it (reductions, timing)
        "threads": int(threads) if threads is not None else torch.get_num_threads(),
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
    #: The job's ``details`` (e.g. ``run_config``: the resolved configuration that ran).
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def data(self) -> str | None:
        return self.provenance.get("data")

    @property
    def code(self) -> str | None:
        """Fingerprint of the code that produced it (``None``: a result from before fingerprints)."""
        return self.provenance.get("code")

    def seed_values(self, key: str) -> dict[int, float]:
        """``{seed: value}`` of metric ``key``: each seed's, or the one seed's a single run names."""
        if self.per_seed:
            return {s: m[key] for s, m in self.per_seed.items() if key in m}
        seed = self.provenance.get("seed")
        return {int(seed): self.metrics[key]} if isinstance(seed, int) and key in self.metrics else {}


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
                      dict(doc["metrics"]), dict(doc["provenance"]), path, per_seed, dict(doc.get("details") or {}))
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
