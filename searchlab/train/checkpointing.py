"""Training state that makes a stage resumable exactly, and the finished stage's artifact.

A checkpoint holds everything the next epoch depends on: model and optimizer state dicts, the lr
schedule, the epoch count, stage-specific values (τ, the training phase) and the RNG states of
every rank (Gumbel noise and dropout draw from torch's global generator). The data order and the
augmentation draws do not need saving: they are functions of (seed, epoch, index) (see
``loader.py``). Everything is saved as tensors and plain Python values so it loads with
``torch.load(weights_only=True)``.

An artifact is what later stages and the sweep read: weights-only state dicts, ``metrics.json``
and the resolved ``config.yaml``, published into the caller's ``output_dir`` atomically. It names no
absolute path, so it can be moved or copied to another machine: ``config.yaml`` holds its paths
relative to the data root (``searchlab.run_dir.portable_config_yaml``) and ``sources.json`` names
the artifacts it was trained from relative to its own folder, once published.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from searchlab.atomic_dir import give_default_mode, staged_directory
from searchlab.run_dir import portable_config_yaml, relative_path

__all__ = [
    "STATE_FILE",
    "capture_rng_state",
    "load_training_state",
    "publish_directory",
    "read_artifact_metrics",
    "restore_rng_state",
    "save_training_state",
    "unwrap",
    "write_artifact",
]

STATE_FILE = "training_state.pt"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"
SOURCES_FILE = "sources.json"


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (state dict keys without 'module.')."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def capture_rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), NumPy and Python RNG states of this process."""
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "python": random.getstate(),
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of ``capture_rng_state``."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _atomic_torch_save(payload: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    torch.save(payload, tmp)
    give_default_mode(tmp)  # mkstemp made it 0600: weights copied into a bundle would stay private
    os.replace(tmp, path)


def save_training_state(
    directory: str | os.PathLike[str],
    *,
    epoch: int,
    models: Mapping[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    rng_states: list[dict[str, Any]],
    extra: Mapping[str, Any],
) -> Path:
    """Write the state after ``epoch`` completed epochs; ``rng_states`` has one entry per rank."""
    path = Path(directory) / STATE_FILE
    payload = {
        "epoch": epoch,
        "models": {name: unwrap(model).state_dict() for name, model in models.items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng_states": rng_states,
        "extra": dict(extra),
    }
    _atomic_torch_save(payload, path)
    return path


def load_training_state(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The payload of ``save_training_state`` (tensors are loaded onto the CPU)."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the checkpoint folder was not written by searchlab.train")
    return torch.load(path, map_location="cpu", weights_only=True)


def write_artifact(
    directory: str | os.PathLike[str],
    *,
    state_dicts: Mapping[str, Mapping[str, torch.Tensor]],
    metrics: Mapping[str, Any],
    config: Mapping[str, Any],
    sources: Mapping[str, str] | None = None,
) -> Path:
    """Write ``<name>.pt`` per state dict, ``metrics.json``, ``config.yaml`` into ``directory``,
    and ``sources.json`` naming the artifacts this one was trained from, if any.

    ``sources`` are absolute here: the artifact is written inside a checkpoint, and only
    `publish_directory` knows the folder they can be made relative to."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name, state_dict in state_dicts.items():
        _atomic_torch_save({k: v.detach().cpu() for k, v in state_dict.items()}, out / f"{name}.pt")
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True))
    (out / CONFIG_FILE).write_text(portable_config_yaml(config))
    if sources:
        (out / SOURCES_FILE).write_text(json.dumps(dict(sources), indent=2, sort_keys=True))
    return out


def read_artifact_metrics(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """``metrics.json`` of a published artifact."""
    return json.loads((Path(directory) / METRICS_FILE).read_text())


def publish_directory(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Copy folder ``source`` to ``target`` atomically: a complete copy or the previous one.

    The copy is made in a temp folder next to ``target`` and renamed into place. A previous
    ``target`` is first renamed aside and deleted after the swap, so readers never see a half
    written folder (for the instant between the two renames ``target`` is absent). The paths in
    ``sources.json`` become relative to ``target`` (the temp folder is its sibling, so they hold
    for both); read them with ``searchlab.run_dir.resolve_in(target, path)``.
    """
    with staged_directory(target) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        sources = staging / SOURCES_FILE
        if sources.is_file():
            relative = {name: relative_path(target, path) for name, path in json.loads(sources.read_text()).items()}
            sources.write_text(json.dumps(relative, indent=2, sort_keys=True))
    return Path(target)
