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

__all__ = ["WindowedCosine", "cosine_scheduler"]


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
