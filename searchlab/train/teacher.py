"""Stage 0, the teacher: the full-precision network and the policy's MobileNetV2, same data.

VideoIQ starts stage 1 from "the full-precision network trained on the same dataset" (also the
frozen KD teacher) and initialises the policy's feature extractor φ from "a MobileNetV2 trained on
the same dataset" (METHODS.md §1.2, §1.3). Both are trained here, one after the other, in one
Ray Train run: epochs [0, teacher.epochs) train the recognition network with CE on TSN clips
(video logits = mean of frame logits); the next ``teacher.policy_epochs`` train MobileNetV2 as a
frame classifier at ``policy_input_size`` (every frame labelled with its video's class). One SGD
optimizer holds both networks, each group's cosine schedule active only in its own phase.

Artifact: ``teacher.pt`` (torchvision state dict), ``policy_features.pt`` (torchvision
MobileNetV2 state dict; absent when policy_epochs = 0), ``metrics.json``, ``config.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import mobilenet_v2

from searchlab.config import TrialConfig
from searchlab.models import create_teacher
from searchlab.train import evaluate
from searchlab.train.checkpointing import unwrap, write_artifact
from searchlab.train.loader import EpochSampler, clip_dataset, load_manifest, make_loader
from searchlab.train.schedules import cosine_scheduler
from searchlab.train.tblog import ScalarLog
from searchlab.train.worker import Worker, check_finite, checkpoint_epoch, resume, run_epoch, seed_worker

__all__ = [
    "POLICY_FEATURES_FILE",
    "TEACHER_FILE",
    "build_policy_classifier",
    "classifier_step",
    "policy_frames",
    "teacher_loop",
    "teacher_step",
    "video_logits",
]

TEACHER_FILE = "teacher.pt"
POLICY_FEATURES_FILE = "policy_features.pt"


def build_policy_classifier(config: TrialConfig, *, num_classes: int) -> nn.Module:
    """The torchvision MobileNetV2 whose ``features`` become the policy's φ."""
    net = mobilenet_v2(weights=None, width_mult=config.model.policy_width_mult, num_classes=num_classes)
    if config.model.policy_pretrained:
        state = torch.load(config.model.policy_pretrained, map_location="cpu", weights_only=True)
        net.features.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
    return net


def _load_pretrained_teacher(teacher: nn.Module, path: str) -> None:
    """A torchvision state dict; its fc is dropped when it was trained for another class count."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("fc.weight") is not None and state["fc.weight"].shape != teacher.fc.weight.shape:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = teacher.load_state_dict(state, strict=False)
    bad = [k for k in missing if not k.startswith("fc.")] + list(unexpected)
    if bad:
        raise ValueError(f"model.pretrained {path} does not fit backbone: keys {bad[:5]} (is it the same depth?)")


def video_logits(model: nn.Module, frames: Tensor) -> Tensor:
    """TSN: mean over the T frames of the per-frame logits; frames (N, T, 3, H, W) -> (N, C)."""
    n, t = frames.shape[:2]
    return model(frames.flatten(0, 1)).view(n, t, -1).mean(dim=1)


def policy_frames(frames: Tensor, size: int) -> Tensor:
    """Frames (N, T, 3, H, W) downsized to the policy's input size, as the policy sees them."""
    n, t = frames.shape[:2]
    flat = frames.flatten(0, 1)
    if flat.shape[-1] != size or flat.shape[-2] != size:
        flat = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return flat.view(n, t, *flat.shape[1:])


