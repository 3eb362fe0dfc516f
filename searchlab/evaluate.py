"""`python -m searchlab.evaluate BUNDLE --manifest M`: a bundle's figures, measured again from the videos.

Decodes every video of a split the way the trial's evaluation did (the bundle's own data settings:
T TSN-sampled frames, short side, centre crop, K clips), runs the bundle's inference path (per frame
only what its decisions chose; skipped frames run nothing) and prints accuracy, GFLOPs per video
from the decisions taken (mean, p5, p95), memory and decision usage, next to the figures on the
bundle's card.

A trial records its final metrics with its method's same measurement (``Method.bundle.measure``:
``searchlab.train.evaluate.video_outputs`` priced by the method's cost model), on the same decoded
clips, one video per batch, so the figures do not depend on batch composition or worker count: a
bundle's card and this command agree exactly.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from searchlab.cli import command_parser
from searchlab.data.manifest import read_manifest
from searchlab.methods import get_method
from searchlab.train.evaluate import eval_dataset, uses_map

__all__ = ["main"]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = command_parser("searchlab.evaluate", description=(
        "Re-evaluate a deployable bundle from the videos themselves: decoding, the bundle's preprocessing "
        "and its inference path; prints accuracy, GFLOPs mean/p5/p95, memory and decision usage beside the "
        "bundle's card."),
        examples=["python -m searchlab.evaluate runs/bundle --manifest runs/data/synthetic/manifest.parquet",
                  "python -m searchlab.evaluate runs/bundle --manifest data/anet/manifest.parquet --device cuda --json"])
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
    except (FileNotFoundError, ValueError) as error:  # BundleError and ManifestError are ValueErrors
        print(f"error: {error}", file=sys.stderr)
        return 2
    count = len(dataset) // dataset.views_per_video
    metrics = get_method(config.method).bundle.measure(
        deployed, dataset, device=torch.device(args.device), loader_workers=args.workers,
        multi_label=uses_map(config.data.metric, manifest_multi_label=manifest.multi_label))
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
