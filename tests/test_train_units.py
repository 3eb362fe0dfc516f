"""Plain-torch parts of searchlab.train: step functions learn, data order, checkpoints, logs, CLI."""

from __future__ import annotations

import math
from pathlib import Path
import random

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchvision.models import mobilenet_v2

from searchlab.config import load_trial_config
from searchlab.models import PolicyNetwork, create_backbone, create_teacher
from searchlab.train.__main__ import main as cli_main
from searchlab.train.checkpointing import (
    capture_rng_state,
    load_training_state,
    publish_directory,
    restore_rng_state,
    save_training_state,
)
from searchlab.train.loader import EpochSampler
from searchlab.train.schedules import cosine_scheduler
from searchlab.train.stage1 import AllPrecisions, stage1_step
from searchlab.train.stage2 import PolicyDecisions, stage2_step
from searchlab.train.tblog import ScalarLog
from searchlab.train.teacher import classifier_step, teacher_step

N, T, SIZE, CLASSES = 4, 2, 28, 3


@pytest.fixture()
def clips() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(N, T, 3, SIZE, SIZE, generator=generator), torch.tensor([0, 1, 2, 0])


def _falls(losses: list[float]) -> bool:
    return all(math.isfinite(v) for v in losses) and np.mean(losses[-3:]) < np.mean(losses[:3])


def test_teacher_step_loss_falls_on_a_fixed_batch(clips):
    torch.manual_seed(0)
    frames, labels = clips
    model = create_teacher("resnet10", num_classes=CLASSES)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = [float(teacher_step(model=model, optimizer=optimizer, frames=frames, labels=labels)["loss/teacher_ce"])
              for _ in range(10)]
    assert _falls(losses), losses


def test_classifier_step_loss_falls_on_a_fixed_batch(clips):
    torch.manual_seed(0)
    frames, labels = clips
    model = mobilenet_v2(weights=None, width_mult=0.25, num_classes=CLASSES)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    losses = [float(classifier_step(model=model, optimizer=optimizer, frames=frames, labels=labels, size=16)
                    ["loss/policy_ce"]) for _ in range(10)]
    assert _falls(losses), losses


def test_classifier_distils_the_teachers_per_frame_predictions(clips):
    torch.manual_seed(0)
    frames, labels = clips
    # a teacher with confident per-frame predictions that depend on each frame's colour
    teacher = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, CLASSES))
    torch.nn.init.normal_(teacher[2].weight, std=100.0)
    model = mobilenet_v2(weights=None, width_mult=0.25, num_classes=CLASSES)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5)
    losses = [float(classifier_step(model=model, optimizer=optimizer, frames=frames, labels=labels, size=16,
                                    teacher=teacher)["loss/policy_kd"]) for _ in range(20)]
    assert _falls(losses), losses
    assert all(loss >= 0 for loss in losses)  # a KL divergence


def test_stage1_step_loss_falls_and_trains_every_bit_width(clips):
    torch.manual_seed(0)
    frames, labels = clips
    teacher = create_teacher("resnet10", num_classes=CLASSES).eval()
    backbone = create_backbone("resnet10", num_classes=CLASSES, bit_widths=(32, 4, 2), alpha_init=4.0)
    backbone.load_torchvision_state_dict(teacher.state_dict())
    groups = backbone.optimizer_param_groups(lr=0.005, weight_decay=1e-4, alpha_lr={4: 0.01, 2: 0.01},
                                             alpha_wd={4: 5e-4, 2: 5e-3})
    optimizer = torch.optim.SGD(groups, lr=0.005, momentum=0.5)
    losses = []
    for _ in range(8):
        terms = stage1_step(model=AllPrecisions(backbone), teacher=teacher, optimizer=optimizer, frames=frames,
                            labels=labels, kd_weight=1.0, bit_widths=backbone.bit_widths)
        losses.append(float(terms["loss/total"]))
    assert {"loss/ce_32", "loss/ce_4", "loss/ce_2", "loss/kd_2"} <= set(terms)
    assert _falls(losses), losses


def test_stage2_step_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    config = load_trial_config("spaces/demo.yaml", {"model.policy_input_size": 16, "model.policy_hidden": 16,
                                                    "model.policy_width_mult": 0.25, "stage2.lr": 0.05})
    policy = PolicyNetwork(num_actions=4, input_size=16, hidden_size=16, width_mult=0.25, dropout=0.0)
    policy.features.requires_grad_(False)
    head = [*policy.lstm.parameters(), *policy.fc.parameters()]
    optimizer = torch.optim.SGD(head, lr=0.05, momentum=0.9)
    batch = {
        "policy_frames": torch.randn(N, T, 3, 16, 16),
        "frame_logits": torch.randn(N, T, 3, 8) * 3,
        "teacher_logits": torch.randn(N, 8),
        "label": torch.tensor([0, 3, 5, 7]),
    }
    losses = [float(stage2_step(model=PolicyDecisions(policy), optimizer=optimizer, batch=batch, tau=1.0,
                                config=config)["loss/total"]) for _ in range(30)]
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses


