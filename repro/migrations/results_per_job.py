"""Rename ``results/**/<row>.json`` to ``<row>.<job>.json`` (issue 12: results per (row, job)).

Before, a row's ``profile`` and ``train`` results at one scale shared one file and overwrote each
other.  Each old file names its job (``job``, also ``provenance.job``); a file without one takes
the only job of its table's metric columns.  The file's content is kept, and its provenance
records the migration (``provenance.migrated``).  Run once from the checkout's root::

    python -m repro.migrations.results_per_job [RESULTS_DIR] [--specs SPECS_DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from repro import layout
from repro.fileio import atomic_write_text

__all__ = ["migrate"]


def _job_from_specs(specs: dict, paper: str, table: int) -> str | None:
    spec = specs.get(f"{paper}:table{table}")
    jobs = {m.job for m in spec.metrics if m.job} if spec is not None else set()
    return jobs.pop() if len(jobs) == 1 else None


def migrate(results_dir: Path | str, specs: dict | None = None, commit: str | None = None) -> list[tuple[Path, Path]]:
    """Rename every old-style result file under ``results_dir``; returns ``(old, new)`` pairs.
    Raises ValueError naming a file whose job cannot be told, or whose new name is taken."""
    moved = []
    for old in sorted(Path(results_dir).glob("*/*/table*/*.json")):
        if layout.parse_result_name(old.name) is not None:
            continue  # already <row>.<job>.json
        doc = json.loads(old.read_text(encoding="utf-8"))
        prov = doc.setdefault("provenance", {})
        job = doc.get("job") or prov.get("job") or _job_from_specs(specs or {}, doc["paper"], int(doc["table"]))
        if not job:
            raise ValueError(f"{old}: names no job and its table's columns name several; rename it by hand")
        new = layout.result_path(results_dir, doc["scale"], doc["paper"], int(doc["table"]), doc["row"], job)
        if new.exists():
            raise ValueError(f"{old}: {new.name} exists already")
        doc["job"] = job
        prov["migrated"] = f"from {old.name} at {commit or 'unknown commit'}: results per (row, job)"
        atomic_write_text(new, json.dumps(doc, indent=2, sort_keys=False) + "\n")
        old.unlink()
        moved.append((old, new))
    return moved


def main(argv: list[str] | None = None) -> int:
    from repro.results import _git, default_results_dir
    from repro.spec.loader import SpecError, default_specs_dir, load_specs

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="?", type=Path, default=default_results_dir())
    p.add_argument("--specs", type=Path, default=default_specs_dir())
    args = p.parse_args(argv)
    try:
        moved = migrate(args.results, load_specs(args.specs), commit=_git("rev-parse", "--short", "HEAD"))
    except (SpecError, ValueError, OSError) as e:
        print(f"repro: error: {e}", file=sys.stderr)
        return 2
    for old, new in moved:
        print(f"{old} -> {new.name}")
    print(f"{len(moved)} result files renamed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
