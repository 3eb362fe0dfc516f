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
    assert nodes[cluster["head_node_type"]]["resources"] == {"CPU": 0}  # no trial is scheduled on the head
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
