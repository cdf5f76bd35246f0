"""Throughput of mini-scale training on this machine: input pipeline vs. training step.

    python benchmarks/bench_train.py                       # s3d_resnet18 width 1/4, mini protocol
    python benchmarks/bench_train.py --model r2plus1d_18 --arg dropout=0.2 --format json

Prints clips/s of

* the input pipeline, one process with one torch thread (as a DataLoader worker runs): the
  built-in benchmark's dataset decoding every clip from its mp4 (``decode``) and the same
  dataset served from the engine's decoded uint8 cache (``cached``); then a DataLoader over the
  cache at the run's batch size with 0, 1, 2 workers (0: the main process's torch threads);
* one Adam training step (forward + backward + update) of the model at the mini clip size;
* evaluation (forward only);

and the resulting estimate of one mini row's wall time (epochs x train clips / the slower of
pipeline and step, plus one evaluation pass).  Nothing here is asserted: figures only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def _rate(fn, count: int, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return count * repeats / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    from repro.engine.data import CachedClipDataset, dataset_root, decoded_split
    from repro.engine.trainer import SeededDataset, _collate
    from repro.data.datasets import build_dataset
    from repro.registry import create_model
    from repro.spec.schema import RunConfig

    root = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="s3d_resnet18")
    p.add_argument("--arg", action="append", default=None, metavar="KEY=VALUE",
                   help="model argument (JSON value); default: width=0.25, the mini protocol's")
    p.add_argument("--preset", default="mini")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=56)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--epochs", type=int, default=24, help="for the per-row estimate")
    p.add_argument("--steps", type=int, default=3, help="timed training steps")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader workers to time")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("REPRO_DATA", root / "data")))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--format", choices=("text", "json"), default="text")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model_args = {}
    for item in args.arg if args.arg is not None else ["width=0.25"]:
        key, _, value = item.partition("=")
        try:
            model_args[key] = json.loads(value)
        except json.JSONDecodeError:
            model_args[key] = value

    cfg = RunConfig(dataset="synth", preset=args.preset, frames=args.frames, size=args.size)
    data_root = dataset_root(cfg, args.data_dir, progress=False)
    kw = dict(frames=args.frames, step=1, size=args.size, seed=0)
    decode_ds = build_dataset("synth", data_root, "train", train=True, **kw)
    cached_ds = CachedClipDataset.wrap(decode_ds, decoded_split(data_root, "train", decode_ds, progress=False))
    val_ds = build_dataset("synth", data_root, "val", train=False, **kw)
    n_train, n_val, num_classes = len(decode_ds), len(val_ds), decode_ds.num_classes
    bs = args.batch_size
    figures: dict[str, float] = {}

    k = iter(range(10 ** 9))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    figures["pipeline_decode_clips_s"] = _rate(lambda: decode_ds[next(k) % n_train], 1, 24)
    figures["pipeline_cached_clips_s"] = _rate(lambda: cached_ds[next(k) % n_train], 1, 96)
    torch.set_num_threads(threads)
    for workers in args.workers:
        seeded = SeededDataset(cached_ds)

        def one_epoch_of_batches(workers=workers):
            loader = torch.utils.data.DataLoader(seeded, batch_size=bs, num_workers=workers, collate_fn=_collate,
                                                 sampler=[(i, i) for i in range(min(n_train, 8 * bs))])
            for _ in loader:
                pass

        figures[f"loader_{workers}w_clips_s"] = _rate(one_epoch_of_batches, min(n_train, 8 * bs), 1)

    torch.manual_seed(0)
    model = create_model(args.model, num_classes=num_classes, **model_args)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)  # the mini protocol
    batch = _collate([cached_ds[i] for i in range(bs)])
    video, labels = batch["video"], batch["label"]

    def step():
        loss = F.cross_entropy(model(video), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    figures["train_step_clips_s"] = _rate(step, bs, args.steps)
    model.eval()
    with torch.no_grad():
        figures["eval_clips_s"] = _rate(lambda: model(video), bs, args.steps)

    train_rate = min(figures["train_step_clips_s"], figures["pipeline_cached_clips_s"])
    row_s = args.epochs * (n_train // bs) * bs / train_rate + n_val / figures["eval_clips_s"]
    report = {
        "model": args.model, "model_args": model_args, "params_m": params / 1e6,
        "clip": [3, args.frames, args.size, args.size], "batch_size": bs, "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "train_clips": n_train, "val_clips": n_val, "epochs": args.epochs,
        "figures": {k2: round(v, 2) for k2, v in figures.items()},
        "pipeline_over_step": round(figures["pipeline_cached_clips_s"] / figures["train_step_clips_s"], 1),
        "estimated_row_s": round(row_s, 1),
    }
    if args.format == "json":
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"{args.model} {model_args or ''} ({params / 1e6:.2f} M params), clip 3x{args.frames}x{args.size}x{args.size}, "
              f"batch {bs}, {torch.get_num_threads()} threads")
        for key, value in report["figures"].items():
            print(f"  {key:28s} {value:10.1f}")
        print(f"  input pipeline / train step: {report['pipeline_over_step']}x")
        print(f"  estimated mini row ({args.epochs} epochs x {n_train} clips + {n_val} val): {row_s:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
