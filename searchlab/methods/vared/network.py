"""``VaredNetwork``: a video backbone whose convolutions are VA-RED² ``DynamicConv`` layers.

Backbones (METHODS.md §3): ``r2plus1d_18`` / ``r2plus1d_10`` (torchvision's VideoResNet over the whole
clip (N, 3, T, H, W)) or a 2D ResNet of searchlab's registry (``resnet10/18/34/50``) run TSN-style:
per frame over (N·T, 3, H, W), the video logits the mean of the frame logits. Which convolutions
are gated (``GATED_CONVS``), inside the residual stages layer1..layer4 only (the stem and the fc
stay plain):

* ``"spatial"`` (default): R(2+1)D's spatial 1×3×3 convs; a 2D ResNet's 3×3 convs;
* ``"all"``: every conv of the residual blocks (R(2+1)D's temporal 3×1×1 convs and the 1×1×1
  shortcuts as well; a 2D ResNet's 1×1 and shortcut convs as well).

Module surgery: a dry run with hooks finds the T each 3D conv sees (temporal strides shorten the clip
in later stages; a per-frame conv sees the clip's T), and each chosen conv is wrapped in place, so
state-dict keys are the backbone's with ``backbone.`` in front and ``.conv`` after a gated conv.

With one option on both dimensions no layer has a gate and every wrapped conv is the plain conv:
that ``VaredNetwork`` is the base network (same keys for the backbone weights, no gate keys).
"""

from __future__ import annotations

from types import TracebackType
from typing import NamedTuple

import torch
from torch import Tensor, nn

from searchlab.methods.vared.dynamic_conv import DynamicConv
from searchlab.models.registry import create_teacher, list_backbones
from searchlab.models.video_resnet import VIDEO_NETWORKS, create_video_network

__all__ = ["GATED_CONVS", "GateDecisions", "VaredNetwork"]

GATED_CONVS: tuple[str, ...] = ("spatial", "all")

_STAGES = ("layer1", "layer2", "layer3", "layer4")
# The dry run only measures T, which does not depend on the frame size: keep it cheap.
_DRY_RUN_SIZE = 32


class GateDecisions(NamedTuple):
    """The gate weights a forward used, per clip and gated layer, after the zero-gate rule."""

    temporal: Tensor  # (N, L, S_t)
    channel: Tensor  # (N, L, S_c)


def _chosen_convs(backbone: nn.Module, *, video: bool, gated: str) -> list[str]:
    names = []
    for name, module in backbone.named_modules():
        if name.split(".")[0] not in _STAGES or not isinstance(module, nn.Conv2d | nn.Conv3d):
            continue
        spatial = tuple(module.kernel_size[-2:]) == (3, 3) and (not video or module.kernel_size[0] == 1)
        if spatial or gated == "all":
            names.append(name)
    return names


def _input_frames(backbone: nn.Module, names: list[str], *, frames: int, size: int) -> dict[str, int]:
    """T of each named 3D conv's input, from one dry run of a (1, 3, frames, size, size) clip."""
    seen: dict[str, int] = {}
    hooks = [backbone.get_submodule(name).register_forward_pre_hook(
        lambda module, args, name=name: seen.__setitem__(name, args[0].shape[2])) for name in names]
    modes = [(m, m.training) for m in backbone.modules()]
    backbone.eval()
    try:
        with torch.no_grad():
            backbone(torch.zeros(1, 3, frames, size, size))
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes:
            module.training = training
    return seen


class _Forcing:
    """What ``VaredNetwork.force`` returns: the setting is already made; leaving a ``with`` undoes it."""

    def __init__(self, network: VaredNetwork, previous: tuple[int, int] | None) -> None:
        self._network, self._previous = network, previous

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._network.force(self._previous)


