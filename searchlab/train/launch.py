"""``run_stage``: one method's stage as a Ray Train ``TorchTrainer`` run, resumable, with an artifact.

A stage is a function call with explicit arguments (the sweep calls it inside Tune trials):
its Ray run lives under ``storage_path/name`` (checkpoints every epoch, TensorBoard events under
``tensorboard/``); running it again with the same ``storage_path`` and ``name`` resumes from the
latest checkpoint. When it finishes, the artifact inside its final checkpoint (weights-only state
dicts, metrics.json, config.yaml) is published into ``output_dir`` atomically, and the function
returns where everything is.

Workers: ``config.resources`` (DDP when several; gloo on CPU, NCCL on GPU).

Launch policy (``resources.launch``, ``launch_mode``): a stage runs ``distributed`` (a Ray Train
controller and worker group; resumable from the run's checkpoints) or ``local``: in the calling
process, with ``LocalRun`` as its context (checkpoints copied under ``storage_path/name/local``, the
latest two kept, resumable the same way; the artifact published from the last one). ``auto`` picks
local for a per-trial stage (``Stage.shared`` false: trained once per trial, on cached inputs) with
one CPU worker, run inside a sweep's trial on a node that has that CPU; distributed otherwise. A local
stage reserves its CPUs with a placement group on this node for as long as it trains (the trial's own
process holds only a sliver of a CPU) and uses that many torch threads, as a Ray Train worker would.
It does not go through Ray Train's own local mode (``ScalingConfig(num_workers=0)``): inside a Tune
trial Ray 2.60 refuses ``ray.train.report``/``get_context``/``get_checkpoint`` (DeprecationWarning), and
outside one that mode keeps only the last checkpoint object in memory, pointing at the folder the loop
deletes after reporting it; it would neither resume nor publish.

Node loss: a distributed stage whose worker dies with its node (or its process: Ray 2.60 reports a
raylet killed under it as ``WorkerHealthCheckFailedError`` wrapping the actor's death) is started
again, as a fresh ``TorchTrainer`` on the same ``storage_path/name``, from its latest checkpoint on
the nodes that remain, up to ``SEARCHLAB_STAGE_NODE_RETRIES`` times (2); then it raises
``StageNodeLost`` naming the node, which fails the trial (the sweep goes on). Every worker start is
noted under ``storage_path/name/worker-starts`` (node, rank, the epoch it resumed from), and the
stages a process ran are kept for its trial's row (``take_stage_records``: the ``nodes`` column).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Any, Literal

import ray
import ray.exceptions
import ray.train
from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from searchlab.config import TrialConfig
from searchlab.methods._contract import Artifacts, Loop, Stage
from searchlab.progress import EpochLines, output_level
from searchlab.train import ray_compat
from searchlab.train.checkpointing import publish_directory, read_artifact_metrics
from searchlab.train.worker import ARTIFACT_DIR, LocalRun

__all__ = ["NODE_RETRIES_ENV", "StageNodeLost", "StageResult", "launch_mode", "run_stage", "take_stage_records"]

LOCAL_DIR = "local"  # under storage_path/name: a local launch's checkpoints
# Ray Train's controller polls its workers every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s by default; the
# poll also notices that the workers finished), so every distributed stage ended up to 2 s after its
# last epoch. A poll is one small RPC per worker: 0.25 s costs little and ends a stage 1-2 s sooner.
HEALTH_CHECK_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
HEALTH_CHECK_S = "0.25"
Progress = Callable[[int, dict[str, Any], bool], None]


@dataclass(frozen=True)
class StageResult:
    """Where a finished stage put its things."""

    stage: str
    output_dir: Path  # the published artifact (weights, metrics.json, config.yaml)
    run_dir: Path  # Ray run folder: checkpoints, resumable state
    log_dir: Path  # TensorBoard event files
    metrics: dict[str, Any]
    starts: tuple[dict[str, Any], ...] = field(default=())  # one per worker start: node_id, rank, resumed_from
    launch: Literal["distributed", "local"] = "distributed"


# A stage whose worker dies with its node (or its process) is started again this many times, from its
# latest checkpoint, on the nodes that remain. Ray Train's FailureConfig(max_failures) would retry every
# worker error, a diverged loss or a bug too (Ray 2.60's failure policy does not tell them apart), so it
# stays at `max_failures` and only the loss of a worker is retried here.
NODE_RETRIES_ENV = "SEARCHLAB_STAGE_NODE_RETRIES"
DEFAULT_NODE_RETRIES = 2
STARTS_DIR = "worker-starts"  # under storage_path/name: one JSON file per worker start

_STAGE_RECORDS: list[dict[str, Any]] = []  # stages this process ran, for the trial's row (take_stage_records)


class StageNodeLost(RuntimeError):
    """A stage's worker died with its node (or its process) and the retries are spent."""


