"""Benchmark the Dynamics cosine cost volume + soft-argmax (§3.3, Eq. 1-2) on CPU.

Times (interleaved runs, medians) the fast path of :mod:`repro.ops.cost_volume`, its loop
reference and an ``F.unfold``-based version that materialises the ``(C, D, H, W)`` neighbourhood
tensor, at a Dynamics-sized input (default 1x256x28x28, d = 4 -> D = 81), and the peak memory
of fast vs unfold (forward, and forward + backward), each measured in a fresh child process as
the growth of its peak resident set (Linux ``VmHWM`` after a reset): approximate, allocator
granularity.

    PYTHONPATH=$PWD python benchmarks/bench_cost_volume.py [--shape 1x256x28x28] [--max-disp 4]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

import torch
import torch.nn.functional as F

from repro.ops.cost_volume import (
    DEFAULT_EPS,
    cosine_cost_volume,
    cosine_cost_volume_reference,
    normalize_features,
    num_displacements,
    soft_argmax_displacement,
    soft_argmax_displacement_reference,
)

TEMPERATURE = 0.05


def unfold_cost_volume(f0: torch.Tensor, f1: torch.Tensor, max_disp: int, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """The naive construction: unfold f1's (2d+1)² neighbourhoods into (N, C, D, H, W), then a dot
    product over C.  Same values as :func:`cosine_cost_volume`; memory O(C·D·H·W)."""
    n, c, h, w = f0.shape
    side = 2 * max_disp + 1
    neighbours = F.unfold(normalize_features(f1, eps), side, padding=max_disp).view(n, c, side * side, h, w)
    return (normalize_features(f0, eps).unsqueeze(2) * neighbours).sum(dim=1)


VARIANTS = {
    "fast": lambda f0, f1, d: soft_argmax_displacement(cosine_cost_volume(f0, f1, d), d, TEMPERATURE),
    "reference": lambda f0, f1, d: soft_argmax_displacement_reference(
        cosine_cost_volume_reference(f0, f1, d), d, TEMPERATURE
    ),
    "unfold": lambda f0, f1, d: soft_argmax_displacement(unfold_cost_volume(f0, f1, d), d, TEMPERATURE),
}


def _inputs(shape: tuple[int, ...], requires_grad: bool = False):
    g = torch.Generator().manual_seed(0)
    f0, f1 = torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)
    return f0.requires_grad_(requires_grad), f1.requires_grad_(requires_grad)


def interleaved_medians(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds per call over ``repeats`` interleaved rounds (A, B, C, A, B, C, ...), one warm-up each."""
    from repro.deploy.backends import interleaved_ms

    return {name: statistics.median(v) / 1e3 for name, v in interleaved_ms(fns, repeats, warmup=1).items()}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _child_peak_mb(variant: str, shape: tuple[int, ...], max_disp: int, backward: bool) -> float:
    """Run in a fresh process: peak RSS growth (MB) of one call in steady state.  One untimed call
    first (the first call of a process at a new size holds ~64 MB of one-off allocations), then
    Linux's peak (VmHWM) is reset to the current RSS (write 5 to /proc/self/clear_refs)."""
    f0, f1 = _inputs(shape, requires_grad=backward)

    def call() -> None:
        with torch.set_grad_enabled(backward):
            out = VARIANTS[variant](f0, f1, max_disp)
            if backward:
                out.square().sum().backward()
                f0.grad = f1.grad = None

    call()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before = _status_kb("VmRSS")
    call()
    return (_status_kb("VmHWM") - before) / 1024


def peak_mb(variant: str, shape: tuple[int, ...], max_disp: int, backward: bool, runs: int = 3) -> list[float]:
    """Peak RSS growth (MB) of ``runs`` fresh child processes (glibc's reuse of freed memory
    makes single readings vary, most in the backward pass)."""
    cmd = [sys.executable, __file__, "--child", variant, "--shape", "x".join(map(str, shape)),
           "--max-disp", str(max_disp)] + (["--backward"] if backward else [])
    return [float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()[-1]) for _ in range(runs)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="1x256x28x28", help="N x C x H x W of each feature map")
    parser.add_argument("--max-disp", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--child", choices=tuple(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--backward", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    shape = tuple(int(s) for s in args.shape.split("x"))
    if len(shape) != 4:
        parser.error(f"--shape: expected N x C x H x W, got {args.shape!r}")
    torch.set_num_threads(args.threads)
    if args.child:
        print(_child_peak_mb(args.child, shape, args.max_disp, args.backward))
        return 0

    d = args.max_disp
    f0, f1 = _inputs(shape)
    with torch.no_grad():
        expected = VARIANTS["fast"](f0, f1, d)
        max_diff = {name: float((fn(f0, f1, d) - expected).abs().max()) for name, fn in VARIANTS.items() if name != "fast"}
        med = interleaved_medians({name: (lambda fn=fn: fn(f0, f1, d)) for name, fn in VARIANTS.items()}, args.repeats)
    n, c, h, w = shape
    dd = num_displacements(d)
    report = {
        "shape": args.shape, "max_disp": d, "D": dd, "threads": args.threads, "repeats": args.repeats,
        "median_ms": {k: v * 1e3 for k, v in med.items()},
        "reference_over_fast": med["reference"] / med["fast"],
        "unfold_over_fast": med["unfold"] / med["fast"],
        "max_abs_diff_vs_fast": max_diff,
        "unfolded_tensor_mb": n * c * dd * h * w * 4 / 2**20,
        "cost_volume_mb": n * dd * h * w * 4 / 2**20,
        "peak_mb": {
            f"{variant}_{mode}": peak_mb(variant, shape, d, mode == "train")
            for mode in ("forward", "train") for variant in ("fast", "unfold")
        },
    }
    if args.format == "json":
        print(json.dumps(report, indent=2))
        return 0
    ms = report["median_ms"]
    print(f"{args.shape}, d={d} (D={dd}), {args.threads} thread(s), medians of {args.repeats} interleaved runs")
    print(f"  fast {ms['fast']:.1f} ms | reference {ms['reference']:.1f} ms ({report['reference_over_fast']:.2f}x fast)"
          f" | unfold {ms['unfold']:.1f} ms ({report['unfold_over_fast']:.2f}x fast)")
    print("  max |x - fast|: " + ", ".join(f"{k} {v:.1e}" for k, v in max_diff.items()))
    pk = {k: "/".join(f"{x:.0f}" for x in sorted(v)) for k, v in report["peak_mb"].items()}
    print(f"  peak RSS growth (MB, 3 processes each), forward: fast {pk['fast_forward']}, unfold {pk['unfold_forward']};"
          f" forward+backward: fast {pk['fast_train']}, unfold {pk['unfold_train']}")
    print(f"  (unfolded (C, D, H, W) tensor {report['unfolded_tensor_mb']:.1f} MB; cost volume {report['cost_volume_mb']:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
