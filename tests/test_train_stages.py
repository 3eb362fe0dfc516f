"""The three stages as real Ray Train runs on tiny synthetic data (one damaged video included).

TorchTrainer.fit() costs ~10-20 s of overhead here, so every run happens once per session in
fixtures that the tests share: a 1-worker chain (teacher -> stage1 -> cache -> stage2), a
2-worker chain (stage2 on live backbone outputs), and an interrupted + resumed stage 2.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import ray
import ray.train
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from searchlab.config import TrialConfig, load_trial_config
from searchlab.data.manifest import read_manifest
from searchlab.models import create_backbone
from searchlab.objectives import METRICS
from searchlab.methods import get_method
from searchlab.methods.videoiq.method import OUTPUTS_SUBDIR
from searchlab.train.backbone_cache import CachedBackboneOutputs, load_backbone
from searchlab.train.launch import StageResult, run_stage
from searchlab.train.loader import clip_dataset, load_manifest
from searchlab.train.stage1 import load_teacher
from searchlab.train.stage2 import LiveOutputs

STAGE = {stage.name: stage for stage in get_method("videoiq").stages}


@pytest.fixture(scope="session")
def damaged_data(synthetic_set, tmp_path_factory) -> Path:
    """A copy of the tiny synthetic set with one training video overwritten by garbage."""
    _, source = synthetic_set
    root = tmp_path_factory.mktemp("train_data") / "data"
    shutil.copytree(source, root)
    manifest = read_manifest(root / "manifest.parquet", data_root=root)
    victim = manifest.split("train").table["path"][0].as_py()
    (root / victim).write_bytes(b"\x00not an mp4\x00" * 64)
    return root


def _config(data: Path, *, workers: int) -> TrialConfig:
    return load_trial_config("spaces/demo.yaml", {
        "data.manifest": str(data / "manifest.parquet"), "data.synthetic": None, "data.frames": 4,
        "data.train_scale": [32, 40], "data.crop_size": 28, "data.eval_short_side": 32, "data.loader_workers": 0,
        "data.max_failure_fraction": 0.5,
        "model.policy_input_size": 16, "model.policy_hidden": 16, "model.policy_width_mult": 0.25,
        "teacher.epochs": 1, "teacher.policy_epochs": 1, "teacher.batch_size": 4,
        "stage1.epochs": 1, "stage1.batch_size": 4, "stage2.epochs": 2, "stage2.batch_size": 4,
        "stage2.temperature": {"kind": "exponential", "tau0": 5.0, "rate": 0.7, "per": "epoch"},
        "teacher.checkpoint_every": 1, "stage1.checkpoint_every": 1, "stage2.checkpoint_every": 1,
        "resources.workers": workers,
    })


@pytest.fixture(scope="session")
def chain1(ray_local, damaged_data, tmp_path_factory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("chain1")
    config = _config(damaged_data, workers=1)
    common = {"config": config, "storage_path": out / "ray"}
    teacher = run_stage(STAGE["teacher"], output_dir=out / "teacher", name="teacher", inputs={}, **common)
    stage1 = run_stage(STAGE["stage1"], output_dir=out / "stage1", name="stage1",
                       inputs={"teacher": teacher.output_dir}, **common)
    outputs = out / "outputs"
    STAGE["outputs"].build(config, {"teacher": teacher.output_dir, "stage1": stage1.output_dir}, outputs)
    cache = outputs / OUTPUTS_SUBDIR
    stage2 = run_stage(STAGE["stage2"], output_dir=out / "stage2", name="stage2", **common,
                       inputs={"teacher": teacher.output_dir, "stage1": stage1.output_dir, "outputs": outputs})
    return {"config": config, "out": out, "teacher": teacher, "stage1": stage1, "cache": cache, "stage2": stage2}


@pytest.fixture(scope="session")
def chain2(ray_local, damaged_data, tmp_path_factory) -> dict[str, StageResult]:
    out = tmp_path_factory.mktemp("chain2")
    config = _config(damaged_data, workers=2).with_overrides({"stage2.epochs": 1})
    common = {"config": config, "storage_path": out / "ray"}
    teacher = run_stage(STAGE["teacher"], output_dir=out / "teacher", name="teacher", inputs={}, **common)
    stage1 = run_stage(STAGE["stage1"], output_dir=out / "stage1", name="stage1",
                       inputs={"teacher": teacher.output_dir}, **common)
    stage2 = run_stage(STAGE["stage2"], output_dir=out / "stage2", name="stage2", **common,
                       inputs={"teacher": teacher.output_dir, "stage1": stage1.output_dir})  # live backbone outputs
    return {"config": config, "teacher": teacher, "stage1": stage1, "stage2": stage2}


def _scalars(log_dir: Path) -> dict[str, list[float]]:
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _finite_losses(result: StageResult) -> dict[str, list[float]]:
    scalars = _scalars(result.log_dir)
    losses = {tag: values for tag, values in scalars.items() if tag.startswith("loss/")}
    assert losses, f"no loss scalars in {result.log_dir}"
    assert all(math.isfinite(v) for values in losses.values() for v in values)
    return scalars


@pytest.mark.parametrize("chain", ["chain1", "chain2"])
def test_teacher_trains_both_networks(chain, request):
    result = request.getfixturevalue(chain)["teacher"]
    assert {"teacher.pt", "policy_features.pt", "metrics.json", "config.yaml"} <= {p.name for p in result.output_dir.iterdir()}
    assert 0.0 <= result.metrics["accuracy"] <= 1.0 and "top1" in result.metrics and "policy_accuracy" in result.metrics
    scalars = _finite_losses(result)
    assert len(scalars["loss/teacher_ce"]) == 1 and len(scalars["loss/policy_kd"]) == 1  # one epoch each


@pytest.mark.parametrize("chain", ["chain1", "chain2"])
def test_stage1_reports_uniform_baselines(chain, request):
    result = request.getfixturevalue(chain)["stage1"]
    uniform = result.metrics["uniform"]
    assert set(uniform) == {"32", "4", "2"}
    assert uniform["32"]["gflops"] > uniform["4"]["gflops"] > uniform["2"]["gflops"] > 0
    assert result.metrics["accuracy"] == uniform["32"]["accuracy"] and result.metrics["memory_mb"] > 0
    scalars = _finite_losses(result)
    assert {"loss/ce_32", "loss/kd_4", "loss/ce_2", "eval/accuracy_2", "eval/gflops_32"} <= set(scalars)
    assert json.loads((result.output_dir / "sources.json").read_text())["teacher"]


@pytest.mark.parametrize("chain", ["chain1", "chain2"])
def test_stage2_reports_the_metric_contract(chain, request):
    result = request.getfixturevalue(chain)["stage2"]
    metrics = result.metrics
    assert set(METRICS) <= set(metrics) and "top1" in metrics
    assert metrics["gflops_p5"] <= metrics["gflops"] <= metrics["gflops_p95"]
    assert sum(metrics["usage"].values()) == pytest.approx(1.0)
    assert metrics["skip_fraction"] == pytest.approx(metrics["usage"]["0"])
    assert all(sum(u.values()) == pytest.approx(1.0) for u in metrics["usage_per_class"].values())
    scalars = _finite_losses(result)
    assert {"tau", "usage/0", "loss/efficiency", "loss/balance", "loss/decisiveness", "eval/gflops",
            "eval/usage_32"} <= set(scalars)


def test_stage2_temperature_follows_the_schedule(chain1):
    # exponential per epoch, tau0 = 5, rate = 0.7 (set in _config)
    assert _scalars(chain1["stage2"].log_dir)["tau"] == pytest.approx([5.0, 3.5])


def test_interrupted_stage2_resumes_exactly(chain1):
    out: Path = chain1["out"]
    common = {"config": chain1["config"], "storage_path": out / "ray", "name": "stage2-resumed",
              "output_dir": out / "stage2-resumed",
              "inputs": {"teacher": chain1["teacher"].output_dir, "stage1": chain1["stage1"].output_dir,
                         "outputs": chain1["cache"].parent}}
    with pytest.raises(ray.train.TrainingFailedError):
        run_stage(STAGE["stage2"], inject_failure_after_epoch=1, **common)
    assert not (out / "stage2-resumed").exists()
    resumed = run_stage(STAGE["stage2"], **common)
    reference = chain1["stage2"]
    mine = torch.load(resumed.output_dir / "policy.pt", weights_only=True)
    theirs = torch.load(reference.output_dir / "policy.pt", weights_only=True)
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert resumed.metrics == reference.metrics
    logged, expected = _scalars(resumed.log_dir), _scalars(reference.log_dir)
    assert set(logged) == set(expected)  # nothing the killed run logged is lost
    for tag in ("loss/total", "tau", "usage/0"):
        assert logged[tag] == pytest.approx(expected[tag]), tag


def test_cache_matches_live_backbone_outputs(chain1):
    config: TrialConfig = chain1["config"]
    manifest, root = load_manifest(config.data)
    cached = CachedBackboneOutputs(chain1["cache"], split="val")
    assert len(cached) == len(manifest.split("val"))
    live = LiveOutputs(
        backbone=load_backbone(config, stage1_dir=chain1["stage1"].output_dir, num_classes=manifest.num_classes),
        teacher=load_teacher(config, teacher_dir=chain1["teacher"].output_dir, num_classes=manifest.num_classes),
        config=config, device=torch.device("cpu"))
    dataset = clip_dataset(config.data, manifest=manifest, root=root, split="val", train=False, seed=config.seed)
    items = [dataset[i] for i in range(2)]
    expected = live({key: torch.stack([item[key] for item in items]) for key in items[0]})
    got = cached.__getitems__([0, 1])
    assert got["frame_logits"].shape == expected["frame_logits"].shape == (2, 4, 3, manifest.num_classes)
    assert torch.allclose(got["frame_logits"], expected["frame_logits"], rtol=1e-2, atol=1e-2)
    assert torch.allclose(got["teacher_logits"], expected["teacher_logits"], rtol=1e-2, atol=1e-2)
    assert torch.allclose(got["policy_frames"], expected["policy_frames"], atol=0.05)  # uint8 rounding
    assert torch.equal(got["label"], expected["label"])


def test_training_views_cycle_per_epoch(chain1):
    cached = CachedBackboneOutputs(chain1["cache"], split="train")
    assert cached.views == chain1["config"].stage2.cached_views == 2
    cached.set_epoch(0)
    first = cached.__getitems__([1])["policy_frames"]
    cached.set_epoch(1)
    second = cached.__getitems__([1])["policy_frames"]
    cached.set_epoch(2)
    assert not torch.equal(first, second) and torch.equal(cached.__getitems__([1])["policy_frames"], first)


def test_damaged_video_did_not_stop_the_stages(chain1, damaged_data):
    manifest = read_manifest(damaged_data / "manifest.parquet", data_root=damaged_data)
    damaged = damaged_data / manifest.split("train").table["path"][0].as_py()
    assert damaged.read_bytes().startswith(b"\x00not an mp4")
    assert (chain1["stage2"].output_dir / "policy.pt").is_file()


def test_stage_artifact_loads_into_a_fresh_network(chain1):
    config: TrialConfig = chain1["config"]
    backbone = create_backbone("resnet10", num_classes=4, bit_widths=config.model.bit_widths, alpha_init=1.0)
    backbone.load_state_dict(torch.load(chain1["stage1"].output_dir / "backbone.pt", weights_only=True))


def _bundle_of(chain: dict, folder: Path) -> Path:
    """The published artifacts assembled as `pick` assembles them (weights, config, classes, card)."""
    config: TrialConfig = chain["config"]
    folder.mkdir()
    shutil.copy(chain["stage1"].output_dir / "backbone.pt", folder)
    for name in ("policy.pt", "config.yaml"):
        shutil.copy(chain["stage2"].output_dir / name, folder)
    manifest, _ = load_manifest(config.data)
    (folder / "classes.json").write_text(json.dumps(list(manifest.class_names)))
    (folder / "card.json").write_text(json.dumps({"accuracy": chain["stage2"].metrics["accuracy"]}))
    (folder / "card.md").write_text("# card\n")
    return folder


@pytest.mark.parametrize("chain", ["chain1", "chain2"])
def test_published_artifacts_reproduce_the_recorded_metrics_exactly(chain, request, tmp_path, capsys):
    """Reloading what stage 2 publishes and evaluating it from the videos gives its metrics.json:
    the same decisions, the same accuracy, GFLOPs within float error (1 and 2 workers)."""
    from searchlab.evaluate import main as evaluate_main

    chain = request.getfixturevalue(chain)
    config: TrialConfig = chain["config"]
    recorded = chain["stage2"].metrics
    assert evaluate_main([str(_bundle_of(chain, tmp_path / "bundle")), "--manifest", config.data.manifest,
                          "--json", "--workers", "0"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["usage"] == recorded["usage"]
    assert measured["accuracy"] == recorded["accuracy"] and measured["top1"] == recorded["top1"]
    for key in ("gflops", "gflops_p5", "gflops_p95", "memory_mb"):
        assert measured[key] == pytest.approx(recorded[key], rel=1e-9), key
