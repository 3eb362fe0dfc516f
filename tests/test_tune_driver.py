"""The Tune side without running Tune: a diverged trial's reason, its row, its Optuna state, the summary.

The end-to-end sweep (tests/test_sweep_e2e.py) runs these paths for real with a trial that raises;
here each piece is checked on its own, with a real Optuna study in SQLite read back from the file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest

from searchlab.config import load_sweep
from searchlab.results import TrialsTable
from searchlab.tune_driver import (
    NonFiniteMetric,
    SweepSummary,
    TrialsTableCallback,
    build_searcher,
    failure_reason,
    nonfinite_problem,
    portable_details,
    reason_path,
)
from searchlab.tune_search import VIOLATIONS_KEY

REPO = Path(__file__).resolve().parents[1]
NAN, INF = math.nan, math.inf
FINITE = {"metrics": {"accuracy": 0.9, "gflops": 1.5, "skip_fraction": 0.0},
          "details": {"top1": 0.9, "action_usage": {"32": 0.5, "0": 0.5}, "class_names": ["a", "b"],
                      "usage_per_class": {"a": {"32": 1.0}}, "converged": True}}


def outcome(**changes: Any) -> dict[str, Any]:
    return {"metrics": {**FINITE["metrics"], **changes.get("metrics", {})},
            "details": {**FINITE["details"], **changes.get("details", {})}}


@pytest.mark.parametrize(("changes", "reason"), [
    ({"metrics": {"accuracy": NAN}}, "accuracy is NaN after stage2"),
    ({"metrics": {"gflops": INF}}, "gflops is +inf after stage2"),
    ({"details": {"top1": -INF}}, "top1 is -inf after stage2"),
    ({"details": {"action_usage": {"32": NAN, "0": 0.5}}}, "action_usage.32 is NaN after stage2"),
    ({"details": {"usage_per_class": {"a": {"32": NAN}}}}, "usage_per_class.a.32 is NaN after stage2"),
    ({"details": {"losses": [0.5, INF]}}, "losses[1] is +inf after stage2"),
])
def test_a_non_finite_number_anywhere_is_named(changes: dict[str, Any], reason: str) -> None:
    assert nonfinite_problem(outcome(**changes), after="stage2") == reason


def test_finite_numbers_text_and_flags_pass() -> None:
    assert nonfinite_problem(outcome(), after="stage2") is None


def test_the_reason_recorded_for_a_diverged_trial_is_one_line() -> None:
    error = NonFiniteMetric(nonfinite_problem(outcome(metrics={"accuracy": NAN}), after="stage2"))
    assert failure_reason(error) == "NonFiniteMetric: accuracy is NaN after stage2"


class StubTrial:
    """The attributes of a Tune trial the callback reads."""

    def __init__(self, trial_id: str, config: dict[str, Any]) -> None:
        self.trial_id, self.config, self.last_result = trial_id, config, {}

    def get_error(self) -> None:
        return None


def test_a_diverged_trial_is_recorded_failed_with_its_reason(tmp_path: Path) -> None:
    trial = StubTrial("t0", {"stage2.lr": 1e30})
    callback = TrialsTableCallback(str(tmp_path), ["gflops <= 20"])
    callback.on_trial_start(0, [trial], trial)
    # what trial_main writes before it raises
    reason_path(tmp_path, "t0").parent.mkdir(parents=True)
    reason_path(tmp_path, "t0").write_text("NonFiniteMetric: accuracy is NaN after stage2")
    callback.on_trial_error(0, [trial], trial)
    (row,) = TrialsTable.in_run(tmp_path).read().itertuples()
    assert (row.status, row.error) == ("failed", "NonFiniteMetric: accuracy is NaN after stage2")
    assert math.isnan(row.accuracy) and row.finished >= row.started


def test_optuna_is_told_that_a_failed_trial_failed(tmp_path: Path) -> None:
    """A trial that raises (a stage error, or NonFiniteMetric) reaches the searcher as error=True and no
    result, as Tune's controller passes it; the study in optuna.db must then hold it as FAIL."""
    sweep = load_sweep(REPO / "spaces" / "demo.yaml")
    searcher = build_searcher(sweep, run_dir=tmp_path)
    for trial_id in ("ok", "diverged"):
        assert searcher.suggest(trial_id)
    searcher.on_trial_complete("ok", result={"accuracy": 0.9, "gflops": 1.5, VIOLATIONS_KEY: []})
    searcher.on_trial_complete("diverged", error=True)
    study = optuna.load_study(study_name=sweep.base.name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [trial.state.name for trial in study.trials] == ["COMPLETE", "FAIL"]
    assert study.trials[0].values == [0.9, 1.5] and study.trials[1].values is None


def test_details_name_artifacts_relative_to_the_run_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "demo"
    details = {"artifacts": {"teacher": str(tmp_path / "runs" / "cache" / "teacher" / "k"),
                             "stage2": str(run_dir / "trials" / "t0" / "stage2")},
               "tensorboard": str(run_dir / "ray-train" / "trial-0-t0" / "stage2" / "tensorboard"), "top1": 0.5}
    assert portable_details(details, run_dir=run_dir) == {
        "artifacts": {"teacher": "../cache/teacher/k", "stage2": "trials/t0/stage2"},
        "tensorboard": "ray-train/trial-0-t0/stage2/tensorboard", "top1": 0.5}


def test_the_summary_counts_completed_and_failed_trials(tmp_path: Path) -> None:
    summary = SweepSummary(run_dir=tmp_path, completed=0, failed=3, seconds=12.0)
    assert summary.every_trial_failed
    assert str(summary).startswith("sweep finished in 12 s: 3 trials, 0 completed, 3 failed.")
    assert not SweepSummary(run_dir=tmp_path, completed=1, failed=2, seconds=1.0).every_trial_failed