def teacher_step(*, model: nn.Module, optimizer: torch.optim.Optimizer, frames: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """One CE step of the recognition network on TSN clips (N, T, 3, H, W)."""
    loss = F.cross_entropy(video_logits(model, frames), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"loss/teacher_ce": loss.detach()}


def classifier_step(
    *, model: nn.Module, optimizer: torch.optim.Optimizer, frames: Tensor, labels: Tensor, size: int,
    teacher: nn.Module | None = None,
) -> dict[str, Tensor]:
    """One step of MobileNetV2 as a frame classifier at ``size`` px.

    With ``teacher`` the target of each frame is the trained full-precision network's prediction on
    that frame (distillation); without, every frame gets its video's label. Video labels are wrong
    for the frames outside the informative window, and a small MobileNetV2 trained on them from
    scratch stays near chance for many epochs; the teacher's per-frame predictions tell those frames
    apart, which is what the policy needs its features for.
    """
    small = policy_frames(frames, size)
    logits = model(small.flatten(0, 1))
    if teacher is None:
        loss = F.cross_entropy(logits, labels.repeat_interleave(small.shape[1]))
    else:
        with torch.no_grad():
            targets = teacher(frames.flatten(0, 1)).softmax(dim=-1)
        loss = F.kl_div(logits.log_softmax(dim=-1), targets, reduction="batchmean")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"loss/policy_ce" if teacher is None else "loss/policy_kd": loss.detach()}


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, inputs: Iterable[Tensor]) -> None:
    """Recompute BatchNorm running statistics as exact averages over ``inputs``; weights unchanged.

    Momentum averages lag behind weights that moved fast: after a few epochs from scratch the
    MobileNetV2's running statistics no longer match its weights, and in eval mode (how the policy
    uses it) it predicted one class for every frame. One forward pass fixes that.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    for batch in inputs:
        model(batch)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.train(was_training)


def teacher_loop(loop_config: dict[str, Any], worker: Worker) -> None:
    """Ray Train worker loop of the teacher stage (see the module docstring)."""
    config: TrialConfig = loop_config["config"]
    seed_worker(worker, seed=config.seed)
    manifest, root = load_manifest(config.data)
    train_set = clip_dataset(config.data, manifest=manifest, root=root, split="train", train=True, seed=config.seed)
    val_set = clip_dataset(config.data, manifest=manifest, root=root, split="val", train=False, seed=config.seed)
    sampler = EpochSampler(len(train_set), rank=worker.rank, world_size=worker.world_size, shuffle=True, seed=config.seed)
    pin = worker.device.type == "cuda"
    loader = make_loader(train_set, sampler=sampler, batch_size=config.teacher.batch_size,
                         workers=config.data.loader_workers, pin_memory=pin)

    teacher = create_teacher(config.model.backbone, num_classes=manifest.num_classes)
    if config.model.pretrained:
        _load_pretrained_teacher(teacher, config.model.pretrained)
    classifier = build_policy_classifier(config, num_classes=manifest.num_classes)
    teacher_ddp = worker.prepare_model(teacher)
    classifier_ddp = worker.prepare_model(classifier)

    hp = config.teacher
    steps = len(loader)
    teacher_steps, total_epochs = hp.epochs * steps, hp.epochs + hp.policy_epochs
    optimizer = torch.optim.SGD(
        [{"params": teacher.parameters()}, {"params": classifier.parameters()}],
        lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay,
    )
    scheduler = cosine_scheduler(
        optimizer, windows=[(0, teacher_steps), (teacher_steps, max(total_epochs * steps, teacher_steps + 1))]
    )
    models = {"teacher": teacher, "classifier": classifier}
    start_epoch, _ = resume(worker, models=models, optimizer=optimizer, scheduler=scheduler)
    log = ScalarLog(loop_config["log_dir"], enabled=worker.is_writer, start_epoch=start_epoch)

    def step_teacher(_: int, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        terms = teacher_step(model=teacher_ddp, optimizer=optimizer, frames=batch["frames"].to(worker.device),
                             labels=batch["label"].to(worker.device))
        scheduler.step()
        return terms

    def step_classifier(_: int, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        terms = classifier_step(model=classifier_ddp, optimizer=optimizer, frames=batch["frames"].to(worker.device),
                                labels=batch["label"].to(worker.device), size=config.model.policy_input_size,
                                teacher=teacher if hp.policy_target == "distill" else None)
        scheduler.step()
        return terms

    for epoch in range(start_epoch, total_epochs):
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        in_teacher_phase = epoch < hp.epochs
        teacher.train(in_teacher_phase)
        classifier.train(not in_teacher_phase)
        scalars = run_epoch(worker, loader, step_teacher if in_teacher_phase else step_classifier)
        # before evaluating: a diverged network fails here with its reason, not in evaluation code
        check_finite(stage="teacher", epoch=epoch + 1, metrics=scalars, models=models)
        scalars["lr"] = optimizer.param_groups[0 if in_teacher_phase else 1]["lr"]
        last = epoch + 1 == total_epochs
        if last and not in_teacher_phase:
            size = config.model.policy_input_size
            recalibrate_batchnorm(unwrap(classifier), (policy_frames(b["frames"].to(worker.device), size).flatten(0, 1)
                                                       for b in loader))
        metrics: dict[str, Any] = {}
        if last or (loop_config["eval_every"] and (epoch + 1) % loop_config["eval_every"] == 0):
            metrics = _evaluate(worker, config, val_set, teacher, classifier, evaluate.uses_map(config.data.metric, manifest_multi_label=manifest.multi_label),
                                with_classifier=hp.policy_epochs > 0)
            scalars.update({f"eval/{k}": v for k, v in metrics.items() if isinstance(v, float)})
        log.log(epoch, scalars)

        def artifact(folder: Path) -> None:
            state_dicts = {TEACHER_FILE[:-3]: unwrap(teacher).state_dict()}
            if hp.policy_epochs > 0:
                state_dicts[POLICY_FEATURES_FILE[:-3]] = unwrap(classifier).state_dict()
            write_artifact(folder, state_dicts=state_dicts, metrics=metrics, config=config.model_dump(mode="json"))

        checkpoint_epoch(
            worker, stage="teacher", epoch=epoch + 1, metrics={"epoch": epoch + 1, **scalars, **metrics}, models=models,
            optimizer=optimizer, scheduler=scheduler, extra={"phase": "teacher" if in_teacher_phase else "policy"},
            write_artifact=artifact if last else None,
            inject_failure_after_epoch=loop_config["inject_failure_after_epoch"],
            save=last or (epoch + 1) % config.teacher.checkpoint_every == 0, epochs=total_epochs,
        )


def _evaluate(
    worker: Worker, config: TrialConfig, val_set: Any, teacher: nn.Module, classifier: nn.Module,
    multi_label: bool, *, with_classifier: bool,
) -> dict[str, Any]:
    """Teacher accuracy (and the MobileNetV2 frame classifier's, as a video classifier) on val."""
    sampler = EpochSampler(len(val_set), rank=worker.rank, world_size=worker.world_size, shuffle=False, seed=config.seed)
    loader = make_loader(val_set, sampler=sampler, batch_size=config.teacher.batch_size, workers=0,
                         pin_memory=worker.device.type == "cuda")
    teacher.eval()
    classifier.eval()
    size = config.model.policy_input_size

    def score(batch: dict[str, Tensor]) -> dict[str, Tensor]:
        frames = batch["frames"].to(worker.device)
        out = {"scores": video_logits(teacher, frames).softmax(-1), "label": batch["label"],
               "target": batch["target"], "index": batch["index"]}
        if with_classifier:
            out["policy_scores"] = video_logits(classifier, policy_frames(frames, size)).softmax(-1)
        return out

    outputs = evaluate.collect(worker, loader, score)
    mean = ("scores", "policy_scores") if with_classifier else ("scores",)
    videos = evaluate.per_video(outputs, mean=mean)
    metrics: dict[str, Any] = evaluate.score_metrics(videos, key="scores", multi_label=multi_label)
    if with_classifier:
        metrics["policy_accuracy"] = evaluate.score_metrics(videos, key="policy_scores", multi_label=multi_label)["accuracy"]
    return metrics
