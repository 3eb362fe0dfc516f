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
from typing import Any

import torch
from torch import Tensor

from searchlab.config import DataConfig
from searchlab.methods.arnet.config import ARNetConfig
from searchlab.train.loader import TrainData, train_split
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


def train_data(inputs: LoopInputs, worker: Worker, *, batch_size: int) -> TrainData:
    """The manifest and the training split's TSN clips for this rank."""
    return train_split(inputs.data, seed=inputs.seed, rank=worker.rank, world_size=worker.world_size,
                       batch_size=batch_size, pin_memory=worker.device.type == "cuda")


def clip_norm(parameters: list[torch.nn.Parameter], *, max_norm: float) -> Tensor:
    """Clip the global gradient norm (the official code's 20) and return it before clipping."""
    return torch.nn.utils.clip_grad_norm_([p for p in parameters if p.grad is not None], max_norm)
