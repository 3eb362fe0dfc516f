"""Stage 2: the policy network trained over a frozen any-precision backbone (METHODS.md §1.3).

L_g = CE(V|A) + kd_weight·KD(V|A) + w1·L_e + w2·L_b + w3·L_d (``losses.stage2_loss``), with the
video prediction V|A combined from per-frame backbone logits by the straight-through Gumbel actions
(``combine_frame_logits``), τ from ``stage2.temperature``. SGD + cosine: ``lr`` for LSTM/fc,
``lr_body`` for MobileNetV2 (0 freezes it: no optimizer group, BN statistics kept in eval mode).

The backbone outputs come from one of two interchangeable sources yielding the same batch dict
(``policy_frames``, ``frame_logits``, ``teacher_logits``, ``label``, ``target``, ``index``):
live (decode clips, run the frozen backbone at every bit-width and the teacher) or a cache built
once per stage-1 artifact (``backbone_cache``; ≥ 10× cheaper per trial).

Artifact: ``policy.pt`` (PolicyNetwork state dict), ``metrics.json`` (accuracy, gflops,
gflops_p5/p95, memory_mb, skip_fraction, usage overall and per class), ``config.yaml``,
``sources.json`` (the teacher and stage-1 artifacts used).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from searchlab.methods.videoiq import evaluate as deployed_eval
from searchlab import flops
from searchlab.config import TrialConfig
from searchlab.models import PolicyNetwork, TemperatureSchedule, VideoIQ, combine_frame_logits
from searchlab.train import evaluate
from searchlab.train.backbone_cache import CachedBackboneOutputs, cache_meta, load_backbone
from searchlab.train.checkpointing import unwrap, write_artifact
from searchlab.train.loader import EpochSampler, clip_dataset, load_manifest, make_loader
from searchlab.train.losses import flops_efficiency_costs, stage2_loss
from searchlab.train.schedules import cosine_scheduler
from searchlab.train.stage1 import load_teacher
from searchlab.train.tblog import ScalarLog
from searchlab.train.teacher import POLICY_FEATURES_FILE, policy_frames, video_logits
from searchlab.train.worker import Worker, check_finite, checkpoint_epoch, resume, run_epoch, seed_worker

__all__ = [
    "POLICY_FILE",
    "LiveOutputs",
    "PolicyDecisions",
    "build_policy",
    "input_metrics",
    "policy_optimizer",
    "stage2_loop",
    "stage2_step",
    "train_mode",
]

POLICY_FILE = "policy.pt"
Batch = dict[str, Tensor]


class PolicyDecisions(nn.Module):
    """``forward(policy_frames, tau, mode)`` -> (logits, probs, actions): one DDP-able forward."""

    def __init__(self, policy: PolicyNetwork) -> None:
        super().__init__()
        self.policy = policy

    def forward(
        self, frames: Tensor, *, tau: float | None, mode: str, features: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``features`` (N, T, F), when given, are φ's features of ``frames`` computed earlier."""
        out = self.policy.decide(self.policy.extract(frames) if features is None else features, tau=tau, mode=mode)
        return out.logits, out.probs, out.actions


class FrozenFeatures:
    """With φ frozen (lr_body = 0, eval mode) its features of a cached view never change.

    So each (view, clip) is run through MobileNetV2 once per stage instead of once per epoch
    that uses the view; later batches read the stored features (N·V·T·F floats on the device).
    The result is identical to recomputing them; dropout and Gumbel noise come after φ.
    """

    def __init__(self, policy: PolicyNetwork, dataset: CachedBackboneOutputs) -> None:
        self.policy, self.dataset = policy, dataset
        self.features: dict[int, Tensor] = {}
        self.known: dict[int, Tensor] = {}

    @torch.no_grad()
    def __call__(self, batch: Batch) -> Batch:
        view, positions = self.dataset.view, batch["position"]
        frames = batch["policy_frames"]
        if view not in self.features:
            shape = (len(self.dataset), frames.shape[1], self.policy.feature_dim)
            self.features[view] = frames.new_zeros(shape)
            self.known[view] = torch.zeros(len(self.dataset), dtype=torch.bool, device=frames.device)
        missing = ~self.known[view][positions]
        if missing.any():
            self.features[view][positions[missing]] = self.policy.extract(frames[missing])
            self.known[view][positions[missing]] = True
        return {**batch, "policy_features": self.features[view][positions]}