def test_epoch_sampler_shards_cover_the_data_and_repeat_per_epoch():
    shards = [EpochSampler(10, rank=r, world_size=3, shuffle=True, seed=1) for r in range(3)]
    for s in shards:
        s.set_epoch(4)
    seen = [list(s) for s in shards]
    assert len({len(x) for x in seen}) == 1 and sum(map(len, seen)) == 12  # padded to equal length
    assert set().union(*map(set, seen)) == set(range(10))
    again = EpochSampler(10, rank=0, world_size=3, shuffle=True, seed=1)
    again.set_epoch(4)
    assert list(again) == seen[0]
    again.set_epoch(5)
    assert list(again) != seen[0]
    evals = [list(EpochSampler(10, rank=r, world_size=3, shuffle=False, seed=1)) for r in range(3)]
    assert sorted(sum(evals, [])) == list(range(10))


def test_rng_state_round_trip():
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    state = capture_rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(5), random.random()
    restore_rng_state(state)
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]


def test_training_state_loads_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = cosine_scheduler(optimizer, windows=[(0, 10)])
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    save_training_state(tmp_path, epoch=2, models={"m": model}, optimizer=optimizer, scheduler=scheduler,
                        rng_states=[capture_rng_state()], extra={"tau": 1.5})
    state = load_training_state(tmp_path)  # torch.load(weights_only=True) inside
    assert state["epoch"] == 2 and state["extra"] == {"tau": 1.5}
    fresh = torch.optim.SGD(torch.nn.Linear(3, 2).parameters(), lr=0.1, momentum=0.9)
    fresh.load_state_dict(state["optimizer"])
    assert state["scheduler"]["last_epoch"] == 1


def test_publish_directory_replaces_a_previous_artifact(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "metrics.json").write_text("{}")
    target = tmp_path / "out" / "artifact"
    target.mkdir(parents=True)
    (target / "stale.pt").write_text("old")
    publish_directory(source, target)
    assert sorted(p.name for p in target.iterdir()) == ["metrics.json"]
    assert [p.name for p in target.parent.iterdir()] == ["artifact"]  # no temp folders left


def test_scalar_log_is_read_by_tensorboard(tmp_path):
    log = ScalarLog(tmp_path, enabled=True, start_epoch=0)
    for epoch in range(3):
        log.log(epoch, {"loss/total": 1.0 / (epoch + 1), "tau": float("nan")})
    ScalarLog(tmp_path / "other", enabled=False, start_epoch=0).log(0, {"x": 1.0})
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [e.value for e in events.Scalars("loss/total")] == pytest.approx([1.0, 0.5, 1 / 3])
    assert "tau" not in events.Tags()["scalars"]  # non-finite values are skipped
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["teacher", "--config", "spaces/demo.yaml", "--set", "stage2.w1=abc"], "stage2.w1"),
        (["teacher", "--config", "spaces/demo.yaml", "--set", "novalue"], "KEY=VALUE"),
        (["teacher", "--config", "spaces/demo.yaml", "--set", "data.manifest=/nonexistent/m.parquet",
          "--set", "data.synthetic=null"], "searchlab.data.prepare"),
        (["stage1", "--config", "spaces/demo.yaml", "--set", "data.manifest=/nonexistent/m.parquet",
          "--set", "data.synthetic=null"], "does not exist"),
    ],
)
def test_cli_configuration_errors_exit_2(argv, message, capsys):
    assert cli_main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_missing_teacher_artifact_exits_2(tmp_path, synthetic_set, capsys):
    _, root = synthetic_set
    code = cli_main(["stage1", "--config", "spaces/demo.yaml", "--set", f"data.manifest={root}/manifest.parquet",
                     "--out", str(tmp_path)])
    assert code == 2 and "run `python -m searchlab.train teacher`" in capsys.readouterr().err


