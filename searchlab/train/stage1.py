"""Stage 1: any-precision joint training of the recognition network (METHODS.md §1.2).

The network starts from the teacher's weights (``load_torchvision_state_dict``: shared convs, each
bit-width's BN copy). For every batch the loss is taken at every b in B on video logits,
CE + kd_weight·KD(teacher ‖ f_b), summed, and one SGD step follows; PACT α have their own
parameter groups per bit-width (``stage1.alpha``); cosine schedule per iteration.

All bit-widths run inside one ``forward`` (``AllPrecisions``), so DistributedDataParallel sees one
forward per backward, as it requires.

Artifact: ``backbone.pt`` (the AnyPrecisionResNet state dict), ``metrics.json`` (accuracy at the
top bit-width, the uniform baselines per bit-width, memory_mb), ``config.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from searchlab import flops
from searchlab.config import TrialConfig
from searchlab.models import AnyPrecisionResNet, create_backbone, create_teacher
from searchlab.train import evaluate
from searchlab.train.checkpointing import unwrap, write_artifact
from searchlab.train.loader import EpochSampler, clip_dataset, load_manifest, make_loader
from searchlab.train.losses import stage1_loss
from searchlab.train.schedules import cosine_scheduler
from searchlab.train.tblog import ScalarLog
from searchlab.train.teacher import TEACHER_FILE, video_logits
from searchlab.train.worker import Worker, check_finite, checkpoint_epoch, resume, run_epoch, seed_worker

__all__ = ["BACKBONE_FILE", "AllPrecisions", "load_teacher", "stage1_loop", "stage1_step"]

BACKBONE_FILE = "backbone.pt"


class AllPrecisions(nn.Module):
    """Video logits (|B|, N, C) of clips (N, T, 3, H, W) at every bit-width of the backbone."""

    def __init__(self, backbone: AnyPrecisionResNet) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, frames: Tensor) -> Tensor:
        n, t = frames.shape[:2]
        flat = frames.flatten(0, 1)
        return torch.stack(
            [self.backbone(flat, bits=bits).view(n, t, -1).mean(dim=1) for bits in self.backbone.bit_widths]
        )


def load_teacher(config: TrialConfig, *, teacher_dir: str | Path, num_classes: int) -> nn.Module:
    """The teacher artifact's full-precision network, frozen and in eval mode."""
    teacher = create_teacher(config.model.backbone, num_classes=num_classes)
    path = Path(teacher_dir) / TEACHER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the teacher stage first (python -m searchlab.train teacher)")
    teacher.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return teacher.eval().requires_grad_(False)


def stage1_step(
    *,
    model: nn.Module,
    teacher: nn.Module,
    optimizer: torch.optim.Optimizer,
    frames: Tensor,
    labels: Tensor,
    kd_weight: float,
    bit_widths: tuple[int, ...],
) -> dict[str, Tensor]:
    """One joint step: the summed loss over every bit-width, one optimizer step; returns its terms."""
    with torch.no_grad():
        teacher_logits = video_logits(teacher, frames)
    total, terms = stage1_loss(
        model(frames), labels=labels, teacher_logits=teacher_logits, kd_weight=kd_weight, bit_widths=bit_widths
    )
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    return {"loss/total": total.detach(), **{f"loss/{k}": v for k, v in terms.items()}}


