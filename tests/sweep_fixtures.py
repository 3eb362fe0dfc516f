"""A tiny sweep file for the end-to-end tests: the real pipeline on the session's synthetic set.

Everything is at its smallest that still runs every part: 4 sampled frames at 32 px through a
ResNet-10, a width-0.25 policy at 16 px, one epoch per training stage and two for stage 2.
The stage-2 learning rate is searched with one absurd choice that passes config validation but makes
stage 2 diverge (its loss or weights turn non-finite in the first epoch, and the stage raises), and
the starting points put that choice on exactly one trial, so one trial fails for a real reason and
the others complete. A sweep of diverging trials only is the case where every trial fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TEMPERATURE = {"kind": "exponential", "tau0": 5.0, "rate": 0.7, "per": "epoch"}
GOOD_LR = 0.05
DIVERGING_LR = 1e30  # stage2.lr: the policy's weights overflow within the first epoch
# What the diverged trial's recorded reason must say: the stage's error type, the stage and the fix.
DIVERGED_REASON = ("Diverged: ", "of stage2", "lower the learning rate")


def sweep_tree(*, manifest: Path, storage: Path, name: str, trials: int, max_concurrent: int,
               failing_point: bool, stage2_lr: float = GOOD_LR) -> dict[str, Any]:
    """A sweep over the stage-2 loss weight w1 and the decision space on one shared stage 1.

    With `failing_point`, the learning rate is searched too and the second of the three starting
    points uses DIVERGING_LR; `stage2_lr` is the base's (every trial's when not searched).
    """
    space: dict[str, Any] = {
        "stage2.w1": {"uniform": [0.0, 1.0]},
        "stage2.decision_space": {"choice": [[32, 4, 2, 0], [32, 2, 0]]},
    }
    starts: list[dict[str, Any]] = []
    if failing_point:
        space["stage2.lr"] = {"choice": [GOOD_LR, DIVERGING_LR]}
        starts = [{"stage2.lr": lr} for lr in (GOOD_LR, DIVERGING_LR, GOOD_LR)]
    return {
        "base": {
            "name": name,
            "seed": 0,
            "data": {"manifest": str(manifest), "frames": 4, "train_scale": [32, 40], "crop_size": 32,
                     "eval_short_side": 32, "loader_workers": 0},
            "model": {"backbone": "resnet10", "bit_widths": [32, 4, 2], "policy_input_size": 16,
                      "policy_hidden": 16, "policy_width_mult": 0.25},
            "teacher": {"epochs": 1, "policy_epochs": 1, "lr": 0.05, "batch_size": 4},
            "stage1": {"epochs": 1, "lr": 0.01, "batch_size": 4},
            "stage2": {"epochs": 2, "lr": stage2_lr, "lr_body": 0.0, "batch_size": 4, "temperature": TEMPERATURE},
            "resources": {"workers": 1, "cpus_per_worker": 1},
        },
        "search": {
            "trials": trials,
            "sampler": "tpe",
            "seed": 0,
            "objectives": {"accuracy": "max", "gflops": "min"},
            "constraints": ["gflops <= 1000"],
            "max_concurrent": max_concurrent,
            "points_to_evaluate": starts,
        },
        "space": space,
        "storage": str(storage),
    }


def write_sweep(path: Path, tree: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


# AR-Net at its smallest on the same clips: two ResNet-10s at 32 and 16 px, one epoch per stage.
TINY_ARNET = {"resolutions": [32, 16], "backbones": ["resnet10", "resnet10"], "policy_input_size": 16,
              "policy_hidden": 16, "policy_width_mult": 0.25, "efficiency_cost": "official", "eval_mode": "sample",
              "backbone_stage": {"epochs": 1, "lr": 0.01, "batch_size": 4},
              "joint_stage": {"epochs": 1, "lr": 0.01, "batch_size": 4, "temperature": TEMPERATURE},
              "finetune_stage": {"epochs": 1, "lr": 0.005, "batch_size": 4, "temperature": TEMPERATURE}}


def cross_method_sweep_tree(*, manifest: Path, storage: Path, name: str) -> dict[str, Any]:
    """A cross-method sweep of two trials, one per method (its starting points name them): VideoIQ's
    sections from `sweep_tree`, AR-Net's TINY_ARNET, each method's loss weight searched in its own trials."""
    single = sweep_tree(manifest=manifest, storage=storage, name=name, trials=2, max_concurrent=2, failing_point=False)
    base = single["base"]
    return {
        "base": {key: base[key] for key in ("name", "seed", "data", "resources")},
        "methods": {"videoiq": {key: base[key] for key in ("model", "teacher", "stage1", "stage2")},
                    "arnet": {"arnet": TINY_ARNET}},
        "search": {**single["search"], "points_to_evaluate": [{"method": "videoiq", "stage2.w1": 0.2},
                                                              {"method": "arnet", "arnet.w_eff": 1.0}]},
        "space": {"method": {"choice": ["videoiq", "arnet"]},
                  "stage2.w1": {"uniform": [0.0, 1.0], "when": {"method": "videoiq"}},
                  "arnet.w_eff": {"loguniform": [0.1, 4.0], "when": {"method": "arnet"}}},
        "storage": str(storage),
    }
