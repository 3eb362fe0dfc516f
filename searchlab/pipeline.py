"""One trial: the method's stages, walked in order through the content-addressed cache.

Every shared stage (``Stage.shared``) is keyed by what it declares it depends on (its fields, the
data's fingerprint and the keys of the stages it needs: ``searchlab.methods.stage_keys``): trials
that agree on those train it once, also when they run at the same time (the second waits on the
first's lock, then reuses its artifact). Trainings keep their Ray Train checkpoints under the
cache, keyed the same way, so a sweep restarted after a crash resumes a half-trained stage instead
of starting it over. A fanned-out stage (``Stage.fan_out``) goes through the cache once per item,
each under its own key. Per-trial stages publish into ``RUN_DIR/trials/ID/<stage>`` and keep their
Ray Train runs (checkpoints, TensorBoard) in ``RUN_DIR/ray-train/trial-N-ID/<stage>``: the trial's
number and id as in Tune's folders and trials.parquet. The last stage's metrics are the trial's.
Each cache event and each epoch prints one progress line tagged with the trial (``searchlab.progress``).
Then the trained network is measured at the other operating points of ``search.curve``
(``searchlab.curve``), by a Ray task with a stage worker's resources: the trial's curve.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from searchlab.cache import ArtifactCache
from searchlab.config import TrialConfig
from searchlab.curve import curve_points
from searchlab.data.manifest import read_manifest
from searchlab.methods import Method, Stage, get_method, stage_keys
from searchlab.methods._contract import Artifacts
from searchlab.objectives import METRICS
from searchlab.progress import TrialTag
from searchlab.results import BaselinesTable
from searchlab.train.checkpointing import read_artifact_metrics
from searchlab.train.launch import run_stage

CACHE_DIR_NAME = "cache"
RAY_TRAIN_DIR = "ray-train"  # RUN_DIR/ray-train/trial-N-ID/<stage>: a per-trial stage's Ray Train run


def trial_train_dir(run_dir: Path, trial_name: str, stage: str) -> Path:
    """The Ray Train run folder of a trial's per-trial stage (``trial_name``: Tune's ``trial-N-ID``)."""
    return run_dir / RAY_TRAIN_DIR / trial_name / stage


def data_fingerprint(manifest: str) -> str:
    """The manifest's bytes decide the data; a re-prepared data set is a new key."""
    return hashlib.sha256(Path(manifest).read_bytes()).hexdigest()[:16]


def trial_stage_keys(method: Method, config: TrialConfig, *, shared_config: TrialConfig | None = None) -> dict[str, Any]:
    """Each stage's cache key for this configuration (per-trial stages get one too, for the record);
    with ``shared_config`` the shared stages are keyed by it instead (see `run_trial`)."""
    tree = config.model_dump(mode="json")
    if shared_config is None:
        return stage_keys(method, tree, data_fingerprint=data_fingerprint(config.data.manifest))
    return stage_keys(method, shared_config.model_dump(mode="json"), per_trial_tree=tree,
                      data_fingerprint=data_fingerprint(config.data.manifest))


def _build_task(stage: Stage, config: TrialConfig, inputs: Artifacts, target: Path) -> None:
    assert stage.build is not None
    stage.build(config, inputs, target)


def _execute(stage: Stage, config: TrialConfig, *, inputs: Artifacts, target: Path, storage: Path,
             name: str, trial: TrialTag, item: int | None = None, **per_trial: Any) -> Path | None:
    """Run one stage into ``target``; returns the folder of its TensorBoard logs (None for a build).
    ``per_trial``: ``eval_every`` and ``progress`` of a per-trial stage (``run_stage``)."""
    if stage.loop is not None:
        return run_stage(stage, config=config, inputs=inputs, output_dir=target, storage_path=storage, name=name,
                         item=item, tag=str(trial) if trial.epochs else None, **per_trial).log_dir
    resources = config.resources
    # A task started inside a Tune trial would join the trial's placement group, which holds only the
    # trial driver's sliver of CPU: schedule it on the cluster's free resources instead.
    build = ray.remote(num_cpus=resources.cpus_per_worker,
                       num_gpus=resources.gpus_per_worker if resources.use_gpu else 0)(_build_task).options(
        scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=None))
    ray.get(build.remote(stage, config, inputs, target))
    return None


def _curve_task(method: Method, config: TrialConfig, artifacts: Artifacts, cost_biases: list[float]) -> list[dict[str, Any]]:
    import torch

    device = torch.device("cuda" if config.resources.use_gpu else "cpu")
    return curve_points(method, config, artifacts=artifacts, cost_biases=cost_biases, device=device,
                        loader_workers=config.data.loader_workers)


