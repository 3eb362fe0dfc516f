"""Pareto-aware early stopping (searchlab.pareto_asha): the ranking on hand-made rungs, the scheduler's
decisions, the trial's relay, the configuration, and one tiny sweep that stops a trial."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from ray.tune.schedulers import TrialScheduler

from searchlab.config import load_sweep
from searchlab.pareto_asha import (
    EPOCH_KEY,
    PROGRESS_KEY,
    ParetoASHA,
    front_indices,
    make_relay,
    rung_epochs,
    rung_ranks,
    survivors,
)

DIRECTIONS = ["max", "min"]  # accuracy, gflops


def test_fronts_of_a_hand_made_rung():
    #            A: front   B: front   C: dominated by A   D: dominated by C (front 2)   E = A (ties share a front)
    points = [(0.9, 4.0), (0.6, 1.0), (0.8, 5.0), (0.7, 6.0), (0.9, 4.0)]
    minimised = np.array(points) * np.array([-1.0, 1.0])
    assert front_indices(minimised).tolist() == [0, 0, 1, 2, 0]


def test_ranks_are_positions_not_an_order():
    # the best point is the last one: an order would read [2, ...], the ranks read [.., .., 0]
    points = [(0.5, 5.0), (0.6, 4.0), (0.9, 1.0)]
    ranks = rung_ranks(points, DIRECTIONS)
    assert ranks.tolist() == [2, 1, 0]
    assert sorted(ranks.tolist()) == [0, 1, 2]


def test_crowding_orders_within_a_front():
    # one front of four: the two extremes first, then the more isolated middle point
    points = [(0.9, 9.0), (0.5, 1.0), (0.85, 8.0), (0.6, 3.0)]
    ranks = rung_ranks(points, DIRECTIONS)
    assert set(ranks[[0, 1]].tolist()) == {0, 1}
    assert ranks[3] == 2 and ranks[2] == 3  # (0.6, 3) is farther from its neighbours than (0.85, 8)


def test_a_dominated_trial_is_stopped_and_a_front_trial_never_is():
    points = [(0.9, 4.0), (0.6, 1.0), (0.8, 5.0), (0.7, 6.0)]
    kept = survivors(points, DIRECTIONS, reduction_factor=3)
    assert kept == {0, 1}  # the front (2 points) exceeds ceil(4 / 3) = 2: exactly the front
    assert 2 not in kept and 3 not in kept
    # the front is kept whole even when it is larger than the top 1/η
    front = [(0.9, 9.0), (0.8, 7.0), (0.7, 5.0), (0.6, 3.0), (0.5, 1.0), (0.4, 2.0)]
    assert survivors(front, DIRECTIONS, reduction_factor=3) == {0, 1, 2, 3, 4}


def test_survivors_keep_every_front_trial_on_random_rungs():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        points = rng.integers(0, 5, size=(n, 2)).astype(float).tolist()  # coarse: many ties
        eta = int(rng.integers(2, 5))
        kept = survivors(points, DIRECTIONS, reduction_factor=eta)
        front = front_indices(np.array(points) * np.array([-1.0, 1.0])) == 0
        assert set(np.flatnonzero(front).tolist()) <= kept
        assert len(kept) == max(-(-n // eta), int(front.sum()))


def test_the_scheduler_stops_a_dominated_trial_at_its_rung():
    scheduler = ParetoASHA({"accuracy": "max", "gflops": "min"}, grace_period=2, reduction_factor=2)
    assert scheduler.decide("a", 2, (0.8, 3.0)) == TrialScheduler.CONTINUE  # first at the rung
    assert scheduler.decide("b", 2, (0.6, 1.0)) == TrialScheduler.CONTINUE  # on the front with a
    assert scheduler.decide("c", 2, (0.7, 4.0)) == TrialScheduler.STOP  # dominated by a
    assert scheduler.decide("d", 2, (0.9, 5.0)) == TrialScheduler.CONTINUE  # a new extreme of the front
    assert scheduler.stopped == {"c": 2}

    class Trial:
        trial_id = "e"

    result = {"accuracy": 0.5, "gflops": 9.0, EPOCH_KEY: 3, PROGRESS_KEY: True}
    assert scheduler.on_trial_result(None, Trial(), result) == TrialScheduler.CONTINUE  # 3 is not a rung
    assert scheduler.on_trial_result(None, Trial(), {**result, EPOCH_KEY: 4}) == TrialScheduler.CONTINUE  # alone there
    assert scheduler.on_trial_result(None, Trial(), {**result, EPOCH_KEY: 2}) == TrialScheduler.STOP  # a dominates it
    assert scheduler.on_trial_result(None, Trial(), {"accuracy": 0.1, "gflops": 9.0}) == TrialScheduler.CONTINUE


def test_the_relay_reports_rung_epochs_only():
    reports: list[dict] = []
    relay = make_relay(["accuracy", "gflops"], grace_period=2, reduction_factor=3, report=reports.append)
    assert rung_epochs(grace_period=2, reduction_factor=3, up_to=20) == [2, 6, 18]
    for epoch in range(1, 8):
        relay(epoch, {"accuracy": 0.5, "gflops": 1.0, "loss/total": 0.3}, False)
    relay(18, {"loss/total": 0.3}, False)  # not evaluated at that epoch
    relay(18, {"accuracy": 0.5, "gflops": 1.0}, True)  # the final epoch: the trial reports its result itself
    assert [(r[EPOCH_KEY], r[PROGRESS_KEY]) for r in reports] == [(2, True), (6, True)]
    assert set(reports[0]) == {"accuracy", "gflops", EPOCH_KEY, PROGRESS_KEY}


def _sweep_file(tmp_path: Path, search: dict) -> Path:
    path = tmp_path / "sweep.yaml"
    tree = {"base": {"name": "t", "data": {"manifest": str(tmp_path / "m.parquet")}},
            "search": {"trials": 2, **search}, "space": {"stage2.w1": {"uniform": [0.0, 1.0]}},
            "storage": str(tmp_path)}
    path.write_text(json.dumps(tree))
    return path


def test_the_scheduler_is_configured_in_search(tmp_path):
    from searchlab.config import ConfigError

    sweep = load_sweep(_sweep_file(tmp_path, {"scheduler": "pareto_asha",
                                              "pareto_asha": {"grace_period": 3, "reduction_factor": 4}}))
    assert sweep.search.scheduler == "pareto_asha" and sweep.search.rungs.reduction_factor == 4
    assert load_sweep(_sweep_file(tmp_path, {})).search.scheduler == "none"
    assert type(sweep.search).model_validate(sweep.search.model_dump()) == sweep.search  # round trip
    with pytest.raises(ConfigError, match="two or more objectives"):
        load_sweep(_sweep_file(tmp_path, {"scheduler": "pareto_asha", "objectives": {"accuracy": "max"}}))
    with pytest.raises(ConfigError, match="read only with scheduler: pareto_asha"):
        load_sweep(_sweep_file(tmp_path, {"pareto_asha": {"grace_period": 2}}))
    with pytest.raises(ConfigError, match="reduction_factor"):
        load_sweep(_sweep_file(tmp_path, {"scheduler": "pareto_asha", "pareto_asha": {"reduction_factor": 1}}))


# --------------------------------------------------------------------------------------------
# One tiny sweep with the scheduler on


@pytest.fixture(scope="module")
def stopping_sweep(ray_local, synthetic_set, tmp_path_factory):
    import yaml
    from sweep_fixtures import sweep_tree

    from searchlab.sweep import main

    _, data_root = synthetic_set
    storage = tmp_path_factory.mktemp("asha")
    tree = sweep_tree(manifest=data_root / "manifest.parquet", storage=storage, name="asha", trials=4,
                      max_concurrent=1, failing_point=False)
    tree["base"]["stage2"]["epochs"] = 4
    tree["search"].update({"scheduler": "pareto_asha", "pareto_asha": {"grace_period": 1, "reduction_factor": 2}})
    path = storage / "asha.yaml"
    path.write_text(yaml.safe_dump(tree))
    code = main([str(path)])
    run_dir = storage / "asha"
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{run_dir / 'optuna.db'}")  # the run's one study
    return {"code": code, "run_dir": run_dir, "trials": pd.read_parquet(run_dir / "trials.parquet"), "study": study}


def test_a_sweep_with_the_scheduler_stops_a_trial(stopping_sweep):
    assert stopping_sweep["code"] == 0
    trials = stopping_sweep["trials"]
    stopped = trials[trials["status"] == "stopped"]
    assert len(trials) == 4 and len(stopped) >= 1, trials[["trial_id", "status", "accuracy", "gflops"]]
    assert set(trials["status"]) <= {"completed", "stopped"}
    assert stopped["accuracy"].notna().all() and stopped["gflops"].notna().all()  # its last (rung) figures
    assert all(json.loads(extra)["stopped_at_epoch"] in (1, 2) for extra in stopped["metrics_extra"])
    states = [t.state for t in stopping_sweep["study"].trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == len(stopped)
    assert states.count(optuna.trial.TrialState.COMPLETE) == (trials["status"] == "completed").sum()


def test_the_report_counts_stopped_trials(stopping_sweep):
    from searchlab.report import build_report

    report = build_report(stopping_sweep["run_dir"])
    assert report.counts["stopped"] == (stopping_sweep["trials"]["status"] == "stopped").sum()
    html = (stopping_sweep["run_dir"] / "report.html").read_text()
    assert "stopped" in html
    assert report is not None
