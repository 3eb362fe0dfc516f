"""VideoIQ's deployable bundle: ``backbone.pt`` (the any-precision backbone: shared weights, per-bit
BatchNorm and PACT α) and ``policy.pt`` beside the generic files (searchlab.deploy), loaded into a
network that runs only the chosen precision per frame; and its measurement from decoded videos.

``DeployedVideoIQ.predict(frames)`` takes clips already preprocessed (the input contract on the
bundle's card) and returns a ``Prediction``: it unpacks as (probabilities, actions) and also names
each clip's class (``labels``) and each frame's decision (``decisions``: "32b", "4b", "skip", ...).
``predict_video(path)`` decodes a video file the way evaluation does (``searchlab.data.eval_video``:
TSN or dense clips, short side, 1 or 3 crops, ImageNet normalisation, ``data.eval_clips`` ×
``data.eval_crops`` views) and gives the decision and prediction ``python -m searchlab.evaluate`` gets for that video."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from searchlab.data.eval_video import decode_video
from searchlab.deploy import check_clip, load_weights
from searchlab.methods.videoiq.evaluate import videoiq_costs, videoiq_metrics, videoiq_price
from searchlab.models import PolicyNetwork, VideoIQ, create_backbone
from searchlab.train.evaluate import video_outputs_each

__all__ = ["BUNDLE_FILES", "DeployedVideoIQ", "Prediction", "VideoIQVideoPrediction", "action_label", "card_rows",
           "load_bundle", "measure", "measure_curve"]

#: bundle file -> (stage, file in that stage's artifact)
BUNDLE_FILES: Mapping[str, tuple[str, str]] = {"backbone.pt": ("stage1", "backbone.pt"),
                                               "policy.pt": ("stage2", "policy.pt")}


def action_label(bits: int) -> str:
    """A decision's name: 32 -> "32b", 0 -> "skip" (the report's and the card's labels)."""
    return "skip" if int(bits) == 0 else f"{int(bits)}b"


class Prediction(tuple):
    """``predict``'s result: unpacks as ``(probabilities (N, C), actions (N, T, |Ω|) one-hot)`` and names
    them: ``labels[n]`` is clip n's most probable class, ``decisions[n][t]`` frame t's action label."""

    probabilities: Tensor
    actions: Tensor
    labels: list[str]
    decisions: list[list[str]]

    def __new__(cls, probabilities: Tensor, actions: Tensor, *, class_names: Sequence[str],
                decision_space: Sequence[int]) -> Prediction:  # fmt: skip
        self = super().__new__(cls, (probabilities, actions))
        self.probabilities, self.actions = probabilities, actions
        self.labels = [class_names[int(i)] for i in probabilities.argmax(dim=-1)]
        names = [action_label(b) for b in decision_space]
        self.decisions = [[names[int(k)] for k in clip] for clip in actions.argmax(dim=-1)]
        return self


class VideoIQVideoPrediction(NamedTuple):
    """``predict_video``'s result; its first three fields are AR-Net's ``VideoPrediction``'s."""

    probabilities: Tensor  # (1, C): softmax of each view's logits, averaged over the views (as evaluation)
    actions: Tensor  # (V, T, |Ω|): one-hot actions of each of the V = data.eval_clips × data.eval_crops views
    frames_decoded: int  # video frames decoded (K x T: the policy reads every sampled frame; crops share them)
    label: str  # the most probable class
    decisions: list[list[str]]  # per clip, per sampled frame: "32b", "4b", "2b" or "skip"


