"""The cluster path on one machine: a head and worker nodes (`ray start`), token auth, Ray Jobs, node loss.

Runs in `make test-cluster` (SEARCHLAB_CLUSTER_TESTS=1), not in `make test`. The cluster is built the
way cluster.yaml builds one (`tests/local_cluster.py`): a head with no CPU that runs the Jobs' drivers
and the trials' processes (`searchlab_trial_driver`), and worker nodes with 3 CPUs each; stages ask for
2 CPUs per worker, so two stages never share a node. Every process runs with RAY_AUTH_MODE=token.
The sweeps are the tiny ones of test_sweep_e2e (sweep_fixtures) and share one storage folder (every
node sees it: one machine), so later sweeps reuse the first one's teacher and stage 1. A data set is
prepared through the Jobs API too (jobs/prepare.py), its videos probed on the worker nodes.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from local_cluster import LocalCluster
from sweep_fixtures import sweep_tree, write_sweep

from searchlab import pick, report
from searchlab.cache import ArtifactCache
from searchlab.data import prepare
from searchlab.results import TrialsTable, decoded_json

pytestmark = pytest.mark.skipif(os.environ.get("SEARCHLAB_CLUSTER_TESTS") != "1",
                                reason="multi-node cluster tests: run `make test-cluster`")

REPO = Path(__file__).resolve().parents[1]
JOB_TIMEOUT_S = 420


@pytest.fixture(scope="module")
def cluster():
    local = LocalCluster.create()
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    try:
        local.start_head()
        local.add_worker("node_a")
        local.add_worker("node_b")
        # this process is a client with the token (JobSubmissionClient reads it from here)
        os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": local.token})
        yield local
    finally:
        local.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cluster") / "runs"


def _sweep_file(storage: Path, data_root: Path, name: str, *, trials: int, max_concurrent: int,
                stage2_epochs: int = 2, launch: str = "auto") -> Path:
    """`launch: auto` runs stage 2 distributed here too (the trials' processes are on the CPU-less head);
    the node-loss sweeps say `distributed` so that they test Ray Train's path whatever `auto` decides."""
    tree = sweep_tree(manifest=data_root / "manifest.parquet", storage=storage, name=name, trials=trials,
                      max_concurrent=max_concurrent, failing_point=False)
    tree["base"]["resources"]["cpus_per_worker"] = 2  # 3 CPUs per worker node: one stage per node at a time
    tree["base"]["resources"]["launch"] = launch
    tree["base"]["stage2"]["epochs"] = stage2_epochs
    return write_sweep(storage.parent / f"{name}.yaml", tree)


def _client(cluster: LocalCluster):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(cluster.dashboard_url)


def _submit(cluster: LocalCluster, argv: list[str], env_vars: dict[str, str] | None = None, *,
            entry: str = "jobs/sweep.py") -> str:
    runtime_env: dict[str, Any] = {"working_dir": str(REPO)}
    if env_vars:
        runtime_env["env_vars"] = env_vars
    return _client(cluster).submit_job(entrypoint=" ".join(["python", entry, *argv]), runtime_env=runtime_env)


def _follow(cluster: LocalCluster, job_id: str) -> tuple[str, str]:
    """Follow the job's logs to its end (as `ray job logs --follow` does); its final status and logs."""
    client = _client(cluster)

    async def tail() -> str:
        chunks = []
        async for lines in client.tail_job_logs(job_id):
            chunks.append(lines)
        return "".join(chunks)

    logs = asyncio.run(asyncio.wait_for(tail(), JOB_TIMEOUT_S))
    deadline = time.monotonic() + 30
    while not (status := client.get_job_status(job_id)).is_terminal() and time.monotonic() < deadline:
        time.sleep(0.5)
    return str(status.value), logs


def _wait_for(predicate, *, timeout_s: float, what: str, poll=None):
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if poll is not None:
            poll()
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout_s} s")
        time.sleep(0.2)
    return value


def _worker_nodes(cluster: LocalCluster) -> set[str]:
    return {n.node_id for name, n in cluster.nodes.items() if name != "head"}


