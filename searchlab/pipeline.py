"""One trial of a VideoIQ sweep: teacher -> stage 1 -> stage-2 inputs -> stage 2, through the cache.

Everything a later stage depends on is content-addressed (`searchlab.cache`): trials that share a
teacher or a stage 1 train it once (also when they run at the same time: the second waits on the
first's lock, then reuses its artifact), and the frozen backbone's per-frame outputs are computed
once per stage-1 artifact and read by every stage-2 trial on it. Stage trainings keep their Ray
Train checkpoints under the cache, keyed the same way, so a sweep restarted after a crash resumes a
half-trained stage instead of starting it over.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from searchlab.cache import ArtifactCache, stage_key
from searchlab.config import TrialConfig
from searchlab.data.manifest import read_manifest
from searchlab.objectives import METRICS
from searchlab.results import Baseline, BaselinesTable
from searchlab.train.backbone_cache import build_backbone_outputs
from searchlab.train.launch import run_stage

CACHE_DIR_NAME = "cache"


def _manifest_fingerprint(path: str) -> str:
    """The manifest's bytes decide the data; a re-prepared data set is a new key."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def teacher_fields(config: TrialConfig) -> dict[str, Any]:
    model = config.model
    return {
        "manifest": _manifest_fingerprint(config.data.manifest),
        "data": config.data.model_dump(mode="json", exclude={"manifest", "loader_workers"}),
        "backbone": model.backbone,
        "pretrained": model.pretrained,
        "policy": [model.policy_input_size, model.policy_width_mult, model.policy_pretrained],
        "teacher": config.teacher.model_dump(mode="json"),
        "workers": config.resources.workers,  # the global batch is per-worker batch x workers
        "seed": config.seed,
    }


def stage1_fields(config: TrialConfig, *, teacher_key: str) -> dict[str, Any]:
    return {
        "teacher": teacher_key,
        "bit_widths": list(config.model.bit_widths),
        "stage1": config.stage1.model_dump(mode="json"),
        "workers": config.resources.workers,
        "seed": config.seed,
    }


def outputs_fields(config: TrialConfig, *, stage1_key: str) -> dict[str, Any]:
    return {"stage1": stage1_key, "views": config.stage2.cached_views, "policy_size": config.model.policy_input_size}


def _build_outputs_task(config: TrialConfig, teacher_dir: str, stage1_dir: str, target: str) -> str:
    device = "cuda" if config.resources.use_gpu else "cpu"
    return str(build_backbone_outputs(target, config=config, teacher_dir=teacher_dir, stage1_dir=stage1_dir,
                                      device=device, batch_size=config.stage2.batch_size))


def run_trial(config: TrialConfig, *, run_dir: Path, trial_id: str) -> dict[str, Any]:
    """Run one trial; returns its metrics (the objective names), details, stage-1 key and durations."""
    started = time.time()
    cache_root = run_dir.parent / CACHE_DIR_NAME
    cache = ArtifactCache(cache_root)
    train_storage = cache_root / "ray-train"

    teacher_key = stage_key("teacher", teacher_fields(config))
    teacher_dir = cache.get_or_build("teacher", teacher_key, lambda tmp: run_stage(
        "teacher", config=config, output_dir=tmp, storage_path=train_storage, name=f"teacher-{teacher_key}"))

    stage1_key = stage_key("stage1", stage1_fields(config, teacher_key=teacher_key))
    stage1_dir = cache.get_or_build("stage1", stage1_key, lambda tmp: run_stage(
        "stage1", config=config, output_dir=tmp, storage_path=train_storage, name=f"stage1-{stage1_key}",
        teacher_dir=teacher_dir))
    stage1_done = time.time()
    _record_baselines(run_dir, stage1_key=stage1_key, stage1_dir=stage1_dir)

    outputs_key = stage_key("outputs", outputs_fields(config, stage1_key=stage1_key))
    resources = {"num_cpus": config.resources.cpus_per_worker,
                 "num_gpus": config.resources.gpus_per_worker if config.resources.use_gpu else 0}
    # A task started inside a Tune trial would join the trial's placement group, which holds only the
    # trial driver's sliver of CPU: schedule it on the cluster's free resources instead.
    build = ray.remote(**resources)(_build_outputs_task).options(
        scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=None))
    outputs_dir = cache.get_or_build("outputs", outputs_key, lambda tmp: ray.get(build.remote(
        config, str(teacher_dir), str(stage1_dir), str(Path(tmp) / "outputs"))))

    trial_dir = run_dir / "trials" / trial_id
    result = run_stage("stage2", config=config, output_dir=trial_dir / "stage2", storage_path=run_dir / "ray-train",
                       name=f"stage2-{trial_id}", teacher_dir=teacher_dir, stage1_dir=stage1_dir,
                       cache_dir=Path(outputs_dir) / "outputs")
    finished = time.time()
    metrics = dict(result.metrics)
    objectives = {name: float(metrics.pop(name)) for name in METRICS if name in metrics}
    return {
        "metrics": objectives,
        "details": {
            **{key: value for key, value in metrics.items() if key != "usage"},
            "action_usage": metrics.get("usage", {}),
            "class_names": list(read_manifest(config.data.manifest).class_names),
            "artifacts": {"teacher": str(teacher_dir), "stage1": str(stage1_dir), "stage2": str(result.output_dir)},
            "tensorboard": str(result.log_dir),
        },
        "stage1_key": stage1_key,
        "durations": {"stage1_s": stage1_done - started, "stage2_s": finished - stage1_done,
                      "total_s": finished - started},
    }


def _record_baselines(run_dir: Path, *, stage1_key: str, stage1_dir: Path) -> None:
    """The uniform 32/4/2-bit reference points of this stage-1 artifact (idempotent upsert)."""
    from searchlab.train.checkpointing import read_artifact_metrics

    metrics = read_artifact_metrics(stage1_dir)
    memory = float(metrics.get("memory_mb", 0.0))
    BaselinesTable.in_run(run_dir).upsert(
        Baseline(stage1_key=stage1_key, bits=int(bits), accuracy=float(values["accuracy"]),
                 gflops=float(values["gflops"]), memory_mb=float(values.get("memory_mb", memory)))
        for bits, values in metrics["uniform"].items()
    )
