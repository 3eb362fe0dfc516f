"""VideoIQ's deployable bundle: ``backbone.pt`` (the any-precision backbone: shared weights, per-bit
BatchNorm and PACT α) and ``policy.pt`` beside the generic files (searchlab.deploy), loaded into a
network that runs only the chosen precision per frame; and its measurement from decoded videos."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from searchlab.deploy import check_clip, load_weights
from searchlab.methods.videoiq.evaluate import videoiq_costs, videoiq_metrics, videoiq_price
from searchlab.models import PolicyNetwork, VideoIQ, create_backbone
from searchlab.train.evaluate import video_outputs

__all__ = ["BUNDLE_FILES", "DeployedVideoIQ", "card_rows", "load_bundle", "measure"]

#: bundle file -> (stage, file in that stage's artifact)
BUNDLE_FILES: Mapping[str, tuple[str, str]] = {"backbone.pt": ("stage1", "backbone.pt"),
                                               "policy.pt": ("stage2", "policy.pt")}


@dataclass
class DeployedVideoIQ:
    """A VideoIQ network ready for inference: `predict` runs the policy, then per frame only the
    chosen precision (skipped frames run nothing)."""

    model: VideoIQ
    config: Any  # searchlab.config.TrialConfig
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
        check_clip(frames, frames_per_clip=self.config.data.frames, size=self.config.data.crop_size)


def load_bundle(folder: Path, *, config: Any, class_names: tuple[str, ...], card: dict,
                device: str = "cpu") -> DeployedVideoIQ:
    model_cfg = config.model
    backbone = create_backbone(model_cfg.backbone, num_classes=len(class_names), bit_widths=model_cfg.bit_widths,
                               alpha_init=config.stage1.alpha.init)
    policy = PolicyNetwork(num_actions=len(config.stage2.decision_space), input_size=model_cfg.policy_input_size,
                           hidden_size=model_cfg.policy_hidden, width_mult=model_cfg.policy_width_mult)
    load_weights(backbone, folder / "backbone.pt", device=device)
    load_weights(policy, folder / "policy.pt", device=device)
    model = VideoIQ(backbone=backbone, policy=policy, decision_space=config.stage2.decision_space).to(device).eval()
    return DeployedVideoIQ(model=model, config=config, class_names=class_names, card=card)


def measure(deployed: DeployedVideoIQ, dataset: Any, *, device: torch.device, loader_workers: int,
            multi_label: bool) -> dict[str, Any]:
    """Every video of ``dataset`` through the inference path, priced from the decisions taken."""
    config, model = deployed.config, deployed.model
    costs = videoiq_costs(model, backbone=config.model.backbone, size=config.data.crop_size)
    outputs = video_outputs(model, dataset, videos=range(len(dataset) // dataset.num_clips),
                            mode=config.stage2.eval_mode, seed=config.seed,
                            price=videoiq_price(costs, decision_space=model.decision_space),
                            device=device, loader_workers=loader_workers)
    return videoiq_metrics(outputs, decision_space=model.decision_space, class_names=deployed.class_names,
                           multi_label=multi_label, memory_mb=costs.memory_mb)


def card_rows(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """card.md's VideoIQ lines, from the configuration tree."""
    return [("backbone", f"{config['model']['backbone']}, bit-widths {config['model']['bit_widths']}"),
            ("decision space", str(config['stage2']['decision_space']))]
