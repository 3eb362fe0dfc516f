"""`python -m searchlab.sweep` up to the point where Ray would start, and the plan it prints.

`main` runs in-process: configuration errors and refusals exit 2 before anything is trained,
`--dry-run` prints the plan (and how to prepare missing data) and writes nothing. What happens to the
run folder (refusals, --overwrite, exit codes) is checked with the Ray part replaced by a stub.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from searchlab.config import SpaceEntry, Sweep, load_sweep
from searchlab.data.manifest import read_manifest
from searchlab.data_check import DataMissing, ensure_data
from searchlab.plan import describe_plan, shared_stage_keys
from searchlab.run_dir import RUN_LOCK, RUN_MARKER, hold_run_dir, mark_run_dir
from searchlab.sweep import TUNE_DIR_NAME, main

REPO = Path(__file__).resolve().parents[1]
SPACES = sorted((REPO / "spaces").glob("*.yaml"))


@pytest.fixture(autouse=True)
def in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sweep files name data paths relative to the repository root, where the CLI is run."""
    monkeypatch.chdir(REPO)


def write_sweep(path: Path, tree: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def tiny_sweep_tree(*, manifest: str, name: str = "tiny") -> dict[str, Any]:
    return {
        "base": {
            "name": name,
            "data": {"manifest": manifest, "frames": 4, "crop_size": 32, "train_scale": [32, 40],
                     "eval_short_side": 32},
            "model": {"backbone": "resnet10", "policy_input_size": 32, "policy_hidden": 16, "policy_width_mult": 0.25},
        },
        "search": {"trials": 2},
        "space": {"stage2.w1": {"uniform": [0.0, 1.0]}},
    }


def test_every_problem_of_a_bad_file_is_listed_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = tiny_sweep_tree(manifest=str(tmp_path / "manifest.parquet"))
    tree["base"]["teacher"] = {"epoch": 3}  # unknown key (epochs)
    tree["base"]["stage2"] = {"decision_space": [4, 2, 0]}  # Ω without the top bit-width 32
    tree["search"]["constraints"] = ["latency_ms <= 30"]  # not a metric
    assert main([str(write_sweep(tmp_path / "bad.yaml", tree)), "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert "3 problem(s)" in captured.err
    assert "base.teacher.epoch: unknown key" in captured.err
    assert "decision_space [4, 2, 0] must contain the top bit-width 32" in captured.err
    assert "unknown metric 'latency_ms'" in captured.err
    assert captured.out == ""  # no plan for a file that does not validate


def test_a_typo_beside_the_decision_space_does_not_hide_it(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    tree = tiny_sweep_tree(manifest=str(tmp_path / "manifest.parquet"))
    tree["base"]["stage2"] = {"epoch": 3, "decision_space": [4, 2, 0]}
    assert main([str(write_sweep(tmp_path / "bad.yaml", tree)), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert "base.stage2.epoch: unknown key" in error
    assert "must contain the top bit-width 32" in error


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope.yaml"), "--dry-run"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_max_trials_below_one_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spaces/demo.yaml", "--dry-run", "--max-trials", "0"]) == 2
    assert "--max-trials 0 is out of range; use a value >= 1" in capsys.readouterr().err


def test_dry_run_on_anet_prints_the_plan_and_how_to_prepare_the_data(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    sweep = load_sweep("spaces/anet.yaml")
    assert not Path(sweep.base.data.manifest).exists()  # the real data set is not part of the repository
    assert main(["spaces/anet.yaml", "--dry-run", "--storage", str(tmp_path), "--max-trials", "5"]) == 0
    out = capsys.readouterr().out
    assert "sweep 'anet-videoiq-r50'" in out
    assert f"run directory   {tmp_path.resolve() / 'anet-videoiq-r50'}" in out
    assert "search          5 trials, sampler tpe" in out
    assert "constraints     gflops <= 40" in out
    assert all(key in out for key in sweep.space)
    assert "note: the activitynet data set is not prepared" in out
    manifest = Path(sweep.base.data.manifest)
    videos = Path(sweep.base.data.root or manifest.parent)
    assert f"python -m searchlab.data.prepare activitynet ... --videos {videos} --out {manifest}" in out
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing


def test_dry_run_on_demo_generates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = Path(load_sweep("spaces/demo.yaml").base.data.manifest)
    existed = manifest.exists()
    assert main(["spaces/demo.yaml", "--dry-run", "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "sweep 'demo'" in out
    assert ("will generate the synthetic set there" in out) is not existed
    assert manifest.exists() is existed
    assert list(tmp_path.iterdir()) == []


def test_an_earlier_run_needs_resume_or_overwrite(tmp_path: Path, synthetic_set: Any,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _, data_root = synthetic_set
    manifest = data_root / "manifest.parquet"
    assert manifest.is_file()  # so the data check passes and the run-directory check is reached
    path = write_sweep(tmp_path / "tiny.yaml", tiny_sweep_tree(manifest=str(manifest)))
    storage = tmp_path / "runs"
    assert main([str(path), "--storage", str(storage), "--resume"]) == 2
    assert "--resume given but" in capsys.readouterr().err
    previous = storage / "tiny" / TUNE_DIR_NAME
    previous.mkdir(parents=True)
    mark_run_dir(previous.parent, sweep_name="tiny")
    (previous / "experiment_state.json").write_text("{}")
    assert main([str(path), "--storage", str(storage)]) == 2
    error = capsys.readouterr().err
    assert f"{storage.resolve() / 'tiny'} holds an earlier run" in error
    assert "--resume" in error and "--overwrite" in error
    assert (previous / "experiment_state.json").read_text() == "{}"  # refused, so nothing was deleted


def tiny_sweep(folder: Path, synthetic_set: Any) -> Path:
    """A sweep file on the session's synthetic set, so the data check passes."""
    _, data_root = synthetic_set
    return write_sweep(folder / "tiny.yaml", tiny_sweep_tree(manifest=str(data_root / "manifest.parquet")))


def earlier_run(run_dir: Path) -> Path:
    """What a finished sweep leaves: marked, results, a Tune folder."""
    (run_dir / TUNE_DIR_NAME).mkdir(parents=True)
    mark_run_dir(run_dir, sweep_name=run_dir.name)
    (run_dir / "trials.parquet").write_bytes(b"results")
    return run_dir


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def stub_run_sweep(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replaces the Ray part: records what the run folder held when the sweep would have started."""
    from searchlab import tune_driver

    seen: dict[str, Any] = {"completed": 1, "failed": 1}
    for name in ("SEARCHLAB_OUTPUT", "RAY_AIR_NEW_OUTPUT", "RAY_DEDUP_LOGS", "RAY_DEDUP_LOGS_ALLOW_REGEX"):
        monkeypatch.delenv(name, raising=False)  # the sweep sets them for Ray: restored after the test

    def run_sweep(sweep: Sweep, *, run_dir: Path, address: str | None, resume: bool,
                  output: str = "normal") -> tune_driver.SweepSummary:
        seen["output"] = output
        seen["env"] = {name: os.environ.get(name) for name in ("SEARCHLAB_OUTPUT", "RAY_AIR_NEW_OUTPUT")}
        seen["files"] = sorted(p.name for p in run_dir.iterdir())
        seen["marker"] = json.loads((run_dir / RUN_MARKER).read_text())
        return tune_driver.SweepSummary(run_dir=run_dir, completed=seen["completed"], failed=seen["failed"],
                                        seconds=1.0)

    monkeypatch.setattr(tune_driver, "run_sweep", run_sweep)
    return seen


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path: Path, synthetic_set: Any,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny_sweep(tmp_path, synthetic_set)
    storage = tmp_path / "runs"
    precious = storage / "tiny"
    (precious / "tune").mkdir(parents=True)  # looks like a run, but searchlab did not make it
    (precious / "thesis.tex").write_text("keep me")
    before = contents(storage)
    for flags in (["--overwrite"], ["--resume"], []):
        assert main([str(path), "--storage", str(storage), *flags]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"error: {precious.resolve()} holds files but is not a searchlab run folder")
        assert "choose another base.name or storage, or move the folder away" in error
    assert contents(storage) == before


def test_a_live_run_is_refused_to_a_second_sweep_and_to_overwrite(tmp_path: Path, synthetic_set: Any,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny_sweep(tmp_path, synthetic_set)
    run_dir = earlier_run(tmp_path / "runs" / "tiny")
    before = contents(run_dir)
    with hold_run_dir(run_dir):  # the live sweep
        before[RUN_LOCK] = (run_dir / RUN_LOCK).read_bytes()
        for flags in (["--overwrite"], ["--resume"], []):
            assert main([str(path), "--storage", str(tmp_path / "runs"), *flags]) == 2
            error = capsys.readouterr().err
            assert f"{run_dir} is in use by a running sweep (pid " in error and "wait for it to finish" in error
        assert contents(run_dir) == before


def test_overwrite_empties_the_run_but_never_the_cache_beside_it(tmp_path: Path, synthetic_set: Any,
                                                                 stub_run_sweep: dict[str, Any],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny_sweep(tmp_path, synthetic_set)
    storage = tmp_path / "runs"
    earlier_run(storage / "tiny")
    (storage / "cache" / "stage1" / "k").mkdir(parents=True)
    (storage / "cache" / "stage1" / "k" / "backbone.pt").write_bytes(b"weights")
    cache = contents(storage / "cache")
    assert main([str(path), "--storage", str(storage), "--overwrite"]) == 0
    assert stub_run_sweep["files"] == sorted([RUN_LOCK, RUN_MARKER])  # a fresh run, still locked
    assert stub_run_sweep["marker"]["sweep"] == "tiny"
    assert contents(storage / "cache") == cache
    assert "2 trials, 1 completed, 1 failed" in capsys.readouterr().out


def test_quiet_and_verbose_choose_how_much_the_sweep_and_its_ray_processes_print(
        tmp_path: Path, synthetic_set: Any, stub_run_sweep: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny_sweep(tmp_path, synthetic_set)
    storage = tmp_path / "runs"
    for flags, output, tune_engine in (([], "normal", "0"), (["--quiet"], "quiet", "0"), (["--verbose"], "verbose", None)):
        for name in ("RAY_AIR_NEW_OUTPUT",):
            os.environ.pop(name, None)  # restored by the fixture
        assert main([str(path), "--storage", str(storage), "--overwrite", *flags]) == 0
        assert stub_run_sweep["output"] == output
        # Tune's legacy engine at verbosity 0 unless --verbose; the level reaches the Ray processes
        assert stub_run_sweep["env"] == {"SEARCHLAB_OUTPUT": output, "RAY_AIR_NEW_OUTPUT": tune_engine}
    with pytest.raises(SystemExit):
        main([str(path), "--quiet", "--verbose"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_overwrite_never_deletes_the_sweep_file_inside_a_run(tmp_path: Path, synthetic_set: Any,
                                                             stub_run_sweep: dict[str, Any],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Data inside the run folder is refused when the file loads; the sweep file itself is checked here."""
    run_dir = earlier_run(tmp_path / "runs" / "tiny")
    path = tiny_sweep(run_dir, synthetic_set)
    before = contents(run_dir)
    assert main([str(path), "--storage", str(tmp_path / "runs"), "--overwrite"]) == 2
    error = capsys.readouterr().err
    assert f"--overwrite would delete {path}, inside the run folder" in error and "move it out" in error
    assert "files" not in stub_run_sweep  # never started
    before[RUN_LOCK] = (run_dir / RUN_LOCK).read_bytes()
    assert contents(run_dir) == before


def test_the_exit_code_is_1_when_every_trial_failed(tmp_path: Path, synthetic_set: Any,
                                                    stub_run_sweep: dict[str, Any],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    stub_run_sweep.update(completed=0, failed=3)
    path = tiny_sweep(tmp_path, synthetic_set)
    assert main([str(path), "--storage", str(tmp_path / "runs")]) == 1
    captured = capsys.readouterr()
    assert "3 trials, 0 completed, 3 failed" in captured.out
    assert "error: every trial failed (3); their reasons are in the trials table" in captured.err


SYNTHETIC = {"classes": 2, "train_per_class": 1, "val_per_class": 1, "frames": 4, "size": 16}


def test_data_check_generates_the_synthetic_set_only_when_allowed(tmp_path: Path) -> None:
    tree = tiny_sweep_tree(manifest=str(tmp_path / "synthetic" / "manifest.parquet"))
    tree["base"]["data"]["synthetic"] = SYNTHETIC
    data = load_sweep(write_sweep(tmp_path / "s.yaml", tree)).base.data
    with pytest.raises(DataMissing, match="will generate the synthetic set there"):
        ensure_data(data, generate=False)
    assert not (tmp_path / "synthetic").exists()
    manifest = ensure_data(data, generate=True)
    assert manifest == tmp_path / "synthetic" / "manifest.parquet"
    assert read_manifest(manifest).num_classes == 2
    assert ensure_data(data, generate=False) == manifest  # there now: nothing to do


def test_a_synthetic_manifest_not_named_manifest_parquet_exits_2(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    tree = tiny_sweep_tree(manifest=str(tmp_path / "synthetic" / "clips.parquet"))
    tree["base"]["data"]["synthetic"] = SYNTHETIC
    assert main([str(write_sweep(tmp_path / "s.yaml", tree)), "--storage", str(tmp_path / "runs")]) == 2
    error = capsys.readouterr().err
    assert f"set data.manifest to {tmp_path / 'synthetic' / 'manifest.parquet'}" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]  # nothing generated, no run directory


@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_plan_lists_every_space_key(path: Path) -> None:
    sweep = load_sweep(path)
    plan = describe_plan(sweep, run_dir=Path("/runs/x"))
    listed = [line.split()[0] for line in plan.split("  space:\n")[1].splitlines() if line.startswith("    ")]
    assert listed[: len(sweep.space)] == list(sweep.space)


def with_space(sweep: Sweep, keys: list[str]) -> Sweep:
    return sweep.model_copy(update={"space": {key: SpaceEntry(choice=[1]) for key in keys}})


def test_the_plan_says_which_searched_keys_retrain_each_shared_stage() -> None:
    demo = load_sweep("spaces/demo.yaml")
    assert shared_stage_keys(demo) == {"teacher": [], "stage1": [], "outputs": []}
    assert "teacher      once for the whole sweep" in describe_plan(demo, run_dir=Path("/r"))
    sweep = with_space(demo, ["stage2.w1", "stage1.lr", "model.policy_hidden", "resources.workers",
                              "stage2.cached_views"])
    assert shared_stage_keys(sweep) == {"teacher": ["resources.workers"], "stage1": ["stage1.lr", "resources.workers"],
                                        "outputs": ["stage1.lr", "resources.workers", "stage2.cached_views"]}
    assert "stage1       once per distinct value of ['stage1.lr', 'resources.workers']" in describe_plan(
        sweep, run_dir=Path("/r"))


# (key, a new value): each changes the stage-1 cache key exactly when the plan says it does.
CHANGES = [
    ("data.frames", 4), ("data.crop_size", 48), ("data.loader_workers", 3), ("data.root", "/elsewhere"),
    ("model.backbone", "resnet18"), ("model.pretrained", "/w/resnet.pt"), ("model.policy_input_size", 48),
    ("model.policy_width_mult", 0.75), ("model.policy_pretrained", "/w/mbv2.pt"), ("model.policy_hidden", 32),
    ("teacher.lr", 0.1), ("stage1.lr", 0.02), ("stage1.alpha.init", 3.0), ("stage2.w1", 0.3),
    ("stage2.decision_space", [32, 0]), ("stage2.cached_views", 3), ("resources.workers", 2),
    ("resources.cpus_per_worker", 2.0), ("resources.use_gpu", True), ("seed", 1), ("name", "other"),
]


def test_the_plan_agrees_with_the_cache_keys_of_every_stage(tmp_path: Path) -> None:
    """Both read the method's stage declarations: a key changes exactly when the plan says it does."""
    from searchlab import pipeline  # imports Ray: here only, the plan itself must not
    from searchlab.methods import get_method

    manifest = tmp_path / "manifest.parquet"
    manifest.write_bytes(b"a manifest")
    demo = load_sweep("spaces/demo.yaml")
    base = demo.base.with_overrides({"data.manifest": str(manifest)})
    method = get_method("videoiq")
    before = pipeline.trial_stage_keys(method, base)
    planned = shared_stage_keys(with_space(demo, [key for key, _ in CHANGES]))
    for stage, keys in planned.items():
        changed = {key for key, value in CHANGES
                   if pipeline.trial_stage_keys(method, base.with_overrides({key: value}))[stage] != before[stage]}
        assert set(keys) == changed, stage

def test_a_manifest_without_the_val_split_stops_the_sweep_before_any_trial(
        synthetic_set, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    _, root = synthetic_set
    table = pq.read_table(root / "manifest.parquet")
    manifest = tmp_path / "train_only.parquet"
    pq.write_table(table.filter(pc.equal(table["split"], "train")), manifest)
    tree = yaml.safe_load(Path("spaces/demo.yaml").read_text())
    tree["base"]["data"].update({"manifest": str(manifest), "root": str(root), "synthetic": None})
    tree["storage"] = str(tmp_path / "runs")
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tree))
    for extra in (["--dry-run"], []):
        assert main([str(path), *extra]) == 2
        err = capsys.readouterr().err
        assert "val" in err and str(manifest) in err, err
    assert not (tmp_path / "runs" / "demo").exists()  # refused before the run folder was made
