"""bench/search_efficiency.py: its pure parts on hand-made points (hypervolume over time, time to reach a
hypervolume, the time-to-front ratio, the common reference point, reading an arm's trials and curve points,
the arms' sweep files). No arm is run: timings are the bench's business, not the tests'."""

from __future__ import annotations

import importlib.util
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from searchlab.config import parse_sweep
from searchlab.results import TrialRecord, TrialsTable

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVES = {"accuracy": "max", "gflops": "min"}
REFERENCE = [0.0, 1.0]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("search_efficiency", ROOT / "bench" / "search_efficiency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _points(rows: list[tuple[float, float, float, bool]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["time_s", "accuracy", "gflops", "feasible"])


def test_hypervolume_curve_grows_in_time_order_and_skips_infeasible_points(bench):
    # out of time order on purpose; the infeasible point at 15 s would dominate everything
    points = _points([(30.0, 0.8, 0.5, True), (10.0, 0.5, 0.5, True), (15.0, 1.0, 0.0, False),
                      (20.0, 0.4, 0.8, True)])
    curve = bench.hypervolume_curve(points, objectives=OBJECTIVES, reference=REFERENCE)
    assert [t for t, _ in curve] == [0.0, 10.0, 20.0, 30.0]
    # box to the reference (accuracy 0, 1 GFLOP): 0.5 x 0.5; (0.4, 0.8) adds nothing it does not already cover
    assert [v for _, v in curve] == pytest.approx([0.0, 0.25, 0.25, 0.40])


def test_time_to_reach_and_the_ratio(bench):
    plain = [(0.0, 0.0), (100.0, 0.2), (400.0, 0.3), (500.0, 0.3)]
    shipped = [(0.0, 0.0), (20.0, 0.1), (40.0, 0.35)]
    assert bench.time_to_reach(plain, 0.3) == 400.0
    assert bench.time_to_reach(shipped, 0.3) == 40.0
    assert bench.time_to_reach(shipped, 0.36) is None
    ratio = bench.time_to_front_ratio(plain, shipped)
    assert ratio == {"target_hv": 0.3, "plain_s": 400.0, "shipped_s": 40.0, "reached": True, "ratio": 10.0}


def test_an_arm_that_never_reaches_the_hypervolume_has_no_ratio(bench):
    plain = [(0.0, 0.0), (100.0, 0.5)]
    shipped = [(0.0, 0.0), (10.0, 0.2), (30.0, 0.49)]
    ratio = bench.time_to_front_ratio(plain, shipped)
    assert ratio["reached"] is False and ratio["ratio"] is None and ratio["shipped_s"] is None
    # nor when the plain arm found nothing: a target of 0 would be "reached" at once
    nothing = bench.time_to_front_ratio([(0.0, 0.0)], shipped)
    assert nothing["reached"] is False and nothing["ratio"] is None


def test_common_reference_is_accuracy_zero_and_the_largest_gflops_with_a_margin(bench):
    arms = [_points([(1.0, 0.9, 0.2, True)]), _points([(2.0, 0.5, 0.6, False), (3.0, 0.7, 0.4, True)])]
    assert bench.common_reference(arms, objectives=OBJECTIVES) == pytest.approx([0.0, 0.66])
    with pytest.raises(ValueError, match="no arm completed"):
        bench.common_reference([_points([])], objectives=OBJECTIVES)


def _stamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(1_000 + seconds, tz=timezone.utc)


def test_arm_points_reads_completed_trials_and_joins_curve_points_at_their_trials_finish(bench, tmp_path):
    table = TrialsTable.in_run(tmp_path)
    table.upsert(TrialRecord(trial_id="t0", number=0, status="completed", params={}, started=_stamp(0),
                             finished=_stamp(50), metrics={"accuracy": 0.8, "gflops": 0.3}, feasible=True))
    table.upsert(TrialRecord(trial_id="t1", number=1, status="stopped", params={}, started=_stamp(5),
                             finished=_stamp(20), metrics={"accuracy": 0.9, "gflops": 0.1}))
    table.upsert(TrialRecord(trial_id="t2", number=2, status="completed", params={}, started=_stamp(10),
                             finished=_stamp(80), metrics={"accuracy": 0.6, "gflops": 0.2}, feasible=False))
    points = bench.arm_points(tmp_path, started=1_000.0, objectives=list(OBJECTIVES))
    assert sorted(zip(points["trial_id"], points["time_s"], points["feasible"])) == [
        ("t0", 50.0, True), ("t2", 80.0, False)]  # the stopped trial is no result
    pd.DataFrame({"trial_id": ["t0", "t0", "t1"], "accuracy": [0.7, 0.75, 0.95], "gflops": [0.1, 0.2, 0.05],
                  "cost_bias": [1.0, 0.5, 1.0]}).to_parquet(tmp_path / bench.POINTS_FILE)
    points = bench.arm_points(tmp_path, started=1_000.0, objectives=list(OBJECTIVES))
    curve_points = points[points["accuracy"].isin([0.7, 0.75])]
    assert list(curve_points["time_s"]) == [50.0, 50.0] and curve_points["feasible"].all()
    assert len(points) == 4  # t1's point belongs to a stopped trial


def test_arm_sweep_files_keep_the_demo_but_their_own_storage_sampler_and_scheduler(bench, tmp_path):
    import yaml

    demo = yaml.safe_load(bench.DEMO.read_text())
    trees = {arm: bench.arm_tree(arm, demo=demo, storage=tmp_path / arm, manifest=tmp_path / "manifest.parquet",
                                 overrides=bench.QUICK, trials=bench.QUICK_TRIALS) for arm in bench.ARMS}
    sweeps = {arm: parse_sweep(tree, source=arm) for arm, tree in trees.items()}
    assert {arm: (s.search.sampler, s.search.scheduler) for arm, s in sweeps.items()} == {
        "a": ("tpe", "pareto_asha"), "b": ("tpe", "none"), "c": ("random", "pareto_asha"), "d": ("gp", "pareto_asha")}
    assert len({s.storage for s in sweeps.values()}) == 4  # each arm its own cache beside its run folder
    for sweep in sweeps.values():
        assert sweep.search.trials == bench.QUICK_TRIALS and sweep.search.max_concurrent == demo["search"]["max_concurrent"]
        assert sweep.base.stage2.epochs == bench.QUICK["base.stage2.epochs"] and sweep.space.keys() == sweeps["a"].space.keys()
    assert sweeps["a"].search.rungs.grace_period == bench.QUICK["search.pareto_asha.grace_period"]
    assert demo["base"]["stage2"]["epochs"] == 30  # the demo's tree itself is not changed
