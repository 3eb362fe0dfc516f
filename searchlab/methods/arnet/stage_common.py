"""What AR-Net's three stage loops share: their ``loop_config``, data loaders, the artifact config.

Every loop is ``loop(loop_config, worker)`` (Ray-free; ``searchlab.train.worker``). ``loop_config``
keys read by all of them:

* ``arnet`` (ARNetConfig), ``data`` (searchlab.config.DataConfig), ``seed`` (int),
* ``log_dir`` (TensorBoard folder), ``eval_every`` (optional: also evaluate on val every that many
  epochs, for the curves; the last epoch always evaluates), ``inject_failure_after_epoch``
  (optional, tests of resumption),

and per stage: ``resolution_index`` (backbone), ``backbone_dirs`` and optional ``policy_weights``
(joint), ``joint_dir`` (fine-tune).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from searchlab.config import DataConfig
from searchlab.data.manifest import Manifest
from searchlab.data.video import VideoClipDataset
from searchlab.methods.arnet.config import ARNetConfig
from searchlab.train.loader import EpochSampler, clip_dataset, load_manifest, make_loader
from searchlab.train.worker import Worker

__all__ = ["LoopInputs", "TrainData", "clip_norm", "train_data"]


@dataclass(frozen=True)
class LoopInputs:
    """The keys every AR-Net loop reads from ``loop_config``."""

    arnet: ARNetConfig
    data: DataConfig
    seed: int
    log_dir: str
    eval_every: int | None
    inject_failure_after_epoch: int | None

    @classmethod
    def parse(cls, loop_config: dict[str, Any], *, needs: tuple[str, ...] = ()) -> LoopInputs:
        required = ("arnet", "data", "seed", "log_dir", *needs)
        missing = [key for key in required if key not in loop_config]
        if missing:
            raise KeyError(f"loop_config lacks {missing}; an AR-Net stage needs {list(required)}")
        if not isinstance(loop_config["arnet"], ARNetConfig):
            raise TypeError(f"loop_config['arnet'] must be an ARNetConfig, got {type(loop_config['arnet']).__name__}")
        return cls(arnet=loop_config["arnet"], data=loop_config["data"], seed=int(loop_config["seed"]),
                   log_dir=str(loop_config["log_dir"]), eval_every=loop_config.get("eval_every"),
                   inject_failure_after_epoch=loop_config.get("inject_failure_after_epoch"))

    def evaluates(self, epoch: int, *, epochs: int) -> bool:
        """Whether the epoch (0-based) ends with an evaluation: the last, and every ``eval_every``."""
        return epoch + 1 == epochs or bool(self.eval_every and (epoch + 1) % self.eval_every == 0)

    def artifact_config(self, *, stage: str, **extra: Any) -> dict[str, Any]:
        """``config.yaml`` of the artifact: what the stage was trained with (data paths made
        portable by ``write_artifact``)."""
        return {"method": "arnet", "stage": stage, "seed": self.seed, "data": self.data.model_dump(mode="json"),
                "arnet": self.arnet.model_dump(mode="json"), **extra}


@dataclass
class TrainData:
    """This rank's training batches; ``epoch(e)`` sets the data order and augmentation of epoch e."""

    manifest: Manifest
    root: Path
    dataset: VideoClipDataset
    sampler: EpochSampler
    loader: DataLoader

    def epoch(self, epoch: int) -> DataLoader:
        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)
        return self.loader

    def __len__(self) -> int:
        return len(self.loader)


def train_data(inputs: LoopInputs, worker: Worker, *, batch_size: int) -> TrainData:
    """The manifest and the training split's TSN clips for this rank."""
    manifest, root = load_manifest(inputs.data)
    dataset = clip_dataset(inputs.data, manifest=manifest, root=root, split="train", train=True, seed=inputs.seed)
    sampler = EpochSampler(len(dataset), rank=worker.rank, world_size=worker.world_size, shuffle=True, seed=inputs.seed)
    loader = make_loader(dataset, sampler=sampler, batch_size=batch_size, workers=inputs.data.loader_workers,
                         pin_memory=worker.device.type == "cuda")
    return TrainData(manifest=manifest, root=root, dataset=dataset, sampler=sampler, loader=loader)


def clip_norm(parameters: list[torch.nn.Parameter], *, max_norm: float) -> Tensor:
    """Clip the global gradient norm (the official code's 20) and return it before clipping."""
    return torch.nn.utils.clip_grad_norm_([p for p in parameters if p.grad is not None], max_norm)
