"""Deployment commands: ``export`` (ONNX, checked in ONNX Runtime) and ``engine`` (TensorRT).

    python -m repro export s3d_resnet18 --out s3d.onnx --format json
    python -m repro export trajectorynet:table3:trajectory_dim4 --out traj.onnx [--plugins]
    python -m repro engine trajectorynet:table3:trajectory_dim4 --out traj.engine   # GPU + TensorRT
    python -m repro engine --demo --out /tmp/traj.engine

A target is a registered model name or a row ``paper:table<N>:row`` (its model, arguments and
input shape); ``--input`` overrides the shape, ``--arg key=value`` adds a constructor argument.
"""
from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any, Callable

__all__ = ["add_commands", "resolve_target"]


def _user_error(message: str) -> Exception:
    from repro.cli import UserError

    return UserError(message)


def resolve_target(args: argparse.Namespace) -> tuple[str, dict[str, Any], tuple[int, ...]]:
    """``(model name, constructor args, input shape)`` of ``args.target`` (:func:`repro.cli.resolve_target`);
    an unknown shape is a one-line error."""
    from repro.cli import resolve_target as resolve

    name, model_args, shape = resolve(args)
    if not shape:
        raise _user_error(f"no input shape known for '{args.target}': pass --input, e.g. 1x3x16x112x112")
    return name, model_args, shape


def _build(args: argparse.Namespace):
    import torch

    from repro.models.contract import model_example_inputs, model_inputs
    from repro.registry import create_model

    name, model_args, shape = resolve_target(args)
    torch.manual_seed(0)
    model = create_model(name, **model_args).eval()
    inputs = model_example_inputs(model, shape)
    names = list(model_inputs(model))[: len(inputs)]
    if len(names) < len(inputs):
        names = [f"input_{i}" for i in range(len(inputs))]
    return name, model_args, shape, model, inputs, names


@contextlib.contextmanager
def _one_line_export_errors(args: argparse.Namespace, name: str, shape: tuple[int, ...]) -> Iterator[None]:
    """What cannot be exported, as one line (exit 2): an operator the ONNX exporter cannot express
    (``export <model>: <why>``), or the model's own input check failing inside the tracer."""
    from repro.cli import _one_line
    from repro.deploy.onnx import ExportError

    try:
        yield
    except ExportError as e:
        raise _user_error(f"export {name}: {e}") from None
    except ValueError as e:  # a model's own input check (channels, frames, size), raised inside the tracer
        shown = "x".join(map(str, shape))
        raise _user_error(f"{args.target} cannot run on input {shown}: {_one_line(e)}") from None


def cmd_export(args: argparse.Namespace) -> int:
    from repro.cli_output import emit
    from repro.deploy.check import export_and_check

    name, model_args, shape, model, inputs, names = _build(args)
    with _one_line_export_errors(args, name, shape):
        checked = export_and_check(model, inputs, args.out, input_names=names, plugins=args.plugins, threads=args.threads)
    report = {"target": args.target, "model": name, "model_args": model_args, "input_shape": list(shape), **checked}

    def text() -> str:
        lines = [f"{args.target}: wrote {report['path']} (opset {report['opset'].get('ai.onnx')}, "
                 f"{sum(report['nodes'].values())} nodes, inputs {report['inputs']})"]
        if report["custom_ops"]:
            lines.append("  custom ops: " + ", ".join(f"{k} x{v}" for k, v in report["custom_ops"].items()))
            lines.append(f"  {report['note']}")
        else:
            lines.append("  custom ops: none")
            verdict = ("ok, " if report["ok"] else "ABOVE ") + f"tolerance {report['tolerance']:.3g}"
            lines.append(f"  ONNX Runtime ran it: max |ORT - eager| = {report['max_abs_diff']:.3g} ({verdict})")
        return "\n".join(lines)

    emit(args, report, text)
    return 0 if report["ok"] in (True, None) else 1


def cmd_engine(args: argparse.Namespace) -> int:
    from repro.cli_output import emit
    from repro.deploy.backends import BACKENDS
    from repro.deploy.tensorrt import engine

    reason = BACKENDS["tensorrt"].unavailable
    if reason is not None:
        raise _user_error(f"cannot build a TensorRT engine here: {reason}")
    if args.demo:
        err = engine.demo(args.out, aot=not args.jit)
        emit(args, {"out": args.out, "max_abs_diff": err}, f"engine written to {args.out}; max |TensorRT - PyTorch| = {err:.3g}")
        return 0 if err < 1e-3 else 1
    if args.onnx:
        count = engine.write_engine(args.out, onnx_path=args.onnx, aot=not args.jit)
    elif args.target:
        from repro.deploy.onnx import ExportError

        name, _, _, model, inputs, _ = _build(args)
        try:
            count = engine.write_engine(args.out, model=model, example_inputs=inputs, aot=not args.jit)
        except ExportError as e:
            raise _user_error(f"export {name}: {e}") from None
    else:
        raise _user_error("engine: give a model or row, --onnx FILE, or --demo")
    emit(args, {"out": args.out, "plugin_nodes": count}, f"{count} plugin node(s); engine written to {args.out}")
    return 0


def add_commands(subparsers, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``export`` and ``engine`` to the CLI (``common``: the CLI's shared options)."""

    def target_options(p: argparse.ArgumentParser, required: bool = True) -> None:
        common(p)
        p.add_argument("target", nargs=None if required else "?",
                       help="a model name (see `list --models`) or a row: paper:table<N>:row")
        p.add_argument("--input", help="input shape, e.g. 1x3x16x112x112 (default: the row's or model's)")
        p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="model constructor argument")
        p.add_argument("--out", required=True, help="file to write")

    p = subparsers.add_parser("export", help="ONNX export, run in ONNX Runtime and compared with eager PyTorch")
    target_options(p)
    p.add_argument("--plugins", action="store_true",
                   help="trajectory sampling as TensorRT plugin nodes (checked structurally; ORT cannot run them)")
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser("engine", help="build a TensorRT engine (plugins for the custom ops; needs a GPU)")
    target_options(p, required=False)
    p.add_argument("--onnx", help="an ONNX file exported with --plugins")
    p.add_argument("--demo", action="store_true", help="export + build + check a small trajectory convolution")
    p.add_argument("--jit", action="store_true", help="Python (JIT) plugin implementation instead of AOT PTX")
    p.set_defaults(func=cmd_engine)