def _measure_curve(method: Method, config: TrialConfig, *, artifacts: Artifacts, cost_biases: list[float]) -> list[dict[str, Any]]:
    """The curve's points (``searchlab.curve``), measured by a Ray task with a stage worker's resources:
    the trial's own process holds a sliver of a CPU (and on a cluster may sit on a head without any)."""
    resources = config.resources
    task = ray.remote(num_cpus=resources.cpus_per_worker,
                      num_gpus=resources.gpus_per_worker if resources.use_gpu else 0)(_curve_task).options(
        scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=None))
    return ray.get(task.remote(method, config, artifacts, cost_biases))


def run_trial(config: TrialConfig, *, run_dir: Path, trial: TrialTag, eval_every: int = 0,
              progress: Any = None, shared_config: TrialConfig | None = None,
              cache_root: Path | None = None, curve: list[float] | None = None) -> dict[str, Any]:
    """Run one trial (``trial``: its number and id); returns its metrics (the objective names), details,
    stage keys and seconds, and its curve's ``points``. ``eval_every`` and ``progress`` go to its last
    stage (per trial; ``run_stage``: a scheduler's rungs). ``curve``: the cost_bias values at which the
    trained network is measured again (``searchlab.curve``); the trial's own point (0) comes first.

    ``shared_config``: the configuration the shared stages are keyed and built with, when it differs
    from the per-trial stages' ``config`` (`searchlab.rerun`: per-trial stages with a new seed on the
    search's cached shared artifacts); by default ``config`` for both. ``cache_root``: the stage cache
    (default: ``run_dir``'s sibling ``cache``)."""
    per_trial = {"eval_every": eval_every, "progress": progress}
    started_trial = time.time()
    method = get_method(config.method)
    if shared_config is not None and shared_config.method != config.method:
        raise ValueError(f"shared_config is a {shared_config.method} configuration, config a {config.method} one")
    shared_config = shared_config if shared_config is not None else config
    cache_root = cache_root if cache_root is not None else run_dir.parent / CACHE_DIR_NAME
    cache = ArtifactCache(cache_root, notify=trial.cache_event)
    keys = trial_stage_keys(method, config, shared_config=shared_config)
    artifacts: dict[str, Path | list[Path]] = {}
    seconds: dict[str, float] = {}
    log_dir: Path | None = None

    def shared(stage: Stage, key: str, inputs: Artifacts, item: int | None = None) -> Path:
        return cache.get_or_build(stage.name, key, lambda tmp: _execute(
            stage, shared_config, inputs=inputs, target=Path(tmp), storage=cache_root / "ray-train",
            name=f"{stage.name}-{key}", trial=trial, item=item))

    for stage in method.stages:
        started = time.time()
        inputs = {need: artifacts[need] for need in stage.needs}
        if stage.fan_out is not None:
            artifacts[stage.name] = [shared(stage, key, inputs, item) for item, key in enumerate(keys[stage.name])]
        elif stage.shared:
            artifacts[stage.name] = shared(stage, keys[stage.name], inputs)
        else:
            target = run_dir / "trials" / trial.trial_id / stage.name
            trial.say(f"{stage.name}: {'training' if stage.loop is not None else 'building'} (per trial)")
            log_dir = _execute(stage, config, inputs=inputs, target=target, storage=run_dir / RAY_TRAIN_DIR / trial.name,
                               name=stage.name, trial=trial, **(per_trial if stage is method.stages[-1] else {}))
            artifacts[stage.name] = target
        seconds[stage.name] = time.time() - started
    BaselinesTable.in_run(run_dir).upsert(method.baselines(artifacts, keys))
    metrics = dict(read_artifact_metrics(artifacts[method.stages[-1].name]))
    points = [{"cost_bias": 0.0, **metrics}]
    curve_seconds = 0.0
    if curve:
        started = time.time()
        trial.say(f"curve: measuring {len(curve)} more operating points (cost_bias {', '.join(f'{v:g}' for v in curve)})")
        points += _measure_curve(method, config, artifacts=artifacts, cost_biases=list(curve))
        curve_seconds = time.time() - started
    objectives = {name: float(metrics.pop(name)) for name in METRICS if name in metrics}
    return {
        "metrics": objectives,
        "details": {
            **{key: value for key, value in metrics.items() if key != "usage"},
            "action_usage": metrics.get("usage", {}),
            "class_names": list(read_manifest(config.data.manifest).class_names),
            "artifacts": {name: [str(p) for p in path] if isinstance(path, list) else str(path)
                          for name, path in artifacts.items()},
            "tensorboard": str(log_dir) if log_dir is not None else None,
            "curve_seconds": curve_seconds,  # measuring the curve's other points (not a stage)
        },
        "method": method.name,
        "final_stage": method.stages[-1].name,
        "stage_keys": keys,
        "stage_seconds": seconds,
        "points": points,
        "total_s": time.time() - started_trial,
    }
