"""The report's view per method: each method's colour and baseline marker, and its own best trade-offs.

A cross-method sweep's front is one front over every method's trials. Beside it the report shows,
for each method, its own front (its trials that no trial of the same method beats) against its own
baselines, and its hypervolume against the same reference point as the whole front (so the figures
add up to a comparison: a method whose hypervolume equals the whole front's holds the front alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from searchlab.report_html import _gflops_cell, _num, esc, grid, usage_html

if TYPE_CHECKING:
    from searchlab.report import NormalisedHypervolume

_MARKERS = ("s", "^", "D", "v", "P", "X", "*")


@dataclass(frozen=True)
class MethodStyle:
    colour: str  # of its trials, front points and baselines
    marker: str  # of its baselines


def method_styles(methods: list[str]) -> dict[str, MethodStyle]:
    """Each method's colour and baseline marker, by its place among the run's methods (sorted by name)."""
    return {method: MethodStyle(colour=f"C{i % 10}", marker=_MARKERS[i % len(_MARKERS)])
            for i, method in enumerate(sorted(set(methods)))}


@dataclass(frozen=True)
class MethodSummary:
    """One method's part of a run: its own front against its own baselines, and its hypervolume."""

    method: str
    completed: int  # completed feasible trials with finite objectives
    front: pd.DataFrame  # its own front, cheapest first, with "vs baselines" and "action usage"
    on_whole_front: tuple[str, ...]  # its points on the front over every method ("7", "7@2": trial 7 at cost_bias 2)
    hypervolume: float  # against the whole front's reference point
    normalised: NormalisedHypervolume | None  # in its own baselines' box
    baselines: int  # its baselines drawn (those on shared stages its trials used)


def summary_text(summary: MethodSummary, *, whole_hypervolume: float) -> str:
    """One line on a method: trials, front, hypervolume (share of the whole front's) and the box figure."""
    share = f" ({summary.hypervolume / whole_hypervolume:.0%} of the whole front's)" if whole_hypervolume > 0 else ""
    text = (f"{summary.method}: {summary.completed} completed trials, own front {len(summary.front)} "
            f"(points {', '.join(summary.front['point']) or 'none'}), on the whole front: "
            f"{', '.join(map(str, summary.on_whole_front)) or 'none'}; hypervolume {summary.hypervolume:.6g}{share}")
    if summary.normalised is not None:
        text += (f"; normalised to its baselines' box: front {summary.normalised.front:.3f}, "
                 f"baselines {summary.normalised.baselines:.3f}")
    return text


def methods_html(summaries: list[MethodSummary], *, whole_hypervolume: float, styles: dict[str, MethodStyle]) -> str:
    """Each method's best trade-offs (its own front) against its own baselines."""
    blocks = []
    for summary in summaries:
        rows = [[f"<b>{row['point']}</b>{' ★' if row['point'] in summary.on_whole_front else ''}",
                 _num(row["accuracy"]), _gflops_cell(row), usage_html(str(row.get("action usage", ""))),
                 esc(row.get("vs baselines", ""))]
                for _, row in summary.front.iterrows()]
        colour = styles[summary.method].colour
        blocks.append(f'<h3><span style="color:{_css_colour(colour)}">●</span> {esc(summary.method)}</h3>'
                      f"<p>{esc(summary_text(summary, whole_hypervolume=whole_hypervolume))}.</p>"
                      + grid(["point", "accuracy", "GFLOPs mean (p5–p95)", "action usage", "vs its baselines"], rows,
                             kinds="nnntt"))
    return ("<p>Each method's own front (its trials that no trial of the same method beats), cheapest first, "
            "against its own baselines; ★ marks a point on the front over every method. Hypervolumes use the "
            "whole front's reference point.</p>" + "".join(blocks))


def _css_colour(colour: str) -> str:
    from matplotlib.colors import to_hex

    return to_hex(colour)
