"""A sweep's output as a person reads it: one searchlab line per stage event, none of Ray's routine noise.

One 2-trial sweep (the tiny VideoIQ sweep of `sweep_fixtures`, one trial at a time, every stage
distributed so that the epoch lines come from Ray Train workers through Ray's log forwarding) runs as
its own driver on the session's local Ray, on a fresh cache: trial 0 builds the teacher, stage 1 and
the backbone outputs, then trains stage 2; trial 1 finds them cached and its stage 2 diverges on
purpose. Its stdout and stderr are read as a Ray Job's logs would be.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import ray
from sweep_fixtures import sweep_tree, write_sweep

from searchlab.pipeline import trial_train_dir
from searchlab.results import TrialsTable, decoded_json

REPO = Path(__file__).resolve().parents[1]
NOISE = (
    "Failed to query Ray Train Controller",  # the PlacementGroupCleaner's poll of the State API
    "To visualize your results with TensorBoard",  # Tune's hint naming its /tmp staging folder
    "tensorboard --logdir /tmp/ray/",  # (searchlab's summary names the run's storage folder)
    "Trial status:",  # Tune's status table
    "started with configuration",  # Tune's per-trial config box
    "╭",  # any of Tune's boxes
    "Reporting training result",  # Ray Train's per-report INFO line
    "Checkpoint successfully created",
    "Found multiple active Ray instances",  # the cleaner's State API client, not told its cluster
)


@pytest.fixture(scope="module")
def output_run(ray_local, synthetic_set, tmp_path_factory):
    _, data_root = synthetic_set
    base = tmp_path_factory.mktemp("output")
    tree = sweep_tree(manifest=data_root / "manifest.parquet", storage=base / "runs", name="out", trials=2,
                      max_concurrent=1, failing_point=True)
    tree["base"]["resources"]["launch"] = "distributed"  # stage 2's epochs too from a Ray Train worker
    path = write_sweep(base / "out.yaml", tree)
    done = subprocess.run(
        [sys.executable, "-m", "searchlab.sweep", str(path), "--address", ray.get_runtime_context().gcs_address],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), "RAY_COLOR_PREFIX": "0"})
    (base / "sweep.log").write_text(done.stdout + done.stderr)  # to read when a test fails
    return {"done": done, "run_dir": base / "runs" / "out", "text": done.stdout + done.stderr}


def _events(text: str, row) -> list[str]:
    """What the output says about one trial: its lines, from the tag on (after Ray's process prefix)."""
    tag = f"[trial {row.number} {row.trial_id}]"
    return [line[line.index(tag) + len(tag) + 1:] for line in text.splitlines() if tag in line]


def test_each_stage_event_prints_one_tagged_line_and_no_ray_noise(output_run):
    done, text = output_run["done"], output_run["text"]
    assert done.returncode == 0, text[-3000:]
    frame = TrialsTable.in_run(output_run["run_dir"]).read().sort_values("number")
    row, failed = frame.itertuples()
    assert (row.status, failed.status) == ("completed", "failed")
    keys = decoded_json(frame, "stage_keys")[0]
    events = _events(text, row)

    def one(pattern: str) -> str:
        found = [event for event in events if re.fullmatch(pattern, event)]
        assert len(found) == 1, (pattern, events)
        return found[0]

    one(r"started: stage2\.w1=.*, stage2\.decision_space=.*")
    for stage in ("teacher", "stage1", "outputs"):  # a fresh cache: each shared stage is built once
        one(rf"{stage}: cache miss, building \(key {keys[stage]}\)")
        one(rf"{stage}: built in \d+ s, cached \(key {keys[stage]}\)")
    one(r"teacher epoch 1/2 loss \d+\.\d+ eta \d+ s")  # teacher: 1 epoch + 1 policy epoch
    one(r"teacher epoch 2/2 loss \d+\.\d+ acc \d\.\d+ done in \d+ s")
    one(r"stage1 epoch 1/1 loss \d+\.\d+ acc \d\.\d+ gflops \d+\.\d+ done in \d+ s")
    one(r"stage2: training \(per trial\)")
    one(r"stage2 epoch 1/2 loss \d+\.\d+ eta \d+ s")
    one(r"stage2 epoch 2/2 loss \d+\.\d+ acc \d\.\d+ gflops \d+\.\d+ done in \d+ s")
    one(r"completed in \d+ s: accuracy \S+ gflops \S+ .*")
    assert "sweep finished" in done.stdout
    noise = [line for line in text.splitlines() if any(part in line for part in NOISE)]
    assert noise == []
    # the failed trial: its cache hits, its reason in one line, and Tune's traceback, which is not hidden
    failing = _events(text, failed)
    assert sorted(event for event in failing if "cache" in event) == sorted(
        f"{stage}: cache hit (key {key})" for stage, key in keys.items() if stage != "stage2")
    assert any(event.startswith("failed: Diverged: ") and "of stage2" in event for event in failing), failing
    assert f"Trial task failed for trial trial-{failed.number}-{failed.trial_id}" in text
    assert "Traceback (most recent call last)" in text


def test_the_trials_ray_train_runs_carry_its_number_and_id(output_run):
    run_dir = output_run["run_dir"]
    frame = TrialsTable.in_run(run_dir).read().sort_values("number")
    names = [f"trial-{row.number}-{row.trial_id}" for row in frame.itertuples()]
    assert sorted(p.name for p in (run_dir / "tune").glob("trial-*")) == names  # Tune's folders ...
    assert sorted(p.name for p in (run_dir / "ray-train").iterdir()) == names  # ... and the Ray Train runs
    assert list((trial_train_dir(run_dir, names[0], "stage2") / "tensorboard").glob("events.out.tfevents.*"))
