"""AR-Net's per-frame decision loop with the official code's skip semantics (METHODS.md §2).

The policy (MobileNetV2 features → LSTMCell → fc) decides frame by frame, in order. Skipping is
per sample, through a counter ``remain`` (0 at the start):

* each step the LSTM consumes the frame and the policy picks an action;
* while ``remain > 0`` that action is overwritten by the previous step's one-hot and the hidden
  state h by the previous h; the cell state c is NOT restored (the official code keeps the new c),
  and the LSTM still consumed the frame;
* if the step's (possibly copied) action is skip-k and ``remain`` was 0, ``remain ← k``;
* at the step's end ``remain ← max(remain − 1, 0)``.

So skip-k removes the current frame and the next k − 1, and those slots carry the skip one-hot
(copied slots count in the usage term of the loss). The copies are written as
``old·hold + new·(1 − hold)`` with ``hold`` ∈ {0, 1}, as the official code does, so the values are
exact and the straight-through gradient of a copied one-hot flows back to the step that chose it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from searchlab.models import PolicyNetwork

__all__ = ["ActionLayout", "Decisions", "run_decisions"]

#: ``choose(step, logits)`` → one-hot (N, |A|) float actions for that step.
Chooser = Callable[[int, Tensor], Tensor]


@dataclass(frozen=True)
class ActionLayout:
    """Which action index means what: resolutions first, then the head (if any), then skips."""

    resolutions: tuple[int, ...]
    use_84: bool
    skips: tuple[int, ...]

    @property
    def num_resolutions(self) -> int:
        return len(self.resolutions)

    @property
    def num_frame_actions(self) -> int:
        """Actions that produce frame logits (resolutions and the head); the rest are skips."""
        return len(self.resolutions) + int(self.use_84)

    @property
    def head_index(self) -> int | None:
        return len(self.resolutions) if self.use_84 else None

    @property
    def num_actions(self) -> int:
        return self.num_frame_actions + len(self.skips)

    def skip_lengths(self, device: torch.device | None = None) -> Tensor:
        """(|A|,) int64: k for a skip-k action, 0 for every other action."""
        lengths = [0] * self.num_frame_actions + list(self.skips)
        return torch.tensor(lengths, dtype=torch.int64, device=device)

    def skip_indices(self) -> Sequence[int]:
        return range(self.num_frame_actions, self.num_actions)


@dataclass(frozen=True)
class Decisions:
    """The policy's decisions for a clip.

    logits (N, T, |A|): the policy's raw scores at each step (before any copying);
    actions (N, T, |A|): the one-hot actions taken, skip windows filled with the skip one-hot;
    hidden (N, T, H): the LSTM hidden state of each step after the skip rule (what the head reads).
    """

    logits: Tensor
    actions: Tensor
    hidden: Tensor

    @property
    def probs(self) -> Tensor:
        return self.logits.softmax(dim=-1)


def run_decisions(
    policy: PolicyNetwork, features: Tensor, *, layout: ActionLayout, choose: Chooser
) -> Decisions:
    """Run the decision loop over features (N, T, F) of the policy's input frames.

    ``choose`` turns each step's logits into one-hot actions: a Gumbel sample in training, argmax
    or a categorical sample in evaluation, or given actions when decisions are replayed.
    """
    if features.dim() != 3:
        raise ValueError(f"features must be (N, T, F), got shape {tuple(features.shape)}")
    if policy.num_actions != layout.num_actions:
        raise ValueError(f"the policy has {policy.num_actions} actions but the layout {layout} has "
                         f"{layout.num_actions}; build PolicyNetwork(num_actions={layout.num_actions})")
    n, steps = features.shape[:2]
    lengths = layout.skip_lengths(features.device)
    remain = torch.zeros(n, dtype=torch.int64, device=features.device)
    state: tuple[Tensor, Tensor] | None = None
    previous: tuple[Tensor, Tensor] | None = None  # (actions, h) of the previous step
    all_logits, all_actions, all_hidden = [], [], []
    for step in range(steps):
        logits, (h, c) = policy.step(features[:, step], state)
        actions = choose(step, logits)
        if previous is not None:
            hold = (remain > 0).to(actions.dtype).unsqueeze(1)
            actions = previous[0] * hold + actions * (1 - hold)
            h = previous[1] * hold.to(h.dtype) + h * (1 - hold.to(h.dtype))
        # Only a step that was not held can start a skip window (remain was 0 there).
        remain = torch.where(remain == 0, lengths[actions.argmax(dim=-1)], remain)
        remain = (remain - 1).clamp_min(0)
        state, previous = (h, c), (actions, h)
        all_logits.append(logits)
        all_actions.append(actions)
        all_hidden.append(h)
    return Decisions(logits=torch.stack(all_logits, dim=1), actions=torch.stack(all_actions, dim=1),
                     hidden=torch.stack(all_hidden, dim=1))
