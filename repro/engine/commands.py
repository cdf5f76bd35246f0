"""``python -m repro train|eval <paper>:<table>:<row>`` (also under ``torchrun``).

    python -m repro train trajectorynet:table3:appearance              # mini scale, every seed
    python -m repro train trajectorynet:3:appearance --seed 1 --epochs 1
    python -m repro eval trajectorynet:table3:appearance --format json
    torchrun --nproc_per_node 2 -m repro train trajectorynet:table3:appearance

``train`` resumes an interrupted run by default (``--no-resume`` starts over) and writes the
result (metrics + provenance) to the results folder like the table runner does
(``--no-save`` only prints it).  Under torchrun only rank 0 prints and writes.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any, Callable

from repro.cli_output import emit as _emit
from repro.cli_output import fail as _fail

__all__ = ["add_commands", "cmd_train", "cmd_eval"]

log = logging.getLogger("repro.engine")


def _fallback_common(p: argparse.ArgumentParser) -> None:
    """The CLI's common options, for use without :mod:`repro.cli` (tests, other front ends)."""
    root = Path(__file__).resolve().parents[2]
    g = p.add_argument_group("common options")
    g.add_argument("--format", choices=("text", "json"), default="text", help="json: machine-readable stdout")
    g.add_argument("--specs", type=Path, default=Path(os.environ.get("REPRO_SPECS", root / "specs")))
    g.add_argument("--results", type=Path, default=Path(os.environ.get("REPRO_RESULTS", root / "results")))
    g.add_argument("--data-dir", type=Path, default=Path(os.environ.get("REPRO_DATA", root / "data")))
    g.add_argument("--work-dir", type=Path, default=Path(os.environ.get("REPRO_WORK", root / "runs")))
    g.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def add_commands(subparsers: Any, common: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """Add ``train`` and ``eval`` to the CLI's subparsers (``common`` adds the shared options)."""
    common = common or _fallback_common
    for name, fn, hlp in (("train", cmd_train, "train and evaluate a table row as its spec says"),
                          ("eval", cmd_eval, "evaluate a trained table row on its validation set")):
        s = subparsers.add_parser(name, help=hlp, description=hlp)
        common(s)
        s.add_argument("row", help="paper:table<N>:row or paper:<N>:row, e.g. trajectorynet:table3:appearance")
        s.add_argument("--scale", default="mini", choices=("mini", "small", "full"))
        s.add_argument("--seed", type=int, action="append", dest="seeds", metavar="N",
                       help="only this seed (repeatable; default: the spec's seeds)")
        s.add_argument("--workers", type=int, default=None,
                       help="DataLoader worker processes, and the processes that compute the built-in "
                            "benchmark's flow cache once (train, TV-L1 rows; default: every core)")
        s.add_argument("--batch-size", type=int, default=None, help="override the spec's batch size")
        s.add_argument("--eval-chunk", type=int, default=None, metavar="N",
                       help="test views per forward (bounds evaluation memory; same scores; default: the spec's, "
                            "else a whole batch)")
        if name == "train":
            s.add_argument("--epochs", type=int, default=None, help="override the spec's epochs (smoke runs)")
            s.add_argument("--no-resume", dest="resume", action="store_false",
                           help="start over even if a checkpoint exists (default: resume)")
            s.add_argument("--resume", dest="resume", action="store_true", help=argparse.SUPPRESS)
            s.add_argument("--no-save", action="store_true", help="print the result, do not write it to --results")
            s.add_argument("--no-amp", dest="amp", action="store_false", help="no autocast on GPU")
            s.add_argument("--checkpoint-minutes", type=float, default=10.0,
                           help="also checkpoint mid-epoch this often (default: %(default)s)")
            s.add_argument("--eval-every", type=int, default=0, help="evaluate every N epochs into the history")
            s.add_argument("--init-file", type=Path, default=None,
                           help="ImageNet weights for rows with `init: imagenet` (default: $REPRO_IMAGENET_INIT)")
            s.add_argument("--smoke", action="store_true",
                           help="check the set-up in about a minute: a few clips, one step, one test view, in a "
                                "throw-away work folder; prints what it read and the full run; writes no result")
            s.set_defaults(resume=True, amp=True)
        else:
            s.add_argument("--checkpoint", type=Path, default=None,
                           help="weights to evaluate (default: the row's final.pt, else last.pt)")
        s.set_defaults(func=fn)


def _load_row(args: argparse.Namespace):
    from repro.spec.loader import load_specs
    from repro.spec.refs import find_row

    specs = load_specs(args.specs)
    return find_row(specs, args.row)


def _fmt_metrics(metrics: dict[str, Any]) -> str:
    return "  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from repro.engine.distributed import init_distributed, shutdown_distributed
    from repro.engine.job import train_row
    from repro.identity import result_key, run_id
    from repro.jobs.base import NotRunnable
    from repro.jobs.train import TRAIN_KEYS
    from repro.results import provenance, write_result

    info = init_distributed()
    if args.threads:
        torch.set_num_threads(args.threads)
    elif info.enabled and not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // info.world_size))
    try:
        try:
            spec, row = _load_row(args)
        except ValueError as e:
            return _fail(str(e))
        overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "num_workers": args.workers,
                     "amp": args.amp, "checkpoint_interval_s": 60.0 * args.checkpoint_minutes,
                     "eval_every": args.eval_every, "eval_chunk": args.eval_chunk}
        if args.smoke:
            return _smoke(args, spec, row, overrides)
        try:
            run = train_row(spec, row, args.scale, work_root=args.work_dir, data_dir=args.data_dir,
                            seeds=args.seeds, resume=args.resume, progress=not args.quiet and info.is_main,
                            overrides=overrides, init_file=args.init_file)
        except NotRunnable as e:
            return _fail(f"{args.row} cannot be run at scale '{args.scale}': {e}")
        if not info.is_main:
            return 0
        ref = f"{spec.paper}:table{spec.table}:{row.id}"
        wanted = [m.job_key for m in spec.metrics if m.job == "train"]
        reported = {k: v for k, v in run.metrics.items() if k in TRAIN_KEYS}
        seed: int | list[int] = run.seeds[0] if len(run.seeds) == 1 else run.seeds
        path = None
        complete = all(k in reported for k in wanted)
        if not args.no_save and complete and args.epochs is None and args.batch_size is None:
            key = result_key(spec, row, "train", args.scale)
            prov = provenance(scale=args.scale, seed=seed, spec_hash=key, run_id=run_id(key), data=run.data,
                              job="train", world_size=info.world_size)
            path = write_result(args.results, scale=args.scale, paper=spec.paper, table=spec.table, row=row.id,
                                job="train", metrics=reported, provenance=prov, details=run.details)
        payload = {"row": ref, "scale": args.scale, "metrics": reported, "data": run.data, "seed": seed,
                   "details": run.details, "result_file": str(path) if path else None}
        note = f"\nwritten to {path}\n" if path else (
            "\nnot written: smoke-run overrides (--epochs/--batch-size) or --no-save\n" if complete else
            f"\nnot written: the table wants {wanted}\n")
        _emit(args, payload, f"{ref} [{args.scale}] {_fmt_metrics(reported)}\n  data: {run.data}\n"
                             f"  train time {run.details['train_time_s']} s, {run.details['epochs']} epochs{note}")
        return 0
    finally:
        shutdown_distributed()


