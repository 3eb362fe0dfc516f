"""cluster.yaml against Ray's own autoscaler schema and the checks `ray up` runs on it."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.scripts.scripts import start as ray_start

from searchlab.tune_driver import TRIAL_DRIVER_RESOURCE

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def test_cluster_yaml_validates_against_rays_schema(cluster: dict[str, Any], schema: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(schema).validate(cluster)


def test_the_schema_rejects_a_misspelt_key(cluster: dict[str, Any], schema: dict[str, Any]) -> None:
    """The check above can fail: Ray's schema forbids unknown top-level and node-type keys."""
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        jsonschema.validate({**cluster, "max_worker": 4}, schema)
    nodes = {**cluster["available_node_types"], "gpu_worker": {**cluster["available_node_types"]["gpu_worker"],
                                                              "min_worker": 0}}
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        jsonschema.validate({**cluster, "available_node_types": nodes}, schema)


def test_ray_up_accepts_it_after_filling_defaults(cluster: dict[str, Any]) -> None:
    """What `ray up` does before launching: merge the provider's defaults, then validate."""
    validate_config(prepare_config(cluster))


def test_node_types_fit_the_sweep_layout(cluster: dict[str, Any]) -> None:
    nodes = cluster["available_node_types"]
    assert cluster["head_node_type"] in nodes
    # no stage trains on the head; the trials' processes run there (searchlab.tune_driver.trial_resources)
    assert nodes[cluster["head_node_type"]]["resources"] == {"CPU": 0, TRIAL_DRIVER_RESOURCE: 100}
    workers = [spec for name, spec in nodes.items() if name != cluster["head_node_type"]]
    assert workers and all(spec["max_workers"] <= cluster["max_workers"] for spec in workers)


def test_setup_commands_install_with_the_pinned_constraints(cluster: dict[str, Any]) -> None:
    mounts = cluster["file_mounts"]
    installs = [command for command in cluster["setup_commands"] if "pip install" in command]
    assert installs, "cluster.yaml must install searchlab in its setup_commands"
    for command in installs:
        words = shlex.split(command.split("pip install", 1)[1].split("&&")[0])
        assert "-c" in words, f"{command!r} installs without -c constraints.txt"
        constraints = words[words.index("-c") + 1]
        remote_dir, name = constraints.rsplit("/", 1)
        assert name == "constraints.txt"
        assert remote_dir in mounts, f"{constraints} is not under a file mount of {list(mounts)}"
        assert (REPO / mounts[remote_dir] / name).is_file()
        assert any(word.strip('"') == remote_dir for word in words), f"{command!r} does not install the mounted repo"


def test_the_cluster_runs_the_ray_version_the_schema_came_from() -> None:
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (REPO / "constraints.txt").read_text(), flags=re.M))
    assert pins["ray"] == ray.__version__
    assert "jsonschema" in pins  # `ray up` validates with it


def _ray_starts(cluster: dict[str, Any]) -> list[tuple[str, list[str], str]]:
    """(node kind, `ray start` arguments, environment assignments before it) of each start command."""
    starts = []
    for kind in ("head_start_ray_commands", "worker_start_ray_commands"):
        for command in cluster[kind]:
            for part in command.split("&&"):
                words = shlex.split(part)
                if "ray" in words and words[words.index("ray") + 1:words.index("ray") + 2] == ["start"]:
                    at = words.index("ray")
                    starts.append((kind, words[at + 2:], " ".join(words[:at])))
    return starts


def test_every_node_starts_with_token_auth_and_parses_as_ray_start(cluster: dict[str, Any]) -> None:
    """Each `ray start` of cluster.yaml is parsed by Ray's own CLI (an unknown or misspelt flag fails here)."""
    starts = _ray_starts(cluster)
    assert {kind for kind, _, _ in starts} == {"head_start_ray_commands", "worker_start_ray_commands"}
    for kind, args, env in starts:
        assert "RAY_AUTH_MODE=token" in env.split(), f"{kind}: {args} starts without token authentication"
        context = ray_start.make_context("ray start", [a.replace("$RAY_HEAD_IP", "10.0.0.1") for a in args])
        if context.params["head"]:
            assert context.params["dashboard_host"] == "127.0.0.1", "the dashboard must listen on localhost only"
        else:
            assert context.params["address"] == "10.0.0.1:6379"
    # every node holds the head's token; clients get it through the same file
    assert cluster["file_mounts"].get("/home/ubuntu/.ray/auth_token") == "~/.ray/auth_token"
    assert any("RAY_AUTH_MODE=token" in command for command in cluster["setup_commands"])


def test_no_port_is_opened_to_the_world(cluster: dict[str, Any]) -> None:
    """`ray up` opens only SSH unless told otherwise; nothing here binds 0.0.0.0 or adds an ingress rule."""
    text = (REPO / "cluster.yaml").read_text()
    assert "0.0.0.0" not in text
    for spec in cluster["available_node_types"].values():
        assert "SecurityGroupIds" not in spec["node_config"]
    assert "security_group" not in cluster["provider"]


def test_the_cluster_installs_rays_dashboard_for_the_jobs_api(cluster: dict[str, Any]) -> None:
    """`ray job submit` and `ray dashboard` need ray[default]; its pins sit beside constraints.txt."""
    installs = [command for command in cluster["setup_commands"] if "pip install" in command]
    assert any("ray[default]" in command and "jobs/constraints-cluster.txt" in command for command in installs)
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (REPO / "jobs" / "constraints-cluster.txt").read_text(),
                           flags=re.M))
    assert {"aiohttp", "aiohttp-cors", "opencensus", "prometheus_client"} <= set(pins)
