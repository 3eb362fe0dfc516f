"""What AR-Net's three stage loops share: their ``loop_config``, data loaders, the artifact config.

Every loop is ``loop(loop_config, worker)`` (Ray-free; ``searchlab.train.worker``). ``loop_config``
keys read by all of them: ``arnet`` (ARNetConfig) and those of ``searchlab.train.loop_inputs``; and
per stage: ``resolution_index`` (backbone), ``backbone_dirs`` and optional ``policy_weights``
(joint), ``joint_dir`` (fine-tune).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from searchlab.methods.arnet.config import ARNetConfig
from searchlab.train.loader import TrainData, train_split
from searchlab.train.loop_inputs import SectionLoopInputs
from searchlab.train.worker import Worker

__all__ = ["LoopInputs", "TrainData", "clip_norm", "train_data"]


@dataclass(frozen=True)
class LoopInputs(SectionLoopInputs[ARNetConfig]):
    """The keys every AR-Net loop reads from ``loop_config`` (``searchlab.train.loop_inputs``)."""

    METHOD = "arnet"
    SECTION = ARNetConfig
    STAGE_NAME = "an AR-Net stage"

    @property
    def arnet(self) -> ARNetConfig:
        return self.section


def train_data(inputs: LoopInputs, worker: Worker, *, batch_size: int) -> TrainData:
    """The manifest and the training split's TSN clips for this rank."""
    return train_split(inputs.data, seed=inputs.seed, rank=worker.rank, world_size=worker.world_size,
                       batch_size=batch_size, pin_memory=worker.device.type == "cuda")


def clip_norm(parameters: list[torch.nn.Parameter], *, max_norm: float) -> Tensor:
    """Clip the global gradient norm (the official code's 20) and return it before clipping."""
    return torch.nn.utils.clip_grad_norm_([p for p in parameters if p.grad is not None], max_norm)
