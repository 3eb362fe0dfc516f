"""Run-folder markers and lock, --overwrite's clearing, and the paths written for other machines."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from searchlab import config as config_module
from searchlab.methods.arnet.config import ARNetConfig
from searchlab.config import TrialConfig, load_sweep
from searchlab.run_dir import (
    CONFIG_PATH_FIELDS,
    RUN_LOCK,
    RUN_MARKER,
    SWEEP_SNAPSHOT,
    RunDirError,
    absolute_config_paths,
    clear_run_dir,
    has_marker,
    hold_run_dir,
    mark_run_dir,
    portable_config_yaml,
    read_sweep_snapshot,
    relative_config_paths,
    resolve_in,
    write_sweep_snapshot,
)

REPO = Path(__file__).resolve().parents[1]


def a_run(path: Path) -> Path:
    """A run folder as a sweep leaves it: marked, with results and a Tune folder."""
    path.mkdir(parents=True)
    mark_run_dir(path, sweep_name=path.name)
    (path / "trials.parquet").write_bytes(b"table")
    (path / "tune").mkdir()
    (path / "tune" / "experiment_state.json").write_text("{}")
    return path


def test_the_marker_names_the_sweep_and_survives_a_resume(tmp_path: Path) -> None:
    run = a_run(tmp_path / "demo")
    first = json.loads((run / RUN_MARKER).read_text())
    assert first["sweep"] == "demo" and first["created"]
    mark_run_dir(run, sweep_name="demo")
    assert json.loads((run / RUN_MARKER).read_text()) == first  # the creation time is the first start's
    assert not has_marker(tmp_path, RUN_MARKER)
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / RUN_MARKER).write_text("not json")
    assert not has_marker(tmp_path / "fake", RUN_MARKER)


def test_holding_creates_a_new_folder_and_takes_an_empty_one(tmp_path: Path) -> None:
    with hold_run_dir(tmp_path / "new"):
        assert (tmp_path / "new").is_dir()
        assert "pid" in (tmp_path / "new" / RUN_LOCK).read_text()
    (tmp_path / "empty").mkdir()
    with hold_run_dir(tmp_path / "empty"):
        pass


def test_a_folder_that_is_not_a_run_is_refused_untouched(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    with pytest.raises(RunDirError, match=f"{precious} holds files but is not a searchlab run folder"):
        with hold_run_dir(precious):
            pass
    assert sorted(p.name for p in precious.iterdir()) == ["thesis.tex"]  # not even a lock file
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="is a file, not a run folder"):
        with hold_run_dir(tmp_path / "file"):
            pass


def test_a_held_run_is_refused_to_a_second_holder_at_once(tmp_path: Path) -> None:
    run = a_run(tmp_path / "demo")
    with hold_run_dir(run):
        started = time.monotonic()
        with pytest.raises(RunDirError, match=rf"{run} is in use by a running sweep \(pid \d+ on .* since .*\)"):
            with hold_run_dir(run):
                pass
        assert time.monotonic() - started < 1.0  # refused, not queued
    with hold_run_dir(run):  # released with the block
        pass


def test_the_lock_of_a_killed_sweep_is_released(tmp_path: Path) -> None:
    """A crash must leave the run resumable: the OS drops a dead process's flock."""
    run = a_run(tmp_path / "demo")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from pathlib import Path; from searchlab.run_dir import hold_run_dir\n"
         f"with hold_run_dir(Path({str(run)!r})):\n    print('held', flush=True); time.sleep(60)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=f"pid {holder.pid} "):
            with hold_run_dir(run):
                pass
    finally:
        holder.kill()
        holder.wait()
    with hold_run_dir(run):
        pass


def test_clearing_deletes_a_runs_contents_but_keeps_the_lock(tmp_path: Path) -> None:
    run = a_run(tmp_path / "demo")
    (tmp_path / "cache").mkdir()
    with hold_run_dir(run):
        clear_run_dir(run)
        assert [p.name for p in run.iterdir()] == [RUN_LOCK]
    assert (tmp_path / "cache").is_dir()