def stage1_loop(loop_config: dict[str, Any], worker: Worker) -> None:
    """Ray Train worker loop of stage 1 (see the module docstring)."""
    config: TrialConfig = loop_config["config"]
    seed_worker(worker, seed=config.seed)
    manifest, root = load_manifest(config.data)
    train_set = clip_dataset(config.data, manifest=manifest, root=root, split="train", train=True, seed=config.seed)
    val_set = clip_dataset(config.data, manifest=manifest, root=root, split="val", train=False, seed=config.seed)
    sampler = EpochSampler(len(train_set), rank=worker.rank, world_size=worker.world_size, shuffle=True, seed=config.seed)
    loader = make_loader(train_set, sampler=sampler, batch_size=config.stage1.batch_size,
                         workers=config.data.loader_workers, pin_memory=worker.device.type == "cuda")

    teacher = load_teacher(config, teacher_dir=loop_config["teacher_dir"], num_classes=manifest.num_classes)
    teacher.to(worker.device)
    backbone = create_backbone(config.model.backbone, num_classes=manifest.num_classes,
                               bit_widths=config.model.bit_widths, alpha_init=config.stage1.alpha.init)
    backbone.load_torchvision_state_dict(teacher.state_dict())
    model = worker.prepare_model(AllPrecisions(backbone))

    hp = config.stage1
    groups = backbone.optimizer_param_groups(lr=hp.lr, weight_decay=hp.weight_decay,
                                             alpha_lr=hp.alpha.lr, alpha_wd=hp.alpha.wd)
    optimizer = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum)
    scheduler = cosine_scheduler(optimizer, windows=[(0, hp.epochs * len(loader))] * len(groups))
    models = {"backbone": backbone}
    start_epoch, _ = resume(worker, models=models, optimizer=optimizer, scheduler=scheduler)
    log = ScalarLog(loop_config["log_dir"], enabled=worker.is_writer, start_epoch=start_epoch)

    def step(_: int, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        terms = stage1_step(model=model, teacher=teacher, optimizer=optimizer,
                            frames=batch["frames"].to(worker.device), labels=batch["label"].to(worker.device),
                            kd_weight=hp.kd_weight, bit_widths=backbone.bit_widths)
        scheduler.step()
        return terms

    for epoch in range(start_epoch, hp.epochs):
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        backbone.train()
        scalars = run_epoch(worker, loader, step)
        # before evaluating: a diverged network fails here with its reason, not in evaluation code
        check_finite(stage="stage1", epoch=epoch + 1, metrics=scalars, models=models)
        scalars["lr"] = optimizer.param_groups[0]["lr"]
        last = epoch + 1 == hp.epochs
        metrics: dict[str, Any] = {}
        if last or (loop_config["eval_every"] and (epoch + 1) % loop_config["eval_every"] == 0):
            metrics = _evaluate(worker, config, val_set, backbone, manifest)
            for bits, values in metrics["uniform"].items():
                scalars[f"eval/accuracy_{bits}"] = values["accuracy"]
                scalars[f"eval/gflops_{bits}"] = values["gflops"]
        log.log(epoch, scalars)

        def artifact(folder: Path) -> None:
            write_artifact(folder, state_dicts={BACKBONE_FILE[:-3]: unwrap(backbone).state_dict()},
                           metrics=metrics, config=config.model_dump(mode="json"),
                           sources={"teacher": str(loop_config["teacher_dir"])})

        checkpoint_epoch(
            worker, stage="stage1", epoch=epoch + 1, metrics={"epoch": epoch + 1, **scalars, **_flat(metrics)}, models=models,
            optimizer=optimizer, scheduler=scheduler, extra={}, write_artifact=artifact if last else None,
            inject_failure_after_epoch=loop_config["inject_failure_after_epoch"],
            save=last or (epoch + 1) % config.stage1.checkpoint_every == 0, epochs=hp.epochs,
        )


def _flat(metrics: dict[str, Any]) -> dict[str, float]:
    """Scalar metrics only (Ray's reported metrics stay flat)."""
    return {k: v for k, v in metrics.items() if isinstance(v, float)}


def _evaluate(worker: Worker, config: TrialConfig, val_set: Any, backbone: AnyPrecisionResNet, manifest: Any) -> dict[str, Any]:
    """Accuracy and GFLOPs at every bit-width (uniform baselines); headline = the top bit-width."""
    sampler = EpochSampler(len(val_set), rank=worker.rank, world_size=worker.world_size, shuffle=False, seed=config.seed)
    loader = make_loader(val_set, sampler=sampler, batch_size=config.stage1.batch_size, workers=0,
                         pin_memory=worker.device.type == "cuda")
    backbone.eval()
    all_bits = AllPrecisions(backbone)

    def score(batch: dict[str, Tensor]) -> dict[str, Tensor]:
        probs = all_bits(batch["frames"].to(worker.device)).softmax(-1)
        out = {f"scores_{b}": probs[k] for k, b in enumerate(backbone.bit_widths)}
        return {**out, "label": batch["label"], "target": batch["target"], "index": batch["index"]}

    keys = tuple(f"scores_{b}" for b in backbone.bit_widths)
    videos = evaluate.per_video(evaluate.collect(worker, loader, score), mean=keys)
    table = flops.action_cost_table(config.model.backbone, decision_space=list(backbone.bit_widths),
                                    size=config.data.crop_size, num_classes=manifest.num_classes)
    # per video, as the dynamic networks' costs: every frame of each of its evaluation views
    uniform = evaluate.uniform_metrics(videos, bit_widths=backbone.bit_widths, cost_table=table,
                                       frames=config.data.frames * config.data.eval_views, multi_label=evaluate.uses_map(config.data.metric, manifest_multi_label=manifest.multi_label))
    top = uniform[str(backbone.bit_widths[0])]
    memory = flops.memory_mb(config.model.backbone, bit_widths=backbone.bit_widths, num_classes=manifest.num_classes)
    return {**{k: v for k, v in top.items() if k != "gflops"}, "gflops": top["gflops"], "memory_mb": memory,
            "uniform": uniform}
