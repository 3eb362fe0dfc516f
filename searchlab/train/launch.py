"""``run_stage``: one method's stage as a Ray Train ``TorchTrainer`` run, resumable, with an artifact.

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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from searchlab.config import TrialConfig
from searchlab.methods._contract import Artifacts, Loop, Stage
from searchlab.train import ray_compat
from searchlab.train.checkpointing import publish_directory, read_artifact_metrics
from searchlab.train.worker import ARTIFACT_DIR

__all__ = ["StageResult", "run_stage"]


@dataclass(frozen=True)
class StageResult:
    """Where a finished stage put its things."""

    stage: str
    output_dir: Path  # the published artifact (weights, metrics.json, config.yaml)
    run_dir: Path  # Ray run folder: checkpoints, resumable state
    log_dir: Path  # TensorBoard event files
    metrics: dict[str, Any]


def _in_ray_worker(loop_config: dict[str, Any], *, loop: Loop) -> None:
    """Ray Train's per-worker entry point: the stage's plain loop, given Ray's context."""
    loop(loop_config, ray_compat.worker())


def _check_inputs(stage: Stage, inputs: Artifacts) -> None:
    problems = []
    for name in stage.needs:
        if name not in inputs:
            if name not in stage.optional:
                problems.append(f"stage {stage.name} needs the {name} artifact (the folder of that earlier stage)")
            continue
        folders = inputs[name]
        for folder in folders if isinstance(folders, list) else [folders]:
            if not folder.is_dir():
                problems.append(f"{name}={folder} is not a finished stage artifact; run that stage first")
    unknown = sorted(set(inputs) - set(stage.needs))
    if unknown:
        problems.append(f"stage {stage.name} reads no {unknown}; it needs {list(stage.needs)}")
    if problems:
        raise ValueError("run_stage: " + "; ".join(problems))


def run_stage(
    stage: Stage,
    *,
    config: TrialConfig,
    inputs: Mapping[str, str | os.PathLike[str] | list[str | os.PathLike[str]]],
    output_dir: str | os.PathLike[str],
    storage_path: str | os.PathLike[str],
    name: str,
    item: int | None = None,
    eval_every: int = 0,
    max_failures: int = 0,
    inject_failure_after_epoch: int | None = None,
) -> StageResult:
    """Train ``stage`` (a method's stage with a loop) and publish its artifact into ``output_dir``.

    ``inputs`` maps the stages it needs to their artifact folders (a list for a fanned-out stage);
    ``item`` is the item a fanned-out stage trains (``Stage.fan_out``). ``eval_every`` > 0 also evaluates
    every that many epochs. ``max_failures``: automatic restarts from the latest checkpoint.
    ``inject_failure_after_epoch`` makes the workers fail on purpose after that epoch's checkpoint
    (fault-tolerance tests); ``fit`` then raises ``ray.train.TrainingFailedError``.
    """
    if stage.loop is None or stage.loop_config is None:
        raise ValueError(f"run_stage: stage {stage.name} is a build step, not a training; call its build function")
    if (item is None) != (stage.fan_out is None):
        raise ValueError(f"run_stage: stage {stage.name} " + ("fans out: give the item to train" if item is None
                                                               else "does not fan out: give no item"))
    resolved: dict[str, Path | list[Path]] = {
        key: [Path(p).resolve() for p in path] if isinstance(path, list) else Path(path).resolve()
        for key, path in inputs.items()}
    _check_inputs(stage, resolved)
    storage = Path(storage_path).resolve()
    log_dir = storage / name / "tensorboard"
    resources = config.resources
    per_worker = {"CPU": resources.cpus_per_worker}
    if resources.use_gpu:
        per_worker["GPU"] = resources.gpus_per_worker or 1.0
    trainer = TorchTrainer(
        functools.partial(_in_ray_worker, loop=stage.loop),
        train_loop_config={
            **stage.loop_config(config, resolved, item),
            "log_dir": str(log_dir),
            "eval_every": eval_every,
            "inject_failure_after_epoch": inject_failure_after_epoch,
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
        stage=stage.name, output_dir=published, run_dir=storage / name, log_dir=log_dir,
        metrics=read_artifact_metrics(published),
    )
