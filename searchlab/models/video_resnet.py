"""R(2+1)D video networks (torchvision's VideoResNet), taking clips as (N, 3, T, H, W).

They are not in the backbone registry: every registered backbone is a 2D ResNet that must survive
VideoIQ's any-precision surgery. ``r2plus1d_18`` is torchvision's ``r2plus1d_18``; ``r2plus1d_10``
is the same network with one block per stage, for tests and demos (as ``resnet10`` is for the 2D
ResNets).
"""

from __future__ import annotations

from collections.abc import Callable

from torchvision.models.video import VideoResNet, r2plus1d_18
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, R2Plus1dStem

__all__ = ["VIDEO_NETWORKS", "create_video_network"]


def _r2plus1d_10(*, num_classes: int) -> VideoResNet:
    return VideoResNet(block=BasicBlock, conv_makers=[Conv2Plus1D] * 4, layers=[1, 1, 1, 1], stem=R2Plus1dStem,
                       num_classes=num_classes)


def _r2plus1d_18(*, num_classes: int) -> VideoResNet:
    return r2plus1d_18(weights=None, num_classes=num_classes)


_FACTORIES: dict[str, Callable[..., VideoResNet]] = {"r2plus1d_10": _r2plus1d_10, "r2plus1d_18": _r2plus1d_18}

#: names of the video networks, sorted
VIDEO_NETWORKS: tuple[str, ...] = tuple(sorted(_FACTORIES))


def create_video_network(name: str, *, num_classes: int) -> VideoResNet:
    """A randomly initialised video network ``name`` (one of ``VIDEO_NETWORKS``) with ``num_classes`` outputs."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown video network {name!r}; choose one of {', '.join(VIDEO_NETWORKS)}")
    return _FACTORIES[name](num_classes=num_classes)
