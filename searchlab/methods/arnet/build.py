"""From the ``arnet`` section to networks, and from stage artifacts back to networks.

The model classes take explicit keyword arguments; these functions are the config layer's side of
that contract (they read ``ARNetConfig``) and the one place that knows the artifact file names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from searchlab.methods.arnet.config import ARNetConfig
from searchlab.methods.arnet.model import ARNet
from searchlab.models import PolicyNetwork, create_teacher

__all__ = [
    "BACKBONE_FILE",
    "MODEL_FILE",
    "build_backbone",
    "build_model",
    "build_policy",
    "load_backbone_artifact",
    "load_model",
]

#: Stage 1's artifact: the torchvision state dict of one (backbone, resolution).
BACKBONE_FILE = "backbone.pt"
#: Stages 2 and 3: the whole ARNet state dict (backbones, policy, head).
MODEL_FILE = "arnet.pt"

PathLike = str | os.PathLike[str]


def build_backbone(config: ARNetConfig, *, index: int, num_classes: int) -> nn.Module:
    """Resolution ``index``'s torchvision network, from ``backbone_pretrained[index]`` if given.

    A pretrained state dict's fc is dropped when it was trained for another number of classes
    (ImageNet weights for a 200-class data set), as the paper's ImageNet initialisation needs.
    """
    net = create_teacher(config.backbones[index], num_classes=num_classes)
    path = config.backbone_pretrained[index] if config.backbone_pretrained else None
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if "fc.weight" in state and state["fc.weight"].shape != net.fc.weight.shape:
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        bad = [k for k in missing if not k.startswith("fc.")] + list(unexpected)
        if bad:
            raise ValueError(f"backbone_pretrained[{index}] {path} does not fit {config.backbones[index]}: keys "
                             f"{bad[:5]}; give a torchvision state dict of that architecture")
    return net


def build_policy(config: ARNetConfig, *, weights: PathLike | None = None) -> PolicyNetwork:
    """The policy; its MobileNetV2 from ``weights`` (else ``policy_pretrained``, else random)."""
    return PolicyNetwork(
        num_actions=config.num_actions,
        input_size=config.policy_input_size,
        hidden_size=config.policy_hidden,
        width_mult=config.policy_width_mult,
        dropout=config.dropout,
        feature_weights=weights if weights is not None else config.policy_pretrained,
    )


def build_model(
    config: ARNetConfig,
    *,
    num_classes: int,
    backbones: Sequence[nn.Module] | None = None,
    policy_weights: PathLike | None = None,
) -> ARNet:
    """An ARNet from the section; ``backbones`` (one per resolution) default to fresh ones."""
    if backbones is None:
        backbones = [build_backbone(config, index=i, num_classes=num_classes) for i in range(len(config.resolutions))]
    return ARNet(backbones=backbones, resolutions=config.resolutions, policy=build_policy(config, weights=policy_weights),
                 num_classes=num_classes, use_84=config.use_84, skips=config.skips, resize_mode=config.resize_mode)


def load_backbone_artifact(folder: PathLike, *, config: ARNetConfig, index: int, num_classes: int) -> nn.Module:
    """Stage 1's network for resolution ``index`` from its artifact folder, checked to be the
    (backbone, resolution) this configuration expects there."""
    folder = Path(folder)
    path = folder / BACKBONE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the AR-Net backbone stage for resolution index {index} first")
    expected = {"backbone": config.backbones[index], "resolution": config.resolutions[index]}
    recorded = json.loads((folder / "metrics.json").read_text())
    found = {key: recorded.get(key) for key in expected}
    if found != expected:
        raise ValueError(f"{folder} holds {found}, but resolution index {index} of this configuration needs {expected}; "
                         "pass the backbone artifacts in the order of arnet.resolutions")
    net = create_teacher(config.backbones[index], num_classes=num_classes)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net


def load_model(folder: PathLike, *, config: ARNetConfig, num_classes: int, device: str | torch.device = "cpu") -> ARNet:
    """The ARNet of a joint or fine-tune artifact, in eval mode on ``device``. The configuration's
    pretrained-weight files are not read (the artifact's weights replace them, and they need not
    exist where the artifact is loaded)."""
    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the AR-Net joint (or fine-tune) stage first")
    bare = config.model_copy(update={"backbone_pretrained": (), "policy_pretrained": None})
    with torch.random.fork_rng(devices=[]):  # fresh weights are overwritten; keep the caller's generator
        model = build_model(bare, num_classes=num_classes)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.to(device).eval()
