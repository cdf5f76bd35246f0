"""How every command writes its answer: JSON on stdout with ``--format json``, text otherwise;
user errors as one line on stderr with exit status 2.  The one copy, used by :mod:`repro.cli` and
the area command modules (``repro.{data,engine,flow}.commands``)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

__all__ = ["emit", "fail"]


def emit(args: argparse.Namespace, payload: Any, text: str | Callable[[], str]) -> None:
    """``payload`` as JSON when ``args.format == "json"``, else ``text`` (a string or a function
    making it, called only when needed), ending in a newline."""
    if getattr(args, "format", "text") == "json":
        json.dump(payload, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        out = text() if callable(text) else text
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
    sys.stdout.flush()


def fail(message: str) -> int:
    """Print ``repro: error: <message>`` on stderr; the exit status of a user error (2)."""
    print(f"repro: error: {message}", file=sys.stderr)
    return 2
