"""VA-RED²'s stage loops without Ray (LocalRun), one epoch of two real steps each on the tiny synthetic
set: base -> dynamic (started from the base) -> fine-tune with the efficiency loss; the baselines the
method reads from them; the warm start and its refusal of a foreign base."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from searchlab.config import DataConfig
from searchlab.methods import get_method
from searchlab.methods.vared.build import BASE_FILE, build_network
from searchlab.methods.vared.config import VaredConfig
from searchlab.methods.vared.stages import base_loop, dynamic_loop, finetune_loop, forced_network, start_from_base
from searchlab.train.checkpointing import read_artifact_metrics
from searchlab.train.worker import LocalRun

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RECIPE = {"epochs": 1, "warmup_epochs": 0, "batch_size": 4}
TINY = VaredConfig(backbone="resnet10", lr_batch=4, dynamic_init="base", lambda_e=5.0, base_stage=RECIPE,
                   dynamic_stage=RECIPE, finetune_stage=RECIPE)


def _run(loop, loop_config: dict, folder: Path) -> tuple[LocalRun, Path]:
    run = LocalRun(folder)
    loop({**loop_config, "log_dir": str(folder / "tb")}, run.worker())
    return run, run.checkpoints[-1] / "artifact"


@pytest.fixture(scope="module")
def chain(synthetic_set, tmp_path_factory) -> dict:
    _, root = synthetic_set
    out = tmp_path_factory.mktemp("vared_chain")
    data = DataConfig(manifest=str(root / "manifest.parquet"), frames=4, train_scale=(32, 40), crop_size=28,
                      eval_short_side=32, loader_workers=0)
    common = {"vared": TINY, "data": data, "seed": 0}
    base = _run(base_loop, common, out / "base")
    dynamic = _run(dynamic_loop, {**common, "base_dir": base[1]}, out / "dynamic")
    finetune = _run(finetune_loop, {**common, "dynamic_dir": dynamic[1]}, out / "finetune")
    return {"base": base, "dynamic": dynamic, "finetune": finetune}


def test_the_base_network_is_priced_without_gates(chain) -> None:
    metrics = read_artifact_metrics(chain["base"][1])
    assert metrics["backbone"] == "resnet10" and 0 <= metrics["accuracy"] <= 1
    # every frame through the plain ResNet-10 at 28 px: no gate, no cheap op
    plain = build_network(TINY, num_classes=4, frames=4, size=28, gates=False)
    assert not any(layer.gate is not None for _, layer in plain.gated_layers())
    assert metrics["gflops"] > 0 and (chain["base"][1] / BASE_FILE).is_file()


def test_the_dynamic_stage_scores_every_forced_alternative(chain) -> None:
    metrics = read_artifact_metrics(chain["dynamic"][1])
    assert set(metrics["forced"]) == {"t1·c1", "t1/2·c1/2"}  # S = 2: full and half on both dimensions
    full, half = metrics["forced"]["t1·c1"], metrics["forced"]["t1/2·c1/2"]
    base = read_artifact_metrics(chain["base"][1])
    assert full["gflops"] == pytest.approx(base["gflops"]) and half["gflops"] < 0.6 * full["gflops"]
    # the learned gates' cost lies between the cheapest alternative (plus its gates) and full (plus gates)
    assert metrics["gflops_min"] <= metrics["gflops"] <= metrics["gflops_max"]


def test_finetuning_adds_the_efficiency_loss(chain) -> None:
    report = chain["finetune"][0].reports[-1]
    assert report["loss/efficiency"] > 0
    assert report["loss/total"] == pytest.approx(report["loss/ce"] + 5.0 * report["loss/efficiency"], rel=1e-5)
    assert "loss/efficiency" not in chain["dynamic"][0].reports[-1]  # stage (a) trains without it


def test_the_baselines_are_the_base_and_each_forced_alternative(chain) -> None:
    artifacts = {name: chain[name][1] for name in ("base", "dynamic", "finetune")}
    rows = get_method("vared").baselines(artifacts, {"base": "kb", "dynamic": "kd", "finetune": "kf"})
    assert [(row.key, row.label) for row in rows] == [
        ("kb", "resnet10 without gates"), ("kd", "every gate forced to t1·c1"), ("kd", "every gate forced to t1/2·c1/2")]


def test_a_dynamic_network_started_from_the_base_is_the_base_when_forced_full(tmp_path) -> None:
    torch.manual_seed(0)
    base = build_network(TINY, num_classes=4, frames=4, size=28, gates=False).eval()
    torch.save(base.state_dict(), tmp_path / BASE_FILE)
    dynamic = build_network(TINY, num_classes=4, frames=4, size=28).eval()
    start_from_base(dynamic, base_dir=tmp_path)
    clips = torch.randn(2, 4, 3, 28, 28)
    with dynamic.force((0, 0)):
        assert torch.allclose(dynamic(clips), base(clips), atol=1e-6)
    other = build_network(TINY.model_copy(update={"backbone": "resnet18"}), num_classes=4, frames=4, size=28,
                          gates=False)
    torch.save(other.state_dict(), tmp_path / BASE_FILE)
    with pytest.raises(ValueError, match="does not fit the dynamic network"):
        start_from_base(dynamic, base_dir=tmp_path)


def test_a_forced_baseline_gets_its_own_batchnorm_statistics_and_leaves_the_network_alone() -> None:
    torch.manual_seed(0)
    network = build_network(TINY, num_classes=4, frames=4, size=28).eval()
    clips = torch.randn(4, 4, 3, 28, 28)
    batches = [{"frames": torch.randn(4, 4, 3, 28, 28)} for _ in range(3)]
    kept = forced_network(network, alternative=(1, 1), batches=batches, calibration_batches=0, device=torch.device("cpu"))
    with network.force((1, 1)):
        assert torch.equal(kept(clips), network(clips))  # no calibration: the trained statistics
    fixed = forced_network(network, alternative=(1, 1), batches=batches, calibration_batches=2,
                           device=torch.device("cpu"))
    assert network.forced is None and not network.training  # the network itself is untouched
    assert fixed.forced == (1, 1) and not fixed.training
    # the statistics are those of the forced network's own outputs on the calibration batches: a cumulative
    # mean over exactly two of them (momentum None), so the stem's BatchNorm holds their average
    stem = fixed.backbone.bn1
    with torch.no_grad():
        means = [fixed.backbone.conv1(b["frames"].flatten(0, 1)).mean(dim=(0, 2, 3)) for b in batches[:2]]
    assert torch.allclose(stem.running_mean, torch.stack(means).mean(dim=0), atol=1e-5)
    assert not torch.equal(fixed(clips), kept(clips))
