"""VA-RED²'s recorded figures, measured by its inference path on the decoded evaluation clips.

The dynamic network is scored with ``VaredNetwork.infer`` (each gated layer computes only the
alternatives its gate weighted above zero) through the shared ``video_outputs`` (one video's views
per batch), and priced per clip by the cost model from the gate weights actually used
(``VaredCosts.clip_gflops``): a video's GFLOPs are the sum over its views. The metric contract every
method records (accuracy, map/top1, gflops, gflops_p5/p95, memory_mb, usage, usage_per_class) gains
``gflops_min``/``gflops_max`` (the thesis reports the spread of per-video cost). "usage" is the share
of gated layers whose largest computed alternative was each (temporal, channel) pair.

Networks without a decision (the base network, or the dynamic one with every gate forced to one
alternative) are scored by ``fixed_metrics``: their cost is the same for every clip.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from searchlab import flops
from searchlab.config import DataConfig
from searchlab.data.manifest import Manifest
from searchlab.data.video import VideoClipDataset
from searchlab.methods.vared.costs import VaredCosts, vared_costs
from searchlab.methods.vared.network import GateDecisions, VaredNetwork
from searchlab.train.evaluate import (
    check_eval_mode, collect, eval_dataset, gathered, per_video, policy_metrics, score_metrics, uses_map,
    video_outputs, video_outputs_each,
)
from searchlab.train.loader import EpochSampler, make_loader
from searchlab.train.worker import Worker

__all__ = ["computed_alternatives", "evaluate_inference", "fixed_metrics", "inference_metrics", "measure_bundle",
           "measure_curve", "vared_price"]


def computed_alternatives(decisions: GateDecisions) -> Tensor:
    """Per clip, how many gated layers computed each (temporal, channel) pair as their largest
    alternative (N, S_t·S_c), temporal-major as ``VaredConfig.alternative_names``. A layer whose
    weights are all zero in a dimension (``zero_gate: zero``) computed nothing and is not counted."""
    temporal_on, channel_on = decisions.temporal > 0, decisions.channel > 0
    n, layers, s_t = temporal_on.shape
    s_c = channel_on.shape[2]
    # the largest alternative is the first one on: index 0 is the full cost, larger indices cheaper
    t_index, c_index = temporal_on.int().argmax(dim=2), channel_on.int().argmax(dim=2)
    computed = temporal_on.any(dim=2) & channel_on.any(dim=2)
    pair = (t_index * s_c + c_index)[computed]
    rows = torch.arange(n).unsqueeze(1).expand(n, layers)[computed]
    counts = torch.zeros(n, s_t * s_c, dtype=torch.float64)
    counts.index_put_((rows, pair), torch.ones(len(pair), dtype=torch.float64), accumulate=True)
    return counts


def vared_price(costs: VaredCosts) -> Callable[[GateDecisions], dict[str, np.ndarray]]:
    """GFLOPs of each clip from the gate weights it used, and its layers' computed alternatives."""

    def price(decisions: GateDecisions) -> dict[str, np.ndarray]:
        return {"gflops": np.asarray(costs.clip_gflops(decisions), dtype=np.float64),
                "usage": computed_alternatives(decisions).numpy()}

    return price


def inference_metrics(
    outputs: Mapping[str, Tensor], *, alternative_names: Sequence[str], class_names: Sequence[str],
    multi_label: bool, memory_mb: float,
) -> dict[str, Any]:
    """The metric contract from ``video_outputs`` (a video's views: scores averaged, costs summed)."""
    videos = per_video(outputs, mean=("scores",), total=("gflops", "usage"))
    metrics = policy_metrics(videos, action_names=alternative_names, skip_actions=[], class_names=class_names,
                             multi_label=multi_label)
    summary = flops.summarize_gflops(videos["gflops"].numpy())
    return {**metrics, "gflops_min": summary["min"], "gflops_max": summary["max"], "memory_mb": memory_mb}


