"""AR-Net's compute and memory, from the decisions actually taken (METHODS.md §2, GFLOPs bullet).

FLOPs are fvcore's multiply-accumulates (``searchlab.flops.module_macs``), counted on the modules the
inference path (``ARNet.infer``) runs:

* a frame processed at resolution i costs backbone i (the torchvision network with its fc for the
  data set's classes) on one i×i frame;
* a frame that chose the head costs the head (hidden → classes);
* the policy — MobileNetV2 on the policy-size copy, one LSTMCell step, the policy fc — runs on
  every frame, skipped ones included (the LSTM consumes them), so each frame is charged for it;
* skipped frames cost nothing beyond the policy.

Resizing and pooling glue outside those modules is not charged (a nearest resize is a gather, and no
convention in METHODS.md counts it). ``ARNetCosts.paper_video_gflops`` prints the paper's formula
beside it: Σ_t G(a_t) + G_policy·Σ_t t(a_t), t = 1/k on each slot of a skip-k window (the policy
charged once per decision, as an ideal sequential inference would), 1 otherwise, head not charged.

Memory is the storage of every tensor of the state dict inference loads (backbones, policy, head:
weights and BatchNorm statistics), at their dtype's size, in MiB.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from searchlab import flops
from searchlab.methods.arnet.decisions import ActionLayout
from searchlab.methods.arnet.model import ARNet
from searchlab.models import PolicyNetwork, create_teacher

__all__ = [
    "ARNetCosts",
    "arnet_costs",
    "backbone_gflops",
    "memory_mb",
    "module_gflops",
    "policy_gflops_per_frame",
    "resolution_gflops",
]


def module_gflops(module: nn.Module, *inputs: Any) -> float:
    """fvcore GMACs of ``module(*inputs)`` (eval mode, no gradients; the module's modes are kept).

    Inputs are tensors or tuples of tensors (an LSTMCell's state), moved to the module's device."""
    device = next(module.parameters()).device
    with torch.random.fork_rng(devices=[]):  # a count during training must not move the generator
        layers = flops.module_macs(module, tuple(_to(x, device) for x in inputs))
    return sum(layer.macs for layer in layers) / 1e9


def _to(value: Any, device: torch.device) -> Any:
    return tuple(_to(v, device) for v in value) if isinstance(value, tuple) else value.to(device)


@functools.lru_cache(maxsize=64)
def backbone_gflops(name: str, *, size: int, num_classes: int) -> float:
    """GFLOPs of registered backbone ``name`` (fc for ``num_classes``) on one size×size frame."""
    with torch.random.fork_rng(devices=[]):  # building the network draws random weights
        net = create_teacher(name, num_classes=num_classes)
    return module_gflops(net, torch.zeros(1, 3, size, size))


def policy_gflops_per_frame(policy: PolicyNetwork) -> float:
    """One frame through the policy: MobileNetV2 features at its input size, an LSTMCell step, fc."""
    size, hidden = policy.input_size, policy.lstm.hidden_size
    return (module_gflops(policy.features, torch.zeros(1, 3, size, size))
            + module_gflops(policy.lstm, torch.zeros(1, policy.feature_dim))
            + module_gflops(policy.fc, torch.zeros(1, hidden)))


def memory_mb(model: nn.Module) -> float:
    """MiB of every floating tensor in ``model``'s state dict (parameters and BN statistics)."""
    total = sum(t.numel() * t.element_size() for t in model.state_dict().values() if t.is_floating_point())
    return total / 2**20


@dataclass(frozen=True)
class ARNetCosts:
    """Per-action GFLOPs per frame (backbone at its resolution, the head, 0 for skips), the
    policy's GFLOPs per frame, the backbone-only weights the paper's formula uses, and memory."""

    layout: ActionLayout
    action_gflops: tuple[float, ...]
    policy_gflops_per_frame: float
    memory_mb: float

    def _indices(self, actions: Tensor | np.ndarray) -> np.ndarray:
        array = actions.detach().cpu().numpy() if isinstance(actions, Tensor) else np.asarray(actions)
        if array.ndim != 3 or array.shape[-1] != self.layout.num_actions:
            raise ValueError(f"actions must be one-hot (N, T, {self.layout.num_actions}), got shape {array.shape}")
        return array.argmax(axis=-1)

    def video_gflops(self, actions: Tensor | np.ndarray) -> np.ndarray:
        """GFLOPs per video (N,) of one-hot actions (N, T, |A|): what ``infer`` runs."""
        index = self._indices(actions)
        per_action = np.asarray(self.action_gflops, dtype=np.float64)
        return per_action[index].sum(axis=1) + index.shape[1] * self.policy_gflops_per_frame

    def paper_video_gflops(self, actions: Tensor | np.ndarray) -> np.ndarray:
        """The paper's formula per video: backbones of the processed frames + the policy once per
        decision (a skip-k window charges it 1/k per slot); the head is not charged."""
        index = self._indices(actions)
        backbone = np.zeros(self.layout.num_actions)
        backbone[: self.layout.num_resolutions] = self.action_gflops[: self.layout.num_resolutions]
        share = np.ones(self.layout.num_actions)
        for position, k in zip(self.layout.skip_indices(), self.layout.skips):
            share[position] = 1.0 / k
        return backbone[index].sum(axis=1) + share[index].sum(axis=1) * self.policy_gflops_per_frame


def arnet_costs(model: ARNet) -> ARNetCosts:
    """Costs of an ``ARNet``, counted by fvcore on its own modules."""
    layout = model.layout
    per_action = [module_gflops(net, torch.zeros(1, 3, size, size))
                  for net, size in zip(model.backbones, layout.resolutions)]
    if model.head is not None:
        per_action.append(module_gflops(model.head, torch.zeros(1, model.head.in_features)))
    per_action += [0.0] * len(layout.skips)
    return ARNetCosts(layout=layout, action_gflops=tuple(per_action),
                      policy_gflops_per_frame=policy_gflops_per_frame(model.policy), memory_mb=memory_mb(model))


def resolution_gflops(backbones: Sequence[str], *, resolutions: Sequence[int], num_classes: int) -> list[float]:
    """``backbone_gflops`` of each (backbone, resolution) pair: the loss's "flops" weights."""
    return [backbone_gflops(name, size=size, num_classes=num_classes) for name, size in zip(backbones, resolutions)]

