"""What one mini Dynamics row costs to train on one core: SGD steps of the Dynamics models at the
mini clip size, and the per-row estimate of a candidate mini protocol.

For each configuration (model, conv1 stride) times ``--steps`` training steps (forward + backward +
SGD update, batch ``--batch-size`` clips of ``--frames`` x ``--size``², random data, 12 classes,
after 2 warm-up steps; medians) and one evaluation forward, then estimates a row's wall time:
``epochs x ceil(1152 / batch) x step + ceil(960 / batch) x eval`` (the mini split's 1152 train and
960 val clips; data loading from the engine's decoded cache is not included).  A speed
measurement: run through ``/work/runq/quiet.sh`` with ``--threads 1``.

    PYTHONPATH=$PWD /work/runq/quiet.sh python benchmarks/bench_dynamics_mini.py --threads 1
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

from repro.registry import create_model

TRAIN_CLIPS, VAL_CLIPS = 1152, 960
CONFIGS = (  # (model, conv1 stride): Tables 1-2 static; 3-4 motion / change; 5-6 full and two-branch
    ("dynamics_full_bninception", 1), ("dynamics_full_bninception", 2),
    ("dynamics_static_bninception", 1), ("dynamics_motion_bninception", 1), ("dynamics_change_bninception", 1),
)


def time_config(name: str, stride: int, args: argparse.Namespace) -> tuple[float, float]:
    torch.manual_seed(0)
    model = create_model(name, num_classes=12, width=args.width, conv1_stride=stride, num_frames=args.frames)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch_size, 3, args.frames, args.size, args.size)
    y = torch.randint(0, 12, (args.batch_size,))
    steps = []
    model.train()
    for i in range(2 + args.steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if i >= 2:
            steps.append(time.perf_counter() - start)
    model.eval()
    with torch.inference_mode():
        model(x)
        start = time.perf_counter()
        model(x)
        evaluation = time.perf_counter() - start
    return statistics.median(steps), evaluation


def add_mini_arguments(parser: argparse.ArgumentParser) -> None:
    """The mini protocol's shape options (threads, width, frames, size, batch size)."""
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_mini_arguments(parser)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"width {args.width}, {args.frames} x {args.size}², batch {args.batch_size}, {args.threads} thread(s); "
          f"row = {args.epochs} epochs x {math.ceil(TRAIN_CLIPS / args.batch_size)} steps + "
          f"{math.ceil(VAL_CLIPS / args.batch_size)} eval batches")
    print("| model | conv1 stride | s / step | s / eval batch | s / epoch | min / row |")
    print("|---|---|---|---|---|---|")
    for name, stride in CONFIGS:
        step, evaluation = time_config(name, stride, args)
        epoch = math.ceil(TRAIN_CLIPS / args.batch_size) * step
        row = args.epochs * epoch + math.ceil(VAL_CLIPS / args.batch_size) * evaluation
        print(f"| {name} | {stride} | {step:.2f} | {evaluation:.2f} | {epoch:.0f} | {row / 60:.1f} |", flush=True)


if __name__ == "__main__":
    main()
