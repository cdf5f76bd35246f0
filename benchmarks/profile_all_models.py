"""Profile every registered model at its default input through the CLI, as a user would.

    PYTHONPATH=$PWD python benchmarks/profile_all_models.py [--out profile_all.json]

Runs ``python -m repro profile NAME --format json`` once per model (``python -m repro list
--models --format json`` gives the names) and checks that each succeeds with ``params`` and
``macs`` set and ``uncounted_ops`` empty; prints one line per model with its wall time.  Exit
status 1 if any model fails.  A check, not a unit test: the default inputs are full size.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "repro", *args], capture_output=True, text=True)


def _json_of(text: str):
    start = min(i for i in (text.find("{"), text.find("[")) if i >= 0)
    return json.loads(text[start:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write every model's profile and timing to this JSON file")
    args = parser.parse_args()
    listed = _json_of(_cli("list", "--models", "--format", "json").stdout)
    names = [m["name"] if isinstance(m, dict) else m for m in (listed["models"] if isinstance(listed, dict) else listed)]
    failures, rows = [], {}
    for name in names:
        start = time.perf_counter()
        done = _cli("profile", name, "--format", "json")
        seconds = time.perf_counter() - start
        try:
            result = _json_of(done.stdout)
            ok = done.returncode == 0 and result["params"] > 0 and result["macs"] > 0 and result["uncounted_ops"] == {}
        except (ValueError, KeyError):
            result, ok = {}, False
        rows[name] = {"ok": ok, "seconds": round(seconds, 1), **{k: result.get(k) for k in
                                                                    ("input_shape", "params", "macs", "uncounted_ops")}}
        print(f"{'ok  ' if ok else 'FAIL'} {name:<24} {seconds:6.1f} s  params {result.get('params')}  "
              f"GMACs {result.get('gmacs', float('nan')):.3f}  input {result.get('input_shape')}", flush=True)
        if not ok:
            failures.append(name)
            print((done.stderr or done.stdout)[-2000:], file=sys.stderr)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=2)
    print(f"{len(names) - len(failures)}/{len(names)} models profiled; total {sum(r['seconds'] for r in rows.values()):.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
