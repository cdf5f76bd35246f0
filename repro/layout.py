"""Where everything the harness writes lives: one function per place, nothing else composes paths.

    results/<scale>/<paper>/table<N>/<row>.<job>.json     one job's metrics for one row (repro.results)
    <work>/<scale>/<paper>/table<N>/<row>/seed<k>/        a train run: last.pt, final.pt (repro.engine)
    <work>/<scale>/by-identity/<run key>.json             index of finished runs by identity (repro.identity)
    <work>/<scale>/motionnet/                             MotionNet pre-training cache
    <data>/synth/<preset>/                                the built-in benchmark
    <data>/synth/<preset>/decoded/                        its decoded frames and flow (repro.engine.data)
    ~/.cache/repro/native/ ($REPRO_NATIVE_CACHE)          native kernels built on first use (repro.ops.tvl1_native)

``<work>`` is ``--work-dir`` (default ``runs/``), ``<data>`` is ``--data-dir`` (default ``data/``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["result_path", "parse_result_name", "row_work_dir", "seed_dir", "identity_index_path", "relative_to_work",
           "stage_cache_root", "synth_root", "decoded_dir", "native_build_dir"]

_RESULT_NAME = re.compile(r"^(?P<row>[a-z0-9][a-z0-9_\-]*)\.(?P<job>[a-z]+)\.json$")


def result_path(root: Path | str, scale: str, paper: str, table: int, row: str, job: str) -> Path:
    """The result of ``job`` for one row at one scale."""
    return Path(root) / scale / paper / f"table{table}" / f"{row}.{job}.json"


def parse_result_name(name: str) -> tuple[str, str] | None:
    """``"appearance.train.json"`` -> ``("appearance", "train")``; None for any other name."""
    m = _RESULT_NAME.match(name)
    return (m["row"], m["job"]) if m else None


def row_work_dir(work_root: Path | str, scale: str, paper: str, table: int, row: str) -> Path:
    """A row's work folder: its train runs, one per seed."""
    return Path(work_root) / scale / paper / f"table{table}" / row


def seed_dir(row_dir: Path | str, seed: int) -> Path:
    return Path(row_dir) / f"seed{seed}"


def identity_index_path(work_root: Path | str, scale: str, run_key: str) -> Path:
    """Where the finished run with identity key ``run_key`` is recorded (twin runs are looked up here)."""
    return Path(work_root) / scale / "by-identity" / f"{run_key}.json"


def relative_to_work(path: Path | str, work_root: Path | str) -> str:
    """``path`` as recorded in a result: relative to the work root when inside it (a result names
    no machine's folders), else as given."""
    path, work_root = Path(path), Path(work_root)
    return str(path.relative_to(work_root)) if path.is_relative_to(work_root) else str(path)


def stage_cache_root(work_root: Path | str, scale: str) -> Path:
    """Where a model's training stages keep their results at ``scale``, each in a folder of its own
    (MotionNet pre-training: ``motionnet/``), shared by every row that asks for the same stage."""
    return Path(work_root) / scale


def synth_root(data_dir: Path | str, preset: str) -> Path:
    return Path(data_dir) / "synth" / preset


def decoded_dir(dataset_root: Path | str) -> Path:
    return Path(dataset_root) / "decoded"


def native_build_dir() -> Path:
    """Where native kernels compiled on first use are kept (``$REPRO_NATIVE_CACHE``, default
    ``~/.cache/repro/native``); each file's name carries a hash of its source, flags and CPU."""
    return Path(os.environ.get("REPRO_NATIVE_CACHE") or Path.home() / ".cache" / "repro" / "native")