def build_policy(config: TrialConfig, *, teacher_dir: str | Path) -> PolicyNetwork:
    """The policy, φ initialised from the teacher artifact's MobileNetV2 (else model.policy_pretrained)."""
    features = Path(teacher_dir) / POLICY_FEATURES_FILE
    weights = str(features) if features.is_file() else config.model.policy_pretrained
    return PolicyNetwork(
        num_actions=len(config.stage2.decision_space),
        input_size=config.model.policy_input_size,
        hidden_size=config.model.policy_hidden,
        width_mult=config.model.policy_width_mult,
        feature_weights=weights,
    )


def policy_optimizer(policy: PolicyNetwork, *, config: TrialConfig) -> torch.optim.SGD:
    """SGD over LSTM/fc at ``lr`` and φ at ``lr_body``; with lr_body = 0 φ is frozen and left out."""
    hp = config.stage2
    groups = [{"params": [*policy.lstm.parameters(), *policy.fc.parameters()], "lr": hp.lr}]
    if hp.lr_body == 0:
        policy.features.requires_grad_(False)
    else:
        groups.append({"params": list(policy.features.parameters()), "lr": hp.lr_body})
    return torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)


def train_mode(policy: PolicyNetwork, *, config: TrialConfig) -> None:
    """Training mode, except a frozen φ, whose BatchNorm statistics must not drift either."""
    policy.train()
    if config.stage2.lr_body == 0:
        policy.features.eval()


def stage2_step(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    tau: float,
    config: TrialConfig,
) -> dict[str, Tensor]:
    """One policy step on a stage-2 batch (already on the device); returns the loss terms."""
    hp = config.stage2
    _, probs, actions = model(batch["policy_frames"], tau=tau, mode="gumbel_hard", features=batch.get("policy_features"))
    video = combine_frame_logits(batch["frame_logits"], actions, decision_space=hp.decision_space,
                                 bit_widths=config.model.bit_widths)
    costs = None
    if hp.efficiency_cost == "flops":
        costs = flops_efficiency_costs(hp.decision_space, backbone=config.model.backbone, size=config.data.crop_size,
                                       num_classes=batch["frame_logits"].shape[-1])
    total, terms = stage2_loss(video_logits=video, teacher_logits=batch["teacher_logits"], labels=batch["label"],
                               actions=actions, probs=probs, decision_space=hp.decision_space,
                               kd_weight=hp.kd_weight, w1=hp.w1, w2=hp.w2, w3=hp.w3, action_costs=costs)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    usage = actions.detach().reshape(-1, actions.shape[-1]).mean(dim=0)
    return {"loss/total": total.detach(), **{f"loss/{k}": v for k, v in terms.items()},
            **{f"usage/{b}": usage[k] for k, b in enumerate(hp.decision_space)}}


class LiveOutputs:
    """Turns decoded clip batches into stage-2 batches with the frozen backbone and teacher."""

    def __init__(self, *, backbone: nn.Module, teacher: nn.Module, config: TrialConfig, device: torch.device) -> None:
        self.backbone, self.teacher, self.device = backbone, teacher, device
        self.widths, self.size = config.model.bit_widths, config.model.policy_input_size

    @torch.no_grad()
    def __call__(self, batch: Batch) -> Batch:
        frames = batch["frames"].to(self.device)
        n, t = frames.shape[:2]
        flat = frames.flatten(0, 1)
        logits = torch.stack([self.backbone(flat, bits=b) for b in self.widths], dim=1).view(n, t, len(self.widths), -1)
        return {"policy_frames": policy_frames(frames, self.size), "frame_logits": logits,
                "teacher_logits": video_logits(self.teacher, frames),
                **{k: batch[k].to(self.device) for k in ("label", "target", "index")}}


class Source:
    """One split's stage-2 batches for this rank, from the cache or live; ``epoch(e)`` iterates them."""

    def __init__(self, dataset: Any, *, loader: DataLoader, sampler: EpochSampler,
                 transform: Callable[[Batch], Batch]) -> None:
        self.dataset, self.loader, self.sampler, self.transform = dataset, loader, sampler, transform

    def epoch(self, epoch: int) -> Iterator[Batch]:
        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)
        return map(self.transform, self.loader)

    def __len__(self) -> int:
        return len(self.loader)


PER_TRIAL_META = ("seed", "eval_clips", "eval_crops")


