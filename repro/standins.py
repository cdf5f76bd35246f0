"""What a reproduced number stands in for: its data, and how its protocol departs from the paper's.

Generated, never typed: from the row's paper protocol (its ``full`` run config, the paper's
setting) and what ran (the result's ``details.run_config``, else the row's config at that scale),
plus the departures the spec writes down (:class:`repro.spec.schema.Departure`: what a config
cannot say, e.g. "from scratch, not ImageNet-initialised").

    >>> data_label(resolved_config(row.mini), "mini", "train")
    'mini: synthetic, 12 classes, chance 8.3 %'
    >>> stand_ins(spec, row, "mini", result.details.get("run_config"))
    ['data: synthetic mini benchmark (12 classes) for Something-Something V1', 'width 1/4', ...]
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any

from repro.spec.schema import Row, TableSpec, resolved_config

__all__ = ["DATASETS", "classes_of", "chance", "data_label", "stand_ins"]

#: Display names of the datasets specs name.
DATASETS = {
    "sthv1": "Something-Something V1", "sthv2": "Something-Something V2", "ucf101": "UCF101",
    "hmdb51": "HMDB51", "kinetics": "Kinetics-400", "kinetics400": "Kinetics-400", "middlebury": "Middlebury",
    "jhmdb": "J-HMDB", "synth": "synthetic",
}
#: Display names of flow sources (``RunConfig.flow``).
FLOWS = {"gt": "the benchmark's exact flow", "tvl1": "TV-L1", "none": "none"}


def classes_of(cfg: dict[str, Any]) -> int | None:
    """Class count of a resolved config's data, where the harness knows it (built-in presets)."""
    if cfg.get("dataset") != "synth":
        return None
    from repro.data.synth import PRESETS

    preset = PRESETS.get(cfg.get("preset") or "mini")
    return len(preset.classes) if preset is not None else None


def chance(metric: str, classes: int | None) -> float | None:
    """Accuracy (%) of guessing uniformly: top-k is k / classes; None for non-accuracy metrics."""
    if not classes:
        return None
    k = {"top1": 1, "mean_class_acc": 1, "top5": 5, "avg_top1_top5": 3}.get(metric.split("@")[0])
    return None if k is None else min(100.0, 100.0 * k / classes)


def data_label(cfg: dict[str, Any], scale: str, job: str, metric: str | None = None) -> str:
    """What a column's reproduced numbers were measured on, e.g. "mini: synthetic, 12 classes,
    chance 8.3 %"; profile numbers: the full-size model at the paper's input."""
    if job == "profile":
        return "full-size model at the paper's input, this machine"
    dataset = cfg.get("dataset") or "?"
    name = DATASETS.get(dataset, dataset)
    if job == "flow":
        size = cfg.get("size")
        return f"{scale}: {name} ground-truth pairs" + (f" {size}×{size}" if size and dataset == "synth" else "")
    parts = [f"{scale}: {name}"]
    classes = classes_of(cfg)
    if classes:
        parts.append(f"{classes} classes")
        level = chance(metric or "top1", classes)
        if level is not None:
            parts.append(f"chance {level:.1f} %")
    return ", ".join(parts)


def _width(args: dict[str, Any]) -> str:
    w = args.get("width", 1)
    return str(Fraction(w).limit_denominator(16)) if isinstance(w, (int, float)) else str(w)


def _clip(cfg: dict[str, Any]) -> str:
    frames, step, size = cfg.get("frames"), cfg.get("step") or 1, cfg.get("size")
    clip = f"{frames}×{step} frames" if frames else ""
    return " at ".join(filter(None, [clip, f"{size}²" if size else ""]))


def _training(cfg: dict[str, Any]) -> str:
    parts = []
    if cfg.get("epochs"):
        parts.append(f"{cfg['epochs']} epochs")
    if cfg.get("optimizer"):
        parts.append(f"{cfg['optimizer'].upper() if cfg['optimizer'] == 'sgd' else cfg['optimizer'].capitalize()}"
                     + (f" lr {cfg['lr']:g}" if cfg.get("lr") is not None else ""))
    if cfg.get("batch_size"):
        parts.append(f"batch {cfg['batch_size']}")
    return ", ".join(parts)


def stand_ins(spec: TableSpec, row: Row, scale: str, run_config: dict[str, Any] | None = None) -> list[str]:
    """How the row's numbers at ``scale`` depart from the paper's protocol, one phrase each.

    ``run_config``: the resolved configuration that ran (a result's ``details.run_config``);
    else the spec's configuration at ``scale``.  The paper's side is the row's ``full`` config as
    written (fields it leaves unset are not compared)."""
    if scale == "full":
        return [f"{d.what}: {d.here} (paper: {d.paper})" for d in spec.departures_for(row, scale)]
    here = dict(run_config) if run_config else resolved_config(row.run_config(scale))
    paper = row.full.model_dump(exclude_none=True) if row.full is not None else {}
    out: list[str] = []
    if here.get("dataset") != paper.get("dataset"):
        ds = here.get("dataset")
        what = DATASETS.get(ds, ds)
        if ds == "synth":
            classes = classes_of(here)
            what = f"synthetic {here.get('preset') or 'mini'} benchmark" + (f" ({classes} classes)" if classes else "")
        target = DATASETS.get(paper.get("dataset"), paper.get("dataset"))
        out.append(f"data: {what}" + (f" for {target}" if target else ""))
    shown = {k: paper.get(k, here.get(k)) for k in ("frames", "step", "size")}
    if any(here.get(k) != shown[k] for k in shown) and _clip(here):
        out.append(f"{_clip(here)} (paper: {_clip(shown) or 'not stated'})")
    paper_args = {**(row.model.args if row.model else {}), **paper.get("model_args", {})}
    here_args = {**(row.model.args if row.model else {}), **here.get("model_args", {})}
    fractional = all(isinstance(a.get("width", 1), (int, float)) and a.get("width", 1) <= 1
                     for a in (here_args, paper_args))  # a width multiplier, not a channel count
    if fractional and _width(here_args) != _width(paper_args):
        out.append(f"width {_width(here_args)} (paper: {_width(paper_args)})")
    for key in sorted(set(here_args) - {"num_classes"} - ({"width"} if fractional else set())):
        if here_args[key] != paper_args.get(key):
            out.append(f"model {key}={here_args[key]} (paper: {paper_args.get(key, 'default')})")
    train_keys = ("epochs", "optimizer", "lr", "batch_size")
    paper_train = {k: paper[k] for k in train_keys if k in paper}
    if paper_train and _training(here) and any(here.get(k) != v for k, v in paper_train.items()):
        out.append(f"{_training(here)} (paper: {_training(paper_train)})")
    views = lambda c: f"{c.get('test_clips')} clips × {c.get('test_crops')} crops"  # noqa: E731
    if paper.get("test_clips") and (here.get("test_clips"), here.get("test_crops")) != (
            paper.get("test_clips"), paper.get("test_crops")):
        out.append(f"test {views(here)} (paper: {views(paper)})")
    if here.get("flow") != paper.get("flow") and (here.get("flow") or paper.get("flow")):
        name = lambda f: FLOWS.get(f, f) if f else "none"  # noqa: E731
        out.append(f"flow: {name(here.get('flow'))} (paper: {name(paper.get('flow'))})")
    out += [f"{d.what}: {d.here} (paper: {d.paper})" for d in spec.departures_for(row, scale)]
    return out
