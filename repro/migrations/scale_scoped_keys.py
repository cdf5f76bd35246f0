"""Re-key committed results for the scale- and job-scoped freshness key (issue 12, run identity).

Before, a result's ``spec_hash`` covered the row's whole entry -- every scale's recipe -- and every
column of the table, so writing the paper's full-scale schedule into a spec made every mini result
stale although nothing a mini run does had changed.  :func:`repro.identity.result_key` now covers
only the result's own scale and job (:func:`repro.identity.spec_payload`).

A result is re-keyed only when it is proven to be what the current spec asks for: its stored
``spec_hash`` equals the old key of the spec at a commit ``C`` (so it was fresh there), and the new,
scoped part of the spec at ``C`` equals today's.  Anything else stays stale and is re-run.  The old
key is recomputed here exactly as it was (whole row without presentation fields, all columns, the
benchmark preset for jobs that read data).  Run once from the checkout's root::

    python -m repro.migrations.scale_scoped_keys [RESULTS_DIR] --commits 9542fc2 f2caf18
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from repro import layout
from repro.fileio import atomic_write_text
from repro.identity import data_fingerprint, digest, normal, result_key, spec_payload

__all__ = ["old_key", "rekey"]

_OLD_PRESENTATION = {"label", "note", "cells", "reported", "cite", "departures"}


def old_key(spec: Any, row_id: str, job: str, scale: str) -> str:
    """The freshness key before scoping (``identity.spec_key`` of issue 12's first version)."""
    from repro.jobs import get_job

    row = spec.row(row_id)
    payload: dict[str, Any] = {"row": row.model_dump(mode="json", exclude_defaults=True, exclude=_OLD_PRESENTATION),
                               "metrics": [normal(m) for m in spec.metrics]}
    data = data_fingerprint(row.run_config(scale)) if get_job(job).reads_data else None
    if data:
        payload["data"] = data
    return digest(payload)


def _spec_at(commit: str, rel: str, tmp: Path) -> Any | None:
    from repro.spec.loader import load_spec

    text = subprocess.run(["git", "show", f"{commit}:specs/{rel}"], capture_output=True, text=True).stdout
    if not text:
        return None
    path = tmp / commit / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return load_spec(path)


def rekey(results_dir: Path | str, specs_dir: Path | str, commits: list[str]) -> dict[str, list[str]]:
    """Re-key what can be proven fresh; returns ``{"rekeyed": [...], "stale": [...], "fresh": [...]}``."""
    from repro.spec.loader import load_spec

    out: dict[str, list[str]] = {"rekeyed": [], "stale": [], "fresh": []}
    today = _dt.date.today().isoformat()
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(Path(results_dir).glob("*/*/table*/*.json")):
            row_id, job = layout.parse_result_name(path.name)
            scale, paper, table = path.parts[-4], path.parts[-3], path.parts[-2]
            rel = f"{paper}/{table}.yaml"
            spec = load_spec(Path(specs_dir) / rel)
            doc = json.loads(path.read_text(encoding="utf-8"))
            stored, new = doc["provenance"].get("spec_hash"), result_key(spec, spec.row(row_id), job, scale)
            if stored == new:
                out["fresh"].append(str(path))
                continue
            proven = None
            for commit in commits:
                old = _spec_at(commit, rel, Path(tmp))
                if old is not None and any(r.id == row_id for r in old.rows) and \
                        old_key(old, row_id, job, scale) == stored and \
                        spec_payload(old, row_id, job, scale) == spec_payload(spec, row_id, job, scale):
                    proven = commit
                    break
            if proven is None:
                out["stale"].append(str(path))
                continue
            prov = doc["provenance"]
            notes = prov.get("rehashed") or []
            prov["rehashed"] = [*([notes] if isinstance(notes, str) else notes),
                                f"{stored} -> {new}: the key now covers only this scale's recipe and this job's "
                                f"columns; the spec's part for them is unchanged since {proven} ({today})"]
            prov["spec_hash"] = new
            atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=False) + "\n")
            out["rekeyed"].append(str(path))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default="results")
    parser.add_argument("--specs", default="specs")
    parser.add_argument("--commits", nargs="+", required=True, help="commits whose specs the results were fresh at")
    args = parser.parse_args(argv)
    done = rekey(args.results, args.specs, args.commits)
    for kind, paths in done.items():
        print(f"{kind}: {len(paths)}")
        if kind == "stale":
            print("".join(f"  {p}\n" for p in paths), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
