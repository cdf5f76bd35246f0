"""``python -m repro data ...`` subcommands.

* ``data synth [--out DIR] [--preset mini|small] [--seed S] [--frames-format none|png|npy]
  [--flow-splits train,val] [--force] [--workers N] [--format text|json]``: write the built-in motion benchmark
  (:func:`repro.data.synth.generate`).  ``--out`` defaults to where ``train``/``eval``/``table<N>``
  look for it: ``<--data-dir>/synth/<preset>`` (:func:`repro.layout.synth_root`).  JSON output (stdout): ``{"out", "preset", "seed",
  "classes", "num_clips", "seconds", "bytes", "reused"}``; progress goes to stderr.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

from repro.cli_output import emit, fail

__all__ = ["add_commands", "cmd_synth"]


def _dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _out_problem(out: Path) -> str | None:
    """Why ``out`` cannot receive the benchmark (checked before anything is written), or None."""
    if out.exists() and not out.is_dir():
        return f"--out {out}: exists and is not a folder (give a new folder, or an earlier benchmark's)"
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"--out {out}: {parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"--out {out}: cannot write into {parent} (permission denied)"
    return None


def cmd_synth(args: argparse.Namespace) -> int:
    from repro import layout
    from repro.data import synth

    if args.out is None:
        data_dir = getattr(args, "data_dir", None) or Path("data")
        args.out = layout.synth_root(data_dir, args.preset)
    out = Path(args.out)
    problem = _out_problem(out)
    if problem:
        return fail(problem)
    meta_before = (out / "meta.json").read_bytes() if (out / "meta.json").is_file() else None
    flow_splits = None if args.flow_splits is None else tuple(s for s in args.flow_splits.split(",") if s)
    started = time.perf_counter()
    try:
        synth.generate(
            out, preset=args.preset, seed=args.seed, progress=args.format == "text" or sys.stderr.isatty(),
            flow_splits=flow_splits, frames_format=args.frames_format, force=args.force, workers=args.workers,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as err:
        return fail(str(err))
    seconds = time.perf_counter() - started
    meta = synth.read_meta(out)
    reused = meta_before is not None and meta_before == (out / "meta.json").read_bytes() and not args.force
    result = {
        "out": str(out),
        "preset": meta["preset"],
        "seed": meta["seed"],
        "classes": meta["classes"],
        "num_clips": meta["num_clips"],
        "seconds": round(seconds, 3),
        "bytes": _dir_bytes(out),
        "reused": reused,
    }
    verb = "already up to date" if reused else f"generated in {seconds:.1f} s"
    emit(args, result, f"synth benchmark '{meta['preset']}' (seed {meta['seed']}) at {out}: {verb}; "
                       f"{meta['num_clips']['train']} train / {meta['num_clips']['val']} val clips, "
                       f"{len(meta['classes'])} classes, {result['bytes'] / 1e6:.1f} MB")
    return 0


def add_commands(subparsers, common: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """Add ``data`` (with subcommand ``synth``) to an argparse subparsers object (``common`` adds the
    CLI's shared options, ``--data-dir`` and ``--format`` among them)."""
    from repro.data.synth import PRESETS

    data = subparsers.add_parser("data", help="data sets: generate the built-in motion benchmark")
    data_sub = data.add_subparsers(dest="data_command", metavar="{synth}")
    data_sub.required = True
    p = data_sub.add_parser("synth", help="write the built-in motion benchmark (deterministic from --seed)")
    p.add_argument("--out", default=None,
                   help="output folder (default: <data-dir>/synth/<preset>, where train/eval/table<N> look)")
    p.add_argument("--preset", default="mini", choices=sorted(PRESETS), help="benchmark size (default: mini)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0); same seed -> identical files")
    p.add_argument("--frames-format", default="none", choices=("none", "png", "npy"), help="also dump lossless frames")
    p.add_argument("--flow-splits", default=None, help="comma-separated splits that get .flo files (default: the preset's)")
    p.add_argument("--force", action="store_true", help="regenerate even if meta.json matches")
    p.add_argument("--workers", type=int, default=1, help="render in this many processes (same files; default 1)")
    if common is not None:
        common(p)
    else:
        p.add_argument("--format", default="text", choices=("text", "json"), help="output format (json: stdout)")
    p.set_defaults(func=cmd_synth)
