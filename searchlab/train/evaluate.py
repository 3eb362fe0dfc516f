"""Evaluation of the three stages: accuracy, GFLOPs from the decisions taken, memory, action usage.

Every rank scores its share of the evaluation items (``EpochSampler(shuffle=False)``); the per-item
outputs are gathered to every rank and combined per video (the K clips of multi-clip evaluation
are averaged). Scores are softmax probabilities, so averaging clips and ranking videos for mAP use
comparable numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from searchlab import flops
from searchlab.train.metrics import accuracy_metrics
from searchlab.train.worker import Worker, gather_objects

__all__ = ["collect", "decision_bits", "per_video", "policy_metrics", "score_metrics", "uniform_metrics", "uses_map"]

Batch = Mapping[str, Tensor]


def uses_map(metric: str, *, manifest_multi_label: bool) -> bool:
    """Whether ``accuracy`` is mAP: ``data.metric`` "map"/"top1", or "auto" = the manifest decides."""
    return metric == "map" or (metric == "auto" and manifest_multi_label)


@torch.no_grad()
def collect(worker: Worker, batches: Iterable[Batch], fn: Callable[[Batch], dict[str, Tensor]]) -> dict[str, Tensor]:
    """Concatenate ``fn(batch)`` (CPU tensors, first dim = items) over batches and over every rank."""
    parts: dict[str, list[Tensor]] = {}
    for batch in batches:
        for key, value in fn(batch).items():
            parts.setdefault(key, []).append(value.detach().cpu())
    local = {key: torch.cat(values) for key, values in parts.items()}
    gathered = [part for part in gather_objects(worker, local) if part]
    return {key: torch.cat([part[key] for part in gathered]) for key in gathered[0]}


def per_video(outputs: Mapping[str, Tensor], *, mean: Sequence[str] = (), total: Sequence[str] = ()) -> dict[str, Tensor]:
    """One row per video ``index``: ``mean`` keys averaged over its clips, ``total`` keys summed,
    ``label``/``target`` taken from its first clip."""
    videos, inverse = torch.unique(outputs["index"], return_inverse=True)
    counts = torch.zeros(len(videos)).index_add_(0, inverse, torch.ones(len(inverse)))
    first = torch.full((len(videos),), len(inverse), dtype=torch.long).scatter_reduce_(
        0, inverse, torch.arange(len(inverse)), reduce="amin"
    )
    out: dict[str, Tensor] = {"index": videos, "label": outputs["label"][first], "target": outputs["target"][first]}
    for key in (*mean, *total):
        value = outputs[key].double()
        summed = torch.zeros(len(videos), *value.shape[1:], dtype=torch.float64).index_add_(0, inverse, value)
        out[key] = summed / counts.view(-1, *[1] * (value.dim() - 1)) if key in mean else summed
    return out


def score_metrics(videos: Mapping[str, Tensor], *, key: str, multi_label: bool) -> dict[str, float]:
    """``accuracy`` and ``map``/``top1`` of the per-video scores ``videos[key]``."""
    return accuracy_metrics(
        scores=videos[key].float(), labels=videos["label"], targets=videos["target"], multi_label=multi_label
    )


def uniform_metrics(
    videos: Mapping[str, Tensor],
    *,
    bit_widths: Sequence[int],
    cost_table: Mapping[int, float],
    frames: int,
    multi_label: bool,
) -> dict[str, dict[str, float]]:
    """Stage 1's uniform baselines: accuracy and GFLOPs per video with every frame at b bits."""
    return {
        str(bits): {
            **score_metrics(videos, key=f"scores_{bits}", multi_label=multi_label),
            "gflops": frames * cost_table[bits],
        }
        for bits in bit_widths
    }


def policy_metrics(
    videos: Mapping[str, Tensor],
    *,
    decision_space: Sequence[int],
    class_names: Sequence[str],
    multi_label: bool,
) -> dict[str, Any]:
    """Stage 2's metrics from per-video ``scores``, ``gflops`` and ``usage`` (|Ω| action counts)."""
    summary = flops.summarize_gflops(videos["gflops"].numpy())
    counts = videos["usage"]  # (V, |Ω|) frames per action, summed over a video's clips
    overall = counts.sum(dim=0) / counts.sum()
    per_class: dict[str, dict[str, float]] = {}
    labels = videos["label"]
    for c, name in enumerate(class_names):
        rows = counts[labels == c]
        if len(rows):
            share = rows.sum(dim=0) / rows.sum()
            per_class[name] = {str(b): float(share[k]) for k, b in enumerate(decision_space)}
    skip = float(overall[list(decision_space).index(0)]) if 0 in decision_space else 0.0
    return {
        **score_metrics(videos, key="scores", multi_label=multi_label),
        "gflops": summary["mean"],
        "gflops_p5": summary["p5"],
        "gflops_p95": summary["p95"],
        "skip_fraction": skip,
        "usage": {str(b): float(overall[k]) for k, b in enumerate(decision_space)},
        "usage_per_class": per_class,
    }


def decision_bits(actions: Tensor, *, decision_space: Sequence[int]) -> np.ndarray:
    """Chosen bit-widths (N, T) int64 (0 = skip) from one-hot actions (N, T, |Ω|)."""
    table = torch.tensor(list(decision_space), dtype=torch.int64)
    return table[actions.argmax(dim=-1).cpu()].numpy()
