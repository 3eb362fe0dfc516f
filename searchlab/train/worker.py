"""What every stage's worker loop does around its epochs: resume, checkpoint, gather, fail on purpose.

A stage loop builds its models and optimizer, calls ``resume`` (which restores them from the run's
latest checkpoint, if any, and says which epoch to start at), trains, and calls
``checkpoint_epoch`` once per epoch on every rank. Rank 0 writes the checkpoint (and, after the
last epoch, the stage's artifact inside it); every rank reports, as Ray Train requires.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from searchlab.train.checkpointing import (
    capture_rng_state,
    load_training_state,
    restore_rng_state,
    save_training_state,
    unwrap,
)

__all__ = [
    "ARTIFACT_DIR",
    "Diverged",
    "InjectedFailure",
    "LocalRun",
    "check_finite",
    "Worker",
    "checkpoint_epoch",
    "gather_objects",
    "resume",
    "run_epoch",
    "seed_worker",
]

#: Sub-folder of the final checkpoint holding the artifact that ``run_stage`` publishes.
ARTIFACT_DIR = "artifact"


class Diverged(RuntimeError):
    """A loss, metric or weight became NaN or infinite: the stage has no result worth keeping."""


class InjectedFailure(RuntimeError):
    """Raised on purpose after an epoch's checkpoint, to test that a restarted stage resumes."""


@dataclass(frozen=True)
class Worker:
    """A stage loop's context: this worker's place in the stage and the services of what runs it.

    ``searchlab.train.launch`` runs the loops under Ray Train and builds this from Ray's context;
    ``local_worker`` builds a single-process one without Ray (tests, benchmarks). Services:
    ``report(metrics, checkpoint_dir)`` (every rank, the same number of times; rank 0 passes the
    checkpoint folder, which the runner copies), ``latest_checkpoint()`` (a context manager giving the
    folder of the run's latest reported checkpoint, or None) and ``prepare_model(module)`` (moves it
    to the device and wraps it for data-parallel training when several workers run). ``progress``
    (optional) hears every epoch on the writing rank, saved or not: ``progress(epoch, metrics, final)``
    (``final``: the epoch that writes the artifact); a sweep's trial relays it to its scheduler.
    """

    rank: int
    world_size: int
    device: torch.device
    report: Callable[[dict[str, Any], str | None], None]
    latest_checkpoint: Callable[[], AbstractContextManager[str | None]]
    prepare_model: Callable[[nn.Module], nn.Module]
    progress: Callable[[int, dict[str, Any], bool], None] | None = None

    @property
    def is_writer(self) -> bool:
        return self.rank == 0


def seed_worker(worker: Worker, *, seed: int) -> None:
    """Seed this rank's generators (distinct per rank)."""
    torch.manual_seed(seed * 1000 + worker.rank)


class LocalRun:
    """A single-process stage run without Ray: reported checkpoints are copied under ``folder``
    (``checkpoint_<n>``, each complete before it gets its name), the latest is the one to resume from,
    and reported metrics are kept. ``keep``: how many checkpoints stay (None: all); ``progress``: the
    worker's per-epoch hook (``Worker.progress``). ``searchlab.train.launch`` runs a stage's local
    launch with one, tests and benchmarks use it directly."""

    def __init__(self, folder: str | Path, *, device: str = "cpu", keep: int | None = None,
                 progress: Callable[[int, dict[str, Any], bool], None] | None = None) -> None:
        if keep is not None and keep < 1:
            raise ValueError(f"LocalRun keep={keep}: keep at least the latest checkpoint (1), or all (None)")
        self.folder = Path(folder)
        self.device = torch.device(device)
        self.keep = keep
        self.progress = progress
        self.reports: list[dict[str, Any]] = []
        self.checkpoints = sorted(self.folder.glob("checkpoint_[0-9]*"), key=lambda path: int(path.name.split("_")[1]))

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        self.reports.append(dict(metrics))
        if checkpoint_dir is not None:
            number = int(self.checkpoints[-1].name.split("_")[1]) + 1 if self.checkpoints else 0
            target = self.folder / f"checkpoint_{number}"
            partial = self.folder / f".partial-checkpoint_{number}"  # a copy cut short is never resumed from
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(checkpoint_dir, partial)
            partial.rename(target)
            self.checkpoints.append(target)
            while self.keep is not None and len(self.checkpoints) > self.keep:
                shutil.rmtree(self.checkpoints.pop(0))

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[str | None]:
        yield str(self.checkpoints[-1]) if self.checkpoints else None

    def worker(self) -> Worker:
        return Worker(rank=0, world_size=1, device=self.device, report=self.report,
                      latest_checkpoint=self.latest_checkpoint, prepare_model=lambda model: model.to(self.device),
                      progress=self.progress)


