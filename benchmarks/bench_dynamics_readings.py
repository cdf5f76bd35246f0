"""The two readings of the Dynamics motion branch (§3.3 "subsequent convolution layers";
``DynamicsNet(motion_layout=...)``) against the paper's Table 9 shares: MACs (exact) or times.

For the three-branch model at the paper's Table 9 input (one 8-frame snippet, 224², conv1 stride 1:
the 224×224 displacement map) with ``motion_layout`` "pairs" (the default: each pair's map through
BN-Inception from ``pool1`` on) or "stack" (the T-1 maps stacked on channels into a full
BN-Inception), prints the displacement map's share of the whole and the branch-own ratios the
paper's Table 9 gives (0.64, motion / static 2.80, app. change / motion 1.27):

* ``--what macs``: exact fvcore MACs (``repro.profile.count_macs``' headline count; hardware-free,
  no quiet machine needed);
* ``--what time``: the profile job's per-part timing (:func:`repro.jobs.profile.time_parts`: one
  interleaved run of the parts, medians; 10th-90th percentile over the rounds in brackets).  A
  speed measurement: run it through ``/work/runq/quiet.sh`` with ``--threads 1``.

    PYTHONPATH=$PWD python benchmarks/bench_dynamics_readings.py --layout stack --what macs
    PYTHONPATH=$PWD /work/runq/quiet.sh python benchmarks/bench_dynamics_readings.py --layout stack --what time
"""
from __future__ import annotations

import argparse
import time

import torch

from repro.jobs.profile import frames_per_input, time_parts
from repro.registry import create_model

SHAPE = (1, 3, 8, 224, 224)
PAPER = {"displacement/full": 15.4 / 24.1, "motion/static": 3.33 / 1.19, "change/motion": 4.23 / 3.33}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", choices=("pairs", "stack"), default="pairs")
    parser.add_argument("--what", choices=("macs", "time"), default="macs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (after one warm-up round)")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = create_model("dynamics_full_bninception", num_classes=101, conv1_stride=1, num_frames=8,
                         motion_layout=args.layout)
    video = torch.randn(*SHAPE)
    kind = "part_macs_ratio" if args.what == "macs" else "part_time_ratio"
    own = "part_gmacs" if args.what == "macs" else "part_ms_per_frame"
    wanted = [f"{kind}:{r}" for r in PAPER] + [f"{own}:{p}" for p in ("displacement", "static", "motion", "change", "full")]
    spread: dict[str, list[float]] = {}
    start = time.perf_counter()
    out = time_parts(model, (video,), wanted, args.threads, frames_per_input(SHAPE), spread,
                     repeats=args.repeats, budget_s=0.0)
    unit = "GMACs per snippet" if args.what == "macs" else f"ms/frame, {args.threads} thread(s), {args.repeats} interleaved rounds"
    print(f"dynamics_full_bninception, motion_layout={args.layout}, input {SHAPE}: {args.what} ({unit})")
    for key in wanted:
        band = f"  [{spread[key][0]:.3f}, {spread[key][1]:.3f}]" if key in spread else ""
        paper = f"  (paper {PAPER[key.split(':', 1)[1]]:.2f})" if key.startswith(kind) else ""
        print(f"  {key:<36} {out[key]:10.3f}{band}{paper}")
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
