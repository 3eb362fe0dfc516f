"""What VA-RED²'s stage loops share: their ``loop_config`` and the training data.

Every loop is ``loop(loop_config, worker)`` (Ray-free; ``searchlab.train.worker``). ``loop_config``
keys read by all of them: ``vared`` (VaredConfig) and those of ``searchlab.train.loop_inputs``; the
fine-tune loop also reads ``dynamic_dir`` (the dynamic stage's artifact).
"""

from __future__ import annotations

from dataclasses import dataclass

from searchlab.methods.vared.config import VaredConfig
from searchlab.train.loader import TrainData, train_split
from searchlab.train.loop_inputs import SectionLoopInputs
from searchlab.train.worker import Worker

__all__ = ["LoopInputs", "TrainData", "train_data"]


@dataclass(frozen=True)
class LoopInputs(SectionLoopInputs[VaredConfig]):
    """The keys every VA-RED² loop reads from ``loop_config`` (``searchlab.train.loop_inputs``)."""

    METHOD = "vared"
    SECTION = VaredConfig
    STAGE_NAME = "a VA-RED² stage"

    @property
    def vared(self) -> VaredConfig:
        return self.section


def train_data(inputs: LoopInputs, worker: Worker, *, batch_size: int) -> TrainData:
    """The manifest and the training split's clips for this rank, without a short last batch (a
    gate's BatchNorm cannot train on one clip)."""
    return train_split(inputs.data, seed=inputs.seed, rank=worker.rank, world_size=worker.world_size,
                       batch_size=batch_size, pin_memory=worker.device.type == "cuda", drop_last=True)
