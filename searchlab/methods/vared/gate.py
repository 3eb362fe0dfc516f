"""The gate p_l of one VA-RED² layer (METHODS.md §3): how much of each alternative to compute.

The gate reads the layer's input X (N, C_in, T, H, W), averaged over H and W only: time is kept, so
the gate sees C_in·T features and sees how the content changes along the clip (which the temporal
alternatives exploit). fc1 → BatchNorm → tanh → fc2 → + β → φ(z) = max(tanh(z), 0): every weight lies
in [0, 1) and exact zeros occur, which is what lets inference skip alternatives. No sampling, no
temperature: the same weights serve training and inference.

β is learned, one per gate output; a positive initial β (the callers' default 1.0) starts every
alternative on. A dimension with one option has nothing to decide: its weight is a column of ones
and the gate has no output for it. fc1's input size is C_in·T, so a gate is tied to the clip length
it was built for.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Gate", "default_hidden"]


def default_hidden(*, in_channels: int, frames: int) -> int:
    """METHODS.md's default hidden size D_h = max(C_in·T // 4, 16)."""
    return max(in_channels * frames // 4, 16)


class Gate(nn.Module):
    """Weights (v_t (N, S_t), v_c (N, S_c)) of a layer's temporal and channel alternatives."""

    def __init__(
        self,
        *,
        in_channels: int,
        frames: int,
        hidden: int | None,
        temporal_options: int,
        channel_options: int,
        beta_init: float,
    ) -> None:
        super().__init__()
        problems = [f"{name}={value} must be >= 1" for name, value in
                    (("in_channels", in_channels), ("frames", frames), ("temporal_options", temporal_options),
                     ("channel_options", channel_options)) if value < 1]
        if hidden is not None and hidden < 1:
            problems.append(f"hidden={hidden} must be >= 1 (or None for max(C_in·T // 4, 16))")
        if temporal_options == 1 and channel_options == 1:
            problems.append("temporal_options and channel_options are both 1: there is nothing to gate")
        if problems:
            raise ValueError("invalid Gate arguments: " + "; ".join(problems))
        hidden = default_hidden(in_channels=in_channels, frames=frames) if hidden is None else hidden
        self.in_channels, self.frames = in_channels, frames
        self.temporal_options, self.channel_options = temporal_options, channel_options
        # outputs only for the dimensions that are on: temporal first, then channel
        self._temporal_outputs = temporal_options if temporal_options > 1 else 0
        self._channel_outputs = channel_options if channel_options > 1 else 0
        outputs = self._temporal_outputs + self._channel_outputs
        self.fc1 = nn.Linear(in_channels * frames, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, outputs, bias=False)  # β is its bias
        self.beta = nn.Parameter(torch.full((outputs,), float(beta_init)))
        #: Subtracted from the pre-activations (``set_cost_bias``); None: the gate as trained.
        self.offsets: Tensor | None = None

    def set_cost_bias(self, cost_bias: float) -> None:
        """The operating point: λ × each alternative's nominal cost relative to the full one (temporal
        alternative j computes 1/2^j of the frames, channel alternative i 1/2^i of the filters)
        subtracted from its pre-activation, so a larger λ turns the costly alternatives off first."""
        if cost_bias == 0:
            self.offsets = None
            return
        relative = ([0.5**j for j in range(self._temporal_outputs)] + [0.5**i for i in range(self._channel_outputs)])
        self.offsets = cost_bias * torch.tensor(relative, dtype=self.beta.dtype, device=self.beta.device)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (N, C_in, T, H, W) → (v_t (N, S_t), v_c (N, S_c)), each weight in [0, 1)."""
        if x.dim() != 5 or x.shape[1] != self.in_channels or x.shape[2] != self.frames:
            raise ValueError(f"the gate expects (N, {self.in_channels}, {self.frames}, H, W) (it is built for "
                             f"{self.frames} frames), got {tuple(x.shape)}")
        features = x.mean(dim=(-2, -1)).flatten(1)  # (N, C_in·T): pooled over space only
        z = self.fc2(torch.tanh(self.bn(self.fc1(features)))) + self.beta
        if self.offsets is not None:
            z = z - self.offsets
        weights = torch.relu(torch.tanh(z))
        v_t = weights[:, : self._temporal_outputs] if self._temporal_outputs else self._ones(x)
        v_c = weights[:, self._temporal_outputs :] if self._channel_outputs else self._ones(x)
        return v_t, v_c

    @staticmethod
    def _ones(x: Tensor) -> Tensor:
        # torch.ones rather than new_ones: fvcore knows aten::ones as free, not aten::new_ones
        return torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
