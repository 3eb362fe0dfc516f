"""AR-Net stages 2 and 3: joint training, then fine-tuning under a frozen policy (METHODS.md §2).

Both train the whole ``ARNet`` forward (every backbone on every frame, straight-through Gumbel
decisions at τ from the stage's schedule) on the loss of ``losses.arnet_loss``, SGD at constant lr
with linear layers faster and the gradient norm clipped:

* ``joint_loop`` (stage 2): policy, head and backbones, the backbones from stage 1's artifacts
  (``loop_config['backbone_dirs']``, in resolution order), the policy's MobileNetV2 from
  ``loop_config.get('policy_weights')`` or ``arnet.policy_pretrained``;
* ``finetune_loop`` (stage 3): starts from the joint artifact (``loop_config['joint_dir']``); the
  policy (MobileNetV2, LSTM, fc) and the 84 head are frozen and kept in eval mode (no dropout, no
  BatchNorm drift), only the backbones train.

The last epoch of each evaluates the inference path (``evaluate.evaluate_inference``) on the
decoded val clips. Artifact: ``arnet.pt`` (ARNet state dict), ``metrics.json``, ``config.yaml``,
``sources.json`` (the artifacts it started from).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from searchlab.methods.arnet.build import MODEL_FILE, build_model, load_backbone_artifact, load_model
from searchlab.methods.arnet.config import ARNetConfig, FinetuneRecipe, JointRecipe
from searchlab.methods.arnet.costs import resolution_gflops
from searchlab.methods.arnet.evaluate import evaluate_inference
from searchlab.methods.arnet.losses import action_usage, arnet_loss, efficiency_weights
from searchlab.methods.arnet.model import ARNet
from searchlab.methods.arnet.optim import constant_scheduler, make_optimizer
from searchlab.methods.arnet.stage_common import LoopInputs, TrainData, clip_norm, train_data
from searchlab.models import TemperatureSchedule
from searchlab.train.checkpointing import unwrap, write_artifact
from searchlab.train.tblog import ScalarLog
from searchlab.train.worker import Worker, check_finite, checkpoint_epoch, resume, run_epoch, seed_worker

__all__ = ["dynamic_step", "finetune_loop", "freeze_policy", "joint_loop"]


def dynamic_step(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    frames: Tensor,
    labels: Tensor,
    tau: float,
    weights: Tensor,
    config: ARNetConfig,
) -> dict[str, Tensor]:
    """One training step of stage 2 or 3; returns the loss terms, gradient norm and action usage."""
    out = model(frames, tau=tau)
    total, terms = arnet_loss(video_logits=out["video_logits"], labels=labels, actions=out["actions"],
                              weights=weights, w_acc=config.w_acc, w_eff=config.w_eff, lambda_u=config.lambda_u)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    norm = clip_norm([p for group in optimizer.param_groups for p in group["params"]], max_norm=config.grad_clip)
    optimizer.step()
    usage = action_usage(out["actions"].detach())
    return {"loss/total": total.detach(), **{f"loss/{k}": v for k, v in terms.items()}, "grad_norm": norm.detach(),
            **{f"usage/{name}": usage[k] for k, name in enumerate(config.action_names())}}


def freeze_policy(model: ARNet) -> list[nn.Module]:
    """Stage 3: no gradient for the policy and the head; returns them (to be kept in eval mode)."""
    frozen = [model.policy] + ([model.head] if model.head is not None else [])
    for module in frozen:
        module.requires_grad_(False)
    return frozen


def joint_loop(loop_config: dict[str, Any], worker: Worker) -> None:
    """Stage 2 (see the module docstring)."""
    inputs = LoopInputs.parse(loop_config, needs=("backbone_dirs",))
    cfg = inputs.arnet
    dirs = [str(folder) for folder in loop_config["backbone_dirs"]]
    if len(dirs) != len(cfg.resolutions):
        raise ValueError(f"backbone_dirs has {len(dirs)} folders for resolutions {list(cfg.resolutions)}; "
                         "give one stage-1 artifact per resolution, in that order")
    seed_worker(worker, seed=inputs.seed)
    data = train_data(inputs, worker, batch_size=cfg.joint_stage.batch_size)
    classes = data.manifest.num_classes
    backbones = [load_backbone_artifact(folder, config=cfg, index=i, num_classes=classes) for i, folder in enumerate(dirs)]
    model = build_model(cfg, num_classes=classes, backbones=backbones, policy_weights=loop_config.get("policy_weights"))
    sources = {f"backbone_{size}": folder for size, folder in zip(cfg.resolutions, dirs)}
    _train(inputs, worker, data=data, model=model, recipe=cfg.joint_stage, stage="arnet_joint", frozen=[],
           sources=sources)


def finetune_loop(loop_config: dict[str, Any], worker: Worker) -> None:
    """Stage 3 (see the module docstring)."""
    inputs = LoopInputs.parse(loop_config, needs=("joint_dir",))
    seed_worker(worker, seed=inputs.seed)
    data = train_data(inputs, worker, batch_size=inputs.arnet.finetune_stage.batch_size)
    model = load_model(loop_config["joint_dir"], config=inputs.arnet, num_classes=data.manifest.num_classes)
    frozen = freeze_policy(model)
    _train(inputs, worker, data=data, model=model, recipe=inputs.arnet.finetune_stage, stage="arnet_finetune",
           frozen=frozen, sources={"joint": str(loop_config["joint_dir"])})


def _train(
    inputs: LoopInputs,
    worker: Worker,
    *,
    data: TrainData,
    model: ARNet,
    recipe: JointRecipe | FinetuneRecipe,
    stage: str,
    frozen: list[nn.Module],
    sources: Mapping[str, str],
) -> None:
    """The epochs of stage 2 or 3: τ schedule, resume, checkpoints, final evaluation, artifact."""
    cfg = inputs.arnet
    classes = data.manifest.num_classes
    weights = efficiency_weights(model.layout, kind=cfg.efficiency_cost, resolution_gflops=(
        resolution_gflops(cfg.backbones, resolutions=cfg.resolutions, num_classes=classes)
        if cfg.efficiency_cost == "flops" else None)).to(worker.device)
    ddp = worker.prepare_model(model)
    optimizer = make_optimizer([model], lr=recipe.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               linear_lr_mult=cfg.linear_lr_mult, linear_bias_lr_mult=cfg.linear_bias_lr_mult)
    scheduler = constant_scheduler(optimizer)
    schedule = TemperatureSchedule.from_dict(recipe.temperature)
    models = {"arnet": model}
    start_epoch, _ = resume(worker, models=models, optimizer=optimizer, scheduler=scheduler)
    log = ScalarLog(inputs.log_dir, enabled=worker.is_writer, start_epoch=start_epoch)
    steps = len(data)

    for epoch in range(start_epoch, recipe.epochs):
        model.train()
        for module in frozen:
            module.eval()
        taus: list[float] = []

        def step(iteration: int, batch: dict[str, Tensor]) -> dict[str, Tensor]:
            tau = schedule.value(epoch=epoch, iteration=iteration, iterations_per_epoch=steps, total_epochs=recipe.epochs)
            taus.append(tau)
            terms = dynamic_step(model=ddp, optimizer=optimizer, frames=batch["frames"].to(worker.device),
                                 labels=batch["label"].to(worker.device), tau=tau, weights=weights, config=cfg)
            scheduler.step()
            return terms

        scalars = run_epoch(worker, data.epoch(epoch), step)
        # before evaluating: a diverged network fails here with its reason, not in evaluation code
        check_finite(stage=stage, epoch=epoch + 1, metrics=scalars, models=models)
        scalars["tau"] = taus[-1]
        last = epoch + 1 == recipe.epochs
        metrics: dict[str, Any] = {}
        if inputs.evaluates(epoch, epochs=recipe.epochs):
            evaluating = time.perf_counter()
            model.eval()
            metrics = evaluate_inference(unwrap(model), worker=worker, data=inputs.data, manifest=data.manifest,
                                         root=data.root, action_names=cfg.action_names(), mode=cfg.eval_mode,
                                         seed=inputs.seed)
            scalars["eval_seconds"] = time.perf_counter() - evaluating  # measuring, not training
            scalars.update({f"eval/{k}": v for k, v in metrics.items() if isinstance(v, float)})
            scalars.update({f"eval/usage_{name}": v for name, v in metrics["usage"].items()})
        log.log(epoch, scalars)

        def artifact(folder: Path) -> None:
            write_artifact(folder, state_dicts={MODEL_FILE[:-3]: unwrap(model).state_dict()}, metrics=metrics,
                           config=inputs.artifact_config(stage=stage.removeprefix("arnet_")), sources=sources)

        checkpoint_epoch(
            worker, stage=stage, epoch=epoch + 1,
            metrics={"epoch": epoch + 1, **scalars, **{k: v for k, v in metrics.items() if isinstance(v, float)}},
            models=models, optimizer=optimizer, scheduler=scheduler, extra={"tau": taus[-1]},
            write_artifact=artifact if last else None,
            inject_failure_after_epoch=inputs.inject_failure_after_epoch,
            save=last or (epoch + 1) % recipe.checkpoint_every == 0, epochs=recipe.epochs,
        )