def test_clearing_refuses_what_is_not_provably_a_run(tmp_path: Path) -> None:
    unmarked = tmp_path / "unmarked"
    unmarked.mkdir()
    (unmarked / "data.csv").write_text("keep")
    with pytest.raises(RunDirError, match="no .searchlab-run marker"):
        clear_run_dir(unmarked)
    elsewhere = a_run(tmp_path / "elsewhere")
    link = tmp_path / "storage" / "demo"
    link.parent.mkdir()
    link.symlink_to(elsewhere)
    with pytest.raises(RunDirError, match="symbolic link"):
        clear_run_dir(link)
    run = a_run(tmp_path / "demo")
    (run / "data").mkdir()
    (run / "data" / "manifest.parquet").write_bytes(b"data")
    with pytest.raises(RunDirError, match=r"would delete .*manifest.parquet, inside the run folder"):
        clear_run_dir(run, keep=[run / "data" / "manifest.parquet"])
    assert (unmarked / "data.csv").is_file() and (elsewhere / "trials.parquet").is_file()
    assert (run / "data" / "manifest.parquet").is_file() and (run / "trials.parquet").is_file()


def test_the_path_fields_are_the_ones_the_config_resolves() -> None:
    """CONFIG_PATH_FIELDS must follow config._resolve_paths: give every text field a relative value."""
    tree: dict = {"data": {}, "model": {}, "arnet": {}}
    for section, model in (("data", config_module.DataConfig), ("model", config_module.ModelConfig),
                           ("arnet", ARNetConfig)):
        for name, field in model.model_fields.items():
            if str in (getattr(field.annotation, "__args__", None) or (field.annotation,)):
                tree[section][name] = "rel/path"
            elif "str" in str(field.annotation) and "tuple" in str(field.annotation):  # a path per item
                tree[section][name] = ["rel/path", None]
    resolved = config_module._resolve_paths(tree)
    changed = {(s, k) for s in tree for k in tree[s] if resolved[s][k] != tree[s][k]}
    assert changed == set(CONFIG_PATH_FIELDS)


def test_config_paths_round_trip_through_a_relative_form(tmp_path: Path) -> None:
    tree = {"name": "x", "data": {"manifest": "/data/anet/manifest.parquet", "root": "/data/anet/videos"},
            "model": {"pretrained": "/weights/r50.pt", "policy_pretrained": None}}
    relative = relative_config_paths(tree, "/data/anet/videos")
    assert relative["data"] == {"manifest": "../manifest.parquet", "root": "."}
    assert relative["model"] == {"pretrained": "../../../weights/r50.pt", "policy_pretrained": None}
    assert absolute_config_paths(relative, "/data/anet/videos") == tree
    assert relative_config_paths(relative, "/elsewhere") == relative  # already relative: kept
    assert resolve_in("/runs/demo", "../cache/stage1/k") == Path("/runs/cache/stage1/k")
    assert resolve_in("/runs/demo", "/abs/path") == Path("/abs/path")


def test_an_artifacts_config_is_relative_to_its_data_root() -> None:
    config = load_sweep(REPO / "spaces" / "demo.yaml").base
    tree = config.model_dump(mode="json")
    text = portable_config_yaml(tree)
    assert str(REPO) not in text and text.startswith("# Paths are relative to the data root")
    loaded = yaml.safe_load(text)
    assert loaded["data"]["manifest"] == "manifest.parquet"
    assert TrialConfig.model_validate(loaded).data.manifest == "manifest.parquet"  # what deploy.load reads
    assert absolute_config_paths(loaded, Path(config.data.manifest).parent) == tree


def strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return [value] if isinstance(value, str) else []


def test_the_sweep_snapshot_names_no_absolute_path_and_reads_back(tmp_path: Path) -> None:
    sweep = load_sweep(REPO / "spaces" / "demo.yaml")
    sweep = sweep.model_copy(update={"storage": str(tmp_path / "runs")})
    run_dir = tmp_path / "runs" / sweep.base.name
    run_dir.mkdir(parents=True)
    write_sweep_snapshot(run_dir, sweep)
    text = (run_dir / SWEEP_SNAPSHOT).read_text()
    assert str(tmp_path) not in text
    written = json.loads(text)
    # the data lies in the repository, the run in /tmp: relative paths climb up to / and down again
    assert not [value for value in strings(written) if value.startswith("/")]
    assert written["storage"] == ".." and written["source"].endswith("spaces/demo.yaml")
    assert read_sweep_snapshot(run_dir) == sweep
    moved = tmp_path / "moved" / "runs"
    moved.parent.mkdir()
    (tmp_path / "runs").rename(moved)  # the data is not moved: its paths follow the run folder's new place
    again = read_sweep_snapshot(moved / sweep.base.name)
    assert again.storage == str(moved)
    assert Path(again.base.data.manifest) == resolve_in(moved / sweep.base.name,
                                                        written["base"]["data"]["manifest"])
