"""One mini training step of the Dynamics models with a cost volume, before / after the fused
cost volume + soft-argmax (``repro.ops.cost_volume.cost_volume_displacement_frames``), timed
interleaved in one run; optionally where the step's time goes, part by part.

The models and settings of Tables 4-6 at mini (``model_args {width: 0.25, conv1_stride: 1}``, 8
frames of 64², batch 16, SGD momentum 0.9, weight decay 1e-4, 12 classes, random data), the
model and clips channels-last as the trainer runs them (``repro.engine.memory_format``).

* ``before``: the displacement maps as the model computed them until this benchmark was written
  (commit 86472bb): the plain per-pair composition :func:`~repro.ops.cost_volume.cosine_cost_volume`
  (its hand-written backward, each of the 81 windows sliced in Python: :func:`_sliced_dots_chunk`)
  then :func:`~repro.ops.cost_volume.soft_argmax_displacement` (softmax and the 1×1 expectation
  conv over the whole ``(N, D, H, W)`` volume, autograd) on ``consecutive_pairs``;
* ``after``: the model as it is (each frame normalised once, volume + soft-argmax a chunk of pairs at
  a time with a hand-written backward).

Rounds alternate ``before, after, before, after, ...`` after one warm-up step each; the table gives
medians and, for the ratio, the 10th-90th percentiles of the per-round paired ratio.  ``--parts``
adds, per model, the forward + backward time of each part (conv1, the cost volume + soft-argmax,
each branch's input and net, the optimiser update) on detached inputs, interleaved too.

    PYTHONPATH=$PWD python benchmarks/bench_dynamics_step.py --threads 1 --rounds 5 [--parts]
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from repro.engine.memory_format import channels_last, to_channels_last
from repro.models.dynamics import DisplacementHead, DynamicsNet
import repro.ops.cost_volume as cv
from repro.registry import create_model

from bench_dynamics_mini import add_mini_arguments  # this directory (benchmarks/) is on sys.path when run

#: (label, model, args): the mini rows of Tables 4-6 that build displacement maps (+ one that does not).
CONFIGS = (
    ("motion", "dynamics_motion_bninception", {}),
    ("change feature_diff", "dynamics_change_bninception", {"change_input": "feature_diff"}),
    ("change warped_rgb_diff", "dynamics_change_bninception", {"change_input": "warped_rgb_diff"}),
    ("full", "dynamics_full_bninception", {}),
)
FAST_FORWARD = DisplacementHead.forward
FAST_DOTS = cv._dots_chunk, cv._dots_backward_chunk


def _sliced_dots_chunk(a, b, d, out) -> None:
    """``repro.ops.cost_volume._dots_chunk`` as of 86472bb: each window sliced in Python."""
    height, width = int(a.shape[2]), int(a.shape[3])
    for k, dy, dx in cv._shifts(d):
        torch.sum(a * b[:, :, d + dy : d + dy + height, d + dx : d + dx + width], dim=1, out=out[:, k])


def _sliced_dots_backward_chunk(a, b, grad, grad_a, grad_b, d) -> None:
    """``repro.ops.cost_volume._dots_backward_chunk`` as of 86472bb."""
    height, width = int(a.shape[2]), int(a.shape[3])
    for k, dy, dx in cv._shifts(d):
        window = (slice(None), slice(None), slice(d + dy, d + dy + height), slice(d + dx, d + dx + width))
        gk = grad[:, k : k + 1]  # (n, 1, H, W)
        grad_a.addcmul_(gk, b[window])
        grad_b[window].addcmul_(gk, a)


def plain_forward(self: DisplacementHead, f0, f1=None, num_frames=None):
    """The displacement head as before: per pair, the cost volume, then the plain soft-argmax."""
    f0, f1 = cv.consecutive_pairs(f0, num_frames) if f1 is None else (f0, f1)
    fast = cv._dots_chunk, cv._dots_backward_chunk
    cv._dots_chunk, cv._dots_backward_chunk = _sliced_dots_chunk, _sliced_dots_backward_chunk
    try:  # _ShiftedDots's backward runs later, in the step's backward: _with_head restores them
        return cv.soft_argmax_displacement(cv.cosine_cost_volume(f0, f1, self.max_disp), self.max_disp,
                                           self.temperature)
    finally:
        cv._dots_chunk = fast[0]


def build(name: str, args: dict, ns: argparse.Namespace
          ) -> tuple[DynamicsNet, torch.optim.Optimizer, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = create_model(name, num_classes=12, width=ns.width, conv1_stride=1, num_frames=ns.frames, **args)
    to_channels_last(model).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    video = channels_last(torch.randn(ns.batch_size, 3, ns.frames, ns.size, ns.size))
    return model, opt, video, torch.randint(0, 12, (ns.batch_size,))


def train_step(model, opt, video, labels) -> None:
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(video), labels).backward()
    opt.step()


def interleaved(fns: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each ``fn`` per round, the fns alternating within each round, after one warm-up each."""
    for fn in fns.values():
        fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            out[key].append(time.perf_counter() - start)
    return out


