"""Two trials whose stages each reserve half the machine's CPUs train at the same time.

A trial's process only drives its stages; the CPU is reserved by the stage (a Ray Train worker, or
``launch._reserved`` for a stage trained in the trial's process). When trial processes took even a
sliver of a CPU each, two of them left 1.98 CPUs and the second stage waited for the first to end.
The sweep's own local Ray (``tune_driver.init_ray``) is started here in a fresh process, as
``python -m searchlab.sweep`` starts it, so this checks what a user's sweep gets. Each trial holds its
CPUs until the other holds its own (at most 60 s), so a slow start on a busy machine cannot fail it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, os, pathlib, sys, time
    import ray
    from ray import tune
    from searchlab.train.launch import _reserved
    from searchlab.config import ResourcesConfig
    from searchlab.tune_driver import init_ray, trial_resources

    init_ray(None, output="quiet")
    signals = pathlib.Path(sys.argv[1]) / "began"  # one file per trial holding its CPUs
    signals.mkdir()
    ray_cpus = ray.cluster_resources()["CPU"]
    half = ResourcesConfig(workers=1, cpus_per_worker=int(ray_cpus) // 2)  # two stages fill the machine

    def trial(config):
        with _reserved(half, who="test"):
            began = time.time()
            (signals / f"{os.getpid()}").touch()
            # hold the CPUs until the other trial holds its own too (or 60 s: it could not start)
            while len(list(signals.iterdir())) < 2 and time.time() - began < 60:
                time.sleep(0.1)
            tune.report({"began": began, "ended": time.time()})

    grid = tune.Tuner(tune.with_resources(trial, trial_resources()),
                      tune_config=tune.TuneConfig(num_samples=2, max_concurrent_trials=2),
                      run_config=tune.RunConfig(storage_path=sys.argv[1] + "/tune", verbose=0)).fit()
    spans = [(r.metrics["began"], r.metrics["ended"]) for r in grid]
    print(json.dumps({"cpus": ray_cpus, "driver": trial_resources(), "spans": spans}))
""")


def test_two_trials_train_at_once_on_two_cpus(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": ""}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["cpus"] % 2:
        pytest.skip(f"two stages of half the CPUs each leave a free CPU of {result['cpus']:g}")
    assert result["driver"]["cpu"] == 0
    (first_began, first_ended), (second_began, second_ended) = sorted(result["spans"])
    assert second_began < first_ended, f"the second trial's stage waited for the first: {result['spans']}"
