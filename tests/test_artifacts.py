"""A stage artifact as written in a checkpoint and published: portable paths, default permissions."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import torch
import yaml

from searchlab.config import load_sweep
from searchlab.run_dir import CONFIG_PATHS_NOTE, absolute_config_paths, resolve_in
from searchlab.train.checkpointing import publish_directory, write_artifact

REPO = Path(__file__).resolve().parents[1]


def write_and_publish(tmp_path: Path) -> tuple[dict, Path, Path]:
    """A stage-2 artifact written inside a 'checkpoint', then published to a trial folder in a run."""
    config = load_sweep(REPO / "spaces" / "demo.yaml").base.model_dump(mode="json")
    cache = tmp_path / "runs" / "cache"
    sources = {"teacher": str(cache / "teacher" / "t"), "stage1": str(cache / "stage1" / "s")}
    checkpoint = tmp_path / "ray-train" / "stage2-x" / "checkpoint_000001" / "artifact"
    write_artifact(checkpoint, state_dicts={"policy": {"w": torch.ones(2)}}, metrics={"accuracy": 0.5},
                   config=config, sources=sources)
    target = tmp_path / "runs" / "demo" / "trials" / "t0" / "stage2"
    publish_directory(checkpoint, target)
    return config, checkpoint, target


def test_the_published_artifact_names_no_absolute_path(tmp_path: Path) -> None:
    config, _, target = write_and_publish(tmp_path)
    for path in target.iterdir():
        assert str(tmp_path).encode() not in path.read_bytes(), path.name
        assert str(REPO).encode() not in path.read_bytes(), path.name
    text = (target / "config.yaml").read_text()
    assert text.startswith(CONFIG_PATHS_NOTE)
    assert absolute_config_paths(yaml.safe_load(text), Path(config["data"]["manifest"]).parent) == config
    sources = json.loads((target / "sources.json").read_text())
    assert sources == {"stage1": "../../../../cache/stage1/s", "teacher": "../../../../cache/teacher/t"}
    assert resolve_in(target, sources["stage1"]) == tmp_path / "runs" / "cache" / "stage1" / "s"


def test_artifact_files_get_the_default_mode(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        _, checkpoint, target = write_and_publish(tmp_path)
    finally:
        os.umask(previous)
    for folder in (checkpoint, target):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o750
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {
            name: 0o640 for name in ("policy.pt", "metrics.json", "config.yaml", "sources.json")}
