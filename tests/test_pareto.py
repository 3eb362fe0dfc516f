"""Non-dominated sorting, knee and hypervolume on hand-made fronts with hand-computed answers."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pandas as pd
import pytest

from searchlab.pareto import (
    default_reference,
    hypervolume,
    hypervolume_history,
    knee_index,
    knee_point,
    non_dominated_ranks,
    pareto_front,
)


def test_ranks_with_mixed_directions_and_missing_values() -> None:
    # (accuracy max, gflops min): A, B on the front; C is beaten by B, D by A; E by everyone.
    values = np.array([[0.9, 10], [0.8, 5], [0.7, 5], [0.9, 12], [0.5, 20], [np.nan, 1]])
    assert non_dominated_ranks(values, ["max", "min"]).tolist() == [0, 0, 1, 1, 2, -1]


def test_equal_points_share_a_front() -> None:
    assert non_dominated_ranks(np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]]), ["min", "min"]).tolist() == [0, 0, 1]


def test_pareto_front_mask_on_a_frame_uses_metric_directions() -> None:
    frame = pd.DataFrame(
        {"accuracy": [0.9, 0.8, 0.7, 0.95], "gflops": [10.0, 5.0, 5.0, 40.0]}, index=["a", "b", "c", "d"]
    )
    assert pareto_front(frame, ["accuracy", "gflops"]).to_dict() == {"a": True, "b": True, "c": False, "d": True}
    # Explicit directions override the registry (here: a degenerate "less accuracy is better").
    assert pareto_front(frame, {"accuracy": "min", "gflops": "min"})["c"]


def _brute_ranks(points: np.ndarray) -> list[int]:
    ranks, remaining, rank = [-1] * len(points), set(range(len(points))), 0
    while remaining:
        front = {
            i
            for i in remaining
            if not any((points[j] <= points[i]).all() and (points[j] < points[i]).any() for j in remaining)
        }
        for i in front:
            ranks[i] = rank
        remaining -= front
        rank += 1
    return ranks


def test_sorting_matches_brute_force_and_scales() -> None:
    rng = np.random.default_rng(0)
    points = rng.integers(0, 6, size=(150, 3)).astype(float)  # many ties and duplicates
    assert non_dominated_ranks(points, ["min"] * 3).tolist() == _brute_ranks(points)
    many = rng.random((3000, 2))
    started = time.perf_counter()
    ranks = non_dominated_ranks(many, ["max", "min"])
    assert time.perf_counter() - started < 5.0
    assert ranks.min() == 0 and (ranks >= 0).all()


def test_knee_is_the_point_farthest_from_the_line_between_extremes() -> None:
    # gflops (min) 1, 2, 4, 8; accuracy (max) .5, .8, .85, .9. Scaled (0 = best):
    # (0, 1), (1/7, .25), (3/7, .125), (1, 0); distance to x + y = 1: 0, .607/sqrt2, .446/sqrt2, 0.
    values = np.array([[1.0, 0.5], [2.0, 0.8], [4.0, 0.85], [8.0, 0.9]])
    assert knee_index(values, ["min", "max"]) == 1
    assert knee_index(values[[0]], ["min", "max"]) == 0
    # Two points: both extremes at distance 0 and equally near the ideal once scaled: the first.
    assert knee_index(np.array([[0.0, 1.0], [0.9, 0.0]]), ["min", "min"]) == 0
    # Repeated extremes make the line undefined: the point nearest the ideal point is the knee.
    assert knee_index(np.array([[0.0, 0.0], [0.0, 0.0], [0.5, 0.5]]), ["min", "min"]) == 0
    frame = pd.DataFrame({"gflops": [8.0, 2.0, 3.0, 1.0, 4.0], "accuracy": [0.9, 0.8, 0.6, 0.5, 0.85]})
    assert knee_point(frame, ["accuracy", "gflops"]) == 1  # row 2 is dominated by row 1


def test_knee_in_three_objectives_uses_the_plane_through_extremes() -> None:
    # Extremes at the unit axes after scaling; plane x + y + z = 1; the middle point is farthest.
    values = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.2, 0.2, 0.2], [0.4, 0.3, 0.1]])
    assert knee_index(values, ["min"] * 3) == 3


def test_hypervolume_2d_by_hand() -> None:
    # Staircase (1,3), (2,2), (3,1) under reference (4,4): 3 + 2 + 1 = 6.
    points = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert hypervolume(points, [4.0, 4.0], ["min", "min"]) == pytest.approx(6.0)
    # Maximised axis: accuracy .5 @ 4 GFLOPs and .8 @ 8 GFLOPs against (0 accuracy, 10 GFLOPs):
    # .8 * 2 + .5 * 4 = 3.6. Points outside the reference add nothing.
    acc_gflops = np.array([[0.5, 4.0], [0.8, 8.0], [0.9, 11.0]])
    assert hypervolume(acc_gflops, [0.0, 10.0], ["max", "min"]) == pytest.approx(3.6)
    assert hypervolume(np.empty((0, 2)), [1.0, 1.0], ["min", "min"]) == 0.0


def test_hypervolume_nd_by_hand_and_by_counting_cells() -> None:
    # Boxes 2*2*1 and 1*1*2 overlapping in a unit cube: 4 + 2 - 1 = 5.
    assert hypervolume(np.array([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]), [2, 2, 2], ["min"] * 3) == pytest.approx(5.0)
    rng = np.random.default_rng(1)
    for dims in (3, 4):
        points = rng.integers(0, 5, size=(12, dims)).astype(float)
        cells = np.array(list(itertools.product(range(5), repeat=dims)), dtype=float)
        covered = ((points[None, :, :] <= cells[:, None, :]).all(axis=2)).any(axis=1).sum()
        assert hypervolume(points, [5.0] * dims, ["min"] * dims) == pytest.approx(covered)


def test_hypervolume_history_counts_feasible_completed_trials_only() -> None:
    frame = pd.DataFrame(
        {
            "number": [0, 1, 2, 3, 4],
            "status": ["completed", "failed", "completed", "completed", "completed"],
            "feasible": [True, None, True, False, True],
            "accuracy": [0.5, np.nan, 0.8, 0.9, 0.4],
            "gflops": [4.0, np.nan, 8.0, 2.0, 5.0],
        }
    ).sample(frac=1.0, random_state=0)  # history follows trial numbers, not row order
    history = hypervolume_history(frame, ["accuracy", "gflops"], [0.0, 10.0])
    assert history["number"].tolist() == [0, 1, 2, 3, 4]
    assert history["hypervolume"].tolist() == pytest.approx([3.0, 3.0, 3.6, 3.6, 3.6])


def test_default_reference_is_just_beyond_the_worst_values() -> None:
    values = np.array([[0.5, 4.0], [0.8, 8.0]])
    assert default_reference(values, ["max", "min"]).tolist() == pytest.approx([0.47, 8.4])
    assert default_reference(np.array([[2.0, 0.0]]), ["min", "min"]).tolist() == pytest.approx([2.2, 0.1])
