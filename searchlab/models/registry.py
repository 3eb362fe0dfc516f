"""Backbone registry: name -> factory of the plain torchvision network.

One entry serves both networks of VideoIQ's stage 1: ``create_teacher`` returns the factory's
full-precision torchvision model, ``create_backbone`` turns a fresh one into an
``AnyPrecisionResNet`` by module surgery. Registering a name twice replaces the entry and warns
(as timm's registry does), so a user module can override a shipped backbone knowingly.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Callable, Sequence

from torchvision.models import ResNet, resnet18, resnet34, resnet50
from torchvision.models.resnet import BasicBlock

from searchlab.models.anyprec import AnyPrecisionResNet

__all__ = ["create_backbone", "create_teacher", "list_backbones", "register_backbone"]

TeacherFactory = Callable[..., ResNet]
_REGISTRY: dict[str, TeacherFactory] = {}


def register_backbone(name: str) -> Callable[[TeacherFactory], TeacherFactory]:
    """Decorator registering ``factory(*, num_classes) -> torchvision ResNet`` under ``name``."""

    def decorate(factory: TeacherFactory) -> TeacherFactory:
        if name in _REGISTRY:
            warnings.warn(f"backbone {name!r} was already registered; the new factory replaces it", stacklevel=2)
        _REGISTRY[name] = factory
        return factory

    return decorate


def _factory(name: str) -> TeacherFactory:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown backbone {name!r}; registered: {', '.join(list_backbones())}"
        ) from None


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names matching the shell-style ``pattern``, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def create_teacher(name: str, *, num_classes: int) -> ResNet:
    """The plain full-precision torchvision network of backbone ``name`` (randomly initialised)."""
    return _factory(name)(num_classes=num_classes)


def create_backbone(
    name: str, *, num_classes: int, bit_widths: Sequence[int], alpha_init: float
) -> AnyPrecisionResNet:
    """Any-precision network of backbone ``name`` (randomly initialised; load weights after)."""
    return AnyPrecisionResNet(
        resnet=create_teacher(name, num_classes=num_classes),
        bit_widths=bit_widths,
        alpha_init=alpha_init,
    )


@register_backbone("resnet10")
def _resnet10(*, num_classes: int) -> ResNet:
    """ResNet with one BasicBlock per stage: the demo/test backbone (about 5M parameters)."""
    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes)


@register_backbone("resnet18")
def _resnet18(*, num_classes: int) -> ResNet:
    return resnet18(weights=None, num_classes=num_classes)


@register_backbone("resnet34")
def _resnet34(*, num_classes: int) -> ResNet:
    return resnet34(weights=None, num_classes=num_classes)


@register_backbone("resnet50")
def _resnet50(*, num_classes: int) -> ResNet:
    return resnet50(weights=None, num_classes=num_classes)