def _sources(config: TrialConfig, worker: Worker, loop_config: dict[str, Any], manifest: Any, root: Path) -> dict[str, Source]:
    """Train and val sources: the cache when ``cache_dir`` is given, else live backbone outputs."""
    hp, pin = config.stage2, worker.device.type == "cuda"
    sources = {}
    cache_dir = loop_config["cache_dir"]
    if cache_dir is None:
        backbone = load_backbone(config, stage1_dir=loop_config["stage1_dir"], num_classes=manifest.num_classes)
        teacher = load_teacher(config, teacher_dir=loop_config["teacher_dir"], num_classes=manifest.num_classes)
        live = LiveOutputs(backbone=backbone.to(worker.device), teacher=teacher.to(worker.device),
                           config=config, device=worker.device)
    else:
        # Settings in which this per-trial stage may differ from the shared stage that built the cache:
        # its own seed (a front re-run's new seed on the search's cached views, searchlab.rerun) and the
        # evaluation protocol (the cache's val views serve the per-epoch curves only; the trial's figures
        # decode the val videos with its own data.eval_clips x eval_crops, _final_metrics).
        expected = {key: value for key, value in cache_meta(config, stage1_dir=loop_config["stage1_dir"]).items()
                    if key not in PER_TRIAL_META}
    for split, train in (("train", True), ("val", False)):
        if cache_dir is None:
            dataset: Any = clip_dataset(config.data, manifest=manifest, root=root, split=split, train=train, seed=config.seed)
            workers, transform = config.data.loader_workers if train else 0, live
        else:
            dataset = CachedBackboneOutputs(cache_dir, split=split, expected=expected)
            workers = 0
            transform = lambda batch: {k: v.to(worker.device, non_blocking=True) for k, v in batch.items()}  # noqa: E731
        sampler = EpochSampler(len(dataset), rank=worker.rank, world_size=worker.world_size, shuffle=train, seed=config.seed)
        loader = make_loader(dataset, sampler=sampler, batch_size=hp.batch_size, workers=workers, pin_memory=pin)
        if cache_dir is not None:
            loader.collate_fn = CachedBackboneOutputs.collate
        sources[split] = Source(dataset, loader=loader, sampler=sampler, transform=transform)
    return sources


def stage2_loop(loop_config: dict[str, Any], worker: Worker) -> None:
    """Ray Train worker loop of stage 2 (see the module docstring)."""
    config: TrialConfig = loop_config["config"]
    hp = config.stage2
    seed_worker(worker, seed=config.seed)
    manifest, root = load_manifest(config.data)
    sources = _sources(config, worker, loop_config, manifest, root)
    policy = build_policy(config, teacher_dir=loop_config["teacher_dir"])
    optimizer = policy_optimizer(policy, config=config)
    groups = optimizer.param_groups
    model = worker.prepare_model(PolicyDecisions(policy))
    train_source = sources["train"]
    if hp.lr_body == 0 and isinstance(train_source.dataset, CachedBackboneOutputs):
        memo = FrozenFeatures(policy, train_source.dataset)
        to_device = train_source.transform
        train_source.transform = lambda batch: memo(to_device(batch))
    steps = len(sources["train"])
    scheduler = cosine_scheduler(optimizer, windows=[(0, hp.epochs * steps)] * len(groups))
    schedule = TemperatureSchedule.from_dict(hp.temperature)
    models = {"policy": policy}
    start_epoch, _ = resume(worker, models=models, optimizer=optimizer, scheduler=scheduler)
    log = ScalarLog(loop_config["log_dir"], enabled=worker.is_writer, start_epoch=start_epoch)

    for epoch in range(start_epoch, hp.epochs):
        train_mode(policy, config=config)
        taus: list[float] = []

        def step(iteration: int, batch: Batch) -> dict[str, Tensor]:
            tau = schedule.value(epoch=epoch, iteration=iteration, iterations_per_epoch=steps, total_epochs=hp.epochs)
            taus.append(tau)
            terms = stage2_step(model=model, optimizer=optimizer, batch=batch, tau=tau, config=config)
            scheduler.step()
            return terms

        scalars = run_epoch(worker, sources["train"].epoch(epoch), step)
        # before evaluating: a diverged network fails here with its reason, not in evaluation code
        check_finite(stage="stage2", epoch=epoch + 1, metrics=scalars, models=models)
        scalars.update({"tau": taus[-1], "lr": optimizer.param_groups[0]["lr"]})
        last = epoch + 1 == hp.epochs
        metrics: dict[str, Any] = {}
        evaluating = time.perf_counter()
        if last:
            metrics = _final_metrics(worker, config, policy=policy, manifest=manifest, root=root,
                                     stage1_dir=loop_config["stage1_dir"])
        elif loop_config["eval_every"] and (epoch + 1) % loop_config["eval_every"] == 0:
            metrics = input_metrics(worker, config, sources["val"], policy, manifest)
        if metrics:
            scalars["eval_seconds"] = time.perf_counter() - evaluating  # measuring, not training (bench/sweep_cost.py)
            scalars.update({f"eval/{k}": v for k, v in metrics.items() if isinstance(v, float)})
            scalars.update({f"eval/usage_{b}": v for b, v in metrics["usage"].items()})
        log.log(epoch, scalars)

        def artifact(folder: Path) -> None:
            write_artifact(folder, state_dicts={POLICY_FILE[:-3]: unwrap(policy).state_dict()}, metrics=metrics,
                           config=config.model_dump(mode="json"),
                           sources={"teacher": str(loop_config["teacher_dir"]), "stage1": str(loop_config["stage1_dir"])})

        checkpoint_epoch(
            worker, stage="stage2", epoch=epoch + 1,
            metrics={"epoch": epoch + 1, **scalars, **{k: v for k, v in metrics.items() if isinstance(v, float)}},
            models=models, optimizer=optimizer, scheduler=scheduler, extra={"tau": taus[-1]},
            write_artifact=artifact if last else None,
            inject_failure_after_epoch=loop_config["inject_failure_after_epoch"],
            save=last or (epoch + 1) % config.stage2.checkpoint_every == 0, epochs=hp.epochs,
        )


