"""AR-Net's recorded figures, measured by its inference path on the decoded evaluation clips.

The shared evaluation (``searchlab.train.evaluate.video_outputs``) scores one video per batch (its K
clips) with ``ARNet.infer``, a "sample"-mode policy drawing from a generator seeded by (seed, video),
so a video's figures do not depend on batch composition, worker count or what ran before: reloading
the published weights and evaluating again gives exactly the recorded numbers. ``arnet_price`` is
AR-Net's part: what the decisions cost; ``inference_metrics`` adds ``gflops_paper`` (the paper's
formula) to the metric contract every method records (accuracy, map/top1, gflops, gflops_p5/p95,
memory_mb, skip_fraction, usage, usage_per_class).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from searchlab.config import DataConfig
from searchlab.data.manifest import Manifest
from searchlab.data.video import VideoClipDataset
from searchlab.methods.arnet.costs import ARNetCosts, arnet_costs
from searchlab.methods.arnet.model import ARNet
from searchlab.train.evaluate import (
    eval_dataset, gathered, per_video, policy_metrics, uses_map, video_outputs, video_outputs_each,
)
from searchlab.train.worker import Worker

__all__ = ["arnet_price", "evaluate_inference", "inference_metrics", "measure_bundle", "measure_curve"]


def arnet_price(costs: ARNetCosts) -> Callable[[Tensor], dict[str, np.ndarray]]:
    """GFLOPs of each clip from the actions taken: what the inference path runs, and the paper's formula."""

    def price(actions: Tensor) -> dict[str, np.ndarray]:
        return {"gflops": costs.video_gflops(actions), "gflops_paper": costs.paper_video_gflops(actions)}

    return price


def inference_metrics(
    outputs: Mapping[str, Tensor],
    *,
    action_names: Sequence[str],
    skip_actions: Sequence[int],
    class_names: Sequence[str],
    multi_label: bool,
    memory_mb: float,
) -> dict[str, Any]:
    """The metric contract from ``video_outputs`` (a video's clips: scores averaged, costs summed)."""
    videos = per_video(outputs, mean=("scores",), total=("gflops", "gflops_paper", "usage"))
    metrics = policy_metrics(videos, action_names=action_names, skip_actions=skip_actions,
                             class_names=class_names, multi_label=multi_label)
    return {**metrics, "gflops_paper": float(videos["gflops_paper"].mean()), "memory_mb": memory_mb}


def evaluate_inference(
    model: ARNet,
    *,
    worker: Worker,
    data: DataConfig,
    manifest: Manifest,
    root: Path,
    action_names: Sequence[str],
    mode: str,
    seed: int,
    split: str = "val",
) -> dict[str, Any]:
    """Every rank scores its share of ``split``'s videos with the inference path; all ranks get the
    metrics of the whole split. ``model`` must be in eval mode on ``worker.device``."""
    costs = arnet_costs(model)
    dataset = eval_dataset(data, manifest=manifest, root=root, split=split, seed=seed)
    videos = range(worker.rank, len(dataset) // dataset.views_per_video, worker.world_size)
    local = video_outputs(model, dataset, videos=videos, price=arnet_price(costs), mode=mode, seed=seed,
                          device=worker.device, loader_workers=data.loader_workers)
    return inference_metrics(gathered(worker, local), action_names=action_names,
                             skip_actions=list(model.layout.skip_indices()), class_names=manifest.class_names,
                             multi_label=uses_map(data.metric, manifest_multi_label=manifest.multi_label),
                             memory_mb=costs.memory_mb)


def measure_bundle(deployed: Any, dataset: VideoClipDataset, *, device: torch.device, loader_workers: int,
                   multi_label: bool) -> dict[str, Any]:
    """Every video of ``dataset`` through a deployed AR-Net's inference path (``Method.bundle.measure``)."""
    return measure_curve(deployed, dataset, cost_biases=[deployed.config.inference.cost_bias], device=device,
                         loader_workers=loader_workers, multi_label=multi_label)[0]


def measure_curve(deployed: Any, dataset: VideoClipDataset, *, cost_biases: Sequence[float], device: torch.device,
                  loader_workers: int, multi_label: bool) -> list[dict[str, Any]]:
    """``measure_bundle`` at each operating point ``inference.cost_bias`` of ``cost_biases``, each video
    decoded once (``Method.bundle.measure_curve``); the model is left at its own operating point."""
    model, arnet = deployed.model, deployed.arnet
    costs = arnet_costs(model)
    settings = [functools.partial(model.set_cost_bias, bias, action_gflops=costs.action_gflops) for bias in cost_biases]
    try:
        each = video_outputs_each(model, dataset, settings=settings, videos=range(len(dataset) // dataset.views_per_video),
                                  price=arnet_price(costs), mode=arnet.eval_mode, seed=deployed.config.seed,
                                  device=device, loader_workers=loader_workers)
    finally:
        model.set_cost_bias(deployed.config.inference.cost_bias, action_gflops=costs.action_gflops)
    return [inference_metrics(outputs, action_names=arnet.action_names(),
                              skip_actions=list(model.layout.skip_indices()), class_names=deployed.class_names,
                              multi_label=multi_label, memory_mb=costs.memory_mb) for outputs in each]
