"""Throughput of mini-scale training on this machine: input pipeline vs. training step.

    python benchmarks/bench_train.py                       # s3d_resnet18 width 1/4, mini protocol
    python benchmarks/bench_train.py --trajectorynet       # a TrajectoryNet mini row (Table 2/3), GT flow
    python benchmarks/bench_train.py --model r2plus1d_18 --arg dropout=0.2 --format json

Prints clips/s of

* the input pipeline, one process with one torch thread (as a DataLoader worker runs): the
  built-in benchmark's dataset decoding every clip from its mp4 (``decode``) and the same
  dataset served from the engine's decoded uint8 cache (``cached``); then a DataLoader over the
  cache at the run's batch size with 0, 1, 2 workers (0: the main process's torch threads);
* one Adam training step (forward + backward + update) of the model at the mini clip size;
* evaluation (forward only);

* where one training step's time goes (``torch.profiler``, self CPU time by operator kind:
  convolution forward / backward, pooling, batch norm, the optimiser's update, other);
* the step again with activations and weights in ``channels_last_3d`` memory format (same model,
  same arithmetic up to float summation order), before/after -- "after" is what the trainer runs
  (:mod:`repro.engine.memory_format`); "before" is the contiguous layout it ran until 2026-12-03;

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


def _alternating_rates(fn_a, fn_b, count: int, repeats: int) -> tuple[float, float]:
    """Items/s of ``fn_a`` and ``fn_b`` timed in alternation (a, b, a, b, ...) after a warm-up each."""
    fn_a()
    fn_b()
    spent = [0.0, 0.0]
    for _ in range(repeats):
        for i, fn in enumerate((fn_a, fn_b)):
            start = time.perf_counter()
            fn()
            spent[i] += time.perf_counter() - start
    return count * repeats / spent[0], count * repeats / spent[1]


#: Operator kinds of a training step, by the profiler's operator name (first match wins).
_KINDS = (("convolution backward", ("convolution_backward",)),
          ("convolution forward", ("mkldnn_convolution", "_convolution", "conv3d", "conv2d", "convolution")),
          ("pooling", ("pool",)),
          ("batch norm", ("batch_norm",)),
          ("optimiser update", ("lerp", "sqrt", "addcdiv", "_foreach", "mul_", "add_", "div_")),
          ("trajectory sampling", ("grid_sampler", "grid_sample")))


def _step_breakdown(step) -> dict[str, float]:
    """Self CPU milliseconds of one ``step()`` by operator kind (:data:`_KINDS`, else "other")."""
    from torch.profiler import profile

    step()
    with profile() as prof:
        step()
    out = {kind: 0.0 for kind, _ in _KINDS} | {"other": 0.0}
    for event in prof.key_averages():
        name = event.key.lower()
        kind = next((k for k, needles in _KINDS if any(n in name for n in needles)), "other")
        out[kind] += event.self_cpu_time_total / 1000.0
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    from repro.engine.data import CachedClipDataset, dataset_root, decoded_split
    from repro.engine.trainer import SeededDataset, _collate, forward_model
    from repro.models.contract import takes_flow
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
    p.add_argument("--steps", type=int, default=5, help="timed training steps (each variant)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader workers to time")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("REPRO_DATA", root / "data")))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--trajectorynet", action="store_true",
                   help="a TrajectoryNet mini row: trajectorynet_resnet18 (res3b1.conv1, avg), width 1/4, GT flow")
    args = p.parse_args(argv)
    if args.trajectorynet:
        args.model = "trajectorynet_resnet18"
        args.arg = (args.arg or []) + ["width=0.25", "dropout=0.2", 'positions=["res3b1.conv1"]', "downsample=avg",
                                       "motion=none", "source=flow"]
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
    flow = "gt" if args.trajectorynet else None
    decode_ds = build_dataset("synth", data_root, "train", train=True, with_flow=flow == "gt", **kw)
    cached_ds = CachedClipDataset.wrap(decode_ds, decoded_split(data_root, "train", decode_ds, flow=flow,
                                                                progress=False))
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
    batch = _collate([cached_ds[i] for i in range(bs)])
    pass_flow = takes_flow(model)

    def make_step(net, memory_format):
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)  # the mini protocol
        net = net.to(memory_format=memory_format)
        inputs = {k: batch[k].contiguous(memory_format=memory_format) if batch[k].dim() == 5 else batch[k]
                  for k in ("video", "flow_fwd", "flow_bwd") if k in batch}

        def step():
            out = forward_model(net, inputs, torch.device("cpu"), pass_flow)
            loss = F.cross_entropy(out.logits, batch["label"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step, inputs

    step, inputs = make_step(model, torch.contiguous_format)
    # after: the same model (same initial weights) in channels_last_3d
    torch.manual_seed(0)
    model_cl = create_model(args.model, num_classes=num_classes, **model_args)
    step_cl, _ = make_step(model_cl, torch.channels_last_3d)
    model.train()
    model_cl.train()
    # before and after alternate step by step: on a shared machine the load drifts within seconds,
    # and timing one after the other once read a 2.7x gain that alternating shows to be ~5 %
    before, after = _alternating_rates(step, step_cl, bs, args.steps)
    figures["train_step_clips_s"], figures["train_step_channels_last_clips_s"] = before, after
    breakdown = _step_breakdown(step)
    model.eval()
    with torch.no_grad():
        figures["eval_clips_s"] = _rate(lambda: forward_model(model, inputs, torch.device("cpu"), pass_flow), bs,
                                        args.steps)

    train_rate = min(figures["train_step_clips_s"], figures["pipeline_cached_clips_s"])
    row_s = args.epochs * (n_train // bs) * bs / train_rate + n_val / figures["eval_clips_s"]
    train_rate_cl = min(figures["train_step_channels_last_clips_s"], figures["pipeline_cached_clips_s"])
    row_s_cl = args.epochs * (n_train // bs) * bs / train_rate_cl + n_val / figures["eval_clips_s"]
    report = {
        "model": args.model, "model_args": model_args, "params_m": params / 1e6,
        "clip": [3, args.frames, args.size, args.size], "batch_size": bs, "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "train_clips": n_train, "val_clips": n_val, "epochs": args.epochs,
        "figures": {k2: round(v, 2) for k2, v in figures.items()},
        "pipeline_over_step": round(figures["pipeline_cached_clips_s"] / figures["train_step_clips_s"], 1),
        "estimated_row_s": round(row_s, 1),
        "estimated_row_channels_last_s": round(row_s_cl, 1),
        "step_breakdown_ms": {k2: round(v, 1) for k2, v in breakdown.items()},
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
        total = sum(breakdown.values())
        print(f"  one training step, {total:.0f} ms of self CPU time:")
        for kind, ms in breakdown.items():
            print(f"    {kind:26s} {ms:8.1f} ms {100 * ms / total:5.1f} %")
        print(f"  estimated mini row ({args.epochs} epochs x {n_train} clips + {n_val} val): {row_s:.0f} s before, "
              f"{row_s_cl:.0f} s with channels_last_3d")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
