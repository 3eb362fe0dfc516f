"""Cosine learning-rate schedules stepped per iteration (METHODS.md: SGD with cosine schedule).

Expressed as ``LambdaLR`` factors so one scheduler serves several parameter groups (α groups,
body/head groups) and its state (the step count) is a plain value in the checkpoint. A group can
be given a window of steps (the teacher stage trains two networks one after the other): outside
its window its factor is 0, so SGD leaves it unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["WarmupCosine", "WindowedCosine", "cosine_scheduler", "warmup_cosine_scheduler"]


class WindowedCosine:
    """Factor of a cosine decay from 1 to 0 over steps [start, stop); 0 outside that window."""

    def __init__(self, *, start: int, stop: int) -> None:
        if not 0 <= start < stop:
            raise ValueError(f"cosine window [{start}, {stop}) is empty; it needs start < stop")
        self.start, self.stop = start, stop

    def __call__(self, step: int) -> float:
        if not self.start <= step < self.stop:
            return 0.0
        return 0.5 * (1.0 + math.cos(math.pi * (step - self.start) / (self.stop - self.start)))


def cosine_scheduler(
    optimizer: torch.optim.Optimizer, *, windows: Sequence[tuple[int, int]]
) -> torch.optim.lr_scheduler.LambdaLR:
    """One ``(start, stop)`` step window per parameter group of ``optimizer``."""
    if len(windows) != len(optimizer.param_groups):
        raise ValueError(f"{len(windows)} windows for {len(optimizer.param_groups)} parameter groups")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, [WindowedCosine(start=start, stop=stop) for start, stop in windows]
    )


class WarmupCosine:
    """Factor of a linear warm-up from 0 over ``warmup`` steps, then a cosine decay to 0 at ``total``."""

    def __init__(self, *, warmup: int, total: int) -> None:
        if not 0 <= warmup < total:
            raise ValueError(f"warm-up {warmup} must be in [0, total steps {total})")
        self.warmup, self.cosine = warmup, WindowedCosine(start=warmup, stop=total)

    def __call__(self, step: int) -> float:
        # step + 1: the first step already trains at a non-zero lr
        return (step + 1) / self.warmup if step < self.warmup else self.cosine(step)


def warmup_cosine_scheduler(
    optimizer: torch.optim.Optimizer, *, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Every parameter group warms up linearly, then decays on one cosine (VA-RED²'s recipe)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup=warmup_steps, total=total_steps))
