"""AR-Net: a policy picks, per frame, a resolution (and its backbone), the 84 head, or a skip.

METHODS.md §2. One torchvision ResNet per resolution classifies the frames resized to it; the
policy (``searchlab.models.PolicyNetwork``) reads the frames resized to ``policy.input_size``
("the 84 copy") and a linear head on its LSTM state gives the 84 action's frame logits. Lower
resolutions are made by resizing the normalised full-resolution crop (nearest by default, as the
official code does).

Two paths, one semantics (``run_decisions`` holds the skip rule for both):

- training (``forward``): every backbone runs on every frame (batched, as the official code does),
  and the straight-through Gumbel one-hots pick each frame's logits (``fuse_logits``), so the
  gradient reaches the policy;
- inference (``infer``): the policy decides frame by frame (it runs on every frame: the LSTM
  consumes skipped frames too), then each backbone runs once, on only the frames that chose its
  resolution; skipped frames and head frames run no backbone.

Video logits = Σ_t Σ_{frame actions} r_{t,a}·logits_{t,a} / max(1, processed frames); a video whose
frames are all skipped gets zero logits.
"""

from __future__ import annotations

from collections.abc import Callable

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from searchlab.methods.arnet.decisions import ActionLayout, Decisions, run_decisions
from searchlab.models import PolicyNetwork, cost_offsets, select_actions

__all__ = ["RESIZE_MODES", "ARNet", "fuse_logits", "resize_frames"]

RESIZE_MODES: tuple[str, ...] = ("nearest", "bilinear", "antialiased")


