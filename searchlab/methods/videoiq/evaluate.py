"""VideoIQ's cost model and metrics from the decisions its inference path took (METHODS.md §1).

Stage 2 records a trial's final metrics with these functions (``searchlab.train.evaluate.
video_outputs`` priced by ``videoiq_price``, then ``videoiq_metrics``), on the decoded evaluation
clips, one video per batch; ``python -m searchlab.evaluate`` measures a bundle with the same ones,
so a bundle's card and that command agree exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from searchlab import flops
from searchlab.models import VideoIQ
from searchlab.train.evaluate import decision_bits, per_video, policy_metrics

__all__ = ["VideoIQCosts", "videoiq_costs", "videoiq_metrics", "videoiq_price"]


@dataclass(frozen=True)
class VideoIQCosts:
    """What a VideoIQ network's decisions cost: GFLOPs per frame of each action, the policy's GFLOPs
    per frame (it sees every frame), and the memory of its stored parameters."""

    action_gflops: dict[int, float]
    policy_gflops_per_frame: float
    memory_mb: float


def videoiq_costs(model: VideoIQ, *, backbone: str, size: int) -> VideoIQCosts:
    """Costs of ``model`` (backbone ``backbone`` at ``size`` px), counted by fvcore."""
    num_classes = model.num_classes
    policy_mb = sum(p.numel() for p in model.policy.parameters()) * 4 / 2**20
    return VideoIQCosts(
        action_gflops=flops.action_cost_table(backbone, decision_space=list(model.decision_space), size=size,
                                              num_classes=num_classes),
        policy_gflops_per_frame=flops.policy_gflops_per_frame(model.policy, size=size),
        memory_mb=flops.memory_mb(backbone, bit_widths=list(model.precisions), num_classes=num_classes) + policy_mb,
    )


def videoiq_price(costs: VideoIQCosts, *, decision_space: Sequence[int]) -> Callable[[Tensor], dict[str, np.ndarray]]:
    """GFLOPs of each clip from the actions a VideoIQ network took (``video_outputs``'s ``price``)."""

    def price(actions: Tensor) -> dict[str, np.ndarray]:
        bits = decision_bits(actions, decision_space=decision_space)
        return {"gflops": flops.video_gflops(bits, cost_table=costs.action_gflops,
                                             policy_gflops_per_frame=costs.policy_gflops_per_frame)}

    return price


def videoiq_metrics(
    outputs: Mapping[str, Tensor],
    *,
    decision_space: Sequence[int],
    class_names: Sequence[str],
    multi_label: bool,
    memory_mb: float | None = None,
) -> dict[str, Any]:
    """Accuracy, GFLOPs per video (its clips summed), usage (by bit-width, "0" = skip) and, when
    given, the memory of the stored parameters."""
    videos = per_video(outputs, mean=("scores",), total=("gflops", "usage"))
    space = list(decision_space)
    metrics = policy_metrics(videos, action_names=[str(b) for b in space],
                             skip_actions=[space.index(0)] if 0 in space else [], class_names=class_names,
                             multi_label=multi_label)
    if memory_mb is not None:
        metrics["memory_mb"] = memory_mb
    return metrics