def _full_run_text(cfg, num_train: int, world_size: int) -> str:
    """What the row runs at full length: schedule, batch, views, init (``--smoke``'s summary)."""
    from repro.engine.optim import iteration_schedule
    from repro.spec.schema import resolved_config

    c = resolved_config(cfg)
    steps = max(1, num_train // c["batch_size"])
    if cfg.iterations:
        epochs, sched = iteration_schedule(cfg.iterations, c["lr_schedule"], steps)
        length = f"{cfg.iterations} iterations = {epochs} epochs of {steps} steps"
    else:
        epochs, sched = c["epochs"], c["lr_schedule"]
        length = f"{epochs} epochs of {steps} steps ({epochs * steps} iterations)"
    views = c["test_clips"] * c["test_crops"]
    return (f"  full run: {length}, batch {c['batch_size']} over {world_size} process(es), {c['optimizer']} "
            f"lr {c['lr']}, schedule {sched}\n"
            f"            clips {c['frames']}x{cfg.step} at {c['size']}px, test {c['test_clips']} clips x "
            f"{c['test_crops']} crops = {views} views, {c['eval_chunk'] or 'all'} views per forward, "
            f"init {cfg.init or 'random'}, flow {cfg.flow or 'none'}\n")


def _smoke(args: argparse.Namespace, spec, row, overrides: dict[str, Any]) -> int:
    """``train --smoke``: the row on the user's data, a few clips and one step, in a throw-away
    work folder; prints what it read and what the full run would be; writes no result."""
    import tempfile

    from repro.engine.distributed import dist_info
    from repro.engine.job import train_row
    from repro.jobs.base import NotRunnable

    ref = f"{spec.paper}:table{spec.table}:{row.id}"
    cfg = row.run_config(args.scale)
    with tempfile.TemporaryDirectory(prefix="repro-smoke-") as work:
        try:
            run = train_row(spec, row, args.scale, work_root=Path(work), data_dir=args.data_dir,
                            seeds=(args.seeds or (cfg.seeds if cfg else [0]))[:1], resume=False,
                            progress=not args.quiet and dist_info().is_main, overrides=overrides,
                            init_file=args.init_file, smoke=True)
        except NotRunnable as e:
            return _fail(f"{args.row} cannot be run at scale '{args.scale}': {e}")
    if not dist_info().is_main:
        return 0
    from repro.engine.data import build_run_data
    from repro.engine.job import row_takes_flow
    from repro.spec.schema import split_folds

    folds = split_folds(cfg.split) or []
    one_fold = cfg.model_copy(update={"split": str(folds[0])}) if len(folds) > 1 else cfg
    full = build_run_data(one_fold, args.data_dir, args.scale, progress=False, wants_flow=row_takes_flow(row, cfg))
    text = (f"{ref} [{args.scale}] smoke: {_fmt_metrics(run.metrics)}\n"
            f"  read: {full.description}, {full.num_classes} classes, root {full.root}\n"
            f"  ran:  1 step on {min(2, len(full.train))} clips, evaluated 1 view of a few test videos\n"
            + _full_run_text(cfg, len(full.train), dist_info().world_size)
            + "  not written: a smoke run writes no result and keeps no checkpoint\n")
    _emit(args, {"row": ref, "scale": args.scale, "smoke": True, "metrics": run.metrics, "data": full.description,
                 "num_train": len(full.train), "num_val": len(full.val), "num_classes": full.num_classes,
                 "result_file": None}, text)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from repro.engine.distributed import dist_info, init_distributed, shutdown_distributed
    from repro.engine.job import evaluate_row
    from repro.jobs.base import NotRunnable

    init_distributed()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        try:
            spec, row = _load_row(args)
        except ValueError as e:
            return _fail(str(e))
        seed = args.seeds[0] if args.seeds else None
        if args.checkpoint is not None and not Path(args.checkpoint).is_file():  # before any data is prepared
            return _fail(f"--checkpoint {args.checkpoint}: file not found")
        try:
            metrics, data = evaluate_row(spec, row, args.scale, work_root=args.work_dir, data_dir=args.data_dir,
                                         seed=seed, checkpoint=args.checkpoint, progress=not args.quiet,
                                         batch_size=args.batch_size, num_workers=args.workers or 0,
                                         eval_chunk=args.eval_chunk)
        except NotRunnable as e:
            return _fail(f"{args.row} cannot be evaluated at scale '{args.scale}': {e}")
        if not dist_info().is_main:
            return 0
        ref = f"{spec.paper}:table{spec.table}:{row.id}"
        _emit(args, {"row": ref, "scale": args.scale, "metrics": metrics, "data": data.description},
              f"{ref} [{args.scale}] {_fmt_metrics(metrics)}\n  data: {data.description}\n")
        return 0
    finally:
        shutdown_distributed()
