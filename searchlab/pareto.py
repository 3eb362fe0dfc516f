"""Multi-objective analysis of a trials table: non-dominated sorting, knee, hypervolume.

Everything works in "minimisation form": objectives to maximise are negated first, so one
dominance rule serves any mix of directions. Rows whose objectives are missing or not finite
never join a front (rank -1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from searchlab.objectives import direction_of

_CHUNK = 512  # rows of the dominance matrix computed at once (memory ~ CHUNK * n * m bytes)


def objective_directions(objectives: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    """{name: max|min}; a plain list of names takes each metric's registered direction."""
    if isinstance(objectives, Mapping):
        return {name: str(direction) for name, direction in objectives.items()}
    return {name: direction_of(name) for name in objectives}


def as_minimisation(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """(n, m) values with every "max" column negated."""
    bad = [d for d in directions if d not in ("max", "min")]
    if bad or values.ndim != 2 or values.shape[1] != len(directions):
        raise ValueError(f"need (n, {len(directions)}) values and directions 'max'/'min', got {values.shape}, {bad}")
    signs = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    return np.asarray(values, dtype=float) * signs


def _dominance(points: np.ndarray) -> np.ndarray:
    """Boolean (n, n): [i, j] when point i dominates point j (minimisation)."""
    n = len(points)
    dominates = np.zeros((n, n), dtype=bool)
    for start in range(0, n, _CHUNK):
        block = points[start : start + _CHUNK, None, :]
        no_worse = (block <= points[None, :, :]).all(axis=2)
        better = (block < points[None, :, :]).any(axis=2)
        dominates[start : start + _CHUNK] = no_worse & better
    return dominates


def non_dominated_ranks(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Front index of each row (0 = Pareto front, 1 = next front, ...; -1 = not finite).

    Deb's fast non-dominated sort with a vectorised dominance matrix: O(n^2 m) comparisons in
    numpy, a few hundred milliseconds for thousands of points.
    """
    points = as_minimisation(np.asarray(values, dtype=float), directions)
    ranks = np.full(len(points), -1, dtype=int)
    valid = np.flatnonzero(np.isfinite(points).all(axis=1))
    if valid.size == 0:
        return ranks
    dominates = _dominance(points[valid])
    dominated_by = dominates.sum(axis=0)
    remaining = np.ones(valid.size, dtype=bool)
    rank = 0
    while remaining.any():
        front = remaining & (dominated_by == 0)
        ranks[valid[front]] = rank
        remaining &= ~front
        dominated_by -= dominates[front].sum(axis=0)
        rank += 1
    return ranks


def pareto_front(frame: pd.DataFrame, objectives: Mapping[str, str] | Sequence[str]) -> pd.Series:
    """Boolean mask (aligned with `frame`) of the rows no other row dominates."""
    directions = objective_directions(objectives)
    if frame.empty:
        return pd.Series(False, index=frame.index)
    ranks = non_dominated_ranks(frame[list(directions)].to_numpy(dtype=float), list(directions.values()))
    return pd.Series(ranks == 0, index=frame.index)


def knee_index(values: np.ndarray, directions: Sequence[str]) -> int:
    """Row of the knee of a front: the point farthest beyond the plane through its extremes.

    Each objective is scaled to [0, 1] over the given points (0 = best). In 2-D the extremes are
    the best point of each objective and the knee is the point farthest from the line joining them,
    on the side of the ideal point. With m > 2 objectives the line becomes the hyperplane through
    the m extremes; where that is not unique (repeated or collinear extremes) the knee is the point
    nearest the ideal point. Ties go to the point nearer the ideal point. Pass a front: dominated
    points would only be farther from the ideal.
    """
    points = as_minimisation(np.asarray(values, dtype=float), directions)
    if len(points) == 0:
        raise ValueError("knee of an empty front")
    low, high = points.min(axis=0), points.max(axis=0)
    scaled = (points - low) / np.where(high > low, high - low, 1.0)
    nearness = np.linalg.norm(scaled, axis=1)
    extremes = scaled[np.argmin(scaled, axis=0)]  # row k: best point of objective k
    try:
        normal = np.linalg.solve(extremes, np.ones(points.shape[1]))
    except np.linalg.LinAlgError:
        normal = None
    if normal is None or not np.all(np.isfinite(normal)):
        return int(np.argmin(nearness))
    beyond = (1.0 - scaled @ normal) / np.linalg.norm(normal)  # > 0 towards the ideal point
    return int(np.lexsort((nearness, -beyond))[0])


def knee_point(frame: pd.DataFrame, objectives: Mapping[str, str] | Sequence[str]) -> object:
    """Index label of the knee among `frame`'s Pareto front (see `knee_index`)."""
    directions = objective_directions(objectives)
    front = frame[pareto_front(frame, directions)]
    if front.empty:
        raise ValueError("no row has finite values for every objective, so there is no front")
    values = front[list(directions)].to_numpy(dtype=float)
    return front.index[knee_index(values, list(directions.values()))]


# ---------------------------------------------------------------------------------------------
# Hypervolume


def hypervolume(values: np.ndarray, reference: Sequence[float], directions: Sequence[str]) -> float:
    """Volume dominated by the points and bounded by the reference point (exact).

    Points that do not strictly beat the reference in every objective add nothing. Two objectives
    use a sorted sweep (O(n log n)); more use slicing along the last objective, recursing down to
    the 2-D sweep: exact, and fast for the few objectives and hundreds of front points a sweep has.
    """
    points = as_minimisation(np.asarray(values, dtype=float).reshape(-1, len(directions)), directions)
    ref = as_minimisation(np.asarray(reference, dtype=float)[None, :], directions)[0]
    points = points[np.isfinite(points).all(axis=1) & (points < ref).all(axis=1)]
    return _hypervolume_min(points, ref)


def _nondominated_min(points: np.ndarray) -> np.ndarray:
    if len(points) <= 1:
        return points
    return points[~_dominance(points).any(axis=0)]


def _hypervolume_min(points: np.ndarray, ref: np.ndarray) -> float:
    if len(points) == 0:
        return 0.0
    dims = points.shape[1]
    if dims == 1:
        return float(ref[0] - points[:, 0].min())
    if dims == 2:
        order = np.lexsort((points[:, 1], points[:, 0]))
        volume, best_y = 0.0, ref[1]
        for x, y in points[order]:
            if y < best_y:
                volume += (ref[0] - x) * (best_y - y)
                best_y = y
        return float(volume)
    points = _nondominated_min(points)
    points = points[np.argsort(points[:, -1], kind="stable")]
    volume = 0.0
    for i in range(len(points)):
        upper = points[i + 1, -1] if i + 1 < len(points) else ref[-1]
        if upper > points[i, -1]:
            volume += _hypervolume_min(_nondominated_min(points[: i + 1, :-1]), ref[:-1]) * (upper - points[i, -1])
    return float(volume)


def default_reference(values: np.ndarray, directions: Sequence[str], *, margin: float = 0.1) -> np.ndarray:
    """A reference point just worse than the worst finite value of each objective.

    Pads by `margin` of each objective's range (or of its magnitude, or 1, when the range is 0),
    so the extreme points of the front still add volume.
    """
    points = as_minimisation(np.asarray(values, dtype=float), directions)
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) == 0:
        raise ValueError("no finite values to place a reference point")
    worst, span = points.max(axis=0), np.ptp(points, axis=0)
    pad = np.where(span > 0, span, np.where(worst != 0, np.abs(worst), 1.0)) * margin
    signs = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    return (worst + pad) * signs


def hypervolume_history(
    frame: pd.DataFrame, objectives: Mapping[str, str] | Sequence[str], reference: Sequence[float]
) -> pd.DataFrame:
    """Hypervolume of the feasible completed trials up to each trial number (columns number, hypervolume).

    A trial counts when its status is "completed", it is feasible (``feasible`` not False) and
    every objective is finite; other trials repeat the previous value, so the curve has one point
    per trial and never decreases.
    """
    directions = objective_directions(objectives)
    names, dirs = list(directions), list(directions.values())
    ordered = frame.sort_values("number", kind="stable")
    counts = (ordered["status"] == "completed") & ~ordered["feasible"].eq(False).fillna(False).astype(bool)
    values = ordered[names].to_numpy(dtype=float)
    ref = as_minimisation(np.asarray(reference, dtype=float)[None, :], dirs)[0]
    front = np.empty((0, len(names)))
    current, history = 0.0, []
    for point, included in zip(as_minimisation(values, dirs), counts.to_numpy()):
        if included and np.isfinite(point).all() and (point < ref).all():
            if not ((front <= point).all(axis=1)).any():  # not weakly dominated: the front grows
                front = _nondominated_min(np.vstack([front, point]))
                current = _hypervolume_min(front, ref)
        history.append(current)
    return pd.DataFrame({"number": ordered["number"].to_numpy(), "hypervolume": history})