@pytest.fixture(scope="module")
def job_sweep(cluster, storage, synthetic_set) -> dict[str, Any]:
    """The small sweep submitted through the Jobs API (2 trials at once), followed to its end."""
    _, data_root = synthetic_set
    path = _sweep_file(storage, data_root, "cluster", trials=2, max_concurrent=2)
    started = time.monotonic()
    job_id = _submit(cluster, [str(path)])
    status, logs = _follow(cluster, job_id)
    return {"status": status, "logs": logs, "seconds": time.monotonic() - started, "run_dir": storage / "cluster",
            "trials": TrialsTable.in_run(storage / "cluster").read(), "ledger": ArtifactCache(storage / "cache").ledger()}


def test_a_job_sweeps_across_the_worker_nodes(cluster, job_sweep, capsys):
    assert job_sweep["status"] == "SUCCEEDED", job_sweep["logs"][-3000:]
    assert "searchlab: 3 nodes see" in job_sweep["logs"]  # jobs/sweep.py's storage and data check passed
    assert "2 trials, 2 completed, 0 failed" in job_sweep["logs"]
    frame = job_sweep["trials"]
    assert list(frame["status"]) == ["completed", "completed"] and frame["trial_id"].is_unique
    nodes = decoded_json(frame, "nodes")
    head, workers = cluster.nodes["head"].node_id, _worker_nodes(cluster)
    assert all(n["driver"] == head for n in nodes)  # the trials' processes run on the head...
    stage2 = [n["stage2"] for n in nodes]
    assert all(len(s) == 1 and s[0] in workers for s in stage2)  # ...their stages on the workers
    assert stage2[0] != stage2[1], "the two trials' stage 2 ran on the same node"
    placed = {cluster.node_named(s[0]) for s in stage2}
    print(f"stage 2 per node: {sorted(placed)}; job {job_sweep['seconds']:.0f} s")
    # the shared stages were trained once for the whole cluster, by whichever trial came first
    for kind in ("teacher", "stage1"):
        (entry,) = job_sweep["ledger"][kind].values()
        assert entry["builds"] == 1 and entry["builds"] + entry["hits"] == 2, kind
    trained = [n for n in nodes if "stage1" in n]
    assert len(trained) == 1 and set(trained[0]["stage1"]) <= workers


def test_report_and_pick_work_on_the_clusters_run(job_sweep, tmp_path, capsys):
    run_dir = job_sweep["run_dir"]
    assert report.main([str(run_dir)]) == 0
    assert "trials: 2 (2 completed" in capsys.readouterr().out
    assert pick.main([str(run_dir), "--knee", "--out", str(tmp_path / "bundle")]) == 0
    assert (tmp_path / "bundle" / "card.json").is_file()


def _client_check(cluster: LocalCluster, env: dict[str, str], code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=90)


def test_only_a_client_with_the_token_gets_in(cluster, tmp_path):
    list_jobs = f"from ray.job_submission import JobSubmissionClient; print(JobSubmissionClient({cluster.dashboard_url!r}).list_jobs())"
    home = tmp_path / "home"  # no ~/.ray/auth_token there
    home.mkdir()
    with_token = _client_check(cluster, cluster.env(home=home), list_jobs)
    assert with_token.returncode == 0, with_token.stderr[-2000:]
    no_token = _client_check(cluster, cluster.env(token=None, home=home), list_jobs)
    assert no_token.returncode != 0 and "Unauthorized: Missing authentication token" in no_token.stderr, \
        no_token.stderr[-2000:]
    wrong = _client_check(cluster, cluster.env(token="0" * 64, home=home), list_jobs)
    assert wrong.returncode != 0 and "Invalid authentication token" in wrong.stderr, wrong.stderr[-2000:]
    # the GCS (what `ray.init(address=...)` and the sweep's --address join) refuses a driver without it
    join = f"import ray; ray.init(address={cluster.address!r}); print('joined')"
    refused = _client_check(cluster, cluster.env(token=None, home=home), join)
    assert refused.returncode != 0 and "joined" not in refused.stdout
    joined = _client_check(cluster, cluster.env(home=home), join)
    assert joined.returncode == 0 and "joined" in joined.stdout, joined.stderr[-2000:]


