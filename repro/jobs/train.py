"""The ``train`` job's declaration: train a row's model as its spec says, report its accuracy.

The work is done by :func:`repro.engine.job.train_job` (imported when the job runs).
"""
from __future__ import annotations

from repro.jobs.base import Job, JobContext, JobOutput

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


def _run(ctx: JobContext) -> JobOutput:
    from repro.engine.job import train_job

    return train_job(ctx)


TRAIN = Job(name="train", keys=TRAIN_KEYS, scales=("mini", "small", "full"), reads_data=True, needs=_needs, run=_run,
            planned=PLANNED_KEYS,
            doc="train and evaluate the row's model at the scale asked for (mean over the run's seeds)")