class VaredNetwork(nn.Module):
    """A backbone with its chosen convs gated; clips (N, T, 3, H, W) → logits (N, num_classes).

    ``frames`` is the clip length the gates are built for (a gate's fc1 reads C_in·T features);
    ``size`` the frame side the cost model prices. ``forward`` is the mixed (training) path,
    ``infer`` the path that computes only the alternatives with non-zero weight.
    """

    def __init__(
        self,
        *,
        backbone: str,
        num_classes: int,
        frames: int,
        size: int,
        gated: str = "spatial",
        channel_options: int = 2,
        temporal_options: int = 2,
        gate_hidden: int | None = None,
        beta_init: float = 1.0,
        cheap_op: str = "depthwise",
        zero_gate: str = "cheapest",
    ) -> None:
        super().__init__()
        known = (*VIDEO_NETWORKS, *list_backbones())
        problems = [f"{name}={value} must be >= 1" for name, value in
                    (("num_classes", num_classes), ("frames", frames), ("size", size),
                     ("channel_options", channel_options), ("temporal_options", temporal_options)) if value < 1]
        if backbone not in known:
            problems.append(f"backbone {backbone!r} is unknown; choose one of {', '.join(known)}")
        if gated not in GATED_CONVS:
            problems.append(f"gated {gated!r} is not one of {list(GATED_CONVS)}")
        if problems:
            raise ValueError("invalid VaredNetwork arguments: " + "; ".join(problems))
        self.video = backbone in VIDEO_NETWORKS
        net = (create_video_network if self.video else create_teacher)(backbone, num_classes=num_classes)
        names = _chosen_convs(net, video=self.video, gated=gated)
        input_frames = (_input_frames(net, names, frames=frames, size=min(size, _DRY_RUN_SIZE)) if self.video
                        else dict.fromkeys(names, frames))
        for name in names:
            parent, _, child = name.rpartition(".")
            owner = net.get_submodule(parent)
            setattr(owner, child, DynamicConv(
                getattr(owner, child), frames=input_frames[name], channel_options=channel_options,
                temporal_options=temporal_options, gate_hidden=gate_hidden, beta_init=beta_init, cheap_op=cheap_op,
                zero_gate=zero_gate))
        self.backbone = net
        self.backbone_name, self.num_classes, self.frames, self.size, self.gated = (
            backbone, num_classes, frames, size, gated)
        self.options = (temporal_options, channel_options)

    @property
    def channel_ratios(self) -> tuple[float, ...]:
        """r_i = 2^−i: the nominal share of filters channel alternative i computes."""
        return tuple(0.5**i for i in range(self.options[1]))

    @property
    def temporal_strides(self) -> tuple[int, ...]:
        """R_j = 2^j: temporal alternative j computes every R_j-th output frame."""
        return tuple(2**j for j in range(self.options[0]))

    def gated_layers(self) -> list[tuple[str, DynamicConv]]:
        """(name, layer) of every wrapped conv, in forward order; names as in ``named_modules``."""
        return [(name, m) for name, m in self.named_modules() if isinstance(m, DynamicConv)]

    @property
    def forced(self) -> tuple[int, int] | None:
        """The alternative every gate is forced to (None: the gates decide)."""
        return self.gated_layers()[0][1].forced

    def force(self, alternative: tuple[int, int] | None) -> _Forcing:
        """Force every gated layer to (temporal index, channel index), or None to let the gates decide.

        Takes effect at once (a plain setter); used as ``with network.force((1, 1)):`` the previous
        setting comes back on leaving the block.
        """
        previous = self.forced
        for _, layer in self.gated_layers():
            layer.forced = alternative
        return _Forcing(self, previous)

    def set_cost_bias(self, cost_bias: float) -> None:
        """Every gate's operating point (``Gate.set_cost_bias``); 0: the gates as trained."""
        for _, layer in self.gated_layers():
            if layer.gate is not None:
                layer.gate.set_cost_bias(cost_bias)

    def _check(self, frames: Tensor) -> None:
        if frames.dim() != 5 or frames.shape[1] != self.frames or frames.shape[2] != 3:
            raise ValueError(f"expected clips (N, {self.frames}, 3, H, W) (the gates are built for "
                             f"{self.frames} frames), got {tuple(frames.shape)}")

    def forward(self, frames: Tensor) -> Tensor:
        """Logits (N, num_classes) of clips (N, T, 3, H, W) through the mixed path (or the forced one)."""
        self._check(frames)
        if self.video:
            return self.backbone(frames.transpose(1, 2))
        clips, length = frames.shape[:2]
        return self.backbone(frames.flatten(0, 1)).unflatten(0, (clips, length)).mean(dim=1)

    def infer(self, frames: Tensor) -> tuple[Tensor, GateDecisions]:
        """Logits and the gate weights used, computing only the alternatives with non-zero weight."""
        layers = [layer for _, layer in self.gated_layers()]
        previous = [layer.infer_mode for layer in layers]
        for layer in layers:
            layer.infer_mode = True
        try:
            logits = self(frames)
        finally:
            for layer, mode in zip(layers, previous):
                layer.infer_mode = mode
        return logits, self.decisions()

    def gate_weights(self) -> list[tuple[Tensor, Tensor]]:
        """(v_t (N, S_t), v_c (N, S_c)) of every gated layer in the last forward, with autograd history."""
        weights = [layer.last_weights for _, layer in self.gated_layers()]
        if any(w is None for w in weights):
            raise RuntimeError("no gate weights yet: run a forward first")
        return weights

    def decisions(self) -> GateDecisions:
        """The last forward's gate weights as ``GateDecisions`` (detached)."""
        weights = self.gate_weights()
        return GateDecisions(temporal=torch.stack([v_t.detach() for v_t, _ in weights], dim=1),
                             channel=torch.stack([v_c.detach() for _, v_c in weights], dim=1))
