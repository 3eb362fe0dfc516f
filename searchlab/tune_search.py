"""Ray Tune's OptunaSearch with Optuna 5's constraint API bridged in, and a study optuna-dashboard can read.

Optuna 5 samplers read constraint values that a trial records with `Trial.set_constraint`, but
Ray's OptunaSearch tells the study only the objective values. The bridge records each finished
trial's violations (reported under VIOLATIONS_KEY, Optuna's convention: <= 0 satisfied) on the
Optuna trial *before* OptunaSearch tells the study, so the sampler sees infeasible trials.

For optuna-dashboard (`optuna-dashboard sqlite:///RUN_DIR/optuna.db`) the study carries its objective
names (`set_metric_names`) and user attributes naming the sweep; each trial carries its searchlab
identity (``searchlab_trial_id``, ``searchlab_number``: the trial number of trials.parquet, the report
and the bundles, which is also the Optuna trial number), its decoded parameters, and once finished
its p5/p95 GFLOPs, memory, skip fraction, decision usage and run folders (TRIAL_ATTRS).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from searchlab.space import record_constraints

VIOLATIONS_KEY = "constraint_violations"
#: Optuna trial user attribute -> what it holds.
TRIAL_ATTRS = {
    "searchlab_trial_id": "the trial's id (Tune's), as in trials.parquet, the folders trials/ID and "
                          "ray-train/trial-N-ID, and the sweep's [trial N ID] lines",
    "searchlab_number": "the trial's number in trials.parquet, the report, Tune's folder tune/trial-N-ID and bundles",
    "params": "the trial's parameters as the trial used them (choices as their values, e.g. [32, 4, 2, 0])",
    "gflops_p5": "5th percentile of GFLOPs per video",
    "gflops_p95": "95th percentile of GFLOPs per video",
    "memory_mb": "MiB of parameters stored for inference",
    "skip_fraction": "fraction of frames skipped",
    "action_usage": "share of held-out frames per decision",
    "feasible": "whether the trial met the sweep's constraints",
    "method": "the method trained",
    "trial_folder": "the trial's artifacts, relative to the run folder",
    "tensorboard": "its training curves, relative to the run folder (tensorboard --logdir RUN_DIR)",
}
_METRIC_ATTRS = ("gflops_p5", "gflops_p95", "memory_mb", "skip_fraction")


def usage_text(usage: Mapping[str, Any]) -> str:
    """{"0": .5, "32": .5} -> "32b 50%, skip 50%": widest precision first, skip last (AR-Net's labels as given)."""
    items = list(usage.items())
    if all(str(label).isdigit() for label, _ in items):
        items.sort(key=lambda item: -int(item[0]))
    parts = []
    for label, share in items:
        name = ("skip" if int(label) == 0 else f"{label}b") if str(label).isdigit() else str(label)
        parts.append(f"{name} {100 * float(share):.0f}%")
    return ", ".join(parts)


class ConstrainedOptunaSearch(OptunaSearch):
    """OptunaSearch that forwards the violations a trial reported to the sampler and labels the study.

    ``study_attrs``: user attributes of the study (the sweep's name, method, file, ...).
    """

    def __init__(self, *args: Any, study_attrs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self._study_attrs = dict(study_attrs or {})
        super().__init__(*args, **kwargs)

    def _setup_study(self, mode: str | list) -> None:
        super()._setup_study(mode)
        metrics = self._metric if isinstance(self._metric, list) else [self._metric]
        if all(isinstance(name, str) for name in metrics):
            with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self._ot_study.set_metric_names(list(metrics))
        for key, value in self._study_attrs.items():
            self._ot_study.set_user_attr(key, value)

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        optuna_trial = self._ot_trials.get(trial_id)
        if config is not None and optuna_trial is not None:
            optuna_trial.set_user_attr("searchlab_trial_id", trial_id)
            optuna_trial.set_user_attr("searchlab_number", optuna_trial.number)
            optuna_trial.set_user_attr("params", json.dumps(_plain(config), sort_keys=True))
        return config

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        optuna_trial = self._ot_trials.get(trial_id)
        already_told = trial_id in self._completed_trials  # a resumed sweep may report a trial again
        if optuna_trial is not None and result and not already_told:
            if VIOLATIONS_KEY in result:
                record_constraints(optuna_trial, result[VIOLATIONS_KEY])
            for key, value in result_attrs(result).items():
                optuna_trial.set_user_attr(key, value)
        super().on_trial_complete(trial_id, result=result, error=error)


def result_attrs(result: Mapping[str, Any]) -> dict[str, Any]:
    """The user attributes a finished trial's result gives (TRIAL_ATTRS), only those present."""
    attrs: dict[str, Any] = {}
    for name in _METRIC_ATTRS:
        value = result.get(name)
        if isinstance(value, (int, float)) and math.isfinite(value):
            attrs[name] = float(value)
    if "feasible" in result:
        attrs["feasible"] = bool(result["feasible"])
    if isinstance(result.get("method"), str):
        attrs["method"] = result["method"]
    try:
        details = json.loads(result.get("details_json") or "{}")
    except (TypeError, ValueError):
        details = {}
    if isinstance(details.get("action_usage"), dict):
        attrs["action_usage"] = usage_text(details["action_usage"])
    artifacts = details.get("artifacts") or {}
    folders = [path for path in artifacts.values() if isinstance(path, str) and path.startswith("trials/")]
    if folders:
        attrs["trial_folder"] = folders[0].rsplit("/", 1)[0]
    if isinstance(details.get("tensorboard"), str):
        attrs["tensorboard"] = details["tensorboard"]
    return attrs


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
