"""A multi-node Ray cluster on one machine, started the way cluster.yaml starts one (`ray start`).

Each node is its own `ray start` with its own --temp-dir, ports and resources: the head has no CPU
(as cluster.yaml's: it drives the sweep, its trials' processes reserve `searchlab_trial_driver`),
the workers have CPUs and one custom resource each (their name). Every process is started with
token authentication (RAY_AUTH_MODE=token and the cluster's token). `stop()` kills exactly the
processes whose command line names one of this cluster's temp dirs (never `ray stop`, which would
stop every Ray of the machine's user); `kill_raylet(name)` kills one worker node's raylet by PID.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
TRIAL_DRIVER_RESOURCE = "searchlab_trial_driver"  # searchlab.tune_driver.TRIAL_DRIVER_RESOURCE
# A killed raylet is declared dead by the GCS after failure_threshold missed health checks.
HEALTH_CHECK = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
                "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "1000"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Node:
    name: str
    temp_dir: Path
    node_manager_port: int
    resources: dict[str, float]
    node_id: str | None = None
    alive: bool = True


@dataclass
class LocalCluster:
    root: Path  # short: Ray's socket paths live under each node's temp dir
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    worker_cpus: int = 3
    nodes: dict[str, Node] = field(default_factory=dict)
    gcs_port: int = 0
    dashboard_port: int = 0

    @classmethod
    def create(cls, **kwargs: Any) -> LocalCluster:
        return cls(root=Path(tempfile.mkdtemp(prefix="slc-", dir="/tmp")), **kwargs)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def env(self, *, token: str | None = "own", home: Path | None = None) -> dict[str, str]:
        """The environment of a process of (or client to) this cluster: with its token, another, or none."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
        env.update(HEALTH_CHECK)
        env.update({"RAY_USAGE_STATS_ENABLED": "0", "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
                    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"})
        if token is not None:
            env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token if token == "own" else token})
        if home is not None:
            env["HOME"] = str(home)
        return env

    def _start(self, name: str, args: list[str], resources: dict[str, float]) -> Node:
        temp_dir = self.root / name
        node = Node(name=name, temp_dir=temp_dir, node_manager_port=free_port(), resources=resources)
        ports = ["--node-manager-port", node.node_manager_port, "--object-manager-port", free_port(),
                 "--dashboard-agent-listen-port", free_port(), "--dashboard-agent-grpc-port", free_port(),
                 "--runtime-env-agent-port", free_port(), "--metrics-export-port", free_port()]
        command = [RAY, "start", *args, "--temp-dir", str(temp_dir), "--node-ip-address", "127.0.0.1",
                   "--resources", json.dumps(resources), "--object-store-memory", str(100 * 2**20),
                   "--disable-usage-stats", *map(str, ports)]
        done = subprocess.run(command, env=self.env(), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"ray start for {name} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        self.nodes[name] = node
        return node

    def start_head(self) -> Node:
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        node = self._start("head", ["--head", "--port", str(self.gcs_port), "--num-cpus", "0",
                                    "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                                    "--dashboard-port", str(self.dashboard_port),
                                    "--ray-client-server-port", str(free_port())],
                           {TRIAL_DRIVER_RESOURCE: 100})
        self._wait_for_nodes()
        return node

    def add_worker(self, name: str) -> Node:
        node = self._start(name, ["--address", self.address, "--num-cpus", str(self.worker_cpus)], {name: 1})
        self._wait_for_nodes()
        return node

    # --- what the cluster says about itself (the dashboard's state API, with the token) ---

    def api(self, path: str) -> Any:
        request = urllib.request.Request(self.dashboard_url + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def alive_nodes(self) -> list[dict[str, Any]]:
        nodes = self.api("/api/v0/nodes?detail=1&limit=100")["data"]["result"]["result"]
        return [n for n in nodes if n["state"] == "ALIVE"]

    def _wait_for_nodes(self, timeout_s: float = 60) -> None:
        """Until every started node is registered; learn their node ids from their custom resource."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                alive = self.alive_nodes()
            except OSError:
                alive = []
            for node in self.nodes.values():
                for info in alive:
                    if all(info["resources_total"].get(k) == v for k, v in node.resources.items()):
                        node.node_id = info["node_id"]
            expected = {n.node_id for n in self.nodes.values() if n.alive}
            if None not in expected and expected <= {info["node_id"] for info in alive}:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster's nodes did not all register within {timeout_s} s: {alive}")
            time.sleep(0.5)

    def node_named(self, node_id: str) -> str:
        return next(n.name for n in self.nodes.values() if n.node_id == node_id)

    def wait_dead(self, name: str, timeout_s: float = 60) -> None:
        node = self.nodes[name]
        deadline = time.monotonic() + timeout_s
        while node.node_id in {n["node_id"] for n in self.alive_nodes()}:
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {name} still alive {timeout_s} s after its raylet was killed")
            time.sleep(0.5)

    # --- processes ---

    def _ours(self, node: Node | None = None) -> list[int]:
        """PIDs of this user's processes whose command line names this cluster's (or one node's) temp dir."""
        marker = str(node.temp_dir if node else self.root).encode()
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if proc.stat().st_uid == os.getuid() and marker in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
        return found

    def raylet_pid(self, name: str) -> int:
        for pid in self._ours(self.nodes[name]):
            try:
                argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if Path(argv0.decode()).name == "raylet":
                return pid
        raise RuntimeError(f"no raylet found for node {name}")

    def kill_raylet(self, name: str) -> int:
        """SIGKILL one worker node's raylet (its workers then die too): the node is lost for good."""
        pid = self.raylet_pid(name)
        os.kill(pid, signal.SIGKILL)
        self.nodes[name].alive = False
        return pid

    def stop(self) -> None:
        """Kill every process of this cluster (found by its temp dirs), and remove the dirs."""
        deadline = time.monotonic() + 30
        while (pids := self._ours()) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        shutil.rmtree(self.root, ignore_errors=True)
