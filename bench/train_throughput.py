"""Training throughput of stage 1 and stage 2 (cached and live backbone outputs), one worker.

Runs the stages' own step functions and loaders in this process (no Ray overhead, which is a
constant per run and not throughput) on the demo configuration, and reports clips per second and
the fraction of the epoch spent waiting for the next batch (target < 10%: loading must keep up).
Networks are randomly initialised (throughput does not depend on the weights). Stage 1 and live
stage 2 run ``--epochs`` epochs, the first (DataLoader warm-up) not counted; cached stage 2 runs
``stage2.epochs`` epochs, all counted, as one trial would.

    .venv/bin/python bench/train_throughput.py [--config spaces/demo.yaml] [--set k=v ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from searchlab.config import TrialConfig, load_trial_config
from searchlab.models import create_backbone, create_teacher
from searchlab.data_check import ensure_data
from searchlab.train.backbone_cache import CachedBackboneOutputs, build_backbone_outputs
from searchlab.train.loader import EpochSampler, clip_dataset, load_manifest, make_loader
from searchlab.train.stage1 import AllPrecisions, stage1_step
from searchlab.train.stage2 import FrozenFeatures, LiveOutputs, PolicyDecisions, build_policy, policy_optimizer, stage2_step, train_mode
from searchlab.train.worker import LocalRun, run_epoch

CPU = LocalRun(tempfile.mkdtemp(prefix="searchlab-bench-")).worker()


def _artifacts(config: TrialConfig, folder: Path, num_classes: int) -> tuple[Path, Path]:
    """Random-init teacher and stage-1 artifacts (the files the cache builder reads)."""
    teacher_dir, stage1_dir = folder / "teacher", folder / "stage1"
    teacher_dir.mkdir()
    stage1_dir.mkdir()
    teacher = create_teacher(config.model.backbone, num_classes=num_classes)
    torch.save(teacher.state_dict(), teacher_dir / "teacher.pt")
    backbone = create_backbone(config.model.backbone, num_classes=num_classes, bit_widths=config.model.bit_widths,
                               alpha_init=config.stage1.alpha.init)
    backbone.load_torchvision_state_dict(teacher.state_dict())
    torch.save(backbone.state_dict(), stage1_dir / "backbone.pt")
    return teacher_dir, stage1_dir


def _measure(batches_per_epoch: Any, step: Any, *, epochs: int, skip: int) -> dict[str, float]:
    """Run ``epochs`` epochs; clips/s and data-wait fraction over all epochs after the first ``skip``."""
    runs = [run_epoch(CPU, batches_per_epoch(epoch), step) for epoch in range(epochs)][skip:]
    seconds = sum(r["epoch_seconds"] for r in runs)
    return {
        "epochs": len(runs),
        "clips_per_second": sum(r["clips_per_second"] * r["epoch_seconds"] for r in runs) / seconds,
        "data_wait_fraction": sum(r["data_wait_fraction"] * r["epoch_seconds"] for r in runs) / seconds,
    }


def bench(config: TrialConfig, *, epochs: int) -> dict[str, Any]:
    torch.manual_seed(config.seed)
    manifest, root = load_manifest(config.data)
    results: dict[str, Any] = {"threads": torch.get_num_threads(), "loader_workers": config.data.loader_workers}
    train = clip_dataset(config.data, manifest=manifest, root=root, split="train", train=True, seed=config.seed)
    sampler = EpochSampler(len(train), rank=0, world_size=1, shuffle=True, seed=config.seed)

    def clips(batch_size: int) -> Any:
        loader = make_loader(train, sampler=sampler, batch_size=batch_size, workers=config.data.loader_workers,
                             pin_memory=False)

        def epoch_batches(epoch: int) -> Any:
            sampler.set_epoch(epoch)
            train.set_epoch(epoch)
            return loader
        return epoch_batches

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        teacher_dir, stage1_dir = _artifacts(config, Path(tmp), manifest.num_classes)
        teacher = create_teacher(config.model.backbone, num_classes=manifest.num_classes).eval()
        backbone = create_backbone(config.model.backbone, num_classes=manifest.num_classes,
                                   bit_widths=config.model.bit_widths, alpha_init=config.stage1.alpha.init)
        model = AllPrecisions(backbone).train()
        optimizer = torch.optim.SGD(backbone.parameters(), lr=1e-3, momentum=0.9)
        results["stage1"] = _measure(clips(config.stage1.batch_size), lambda _, b: stage1_step(
            model=model, teacher=teacher, optimizer=optimizer, frames=b["frames"], labels=b["label"],
            kd_weight=config.stage1.kd_weight, bit_widths=backbone.bit_widths), epochs=epochs, skip=1)

        policy = build_policy(config, teacher_dir=teacher_dir)
        policy_opt = policy_optimizer(policy, config=config)
        train_mode(policy, config=config)
        decisions = PolicyDecisions(policy)
        policy_step = lambda _, b: stage2_step(  # noqa: E731
            model=decisions, optimizer=policy_opt, batch=b, tau=1.0, config=config)

        live = LiveOutputs(backbone=backbone.eval(), teacher=teacher, config=config, device=torch.device("cpu"))
        live_clips = clips(config.stage2.batch_size)
        results["stage2_live"] = _measure(lambda e: map(live, live_clips(e)), policy_step, epochs=epochs, skip=1)

        started = time.perf_counter()
        cache = build_backbone_outputs(Path(tmp) / "cache", config=config, teacher_dir=teacher_dir, stage1_dir=stage1_dir)
        results["cache_build_seconds"] = time.perf_counter() - started
        cached = CachedBackboneOutputs(cache, split="train")
        cached_sampler = EpochSampler(len(cached), rank=0, world_size=1, shuffle=True, seed=config.seed)
        cached_loader = make_loader(cached, sampler=cached_sampler, batch_size=config.stage2.batch_size, workers=0,
                                    pin_memory=False)
        cached_loader.collate_fn = CachedBackboneOutputs.collate

        def cached_batches(epoch: int) -> Any:
            cached_sampler.set_epoch(epoch)
            cached.set_epoch(epoch)
            return cached_loader
        memo = FrozenFeatures(policy, cached) if config.stage2.lr_body == 0 else (lambda batch: batch)
        # A whole stage 2 as a trial runs it: every epoch counted, the first pass over each view included.
        results["stage2_cached"] = _measure(lambda e: map(memo, cached_batches(e)), policy_step,
                                            epochs=config.stage2.epochs, skip=0)
    results["stage2_cached_speedup"] = (
        results["stage2_cached"]["clips_per_second"] / results["stage2_live"]["clips_per_second"]
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="spaces/demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of stage 1 / live stage 2 (first not counted)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    overrides = {k: yaml.safe_load(v) for k, _, v in (pair.partition("=") for pair in args.overrides)}
    config = load_trial_config(args.config, overrides)
    ensure_data(config.data, generate=True)
    results = bench(config, epochs=max(args.epochs, 2))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name in ("stage1", "stage2_live", "stage2_cached"):
            r = results[name]
            print(f"{name:14s} {r['clips_per_second']:8.1f} clips/s   data wait {r['data_wait_fraction']:6.1%}")
        print(f"stage-2 cache: built in {results['cache_build_seconds']:.1f} s, "
              f"{results['stage2_cached_speedup']:.1f}x the live clips/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
