"""Params, GMACs and latency of the baseline video backbones at their default inputs.

    python benchmarks/bench_backbones.py                          # every video_resnet model
    python benchmarks/bench_backbones.py --models 'r*_18' --threads 2 --repeats 5
    python benchmarks/bench_backbones.py --backend onnxruntime --format json
    python benchmarks/bench_backbones.py --no-latency             # counts only (fast)

Each row's achieved GFLOP/s (2 x MACs / median latency) is set against this machine's fp32 matmul
rate measured in the same run (a 1024² sgemm, median of repeated calls, same thread count, before
and after the models).

Columns: parameters, GMACs (everything counted: conv, linear, BN, elementwise, pooling),
dense GMACs (conv + linear: torchvision's convention), ops without a MAC rule, and the median /
inter-quartile range of ``--repeats`` timed forward passes (batch 1) after ``--warmup``.
Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import statistics
import sys

import torch
from tqdm import tqdm

from repro.deploy.backends import BACKENDS, CLOCKS
from repro.profile import profile
from repro.registry import list_models, model_entry

_FAMILY_MODULE = "repro.models.video_resnet"


def matmul_gflops(threads: int | None, size: int = 1024, repeats: int = 10, clock: str = "wall") -> float:
    """This machine's fp32 matmul rate: median GFLOP/s of ``size``² x ``size``² products, timed on
    ``clock`` (:data:`repro.deploy.backends.CLOCKS`: use the models' clock)."""
    now = CLOCKS[clock]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        torch.mm(a, b)
        times = []
        for _ in range(repeats):
            start = now()
            torch.mm(a, b)
            times.append(now() - start)
    finally:
        torch.set_num_threads(previous)
    return 2 * size**3 / statistics.median(times) / 1e9


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="*", help="shell pattern over the video_resnet model names")
    p.add_argument("--num-classes", type=int, default=400)
    p.add_argument("--backend", choices=list(BACKENDS), default="eager")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="where latency is measured, e.g. cuda")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--format", choices=("text", "json"), default="text")
    args = p.parse_args(argv)

    names = [
        n for n in list_models() if model_entry(n).module == _FAMILY_MODULE and fnmatch.fnmatch(n, args.models)
    ]
    if not names:
        print(f"no video_resnet model matches {args.models!r}", file=sys.stderr)
        return 2
    rows = []
    peak_before = None if args.no_latency else matmul_gflops(args.threads)
    for name in tqdm(names, desc="backbones", file=sys.stderr):
        rows.append(
            profile(
                name,
                latency=not args.no_latency,
                backend=args.backend,
                warmup=args.warmup,
                repeats=args.repeats,
                threads=args.threads,
                device=args.device,
                num_classes=args.num_classes,
            )
        )
    peak = None
    if not args.no_latency:
        peak = statistics.mean([peak_before, matmul_gflops(args.threads)])
        for r in rows:
            r["achieved_gflops_per_s"] = r["gflops"] / (r["latency_ms"] / 1e3)
            r["fraction_of_matmul"] = r["achieved_gflops_per_s"] / peak
    if args.format == "json":
        json.dump({"torch": torch.__version__, "matmul_gflops_per_s": peak, "rows": rows}, sys.stdout, indent=2)
        print()
        return 0
    header = f"{'model':<15} {'input':<18} {'params':>12} {'GMACs':>8} {'dense':>8}"
    if not args.no_latency:
        header += f" {'median ms':>10} {'IQR ms':>8} {'GFLOP/s':>8} {'of mm':>6}"
    print(
        f"{args.num_classes} classes; latency: {args.backend} on {args.device}, "
        f"threads={rows[0].get('threads', '-')}, batch 1"
        + (f"; fp32 matmul (1024², same run): {peak:.1f} GFLOP/s" if peak else "")
    )
    print(header)
    for r in rows:
        line = (
            f"{r['model']:<15} {'x'.join(map(str, r['input_shape'])):<18} {r['params']:>12,} "
            f"{r['gmacs']:>8.2f} {r['gmacs_dense']:>8.2f}"
        )
        if not args.no_latency:
            line += (f" {r['latency_ms']:>10.1f} {r['latency_iqr_ms']:>8.1f} {r['achieved_gflops_per_s']:>8.1f}"
                     f" {r['fraction_of_matmul']:>6.0%}")
        if r["uncounted_ops"]:
            line += "  uncounted: " + ", ".join(f"{k} x{v}" for k, v in r["uncounted_ops"].items())
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