def input_metrics(worker: Worker, config: TrialConfig, source: Source, policy: PolicyNetwork, manifest: Any) -> dict[str, Any]:
    """Accuracy, GFLOPs from the decisions taken, memory, skip fraction and action usage on val,
    from the stage-2 inputs (cached or live): the cheap figures of the training curves."""
    hp = config.stage2
    table = flops.action_cost_table(config.model.backbone, decision_space=list(hp.decision_space),
                                    size=config.data.crop_size, num_classes=manifest.num_classes)
    policy_cost = flops.policy_gflops_per_frame(policy, size=config.data.crop_size)
    policy.eval()
    decisions = PolicyDecisions(policy)

    def score(batch: Batch) -> Batch:
        _, _, actions = decisions(batch["policy_frames"], tau=None, mode=hp.eval_mode)
        video = combine_frame_logits(batch["frame_logits"], actions, decision_space=hp.decision_space,
                                     bit_widths=config.model.bit_widths)
        bits = evaluate.decision_bits(actions, decision_space=hp.decision_space)
        gflops = flops.video_gflops(bits, cost_table=table, policy_gflops_per_frame=policy_cost)
        return {"scores": video.softmax(-1), "gflops": torch.from_numpy(gflops), "usage": actions.sum(dim=1),
                "label": batch["label"], "target": batch["target"], "index": batch["index"]}

    outputs = evaluate.collect(worker, source.epoch(0), score)
    return deployed_eval.videoiq_metrics(
        outputs, decision_space=hp.decision_space, class_names=manifest.class_names,
        multi_label=evaluate.uses_map(config.data.metric, manifest_multi_label=manifest.multi_label))


def _final_metrics(
    worker: Worker, config: TrialConfig, *, policy: PolicyNetwork, manifest: Any, root: Path, stage1_dir: str
) -> dict[str, Any]:
    """The trial's recorded figures: the networks it publishes, assembled as a bundle assembles them,
    run on the decoded val videos by the deployed inference path (``searchlab.evaluate``).

    The stage-2 inputs are an approximation of that path (frames rounded to uint8, logits stored
    in float16, every precision run), good for training and its curves but not for the figures a
    user is promised; this is what ``python -m searchlab.evaluate BUNDLE`` measures again.
    """
    backbone = load_backbone(config, stage1_dir=stage1_dir, num_classes=manifest.num_classes)
    model = VideoIQ(backbone=backbone, policy=policy, decision_space=config.stage2.decision_space)
    model.to(worker.device).eval()
    costs = deployed_eval.videoiq_costs(model, backbone=config.model.backbone, size=config.data.crop_size)
    dataset = evaluate.eval_dataset(config.data, manifest=manifest, root=root, split="val", seed=config.seed)
    videos = range(worker.rank, len(dataset) // dataset.views_per_video, worker.world_size)
    local = evaluate.video_outputs(model, dataset, videos=videos, mode=config.stage2.eval_mode, seed=config.seed,
                                   price=deployed_eval.videoiq_price(costs, decision_space=model.decision_space),
                                   device=worker.device, loader_workers=config.data.loader_workers)
    return deployed_eval.videoiq_metrics(
        evaluate.gathered(worker, local), decision_space=model.decision_space, class_names=manifest.class_names,
        multi_label=evaluate.uses_map(config.data.metric, manifest_multi_label=manifest.multi_label),
        memory_mb=costs.memory_mb)
