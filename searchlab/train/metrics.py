"""Accuracy metrics of video recognition: mAP (multi-label sets) and top-1 (trimmed sets).

Pure torch, so evaluation runs the same on every rank and in tests. Which one is the headline
``accuracy`` depends on the data set (METHODS.md §4): untrimmed, multi-label sets (ActivityNet,
FCVID, Mini-Sports1M) are scored by mAP, trimmed single-label sets by top-1. The metric names and
their directions are the reporting contract of ``searchlab.objectives`` (re-exported here as
``METRICS``, the name docs/architecture.md gives).
"""

from __future__ import annotations

import torch
from torch import Tensor

from searchlab.objectives import METRICS

__all__ = ["METRICS", "accuracy_metrics", "average_precision", "mean_average_precision", "top1_accuracy"]


def average_precision(scores: Tensor, positives: Tensor) -> float:
    """AP of one class: mean of the precision at the rank of every positive, scores descending.

    ``scores`` (N,) float, ``positives`` (N,) bool. Ties are broken by the original order (a stable
    sort), so the value is deterministic. Raises ValueError when the class has no positive: its AP
    is undefined and the caller decides whether to skip it.
    """
    if scores.shape != positives.shape or scores.dim() != 1:
        raise ValueError(f"scores {tuple(scores.shape)} and positives {tuple(positives.shape)} must be equal 1-D")
    count = int(positives.sum())
    if count == 0:
        raise ValueError("average_precision: the class has no positive example; AP is undefined")
    order = torch.sort(scores, descending=True, stable=True).indices
    hits = positives[order].double()
    precision_at_rank = hits.cumsum(0) / torch.arange(1, len(hits) + 1, dtype=torch.float64)
    return float((precision_at_rank * hits).sum() / count)


def mean_average_precision(scores: Tensor, targets: Tensor) -> float:
    """mAP: mean over classes of the AP of that class's scores over all videos.

    ``scores`` (N, C), ``targets`` (N, C) multi-hot. Classes without any positive in ``targets``
    are left out of the mean (their AP is undefined; on a small eval split some classes may be
    absent). Raises ValueError if no class has a positive.
    """
    if scores.shape != targets.shape or scores.dim() != 2:
        raise ValueError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must both be (N, C)")
    positives = targets > 0.5
    present = [c for c in range(scores.shape[1]) if bool(positives[:, c].any())]
    if not present:
        raise ValueError("mean_average_precision: no class has a positive example in targets")
    return sum(average_precision(scores[:, c], positives[:, c]) for c in present) / len(present)


def top1_accuracy(scores: Tensor, labels: Tensor) -> float:
    """Fraction of videos whose highest score is their label; ``scores`` (N, C), ``labels`` (N,)."""
    if scores.dim() != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(f"scores must be (N, C) and labels (N,), got {tuple(scores.shape)} and {tuple(labels.shape)}")
    if len(labels) == 0:
        raise ValueError("top1_accuracy needs at least one video")
    return float((scores.argmax(dim=1) == labels).double().mean())


def accuracy_metrics(*, scores: Tensor, labels: Tensor, targets: Tensor, multi_label: bool) -> dict[str, float]:
    """``accuracy`` plus the specific metric it is: ``map`` when ``multi_label`` else ``top1``."""
    if multi_label:
        value = mean_average_precision(scores.float(), targets.float())
        return {"accuracy": value, "map": value}
    value = top1_accuracy(scores, labels)
    return {"accuracy": value, "top1": value}