def _fcvid_lists(synthetic_set, folder: Path) -> list[str]:
    """The synthetic set as `PATH LABEL` list files (paths under its videos/ folder): prepare's fcvid arguments."""
    manifest, _ = synthetic_set
    arguments = ["--num-classes", str(manifest.num_classes)]
    for split in ("train", "val"):
        rows = manifest.split(split).rows()
        lines = [f"{row['path'].removeprefix('videos/')} {row['label']}" for row in rows]
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
        arguments += [f"--{split}", str(folder / f"{split}.txt")]
    return arguments


def test_a_job_prepares_a_data_set_probing_on_the_worker_nodes(cluster, synthetic_set, tmp_path):
    """jobs/prepare.py: the same manifest as the local process pool, the corrupt video reported, probed on both workers."""
    _, data_root = synthetic_set
    videos = shutil.copytree(data_root / "videos", tmp_path / "videos")
    corrupt = sorted(videos.glob("train/*.mp4"))[0]
    corrupt.write_bytes(b"not an mp4 " * 200)
    lists = _fcvid_lists(synthetic_set, tmp_path)
    local, job = tmp_path / "local" / "manifest.parquet", tmp_path / "job" / "manifest.parquet"
    common = ["fcvid", *lists, "--videos", str(videos), "--no-progress"]
    assert prepare.main([*common, "--out", str(local), "--workers", "2"]) == 0
    job.parent.mkdir()  # the job refuses an --out folder its driver does not see
    started = time.monotonic()
    status, logs = _follow(cluster, _submit(cluster, [*common, "--out", str(job)], entry="jobs/prepare.py"))
    assert status == "SUCCEEDED", logs[-3000:]
    assert f"searchlab: the driver sees --videos {videos}" in logs
    assert job.read_bytes() == local.read_bytes()
    report_path = prepare.report_path_for(job)
    assert report_path.read_bytes() == prepare.report_path_for(local).read_bytes()
    with report_path.open(newline="") as handle:
        reasons = {row["video_id"]: row["reason"] for row in csv.DictReader(handle)}
    assert list(reasons) == [corrupt.stem] and reasons[corrupt.stem].startswith("unreadable ("), reasons
    assert "skipped 1: unreadable 1" in logs
    probed = {node: int(n) for n, node in re.findall(r"^probed (\d+) video\(s\) on node (\w+)$", logs, re.MULTILINE)}
    assert set(probed) <= _worker_nodes(cluster) and len(probed) >= 2, logs[-3000:]
    assert sum(probed.values()) == len(list(videos.rglob("*.mp4")))  # every video probed once, the corrupt one too
    print(f"probed per node: {sorted((cluster.node_named(n), k) for n, k in probed.items())}; "
          f"job {time.monotonic() - started:.0f} s")


def _stage2_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "ray-train").glob("trial-*/stage2"))  # ray-train/trial-N-ID/stage2


def _trial_id(run: Path) -> str:
    return run.parent.name.split("-", 2)[2]


def _starts(run: Path) -> list[dict[str, Any]]:
    from searchlab.train.launch import read_starts

    return list(read_starts(run))


def _kill_the_first_stage2_node(cluster: LocalCluster, run_dir: Path, *, poll) -> tuple[str, Path]:
    """Wait until the first trial's stage 2 has saved 2 checkpoints, then SIGKILL its node's raylet."""
    run = _wait_for(lambda: next((r for r in _stage2_runs(run_dir) if _starts(r)), None), timeout_s=240,
                    what="stage 2 worker start", poll=poll)
    _wait_for(lambda: len(list(run.glob("checkpoint_*"))) >= 2, timeout_s=120, what="second stage-2 checkpoint",
              poll=poll)
    victim = cluster.node_named(_starts(run)[0]["node_id"])
    cluster.kill_raylet(victim)
    return victim, run


def _lost_and_duplicated(run_dir: Path, planned: int) -> tuple[int, int]:
    frame = TrialsTable.in_run(run_dir).read()
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{run_dir / 'optuna.db'}")
    finished = [t for t in study.trials if t.state.is_finished()]
    lost = planned - len(set(frame.loc[frame["status"].isin(["completed", "failed"]), "trial_id"]))
    duplicated = (len(frame) - frame["trial_id"].nunique()) + max(0, len(finished) - planned)
    return lost, duplicated


