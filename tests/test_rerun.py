"""`python -m searchlab.rerun RUN_DIR --front --seeds N` on a tiny finished sweep (real Ray, real stages).

One 2-trial sweep (`sweep_fixtures`, both trials completing, stages launched in-process) then one re-run of its front with 2 seeds
and 2 evaluation clips, 2 runs at a time; the tests read what it wrote. `--shared-seeds` is checked on
the plan and the keys (it would retrain the shared stages: minutes), and bad input without Ray.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from sweep_fixtures import sweep_tree, write_sweep

from searchlab import rerun, report
from searchlab import sweep as sweep_cli
from searchlab.cache import ArtifactCache
from searchlab.methods import get_method
from searchlab.pipeline import trial_stage_keys
from searchlab.results import TrialRecord, TrialsTable
from searchlab.run_dir import RUN_MARKER, write_marker, write_sweep_snapshot

SHARED = ["teacher", "stage1", "outputs"]


@pytest.fixture(scope="module")
def reran(ray_local, synthetic_set, tmp_path_factory) -> dict[str, Any]:
    _, data_root = synthetic_set
    base = tmp_path_factory.mktemp("rerun")
    storage = base / "runs"
    tree = sweep_tree(manifest=data_root / "manifest.parquet", storage=storage, name="tiny", trials=2,
                      max_concurrent=2, failing_point=False)
    tree["base"]["resources"]["launch"] = "local"  # every stage in its trial's (or re-run task's) process: no
    # Ray Train start-up per stage, so the sweep and the re-run fit the test's time (test_sweep_e2e runs distributed)
    path = write_sweep(base / "tiny.yaml", tree)
    assert sweep_cli.main([str(path)]) == 0
    run_dir = storage / "tiny"
    ledger_before = ArtifactCache(storage / "cache").ledger()
    (run_dir / "mine.txt").write_text("the user's note")  # never touched by the re-run
    code = rerun.main([str(run_dir), "--front", "--seeds", "2", "--eval-clips", "2", "--max-concurrent", "2"])
    out = run_dir / rerun.RERUN_DIR_NAME
    return {"code": code, "run_dir": run_dir, "storage": storage, "out": out,
            "trials": TrialsTable.in_run(run_dir).read(), "front": rerun.front_of(run_dir),
            "seeds": pd.read_parquet(out / rerun.SEEDS_TABLE), "summary": json.loads((out / rerun.SUMMARY).read_text()),
            "ledger_before": ledger_before, "ledger_after": ArtifactCache(storage / "cache").ledger()}


def test_two_rows_per_front_point_with_distinct_new_seeds(reran):
    """The front is over every operating point (trials as trained and their curves); a front trial is
    trained once per seed and each of its front points measured on that training."""
    assert reran["code"] == 0
    seeds, front = reran["seeds"], reran["front"]
    assert len(front) >= 1 and sorted(seeds["point"].unique()) == sorted(front["point"])
    assert (seeds["status"] == "completed").all(), seeds["error"].tolist()
    for point, group in seeds.groupby("point"):
        assert len(group) == 2 and group["seed"].nunique() == 2
        assert 0 not in set(group["seed"])  # the search's seed (sweep_fixtures: 0) is not among the new ones
        assert set(group["trial_id"]) == set(front.loc[front["point"] == point, "trial_id"])
    runs = seeds.drop_duplicates("rerun_id")
    assert len(runs) == 2 * front["number"].nunique()  # one training per (front trial, seed)
    assert not set(seeds["rerun_id"]) & set(reran["trials"]["trial_id"])
    assert seeds["accuracy"].between(0, 1).all() and (seeds["gflops"] > 0).all() and (seeds["memory_mb"] > 0).all()


def test_means_and_stds_are_the_per_seed_figures(reran):
    seeds = reran["seeds"]
    for entry in reran["summary"]["configurations"]:
        group = seeds[seeds["point"] == entry["point"]]
        assert [s["seed"] for s in entry["per_seed"]] == group["seed"].tolist()
        for name in rerun.FIGURES:
            values = group[name].to_numpy(dtype=float)
            assert [s[name] for s in entry["per_seed"]] == pytest.approx(values.tolist())
            assert entry[f"{name}_mean"] == pytest.approx(values.mean())
            assert entry[f"{name}_std"] == pytest.approx(values.std(ddof=1))


def test_shared_stages_were_reused_and_only_the_per_trial_stage_retrained(reran):
    seeds, trials = reran["seeds"], reran["trials"].set_index("trial_id")
    for _, row in seeds.iterrows():
        keys = json.loads(row["stage_keys"])
        search = json.loads(trials.loc[row["trial_id"], "stage_keys"])
        assert {stage: keys[stage] for stage in SHARED} == {stage: search[stage] for stage in SHARED}
        assert keys["stage2"] != search["stage2"]
        assert json.loads(row["reused_shared"]) == SHARED
    before, after = reran["ledger_before"], reran["ledger_after"]
    for stage in SHARED:  # hits only: no shared stage was built again, none new
        assert set(after[stage]) == set(before[stage])
        for key, counts in after[stage].items():
            assert counts["builds"] == before[stage][key]["builds"]
        assert sum(c["hits"] for c in after[stage].values()) > sum(c["hits"] for c in before[stage].values())
    assert "reused from the stage cache" in reran["summary"]["shared_note"]
    assert reran["summary"]["shared_seeds"] is False


def test_the_runs_trained_and_evaluated_with_their_seed_and_the_eval_override(reran):
    out = reran["out"]
    assert reran["summary"]["eval_clips"] == 2
    for rerun_id, seed in set(zip(reran["seeds"]["rerun_id"], reran["seeds"]["seed"])):
        config = yaml.safe_load((out / "trials" / rerun_id / "stage2" / "config.yaml").read_text())
        assert config["seed"] == seed and config["data"]["eval_clips"] == 2


def test_front_on_means_is_a_subset_and_the_files_are_written(reran):
    configurations = reran["summary"]["configurations"]
    on_front = {c["point"] for c in configurations if c["on_front"]}
    assert on_front and on_front <= set(reran["front"]["point"])
    out = reran["out"]
    assert json.loads((out / rerun.RERUN_MARKER).read_text())["run"] == "tiny"
    text = (out / rerun.MARKDOWN).read_text()
    for c in configurations:
        assert c["trial_id"] in text and f"{c['accuracy_mean']:.4g} ± " in text
    assert (reran["run_dir"] / "mine.txt").read_text() == "the user's note"
    assert not [p for p in reran["run_dir"].iterdir() if p.name.startswith(".rerun.")]  # no staging left


def test_the_report_shows_the_rerun_next_to_the_front(reran, capsys):
    assert report.main([str(reran["run_dir"])]) == 0
    assert f"front re-run with seeds: {reran['out'] / rerun.MARKDOWN}" in capsys.readouterr().out
    built = report.build_report(reran["run_dir"])
    page = built.html.read_text()
    assert "Front re-run with seeds" in page
    assert page.index("Pareto front (") < page.index("Front re-run with seeds")
    for _, row in reran["seeds"].iterrows():
        assert f"seed {row['seed']}: " in page


def test_shared_seeds_gives_the_shared_stages_the_new_seed(reran):
    run_dir = reran["run_dir"]
    front = reran["front"]
    reuse = rerun.plan(run_dir, front, seeds=2, eval_clips=None, eval_crops=None, shared_seeds=False)
    fresh = rerun.plan(run_dir, front, seeds=2, eval_clips=None, eval_crops=None, shared_seeds=True)
    method = get_method("videoiq")
    for a, b in zip(reuse, fresh):
        assert a.seed == b.seed == a.config.seed == b.shared_config.seed and a.shared_config.seed == 0
        kept = trial_stage_keys(method, a.config, shared_config=a.shared_config)
        new = trial_stage_keys(method, b.config, shared_config=b.shared_config)
        for stage in SHARED:
            assert kept[stage] == a.search_keys[stage] and new[stage] != kept[stage]
        assert kept["stage2"] != a.search_keys["stage2"]
    # a plain seed override (what --shared-seeds runs) keys every stage anew
    plain = trial_stage_keys(method, fresh[0].config)
    assert plain == trial_stage_keys(method, fresh[0].config, shared_config=fresh[0].shared_config)


def test_failed_runs_are_recorded_and_left_out_of_the_means(reran):
    front = reran["front"].iloc[:1]
    jobs = rerun.plan(reran["run_dir"], front, seeds=2, eval_clips=None, eval_crops=None, shared_seeds=False)
    figures = {"accuracy": 0.5, "gflops": 1.0, "gflops_p95": 2.0, "memory_mb": 3.0}
    results = [{"status": "completed", "metrics": figures, "points": {bias: figures for bias in jobs[0].cost_biases},
                "stage_keys": jobs[0].search_keys},
               {"status": "failed", "error": "Diverged: loss/total became nan at epoch 1 of stage2"}]
    seeds = rerun.seed_rows(jobs, results, SHARED)
    assert seeds["status"].tolist() == ["completed", "failed"] and seeds["error"].iloc[1].startswith("Diverged")
    [entry] = rerun.summarise(seeds, front)
    assert entry["completed"] == 1 and entry["failed"] == 1
    assert entry["accuracy_mean"] == 0.5 and entry["accuracy_std"] == 0.0 and entry["on_front"] is True
    assert "Diverged" in rerun.markdown({"run": "x", "shared_note": "", "seeds": 2, "evaluation": "",
                                         "configurations": [entry]})


def test_shared_seeds_retrains_the_shared_stages_and_replaces_the_earlier_rerun(reran, capsys):
    """Last of the module's tests on the fixture: it replaces RUN_DIR/rerun (ours, marked) with its own."""
    run_dir, storage = reran["run_dir"], reran["storage"]
    before = ArtifactCache(storage / "cache").ledger()
    assert rerun.main([str(run_dir), "--front", "--seeds", "1", "--shared-seeds", "--max-concurrent", "1"]) == 0
    assert "--shared-seeds: the shared stages (teacher, stage1, outputs) were trained again" in capsys.readouterr().out
    seeds = pd.read_parquet(run_dir / rerun.RERUN_DIR_NAME / rerun.SEEDS_TABLE)
    assert len(seeds) == len(reran["front"]) and (seeds["status"] == "completed").all(), seeds["error"].tolist()
    assert set(seeds["seed"]) == {1} and not set(seeds["rerun_id"]) & set(reran["seeds"]["rerun_id"])
    trials = reran["trials"].set_index("trial_id")
    after = ArtifactCache(storage / "cache").ledger()
    for _, row in seeds.iterrows():
        keys, search = json.loads(row["stage_keys"]), json.loads(trials.loc[row["trial_id"], "stage_keys"])
        assert all(keys[stage] != search[stage] for stage in SHARED) and json.loads(row["reused_shared"]) == []
        for stage in SHARED:  # built now, with the new seed
            assert keys[stage] not in before.get(stage, {}) and after[stage][keys[stage]]["builds"] == 1
    summary = rerun.read_rerun(run_dir)
    assert summary["shared_seeds"] is True
    assert all(c["accuracy_std"] == 0.0 for c in summary["configurations"])  # one seed: no spread
    assert (run_dir / "mine.txt").read_text() == "the user's note"