def resize_frames(frames: Tensor, size: int, *, mode: str) -> Tensor:
    """Frames (..., 3, H, W) resized to size×size; unchanged when already that size."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; choose one of {list(RESIZE_MODES)}")
    if frames.shape[-2:] == (size, size):
        return frames
    lead = frames.shape[:-3]
    flat = frames.reshape(-1, *frames.shape[-3:])
    if mode == "nearest":
        out = F.interpolate(flat, size=(size, size), mode="nearest")
    else:
        out = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False,
                            antialias=mode == "antialiased")
    return out.reshape(*lead, *out.shape[1:])


def fuse_logits(frame_logits: Tensor, actions: Tensor, *, num_frame_actions: int) -> Tensor:
    """Video logits (N, C) from frame logits (N, T, num_frame_actions, C) and actions (N, T, |A|).

    Only the first ``num_frame_actions`` actions (resolutions, head) carry logits; skip slots add
    nothing. Dividing by max(1, processed) rather than processed + ε keeps the result exact and
    keeps an all-skipped video's gradient finite.
    """
    if frame_logits.dim() != 4 or frame_logits.shape[2] != num_frame_actions:
        raise ValueError(f"frame_logits must be (N, T, {num_frame_actions}, C), got {tuple(frame_logits.shape)}")
    if actions.shape[:2] != frame_logits.shape[:2]:
        raise ValueError(f"actions cover {tuple(actions.shape[:2])} but frame_logits {tuple(frame_logits.shape[:2])}")
    weights = actions[..., :num_frame_actions].to(frame_logits.dtype)  # (N, T, K)
    total = torch.einsum("ntk,ntkc->nc", weights, frame_logits)
    processed = weights.sum(dim=(1, 2))
    return total / processed.clamp_min(1.0).unsqueeze(1)


class ARNet(nn.Module):
    """Per-resolution backbones + policy + 84 head.

    ``backbones[i]`` classifies frames at ``resolutions[i]`` (descending); the policy must have
    |resolutions| + use_84 + |skips| actions. The caller sets the modes (``infer`` expects eval).
    """

    def __init__(
        self,
        *,
        backbones: Sequence[nn.Module],
        resolutions: Sequence[int],
        policy: PolicyNetwork,
        num_classes: int,
        use_84: bool = True,
        skips: Sequence[int] = (1, 2, 4),
        resize_mode: str = "nearest",
    ) -> None:
        super().__init__()
        self.layout = ActionLayout(resolutions=tuple(resolutions), use_84=use_84, skips=tuple(skips))
        problems = []
        if len(backbones) != len(self.layout.resolutions):
            problems.append(f"{len(backbones)} backbones for resolutions {list(resolutions)}; give one per resolution")
        if policy.num_actions != self.layout.num_actions:
            problems.append(f"the policy has {policy.num_actions} actions, the layout needs {self.layout.num_actions} "
                            "(|resolutions| + use_84 + |skips|); build the policy with that many")
        if resize_mode not in RESIZE_MODES:
            problems.append(f"resize_mode {resize_mode!r} is not one of {list(RESIZE_MODES)}")
        if num_classes < 1:
            problems.append(f"num_classes={num_classes} must be >= 1")
        if problems:
            raise ValueError("invalid ARNet arguments:\n  - " + "\n  - ".join(problems))
        self.backbones = nn.ModuleList(backbones)
        self.policy = policy
        self.num_classes = num_classes
        self.resize_mode = resize_mode
        # The 84 action's classifier reads the LSTM state (512 → classes in the paper).
        self.head = nn.Linear(policy.lstm.hidden_size, num_classes) if use_84 else None
        #: Subtracted from the policy's logits by ``infer`` (``set_cost_bias``); None: as trained.
        self.logit_offsets: Tensor | None = None

    def set_cost_bias(self, cost_bias: float, *, action_gflops: Sequence[float]) -> None:
        """The operating point of ``infer``: λ × each action's GFLOPs per frame relative to the
        costliest (a skip costs 0) subtracted from the policy's logits; 0 decides as trained."""
        offsets = cost_offsets(action_gflops, cost_bias=cost_bias)
        self.logit_offsets = None if offsets is None else offsets.to(next(self.parameters()).device)

    @property
    def resolutions(self) -> tuple[int, ...]:
        return self.layout.resolutions

    def decide(
        self, frames: Tensor, *, mode: str, tau: float | None = None, actions: Tensor | None = None,
        logit_offsets: Tensor | None = None,
    ) -> Decisions:
        """The decision loop over frames (N, T, 3, H, W). ``actions`` (N, T, |A|) replays given
        one-hot decisions (the skip rule still applies, so the returned actions are those taken);
        ``logit_offsets`` (|A|) are subtracted from the logits before choosing (the returned logits
        are the policy's own)."""
        _check_frames(frames)
        features = self.policy.extract(resize_frames(frames, self.policy.input_size, mode=self.resize_mode))
        if actions is not None:
            if actions.shape != (*frames.shape[:2], self.layout.num_actions):
                raise ValueError(f"actions must be (N, T, |A|)={(*frames.shape[:2], self.layout.num_actions)}, "
                                 f"got {tuple(actions.shape)}")
            given = actions.to(features.dtype)
            return run_decisions(self.policy, features, layout=self.layout, choose=lambda step, _: given[:, step])
        if logit_offsets is not None:
            return run_decisions(self.policy, features, layout=self.layout,
                                 choose=lambda _, logits: select_actions(logits - logit_offsets, mode=mode, tau=tau))
        return run_decisions(self.policy, features, layout=self.layout,
                             choose=lambda _, logits: select_actions(logits, mode=mode, tau=tau))

    def frame_logits(self, frames: Tensor, hidden: Tensor) -> Tensor:
        """Logits (N, T, |frame actions|, C): every backbone on every frame, and the head on ``hidden``."""
        n, t = frames.shape[:2]
        flat = frames.flatten(0, 1)
        outs = [net(resize_frames(flat, size, mode=self.resize_mode)).view(n, t, -1)
                for net, size in zip(self.backbones, self.resolutions)]
        if self.head is not None:
            outs.append(self.head(hidden))
        return torch.stack(outs, dim=2)

    def forward(self, frames: Tensor, *, tau: float, actions: Tensor | None = None) -> dict[str, Tensor]:
        """Training path: straight-through Gumbel decisions at temperature ``tau`` (or replayed
        ``actions``); returns video_logits (N, C), actions, probs (N, T, |A|), frame_logits."""
        decisions = self.decide(frames, mode="gumbel_hard", tau=tau, actions=actions)
        frame_logits = self.frame_logits(frames, decisions.hidden)
        video = fuse_logits(frame_logits, decisions.actions, num_frame_actions=self.layout.num_frame_actions)
        return {"video_logits": video, "actions": decisions.actions, "probs": decisions.probs,
                "frame_logits": frame_logits}

    @torch.no_grad()
    def infer(self, frames: Tensor, *, mode: str = "argmax", actions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Inference path: video logits (N, C) and the actions taken (N, T, |A|).

        Each backbone runs once on the frames that chose its resolution (resized from the input);
        the head runs on the LSTM states of the frames that chose it; skipped frames run nothing.
        """
        decisions = self.decide(frames, mode=mode, actions=actions, logit_offsets=self.logit_offsets)
        flat_frames = frames.reshape(-1, *frames.shape[2:])
        return self.fuse_chosen(decisions.actions, decisions.hidden, lambda rows: flat_frames[rows]), decisions.actions

    def fuse_chosen(self, actions: Tensor, hidden: Tensor, frames_of: Callable[[Tensor], Tensor]) -> Tensor:
        """Video logits (N, C) from one-hot ``actions`` (N, T, |A|) and LSTM states ``hidden`` (N, T, H):
        each backbone runs once on the frames that chose it, ``frames_of(rows)`` giving those frames
        (rows index the flattened (clip, step) order); the head reads the states of its frames."""
        n, t = actions.shape[:2]
        chosen = actions.argmax(dim=-1).reshape(n * t)
        flat_hidden = hidden.reshape(n * t, -1)
        summed = hidden.new_zeros(n, self.num_classes)
        processed = hidden.new_zeros(n)
        for index in range(self.layout.num_frame_actions):
            rows = (chosen == index).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            if index == self.layout.head_index:
                assert self.head is not None
                logits = self.head(flat_hidden[rows])
            else:
                size = self.resolutions[index]
                logits = self.backbones[index](resize_frames(frames_of(rows), size, mode=self.resize_mode))
            videos = rows // t
            summed.index_add_(0, videos, logits.to(summed.dtype))
            processed.index_add_(0, videos, torch.ones_like(videos, dtype=summed.dtype))
        return summed / processed.clamp_min(1.0).unsqueeze(1)


def _check_frames(frames: Tensor) -> None:
    if frames.dim() != 5 or frames.shape[2] != 3:
        raise ValueError(f"frames must be (N, T, 3, H, W), got shape {tuple(frames.shape)}; add the batch axis")
