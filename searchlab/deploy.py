"""Load a bundle exported by `searchlab.pick` into a model that runs only the chosen precision.

A bundle is a folder with `config.yaml` (the trial's resolved configuration), `backbone.pt` (the
any-precision backbone: one set of shared weights, per-bit BN and PACT α), `policy.pt` (the policy
network), `card.json` / `card.md` (accuracy, GFLOPs, memory, action usage) and `classes.json`.
`load(DIR)` needs torch and torchvision only: no Ray, no Optuna, no training code.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
import yaml
from torch import Tensor

from searchlab.config import TrialConfig
from searchlab.models import PolicyNetwork, VideoIQ, create_backbone

T = TypeVar("T")

BUNDLE_FILES = ("config.yaml", "backbone.pt", "policy.pt", "card.json", "card.md", "classes.json")


class BundleError(ValueError):
    """A bundle folder that cannot be loaded; the message names the file and the fix."""


@dataclass
class DeployedVideoIQ:
    """A VideoIQ network ready for inference: `predict` runs the policy, then per frame only the
    chosen precision (skipped frames run nothing)."""

    model: VideoIQ
    config: TrialConfig
    class_names: tuple[str, ...]
    card: dict

    @torch.no_grad()
    def predict(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """frames (N, T, 3, H, W), ImageNet-normalised -> (class probabilities (N, C), actions (N, T, |Ω|))."""
        self.check_input(frames)
        logits, actions = self.model.infer(frames, mode=self.config.stage2.eval_mode)
        return logits.softmax(dim=-1), actions

    def check_input(self, frames: Tensor) -> None:
        """The input contract the network was trained and evaluated with; a ValueError says what differs."""
        data = self.config.data
        expected = f"a float tensor (N, {data.frames}, 3, {data.crop_size}, {data.crop_size}), ImageNet-normalised"
        if not isinstance(frames, Tensor):
            raise ValueError(f"frames must be {expected}; got {type(frames).__name__}")
        if frames.dim() != 5 or tuple(frames.shape[1:]) != (data.frames, 3, data.crop_size, data.crop_size):
            raise ValueError(f"frames must be {expected}; got shape {tuple(frames.shape)} "
                             "(the network was trained on this many frames of this size)")
        if not frames.is_floating_point():
            raise ValueError(f"frames must be {expected}; got dtype {frames.dtype} (convert uint8 pixels with "
                             "(x / 255 - mean) / std)")
        if not torch.isfinite(frames).all():
            raise ValueError(f"frames must be {expected}; the input holds NaN or infinite values")


def load(directory: str | Path, *, device: str = "cpu") -> DeployedVideoIQ:
    """Build the bundle's VideoIQ network from its weights (loaded with weights_only=True).

    A missing or broken file raises ``BundleError`` naming it.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise BundleError(f"{folder} is not a folder; export a bundle with `python -m searchlab.pick RUN_DIR --knee --out DIR`")
    missing = [name for name in BUNDLE_FILES if not (folder / name).is_file()]
    if missing:
        raise BundleError(
            f"{folder} is not a complete searchlab bundle: missing {missing}; export one with "
            "`python -m searchlab.pick RUN_DIR --knee --out DIR`"
        )
    config = _read(folder / "config.yaml", lambda text: TrialConfig.model_validate(yaml.safe_load(text)))
    class_names = tuple(_read(folder / "classes.json", _class_names))
    card = _read(folder / "card.json", json.loads)
    model_cfg = config.model
    backbone = create_backbone(model_cfg.backbone, num_classes=len(class_names), bit_widths=model_cfg.bit_widths,
                               alpha_init=config.stage1.alpha.init)
    policy = PolicyNetwork(num_actions=len(config.stage2.decision_space), input_size=model_cfg.policy_input_size,
                           hidden_size=model_cfg.policy_hidden, width_mult=model_cfg.policy_width_mult)
    for module, name in ((backbone, "backbone.pt"), (policy, "policy.pt")):
        path = folder / name
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as error:
            # torch's own message suggests weights_only=False, which would run whatever the file holds
            raise BundleError(f"{path} is not a readable weights file (damaged, or not written by searchlab: "
                              f"{type(error).__name__}); export the bundle again with `python -m searchlab.pick`") from error
        try:
            module.load_state_dict(state)
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0]
            raise BundleError(f"{path} does not load into the network config.yaml describes ({first}); "
                              "export the bundle again with `python -m searchlab.pick`") from error
    model = VideoIQ(backbone=backbone, policy=policy, decision_space=config.stage2.decision_space).to(device).eval()
    return DeployedVideoIQ(model=model, config=config, class_names=class_names, card=card)


def _class_names(text: str) -> list[str]:
    names = json.loads(text)
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names) or not names:
        raise ValueError("expected a non-empty JSON list of class names")
    return names


def _read(path: Path, parse: Callable[[str], T]) -> T:
    """``parse`` of a bundle file's text; any failure becomes a BundleError naming the file."""
    try:
        return parse(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, yaml.YAMLError, TypeError) as error:
        detail = " ".join(str(error).split())[:300]
        raise BundleError(f"{path} is broken ({type(error).__name__}: {detail}); export the bundle again "
                          "with `python -m searchlab.pick`") from error
