"""Any-precision ResNet (METHODS.md §1.2): one set of conv weights serving every bit-width in B.

Made from a torchvision ``ResNet`` by module surgery: every conv except the first (including the
downsample 1x1 convs) becomes a ``QuantConv2d`` sharing the original weight, every BatchNorm except
the first becomes a ``SwitchableBatchNorm2d`` (one BN per bit-width), each quantised conv carries
one PACT α per quantised bit-width. The first conv, its BN and the fc stay full precision and
shared: their inputs do not depend on the bit-width, so one BN there is all the method needs.

Module names equal torchvision's, so a torchvision state dict maps onto this network key by key
(BN keys gain ``bns.<bits>.``). At 32 bits the quantised layers use the raw weights and unclipped
activations (see ``quant.py``): with a torchvision state dict loaded, ``forward(x, 32)`` equals the
torchvision network in eval mode, which is what lets the frozen teacher and the student share
their ImageNet initialisation.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torchvision.models import ResNet

from searchlab.models.quant import (
    FULL_PRECISION_BITS,
    QuantConv2d,
    QuantLinear,
    SwitchableBatchNorm2d,
)

__all__ = ["AnyPrecisionResNet", "storage_bits", "validate_bit_widths"]

_FULL_PRECISION_NAMES = ("conv1", "bn1", "fc")
_CHILD_NAMES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc")


def validate_bit_widths(bit_widths: Sequence[int]) -> tuple[int, ...]:
    """Return B sorted descending; raise ValueError naming every problem with it."""
    values = list(bit_widths)
    problems = []
    if not values:
        problems.append("bit_widths is empty; give at least one, e.g. (32, 4, 2)")
    bad = [b for b in values if not isinstance(b, int) or isinstance(b, bool) or not 1 <= b <= 32]
    if bad:
        problems.append(f"bit-widths must be ints in 1..32, got {bad}")
    if len(set(values)) != len(values):
        problems.append(f"bit-widths must be distinct, got {values}")
    if problems:
        raise ValueError("invalid bit_widths: " + "; ".join(problems))
    return tuple(sorted(values, reverse=True))


def storage_bits(bit_widths: Sequence[int]) -> int:
    """Integer grid the quantised weights are truncated from: the largest bit-width below 32.

    Returns 32 when B = {32} (nothing is quantised).
    """
    quantised = [b for b in bit_widths if b < FULL_PRECISION_BITS]
    return max(quantised) if quantised else FULL_PRECISION_BITS


def _convert(
    module: nn.Module, *, bit_widths: tuple[int, ...], max_bits: int, alpha_init: float
) -> None:
    """Replace, in place, every Conv2d by a QuantConv2d and every BatchNorm2d by a switchable one."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            new: nn.Module = QuantConv2d.from_conv(
                child, bit_widths=bit_widths, max_bits=max_bits, alpha_init=alpha_init
            )
        elif isinstance(child, nn.BatchNorm2d):
            new = SwitchableBatchNorm2d.from_batchnorm(child, bit_widths=bit_widths)
        else:
            _convert(child, bit_widths=bit_widths, max_bits=max_bits, alpha_init=alpha_init)
            continue
        setattr(module, name, new)


