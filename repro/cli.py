"""Command line: ``python -m repro {list,table<N>,all,profile,...}``."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    print("repro: CLI under construction", file=sys.stderr)
    return 0
