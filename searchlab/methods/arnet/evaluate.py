"""AR-Net's recorded figures, measured by its inference path on the decoded evaluation clips.

``video_outputs`` scores one video per batch (its K clips) with ``ARNet.infer``, a "sample"-mode
policy drawing from a generator seeded by (seed, video), so a video's figures do not depend on batch
composition, worker count or what ran before: reloading the published weights and evaluating again
gives exactly the recorded numbers. ``inference_metrics`` turns the outputs into the metric
contract VideoIQ's stage 2 records (accuracy, map/top1, gflops, gflops_p5/p95, memory_mb,
skip_fraction, usage, usage_per_class), plus ``gflops_paper`` (the paper's formula).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from searchlab import flops
from searchlab.config import DataConfig
from searchlab.data.manifest import Manifest
from searchlab.data.video import VideoClipDataset
from searchlab.evaluate import check_eval_mode, eval_dataset
from searchlab.methods.arnet.costs import ARNetCosts, arnet_costs
from searchlab.methods.arnet.model import ARNet
from searchlab.train.evaluate import per_video, score_metrics, uses_map
from searchlab.train.worker import Worker, gather_objects

__all__ = ["evaluate_inference", "inference_metrics", "video_outputs"]


@torch.no_grad()
def video_outputs(
    model: ARNet,
    dataset: VideoClipDataset,
    *,
    videos: Sequence[int],
    costs: ARNetCosts,
    mode: str,
    seed: int,
    device: torch.device,
    loader_workers: int = 0,
) -> dict[str, Tensor]:
    """Per-clip ``scores`` (softmax), ``gflops``, ``gflops_paper``, ``usage`` (slots per action),
    ``label``, ``target``, ``index`` of the given videos (rows of the split)."""
    check_eval_mode(model)
    clips = dataset.num_clips
    batches = [[video * clips + k for k in range(clips)] for video in videos]
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=loader_workers)
    parts: dict[str, list[Tensor]] = {}
    for video, batch in zip(videos, loader):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1_000_003 + video)
            logits, actions = model.infer(batch["frames"].to(device), mode=mode)
        outputs = {"scores": logits.softmax(dim=-1), "gflops": torch.from_numpy(costs.video_gflops(actions)),
                   "gflops_paper": torch.from_numpy(costs.paper_video_gflops(actions)), "usage": actions.sum(dim=1),
                   "label": batch["label"], "target": batch["target"], "index": batch["index"]}
        for key, value in outputs.items():
            parts.setdefault(key, []).append(value.detach().cpu())
    return {key: torch.cat(values) for key, values in parts.items()}


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
    summary = flops.summarize_gflops(videos["gflops"].numpy())
    counts = videos["usage"]  # (V, |A|) slots per action
    overall = counts.sum(dim=0) / counts.sum()
    per_class: dict[str, dict[str, float]] = {}
    for c, name in enumerate(class_names):
        rows = counts[videos["label"] == c]
        if len(rows):
            share = rows.sum(dim=0) / rows.sum()
            per_class[name] = {action: float(share[k]) for k, action in enumerate(action_names)}
    return {
        **score_metrics(videos, key="scores", multi_label=multi_label),
        "gflops": summary["mean"],
        "gflops_p5": summary["p5"],
        "gflops_p95": summary["p95"],
        "gflops_paper": float(videos["gflops_paper"].mean()),
        "memory_mb": memory_mb,
        "skip_fraction": float(overall[list(skip_actions)].sum()) if skip_actions else 0.0,
        "usage": {action: float(overall[k]) for k, action in enumerate(action_names)},
        "usage_per_class": per_class,
    }


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
    videos = range(worker.rank, len(dataset) // dataset.num_clips, worker.world_size)
    local = video_outputs(model, dataset, videos=videos, costs=costs, mode=mode, seed=seed, device=worker.device,
                          loader_workers=data.loader_workers)
    parts = [part for part in gather_objects(worker, local) if part]
    outputs = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
    return inference_metrics(outputs, action_names=action_names, skip_actions=list(model.layout.skip_indices()),
                             class_names=manifest.class_names,
                             multi_label=uses_map(data.metric, manifest_multi_label=manifest.multi_label),
                             memory_mb=costs.memory_mb)
