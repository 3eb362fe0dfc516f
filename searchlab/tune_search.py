"""Ray Tune's OptunaSearch with Optuna 5's constraint API bridged in.

Optuna 5 samplers read constraint values that a trial records with `Trial.set_constraint`, but
Ray's OptunaSearch tells the study only the objective values. The bridge records each finished
trial's violations (reported under VIOLATIONS_KEY, Optuna's convention: <= 0 satisfied) on the
Optuna trial *before* OptunaSearch tells the study, so the sampler sees infeasible trials.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search.optuna import OptunaSearch

from searchlab.space import record_constraints

VIOLATIONS_KEY = "constraint_violations"


class ConstrainedOptunaSearch(OptunaSearch):
    """OptunaSearch that forwards the violations a trial reported to the sampler."""

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        optuna_trial = self._ot_trials.get(trial_id)
        already_told = trial_id in self._completed_trials  # a resumed sweep may report a trial again
        if optuna_trial is not None and result and VIOLATIONS_KEY in result and not already_told:
            record_constraints(optuna_trial, result[VIOLATIONS_KEY])
        super().on_trial_complete(trial_id, result=result, error=error)
