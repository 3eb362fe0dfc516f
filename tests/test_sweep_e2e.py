"""The main job end to end on local Ray: sweep -> tables, study, curves -> report -> pick -> deploy.

A real sweep costs one Ray Train fit per stage (~15 s of fixed overhead each here), so the module
runs ONE tiny sweep (3 trials, 2 at a time, one diverging on purpose, see `sweep_fixtures`) in a
fixture that the tests share, plus one 2-trial sweep that is killed with SIGKILL in a subprocess
and resumed, and one 1-trial sweep whose only trial diverges. The sweeps keep their runs in the same
storage, so they share the stage cache.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import ray
import torch
from sweep_fixtures import DIVERGED_REASON, DIVERGING_LR, sweep_tree, write_sweep
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from searchlab import deploy, pick, report
from searchlab import sweep as sweep_cli
from searchlab.cache import ArtifactCache
from searchlab.objectives import METRICS
from searchlab.results import BaselinesTable, TrialsTable, decoded_json
from searchlab.config import TrialConfig
from searchlab.run_dir import RUN_MARKER, SWEEP_SNAPSHOT, absolute_config_paths, read_sweep_snapshot, resolve_in
from searchlab.train.loader import clip_dataset, load_manifest

REPO = Path(__file__).resolve().parents[1]
TRIALS = 3
STUDY = None  # the run's only study (named after the sweep: base.name)


@pytest.fixture(scope="module")
def sweep_run(ray_local, synthetic_set, tmp_path_factory) -> dict[str, Any]:
    _, data_root = synthetic_set
    base = tmp_path_factory.mktemp("sweep")
    storage = base / "runs"
    path = write_sweep(base / "e2e.yaml", sweep_tree(manifest=data_root / "manifest.parquet", storage=storage,
                                                     name="e2e", trials=TRIALS, max_concurrent=2, failing_point=True))
    code = sweep_cli.main([str(path)])
    run_dir = storage / "e2e"
    return {
        "code": code,
        "sweep_file": path,
        "run_dir": run_dir,
        "storage": storage,
        "trials": TrialsTable.in_run(run_dir).read(),
        # copied now: the resume test adds to the shared cache's ledger later
        "ledger": ArtifactCache(storage / "cache").ledger(),
        "base": base,
        "data_root": data_root,
    }


def _completed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "completed"]


def test_the_sweep_finishes_with_one_row_per_trial(sweep_run):
    assert sweep_run["code"] == 0
    frame = sweep_run["trials"]
    assert len(frame) == TRIALS and frame["trial_id"].is_unique
    assert sorted(frame["number"]) == list(range(TRIALS))
    assert sorted(frame["status"]) == ["completed", "completed", "failed"]
    done = _completed(frame)
    for name in METRICS:
        assert done[name].notna().all(), name
    assert (done["gflops_p5"] <= done["gflops"]).all() and (done["gflops"] <= done["gflops_p95"]).all()
    assert (done["gflops"] > 0).all() and (done["memory_mb"] > 0).all()
    assert done["accuracy"].between(0, 1).all() and done["skip_fraction"].between(0, 1).all()
    assert (done["method"] == "videoiq").all()
    for keys, seconds, total in zip(decoded_json(done, "stage_keys"), decoded_json(done, "stage_seconds"),
                                    done["total_s"]):
        assert set(keys) == set(seconds) == {"teacher", "stage1", "outputs", "stage2"}
        assert all(re.fullmatch("[0-9a-f]{16}", key) for key in keys.values())
        assert all(s >= 0 for s in seconds.values()) and seconds["stage2"] > 0 and total >= sum(seconds.values())
    assert (done["finished"] > done["started"]).all()
    assert done["feasible"].eq(True).all()  # gflops <= 1000 holds for every trial
    for violations, gflops in zip(decoded_json(done, "violations"), done["gflops"]):
        assert violations == {"gflops <= 1000": pytest.approx(gflops - 1000)}
    for extra in decoded_json(done, "metrics_extra"):
        assert sum(extra["action_usage"].values()) == pytest.approx(1.0)
        assert len(extra["class_names"]) == 4
    for params in decoded_json(frame, "params"):
        assert set(params) == {"stage2.w1", "stage2.decision_space", "stage2.lr"}


def test_baselines_hold_the_uniform_reference_points(sweep_run):
    baselines = BaselinesTable.in_run(sweep_run["run_dir"]).read()
    keys = {keys["stage1"] for keys in decoded_json(_completed(sweep_run["trials"]), "stage_keys")}
    assert len(keys) == 1 and set(baselines["key"]) == keys and set(baselines["method"]) == {"videoiq"}
    by_label = baselines.set_index("label")
    assert sorted(by_label.index) == ["uniform 2-bit", "uniform 32-bit", "uniform 4-bit"]
    gflops = by_label["gflops"]
    assert gflops["uniform 32-bit"] > gflops["uniform 4-bit"] > gflops["uniform 2-bit"] > 0
    assert (by_label["memory_mb"] > 0).all()  # one stored any-precision model serves every bit-width
    assert by_label["accuracy"].between(0, 1).all()


def test_the_optuna_study_records_every_trial(sweep_run):
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{sweep_run['run_dir'] / 'optuna.db'}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE", "COMPLETE", "FAIL"]
    frame = sweep_run["trials"]
    done = _completed(frame)
    for trial in study.trials:
        if trial.state.name != "COMPLETE":
            continue
        assert len(trial.values) == 2
        row = done[(done["accuracy"] == trial.values[0]) & (done["gflops"] == trial.values[1])]
        assert len(row) >= 1  # the study and the table tell the same story
        assert trial.constraints == {"0": pytest.approx(trial.values[1] - 1000)}  # the sampler sees them
    failed = next(t for t in study.trials if t.state.name == "FAIL")
    assert failed.params["stage2.lr"] == DIVERGING_LR and failed.values is None


def test_tensorboard_has_the_curves_of_every_stage(sweep_run):
    run_dir, storage = sweep_run["run_dir"], sweep_run["storage"]
    for row in _completed(sweep_run["trials"]).itertuples():
        log_dir = run_dir / "ray-train" / f"trial-{row.number}-{row.trial_id}" / "stage2" / "tensorboard"
        assert list(log_dir.glob("events.out.tfevents.*")), log_dir
        events = EventAccumulator(str(log_dir))
        events.Reload()
        assert len([e.value for e in events.Scalars("tau")]) == 2  # stage2.epochs
        assert resolve_in(run_dir, json.loads(row.metrics_extra)["tensorboard"]) == log_dir
    for stage in ("teacher", "stage1"):
        runs = list((storage / "cache" / "ray-train").glob(f"{stage}-*"))
        assert len(runs) == 1 and list((runs[0] / "tensorboard").glob("events.out.tfevents.*")), stage


def test_report_pick_and_deploy(sweep_run, tmp_path, capsys):
    run_dir = sweep_run["run_dir"]
    assert report.main([str(run_dir)]) == 0
    page = (run_dir / "report.html").read_text()
    assert (run_dir / "pareto.png").read_bytes().startswith(b"\x89PNG")
    assert "data:image/png;base64," in page and all(part in page for part in DIVERGED_REASON)
    assert "trials: 3 (2 completed, 1 failed" in capsys.readouterr().out

    done = _completed(sweep_run["trials"])
    budget = float(done["gflops"].max())  # every completed trial fits: the most accurate one is picked
    best = done.sort_values(["accuracy", "gflops", "number"], ascending=[False, True, True]).iloc[0]
    out = tmp_path / "bundle"
    assert pick.main([str(run_dir), "--max-gflops", str(budget), "--out", str(out)]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["gflops_mean"] <= budget
    assert card["accuracy"] == pytest.approx(best["accuracy"])
    assert card["source"]["trial_id"] in set(done["trial_id"])

    model = deploy.load(out)
    # the bundle's data paths are relative to the data root: here, on the machine that has the data
    config = TrialConfig.model_validate(absolute_config_paths(model.config.model_dump(mode="json"),
                                                              sweep_run["data_root"]))
    manifest, root = load_manifest(config.data)
    clip = clip_dataset(config.data, manifest=manifest, root=root, split="val", train=False, seed=0)[0]
    probabilities, actions = model.predict(clip["frames"].unsqueeze(0))
    assert probabilities.shape == (1, 4) and torch.allclose(probabilities.sum(), torch.tensor(1.0))
    assert actions.shape == (1, config.data.frames, len(config.stage2.decision_space))
    assert torch.equal(actions.sum(dim=-1), torch.ones(1, config.data.frames))
    assert model.class_names == tuple(json.loads(done.iloc[0]["metrics_extra"])["class_names"])


def test_teacher_and_stage1_are_trained_once_for_all_trials(sweep_run):
    ledger = sweep_run["ledger"]
    key = decoded_json(_completed(sweep_run["trials"]), "stage_keys")[0]["stage1"]
    for kind in ("teacher", "stage1"):
        (entry,) = ledger[kind].values()  # one distinct configuration
        assert entry["builds"] == 1 and entry["failures"] == 0, kind
        # every trial, the failing one too, looked its stages up once: the first built, the rest hit
        assert entry["builds"] + entry["hits"] == TRIALS, kind
    assert set(ledger["stage1"]) == {key}
    assert sum(entry["builds"] for entry in ledger["outputs"].values()) == 1


def test_a_diverged_trial_is_recorded_as_failed_with_its_reason(sweep_run):
    frame = sweep_run["trials"]
    (failed,) = frame[frame["status"] == "failed"].itertuples()
    assert json.loads(failed.params)["stage2.lr"] == DIVERGING_LR
    assert failed.error.startswith(DIVERGED_REASON[0]), failed.error
    assert all(part in failed.error for part in DIVERGED_REASON) and "\n" not in failed.error
    assert pd.isna(failed.accuracy) and failed.finished > failed.started
    good = [json.loads(p)["stage2.lr"] != DIVERGING_LR for p in _completed(frame)["params"]]
    assert good == [True, True]


# Folders whose files Ray writes (experiment state, checkpoints with Ray's metadata): they hold the
# storage paths Ray was given, and are not searchlab's to rewrite.
RAY_FOLDERS = ("tune", "ray-train")


def test_no_file_of_the_run_names_an_absolute_path(sweep_run, tmp_path):
    """The run folder and a bundle from it can move to another machine: no file names where they were."""
    run_dir = sweep_run["run_dir"]
    bundle = tmp_path / "bundle"
    assert pick.main([str(run_dir), "--knee", "--out", str(bundle)]) == 0
    assert report.main([str(run_dir)]) == 0
    folders = {"sweep": sweep_run["base"], "data": sweep_run["data_root"], "repository": REPO, "bundle": bundle}
    files = [p for p in run_dir.rglob("*") if p.is_file() and p.relative_to(run_dir).parts[0] not in RAY_FOLDERS]
    files += list(bundle.iterdir())
    files += list((sweep_run["storage"] / "cache").glob("outputs/*/outputs/meta.json"))  # the stage-2 inputs' record
    assert {"trials.parquet", SWEEP_SNAPSHOT, RUN_MARKER, "config.yaml", "sources.json", "policy.pt",
            "card.json", "report.html", "meta.json"} <= {p.name for p in files}
    named = [(str(p), what) for p in files for what, folder in folders.items()
             if str(folder).encode() in p.read_bytes()]
    assert named == []
    sweep = read_sweep_snapshot(run_dir)  # ...and what they name is found again from where they are
    assert Path(sweep.base.data.manifest) == sweep_run["data_root"] / "manifest.parquet"
    assert Path(sweep.storage) == sweep_run["storage"]


def test_the_run_has_the_users_default_permissions(sweep_run):
    """Nothing searchlab publishes into the run or the cache keeps the 0700/0600 of a temp file."""
    mask = os.umask(0)
    os.umask(mask)
    storage = sweep_run["storage"]
    ours = [p for p in storage.rglob("*") if not set(p.relative_to(storage).parts) & set(RAY_FOLDERS)]
    assert {"e2e", "cache", "stage1", "outputs", "policy.pt", "backbone.pt"} <= {p.name for p in ours}
    private = [str(p) for p in ours if stat.S_IMODE(p.stat().st_mode) != (0o777 if p.is_dir() else 0o666) & ~mask]
    assert private == []


def test_a_sweep_whose_every_trial_diverges_exits_1(sweep_run, capsys):
    storage, name = sweep_run["storage"], "e2e-diverged"
    path = write_sweep(sweep_run["base"] / f"{name}.yaml", sweep_tree(
        manifest=sweep_run["data_root"] / "manifest.parquet", storage=storage, name=name, trials=1,
        max_concurrent=1, failing_point=False, stage2_lr=DIVERGING_LR))
    assert sweep_cli.main([str(path)]) == 1
    captured = capsys.readouterr()
    assert "1 trials, 0 completed, 1 failed" in captured.out
    assert "error: every trial failed (1)" in captured.err
    (row,) = TrialsTable.in_run(storage / name).read().itertuples()
    assert row.status == "failed" and all(part in row.error for part in DIVERGED_REASON)
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{storage / name / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL"]


def _wait_for(predicate, *, process: subprocess.Popen, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"the sweep exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout_s} s")
        time.sleep(0.25)


def test_a_killed_sweep_resumes_without_running_a_trial_twice(sweep_run):
    storage, name = sweep_run["storage"], "e2e-resume"
    tree = sweep_tree(manifest=sweep_run["data_root"] / "manifest.parquet", storage=storage, name=name, trials=3,
                      max_concurrent=1, failing_point=False)
    tree["base"]["resources"]["launch"] = "distributed"  # a local stage 2 can end within the wait below
    path = write_sweep(sweep_run["base"] / f"{name}.yaml", tree)
    run_dir = storage / name
    table = TrialsTable.in_run(run_dir)
    statuses = lambda: list(table.read()["status"]) if table.path.is_file() else []  # noqa: E731
    log = (sweep_run["base"] / f"{name}.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "searchlab.sweep", str(path), "--max-trials", "2",
         "--address", ray.get_runtime_context().gcs_address],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "RAY_DEDUP_LOGS": "1"})
    try:
        _wait_for(lambda: statuses().count("completed") == 1 and statuses().count("running") == 1,
                  process=process, timeout_s=240, what="completed first trial with the second one running")
        time.sleep(3.0)  # > the sweep's experiment snapshot period (1 s): a crash now loses no finished trial
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        log.close()
    before = table.read()
    first = _completed(before).iloc[0]
    interrupted = before[before["status"] == "running"].iloc[0]

    assert sweep_cli.main([str(path), "--resume"]) == 0

    after = table.read()
    assert len(after) == 2 and after["trial_id"].is_unique
    assert list(after["status"]) == ["completed", "completed"]
    assert set(after["trial_id"]) == {first["trial_id"], interrupted["trial_id"]}  # resumed, not replaced
    again = after.set_index("trial_id").loc[first["trial_id"]]
    assert (again["started"], again["finished"]) == (first["started"], first["finished"])  # not run again
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{run_dir / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    ledger = ArtifactCache(storage / "cache").ledger()
    assert {keys["stage1"] for keys in decoded_json(after, "stage_keys")} == set(ledger["stage1"])  # reused
    assert [entry["builds"] for entry in ledger["stage1"].values()] == [1]
    assert [entry["builds"] for entry in ledger["teacher"].values()] == [1]


def test_each_completed_trial_has_its_curve(sweep_run):
    """points.parquet: the trained point (the trial's own figures) and one point per search.curve value;
    VideoIQ decides each frame from its own logits, so a larger cost_bias never costs more."""
    from searchlab.config import SearchConfig
    from searchlab.results import PointsTable

    points = PointsTable.in_run(sweep_run["run_dir"]).read()
    curve = SearchConfig().curve
    for _, trial in _completed(sweep_run["trials"]).iterrows():
        own = points[points["trial_id"] == trial["trial_id"]].sort_values("cost_bias")
        assert sorted(own["cost_bias"]) == sorted([0.0, *curve]) and (own["number"] == trial["number"]).all()
        trained = own[own["cost_bias"] == 0].iloc[0]
        for name in METRICS:
            assert trained[name] == trial[name], name
        assert own["gflops"].is_monotonic_decreasing, own[["cost_bias", "gflops"]]
        assert own["gflops"].iloc[0] > own["gflops"].iloc[-1]  # the knob moved the cost
    assert set(points["trial_id"]) == set(_completed(sweep_run["trials"])["trial_id"])


def test_every_trials_published_artifacts_reproduce_its_recorded_figures(sweep_run, tmp_path, capsys):
    """Each operating point of each completed trial (as trained and along its curve) exported as a bundle
    and evaluated again from the videos (searchlab.evaluate) gives exactly the accuracy, decisions and
    GFLOPs its row records."""
    from searchlab.evaluate import main as evaluate_main
    from searchlab.results import PointsTable

    run_dir = sweep_run["run_dir"]
    rows = pick.candidates(run_dir)
    points = PointsTable.in_run(run_dir).read()
    assert len(rows) == int(points["feasible"].sum()) > len(_completed(sweep_run["trials"]))
    manifest = sweep_run["data_root"] / "manifest.parquet"
    for _, row in rows.iterrows():
        bundle = pick.export_bundle(row, run_dir=run_dir, out=tmp_path / f"{row['trial_id']}-{row['cost_bias']:g}")
        capsys.readouterr()
        assert evaluate_main([str(bundle), "--manifest", str(manifest), "--workers", "0", "--json"]) == 0
        measured = json.loads(capsys.readouterr().out)
        assert measured["accuracy"] == row["accuracy"], row["trial_id"]
        assert measured["usage"] == row["details"]["action_usage"], row["trial_id"]
        for name in ("gflops", "gflops_p5", "gflops_p95", "memory_mb", "skip_fraction"):
            assert measured[name] == pytest.approx(row[name], rel=1e-9), (row["trial_id"], name)
