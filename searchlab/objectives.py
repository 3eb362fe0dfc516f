"""The reporting contract: every metric a trial reports, its direction and its meaning.

Defined once here so the sweep's objectives, its constraints, the results table, the report and
`pick` agree on names and directions. Ray-free and torch-free so the config layer can validate
against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["max", "min"]


@dataclass(frozen=True)
class Metric:
    name: str
    direction: Direction
    description: str


METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("accuracy", "max", "held-out accuracy: mAP for multi-label sets, top-1 otherwise (0..1)"),
        Metric("gflops", "min", "mean GFLOPs per video from the decisions taken, policy included"),
        Metric("gflops_p5", "min", "5th percentile of GFLOPs per video"),
        Metric("gflops_p95", "min", "95th percentile of GFLOPs per video"),
        Metric("memory_mb", "min", "MiB of parameters stored for inference"),
        Metric("skip_fraction", "min", "fraction of frames the policy skipped"),
    )
}


def direction_of(name: str) -> Direction:
    """The direction of a known metric; KeyError names the known ones."""
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r}; known metrics: {', '.join(sorted(METRICS))}")
    return METRICS[name].direction