def _fake_run(root: Path, *, statuses: list[str]) -> Path:
    """A marked run folder with a sweep snapshot and trials of the given statuses (no metrics)."""
    run_dir = root / "runs" / "fake"
    run_dir.mkdir(parents=True)
    write_marker(run_dir, RUN_MARKER, sweep="fake")
    tree = sweep_tree(manifest=root / "manifest.parquet", storage=root / "runs", name="fake", trials=1,
                      max_concurrent=1, failing_point=False)
    path = write_sweep(root / "fake.yaml", tree)
    from searchlab.config import load_sweep

    write_sweep_snapshot(run_dir, load_sweep(path))
    for number, status in enumerate(statuses):
        TrialsTable.in_run(run_dir).upsert(TrialRecord(trial_id=f"t{number}", number=number, status=status,
                                                       error="boom" if status == "failed" else None))
    return run_dir


@pytest.mark.parametrize("case, words", [
    ("missing", "does not exist"),
    ("seeds0", "at least 1 seed"),
    ("no front", "no completed feasible trial"),
    ("no trials", "run a sweep first"),
    ("no snapshot", "no sweep.json"),
    ("foreign rerun folder", "not a searchlab re-run"),
])
def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys, synthetic_set, case, words):
    _, data_root = synthetic_set
    (tmp_path / "manifest.parquet").write_bytes((data_root / "manifest.parquet").read_bytes())
    if case == "missing":
        run_dir = tmp_path / "nowhere"
    elif case == "no trials":
        run_dir = _fake_run(tmp_path, statuses=[])
    else:
        run_dir = _fake_run(tmp_path, statuses=["failed"])
    if case == "no snapshot":
        (run_dir / "sweep.json").unlink()
    if case == "foreign rerun folder":
        (run_dir / "rerun").mkdir()
        (run_dir / "rerun" / "notes.txt").write_text("mine")
    args = [str(run_dir), "--front", "--seeds", "0" if case == "seeds0" else "2"]
    assert rerun.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err, err
    if case == "foreign rerun folder":
        assert (run_dir / "rerun" / "notes.txt").read_text() == "mine"
