"""Index the finished train runs of a work folder by identity (issue 12: twin runs by lookup).

Runs finished before the identity index existed are not in it, so a row that is the very same run
would train again.  :func:`index_finished_runs` loads each ``final.pt`` once, computes its
identity key from the settings it stored and records it under ``<work>/<scale>/by-identity/``.
:func:`repro.engine.job.train_row` calls it the first time it looks up a scale whose index folder
does not exist yet; afterwards twins are found by lookup only.

    python -m repro.migrations.index_runs [WORK_DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from repro import layout

__all__ = ["index_finished_runs"]


def _data_of(settings: dict) -> dict | None:
    from pydantic import ValidationError

    from repro.identity import data_fingerprint
    from repro.spec.schema import RunConfig

    config = (settings.get("identity") or {}).get("config")
    try:
        return data_fingerprint(RunConfig.model_validate(config)) if isinstance(config, dict) else None
    except ValidationError:
        return None


def index_finished_runs(work_root: Path | str, scale: str) -> int:
    """Record every finished run under ``<work_root>/<scale>`` in the identity index (the first
    run of each identity, in path order, is the one others re-use); returns how many were new."""
    from repro.engine.checkpoint import load_checkpoint
    from repro.fileio import atomic_write_json
    from repro.identity import code_fingerprint, run_key

    layout.identity_index_path(work_root, scale, "x").parent.mkdir(parents=True, exist_ok=True)
    added = 0
    for final in sorted(Path(work_root, scale).glob("*/table*/*/seed*/final.pt")):
        try:
            done = load_checkpoint(final)
        except ValueError:
            continue  # an unreadable checkpoint is nobody's twin
        if not done.get("metrics") or not isinstance(done.get("settings"), dict):
            continue
        path = layout.identity_index_path(work_root, scale, run_key(done["settings"], _data_of(done["settings"])))
        if not path.is_file():
            atomic_write_json(path, {"run_dir": os.path.relpath(final.parent, path.parent), "code": code_fingerprint(),
                                     "indexed": "from a finished run found on disk"})
            added += 1
    return added


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work", nargs="?", type=Path, default=Path("runs"))
    args = p.parse_args(argv)
    for scale_dir in sorted(d for d in args.work.iterdir() if d.is_dir()) if args.work.is_dir() else []:
        print(f"{scale_dir.name}: {index_finished_runs(args.work, scale_dir.name)} runs indexed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
