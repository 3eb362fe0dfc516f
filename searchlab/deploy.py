"""Load a bundle exported by `searchlab.pick` into a model that runs only the chosen precision.

A bundle is a folder with `config.yaml` (the trial's resolved configuration), `backbone.pt` (the
any-precision backbone: one set of shared weights, per-bit BN and PACT α), `policy.pt` (the policy
network), `card.json` / `card.md` (accuracy, GFLOPs, memory, action usage) and `classes.json`.
`load(DIR)` needs torch and torchvision only: no Ray, no Optuna, no training code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import Tensor

from searchlab.config import TrialConfig
from searchlab.models import PolicyNetwork, VideoIQ, create_backbone

BUNDLE_FILES = ("config.yaml", "backbone.pt", "policy.pt", "card.json", "card.md", "classes.json")


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
        logits, actions = self.model.infer(frames, mode=self.config.stage2.eval_mode)
        return logits.softmax(dim=-1), actions


def load(directory: str | Path, *, device: str = "cpu") -> DeployedVideoIQ:
    """Build the bundle's VideoIQ network from its weights (loaded with weights_only=True)."""
    folder = Path(directory)
    missing = [name for name in BUNDLE_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a complete searchlab bundle: missing {missing}; export one with "
            "`python -m searchlab.pick RUN_DIR --knee --out DIR`"
        )
    config = TrialConfig.model_validate(yaml.safe_load((folder / "config.yaml").read_text()))
    class_names = tuple(json.loads((folder / "classes.json").read_text()))
    model_cfg = config.model
    backbone = create_backbone(model_cfg.backbone, num_classes=len(class_names), bit_widths=model_cfg.bit_widths,
                               alpha_init=config.stage1.alpha.init)
    backbone.load_state_dict(torch.load(folder / "backbone.pt", map_location=device, weights_only=True))
    policy = PolicyNetwork(num_actions=len(config.stage2.decision_space), input_size=model_cfg.policy_input_size,
                           hidden_size=model_cfg.policy_hidden, width_mult=model_cfg.policy_width_mult)
    policy.load_state_dict(torch.load(folder / "policy.pt", map_location=device, weights_only=True))
    model = VideoIQ(backbone=backbone, policy=policy, decision_space=config.stage2.decision_space).to(device).eval()
    card = json.loads((folder / "card.json").read_text())
    return DeployedVideoIQ(model=model, config=config, class_names=class_names, card=card)
