"""`python -m searchlab.evaluate BUNDLE --manifest M`: a bundle's figures, measured again from the videos.

Decodes every video of a split the way the trial's evaluation did (the bundle's own data settings:
T TSN-sampled frames, short side, centre crop, K clips), runs the bundle's inference path (the
policy decides frame by frame; each frame runs only at the precision it chose, skipped frames run
nothing) and prints accuracy, GFLOPs per video from the decisions taken (mean, p5, p95), memory and
decision usage, next to the figures on the bundle's card.

Stage 2 records a trial's final metrics with these same functions (``video_outputs`` and
``videoiq_metrics``), on the same decoded clips, one video per batch, so the figures do not depend on
batch composition or worker count: a bundle's card and this command agree exactly.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from searchlab import flops
from searchlab.config import DataConfig
from searchlab.data.manifest import Manifest, ManifestError, read_manifest
from searchlab.data.video import VideoClipDataset
from searchlab.models import VideoIQ
from searchlab.train.evaluate import decision_bits, per_video, policy_metrics, uses_map
from searchlab.train.loader import clip_dataset

__all__ = ["VideoIQCosts", "eval_dataset", "main", "video_outputs", "videoiq_costs", "videoiq_metrics"]


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


def eval_dataset(data: DataConfig, *, manifest: Manifest, root: Path, split: str, seed: int) -> VideoClipDataset:
    """The evaluation clips of ``split`` (centre crops, ``data.eval_clips`` clips per video)."""
    return clip_dataset(data, manifest=manifest, root=root, split=split, train=False, seed=seed)


@torch.no_grad()
def video_outputs(
    model: VideoIQ,
    dataset: VideoClipDataset,
    *,
    videos: Sequence[int],
    costs: VideoIQCosts,
    mode: str,
    seed: int,
    device: torch.device,
    loader_workers: int = 0,
) -> dict[str, Tensor]:
    """Per-clip outputs of the given videos (rows of the split): ``scores`` (softmax), ``gflops``,
    ``usage`` (frames per action), ``label``, ``target``, ``index``.

    Each video's K clips form one batch, and a "sample"-mode policy draws from a generator seeded
    by (seed, video), so a video's outputs are the same whichever process scores it with whatever
    others. The model must be in eval mode (a bundle's is; ``check_eval_mode`` says what is not).
    """
    check_eval_mode(model)
    clips = dataset.num_clips
    batches = [[video * clips + k for k in range(clips)] for video in videos]
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=loader_workers)
    parts: dict[str, list[Tensor]] = {}
    for video, batch in zip(videos, loader):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1_000_003 + video)
            logits, actions = model.infer(batch["frames"].to(device), mode=mode)
        bits = decision_bits(actions, decision_space=model.decision_space)
        gflops = flops.video_gflops(bits, cost_table=costs.action_gflops,
                                    policy_gflops_per_frame=costs.policy_gflops_per_frame)
        outputs = {"scores": logits.softmax(dim=-1), "gflops": torch.from_numpy(gflops), "usage": actions.sum(dim=1),
                   "label": batch["label"], "target": batch["target"], "index": batch["index"]}
        for key, value in outputs.items():
            parts.setdefault(key, []).append(value.detach().cpu())
    return {key: torch.cat(values) for key, values in parts.items()}


def check_eval_mode(model: nn.Module) -> None:
    """Evaluation with dropout or batch statistics would describe no model that anyone can load."""
    training = [name or "(root)" for name, module in model.named_modules() if module.training]
    if training:
        raise RuntimeError(f"evaluation needs the model in eval mode; in training mode: {training[:5]}")


def videoiq_metrics(
    outputs: Mapping[str, Tensor],
    *,
    decision_space: Sequence[int],
    class_names: Sequence[str],
    multi_label: bool,
    memory_mb: float,
) -> dict[str, Any]:
    """Accuracy, GFLOPs per video (its clips summed), memory and usage from ``video_outputs``."""
    videos = per_video(outputs, mean=("scores",), total=("gflops", "usage"))
    metrics = policy_metrics(videos, decision_space=decision_space, class_names=class_names, multi_label=multi_label)
    metrics["memory_mb"] = memory_mb
    return metrics


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m searchlab.evaluate",
        description="Re-evaluate a deployable bundle from the videos themselves: decoding, the bundle's "
                    "preprocessing and its inference path; prints accuracy, GFLOPs mean/p5/p95, memory and "
                    "decision usage beside the bundle's card.",
        epilog="example: python -m searchlab.evaluate runs/bundle --manifest runs/data/synthetic/manifest.parquet",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("bundle", help="bundle folder written by `python -m searchlab.pick`")
    parser.add_argument("--manifest", required=True, help="Parquet manifest of the videos")
    parser.add_argument("--root", default=None, help="folder the manifest's paths are relative to (default: its folder)")
    parser.add_argument("--split", default="val", help="split of the manifest to evaluate")
    parser.add_argument("--workers", type=int, default=2, help="video decoding processes")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.workers < 0:
        parser.error(f"--workers {args.workers} must be >= 0")
    return args


def _report(metrics: Mapping[str, Any], card: Mapping[str, Any], *, videos: int, split: str) -> str:
    usage = ", ".join(f"{action}: {share:.1%}" for action, share in metrics["usage"].items())
    card_usage = ", ".join(f"{action}: {share:.1%}" for action, share in card.get("action_usage", {}).items())
    rows = [
        ("accuracy", f"{metrics['accuracy']:.4f}", f"{card.get('accuracy', float('nan')):.4f}"),
        ("GFLOPs per video, mean", f"{metrics['gflops']:.4f}", f"{card.get('gflops_mean', float('nan')):.4f}"),
        ("GFLOPs per video, p5", f"{metrics['gflops_p5']:.4f}", f"{card.get('gflops_p5', float('nan')):.4f}"),
        ("GFLOPs per video, p95", f"{metrics['gflops_p95']:.4f}", f"{card.get('gflops_p95', float('nan')):.4f}"),
        ("memory (MiB)", f"{metrics['memory_mb']:.2f}", f"{card.get('memory_mb', float('nan')):.2f}"),
        ("decision usage", usage, card_usage),
    ]
    width = max(len(name) for name, _, _ in rows)
    lines = [f"{videos} videos of split {split!r}", f"{'':{width}}  {'measured':<32} card"]
    lines += [f"{name:{width}}  {value:<32} {on_card}" for name, value, on_card in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    from searchlab.deploy import BundleError, load  # after parsing: --help needs no torch model code

    try:
        deployed = load(args.bundle, device=args.device)
        root = Path(args.root) if args.root else Path(args.manifest).parent
        manifest = read_manifest(args.manifest, data_root=root)
        if tuple(manifest.class_names) != deployed.class_names:
            raise BundleError(f"{args.manifest} has classes {list(manifest.class_names)[:5]}... but the bundle was "
                              f"trained on {list(deployed.class_names)[:5]}...; evaluate on the data set it was trained on")
        config = deployed.config
        dataset = eval_dataset(config.data, manifest=manifest, root=root, split=args.split, seed=config.seed)
    except (BundleError, ManifestError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    model = deployed.model
    costs = videoiq_costs(model, backbone=config.model.backbone, size=config.data.crop_size)
    count = len(dataset) // dataset.num_clips
    outputs = video_outputs(model, dataset, videos=range(count), costs=costs, mode=config.stage2.eval_mode,
                            seed=config.seed, device=torch.device(args.device), loader_workers=args.workers)
    metrics = videoiq_metrics(outputs, decision_space=model.decision_space, class_names=deployed.class_names,
                              multi_label=uses_map(config.data.metric, manifest_multi_label=manifest.multi_label),
                              memory_mb=costs.memory_mb)
    stats = dataset.failure_stats()
    if args.json:
        print(json.dumps({"videos": count, "split": args.split, "failed_reads": stats.failures,
                          **{k: v for k, v in metrics.items() if k != "usage_per_class"}}, indent=2))
    else:
        print(_report(metrics, deployed.card, videos=count, split=args.split))
        if stats.failures:
            print(f"note: {stats.failures} reads failed and were replaced by other videos: {list(stats.failed_files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
