"""Pareto-aware early stopping (``search.scheduler: pareto_asha``): asynchronous successive halving
on two or more objectives.

Rungs are epochs of a trial's per-trial stage: ``grace_period · η^k`` (``search.pareto_asha``). A
trial whose stage reaches a rung reports its evaluated objectives there (``relay``, below); the
scheduler ranks it among every trial that reached the same rung so far (asynchronously, as ASHA:
a trial recorded earlier is not judged again) and stops it unless it is among the survivors:

1. non-dominated sorting gives each trial its front (0: no other trial at the rung dominates it);
2. within a front, crowding distance orders the trials (the extremes of each objective first, then
   the more isolated ones), so that the survivors spread along the front;
3. the survivors are the first ``max(ceil(n / η), |front 0|)`` trials of that order: the top 1/η,
   and never a trial of the rung's non-dominated front (stopping one would discard a point the front
   so far needs; only the dominated part of a rung is cut).

The reference design is Syne Tune's MOASHA (``syne_tune/optimizer/schedulers/multiobjective``). Its
``nondominated_sort`` returns an *order* (trial indices, best first), and ``NonDominatedPriority``
hands that order on as if it were a priority per trial, which MOASHA then ranks with
``searchsorted``: trial i gets the priority of "the index of the i-th best trial". Here the order is
turned into ranks (``rung_ranks``: position of each trial) before anything is compared.

How a trial reports (``relay``): the per-trial stage runs in the trial's own process (launch
``local``, which ``auto`` chooses for it); its loop's ``Worker.progress`` hook hears every epoch, and
at a rung epoch, when the epoch evaluated the objectives (``eval_every`` divides the rungs), the
trial calls ``tune.report`` with those objectives, ``epoch`` and ``PROGRESS_KEY``. The final epoch is
never relayed: a trial that trained to its end reports its full result as before. A per-trial stage
launched ``distributed`` relays nothing (its loop runs in Ray Train workers), so its trials run to
their end. A stopped trial's process ends with Tune's stop; the searcher tells Optuna it was PRUNED
(``StoppedAsPruned``) and the trials table records it ``stopped`` with its rung figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from searchlab.tune_search import ConstrainedOptunaSearch

__all__ = [
    "EPOCH_KEY",
    "PROGRESS_KEY",
    "ParetoASHA",
    "StoppedAsPruned",
    "crowding_distances",
    "front_indices",
    "make_relay",
    "rung_epochs",
    "rung_ranks",
    "survivors",
]

PROGRESS_KEY = "rung_progress"  # set in a trial's report at a rung (not its final result)
EPOCH_KEY = "epoch"


def _minimised(points: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    signs = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    array = np.asarray(points, dtype=float).reshape(len(points), len(directions))
    return array * signs


def front_indices(points: np.ndarray) -> np.ndarray:
    """Non-dominated sorting of ``points`` (n, d), every objective minimised: each point's front, 0 best.

    A point dominates another when it is no worse in every objective and better in one; equal points
    share a front. O(n² d) per front, for the few tens of trials a rung holds.
    """
    n = len(points)
    fronts = np.full(n, -1, dtype=int)
    remaining = np.arange(n)
    level = 0
    while remaining.size:
        sub = points[remaining]
        no_worse = (sub[:, None, :] <= sub[None, :, :]).all(-1)  # [i, j]: i no worse than j everywhere
        better = (sub[:, None, :] < sub[None, :, :]).any(-1)
        dominated = (no_worse & better).any(0)  # j dominated by some i
        fronts[remaining[~dominated]] = level
        remaining = remaining[dominated]
        level += 1
    return fronts


def crowding_distances(points: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each point of one front (n, d): inf at each objective's extremes."""
    n, d = points.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(d):
        order = np.argsort(points[:, k], kind="stable")
        span = points[order[-1], k] - points[order[0], k]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (points[order[2:], k] - points[order[:-2], k]) / span
    return distance