def test_a_stage_whose_node_dies_resumes_on_the_other_node(cluster, storage, synthetic_set, job_sweep):
    """The direct path (`python -m searchlab.sweep --address`): kill a worker's raylet in the middle of stage 2."""
    _, data_root = synthetic_set
    name, epochs = "cluster-node-loss", 16
    path = _sweep_file(storage, data_root, name, trials=2, max_concurrent=1, stage2_epochs=epochs,
                       launch="distributed")
    run_dir = storage / name
    log_path = storage.parent / f"{name}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "searchlab.sweep", str(path), "--address", cluster.address],
                                   cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=cluster.env())

        def alive() -> None:
            if process.poll() is not None:
                raise AssertionError(f"the sweep exited ({process.returncode}): {log_path.read_text()[-3000:]}")

        try:
            victim, run = _kill_the_first_stage2_node(cluster, run_dir, poll=alive)
            code = process.wait(timeout=JOB_TIMEOUT_S)
        finally:
            if process.poll() is None:
                process.kill()
    cluster.wait_dead(victim)
    cluster.add_worker("node_c")  # back to two workers for the next test
    assert code == 0, log_path.read_text()[-3000:]
    frame = TrialsTable.in_run(run_dir).read()
    assert list(frame["status"]) == ["completed", "completed"]
    assert _lost_and_duplicated(run_dir, planned=2) == (0, 0)
    starts = _starts(run)
    first, *again = starts
    assert cluster.node_named(first["node_id"]) == victim and first["resumed_from"] == 0
    assert again and all(cluster.node_named(s["node_id"]) != victim for s in again)
    resumed = again[-1]["resumed_from"]
    assert 2 <= resumed < epochs, starts  # from its checkpoint, not from epoch 0
    # one searchlab line says what happened, in the sweep's output
    assert f"lost a worker (node {cluster.nodes[victim].node_id[:12]} is gone); restarting it from its latest " \
           "checkpoint" in log_path.read_text()
    killed_trial = frame[frame["trial_id"] == _trial_id(run)].iloc[0]
    assert set(json.loads(killed_trial["nodes"])["stage2"]) == {first["node_id"], again[-1]["node_id"]}
    print(f"stage 2 killed on {victim}, resumed on {cluster.node_named(again[-1]['node_id'])} "
          f"from epoch {resumed} of {epochs}; 2 completed, 0 lost, 0 duplicated")


def test_a_trial_whose_node_is_lost_for_good_fails_with_the_reason(cluster, storage, synthetic_set, job_sweep):
    """No restarts allowed (SEARCHLAB_STAGE_NODE_RETRIES=0, in the job's runtime env): the trial fails, the sweep goes on."""
    _, data_root = synthetic_set
    name = "cluster-node-gone"
    path = _sweep_file(storage, data_root, name, trials=2, max_concurrent=1, stage2_epochs=16,
                       launch="distributed")
    run_dir = storage / name
    client = _client(cluster)
    job_id = _submit(cluster, [str(path)], env_vars={"SEARCHLAB_STAGE_NODE_RETRIES": "0"})

    def alive() -> None:
        status = client.get_job_status(job_id)
        if status.is_terminal():
            raise AssertionError(f"the job ended ({status}): {client.get_job_logs(job_id)[-3000:]}")

    victim, run = _kill_the_first_stage2_node(cluster, run_dir, poll=alive)
    status, logs = _follow(cluster, job_id)
    assert status == "SUCCEEDED", logs[-3000:]
    frame = TrialsTable.in_run(run_dir).read().set_index("trial_id")
    lost_trial = frame.loc[_trial_id(run)]
    assert lost_trial["status"] == "failed"
    assert lost_trial["error"].startswith("StageNodeLost: a worker of stage stage2 died with its node")
    assert f"node {cluster.nodes[victim].node_id[:12]} is gone" in lost_trial["error"], lost_trial["error"]
    assert "\n" not in lost_trial["error"]
    assert sorted(frame["status"]) == ["completed", "failed"]  # the sweep went on without that node
    assert _lost_and_duplicated(run_dir, planned=2) == (0, 0)
    print(f"{victim} lost for good: {lost_trial['error'][:160]}")
