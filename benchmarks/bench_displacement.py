"""Diagnostic: end-point error of the Dynamics displacement map (§3.3, Eq. 1-2) against the built-in
benchmark's exact flow -- how much of the motion the cost volume + soft-argmax recovers *before*
any training, on what features, at which temperature τ and window Δ.

On ``N`` validation clips of the motion classes of ``data/synth/mini`` (64², the exact forward flow
of every pair is stored as ``.flo``), the first 7 frame pairs of each clip (one 8-frame snippet):

* features: (a) the raw pixels (RGB in [0, 1], the map on the image grid, stride 1); (b) the
  conv1 features (``conv1_7x7_s2`` + BN + ReLU, 64 channels) of an **untrained** BN-Inception
  stem, the Dynamics model's own (``create_model("dynamics_motion_bninception").conv1``, seed 0),
  on ImageNet-normalised frames as the data pipeline feeds them, at stride 1 (Table 3's "224×224"
  map: map = input size) and stride 2 (the "112×112" map);
* displacement: :func:`repro.ops.cost_volume.cost_volume_displacement` (cosine cost volume, one
  joint softmax of ``C / τ``, expected displacement) for each τ and Δ, and the winner-take-all
  map (:func:`~repro.ops.cost_volume.wta_displacement`);
* EPE (:func:`displacement_epe`): the map in feature pixels times the stride = input pixels; the
  GT flow averaged over each stride × stride block (the feature grid); pixels whose GT target
  leaves the frame are excluded (the synthetic world wraps around), a feature pixel only if its
  whole block is valid.  ``all``: every valid pixel; ``moving``: where the GT moves >= 0.5 px
  (the object; the background of mini is still).  ``zero flow`` is the EPE of predicting 0.

    PYTHONPATH=$PWD python benchmarks/bench_displacement.py [--data-dir /work/main/data] [--clips 24]

Cheap (< 1 min on one core): the figures are a diagnostic, not a reproduced number (no table
cites them); ``docs/dynamics.md`` keeps one printout and how it was made.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from repro.ops.cost_volume import cosine_cost_volume, cost_volume_displacement, wta_displacement
from repro.ops.epe import end_point_error

MOVING_PX = 0.5  # a GT vector at least this long (input pixels) counts as moving
TEMPERATURES = (0.001, 0.01, 0.05)
WINDOWS = {1: (2, 4), 2: (1, 2)}  # stride -> max displacements Δ (feature pixels); mini moves <= 3.6 px


# ------------------------------------------------------------------------------ pure functions
def flow_on_grid(flow: torch.Tensor, valid: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """GT flow ``(B, 2, H, W)`` in input pixels and its validity ``(B, H, W)`` -> the feature grid
    of ``stride``: the flow averaged over each ``stride x stride`` block (still input pixels), valid
    only where the whole block is.  ``H, W`` must be multiples of ``stride``."""
    if stride == 1:
        return flow, valid
    if flow.shape[-1] % stride or flow.shape[-2] % stride:
        raise ValueError(f"flow_on_grid: size {tuple(flow.shape[-2:])} is not a multiple of stride {stride}")
    pooled = F.avg_pool2d(flow, stride)
    block_valid = -F.max_pool2d(-valid.float().unsqueeze(1), stride).squeeze(1) > 0.5  # min over the block
    return pooled, block_valid


def displacement_epe(disp: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor, stride: int,
                     moving_px: float = MOVING_PX) -> dict[str, float]:
    """Mean EPE (input pixels) of a displacement map ``disp`` ``(B, 2, h, w)`` in feature pixels
    (channel 0 = x) against GT ``flow`` ``(B, 2, H, W)`` in input pixels with validity ``valid``
    ``(B, H, W)`` (``h = H / stride``): ``{"all", "moving", "zero_all", "zero_moving", "pixels",
    "moving_pixels"}`` -- over every valid feature pixel and over those whose GT moves >=
    ``moving_px``, for the map and for the zero flow."""
    gt, ok = flow_on_grid(flow, valid, stride)
    if tuple(gt.shape) != tuple(disp.shape):
        raise ValueError(f"displacement_epe: map {tuple(disp.shape)} vs flow on the grid {tuple(gt.shape)}")
    err = end_point_error(disp * stride, gt)  # (B, h, w)
    zero = gt.norm(dim=1)
    moving = ok & (zero >= moving_px)

    def mean(x: torch.Tensor, mask: torch.Tensor) -> float:
        return float(x[mask].mean()) if mask.any() else float("nan")

    return {"all": mean(err, ok), "moving": mean(err, moving), "zero_all": mean(zero, ok),
            "zero_moving": mean(zero, moving), "pixels": int(ok.sum()), "moving_pixels": int(moving.sum())}


def target_inside(flow: torch.Tensor) -> torch.Tensor:
    """``(B, 2, H, W)`` forward flow -> ``(B, H, W)``: where ``x + flow(x)`` stays in the frame."""
    _, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype), indexing="ij")
    tx, ty = xs + flow[:, 0], ys + flow[:, 1]
    return (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)


# ------------------------------------------------------------------------------ data
def load_pairs(data_dir: Path, clips: int, pairs_per_clip: int = 7) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Frames ``f0, f1`` ``(P, 3, H, W)`` in [0, 1], forward GT flow ``(P, 2, H, W)`` of the first
    ``pairs_per_clip`` pairs of the first ``clips`` validation clips of the motion classes."""
    import json

    from repro.data.datasets import SynthFlowSource
    from repro.data.readers import read_synth
    from repro.data.video_io import read_video

    root = data_dir / "synth" / "mini"
    components = json.loads((root / "meta.json").read_text())["components"]
    val = read_synth(root, "val")
    records = [r for r in val.records if components[val.classes[r.label]] == "motion"][:clips]
    if len(records) < clips:
        raise SystemExit(f"--clips {clips}: {root} has only {len(records)} motion clips in val")
    source = SynthFlowSource(root, "val")
    f0, f1, flows = [], [], []
    for record in records:
        video = torch.from_numpy(np.asarray(read_video(record.path))).float().div(255).permute(0, 3, 1, 2)  # (T, 3, H, W)
        fwd, _, ok, _ = source(record, list(range(pairs_per_clip)), int(video.shape[0]))
        assert ok.all(), record.video_id
        f0.append(video[:pairs_per_clip])
        f1.append(video[1:pairs_per_clip + 1])
        flows.append(torch.from_numpy(fwd).permute(0, 3, 1, 2))
    return torch.cat(f0), torch.cat(f1), torch.cat(flows), [r.video_id for r in records]


