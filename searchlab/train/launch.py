"""``run_stage``: one VideoIQ stage as a Ray Train ``TorchTrainer`` run, resumable, with an artifact.

A stage is a function call with explicit arguments (the sweep calls it inside Tune trials):
its Ray run lives under ``storage_path/name`` (checkpoints every epoch, TensorBoard events under
``tensorboard/``); running it again with the same ``storage_path`` and ``name`` resumes from the
latest checkpoint. When it finishes, the artifact inside its final checkpoint (weights-only state
dicts, metrics.json, config.yaml) is published into ``output_dir`` atomically, and the function
returns where everything is.

Workers: ``config.resources`` (DDP when several; gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from searchlab.config import TrialConfig
from searchlab.train import ray_compat
from searchlab.train.checkpointing import publish_directory, read_artifact_metrics
from searchlab.train.stage1 import stage1_loop
from searchlab.train.stage2 import stage2_loop
from searchlab.train.teacher import teacher_loop
from searchlab.train.worker import ARTIFACT_DIR, Worker

__all__ = ["STAGES", "StageResult", "run_stage"]

STAGES: dict[str, Callable[[dict[str, Any], Worker], None]] = {
    "teacher": teacher_loop,
    "stage1": stage1_loop,
    "stage2": stage2_loop,
}
#: Artifacts each stage reads, by argument name.
_NEEDS = {"teacher": (), "stage1": ("teacher_dir",), "stage2": ("teacher_dir", "stage1_dir")}


@dataclass(frozen=True)
class StageResult:
    """Where a finished stage put its things."""

    stage: str
    output_dir: Path  # the published artifact (weights, metrics.json, config.yaml)
    run_dir: Path  # Ray run folder: checkpoints, resumable state
    log_dir: Path  # TensorBoard event files
    metrics: dict[str, Any]


def _in_ray_worker(loop_config: dict[str, Any], *, stage: str) -> None:
    """Ray Train's per-worker entry point: the stage's plain loop, given Ray's context."""
    STAGES[stage](loop_config, ray_compat.worker())


def _check_inputs(stage: str, inputs: dict[str, str | os.PathLike[str] | None]) -> None:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    problems = []
    for name in _NEEDS[stage]:
        path = inputs[name]
        if path is None:
            problems.append(f"stage {stage} needs {name} (the artifact folder of the earlier stage)")
        elif not Path(path, "metrics.json").is_file():
            problems.append(f"{name}={path} is not a finished stage artifact (no metrics.json); run that stage first")
    cache = inputs.get("cache_dir")
    if cache is not None and not Path(cache, "meta.json").is_file():
        problems.append(f"cache_dir={cache} is not a built cache; build it with backbone_cache.build_backbone_outputs")
    if problems:
        raise ValueError("run_stage: " + "; ".join(problems))


def run_stage(
    stage: str,
    *,
    config: TrialConfig,
    output_dir: str | os.PathLike[str],
    storage_path: str | os.PathLike[str],
    name: str,
    teacher_dir: str | os.PathLike[str] | None = None,
    stage1_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    eval_every: int = 0,
    max_failures: int = 0,
    inject_failure_after_epoch: int | None = None,
) -> StageResult:
    """Train ``stage`` ("teacher", "stage1", "stage2") and publish its artifact into ``output_dir``.

    stage1 needs ``teacher_dir``; stage2 needs ``teacher_dir`` and ``stage1_dir``, and reads its
    backbone outputs from ``cache_dir`` when given (else computes them live). ``eval_every`` > 0
    also evaluates every that many epochs. ``max_failures``: automatic restarts from the latest
    checkpoint. ``inject_failure_after_epoch`` makes the workers fail on purpose after that epoch's
    checkpoint (fault-tolerance tests); ``fit`` then raises ``ray.train.TrainingFailedError``.
    """
    absolute = lambda p: None if p is None else str(Path(p).resolve())  # noqa: E731
    inputs = {"teacher_dir": absolute(teacher_dir), "stage1_dir": absolute(stage1_dir), "cache_dir": absolute(cache_dir)}
    _check_inputs(stage, inputs)
    storage = Path(storage_path).resolve()
    log_dir = storage / name / "tensorboard"
    resources = config.resources
    per_worker = {"CPU": resources.cpus_per_worker}
    if resources.use_gpu:
        per_worker["GPU"] = resources.gpus_per_worker or 1.0
    trainer = TorchTrainer(
        functools.partial(_in_ray_worker, stage=stage),
        train_loop_config={
            "config": config,
            "log_dir": str(log_dir),
            "eval_every": eval_every,
            "inject_failure_after_epoch": inject_failure_after_epoch,
            **inputs,
        },
        torch_config=TorchConfig(backend="nccl" if resources.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=resources.workers, use_gpu=resources.use_gpu, resources_per_worker=per_worker
        ),
        run_config=RunConfig(
            name=name,
            storage_path=str(storage),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=max_failures),
        ),
    )
    result = trainer.fit()
    with ray_compat.result_checkpoint_dir(result) as checkpoint:
        published = publish_directory(Path(checkpoint) / ARTIFACT_DIR, output_dir)
    return StageResult(
        stage=stage, output_dir=published, run_dir=storage / name, log_dir=log_dir,
        metrics=read_artifact_metrics(published),
    )