@dataclass
class DeployedVideoIQ:
    """A VideoIQ network ready for inference: `predict` runs the policy, then per frame only the
    chosen precision (skipped frames run nothing)."""

    model: VideoIQ
    config: Any  # searchlab.config.TrialConfig
    class_names: tuple[str, ...]
    card: dict

    @property
    def action_labels(self) -> list[str]:
        """The decisions in the order of ``actions``' last dimension: "32b", "4b", "2b", "skip"."""
        return [action_label(b) for b in self.model.decision_space]

    @torch.no_grad()
    def predict(self, frames: Tensor) -> Prediction:
        """frames (N, T, 3, H, W), ImageNet-normalised -> Prediction: (class probabilities (N, C),
        actions (N, T, |Ω|)), with ``labels`` and per-frame ``decisions``."""
        self.check_input(frames)
        logits, actions = self.model.infer(frames, mode=self.config.stage2.eval_mode)
        return Prediction(logits.softmax(dim=-1), actions, class_names=self.class_names,
                          decision_space=self.model.decision_space)

    def check_input(self, frames: Tensor) -> None:
        """The input contract the network was trained and evaluated with; a ValueError says what differs."""
        check_clip(frames, frames_per_clip=self.config.data.frames, size=self.config.data.crop_size)

    def decode_video(self, path: str | Path, *, size: tuple[int, int] | None = None) -> Tensor:
        """The evaluation views of a video file: float32 (data.eval_clips × data.eval_crops, T, 3, S, S), ready
        for ``predict``."""
        return decode_video(path, self.config.data, size=size)

    @torch.no_grad()
    def predict_video(self, path: str | Path, *, size: tuple[int, int] | None = None,
                      video_index: int | None = None) -> VideoIQVideoPrediction:  # fmt: skip
        """Decode ``path`` as evaluation does and classify it: the clips' probabilities averaged.

        ``size`` (width, height): the video's full frame size, as its manifest records it (else read
        from the file). With ``stage2.eval_mode: sample`` the policy draws its decisions from a generator
        seeded as evaluation seeds it for the video's row ``video_index`` in its split (required then).
        """
        clips = self.decode_video(path, size=size).to(next(self.model.parameters()).device)
        self.check_input(clips)
        mode = self.config.stage2.eval_mode
        if mode != "argmax" and video_index is None:
            raise ValueError(f"stage2.eval_mode is {mode!r}: pass video_index (the video's row in its split) "
                             "to draw the decisions evaluation drew")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed * 1_000_003 + (video_index or 0))  # as train.evaluate.video_outputs
            logits, actions = self.model.infer(clips, mode=mode)
        probabilities = logits.softmax(dim=-1).mean(dim=0, keepdim=True)
        named = Prediction(probabilities, actions, class_names=self.class_names,
                           decision_space=self.model.decision_space)
        frames_decoded = self.config.data.eval_clips * self.config.data.frames
        return VideoIQVideoPrediction(probabilities, actions, frames_decoded, named.labels[0],
                                      named.decisions)


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
    if config.inference.cost_bias != 0:  # the bundle's operating point (a point of its trial's curve)
        costs = videoiq_costs(model, backbone=model_cfg.backbone, size=config.data.crop_size)
        model.set_cost_bias(config.inference.cost_bias, action_gflops=costs.action_gflops)
    return DeployedVideoIQ(model=model, config=config, class_names=class_names, card=card)


def measure(deployed: DeployedVideoIQ, dataset: Any, *, device: torch.device, loader_workers: int,
            multi_label: bool) -> dict[str, Any]:
    """Every video of ``dataset`` through the inference path, priced from the decisions taken."""
    return measure_curve(deployed, dataset, cost_biases=[deployed.config.inference.cost_bias], device=device,
                         loader_workers=loader_workers, multi_label=multi_label)[0]


def measure_curve(deployed: DeployedVideoIQ, dataset: Any, *, cost_biases: Sequence[float], device: torch.device,
                  loader_workers: int, multi_label: bool) -> list[dict[str, Any]]:
    """``measure`` at each operating point ``inference.cost_bias`` of ``cost_biases``, each video decoded
    once; the deployed model is left at its own operating point."""
    config, model = deployed.config, deployed.model
    costs = videoiq_costs(model, backbone=config.model.backbone, size=config.data.crop_size)
    settings = [functools.partial(model.set_cost_bias, bias, action_gflops=costs.action_gflops) for bias in cost_biases]
    try:
        each = video_outputs_each(model, dataset, settings=settings, videos=range(len(dataset) // dataset.views_per_video),
                                  mode=config.stage2.eval_mode, seed=config.seed,
                                  price=videoiq_price(costs, decision_space=model.decision_space),
                                  device=device, loader_workers=loader_workers)
    finally:
        model.set_cost_bias(config.inference.cost_bias, action_gflops=costs.action_gflops)
    return [videoiq_metrics(outputs, decision_space=model.decision_space, class_names=deployed.class_names,
                            multi_label=multi_label, memory_mb=costs.memory_mb) for outputs in each]


def card_rows(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """card.md's VideoIQ lines, from the configuration tree."""
    return [("backbone", f"{config['model']['backbone']}, bit-widths {config['model']['bit_widths']}"),
            ("decision space", str(config['stage2']['decision_space']))]