def take_stage_records() -> list[dict[str, Any]]:
    """The stages this process trained since the last call: name, the node ids of their workers, resumes."""
    records = list(_STAGE_RECORDS)
    _STAGE_RECORDS.clear()
    return records


def _record_start(starts_dir: Path) -> None:
    """Note, on the storage every node sees, where this worker runs and from which epoch it resumes."""
    from searchlab.atomic_dir import write_text_atomic
    from searchlab.train.checkpointing import load_training_state

    with ray_compat.latest_checkpoint_dir() as path:
        epoch = int(load_training_state(path)["epoch"]) if path is not None else 0
    rank = ray_compat.world_rank()
    record = {"node_id": ray.get_runtime_context().get_node_id(), "rank": rank, "resumed_from": epoch,
              "time": time.time()}
    write_text_atomic(starts_dir / f"{time.time_ns()}-{rank}.json", json.dumps(record))


def read_starts(run_dir: Path) -> tuple[dict[str, Any], ...]:
    """The worker starts of a stage's Ray run folder, oldest first."""
    folder = run_dir / STARTS_DIR
    files = sorted(folder.glob("*.json"), key=lambda p: int(p.stem.split("-")[0])) if folder.is_dir() else []
    return tuple(json.loads(p.read_text()) for p in files)


def _in_ray_worker(loop_config: dict[str, Any], *, loop: Loop, starts_dir: str | None = None,
                   tag: str | None = None, stage: str = "") -> None:
    """Ray Train's per-worker entry point: the stage's plain loop, given Ray's context (and, with a
    ``tag``, a progress line per epoch from the writing rank, which Ray forwards to the driver)."""
    if starts_dir is not None:
        _record_start(Path(starts_dir))
    worker = ray_compat.worker()
    if tag is not None:
        worker = dataclasses.replace(worker, progress=EpochLines(tag, stage))
    loop(loop_config, worker)


def _worker_lost(error: BaseException) -> bool:
    """Whether a failed fit lost a worker (its node or process died), rather than raised in the loop."""
    failures = getattr(error, "worker_failures", None) or {}
    from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError  # a node lost: its raylet gone

    lost = (ray.exceptions.RayActorError, WorkerHealthCheckFailedError)
    return any(isinstance(failure, lost) for failure in failures.values())


def _where_lost(starts: tuple[dict[str, Any], ...]) -> str:
    """Which node the lost worker ran on: the last attempt's worker nodes that the cluster no longer lists alive."""
    nodes = sorted({start["node_id"] for start in starts if start.get("node_id")})
    alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    dead = [node for node in nodes if node not in alive]
    if dead:
        return f"node {', '.join(n[:12] for n in dead)} is gone"
    return f"last on node {', '.join(n[:12] for n in nodes)}" if nodes else "no worker start recorded"


def _node_retries() -> int:
    return int(os.environ.get(NODE_RETRIES_ENV, DEFAULT_NODE_RETRIES))


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


