"""Evaluation of every method's stages: accuracy, GFLOPs from the decisions taken, action usage.

Every rank scores its share of the evaluation items; the per-item outputs are gathered to every rank
and combined per video (the K clips × 1 or 3 crops of multi-view evaluation: scores averaged, costs
summed, so a video's GFLOPs grow with its number of views). Scores are softmax probabilities, so
averaging views and ranking videos for mAP use comparable numbers. A dynamic
network's recorded figures come from its inference path on decoded clips (``video_outputs``, one
video per batch), priced by its method's cost model from the decisions it took.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from searchlab import flops
from searchlab.config import DataConfig
from searchlab.data.manifest import Manifest
from searchlab.data.video import VideoClipDataset
from searchlab.train.loader import clip_dataset
from searchlab.train.metrics import accuracy_metrics
from searchlab.train.worker import Worker, gather_objects

__all__ = [
    "check_eval_mode",
    "collect",
    "decision_bits",
    "eval_dataset",
    "gathered",
    "per_video",
    "policy_metrics",
    "score_metrics",
    "uniform_metrics",
    "uses_map",
    "video_outputs",
    "video_outputs_each",
]

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
    action_names: Sequence[str],
    skip_actions: Sequence[int],
    class_names: Sequence[str],
    multi_label: bool,
) -> dict[str, Any]:
    """A dynamic network's metrics from per-video ``scores``, ``gflops`` and ``usage`` (frames per
    action, in ``action_names`` order; ``skip_actions`` index the actions that skip a frame)."""
    summary = flops.summarize_gflops(videos["gflops"].numpy())
    counts = videos["usage"]  # (V, |actions|) frames per action, summed over a video's clips
    overall = counts.sum(dim=0) / counts.sum()
    per_class: dict[str, dict[str, float]] = {}
    labels = videos["label"]
    for c, name in enumerate(class_names):
        rows = counts[labels == c]
        if len(rows):
            share = rows.sum(dim=0) / rows.sum()
            per_class[name] = {action: float(share[k]) for k, action in enumerate(action_names)}
    return {
        **score_metrics(videos, key="scores", multi_label=multi_label),
        "gflops": summary["mean"],
        "gflops_p5": summary["p5"],
        "gflops_p95": summary["p95"],
        "skip_fraction": float(overall[list(skip_actions)].sum()) if skip_actions else 0.0,
        "usage": {action: float(overall[k]) for k, action in enumerate(action_names)},
        "usage_per_class": per_class,
    }


def check_eval_mode(model: nn.Module) -> None:
    """Evaluation with dropout or batch statistics would describe no model that anyone can load."""
    training = [name or "(root)" for name, module in model.named_modules() if module.training]
    if training:
        raise RuntimeError(f"evaluation needs the model in eval mode; in training mode: {training[:5]}")


def eval_dataset(data: DataConfig, *, manifest: Manifest, root: Path, split: str, seed: int) -> VideoClipDataset:
    """The evaluation views of ``split``: ``data.eval_clips`` clips × ``data.eval_crops`` crops per video."""
    return clip_dataset(data, manifest=manifest, root=root, split=split, train=False, seed=seed)


@torch.no_grad()
def video_outputs(
    model: nn.Module,
    dataset: VideoClipDataset,
    *,
    videos: Sequence[int],
    price: Callable[[Tensor], Mapping[str, np.ndarray]],
    mode: str | None,
    seed: int,
    device: torch.device,
    loader_workers: int = 0,
) -> dict[str, Tensor]:
    """Per-clip outputs of a dynamic network's inference path on the given videos (rows of the split):
    ``scores`` (softmax), what ``price(decisions)`` returns per clip (``gflops``, ...), ``usage``
    (decisions per action), ``label``, ``target``, ``index``. ``model.infer(frames, mode=...)``
    returns (video logits, decisions): one-hot actions (N, T, |actions|), whose sum over T is the
    usage, or anything else its ``price`` reads, which then returns ``usage`` itself (VA-RED²'s gate
    weights per layer). ``mode`` None calls ``model.infer(frames)`` (a network with one inference path).

    Each video's views (K clips × crops) form one batch, and a "sample"-mode policy draws from a
    generator seeded by (seed, video), so a video's outputs are the same whichever process scores it with whatever
    others: the figures a stage records and those ``python -m searchlab.evaluate`` measures agree.
    """
    [outputs] = video_outputs_each(model, dataset, settings=[lambda: None], videos=videos, price=price, mode=mode,
                                   seed=seed, device=device, loader_workers=loader_workers)
    return outputs


@torch.no_grad()
def video_outputs_each(
    model: nn.Module,
    dataset: VideoClipDataset,
    *,
    settings: Sequence[Callable[[], None]],
    videos: Sequence[int],
    price: Callable[[Tensor], Mapping[str, np.ndarray]],
    mode: str | None,
    seed: int,
    device: torch.device,
    loader_workers: int = 0,
) -> list[dict[str, Tensor]]:
    """``video_outputs`` at several settings of the model (e.g. the operating points of a curve), each
    video decoded once: ``settings[i]()`` puts the model into setting i before its inference, and the
    i-th outputs are exactly what ``video_outputs`` gives with the model in that setting (the same
    seeded generator per video and setting)."""
    check_eval_mode(model)
    views = dataset.views_per_video
    batches = [[video * views + k for k in range(views)] for video in videos]
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=loader_workers)
    parts: list[dict[str, list[Tensor]]] = [{} for _ in settings]
    for video, batch in zip(videos, loader):
        frames = batch["frames"].to(device)
        for setting, collected in zip(settings, parts):
            setting()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed * 1_000_003 + video)
                logits, decisions = model.infer(frames) if mode is None else model.infer(frames, mode=mode)
            priced = {k: torch.from_numpy(v) for k, v in price(decisions).items()}
            usage = priced.pop("usage") if "usage" in priced else decisions.sum(dim=1)
            outputs = {"scores": logits.softmax(dim=-1), **priced, "usage": usage, "label": batch["label"],
                       "target": batch["target"], "index": batch["index"]}
            for key, value in outputs.items():
                collected.setdefault(key, []).append(value.detach().cpu())
    return [{key: torch.cat(values) for key, values in collected.items()} for collected in parts]


def gathered(worker: Worker, local: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Every rank's ``video_outputs`` joined (each rank scored its share of the videos)."""
    parts = [part for part in gather_objects(worker, dict(local)) if part]
    return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}


def decision_bits(actions: Tensor, *, decision_space: Sequence[int]) -> np.ndarray:
    """Chosen bit-widths (N, T) int64 (0 = skip) from one-hot actions (N, T, |Ω|)."""
    table = torch.tensor(list(decision_space), dtype=torch.int64)
    return table[actions.argmax(dim=-1).cpu()].numpy()