def rung_ranks(points: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    """Each point's rank at a rung (0 best): by front, then by decreasing crowding distance within it,
    then by position (the earlier report first). Ranks, not an order: ``ranks[i]`` is point i's place."""
    minimised = _minimised(points, directions)
    fronts = front_indices(minimised)
    crowding = np.zeros(len(minimised))
    for level in np.unique(fronts):
        members = np.flatnonzero(fronts == level)
        crowding[members] = crowding_distances(minimised[members])
    order = np.lexsort((np.arange(len(minimised)), -crowding, fronts))  # last key sorts first
    ranks = np.empty(len(order), dtype=int)
    ranks[order] = np.arange(len(order))
    return ranks


def survivors(points: Sequence[Sequence[float]], directions: Sequence[str], *, reduction_factor: int) -> set[int]:
    """Indices of the points a rung keeps: the top ``ceil(n / η)`` ranks, and every non-dominated point."""
    if not len(points):
        return set()
    ranks = rung_ranks(points, directions)
    front = front_indices(_minimised(points, directions)) == 0
    keep = max(math.ceil(len(points) / reduction_factor), int(front.sum()))
    return {i for i, rank in enumerate(ranks) if rank < keep}


def rung_epochs(*, grace_period: int, reduction_factor: int, up_to: int) -> list[int]:
    """The rung epochs ``grace_period · η^k`` that are at most ``up_to``."""
    epochs, epoch = [], grace_period
    while epoch <= up_to:
        epochs.append(epoch)
        epoch *= reduction_factor
    return epochs


def _is_rung(epoch: int, *, grace_period: int, reduction_factor: int) -> bool:
    return epoch in rung_epochs(grace_period=grace_period, reduction_factor=reduction_factor, up_to=epoch)


class ParetoASHA(FIFOScheduler):
    """Ray Tune scheduler: at each rung, stops the trials outside ``survivors`` (see the module docstring)."""

    def __init__(self, objectives: Mapping[str, str], *, grace_period: int, reduction_factor: int) -> None:
        if len(objectives) < 2:
            raise ValueError(f"ParetoASHA ranks two or more objectives, got {list(objectives)}")
        if grace_period < 1 or reduction_factor < 2:
            raise ValueError(f"ParetoASHA needs grace_period >= 1 and reduction_factor >= 2, got {grace_period}, "
                             f"{reduction_factor}")
        super().__init__()
        self.objectives = dict(objectives)
        self.grace_period = grace_period
        self.reduction_factor = reduction_factor
        self.rungs: dict[int, dict[str, tuple[float, ...]]] = {}  # epoch -> trial id -> objectives
        self.stopped: dict[str, int] = {}  # trial id -> the rung that stopped it

    def decide(self, trial_id: str, epoch: int, values: Sequence[float]) -> str:
        """Record ``trial_id`` at rung ``epoch`` and say whether it goes on (Ray Tune's decision)."""
        recorded = self.rungs.setdefault(epoch, {})
        if trial_id in recorded:
            return TrialScheduler.CONTINUE
        recorded[trial_id] = tuple(float(v) for v in values)
        ids = list(recorded)
        kept = survivors([recorded[i] for i in ids], list(self.objectives.values()),
                         reduction_factor=self.reduction_factor)
        if ids.index(trial_id) in kept:
            return TrialScheduler.CONTINUE
        self.stopped[trial_id] = epoch
        return TrialScheduler.STOP

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if not result.get(PROGRESS_KEY):
            return TrialScheduler.CONTINUE  # a final result
        epoch = int(result[EPOCH_KEY])
        if not _is_rung(epoch, grace_period=self.grace_period, reduction_factor=self.reduction_factor):
            return TrialScheduler.CONTINUE
        values = [result[name] for name in self.objectives]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            return TrialScheduler.CONTINUE  # the stage itself fails a diverged network, with its reason
        return self.decide(trial.trial_id, epoch, values)

    def debug_string(self) -> str:
        reached = ", ".join(f"epoch {epoch}: {len(ids)}" for epoch, ids in sorted(self.rungs.items()))
        return f"ParetoASHA (η={self.reduction_factor}): trials at rungs {reached or 'none yet'}; stopped {len(self.stopped)}"


class StoppedAsPruned(ConstrainedOptunaSearch):
    """The sweep's searcher, telling Optuna that a trial the scheduler stopped was PRUNED.

    Ray's OptunaSearch would tell the stopped trial's last report (its rung figures) as a COMPLETE
    result, as if the network had trained to its end.
    """

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if result and result.get(PROGRESS_KEY) and not error and trial_id not in self._completed_trials:
            self._ot_study.tell(self._ot_trials[trial_id], state=optuna.trial.TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result=result, error=error)


def make_relay(objectives: Sequence[str], *, grace_period: int, reduction_factor: int,
               report: Callable[[dict[str, Any]], None] = tune.report) -> Callable[[int, dict[str, Any], bool], None]:
    """The ``Worker.progress`` hook of a trial's per-trial stage: reports the objectives at rung epochs."""

    def relay(epoch: int, metrics: dict[str, Any], final: bool) -> None:
        if final or not _is_rung(epoch, grace_period=grace_period, reduction_factor=reduction_factor):
            return
        if not all(name in metrics for name in objectives):
            return  # this epoch did not evaluate (eval_every does not divide it)
        report({**{name: float(metrics[name]) for name in objectives}, EPOCH_KEY: epoch, PROGRESS_KEY: True})

    return relay
