"""Start-up time of the CLI (issue 17): `list` under 2 s, one table's `--no-run` rendering under 3 s.

    python benchmarks/bench_cli.py [--repeats 5]

Runs each command as a fresh process (what a user waits for), ``--repeats`` times, and prints
the median and the spread beside the target.  Rendering writes into a temporary ``--tables``
folder, so the tracked ``tables/`` is left alone.  Run it on an idle machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def time_command(argv: list[str], repeats: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "repro", *argv], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tables:
        cases = [("python -m repro list", ["list", "-q"], 2.0),
                 ("python -m repro table3 --paper tvnet --no-run", ["table3", "--paper", "tvnet", "--no-run", "-q",
                                                                     "--tables", tables], 3.0)]
        print(f"{'command':<48} {'median':>8} {'min':>7} {'max':>7} {'target':>8}")
        for label, argv, target in cases:
            times = time_command(argv, args.repeats)
            med = statistics.median(times)
            verdict = "ok" if med < target else "OVER"
            print(f"{label:<48} {med:>7.2f}s {min(times):>6.2f}s {max(times):>6.2f}s {'< ' + str(target) + ' s':>8}  {verdict}")
    print(f"({args.repeats} runs each; load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
