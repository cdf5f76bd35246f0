"""Command line: ``python -m repro <command>`` (also the ``repro`` console script).

    python -m repro list                        # papers, tables, rows, what runs at which scale
    python -m repro table3 --paper trajectorynet  # run what is runnable and not cached, render
    python -m repro all --no-run                # re-render every table from stored results
    python -m repro profile r2plus1d_18 --input 1x3x16x112x112 --latency
    python -m repro profile trajectorynet:table3:appearance

Every command takes ``--format json`` (machine-readable output on stdout; progress and logs on
stderr).  User errors print one line naming what is wrong and exit with status 2.
"""
from __future__ import annotations

import argparse
import inspect
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from repro.cli_output import emit as _emit
from repro.spec.schema import SCALES

__all__ = ["main", "build_parser"]

log = logging.getLogger("repro")

_AREA_COMMANDS = ("repro.data.commands", "repro.engine.commands", "repro.flow.commands", "repro.deploy.commands")


class UserError(Exception):
    """An error in what the user asked for; printed without a traceback."""


def _project_root() -> Path:
    here = Path(__file__).resolve().parents[1]
    return here if (here / "specs").is_dir() else Path.cwd()


def _common(p: argparse.ArgumentParser) -> None:
    root = _project_root()
    g = p.add_argument_group("common options")
    g.add_argument("--format", choices=("text", "json"), default="text", help="json: machine-readable stdout")
    g.add_argument("--specs", type=Path, default=Path(os.environ.get("REPRO_SPECS", root / "specs")),
                   help="spec folder (<paper>/table<N>.yaml); default: %(default)s")
    g.add_argument("--results", type=Path, default=Path(os.environ.get("REPRO_RESULTS", root / "results")),
                   help="results folder; default: %(default)s")
    g.add_argument("--tables", type=Path, default=Path(os.environ.get("REPRO_TABLES", root / "tables")),
                   help="rendered tables folder; default: %(default)s")
    g.add_argument("--data-dir", type=Path, default=Path(os.environ.get("REPRO_DATA", root / "data")),
                   help="datasets (the built-in benchmark is generated here); default: %(default)s")
    g.add_argument("--work-dir", type=Path, default=Path(os.environ.get("REPRO_WORK", root / "runs")),
                   help="checkpoints and caches; default: %(default)s")
    g.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _load_specs(args: argparse.Namespace, check_models: bool = True):
    from repro.spec.loader import load_specs

    specs = load_specs(args.specs, check_models=check_models)
    paper = getattr(args, "paper", None)
    if paper:
        from repro.spec.schema import PAPERS

        if paper not in PAPERS:
            raise UserError(f"unknown paper '{paper}'; expected one of {sorted(PAPERS)}")
        specs = {k: s for k, s in specs.items() if s.paper == paper}
    return specs


# ----------------------------------------------------------------------------- list
def cmd_list(args: argparse.Namespace) -> int:
    from repro.registry import list_models
    from repro.runner import plan_table

    if args.models:
        names = list_models(args.pattern or "*")
        _emit(args, names, lambda: "\n".join(names) + "\n")
        return 0
    if args.jobs:
        from repro.jobs import JOBS

        jobs = [{"name": j.name, "keys": list(j.keys), "planned": list(j.planned), "scales": list(j.scales),
                 "reads_data": j.reads_data, "doc": j.doc} for j in JOBS.values()]
        _emit(args, jobs, lambda: "".join(
            f"{j['name']}: {j['doc']}\n    scales {', '.join(j['scales'])}; reads data: {'yes' if j['reads_data'] else 'no'}"
            f"\n    keys {', '.join(j['keys'])}" + (f"\n    planned {', '.join(j['planned'])}" if j["planned"] else "")
            + "\n" for j in jobs))
        return 0
    specs = _load_specs(args)
    out = []
    for spec in specs.values():
        tasks = plan_table(spec, args.scale, args.results, data_dir=args.data_dir)
        runnable: dict[str, dict[str, str]] = {}
        for t in tasks:
            runnable.setdefault(t.row.id, {})[f"{t.job}@{t.scale}"] = (
                "cached" if t.state == "cached" else "runnable" if t.state == "pending" else f"missing: {t.reason}")
        out.append({
            "paper": spec.paper, "table": spec.table, "title": spec.title, "kind": spec.kind,
            "metrics": [m.model_dump() for m in spec.metrics],
            "rows": [{"id": r.id, "label": r.label, "kind": r.kind, "reported": dict(r.reported),
                      "cells": dict(r.cells), "model": r.model.name if r.model else None,
                      "runs": runnable.get(r.id, {})} for r in spec.rows],
        })

    def text() -> str:
        lines = []
        for t in out:
            lines.append(f"{t['paper']}:table{t['table']}  {t['title']}  ({len(t['rows'])} rows)")
            for r in t["rows"]:
                runs = ", ".join(f"{k}: {v if len(v) < 72 else v[:69] + '...'}" for k, v in r["runs"].items()) or r["kind"]
                lines.append(f"    {r['id']:<34} {r['kind']:<8} {runs}")
        return "\n".join(lines) + "\n"

    _emit(args, out, text)
    return 0