def evaluate_inference(
    model: VaredNetwork, *, worker: Worker, data: DataConfig, manifest: Manifest, root: Path,
    alternative_names: Sequence[str], seed: int, split: str = "val",
) -> dict[str, Any]:
    """Every rank scores its share of ``split``'s videos with the inference path; all ranks get the
    metrics of the whole split. ``model`` must be in eval mode on ``worker.device``."""
    costs = vared_costs(model)
    dataset = eval_dataset(data, manifest=manifest, root=root, split=split, seed=seed)
    videos = range(worker.rank, len(dataset) // dataset.views_per_video, worker.world_size)
    local = video_outputs(model, dataset, videos=videos, price=vared_price(costs), mode=None, seed=seed,
                          device=worker.device, loader_workers=data.loader_workers)
    return inference_metrics(gathered(worker, local), alternative_names=alternative_names,
                             class_names=manifest.class_names,
                             multi_label=uses_map(data.metric, manifest_multi_label=manifest.multi_label),
                             memory_mb=costs.memory_mb)


def fixed_metrics(
    model: torch.nn.Module, *, worker: Worker, data: DataConfig, manifest: Manifest, root: Path, seed: int,
    clip_gflops: float, batch_size: int, split: str = "val",
) -> dict[str, float]:
    """Accuracy of a network whose every clip costs ``clip_gflops`` (the base network, or the dynamic
    one with its gates forced), and its GFLOPs per video (that cost × the video's views: K clips × crops)."""
    check_eval_mode(model)
    dataset = eval_dataset(data, manifest=manifest, root=root, split=split, seed=seed)
    sampler = EpochSampler(len(dataset), rank=worker.rank, world_size=worker.world_size, shuffle=False, seed=seed)
    loader = make_loader(dataset, sampler=sampler, batch_size=batch_size, workers=0,
                         pin_memory=worker.device.type == "cuda")

    def score(batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"scores": model(batch["frames"].to(worker.device)).softmax(-1), "label": batch["label"],
                "target": batch["target"], "index": batch["index"]}

    videos = per_video(collect(worker, loader, score), mean=("scores",))
    multi_label = uses_map(data.metric, manifest_multi_label=manifest.multi_label)
    return {**score_metrics(videos, key="scores", multi_label=multi_label),
            "gflops": clip_gflops * dataset.views_per_video}


def measure_bundle(deployed: Any, dataset: VideoClipDataset, *, device: torch.device, loader_workers: int,
                   multi_label: bool) -> dict[str, Any]:
    """Every video of ``dataset`` through a deployed VA-RED²'s inference path (``Method.bundle.measure``)."""
    return measure_curve(deployed, dataset, cost_biases=[deployed.config.inference.cost_bias], device=device,
                         loader_workers=loader_workers, multi_label=multi_label)[0]


def measure_curve(deployed: Any, dataset: VideoClipDataset, *, cost_biases: Sequence[float], device: torch.device,
                  loader_workers: int, multi_label: bool) -> list[dict[str, Any]]:
    """``measure_bundle`` at each operating point ``inference.cost_bias`` of ``cost_biases`` (an offset on
    every gate), each video decoded once; the model is left at its own operating point."""
    model = deployed.model
    costs = vared_costs(model)
    settings = [functools.partial(model.set_cost_bias, bias) for bias in cost_biases]
    try:
        each = video_outputs_each(model, dataset, settings=settings, videos=range(len(dataset) // dataset.views_per_video),
                                  price=vared_price(costs), mode=None, seed=deployed.config.seed, device=device,
                                  loader_workers=loader_workers)
    finally:
        model.set_cost_bias(deployed.config.inference.cost_bias)
    return [inference_metrics(outputs, alternative_names=deployed.vared.alternative_names(),
                              class_names=deployed.class_names, multi_label=multi_label, memory_mb=costs.memory_mb)
            for outputs in each]