def test_recalibrated_batchnorm_matches_the_data_it_saw():
    from searchlab.train.teacher import recalibrate_batchnorm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    batches = [torch.randn(8, 3, 8, 8) * 3 + 2 for _ in range(4)]
    net.eval()  # the mode it is in is the mode it is left in
    recalibrate_batchnorm(net, batches)
    with torch.no_grad():
        features = torch.cat([net[0](b) for b in batches])
    norm = net[1]
    assert torch.allclose(norm.running_mean, features.mean(dim=(0, 2, 3)), atol=1e-4)
    assert norm.momentum == 0.1 and not net.training


def test_a_non_finite_loss_or_weight_stops_the_stage_with_its_name_and_epoch() -> None:
    from searchlab.train.worker import Diverged, check_finite

    model = torch.nn.Linear(2, 2)
    check_finite(stage="stage2", epoch=3, metrics={"loss/total": 0.5, "lr": 0.1, "epoch": 3}, models={"policy": model})
    with pytest.raises(Diverged, match=r"loss/total became nan at epoch 3 of stage2"):
        check_finite(stage="stage2", epoch=3, metrics={"loss/total": float("nan")}, models={"policy": model})
    with pytest.raises(Diverged, match=r"eval/accuracy became inf at epoch 1 of teacher"):
        check_finite(stage="teacher", epoch=1, metrics={"eval/accuracy": float("inf")}, models={})
    with torch.no_grad():
        model.bias[1] = float("inf")
    with pytest.raises(Diverged, match=r"weight policy.bias became non-finite at epoch 2 of stage1"):
        check_finite(stage="stage1", epoch=2, metrics={"loss/total": 0.5}, models={"policy": model})


def test_method_code_imports_neither_ray_nor_optuna() -> None:
    """Stage loops, models, data, FLOPs and evaluation are plain PyTorch: Ray lives in the launch layer."""
    import subprocess
    import sys

    from searchlab.methods import _REGISTRY

    packages = [Path(__file__).parents[1] / "searchlab" / "methods" / entry.split(":")[0].split(".")[2]
                for entry in _REGISTRY.values()]
    method_modules = sorted(f"searchlab.methods.{package.name}.{module.stem}" for package in packages
                            for module in package.glob("*.py") if module.stem != "__init__")
    assert any(name.endswith(".method") for name in method_modules)  # every method's declaration is among them
    modules = ["searchlab.train.teacher", "searchlab.train.stage1", "searchlab.train.stage2",
               "searchlab.train.worker", "searchlab.train.backbone_cache", "searchlab.models", "searchlab.data",
               "searchlab.flops", "searchlab.evaluate", "searchlab.deploy", "searchlab.methods", "searchlab.progress",
               "searchlab.cache", *method_modules]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print(sorted(m for m in ('ray', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _tiny_teacher_config(data, *, epochs: int):
    return load_trial_config("spaces/demo.yaml", {
        "data.manifest": str(data / "manifest.parquet"), "data.synthetic": None, "data.frames": 4,
        "data.train_scale": [32, 40], "data.crop_size": 28, "data.eval_short_side": 32, "data.loader_workers": 0,
        "model.policy_input_size": 16, "model.policy_hidden": 16, "model.policy_width_mult": 0.25,
        "teacher.epochs": epochs, "teacher.policy_epochs": 0, "teacher.batch_size": 4, "teacher.checkpoint_every": 1,
    })


def test_a_stage_loop_runs_and_resumes_without_ray(synthetic_set, tmp_path) -> None:
    """The loop gets its context from LocalRun: checkpoints, resume and the artifact work as under Ray."""
    from searchlab.train.teacher import teacher_loop
    from searchlab.train.worker import ARTIFACT_DIR, InjectedFailure, LocalRun

    _, data = synthetic_set
    config = _tiny_teacher_config(data, epochs=2)
    loop_config = {"config": config, "log_dir": str(tmp_path / "tb"), "eval_every": 0,
                   "inject_failure_after_epoch": None}
    straight = LocalRun(tmp_path / "straight")
    teacher_loop(loop_config, straight.worker())
    interrupted = LocalRun(tmp_path / "interrupted")
    with pytest.raises(InjectedFailure):
        teacher_loop({**loop_config, "inject_failure_after_epoch": 1}, interrupted.worker())
    resumed = LocalRun(tmp_path / "interrupted")
    teacher_loop(loop_config, resumed.worker())
    assert [r["epoch"] for r in straight.reports] == [1, 2] and [r["epoch"] for r in resumed.reports] == [2]
    mine = torch.load(resumed.checkpoints[-1] / ARTIFACT_DIR / "teacher.pt", weights_only=True)
    theirs = torch.load(straight.checkpoints[-1] / ARTIFACT_DIR / "teacher.pt", weights_only=True)
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