# ----------------------------------------------------------------------------- table / all
def _run_and_render(args: argparse.Namespace, specs: dict) -> int:
    from repro.render import build_table, write_table
    from repro.report.data import table_payload
    from repro.jobs import JOBS
    from repro.runner import plan_table, report_lines, run_tasks

    if not specs:
        raise UserError("no table matches (see `python -m repro list`)")
    unknown = sorted(set(args.jobs or ()) - set(JOBS))
    if unknown:
        raise UserError(f"--jobs: unknown job {', '.join(unknown)}; expected some of {', '.join(JOBS)}")
    for opt, path in (("--results", args.results), ("--tables", args.tables)):
        if Path(path).exists() and not Path(path).is_dir():
            raise UserError(f"{opt} {path}: exists and is not a folder")
    all_tasks = []
    for spec in specs.values():
        tasks = plan_table(spec, args.scale, args.results, rows=args.rows, force=args.force)
        if not args.no_run:
            chosen = [t for t in tasks if not args.jobs or t.job in args.jobs]
            run_tasks(chosen, results_dir=args.results, work_dir=args.work_dir, data_dir=args.data_dir,
                      progress=not args.quiet, threads=args.threads, command=" ".join(["python -m repro", *sys.argv[1:]]))
        all_tasks += tasks
    results = _load_results(args)
    rendered, written = [], []
    unrun = "--no-run" if args.no_run else "--jobs"  # a task still pending was left out by one of them
    for spec in specs.values():
        status: dict[str, str] = {}
        for t in all_tasks:
            if t.spec is spec and t.state != "cached" and t.row.kind != "cited":
                said = f"failed: {t.error}" if t.error else (
                    f"missing: {t.reason}" if t.state == "missing" else f"not run ({unrun})")
                status[t.row.id] = "; ".join(filter(None, [status.get(t.row.id), f"{t.job}@{t.scale} {said}"]))
        table = build_table(spec, results, scale=args.scale, status=status)
        written += write_table(table, args.tables)
        rendered.append(table)
    failed = [t for t in all_tasks if t.error]
    payload = [{**table_payload(t),
                "runs": [{"row": k.row.id, "job": k.job, "scale": k.scale, "report": k.report(),
                          "reused_from": k.reused_from or None, "ran_s": k.elapsed_s if k.ran else None}
                         for k in all_tasks if k.spec is t.spec and k.row.kind != "cited"]}
               for t in rendered]

    def text() -> str:
        from repro.render import to_markdown

        parts = [to_markdown(t) for t in rendered]
        parts.append(f"\nwrote {len(written)} files under {args.tables}\n")
        for spec in specs.values():
            lines = report_lines([t for t in all_tasks if t.spec is spec])
            if lines:
                parts.append(f"{spec.paper}:table{spec.table} rows:\n" + "\n".join(lines) + "\n")
        parts += [f"FAILED {t.ref} [{t.job}]: {t.error}\n" for t in failed]
        return "\n".join(parts)

    _emit(args, payload, text)
    return 1 if failed else 0


def cmd_table(args: argparse.Namespace) -> int:
    specs = {k: s for k, s in _load_specs(args).items() if s.table == args.number}
    if not specs:
        raise UserError(f"no Table {args.number}" + (f" in paper '{args.paper}'" if args.paper else ""))
    return _run_and_render(args, specs)


def cmd_all(args: argparse.Namespace) -> int:
    return _run_and_render(args, _load_specs(args))


