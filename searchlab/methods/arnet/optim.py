"""AR-Net's optimizer (METHODS.md §2): SGD, constant lr, linear layers faster, gradients clipped.

The official code (``get_optim_policies``) gives every ``nn.Linear`` weight 5× the lr and its bias
10× the lr without weight decay; every other parameter (convs, BatchNorm, LSTM) gets the base lr and
weight decay. The global gradient norm is clipped to 20 before each step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["constant_scheduler", "make_optimizer", "parameter_groups"]


def parameter_groups(
    modules: Iterable[nn.Module],
    *,
    lr: float,
    weight_decay: float,
    linear_lr_mult: float,
    linear_bias_lr_mult: float,
) -> list[dict[str, Any]]:
    """Three groups over the trainable parameters of ``modules``: other, linear weights, linear
    biases (always all three, possibly empty, so a checkpoint's group layout never changes)."""
    seen: set[int] = set()
    other, weights, biases = [], [], []
    for module in modules:
        for sub in module.modules():
            for name, param in sub.named_parameters(recurse=False):
                if not param.requires_grad or id(param) in seen:
                    continue
                seen.add(id(param))
                if isinstance(sub, nn.Linear):
                    (weights if name == "weight" else biases).append(param)
                else:
                    other.append(param)
    return [
        {"name": "other", "params": other, "lr": lr, "weight_decay": weight_decay},
        {"name": "linear_weight", "params": weights, "lr": lr * linear_lr_mult, "weight_decay": weight_decay},
        {"name": "linear_bias", "params": biases, "lr": lr * linear_bias_lr_mult, "weight_decay": 0.0},
    ]


def make_optimizer(
    modules: Iterable[nn.Module],
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    linear_lr_mult: float,
    linear_bias_lr_mult: float,
) -> torch.optim.SGD:
    """SGD with momentum over ``parameter_groups``; frozen parameters (requires_grad False) left out."""
    groups = parameter_groups(modules, lr=lr, weight_decay=weight_decay, linear_lr_mult=linear_lr_mult,
                              linear_bias_lr_mult=linear_bias_lr_mult)
    if not any(group["params"] for group in groups):
        raise ValueError("no trainable parameters: every parameter of the given modules is frozen")
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)


def _constant(_: int) -> float:
    return 1.0


def constant_scheduler(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """AR-Net trains at constant lr; a scheduler object still exists so that ``resume`` and
    ``checkpoint_epoch`` treat every stage alike."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _constant)
