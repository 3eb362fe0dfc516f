"""What VA-RED²'s stage loops share: their ``loop_config`` and the training data.

Every loop is ``loop(loop_config, worker)`` (Ray-free; ``searchlab.train.worker``). ``loop_config``
keys read by all of them: ``vared`` (VaredConfig), ``data`` (searchlab.config.DataConfig), ``seed``,
``log_dir`` (TensorBoard folder), ``eval_every`` (optional: also evaluate every that many epochs),
``inject_failure_after_epoch`` (optional, tests of resumption); the fine-tune loop also reads
``dynamic_dir`` (the dynamic stage's artifact).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from searchlab.config import DataConfig
from searchlab.methods.vared.config import VaredConfig
from searchlab.train.loader import TrainData, train_split
from searchlab.train.worker import Worker

__all__ = ["LoopInputs", "TrainData", "train_data"]


@dataclass(frozen=True)
class LoopInputs:
    """The keys every VA-RED² loop reads from ``loop_config``."""

    vared: VaredConfig
    data: DataConfig
    seed: int
    log_dir: str
    eval_every: int | None
    inject_failure_after_epoch: int | None

    @classmethod
    def parse(cls, loop_config: dict[str, Any], *, needs: tuple[str, ...] = ()) -> LoopInputs:
        required = ("vared", "data", "seed", "log_dir", *needs)
        missing = [key for key in required if key not in loop_config]
        if missing:
            raise KeyError(f"loop_config lacks {missing}; a VA-RED² stage needs {list(required)}")
        if not isinstance(loop_config["vared"], VaredConfig):
            raise TypeError(f"loop_config['vared'] must be a VaredConfig, got {type(loop_config['vared']).__name__}")
        return cls(vared=loop_config["vared"], data=loop_config["data"], seed=int(loop_config["seed"]),
                   log_dir=str(loop_config["log_dir"]), eval_every=loop_config.get("eval_every"),
                   inject_failure_after_epoch=loop_config.get("inject_failure_after_epoch"))

    def evaluates(self, epoch: int, *, epochs: int) -> bool:
        """Whether the epoch (0-based) ends with an evaluation: the last, and every ``eval_every``."""
        return epoch + 1 == epochs or bool(self.eval_every and (epoch + 1) % self.eval_every == 0)

    def artifact_config(self, *, stage: str) -> dict[str, Any]:
        """``config.yaml`` of the artifact: what the stage was trained with."""
        return {"method": "vared", "stage": stage, "seed": self.seed, "data": self.data.model_dump(mode="json"),
                "vared": self.vared.model_dump(mode="json")}


def train_data(inputs: LoopInputs, worker: Worker, *, batch_size: int) -> TrainData:
    """The manifest and the training split's clips for this rank, without a short last batch (a
    gate's BatchNorm cannot train on one clip)."""
    return train_split(inputs.data, seed=inputs.seed, rank=worker.rank, world_size=worker.world_size,
                       batch_size=batch_size, pin_memory=worker.device.type == "cuda", drop_last=True)
