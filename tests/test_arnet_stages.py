"""AR-Net's three stage loops, run without Ray (LocalRun) for one epoch of two real steps each on the
tiny synthetic set: backbones at 28/21/14 px -> joint -> fine-tune, then the published fine-tune
artifact reloaded and evaluated again."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from searchlab.config import DataConfig
from searchlab.methods.arnet import (
    ARNetConfig,
    backbone_loop,
    evaluate_inference,
    finetune_loop,
    joint_loop,
    load_model,
)
from searchlab.train.loader import load_manifest
from searchlab.train.worker import InjectedFailure, LocalRun

TINY = dict(resolutions=(28, 21, 14), backbones=("resnet10",) * 3, policy_input_size=16, policy_hidden=16,
            policy_width_mult=0.25, backbone_stage={"epochs": 1, "batch_size": 4},
            joint_stage={"epochs": 1, "batch_size": 4}, finetune_stage={"epochs": 1, "batch_size": 4})
METRICS = {"accuracy", "top1", "gflops", "gflops_p5", "gflops_p95", "gflops_paper", "memory_mb", "skip_fraction",
           "usage", "usage_per_class"}


def _common(synthetic_set, **arnet) -> dict:
    _, root = synthetic_set
    data = DataConfig(manifest=str(root / "manifest.parquet"), frames=4, train_scale=(32, 40), crop_size=28,
                      eval_short_side=32, loader_workers=0)
    return {"arnet": ARNetConfig(**{**TINY, **arnet}), "data": data, "seed": 0}


def _run(loop, loop_config: dict, folder: Path) -> tuple[LocalRun, Path]:
    run = LocalRun(folder)
    loop({**loop_config, "log_dir": str(folder / "tb")}, run.worker())
    return run, run.checkpoints[-1] / "artifact"


@pytest.fixture(scope="module")
def chain(synthetic_set, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("arnet_chain")
    common = _common(synthetic_set)
    backbones = [_run(backbone_loop, {**common, "resolution_index": i}, out / f"backbone{i}") for i in range(3)]
    dirs = [artifact for _, artifact in backbones]
    joint = _run(joint_loop, {**common, "backbone_dirs": dirs}, out / "joint")
    finetune = _run(finetune_loop, {**common, "joint_dir": joint[1]}, out / "finetune")
    return {"common": common, "backbones": backbones, "joint": joint, "finetune": finetune, "out": out}


def _two_steps(run: LocalRun) -> None:
    report = run.reports[-1]
    assert report["clips_per_second"] * report["epoch_seconds"] == pytest.approx(8)  # 2 steps of 4 clips
    losses = [v for k, v in report.items() if k.startswith("loss/")]
    assert losses and all(math.isfinite(v) for v in losses)


def test_backbone_stage_publishes_the_single_resolution_baseline(chain):
    gflops = []
    for index, (run, artifact) in enumerate(chain["backbones"]):
        assert {p.name for p in artifact.iterdir()} == {"backbone.pt", "metrics.json", "config.yaml"}
        metrics = json.loads((artifact / "metrics.json").read_text())
        assert (metrics["backbone"], metrics["resolution"]) == ("resnet10", (28, 21, 14)[index])
        assert 0 <= metrics["accuracy"] <= 1 and metrics["memory_mb"] > 0
        gflops.append(metrics["gflops"])
        _two_steps(run)
    assert gflops[0] > gflops[1] > gflops[2] > 0


def test_joint_stage_trains_policy_and_backbones(chain):
    run, artifact = chain["joint"]
    assert {p.name for p in artifact.iterdir()} == {"arnet.pt", "metrics.json", "config.yaml", "sources.json"}
    metrics = json.loads((artifact / "metrics.json").read_text())
    assert METRICS <= set(metrics) and sum(metrics["usage"].values()) == pytest.approx(1.0)
    assert set(metrics["usage"]) == {"res28", "res21", "res14", "head16", "skip1", "skip2", "skip4"}
    assert set(json.loads((artifact / "sources.json").read_text())) == {"backbone_28", "backbone_21", "backbone_14"}
    assert run.reports[-1]["tau"] == 5.0
    _two_steps(run)


def test_joint_stage_refuses_backbones_in_the_wrong_order(chain, tmp_path):
    dirs = [artifact for _, artifact in chain["backbones"]][::-1]
    with pytest.raises(ValueError, match="in the order of arnet.resolutions"):
        joint_loop({**chain["common"], "backbone_dirs": dirs, "log_dir": str(tmp_path)}, LocalRun(tmp_path).worker())


def test_finetune_trains_only_the_backbones(chain):
    run, artifact = chain["finetune"]
    joint = torch.load(chain["joint"][1] / "arnet.pt", weights_only=True)
    tuned = torch.load(artifact / "arnet.pt", weights_only=True)
    frozen = [k for k in joint if k.startswith(("policy.", "head."))]
    assert frozen and all(torch.equal(joint[k], tuned[k]) for k in frozen)  # BN statistics included
    assert any(not torch.equal(joint[k], tuned[k]) for k in joint if k.startswith("backbones."))
    assert run.reports[-1]["tau"] == pytest.approx(0.6309)
    _two_steps(run)


def test_reloaded_finetune_artifact_reproduces_its_metrics(chain):
    _, artifact = chain["finetune"]
    recorded = json.loads((artifact / "metrics.json").read_text())
    assert METRICS <= set(recorded)
    common = chain["common"]
    manifest, root = load_manifest(common["data"])
    model = load_model(artifact, config=common["arnet"], num_classes=manifest.num_classes)
    again = evaluate_inference(model, worker=LocalRun(chain["out"] / "again").worker(), data=common["data"],
                               manifest=manifest, root=root, action_names=common["arnet"].action_names(),
                               mode=common["arnet"].eval_mode, seed=common["seed"])
    assert json.loads(json.dumps(again)) == recorded


def test_backbone_loop_resumes_after_a_failure(synthetic_set, tmp_path):
    loop_config = {**_common(synthetic_set, backbone_stage={"epochs": 2, "batch_size": 4}), "resolution_index": 2,
                   "log_dir": str(tmp_path / "tb"), "eval_every": 1}
    first = LocalRun(tmp_path / "run")
    with pytest.raises(InjectedFailure):
        backbone_loop({**loop_config, "inject_failure_after_epoch": 1}, first.worker())
    assert [r["epoch"] for r in first.reports] == [1] and "eval/accuracy" in first.reports[0]  # eval_every
    run = LocalRun(tmp_path / "run")
    backbone_loop(loop_config, run.worker())
    assert [r["epoch"] for r in run.reports] == [2]  # resumed after epoch 1
    assert (run.checkpoints[-1] / "artifact" / "backbone.pt").is_file()
