"""Ray Tune's OptunaSearch with Optuna's constraint API bridged in.

Optuna samplers (TPE, NSGA-II, GP) accept a `constraints_func` that they call on every finished
trial, but Ray's OptunaSearch tells the study only the objective values. The bridge stores each
finished trial's constraint violations as the user attribute "constraints" on the Optuna trial
*before* OptunaSearch tells the study; `searchlab.space.make_sampler` builds samplers whose
`constraints_func` reads that attribute. Optuna's convention: a value <= 0 means satisfied.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search.optuna import OptunaSearch

CONSTRAINTS_ATTR = "constraints"
VIOLATIONS_KEY = "constraint_violations"


class ConstrainedOptunaSearch(OptunaSearch):
    """OptunaSearch that forwards the violations a trial reported to the sampler."""

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        optuna_trial = self._ot_trials.get(trial_id)
        if optuna_trial is not None and result and VIOLATIONS_KEY in result:
            optuna_trial.set_user_attr(CONSTRAINTS_ATTR, [float(v) for v in result[VIOLATIONS_KEY]])
        super().on_trial_complete(trial_id, result=result, error=error)
