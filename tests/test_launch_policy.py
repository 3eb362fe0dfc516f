"""The stage launch policy (resources.launch, searchlab.train.launch.launch_mode): which stages run in
the trial's process, and that a stage publishes the same artifact either way (and resumes locally)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from searchlab.config import ConfigError, TrialConfig, load_trial_config
from searchlab.methods import get_method
from searchlab.train import launch, ray_compat
from searchlab.train.launch import LOCAL_DIR, launch_mode, run_stage
from searchlab.train.worker import InjectedFailure

STAGES = {stage.name: stage for stage in get_method("videoiq").stages}


def _config(data: Path | None = None, **resources) -> TrialConfig:
    overrides = {"resources." + key: value for key, value in resources.items()}
    if data is not None:
        overrides.update({
            "data.manifest": str(data / "manifest.parquet"), "data.synthetic": None, "data.frames": 4,
            "data.train_scale": [32, 40], "data.crop_size": 28, "data.eval_short_side": 32, "data.loader_workers": 0,
            "model.policy_input_size": 16, "model.policy_hidden": 16, "model.policy_width_mult": 0.25,
            "teacher.epochs": 2, "teacher.policy_epochs": 2, "teacher.batch_size": 4, "teacher.checkpoint_every": 1,
        })
    return load_trial_config("spaces/demo.yaml", overrides)


@pytest.mark.parametrize(("in_trial", "node_cpus", "resources", "stage", "expected"), [
    (True, 2.0, {}, "stage2", "local"),  # a per-trial stage, one CPU worker, in a trial
    (True, 2.0, {}, "teacher", "distributed"),  # a shared stage: trained once, long
    (True, 2.0, {"workers": 2}, "stage2", "distributed"),
    (True, 2.0, {"use_gpu": True}, "stage2", "distributed"),
    (True, 0.0, {}, "stage2", "distributed"),  # a cluster's head that has no CPU for training
    (False, 2.0, {}, "stage2", "distributed"),  # a driver script or test calling run_stage
    (False, 2.0, {"launch": "local"}, "teacher", "local"),
    (True, 2.0, {"launch": "distributed"}, "stage2", "distributed"),
])
def test_auto_chooses_by_stage_workers_and_place(monkeypatch, in_trial, node_cpus, resources, stage, expected):
    monkeypatch.setattr(ray_compat, "in_tune_trial", lambda: in_trial)
    monkeypatch.setattr(launch, "_node_cpus", lambda: node_cpus)
    assert launch_mode(STAGES[stage], _config(**resources)) == expected


def test_local_launch_is_one_cpu_worker():
    with pytest.raises(ConfigError, match="launch: local runs a stage in the trial's own process"):
        _config(launch="local", workers=2)
    with pytest.raises(ConfigError, match="launch: local"):
        _config(launch="local", use_gpu=True)


def _starts(run_dir: Path) -> list[int]:
    """The epochs a local stage's starts resumed from, oldest first (its start records)."""
    records = sorted((run_dir / LOCAL_DIR).glob("start-*.json"), key=lambda p: int(p.stem.split("-")[1]))
    return [json.loads(p.read_text())["resumed_from"] for p in records]


def _weights(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {path.name: torch.load(path, weights_only=True) for path in sorted(folder.glob("*.pt"))}


def test_a_stage_publishes_the_same_artifact_both_ways_and_resumes_locally(ray_local, synthetic_set, tmp_path):
    _, data = synthetic_set
    runs = {}
    for mode in ("distributed", "local"):
        runs[mode] = run_stage(STAGES["teacher"], config=_config(data, launch=mode), inputs={},
                               output_dir=tmp_path / mode, storage_path=tmp_path / "ray", name=f"teacher-{mode}")
        assert runs[mode].launch == mode
    distributed, local = runs["distributed"], runs["local"]
    assert local.metrics == distributed.metrics
    mine, theirs = _weights(local.output_dir), _weights(distributed.output_dir)
    assert mine.keys() == theirs.keys() and mine
    for name in mine:
        assert mine[name].keys() == theirs[name].keys()
        assert all(torch.equal(mine[name][k], theirs[name][k]) for k in mine[name]), name
    assert sorted(p.name for p in local.output_dir.iterdir()) == sorted(p.name for p in distributed.output_dir.iterdir())
    assert len(list((local.run_dir / LOCAL_DIR).glob("checkpoint_*"))) == 2  # the latest two kept
    assert _starts(local.run_dir) == [0]

    # stopped after its first epoch's checkpoint, then run again: it resumes there and ends the same
    common = {"config": _config(data, launch="local"), "inputs": {}, "output_dir": tmp_path / "resumed",
              "storage_path": tmp_path / "ray", "name": "teacher-resumed"}
    with pytest.raises(InjectedFailure):
        run_stage(STAGES["teacher"], inject_failure_after_epoch=1, **common)
    assert not (tmp_path / "resumed").exists()
    resumed = run_stage(STAGES["teacher"], **common)
    assert _starts(resumed.run_dir) == [0, 1]  # its first start, then the one that resumed after epoch 1
    assert resumed.metrics == local.metrics
    again = _weights(resumed.output_dir)
    assert all(torch.equal(again[n][k], mine[n][k]) for n in mine for k in mine[n])


def test_only_a_lost_worker_restarts_a_stage():
    """A worker that died with its node (Ray 2.60: WorkerHealthCheckFailedError over the actor's death) or
    process restarts the stage from its checkpoint (launch._worker_lost); an error in the loop or in the
    controller does not (tests/test_cluster.py kills a node for real)."""
    import ray.exceptions
    from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError
    from ray.train.v2.api.exceptions import ControllerError, WorkerGroupError

    died = WorkerHealthCheckFailedError("health check failed", ray.exceptions.RayActorError())
    assert launch._worker_lost(WorkerGroupError("lost", {0: died, 1: RuntimeError("gloo: connection reset")}))
    assert launch._worker_lost(WorkerGroupError("lost", {0: ray.exceptions.ActorDiedError()}))
    assert not launch._worker_lost(WorkerGroupError("loop", {0: ValueError("a bug")}))
    assert not launch._worker_lost(ControllerError(RuntimeError("controller")))
