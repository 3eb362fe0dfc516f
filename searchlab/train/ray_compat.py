"""The one place that calls Ray Train's in-loop APIs (report, checkpoint, context, device, DDP).

Ray Train's reporting and checkpoint calls changed between versions (Ray 2.60 runs Ray Train V2
by default: ``ray.train.report(metrics, checkpoint=...)`` is a barrier every worker must reach the
same number of times, ``ray.train.get_checkpoint()`` returns the latest reported checkpoint of a
run restarted with the same ``RunConfig(storage_path, name)``). Keeping every such call here means
a Ray upgrade touches one small module, and the stage loops stay plain PyTorch around these few
functions.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import ray.train
import ray.train.torch
import torch
from torch import nn

from searchlab.train.worker import Worker

__all__ = [
    "device",
    "in_tune_trial",
    "latest_checkpoint_dir",
    "prepare_model",
    "report",
    "result_checkpoint_dir",
    "worker",
    "world_rank",
    "world_size",
]


def world_rank() -> int:
    """This worker's rank in the stage's worker group (0 writes checkpoints, logs and artifacts)."""
    return ray.train.get_context().get_world_rank()


def world_size() -> int:
    """Number of workers of the stage (DDP when > 1)."""
    return ray.train.get_context().get_world_size()


def device() -> torch.device:
    """The device Ray Train assigned to this worker (CPU, or its GPU when use_gpu)."""
    return ray.train.torch.get_device()


def prepare_model(model: nn.Module) -> nn.Module:
    """Move to this worker's device and wrap in DistributedDataParallel when several workers run."""
    return ray.train.torch.prepare_model(model)


def report(metrics: dict[str, Any], checkpoint_dir: str | os.PathLike[str] | None = None) -> None:
    """Report metrics (and, from the writing rank, a checkpoint folder); every rank must call it.

    The folder is copied into the run's storage; the caller may delete it afterwards.
    """
    checkpoint = ray.train.Checkpoint.from_directory(os.fspath(checkpoint_dir)) if checkpoint_dir else None
    ray.train.report(metrics, checkpoint=checkpoint)


@contextlib.contextmanager
def latest_checkpoint_dir() -> Iterator[str | None]:
    """Local folder of the latest reported checkpoint of this run, or None on a fresh start."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as path:
        yield path


@contextlib.contextmanager
def result_checkpoint_dir(result: Any) -> Iterator[str]:
    """Local folder of the final checkpoint of a finished ``trainer.fit()`` result."""
    if result.checkpoint is None:
        raise RuntimeError("the stage finished without reporting a checkpoint; see the worker logs above")
    with result.checkpoint.as_directory() as path:
        yield path


def in_tune_trial() -> bool:
    """Whether this process runs a Ray Tune trial's function (a sweep's trial).

    There, Ray 2.60 refuses Ray Train's in-loop calls (``ray.train.report``, ``get_context``,
    ``get_checkpoint`` raise DeprecationWarning in a Tune session), also under Train's local mode
    (``ScalingConfig(num_workers=0)``): a stage launched locally in a trial gets its context from
    ``searchlab.train.worker.LocalRun`` instead (``searchlab.train.launch``).
    """
    from ray.tune.trainable.trainable_fn_utils import _in_tune_session

    return bool(_in_tune_session())


def worker() -> Worker:
    """The stage loop's context inside a Ray Train worker."""
    return Worker(rank=world_rank(), world_size=world_size(), device=device(), report=report,
                  latest_checkpoint=latest_checkpoint_dir, prepare_model=prepare_model)