# ----------------------------------------------------------------------------- profile
def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(p) for p in re.split(r"[x×,]", text.strip()))
    except ValueError:
        raise UserError(f"--input: expected a shape like 1x3x16x112x112, got '{text}'") from None
    if not shape or any(s <= 0 for s in shape):
        raise UserError(f"--input: every dimension must be positive, got '{text}'")
    return shape


def _parse_kv(items: list[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--arg: expected key=value, got '{item}'")
        out[key] = yaml.safe_load(value)
    return out


def _check_rank(name: str, shape: tuple[int, ...], example: tuple[int, ...] | None) -> None:
    """A shape of the wrong rank is named before any tracing (fvcore's trace would be 40 lines)."""
    if example and len(shape) != len(example):
        layout = {5: "N x C x T x H x W", 4: "N x C x H x W"}.get(len(example), f"{len(example)} dimensions")
        raise UserError(f"--input {'x'.join(map(str, shape))}: {name} takes a {len(example)}-D input ({layout}), "
                        f"e.g. {'x'.join(map(str, example))}; got {len(shape)}-D")


def _check_model_args(name: str, fn, model_args: dict[str, Any]) -> None:
    """An ``--arg`` the constructor does not take is named before the model is built."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(model_args) - set(params))
    if unknown:
        raise UserError(f"--arg {unknown[0]}: {name} takes no argument '{unknown[0]}'; it takes "
                        f"{', '.join(params) or 'none'}")


def resolve_target(args: argparse.Namespace) -> tuple[str, dict[str, Any], tuple[int, ...]]:
    """``(model name, constructor args, input shape)`` of ``args.target`` -- a registered model or a
    row ``paper:table<N>:row`` (its model, its args and input shape) -- with ``--arg`` and ``--input``
    applied; ``()`` when no shape is known.  Used by ``profile``, ``export`` and ``engine``."""
    from repro.registry import model_entry
    from repro.spec.refs import find_row, looks_like_row_ref

    model_args = _parse_kv(args.arg)
    if looks_like_row_ref(args.target):
        try:
            _, row = find_row(_load_specs(args), args.target)
        except ValueError as e:
            raise UserError(str(e)) from None
        if row.model is None:
            raise UserError(f"row {args.target} has no model ({row.needs or row.kind})")
        name, model_args = row.model.name, {**row.model.args, **model_args}
        shape = tuple(row.input_shape or model_entry(name).default_input or ())
    else:
        name = args.target
        shape = tuple(model_entry(name).default_input or ())
    if args.input:
        shape = _parse_shape(args.input)
    return name, model_args, shape


def cmd_profile(args: argparse.Namespace) -> int:
    from repro.profile import profile
    from repro.registry import model_entry

    name, model_args, shape = resolve_target(args)
    if not shape:
        raise UserError(f"no input shape known for '{args.target}': pass --input, e.g. 1x3x16x112x112")
    try:
        from repro.deploy.backends import resolve_backends

        resolve_backends(args.backend)
    except ValueError as e:
        raise UserError(f"--backend: {e}") from None
    _check_rank(name, shape, model_entry(name).default_input)
    _check_model_args(name, model_entry(name).fn, model_args)
    try:
        measured = profile(name, shape, latency=args.latency, backend=args.backend, warmup=args.warmup,
                           repeats=args.repeats, threads=args.threads, **model_args)
    except ValueError as e:  # a model's own input check (channels, frames, size), raised inside the tracer
        raise UserError(f"{args.target} cannot run on input {'x'.join(map(str, shape))}: {_one_line(e)}") from None
    except TypeError as e:
        if model_args and "unexpected keyword argument" in str(e):  # an --arg no constructor down the line takes
            raise UserError(f"--arg: {name}: {_one_line(e)}") from None
        raise
    out = {"target": args.target, "model_args": model_args, **measured}

    def text() -> str:
        lines = [f"{args.target}  input {'x'.join(map(str, shape))}",
                 f"  params   {out['params']:,} ({out['params'] / 1e6:.2f} M)",
                 f"  MACs     {out['macs']:,} ({out['gmacs']:.2f} GMACs; FLOPs = 2 x MACs = {out['gflops']:.2f} G)",
                 f"           all ops incl. BN/activations/pooling/elementwise: {out['macs_all'] / 1e9:.2f} GMACs"]
        if out["uncounted_ops"]:
            lines.append("  counted as zero (no handle): " + ", ".join(f"{k} x{v}" for k, v in out["uncounted_ops"].items()))
        for backend, t in out.get("backends", {}).items():  # --backend all
            lines.append(f"  {backend:<17} " + (t["error"] if "error" in t else
                         f"{t['latency_ms']:.1f} ms median (IQR {t['latency_iqr_ms']:.1f}, {t['threads']} threads)"))
        if args.latency and "latency_ms" in out:
            lines.append(f"  latency  {out['latency_ms']:.1f} ms median (IQR {out['latency_iqr_ms']:.1f} ms, "
                         f"{out['repeats']} runs, {out['threads']} threads, {out['backend']})")
        return "\n".join(lines) + "\n"

    _emit(args, out, text)
    return 0


# ----------------------------------------------------------------------------- verdicts
def cmd_verdicts(args: argparse.Namespace) -> int:
    """Every claim's verdict on the reproduced numbers, table by table (``--format json``: one
    object per claim with its ``reproduced_detail``)."""
    from repro.render import build_table, verdict_summary

    specs = {k: s for k, s in _load_specs(args).items() if s.claims}
    if not specs:
        raise UserError("no table with claims matches (see `python -m repro list`)")
    results = _load_results(args)
    tables = [build_table(spec, results, scale=args.scale) for spec in specs.values()]
    claims, markdown = verdict_summary(tables)
    _emit(args, claims, markdown)
    return 0


def _load_results(args: argparse.Namespace) -> dict:
    from repro.results import load_results

    try:
        return load_results(args.results)  # a missing folder holds no results
    except ValueError as e:
        raise UserError(str(e)) from None


def _add_verdicts_command(sub) -> None:
    s = sub.add_parser("verdicts", help="every claim's verdict on the reproduced numbers, table by table")
    _common(s)
    s.add_argument("--paper", help="only this paper")
    s.add_argument("--scale", default="mini", choices=SCALES, help="the reproduced numbers' scale")
    s.set_defaults(func=cmd_verdicts)


# ----------------------------------------------------------------------------- report
def cmd_report(args: argparse.Namespace) -> int:
    from repro.report import build_site

    specs = _load_specs(args)
    if not specs:
        raise UserError("no table matches (see `python -m repro list`)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    results = _load_results(args)
    site = build_site(out, specs, results, scale=args.scale, tables_dir=args.tables, flow=not args.no_flow)
    _emit(args, site, f"wrote {len(site['pages'])} pages ({site['tables']} tables, {site['provenance_pages']} "
                      f"provenance pages, {site['flow_pictures']} flow pictures): open {site['index']}")
    return 0


def _add_report_command(sub) -> None:
    s = sub.add_parser("report", help="a static HTML site of every table (no server, no network)")
    _common(s)
    s.add_argument("--out", type=Path, default=Path("site"), help="output folder (default: %(default)s)")
    s.add_argument("--paper", help="only this paper")
    s.add_argument("--scale", default="mini", choices=SCALES, help="the reproduced numbers' scale")
    s.add_argument("--no-flow", action="store_true", help="skip the flow pictures (they need torch and OpenCV)")
    s.set_defaults(func=cmd_report)


# ----------------------------------------------------------------------------- parser
def _fixed_scales() -> str:
    """What the job declarations say about jobs that run at one scale whatever is asked."""
    from repro.jobs import JOBS

    fixed = [f"{j.name} always runs at {j.scales[0]}" for j in JOBS.values() if len(j.scales) == 1]
    return "; ".join(fixed) or "every job runs at the scale asked for"


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (``repro <command>: error: ...; see --help``), exit 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="repro", description="Reproduce and compare motion-representation action "
                                "recognition papers: TrajectoryNet, TVNet, Disentangling Dynamics, LGD.")
    p.add_argument("--debug", action="store_true", help="tracebacks instead of one-line errors (also REPRO_DEBUG=1)")
    sub = p.add_subparsers(dest="command", metavar="<command>")
    sub.required = True

    s = sub.add_parser("list", help="papers, tables, rows and what is runnable at which scale")
    _common(s)
    s.add_argument("--paper", help="only this paper")
    s.add_argument("--scale", default="mini", choices=SCALES)
    s.add_argument("--models", action="store_true", help="list registered models instead")
    s.add_argument("--jobs", action="store_true", help="list the jobs: the keys each reports, where it runs")
    s.add_argument("pattern", nargs="?", help="with --models: a shell pattern, e.g. 'r2plus1d*'")
    s.set_defaults(func=cmd_list)

    for name, fn, hlp in (("table", cmd_table, "run and render Table N (written `table3`)"),
                          ("all", cmd_all, "run and render every table")):
        s = sub.add_parser(name, help=hlp)
        _common(s)
        if name == "table":
            s.add_argument("number", type=int, help=argparse.SUPPRESS)
        s.add_argument("--paper", help="only this paper")
        s.add_argument("--scale", default="mini", choices=SCALES,
                       help=f"scale of the runs ({_fixed_scales()})")
        s.add_argument("--no-run", action="store_true", help="only render what results/ holds")
        s.add_argument("--force", action="store_true", help="re-run even where a result is cached")
        s.add_argument("--rows", nargs="+", help="only these row ids")
        s.add_argument("--jobs", nargs="+", metavar="JOB",
                       help="only run these jobs (e.g. flow, profile); the others render from results/")
        s.set_defaults(func=fn)

    s = sub.add_parser("profile", help="params, MACs (and latency) of a model or a table row")
    _common(s)
    s.add_argument("target", help="a model name (see `list --models`) or a row: paper:table<N>:row")
    s.add_argument("--input", help="input shape, e.g. 1x3x16x112x112 (default: the row's or model's)")
    s.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="model constructor argument")
    s.add_argument("--latency", action="store_true", help="also measure forward latency")
    s.add_argument("--backend", default="eager", help="latency backend: eager, channels_last_3d, compile, onnxruntime, tensorrt; "
                   "'all' or 'a,b': several side by side in one interleaved run")
    s.add_argument("--warmup", type=int, default=3)
    s.add_argument("--repeats", type=int, default=10)
    s.set_defaults(func=cmd_profile)

    _add_report_command(sub)
    _add_verdicts_command(sub)
    for module in _AREA_COMMANDS:
        try:
            mod = __import__(module, fromlist=["add_commands"])
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        # Area modules written against the older one-argument hook add their own options.
        if len(inspect.signature(mod.add_commands).parameters) >= 2:
            mod.add_commands(sub, _common)
        else:
            mod.add_commands(sub)
    return p


def _normalise_argv(argv: list[str]) -> list[str]:
    # `table3` is the documented spelling; argparse sees `table 3`.
    for i, a in enumerate(argv):
        if not a.startswith("-"):
            m = re.fullmatch(r"table(\d+)", a)
            return argv[:i] + ["table", m[1]] + argv[i + 1:] if m else argv
    return argv


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "what was asked cannot be done" (bad input, a missing or unwritable
    file), not a bug: printed as one line, exit status 2.  Imported only when something failed."""
    from repro.data.video_io import VideoDecodeError
    from repro.registry import UnknownModelError
    from repro.spec.loader import SpecError

    return (UserError, SpecError, UnknownModelError, VideoDecodeError, FileNotFoundError, FileExistsError,
            PermissionError, NotADirectoryError, IsADirectoryError)


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror and e.filename is not None:
        return f"{e.filename}: {e.strerror.lower()}"  # not "[Errno 13] Permission denied: 'x'"
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def _pop_debug(argv: list[str]) -> tuple[list[str], bool]:
    """``--debug`` anywhere on the line (or ``REPRO_DEBUG=1``): tracebacks instead of one-line errors."""
    debug = "--debug" in argv or os.environ.get("REPRO_DEBUG", "") not in ("", "0")
    return [a for a in argv if a != "--debug"], debug


def main(argv: list[str] | None = None) -> int:
    argv, debug = _pop_debug(_normalise_argv(list(sys.argv[1:] if argv is None else argv)))
    # Raised by a dependency at import time; not actionable for a user of this CLI.
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        # Each command says itself what an interrupt kept (a checkpoint, finished rows); nothing more here.
        print("repro: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place errors become exit statuses
        if debug:
            raise
        if isinstance(e, _user_error_types()):
            print(f"repro: error: {_one_line(e)}", file=sys.stderr)
            return 2
        print(f"repro: internal error: {type(e).__name__}: {_one_line(e)} (a bug; re-run with --debug or "
              "REPRO_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