# ------------------------------------------------------------------------------ the table
def conv1_features(frames: torch.Tensor, stride: int) -> torch.Tensor:
    """The untrained Dynamics conv1 stem (seed 0, eval: BN is the identity) on normalised frames."""
    from repro.data.transforms import normalize
    from repro.registry import create_model

    torch.manual_seed(0)
    stem = create_model("dynamics_motion_bninception", num_classes=12, conv1_stride=stride).conv1.eval()
    with torch.no_grad():
        return stem(normalize(frames.transpose(0, 1) * 255).transpose(0, 1))  # (P, 3, H, W) -> (P, 64, H/s, W/s)


def run(data_dir: Path, clips: int) -> list[dict]:
    f0, f1, flow, ids = load_pairs(data_dir, clips)
    valid = target_inside(flow)
    rows = []
    features = {"pixels": (1, f0, f1)}
    for stride in (1, 2):
        both = conv1_features(torch.cat([f0, f1]), stride)
        features[f"conv1 s{stride}"] = (stride, both[: len(f0)], both[len(f0):])
    for name, (stride, a, b) in features.items():
        for max_disp in WINDOWS[stride]:
            with torch.no_grad():
                cost = cosine_cost_volume(a, b, max_disp)
                maps = {f"tau {t:g}": cost_volume_displacement(a, b, max_disp, t) for t in TEMPERATURES}
                maps["WTA"] = wta_displacement(cost, max_disp)
            for matcher, disp in maps.items():
                rows.append({"features": name, "stride": stride, "max_disp": max_disp, "matcher": matcher,
                             **displacement_epe(disp, flow, valid, stride)})
    print(f"{len(ids)} val clips of the motion classes ({ids[0]} .. {ids[-1]}), {len(f0)} pairs, 64x64")
    return rows


def format_rows(rows: list[dict]) -> str:
    head = "| features | stride | Δ (feat. px) | matcher | EPE all | zero-flow all | EPE moving | zero-flow moving |"
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['features']} | {r['stride']} | {r['max_disp']} | {r['matcher']} | {r['all']:.3f} | "
                     f"{r['zero_all']:.3f} | {r['moving']:.3f} | {r['zero_moving']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/work/main/data"))
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = run(args.data_dir, args.clips)
    print(format_rows(rows))
    r = rows[0]
    print(f"\nvalid pixels at stride 1: {r['pixels']} ({r['moving_pixels']} moving); "
          f"{time.perf_counter() - start:.0f} s on {args.threads} thread(s)")


if __name__ == "__main__":
    main()
