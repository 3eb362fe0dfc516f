"""The study a sweep writes, read back through optuna-dashboard's own HTTP API on 127.0.0.1.

The searcher is driven as Tune drives it (suggest, then on_trial_complete with the trial's report);
optuna-dashboard (the `dashboard` extra: pip install -e ".[dashboard]") then serves the run's
optuna.db for a few seconds, and the test reads the study's name, objective names, the parameters
and each trial's searchlab attributes from its API.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from searchlab.config import load_sweep
from searchlab.tune_driver import build_searcher
from searchlab.tune_search import VIOLATIONS_KEY

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed: pip install -e '.[dashboard]' "
                    "-c constraints.txt (the `dashboard` extra)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (127.0.0.1 only)
        return response.read()


def _report(trial_id: str) -> dict:
    details = {"action_usage": {"0": 0.25, "2": 0.25, "32": 0.25, "4": 0.25},  # as stored: keys sorted
               "artifacts": {"stage1": "../cache/stage1/k", "stage2": f"trials/{trial_id}/stage2"},
               "tensorboard": f"ray-train/trial-0-{trial_id}/stage2/tensorboard"}
    return {"accuracy": 0.9, "gflops": 0.15, "gflops_p5": 0.1, "gflops_p95": 0.2, "memory_mb": 22.7,
            "skip_fraction": 0.25, "feasible": True, "method": "videoiq", "details_json": json.dumps(details),
            VIOLATIONS_KEY: []}


@pytest.fixture
def study_db(tmp_path: Path) -> Path:
    sweep = load_sweep(REPO / "spaces" / "demo.yaml")
    run_dir = tmp_path / sweep.base.name
    run_dir.mkdir()
    searcher = build_searcher(sweep, run_dir=run_dir)
    for trial_id in ("aaaa0000", "bbbb0001"):
        assert searcher.suggest(trial_id)
    searcher.on_trial_complete("aaaa0000", result=_report("aaaa0000"))
    searcher.on_trial_complete("bbbb0001", error=True)
    return run_dir / "optuna.db"


def test_optuna_dashboard_serves_the_sweeps_study(study_db: Path) -> None:
    port = _free_port()
    # the command the sweep prints (`optuna-dashboard sqlite:///RUN_DIR/optuna.db`), on a free local port
    executable = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent)) or shutil.which("optuna-dashboard")
    assert executable, "the dashboard extra installs the optuna-dashboard command beside python"
    command = [executable, f"sqlite:///{study_db}", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        studies = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                studies = json.loads(_get(f"{base}/api/studies"))["study_summaries"]
                break
            except OSError:
                time.sleep(0.3)
        if studies is None:
            server.terminate()
            output = server.communicate(timeout=10)[0].decode(errors="replace")[-2000:]
            pytest.fail(f"optuna-dashboard did not answer within 30 s (exit code {server.poll()}): {output}")
        assert [s["study_name"] for s in studies] == ["demo"]  # named after the sweep
        study_id = studies[0]["study_id"]
        detail = json.loads(_get(f"{base}/api/studies/{study_id}?after=0"))
        assert detail["directions"] == ["maximize", "minimize"]
        study_attrs = {a["key"]: a["value"] for a in detail["user_attrs"]}
        assert study_attrs["searchlab_run"] == "demo" and study_attrs["method"] == "videoiq"
        assert "stage2.decision_space" in study_attrs["searched"]
        first, second = detail["trials"]
        assert (first["state"], second["state"]) == ("Complete", "Fail")
        attrs = {a["key"]: a["value"] for a in first["user_attrs"]}
        assert attrs["searchlab_trial_id"] == "aaaa0000" and attrs["searchlab_number"] == "0"
        assert attrs["gflops_p95"] == "0.2" and attrs["memory_mb"] == "22.7"
        assert attrs["action_usage"] == "32b 25%, 4b 25%, 2b 25%, skip 25%"
        assert attrs["trial_folder"] == "trials/aaaa0000"
        assert attrs["tensorboard"] == "ray-train/trial-0-aaaa0000/stage2/tensorboard"
        # the starting point: the decision space as its value, in the params attribute and in the params
        assert json.loads(attrs["params"])["stage2.decision_space"] == [32, 4, 2, 0]
        params = {p["name"]: p["param_external_value"] for p in first["params"]}
        assert params["stage2.decision_space"] == "[32, 4, 2, 0]"  # the value, as the report shows it
        space = {p["name"]: p for p in detail["union_search_space"]}["stage2.decision_space"]
        choices = [choice["value"] for choice in space["distribution"]["choices"]]  # the axis of its plots
        assert choices == ["[32, 4, 2, 0]", "[32, 2, 0]", "[32, 0]", "[32, 4, 2]"]
        header = _get(f"{base}/csv/{study_id}").decode().splitlines()[0]
        assert "accuracy" in header and "gflops" in header  # the objective names (set_metric_names)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
