"""From the ``vared`` section to networks, and from stage artifacts back to networks.

The network classes take explicit keyword arguments; these functions are the config layer's side of
that contract and the one place that knows the artifact file names.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from searchlab.methods.vared.config import VaredConfig
from searchlab.methods.vared.network import VaredNetwork

__all__ = ["BASE_FILE", "MODEL_FILE", "build_network", "load_network"]

#: The base network's artifact (the network without gates).
BASE_FILE = "base.pt"
#: The dynamic network's artifact (stages dynamic and finetune).
MODEL_FILE = "vared.pt"

PathLike = str | os.PathLike[str]


def build_network(config: VaredConfig, *, num_classes: int, frames: int, size: int, gates: bool = True) -> VaredNetwork:
    """The dynamic network of ``config`` for clips of ``frames`` × ``size``², or (``gates=False``)
    its base network: the same backbone with no gate and no alternative."""
    return VaredNetwork(
        backbone=config.backbone, num_classes=num_classes, frames=frames, size=size, gated=config.gated,
        temporal_options=config.temporal_options if gates else 1,
        channel_options=config.channel_options if gates else 1,
        gate_hidden=config.gate_hidden, beta_init=config.beta_init, cheap_op=config.cheap_op,
        zero_gate=config.zero_gate,
    )


def load_network(
    folder: PathLike, *, config: VaredConfig, num_classes: int, frames: int, size: int, gates: bool = True,
    device: str | torch.device = "cpu",
) -> VaredNetwork:
    """The network of a stage artifact (``vared.pt``, or ``base.pt`` with ``gates=False``), read with
    weights_only=True."""
    with torch.random.fork_rng(devices=[]):  # fresh weights are overwritten; keep the caller's generator
        network = build_network(config, num_classes=num_classes, frames=frames, size=size, gates=gates)
    path = Path(folder) / (MODEL_FILE if gates else BASE_FILE)
    network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return network.to(device)