class AnyPrecisionResNet(nn.Module):
    """ResNet that runs at any bit-width of ``bit_widths``: ``forward(x, bits)``.

    Built from (and taking over the modules of) a torchvision ``ResNet``; ``alpha_init`` is the
    initial PACT clip value of every quantised layer and bit-width.
    """

    def __init__(self, *, resnet: ResNet, bit_widths: Sequence[int], alpha_init: float) -> None:
        super().__init__()
        if not isinstance(resnet, ResNet):
            raise TypeError(f"resnet must be a torchvision ResNet, got {type(resnet).__name__}")
        self.bit_widths = validate_bit_widths(bit_widths)
        self.max_bits = storage_bits(self.bit_widths)
        self.num_classes = resnet.fc.out_features
        for name in _CHILD_NAMES:
            child = getattr(resnet, name)
            if name.startswith("layer"):
                _convert(
                    child, bit_widths=self.bit_widths, max_bits=self.max_bits, alpha_init=alpha_init
                )
            setattr(self, name, child)
        self._switchable = [
            m for m in self.modules() if isinstance(m, QuantConv2d | QuantLinear | SwitchableBatchNorm2d)
        ]

    def set_bits(self, bits: int) -> None:
        """Make every quantised layer and switchable BN run at ``bits``."""
        if bits not in self.bit_widths:
            raise ValueError(f"bits={bits!r} is not one of this network's bit_widths {self.bit_widths}")
        for m in self._switchable:
            m.bits = bits

    def forward(self, x: torch.Tensor, bits: int) -> torch.Tensor:
        """Class logits ``(N, num_classes)`` of images ``(N, 3, H, W)`` at ``bits`` bits."""
        self.set_bits(bits)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def alpha_parameters(self) -> dict[int, list[nn.Parameter]]:
        """PACT α parameters grouped by bit-width (32 has none: activations pass unquantised)."""
        groups: dict[int, list[nn.Parameter]] = {b: [] for b in self.bit_widths if b < FULL_PRECISION_BITS}
        for m in self._switchable:
            if isinstance(m, QuantConv2d | QuantLinear):
                for key, p in m.alpha.items():
                    groups[int(key)].append(p)
        return groups

    def optimizer_param_groups(
        self,
        *,
        lr: float,
        weight_decay: float,
        alpha_lr: Mapping[int, float],
        alpha_wd: Mapping[int, float],
    ) -> list[dict]:
        """Parameter groups: every non-α parameter, then one group per bit-width's α.

        ``alpha_lr`` / ``alpha_wd`` must name every quantised bit-width; a value for 32 is accepted
        (METHODS.md's tables list one) and unused, since 32-bit activations have no α.
        """
        alphas = self.alpha_parameters()
        problems = []
        for label, table in (("alpha_lr", alpha_lr), ("alpha_wd", alpha_wd)):
            missing = sorted(set(alphas) - set(table), reverse=True)
            unknown = sorted(set(table) - set(self.bit_widths), reverse=True)
            if missing:
                problems.append(f"{label} lacks bit-widths {missing}")
            if unknown:
                problems.append(f"{label} names bit-widths {unknown} not in {self.bit_widths}")
        if problems:
            raise ValueError("optimizer_param_groups: " + "; ".join(problems))
        alpha_ids = {id(p) for ps in alphas.values() for p in ps}
        groups = [
            {
                "name": "weights",
                "params": [p for p in self.parameters() if id(p) not in alpha_ids],
                "lr": lr,
                "weight_decay": weight_decay,
            }
        ]
        for b, params in alphas.items():
            if params:
                groups.append(
                    {"name": f"alpha_{b}", "params": params, "lr": alpha_lr[b], "weight_decay": alpha_wd[b]}
                )
        return groups

    def load_torchvision_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
        """Load a torchvision ResNet state dict: shared conv weights and every bit's BN copy.

        If the fc shape differs (another ``num_classes``), the fc keeps its fresh initialisation,
        a warning says so, and the skipped keys are returned. Any other missing, unexpected or
        mis-shaped key raises ValueError listing all of them.
        """
        own = self.state_dict()
        mapped: dict[str, torch.Tensor] = {}
        problems: list[str] = []
        skipped: list[str] = []
        for key, value in state_dict.items():
            targets = self._targets(key, own)
            if not targets:
                problems.append(f"unexpected key {key!r}")
                continue
            for target in targets:
                if own[target].shape == value.shape:
                    mapped[target] = value
                elif key.startswith("fc."):
                    skipped.append(key)
                else:
                    problems.append(
                        f"{key!r} has shape {tuple(value.shape)}, expected {tuple(own[target].shape)}"
                    )
        ignored = {k for k in own if ".alpha." in k}
        if skipped:
            ignored |= {k for k in own if k.startswith("fc.")}
        problems += [f"missing key {k!r}" for k in sorted(set(own) - set(mapped) - ignored)]
        if problems:
            raise ValueError(
                "state dict does not fit this network (is it a torchvision ResNet of the same "
                "depth?): " + "; ".join(problems)
            )
        self.load_state_dict(mapped, strict=False)
        if skipped:
            warnings.warn(
                f"fc not loaded: the state dict's fc is for another number of classes; "
                f"the fc of this {self.num_classes}-class network keeps its fresh initialisation",
                stacklevel=2,
            )
        return skipped

    def _targets(self, key: str, own: Mapping[str, torch.Tensor]) -> list[str]:
        """Own keys a torchvision key loads into (one per bit-width for switchable BN)."""
        if key in own:
            return [key]
        prefix, _, leaf = key.rpartition(".")
        bn_keys = [f"{prefix}.bns.{b}.{leaf}" for b in self.bit_widths]
        return [k for k in bn_keys if k in own]
