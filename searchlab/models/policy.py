"""VideoIQ's policy network g: which precision (or skip) each frame gets (METHODS.md §1.3).

g = MobileNetV2 features on frames downsized to ``input_size`` → global pool → dropout →
LSTMCell run over the frames in order → fc → logits over the decision space Ω. The LSTM carries
what the policy has already seen, so a frame that looks like the previous ones can be skipped or run
cheaply. The decision space itself (which bit-width each action means) belongs to ``VideoIQ``; the
policy only knows how many actions there are.

Two paths share the same modules: ``extract`` + ``decide`` for a whole clip (training, one batched
CNN call over N·T frames), and ``extract`` + ``step`` frame by frame (inference, where each
decision is taken before the backbone runs on that frame).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import mobilenet_v2

__all__ = ["PolicyNetwork", "PolicyOutput", "LSTMState", "MODES", "cost_offsets", "select_actions"]

#: How logits become actions: straight-through Gumbel sample (training), argmax (evaluation
#: default, deterministic), categorical sample (what the official code does at test time).
MODES: tuple[str, ...] = ("gumbel_hard", "argmax", "sample")

LSTMState = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class PolicyOutput:
    """The policy's decisions for a clip.

    logits: (N, T, |Ω|) raw scores; probs: softmax of logits (π_i, used by the entropy and
    balance losses); actions: (N, T, |Ω|) float one-hot (straight-through in "gumbel_hard" mode,
    so the one-hot forward value carries the soft sample's gradient).
    """

    logits: Tensor
    probs: Tensor
    actions: Tensor


def select_actions(logits: Tensor, *, mode: str, tau: float | None = None) -> Tensor:
    """One-hot float actions from logits (..., |Ω|) in the given mode.

    "gumbel_hard" needs tau > 0 and is differentiable (torch's straight-through estimator);
    "argmax" and "sample" are not and ignore tau (the argmax of a Gumbel-perturbed sample does
    not depend on τ, so sampling is plain categorical sampling).
    """
    num_actions = logits.shape[-1]
    if mode == "gumbel_hard":
        if tau is None or not tau > 0:
            raise ValueError(
                f"mode 'gumbel_hard' needs a temperature tau > 0, got {tau!r}; pass tau=schedule.value(...)"
            )
        return F.gumbel_softmax(logits, tau=tau, hard=True, dim=-1)
    if mode == "argmax":
        index = logits.argmax(dim=-1)
    elif mode == "sample":
        index = torch.distributions.Categorical(logits=logits.detach()).sample()
    else:
        raise ValueError(f"unknown mode {mode!r}; choose one of {list(MODES)}")
    return F.one_hot(index, num_actions).to(logits.dtype)


def cost_offsets(action_costs: Sequence[float], *, cost_bias: float) -> Tensor | None:
    """What the operating-point knob (``inference.cost_bias`` λ) subtracts from a policy's logits
    before it decides: λ × each action's cost relative to the most expensive one (so λ is in logit
    units whatever the network's size); None when λ is 0, the network as trained."""
    if cost_bias == 0:
        return None
    costs = torch.tensor([float(c) for c in action_costs], dtype=torch.float32)
    if costs.numel() == 0 or not bool(torch.isfinite(costs).all()) or bool((costs < 0).any()) or costs.max() <= 0:
        raise ValueError(f"action costs {list(action_costs)} must be finite, >= 0, one of them > 0")
    return cost_bias * costs / costs.max()


class PolicyNetwork(nn.Module):
    """MobileNetV2 + LSTMCell policy over ``num_actions`` per-frame actions.

    ``feature_weights``: optional path of a state dict of a torchvision MobileNetV2 trained on the
    same data (the paper initialises φ that way); only its ``features.*`` entries are used, so its
    classifier may have any number of classes. Without it φ is randomly initialised.
    """

    def __init__(
        self,
        *,
        num_actions: int,
        input_size: int = 84,
        hidden_size: int = 512,
        width_mult: float = 1.0,
        dropout: float = 0.2,
        feature_weights: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        problems = []
        if num_actions < 2:
            problems.append(f"num_actions={num_actions} must be >= 2 (a policy with one action decides nothing)")
        if input_size < 16:
            problems.append(f"input_size={input_size} must be >= 16 (MobileNetV2 downsamples 32x; 84 in the paper)")
        if hidden_size < 1:
            problems.append(f"hidden_size={hidden_size} must be >= 1 (512 in the paper)")
        if not width_mult > 0:
            problems.append(f"width_mult={width_mult} must be > 0 (1.0 in the paper)")
        if not 0.0 <= dropout < 1.0:
            problems.append(f"dropout={dropout} must lie in [0, 1)")
        if problems:
            raise ValueError("invalid PolicyNetwork arguments:\n  - " + "\n  - ".join(problems))
        mobilenet = mobilenet_v2(weights=None, width_mult=width_mult)
        self.features = mobilenet.features
        self.feature_dim: int = mobilenet.last_channel
        self.num_actions = num_actions
        self.input_size = input_size
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTMCell(self.feature_dim, hidden_size)
        self.fc = nn.Linear(hidden_size, num_actions)
        if feature_weights is not None:
            self.load_feature_state_dict(torch.load(feature_weights, map_location="cpu", weights_only=True))

    def load_feature_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Load φ from a torchvision MobileNetV2 state dict (``features.*`` keys; the rest ignored)."""
        prefix = "features."
        body = {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}
        if not body:
            raise ValueError(
                "the state dict has no 'features.*' entries; pass the state_dict() of a torchvision "
                "mobilenet_v2 with the same width_mult"
            )
        expected = self.features.state_dict()
        missing = sorted(set(expected) - set(body))
        unexpected = sorted(set(body) - set(expected))
        mismatched = sorted(k for k in set(body) & set(expected) if body[k].shape != expected[k].shape)
        if missing or unexpected or mismatched:
            raise ValueError(
                f"the MobileNetV2 state dict does not fit this policy (missing {missing[:3]}, unexpected "
                f"{unexpected[:3]}, wrong shape {mismatched[:3]}); save a mobilenet_v2 with the same "
                "width_mult as the policy"
            )
        self.features.load_state_dict(body)

    def extract(self, frames: Tensor) -> Tensor:
        """Per-frame features (N, T, F) of frames (N, T, 3, H, W), resized to input_size first."""
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be (N, T, 3, H, W), got shape {tuple(frames.shape)}")
        n, t = frames.shape[:2]
        x = frames.reshape(n * t, *frames.shape[2:])
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(
                x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=True
            )
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return x.reshape(n, t, self.feature_dim)

    def step(self, feature_t: Tensor, state: LSTMState | None = None) -> tuple[Tensor, LSTMState]:
        """One frame: features (N, F) and the previous LSTM state -> logits (N, |Ω|), new state."""
        h, c = self.lstm(self.dropout(feature_t), state)
        return self.fc(h), (h, c)

    def decide(self, features: Tensor, *, tau: float | None = None, mode: str = "argmax") -> PolicyOutput:
        """Run the LSTM over the frames of features (N, T, F) in order and choose actions.

        The actions do not feed back into the LSTM, so all T logits are computed first and the
        actions are drawn for the whole batch at once.
        """
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {list(MODES)}")
        state: LSTMState | None = None
        steps = []
        for t in range(features.shape[1]):
            logits_t, state = self.step(features[:, t], state)
            steps.append(logits_t)
        logits = torch.stack(steps, dim=1)
        actions = select_actions(logits, mode=mode, tau=tau)
        return PolicyOutput(logits=logits, probs=logits.softmax(dim=-1), actions=actions)
