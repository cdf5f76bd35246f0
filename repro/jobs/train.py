"""The ``train`` job's declaration: train a row's model as its spec says, report its accuracy.

The work is done by :func:`repro.engine.job.train_job` (imported when the job runs).
"""
from __future__ import annotations

from pathlib import Path

from repro.jobs.base import Job, JobContext, JobOutput, NotRunnable

__all__ = ["TRAIN", "TRAIN_KEYS"]

#: Metrics the train job reports (``measure: "train:<key>"``), percent except ``epe`` (pixels).
TRAIN_KEYS = ("top1", "top5", "avg_top1_top5", "mean_class_acc", "epe")
#: Keys specs name that no run measures yet: accuracy of one row fine-tuned on several datasets
#: (``top1@ucf101``, LGD Table 6) and detection video-mAP (``video_map@jhmdb_iou0.2``, LGD Table 7).
PLANNED_KEYS = ("top1@*", "video_map@*")


def _needs(row, scale: str) -> str | None:
    if row.model is None:
        return row.needs or "no model named"
    if row.run_config(scale) is None:
        return row.needs or f"no '{scale}' configuration in the spec"
    return None


def _data_needs(row, scale: str, data_dir: Path) -> str | None:
    """What the data in ``data_dir`` lacks for this row's run to start: the dataset folder, its
    split files and videos, the pre-computed flow the model takes, the ImageNet init file."""
    from repro.data.synth import PRESETS
    from repro.spec.schema import resolved_config

    cfg = row.run_config(scale)
    if cfg.dataset == "synth" and resolved_config(cfg)["preset"] in PRESETS:
        return None  # generated, and its flow computed into the cache, on first use (no torch for `list`)
    from repro.engine.data import data_missing
    from repro.engine.job import imagenet_file, row_takes_flow

    if cfg.dataset == "synth":  # a custom preset: its folder must exist
        return data_missing(cfg, data_dir)
    try:
        imagenet_file(cfg)
    except NotRunnable as e:
        return str(e)
    return data_missing(cfg, data_dir, wants_flow=row_takes_flow(row, cfg))


def _run(ctx: JobContext) -> JobOutput:
    from repro.engine.job import train_job

    return train_job(ctx)


TRAIN = Job(name="train", keys=TRAIN_KEYS, scales=("mini", "small", "full"), reads_data=True, needs=_needs, run=_run,
            planned=PLANNED_KEYS, data_needs=_data_needs,
            doc="train and evaluate the row's model at the scale asked for (mean over the run's seeds)")
