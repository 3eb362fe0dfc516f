"""VideoIQ: a policy picks a precision (or skip) per frame for an any-precision backbone.

METHODS.md §1.3. The decision space Ω is a tuple of bit-widths, 0 meaning "skip this frame"; the
policy's action k means bit-width ``decision_space[k]``. The video prediction is the average of the
frame predictions over the frames that were not skipped.

Two paths, one semantics:

- training (``forward_train`` / ``combine_frame_logits``): the backbone runs at every precision of
  Ω on every frame in one batched call per precision, and the one-hot straight-through actions pick
  each frame's logits, so the gradient reaches the policy. ``combine_frame_logits`` also works on
  backbone outputs cached once per stage-1 checkpoint.
- inference (``infer``): the policy decides frame by frame; then each precision runs once, on only
  the frames that chose it; skipped frames run nothing. That is where the compute savings are real.

A video whose frames are all skipped has no prediction to average: it gets zero logits (a uniform
prediction). The average divides by max(number of processed frames, 1), not by count + ε: the
count of one-hot actions is an integer, so the result is exact for every other video, and an ε
denominator would multiply the policy's gradient on an all-skipped video by 1/ε.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from searchlab.models.policy import PolicyNetwork, cost_offsets, select_actions

__all__ = ["VideoIQ", "combine_frame_logits", "action_usage", "validate_decision_space"]


def validate_decision_space(decision_space: Sequence[int], *, bit_widths: Sequence[int]) -> tuple[int, ...]:
    """Check Ω against the backbone's bit-widths; return it as a tuple or raise listing every problem.

    Ω must be non-empty, without duplicates, hold only the backbone's bit-widths and 0 (skip), and
    contain the top bit-width (a policy that can never run at full precision is not VideoIQ).
    """
    space = tuple(decision_space)
    allowed = sorted(set(bit_widths) | {0}, reverse=True)
    problems = []
    if not space:
        problems.append(f"the decision space is empty; give bit-widths from {allowed}, e.g. (32, 4, 2, 0)")
    bad = [b for b in space if isinstance(b, bool) or not isinstance(b, int)]
    if bad:
        problems.append(f"entries {bad} are not integers; write bit-widths as integers (0 = skip)")
    duplicates = sorted({b for b in space if space.count(b) > 1}, reverse=True)
    if duplicates:
        problems.append(f"bit-widths {duplicates} appear more than once; list each action once")
    unknown = [b for b in space if b not in allowed]
    if unknown:
        problems.append(
            f"bit-widths {unknown} are not among the backbone's {tuple(bit_widths)} or 0 (skip); "
            "remove them or train the backbone at those bit-widths"
        )
    if bit_widths and max(bit_widths) not in space:
        problems.append(f"the top bit-width {max(bit_widths)} is missing; add it (Ω must contain it)")
    if problems:
        raise ValueError(f"invalid decision space {space}:\n  - " + "\n  - ".join(problems))
    return space


def combine_frame_logits(
    frame_logits: Tensor, actions: Tensor, *, decision_space: Sequence[int], bit_widths: Sequence[int]
) -> Tensor:
    """Video logits (N, C) from every frame's logits at every precision.

    frame_logits: (N, T, |B|, C), slice b holding the backbone's logits at ``bit_widths[b]``;
    actions: (N, T, |Ω|) one-hot (or straight-through one-hot) over ``decision_space``. Each frame
    contributes its chosen precision's logits multiplied by the action value (so the gradient
    reaches the policy); skipped frames contribute nothing; the sum is divided by the number of
    processed frames (at least 1; see the module docstring).
    """
    space, widths = tuple(decision_space), tuple(bit_widths)
    problems = []
    if frame_logits.dim() != 4 or frame_logits.shape[2] != len(widths):
        problems.append(f"frame_logits must be (N, T, |B|={len(widths)}, C), got {tuple(frame_logits.shape)}")
    if actions.dim() != 3 or actions.shape[2] != len(space):
        problems.append(f"actions must be (N, T, |Ω|={len(space)}), got {tuple(actions.shape)}")
    elif frame_logits.dim() == 4 and actions.shape[:2] != frame_logits.shape[:2]:
        problems.append(
            f"actions cover (N, T)={tuple(actions.shape[:2])} but frame_logits cover {tuple(frame_logits.shape[:2])}"
        )
    missing = [b for b in space if b != 0 and b not in widths]
    if missing:
        problems.append(f"decision-space bit-widths {missing} have no logits in bit_widths {widths}; compute them")
    if problems:
        raise ValueError("combine_frame_logits:\n  - " + "\n  - ".join(problems))
    # select[k, b] = 1 when action k runs precision bit_widths[b]; the skip row stays zero.
    select = frame_logits.new_zeros(len(space), len(widths))
    for k, bits in enumerate(space):
        if bits != 0:
            select[k, widths.index(bits)] = 1.0
    weights = actions.to(frame_logits.dtype) @ select  # (N, T, |B|)
    total = torch.einsum("ntb,ntbc->nc", weights, frame_logits)
    processed = weights.sum(dim=(1, 2))  # (N,) number of processed frames
    return total / processed.clamp_min(1.0).unsqueeze(1)


def action_usage(actions: Tensor) -> Tensor:
    """Fraction of frames that took each action: (|Ω|,) from one-hot actions (..., |Ω|)."""
    return actions.detach().reshape(-1, actions.shape[-1]).float().mean(dim=0)


class VideoIQ(nn.Module):
    """Policy + any-precision backbone over the decision space Ω (action k = ``decision_space[k]``).

    The caller puts the modules in the right mode: in stage 2 the backbone is frozen and in eval
    mode (switchable BN uses running statistics), and ``infer`` expects ``.eval()`` (dropout off).
    """

    def __init__(self, *, backbone: nn.Module, policy: PolicyNetwork, decision_space: Sequence[int]) -> None:
        super().__init__()
        bit_widths = tuple(getattr(backbone, "bit_widths", ()))
        if not bit_widths:
            raise ValueError(
                "the backbone has no 'bit_widths' attribute; pass an AnyPrecisionResNet "
                "(searchlab.models.create_backbone)"
            )
        self.decision_space = validate_decision_space(decision_space, bit_widths=bit_widths)
        if policy.num_actions != len(self.decision_space):
            raise ValueError(
                f"the policy has {policy.num_actions} actions but the decision space {self.decision_space} has "
                f"{len(self.decision_space)}; build PolicyNetwork(num_actions={len(self.decision_space)})"
            )
        num_classes = getattr(backbone, "num_classes", None)
        if num_classes is None:
            raise ValueError("the backbone has no 'num_classes' attribute; pass an AnyPrecisionResNet")
        self.num_classes = int(num_classes)
        self.backbone = backbone
        self.policy = policy
        #: The precisions the backbone runs at (Ω without skip), in decision-space order.
        self.precisions: tuple[int, ...] = tuple(b for b in self.decision_space if b != 0)
        #: Subtracted from the policy's logits at inference (``set_cost_bias``); None: as trained.
        self.logit_offsets: Tensor | None = None

    def set_cost_bias(self, cost_bias: float, *, action_gflops: Mapping[int, float]) -> None:
        """The operating point of ``infer``: λ × each action's GFLOPs relative to the costliest
        subtracted from the policy's logits (``policy.cost_offsets``); 0 decides as trained."""
        offsets = cost_offsets([action_gflops[b] for b in self.decision_space], cost_bias=cost_bias)
        self.logit_offsets = None if offsets is None else offsets.to(next(self.parameters()).device)

    def frame_logits(self, frames: Tensor) -> Tensor:
        """Backbone logits (N, T, |precisions|, C) of every frame at every precision of Ω."""
        _check_frames(frames)
        n, t = frames.shape[:2]
        flat = frames.reshape(n * t, *frames.shape[2:])
        per_bits = [self.backbone(flat, bits=bits) for bits in self.precisions]
        return torch.stack(per_bits, dim=1).reshape(n, t, len(self.precisions), -1)

    def forward_train(self, frames: Tensor, *, tau: float) -> dict[str, Tensor]:
        """Training path: Gumbel straight-through actions over frames (N, T, 3, H, W).

        Returns video_logits (N, C), actions (N, T, |Ω|), probs (N, T, |Ω|) and frame_logits
        (N, T, |precisions|, C).
        """
        decision = self.policy.decide(self.policy.extract(frames), tau=tau, mode="gumbel_hard")
        frame_logits = self.frame_logits(frames)
        video_logits = combine_frame_logits(
            frame_logits, decision.actions, decision_space=self.decision_space, bit_widths=self.precisions
        )
        return {
            "video_logits": video_logits,
            "actions": decision.actions,
            "probs": decision.probs,
            "frame_logits": frame_logits,
        }

    @torch.no_grad()
    def infer(self, frames: Tensor, *, mode: str = "argmax", actions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Inference path: video logits (N, C) and the actions taken (N, T, |Ω|).

        The policy decides frame by frame (LSTM step, then the action); then each precision runs
        once on the frames that chose it and skipped frames run nothing. ``actions`` (one-hot
        (N, T, |Ω|)) replaces the policy's decisions, for replaying decisions and for timing the
        backbone part alone.
        """
        _check_frames(frames)
        n, t = frames.shape[:2]
        if actions is None:
            actions = self._decide_frame_by_frame(frames, mode=mode)
        elif actions.shape != (n, t, len(self.decision_space)):
            raise ValueError(
                f"actions must be one-hot (N, T, |Ω|)={(n, t, len(self.decision_space))}, got {tuple(actions.shape)}"
            )
        chosen = actions.argmax(dim=-1)  # (N, T) action index
        flat_frames = frames.reshape(n * t, *frames.shape[2:])
        flat_chosen = chosen.reshape(n * t)
        summed = frames.new_zeros(n, self.num_classes)
        processed = torch.zeros(n, dtype=summed.dtype, device=summed.device)
        for k, bits in enumerate(self.decision_space):
            rows = (flat_chosen == k).nonzero().squeeze(1)
            if bits == 0 or rows.numel() == 0:
                continue
            videos = rows // t
            summed.index_add_(0, videos, self.backbone(flat_frames[rows], bits=bits).to(summed.dtype))
            processed.index_add_(0, videos, torch.ones_like(videos, dtype=summed.dtype))
        return summed / processed.clamp_min(1.0).unsqueeze(1), actions

    def _decide_frame_by_frame(self, frames: Tensor, *, mode: str) -> Tensor:
        """The policy's one-hot actions, each taken after seeing frames 1..i only."""
        features = self.policy.extract(frames)  # per-frame CNN; batched, it does not look ahead
        state = None
        steps = []
        for i in range(frames.shape[1]):
            logits_i, state = self.policy.step(features[:, i], state)
            if self.logit_offsets is not None:
                logits_i = logits_i - self.logit_offsets
            steps.append(select_actions(logits_i, mode=mode))
        return torch.stack(steps, dim=1)


def _check_frames(frames: Tensor) -> None:
    if frames.dim() != 5 or frames.shape[2] != 3:
        raise ValueError(f"frames must be (N, T, 3, H, W), got shape {tuple(frames.shape)}; add the batch axis")
