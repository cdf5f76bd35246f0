"""Evaluation metrics: top-1, top-5, their average, mean class accuracy, end-point error.

Everything is accumulated as *sums and counts* (a confusion matrix, a top-5 hit count, EPE
sums), never as per-process averages, so that a distributed evaluation all-reduces the sums
and gets exactly the single-process numbers (see :meth:`ClassificationMeter.all_reduce`).
Accuracies are reported in percent, as the papers print them.

* top-1 / top-5: video-level accuracy after averaging the views (clips x crops) of a video.
* ``avg_top1_top5``: the mean of the two, TrajectoryNet Table 8's Kinetics "Avg." column
  (the ActivityNet challenge convention).
* ``mean_class_acc``: the mean over classes of per-class recall (UCF101/HMDB51 papers'
  "mean class accuracy"); classes absent from the evaluation set are left out of the mean.
* EPE: mean Euclidean distance in pixels between predicted and ground-truth flow.
"""
from __future__ import annotations

import torch

from repro.engine.distributed import all_reduce_sum
from repro.ops.epe import end_point_error

__all__ = ["ClassificationMeter", "EPEMeter", "end_point_error", "topk_correct"]


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Per-sample bool: is the label among the ``k`` highest scores (``k`` capped at #classes)."""
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return (top == labels.unsqueeze(1)).any(dim=1)


class ClassificationMeter:
    """Accumulates a confusion matrix and top-5 hits for ``num_classes`` classes."""

    def __init__(self, num_classes: int):
        if num_classes < 1:
            raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)  # [true, predicted]
        self.top5_hits = torch.zeros((), dtype=torch.int64)

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """``logits (B, num_classes)`` (scores of any monotone kind), ``labels (B,)`` ints."""
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits: expected (B, {self.num_classes}), got {tuple(logits.shape)}")
        logits, labels = logits.detach().float().cpu(), labels.detach().long().cpu()
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels: expected values in [0, {self.num_classes}), got "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        pred = logits.argmax(dim=1)
        self.confusion += torch.bincount(labels * self.num_classes + pred,
                                         minlength=self.num_classes ** 2).view(self.num_classes, self.num_classes)
        self.top5_hits += topk_correct(logits, labels, 5).sum()

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    def all_reduce(self) -> None:
        """Sum the counts over all processes (call on every rank; no-op without a process group)."""
        flat = all_reduce_sum(torch.cat([self.confusion.flatten(), self.top5_hits.view(1)]))
        n2 = self.num_classes ** 2
        self.confusion = flat[:n2].view(self.num_classes, self.num_classes).clone()
        self.top5_hits = flat[n2].clone()

    def compute(self) -> dict[str, float]:
        """Metrics in percent; ``count`` is the number of evaluated videos."""
        n = self.count
        if n == 0:
            raise ValueError("no samples were evaluated")
        top1 = 100.0 * float(self.confusion.diag().sum()) / n
        top5 = 100.0 * float(self.top5_hits) / n
        per_class_total = self.confusion.sum(dim=1)
        present = per_class_total > 0
        recall = self.confusion.diag()[present].double() / per_class_total[present].double()
        return {
            "top1": top1,
            "top5": top5,
            "avg_top1_top5": (top1 + top5) / 2.0,
            "mean_class_acc": 100.0 * float(recall.mean()),
            "count": float(n),
        }


class EPEMeter:
    """Mean end-point error over all pixels of all evaluated flows (sum and count)."""

    def __init__(self) -> None:
        self.total = torch.zeros((), dtype=torch.float64)
        self.pixels = torch.zeros((), dtype=torch.int64)

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        err = end_point_error(pred.detach().cpu(), gt.detach().cpu())
        self.total += err.double().sum()
        self.pixels += err.numel()

    def all_reduce(self) -> None:
        """Sum over all processes (call on every rank; no-op without a process group)."""
        flat = all_reduce_sum(torch.stack([self.total, self.pixels.double()]))
        self.total, self.pixels = flat[0].clone(), flat[1].round().long()

    def compute(self) -> float | None:
        return float(self.total / self.pixels) if int(self.pixels) > 0 else None
