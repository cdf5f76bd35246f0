"""Input-pipeline throughput on the built-in benchmark (clips/s).

    python benchmarks/bench_data.py [--root DIR] [--preset mini] [--workers 0 2] [--batches 20]
                                    [--frames 16] [--step 1] [--size 56] [--format text|json]

Generates the benchmark first if ``--root`` has none (and reports generation time and size), then
times (a) PyAV decoding alone, (b) the training pipeline (decode + TSN multi-scale crop + flip +
normalise, batch 8) and (c) 10-crop testing, through a ``torch.utils.data.DataLoader``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from repro.data import synth
from repro.data.datasets import build_dataset
from repro.data.readers import read_synth
from repro.data.video_io import read_video


def dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def time_loader(ds, batch_size: int, workers: int, batches: int) -> float:
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(0), persistent_workers=False)  # fmt: skip
    it = iter(loader)
    next(it)  # warm-up (worker start, first decode)
    n, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        n += batch["video"].shape[0]
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=None, help="benchmark folder (default: a temporary one)")
    ap.add_argument("--preset", default="mini", choices=sorted(synth.PRESETS))
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--step", type=int, default=1)
    ap.add_argument("--size", type=int, default=56)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the main process")
    ap.add_argument("--format", choices=("text", "json"), default="text")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    tmp = None
    root = args.root
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_data_")
        root = Path(tmp.name) / args.preset
    result: dict = {"preset": args.preset, "root": str(root)}
    start = time.perf_counter()
    generated = not (root / "meta.json").is_file()
    synth.generate(root, args.preset, seed=0, progress=args.format == "text")
    if generated:
        result["generate_s"] = round(time.perf_counter() - start, 2)
    result["bytes_on_disk"] = dir_bytes(root)

    records = read_synth(root, "train").records[:64]
    start = time.perf_counter()
    for r in records:
        read_video(r.path)
    result["decode_clips_per_s"] = round(len(records) / (time.perf_counter() - start), 1)

    train = build_dataset("synth", root, "train", frames=args.frames, step=args.step, size=args.size)
    test10 = build_dataset("synth", root, "val", frames=args.frames, step=args.step, size=args.size, views=(1, 10))
    for w in args.workers:
        result[f"train_clips_per_s_workers{w}"] = round(time_loader(train, 8, w, args.batches), 1)
        result[f"test10crop_videos_per_s_workers{w}"] = round(time_loader(test10, 4, w, max(args.batches // 2, 1)), 1)
    if args.format == "json":
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:32s} {v}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