def gather_objects(worker: Worker, value: Any) -> list[Any]:
    """``value`` of every rank, in rank order (a one-element list with a single worker)."""
    if worker.world_size == 1:
        return [value]
    gathered: list[Any] = [None] * worker.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def resume(
    worker: Worker,
    *,
    models: Mapping[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> tuple[int, dict[str, Any]]:
    """Restore from the run's latest checkpoint: (epochs already done, stage extras); (0, {}) if fresh.

    Models and optimizer get their saved states, and this rank its saved RNG state. If the run
    restarts with another number of workers, the RNG states cannot be matched to ranks: each rank
    is then reseeded from the epoch (training continues, but not bit-identically).
    """
    with worker.latest_checkpoint() as path:
        if path is None:
            return 0, {}
        state = load_training_state(path)
    for name, model in models.items():
        model.load_state_dict(state["models"][name])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng_states = state["rng_states"]
    if len(rng_states) == worker.world_size:
        restore_rng_state(rng_states[worker.rank])
    else:
        torch.manual_seed(state["epoch"] * 1000 + worker.rank)
    return int(state["epoch"]), dict(state["extra"])


def check_finite(*, stage: str, epoch: int, metrics: Mapping[str, Any], models: Mapping[str, nn.Module]) -> None:
    """Raise ``Diverged`` naming the first non-finite number among the epoch's scalars and weights.

    Every rank sees the same values (scalars are means over all ranks, DDP keeps weights equal), so
    every rank stops at the same epoch and no rank waits for the others at a barrier.
    """
    for name, value in metrics.items():
        if isinstance(value, (int, float)) and not math.isfinite(value):
            raise Diverged(f"{name} became {value} at epoch {epoch} of {stage}; lower the learning rate "
                           "or the loss weights of this configuration")
    for model_name, model in models.items():
        for name, tensor in unwrap(model).state_dict().items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise Diverged(f"weight {model_name}.{name} became non-finite at epoch {epoch} of {stage}; lower "
                               "the learning rate or the loss weights of this configuration")


def checkpoint_epoch(
    worker: Worker,
    *,
    stage: str,
    epoch: int,
    metrics: Mapping[str, Any],
    models: Mapping[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    extra: Mapping[str, Any],
    write_artifact: Callable[[Path], None] | None = None,
    inject_failure_after_epoch: int | None = None,
    save: bool = True,
    epochs: int | None = None,
) -> None:
    """Checkpoint after ``epoch`` completed epochs (1-based count) and report ``metrics``.

    ``save=False`` does nothing: on tiny epochs a checkpoint, and even a bare report (a barrier
    with Ray Train's controller), costs more than the epoch, so stages report and save every
    ``checkpoint_every`` epochs (and always the last); TensorBoard still gets every epoch.

    ``write_artifact(folder)`` (rank 0, last epoch) fills the artifact folder inside the checkpoint.
    ``inject_failure_after_epoch``: raise ``InjectedFailure`` once that many epochs are saved.
    ``worker.progress`` (if set) hears every epoch on the writing rank, saved or not, with the stage's
    epoch count ``epochs`` (if given) added to the metrics as ``"epochs"`` (``searchlab.progress``: k/N, ETA).
    A non-finite scalar or weight raises ``Diverged`` before anything is saved (``check_finite``).
    """
    check_finite(stage=stage, epoch=epoch, metrics=metrics, models=models)
    if worker.progress is not None and worker.is_writer:
        heard = {**metrics, "epochs": epochs} if epochs is not None else dict(metrics)
        worker.progress(epoch, heard, write_artifact is not None)
    if not save:
        return
    rng_states = gather_objects(worker, capture_rng_state())
    if worker.is_writer:
        with tempfile.TemporaryDirectory(prefix="searchlab-ckpt-") as folder:
            save_training_state(
                folder,
                epoch=epoch,
                models=models,
                optimizer=optimizer,
                scheduler=scheduler,
                rng_states=rng_states,
                extra=extra,
            )
            if write_artifact is not None:
                write_artifact(Path(folder) / ARTIFACT_DIR)
            worker.report(dict(metrics), folder)
    else:
        worker.report(dict(metrics), None)
    if inject_failure_after_epoch is not None and epoch == inject_failure_after_epoch:
        raise InjectedFailure(f"failure injected on purpose after epoch {epoch} (inject_failure_after_epoch)")


def run_epoch(
    worker: Worker,
    batches: Iterable[Mapping[str, torch.Tensor]],
    step: Callable[[int, Mapping[str, torch.Tensor]], Mapping[str, torch.Tensor]],
) -> dict[str, float]:
    """Run ``step(iteration, batch)`` over the batches; mean of its terms over every rank's batches.

    Also measures throughput: ``epoch_seconds``, ``clips_per_second`` (all ranks) and ``data_wait_fraction``, the
    share of the epoch's wall time spent waiting for the next batch (the loader must keep up).
    """
    sums: dict[str, float] = {}
    steps = clips = 0
    wait = 0.0
    start = time.perf_counter()
    iterator = iter(batches)
    while True:
        before = time.perf_counter()
        batch = next(iterator, None)
        wait += time.perf_counter() - before
        if batch is None:
            break
        for name, value in step(steps, batch).items():
            sums[name] = sums.get(name, 0.0) + float(value)
        steps += 1
        clips += len(batch["label"])
    elapsed = time.perf_counter() - start
    totals = gather_objects(worker, (sums, steps, clips, wait, elapsed))
    all_steps = sum(t[1] for t in totals)
    means = {name: sum(t[0].get(name, 0.0) for t in totals) / max(all_steps, 1) for name in sums}
    longest = max(t[4] for t in totals)
    means["epoch_seconds"] = longest
    means["clips_per_second"] = sum(t[2] for t in totals) / max(longest, 1e-9)
    means["data_wait_fraction"] = sum(t[3] for t in totals) / max(sum(t[4] for t in totals), 1e-9)
    return means
