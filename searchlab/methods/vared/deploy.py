"""An exported VA-RED² network ready for inference.

``load_vared_bundle(DIR, vared=..., data=..., class_names=..., card=...)`` builds the network of a
bundle's ``vared.pt`` (read with ``weights_only=True``) and returns a ``DeployedVared``:

* ``predict(frames)``: ``VaredNetwork.infer`` on ImageNet-normalised clips (N, T, 3, S, S): every
  gated layer computes only the alternatives its gate weighted above zero;
* ``predict_video(path)``: decodes the file the way evaluation does (``searchlab.data.eval_video``)
  and averages the probabilities of its views, as the recorded accuracy was measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from searchlab.config import DataConfig  # first: searchlab.config imports the method sections
from searchlab.data.eval_video import decode_video
from searchlab.deploy import BundleError, check_clip, load_weights
from searchlab.methods.vared.build import MODEL_FILE, build_network
from searchlab.methods.vared.config import VaredConfig
from searchlab.methods.vared.evaluate import computed_alternatives
from searchlab.methods.vared.network import GateDecisions, VaredNetwork

__all__ = ["DeployedVared", "VideoPrediction", "load_vared_bundle"]


class VideoPrediction(NamedTuple):
    probabilities: Tensor  # (1, C): softmax of each view's logits, averaged over the views
    decisions: GateDecisions  # gate weights per view and gated layer
    computed: Tensor  # (views, S_t·S_c): gated layers per largest computed alternative


@dataclass
class DeployedVared:
    """A VA-RED² network ready for inference (gates choose, per clip, each layer's alternatives)."""

    model: VaredNetwork
    vared: VaredConfig
    data: DataConfig
    class_names: tuple[str, ...]
    card: dict = field(default_factory=dict)
    #: The trial's whole configuration (searchlab.config.TrialConfig) when loaded from a bundle.
    config: Any = None

    @torch.no_grad()
    def predict(self, frames: Tensor) -> tuple[Tensor, GateDecisions]:
        """frames (N, T, 3, S, S), ImageNet-normalised -> (class probabilities (N, C), gate weights)."""
        check_clip(frames, frames_per_clip=self.data.frames, size=self.data.crop_size)
        logits, decisions = self.model.infer(frames)
        return logits.softmax(dim=-1), decisions

    @torch.no_grad()
    def predict_video(self, path: str | Path, *, size: tuple[int, int] | None = None) -> VideoPrediction:
        """Decode ``path`` as evaluation does and classify it. ``size`` (width, height) is the video's
        full frame size as a manifest records it (else the container's header is read)."""
        views = decode_video(path, self.data, size=size).to(next(self.model.parameters()).device)
        logits, decisions = self.model.infer(views)
        probabilities = logits.softmax(dim=-1).mean(dim=0, keepdim=True)
        return VideoPrediction(probabilities, decisions, computed_alternatives(decisions))


def load_vared_bundle(
    folder: str | Path, *, vared: VaredConfig, data: DataConfig, class_names: Sequence[str], card: dict | None = None,
    device: str | torch.device = "cpu", config: Any = None,
) -> DeployedVared:
    """The network of ``folder/vared.pt`` (loaded with weights_only=True), in eval mode on ``device``.
    A missing, damaged or mismatched weights file raises ``BundleError`` (a ValueError) naming it."""
    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise BundleError(f"{path} is missing: the folder is not a VA-RED² bundle; export the bundle again with "
                          "`python -m searchlab.pick`")
    if not class_names:
        raise ValueError("class_names is empty; pass the bundle's classes.json list")
    with torch.random.fork_rng(devices=[]):  # fresh weights are overwritten; keep the caller's generator
        model = build_network(vared, num_classes=len(class_names), frames=data.frames, size=data.crop_size)
    load_weights(model, path)
    model = model.to(device).eval()
    if config is not None:  # the bundle's operating point (a point of its trial's curve)
        model.set_cost_bias(config.inference.cost_bias)
    return DeployedVared(model=model, vared=vared, data=data, class_names=tuple(class_names), card=dict(card or {}),
                         config=config)
