"""AR-Net stage 1: one (backbone, resolution) trained alone as a TSN classifier (METHODS.md §2).

The clip's frames are resized to ``resolutions[i]`` (``resize_mode``, as the joint model will see
them) and classified by ``backbones[i]``; video logits = mean of frame logits; CE; SGD at the
``backbone_stage`` lr (constant), linear layers faster, gradient norm clipped. One run per
(backbone, resolution, data, recipe): every trial that uses the pair shares it.

Artifact: ``backbone.pt`` (torchvision state dict), ``metrics.json`` (the single-resolution
baseline on val: accuracy, map/top1, gflops = T frames at that resolution for each of a video's
evaluation views, memory_mb, backbone, resolution), ``config.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from searchlab.methods.arnet.build import BACKBONE_FILE, build_backbone
from searchlab.methods.arnet.costs import backbone_gflops, memory_mb
from searchlab.methods.arnet.model import resize_frames
from searchlab.methods.arnet.optim import constant_scheduler, make_optimizer
from searchlab.methods.arnet.stage_common import LoopInputs, clip_norm, train_data
from searchlab.train import evaluate
from searchlab.train.checkpointing import unwrap, write_artifact
from searchlab.train.loader import EpochSampler, clip_dataset, make_loader
from searchlab.train.tblog import ScalarLog
from searchlab.train.worker import Worker, check_finite, checkpoint_epoch, resume, run_epoch, seed_worker

__all__ = ["TSNClassifier", "backbone_loop", "backbone_step"]


class TSNClassifier(nn.Module):
    """Video logits (N, C) of clips (N, T, 3, H, W): mean over frames resized to ``size``."""

    def __init__(self, *, backbone: nn.Module, size: int, resize_mode: str) -> None:
        super().__init__()
        self.backbone, self.size, self.resize_mode = backbone, size, resize_mode

    def forward(self, frames: Tensor) -> Tensor:
        n, t = frames.shape[:2]
        small = resize_frames(frames.flatten(0, 1), self.size, mode=self.resize_mode)
        return self.backbone(small).view(n, t, -1).mean(dim=1)


def backbone_step(
    *, model: nn.Module, optimizer: torch.optim.Optimizer, frames: Tensor, labels: Tensor, grad_clip: float
) -> dict[str, Tensor]:
    """One CE step of the TSN classifier; returns the loss and the gradient norm before clipping."""
    loss = F.cross_entropy(model(frames), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = clip_norm([p for group in optimizer.param_groups for p in group["params"]], max_norm=grad_clip)
    optimizer.step()
    return {"loss/ce": loss.detach(), "grad_norm": norm.detach()}


def backbone_loop(loop_config: dict[str, Any], worker: Worker) -> None:
    """Stage loop (see the module docstring); ``loop_config['resolution_index']`` picks the pair."""
    inputs = LoopInputs.parse(loop_config, needs=("resolution_index",))
    cfg, recipe = inputs.arnet, inputs.arnet.backbone_stage
    index = int(loop_config["resolution_index"])
    if not 0 <= index < len(cfg.resolutions):
        raise ValueError(f"resolution_index {index} is outside arnet.resolutions {list(cfg.resolutions)}")
    size, name = cfg.resolutions[index], cfg.backbones[index]
    seed_worker(worker, seed=inputs.seed)
    data = train_data(inputs, worker, batch_size=recipe.batch_size)
    num_classes = data.manifest.num_classes
    classifier = TSNClassifier(backbone=build_backbone(cfg, index=index, num_classes=num_classes), size=size,
                               resize_mode=cfg.resize_mode)
    model = worker.prepare_model(classifier)
    optimizer = make_optimizer([classifier], lr=recipe.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               linear_lr_mult=cfg.linear_lr_mult, linear_bias_lr_mult=cfg.linear_bias_lr_mult)
    scheduler = constant_scheduler(optimizer)
    models = {"backbone": classifier.backbone}
    start_epoch, _ = resume(worker, models=models, optimizer=optimizer, scheduler=scheduler)
    log = ScalarLog(inputs.log_dir, enabled=worker.is_writer, start_epoch=start_epoch)

    def step(_: int, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        terms = backbone_step(model=model, optimizer=optimizer, frames=batch["frames"].to(worker.device),
                              labels=batch["label"].to(worker.device), grad_clip=cfg.grad_clip)
        scheduler.step()
        return terms

    for epoch in range(start_epoch, recipe.epochs):
        classifier.train()
        scalars = run_epoch(worker, data.epoch(epoch), step)
        # before evaluating: a diverged network fails here with its reason, not in evaluation code
        check_finite(stage=f"arnet_backbone_{size}", epoch=epoch + 1, metrics=scalars, models=models)
        last = epoch + 1 == recipe.epochs
        metrics: dict[str, Any] = {}
        if inputs.evaluates(epoch, epochs=recipe.epochs):
            metrics = _evaluate(inputs, worker, classifier, data.manifest, data.root)
            # per video, as the dynamic networks' costs: every frame of each of its evaluation views
            frames = inputs.data.frames * inputs.data.eval_views
            metrics.update({"backbone": name, "resolution": size, "memory_mb": memory_mb(classifier.backbone),
                            "gflops": frames * backbone_gflops(name, size=size, num_classes=num_classes)})
            scalars.update({f"eval/{k}": v for k, v in metrics.items() if isinstance(v, float)})
        log.log(epoch, scalars)

        def artifact(folder: Path) -> None:
            write_artifact(folder, state_dicts={BACKBONE_FILE[:-3]: unwrap(classifier).backbone.state_dict()},
                           metrics=metrics, config=inputs.artifact_config(stage="backbone", resolution_index=index))

        checkpoint_epoch(
            worker, stage=f"arnet_backbone_{size}", epoch=epoch + 1,
            metrics={"epoch": epoch + 1, **scalars, **{k: v for k, v in metrics.items() if isinstance(v, float)}},
            models=models, optimizer=optimizer, scheduler=scheduler, extra={},
            write_artifact=artifact if last else None,
            inject_failure_after_epoch=inputs.inject_failure_after_epoch,
            save=last or (epoch + 1) % recipe.checkpoint_every == 0, epochs=recipe.epochs,
        )


def _evaluate(inputs: LoopInputs, worker: Worker, classifier: TSNClassifier, manifest: Any, root: Path) -> dict[str, Any]:
    """Accuracy on val of every frame at this resolution (the single-resolution baseline)."""
    val = clip_dataset(inputs.data, manifest=manifest, root=root, split="val", train=False, seed=inputs.seed)
    sampler = EpochSampler(len(val), rank=worker.rank, world_size=worker.world_size, shuffle=False, seed=inputs.seed)
    loader = make_loader(val, sampler=sampler, batch_size=inputs.arnet.backbone_stage.batch_size, workers=0,
                         pin_memory=worker.device.type == "cuda")
    classifier.eval()

    def score(batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"scores": classifier(batch["frames"].to(worker.device)).softmax(-1), "label": batch["label"],
                "target": batch["target"], "index": batch["index"]}

    videos = evaluate.per_video(evaluate.collect(worker, loader, score), mean=("scores",))
    multi_label = evaluate.uses_map(inputs.data.metric, manifest_multi_label=manifest.multi_label)
    return evaluate.score_metrics(videos, key="scores", multi_label=multi_label)
