"""The cheap operations Φ^c and Φ^t that reconstruct what a VA-RED² alternative did not compute.

Both act on a layer's output in its clip layout (``ClipLayout``): (N, C, T, H, W) for a 3D
convolution, (N, T, C, H, W) for a 2D convolution applied frame by frame. Forms (``CHEAP_OPS``):

* ``"depthwise"`` (METHODS.md's default): a per-channel 1×1 linear map with bias, y_c = a_c·x_c + b_c,
  initialised to copy (a = 1, b = 0): a depthwise 1×1 convolution, computed as one fused
  multiply-add (``DepthwiseMap``) and priced as one multiply-accumulate per output element;
* ``"copy"``: the identity (the computed channel or frame repeated), no parameters and no cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["CHEAP_OPS", "ClipLayout", "DepthwiseMap", "make_cheap_op"]

CHEAP_OPS: tuple[str, ...] = ("depthwise", "copy")


@dataclass(frozen=True)
class ClipLayout:
    """Where channels and time lie in a layer's output viewed per clip (batch is always dim 0)."""

    video: bool  # True: a Conv3d's (N, C, T, H, W); False: a per-frame Conv2d's (N, T, C, H, W)

    @property
    def channel_dim(self) -> int:
        return 1 if self.video else 2

    @property
    def time_dim(self) -> int:
        return 2 if self.video else 1


class DepthwiseMap(nn.Module):
    """y_c = a_c·x_c + b_c for every channel c of a clip-layout tensor, initialised to copy.

    One fused ``torch.addcmul``: a depthwise 1×1 convolution computes the same, but on CPU it ran
    about 10× slower than this elementwise kernel and ate the savings of the cheaper alternatives.
    ``searchlab.flops`` prices ``aten::addcmul`` as one MAC per output element, as fvcore prices a
    depthwise 1×1 convolution.
    """

    def __init__(self, *, channels: int, layout: ClipLayout) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.layout = layout

    def forward(self, x: Tensor) -> Tensor:
        shape = [1] * x.dim()
        shape[self.layout.channel_dim] = -1
        return torch.addcmul(self.bias.view(shape), self.weight.view(shape), x)


def make_cheap_op(kind: str, *, channels: int, layout: ClipLayout) -> nn.Module:
    """A cheap op of form ``kind`` (one of ``CHEAP_OPS``) on ``channels`` channels."""
    if kind == "depthwise":
        return DepthwiseMap(channels=channels, layout=layout)
    if kind == "copy":
        return nn.Identity()
    raise ValueError(f"unknown cheap op {kind!r}; choose one of {list(CHEAP_OPS)}")