def _with_head(forward, step) -> Callable[[], None]:
    """``step`` with the displacement head's ``forward`` (and, for ``before``, its backward's loop)."""
    def run() -> None:
        DisplacementHead.forward = forward
        try:
            step()
        finally:
            DisplacementHead.forward = FAST_FORWARD
            cv._dots_chunk, cv._dots_backward_chunk = FAST_DOTS
    return run


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def step_table(ns: argparse.Namespace) -> None:
    print("| model | before s/step | after s/step | after/before (p10-p90 paired) |")
    print("|---|---|---|---|")
    for label, name, args in CONFIGS:
        model, opt, video, labels = build(name, args, ns)
        step = lambda: train_step(model, opt, video, labels)  # noqa: E731
        times = interleaved({"before": _with_head(plain_forward, step), "after": _with_head(FAST_FORWARD, step)},
                            ns.rounds)
        ratios = [a / b for a, b in zip(times["after"], times["before"])]
        print(f"| {label} | {statistics.median(times['before']):.2f} | {statistics.median(times['after']):.2f} | "
              f"{statistics.median(ratios):.2f} ({_pct(ratios, 0.1):.2f}-{_pct(ratios, 0.9):.2f}) |", flush=True)


def _fwd_bwd(fn: Callable, *inputs: torch.Tensor) -> Callable[[], None]:
    """fn's forward + backward on detached inputs (4-D feature maps get a gradient, 3-channel frames not)."""
    leaves = [x.detach().clone().requires_grad_(x.shape[1] != 3) for x in inputs]
    grad = torch.randn_like(fn(*leaves)) * 1e-3
    return lambda: fn(*leaves).backward(grad)


def parts(model: DynamicsNet, opt, video, labels, ns: argparse.Namespace) -> dict[str, Callable[[], None]]:
    """``{part: fn}``: forward + backward of each part of a step (detached inputs), and the update."""
    length = ns.frames
    with torch.no_grad():
        got = model._shared(video, None, model.branches)
    frames, feats, disp = got["frames"], got.get("conv1"), got.get("displacement")
    out: dict[str, Callable[[], None]] = {"step": lambda: train_step(model, opt, video, labels)}
    if feats is not None:
        out["conv1"] = _fwd_bwd(model.conv1, frames)
    if disp is not None:
        head = lambda f: model.displacement(f, num_frames=length)  # noqa: E731, (B·(L-1), 2, h, w)
        out["displacement before"] = _with_head(plain_forward, _fwd_bwd(head, feats))
        out["displacement after"] = _fwd_bwd(head, feats)
    for branch in ("static", "motion"):
        if branch in model.branches:
            net_input = feats if branch == "static" else disp
            frames_in = length - (branch == "motion")  # the motion net sees the L-1 pairs
            out[f"{branch} net"] = _fwd_bwd(lambda x, b=branch, t=frames_in: getattr(model, b)(x, t), net_input)
    if "change" in model.branches:
        shared = [t for t in (frames, feats, disp) if t is not None]
        names = [n for n, t in (("frames", frames), ("feats", feats), ("disp", disp)) if t is not None]

        def change_input(*ts: torch.Tensor) -> torch.Tensor:  # (B·(L-1), c, h, w)
            got = dict(zip(names, ts))
            return model._change_input(got["frames"], got.get("feats"), got.get("disp"), None)

        out["change input"] = _fwd_bwd(change_input, *shared)
        with torch.no_grad():
            x = change_input(*shared)
        out["change net"] = _fwd_bwd(lambda v: model.change(v, length - 1), x)
    train_step(model, opt, video, labels)
    out["optimiser update"] = opt.step
    return out


def parts_table(ns: argparse.Namespace) -> None:
    for label, name, args in CONFIGS:
        times = interleaved(parts(*build(name, args, ns), ns), ns.rounds)
        print(f"\n{label} ({name} {args or ''}): ms per part, median of {ns.rounds} interleaved rounds")
        for key, values in times.items():
            print(f"  {key:22s} {1000 * statistics.median(values):7.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_mini_arguments(parser)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--parts", action="store_true", help="also time each part of the step")
    ns = parser.parse_args()
    torch.set_num_threads(ns.threads)
    print(f"width {ns.width}, conv1 stride 1, {ns.frames} x {ns.size}², batch {ns.batch_size}, "
          f"{ns.threads} thread(s), channels-last, {ns.rounds} interleaved rounds")
    step_table(ns)
    if ns.parts:
        parts_table(ns)


if __name__ == "__main__":
    main()