def launch_mode(stage: Stage, config: TrialConfig) -> Literal["distributed", "local"]:
    """How ``stage`` runs under ``config.resources.launch`` (see the module docstring)."""
    resources = config.resources
    if resources.launch != "auto":
        return resources.launch
    if stage.shared or resources.workers != 1 or resources.use_gpu or not ray_compat.in_tune_trial():
        return "distributed"
    return "local" if _node_cpus() >= resources.cpus_per_worker else "distributed"  # a cluster's CPU-less head


def _node_cpus() -> float:
    """CPUs this process's Ray node offers in all (0 when none, e.g. a head that only drives)."""
    node_id = ray.get_runtime_context().get_node_id()
    return next((float(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node["NodeID"] == node_id), 0.0)


@contextlib.contextmanager
def _reserved(resources: Any, *, who: str = "searchlab: a local stage") -> Iterator[None]:
    """Hold ``cpus_per_worker`` CPUs of this node while a local stage trains in this process.

    A trial's process reserves a sliver of a CPU (it only drives distributed stages); a stage it
    trains itself must reserve what a worker would, or concurrent trials would oversubscribe the
    node. The placement group is outside the trial's own, on this node; it goes with this process
    if the process dies (a stopped trial), and is removed when the stage ends.
    """
    if not ray.is_initialized():
        yield
        return
    from ray.util.placement_group import placement_group, remove_placement_group

    bundle = {"CPU": resources.cpus_per_worker, f"node:{ray.util.get_node_ip_address()}": 0.001}
    group = placement_group([bundle], strategy="STRICT_PACK")
    try:
        while not group.wait(timeout_seconds=60):
            print(f"{who} waits for {resources.cpus_per_worker:g} free CPU(s) on this node", flush=True)
        yield
    finally:
        remove_placement_group(group)


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Run with ``count`` intra-op threads (a Ray worker gets OMP_NUM_THREADS = its CPUs), then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run_local(stage: Stage, loop_config: dict[str, Any], *, config: TrialConfig, run_dir: Path,
               progress: Progress | None, who: str) -> tuple[Path, dict[str, Any]]:
    """Train in this process; the final checkpoint's folder and this start's record."""
    assert stage.loop is not None
    run = LocalRun(run_dir / LOCAL_DIR, keep=2, progress=progress)
    from searchlab.train.checkpointing import load_training_state

    resumed = int(load_training_state(run.checkpoints[-1])["epoch"]) if run.checkpoints else 0
    start = {"node_id": ray.get_runtime_context().get_node_id() if ray.is_initialized() else None, "rank": 0,
             "resumed_from": resumed, "time": time.time(), "launch": "local"}
    from searchlab.atomic_dir import write_text_atomic

    write_text_atomic(run_dir / LOCAL_DIR / f"start-{time.time_ns()}.json", json.dumps(start))  # when, where, from
    with _reserved(config.resources, who=who), _torch_threads(max(1, int(config.resources.cpus_per_worker))):
        stage.loop(loop_config, run.worker())
    if not run.checkpoints:
        raise RuntimeError(f"stage {stage.name} finished without reporting a checkpoint")
    return run.checkpoints[-1], start


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
    progress: Progress | None = None,
    tag: str | None = None,
) -> StageResult:
    """Train ``stage`` (a method's stage with a loop) and publish its artifact into ``output_dir``.

    ``inputs`` maps the stages it needs to their artifact folders (a list for a fanned-out stage);
    ``item`` is the item a fanned-out stage trains (``Stage.fan_out``). ``eval_every`` > 0 also evaluates
    every that many epochs. ``max_failures``: automatic restarts from the latest checkpoint.
    ``inject_failure_after_epoch`` makes the workers fail on purpose after that epoch's checkpoint
    (fault-tolerance tests); ``fit`` then raises ``ray.train.TrainingFailedError`` (a local launch raises
    the loop's own ``InjectedFailure``). ``progress(epoch, metrics, final)`` hears every epoch of a local
    launch (``Worker.progress``); a distributed one does not call it. ``launch_mode`` decides which.
    ``tag`` (a trial's ``[trial N ID]``): print one progress line per epoch (``searchlab.progress``), from
    this process (local) or the writing worker (distributed).
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
    loop_config = {
        **stage.loop_config(config, resolved, item),
        "log_dir": str(log_dir),
        "eval_every": eval_every,
        "inject_failure_after_epoch": inject_failure_after_epoch,
    }
    label = stage.name if item is None else f"{stage.name}[{item}]"
    if launch_mode(stage, config) == "local":
        hook = EpochLines(tag, label, then=progress) if tag is not None else progress
        final, start = _run_local(stage, loop_config, config=config, run_dir=storage / name, progress=hook,
                                  who=f"{tag} {label}:" if tag is not None else f"searchlab: local stage {label}")
        _STAGE_RECORDS.append({"stage": stage.name, "name": name, "nodes": [start["node_id"]] if start["node_id"] else [],
                               "resumed_from": [start["resumed_from"]] if start["resumed_from"] > 0 else []})
        published = publish_directory(final / ARTIFACT_DIR, output_dir)
        return StageResult(stage=stage.name, output_dir=published, run_dir=storage / name, log_dir=log_dir,
                           metrics=read_artifact_metrics(published), starts=(start,), launch="local")
    os.environ.setdefault(HEALTH_CHECK_ENV, HEALTH_CHECK_S)  # read by the controller (Ray propagates it there)
    starts_dir = storage / name / STARTS_DIR
    trainer = lambda: TorchTrainer(  # noqa: E731  (a fresh trainer per attempt)
        functools.partial(_in_ray_worker, loop=stage.loop, starts_dir=str(starts_dir), tag=tag, stage=label),
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if resources.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=resources.workers, use_gpu=resources.use_gpu, resources_per_worker=per_worker
        ),
        run_config=RunConfig(
            name=name,
            storage_path=str(storage),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=max_failures),
            # Ray Train's INFO lines ("Reporting training result ...", "Checkpoint successfully created ...",
            # worker group starts) are per-epoch noise beside searchlab's progress lines; its warnings and
            # errors stay. A sweep run with --verbose (SEARCHLAB_OUTPUT=verbose) keeps them all.
            logging_config=LoggingConfig(log_level="INFO" if output_level() == "verbose" else "WARNING"),
        ),
    )
    retries = _node_retries()
    for attempt in range(retries + 1):
        try:
            result = trainer().fit()  # the same storage_path/name: resumes from the latest checkpoint
            break
        except ray.train.TrainingFailedError as error:
            if not _worker_lost(error):
                raise
            where = _where_lost(read_starts(storage / name)[-resources.workers:])
            if attempt == retries:
                raise StageNodeLost(
                    f"a worker of stage {stage.name} died with its node or process ({where}) "
                    f"and {retries} restart(s) from its checkpoint are spent ({NODE_RETRIES_ENV}); "
                    f"Ray said: {' '.join(str(error).split())[:300]}") from error
            print(f"{tag or 'searchlab:'} stage {stage.name} ({storage.name}/{name}) lost a worker ({where}); restarting "
                  f"it from its latest checkpoint on the remaining nodes (restart {attempt + 1} of {retries})", flush=True)
    starts = read_starts(storage / name)
    _STAGE_RECORDS.append({"stage": stage.name, "name": name, "nodes": sorted({s["node_id"] for s in starts}),
                           "resumed_from": [s["resumed_from"] for s in starts if s["resumed_from"] > 0]})
    with ray_compat.result_checkpoint_dir(result) as checkpoint:
        published = publish_directory(Path(checkpoint) / ARTIFACT_DIR, output_dir)
    return StageResult(
        stage=stage.name, output_dir=published, run_dir=storage / name, log_dir=log_dir,
        metrics=read_artifact_metrics(published), starts=starts,
    )
