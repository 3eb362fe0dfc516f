"""VA-RED²'s three stage loops (METHODS.md §3, "Recipe"): base network, dynamic training, fine-tuning.

* ``base_loop``: the backbone without gates, trained on cross-entropy (the "base" baseline);
* ``dynamic_loop`` (stage a): the dynamic network, gates on, alternatives mixed by their weights
  (eq. 3.5), cross-entropy only, from scratch or from the base network (``vared.dynamic_init``); it
  also scores the forced-alternative baselines (every gate forced to full, 1/2 and, when S = 3, 1/4),
  each with its BatchNorm statistics re-estimated on training batches (``forced_network``);
* ``finetune_loop`` (stage b): from stage a's weights, L = L_acc + λ_e·L_e (eq. 3.6 with the
  configured differentiable surrogate; μ0 = 1 only for correctly classified clips).

All three: SGD with Nesterov momentum, linear warm-up then cosine decay per iteration, the lr scaled
from ``vared.lr_batch`` clips to this run's global batch; resumable from their checkpoints. The last
epoch evaluates on val with the inference path (only the alternatives a gate chose are computed) and
writes the artifact: ``base.pt`` or ``vared.pt``, ``metrics.json``, ``config.yaml``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from searchlab.methods.vared.build import BASE_FILE, MODEL_FILE, build_network, load_network
from searchlab.methods.vared.config import StageRecipe, VaredConfig
from searchlab.methods.vared.costs import vared_costs
from searchlab.methods.vared.evaluate import evaluate_inference, fixed_metrics
from searchlab.methods.vared.losses import efficiency_loss
from searchlab.methods.vared.network import VaredNetwork
from searchlab.methods.vared.stage_common import LoopInputs, train_data
from searchlab.train.checkpointing import unwrap, write_artifact
from searchlab.train.loader import TrainData
from searchlab.train.schedules import warmup_cosine_scheduler
from searchlab.train.tblog import ScalarLog
from searchlab.train.worker import Worker, check_finite, checkpoint_epoch, resume, run_epoch, seed_worker

__all__ = ["base_loop", "dynamic_loop", "finetune_loop", "forced_network", "start_from_base", "vared_step"]

#: What a stage scores on val at its evaluation epochs: (network, inputs, worker, data) -> metrics.
Evaluation = Callable[[VaredNetwork, LoopInputs, Worker, TrainData], dict[str, Any]]


def vared_step(
    *, model: nn.Module, network: VaredNetwork, optimizer: torch.optim.Optimizer, frames: Tensor, labels: Tensor,
    lambda_e: float, layer_fractions: Tensor, config: VaredConfig,
) -> dict[str, Tensor]:
    """One step: cross-entropy, plus λ_e·L_e when ``lambda_e`` > 0 (``model`` may be the DDP wrapper
    of ``network``, whose gates recorded this forward's weights)."""
    logits = model(frames)
    ce = F.cross_entropy(logits, labels)
    terms = {"loss/ce": ce}
    total = ce
    if lambda_e > 0:
        correct = (logits.detach().argmax(dim=-1) == labels).to(logits.dtype)
        le = efficiency_loss(weights=network.gate_weights(), layer_fractions=layer_fractions,
                             channel_ratios=network.channel_ratios, temporal_strides=network.temporal_strides,
                             correct=correct, surrogate=config.surrogate)
        total = ce + lambda_e * le
        terms["loss/efficiency"] = le
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    return {"loss/total": total.detach(), **{k: v.detach() for k, v in terms.items()}}


def base_loop(loop_config: dict[str, Any], worker: Worker) -> None:
    """The base network (no gates); see the module docstring."""
    inputs = LoopInputs.parse(loop_config)
    seed_worker(worker, seed=inputs.seed)
    data = train_data(inputs, worker, batch_size=inputs.vared.base_stage.batch_size)
    network = build_network(inputs.vared, num_classes=data.manifest.num_classes, frames=inputs.data.frames,
                            size=inputs.data.crop_size, gates=False)

    def evaluate(net: VaredNetwork, inputs: LoopInputs, worker: Worker, data: TrainData) -> dict[str, Any]:
        costs = vared_costs(net)
        return {**fixed_metrics(net, worker=worker, data=inputs.data, manifest=data.manifest, root=data.root,
                                seed=inputs.seed, clip_gflops=costs.base_gflops(),
                                batch_size=inputs.vared.base_stage.batch_size),
                "memory_mb": costs.memory_mb, "backbone": inputs.vared.backbone}

    _train(inputs, worker, data=data, network=network, recipe=inputs.vared.base_stage, stage="base",
           lambda_e=0.0, evaluate=evaluate, weights_file=BASE_FILE, sources={})


def dynamic_loop(loop_config: dict[str, Any], worker: Worker) -> None:
    """Stage (a): gates on, no efficiency loss; see the module docstring."""
    inputs = LoopInputs.parse(loop_config, needs=("base_dir",))
    seed_worker(worker, seed=inputs.seed)
    data = train_data(inputs, worker, batch_size=inputs.vared.dynamic_stage.batch_size)
    network = build_network(inputs.vared, num_classes=data.manifest.num_classes, frames=inputs.data.frames,
                            size=inputs.data.crop_size)
    if inputs.vared.dynamic_init == "base":
        start_from_base(network, base_dir=loop_config["base_dir"])

    def evaluate(net: VaredNetwork, inputs: LoopInputs, worker: Worker, data: TrainData) -> dict[str, Any]:
        metrics = _gated_metrics(net, inputs, worker, data)
        costs = vared_costs(net)
        forced = {}
        for t_index, c_index in inputs.vared.forced_alternatives():
            name = inputs.vared.alternative_names()[t_index * inputs.vared.channel_options + c_index]
            fixed = forced_network(net, alternative=(t_index, c_index), batches=data.epoch(0),
                                   calibration_batches=inputs.vared.calibration_batches, device=worker.device)
            forced[name] = fixed_metrics(fixed, worker=worker, data=inputs.data, manifest=data.manifest,
                                         root=data.root, seed=inputs.seed,
                                         clip_gflops=costs.forced_gflops(t_index, c_index),
                                         batch_size=inputs.vared.dynamic_stage.batch_size)
        return {**metrics, "forced": forced}

    _train(inputs, worker, data=data, network=network, recipe=inputs.vared.dynamic_stage, stage="dynamic",
           lambda_e=0.0, evaluate=evaluate, weights_file=MODEL_FILE, sources={})


def finetune_loop(loop_config: dict[str, Any], worker: Worker) -> None:
    """Stage (b): from stage a's weights with L_acc + λ_e·L_e; see the module docstring."""
    inputs = LoopInputs.parse(loop_config, needs=("dynamic_dir",))
    seed_worker(worker, seed=inputs.seed)
    data = train_data(inputs, worker, batch_size=inputs.vared.finetune_stage.batch_size)
    network = load_network(loop_config["dynamic_dir"], config=inputs.vared, num_classes=data.manifest.num_classes,
                           frames=inputs.data.frames, size=inputs.data.crop_size)
    _train(inputs, worker, data=data, network=network, recipe=inputs.vared.finetune_stage, stage="finetune",
           lambda_e=inputs.vared.lambda_e, evaluate=_gated_metrics, weights_file=MODEL_FILE,
           sources={"dynamic": str(loop_config["dynamic_dir"])})


def forced_network(
    network: VaredNetwork, *, alternative: tuple[int, int], batches: Iterable[Mapping[str, Tensor]],
    calibration_batches: int, device: torch.device,
) -> VaredNetwork:
    """A copy of ``network`` with every gate forced to ``alternative``, in eval mode, its BatchNorm
    statistics re-estimated on ``calibration_batches`` training batches (none: kept as trained).

    The mixed training sums the alternatives with gate weights that are not normalised (eq. 3.5), so
    the BatchNorm statistics it accumulates describe outputs several times larger than one alternative
    alone; scored with them, a forced network is far below what its weights can do. Re-estimating the
    statistics (as weight-shared networks do for each sub-network) makes the baselines fair."""
    fixed = copy.deepcopy(network)
    fixed.force(alternative)
    if calibration_batches:
        norms = [m for m in fixed.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average over the calibration batches
        fixed.train()
        with torch.no_grad():
            for _, batch in zip(range(calibration_batches), batches):
                fixed(batch["frames"].to(device))
    return fixed.eval()


def start_from_base(network: VaredNetwork, *, base_dir: str | Path) -> None:
    """The base network's trained weights as the dynamic network's start (``dynamic_init: base``):
    its convolutions become the full kernels; the gates and cheap ops keep their fresh initialisation."""
    state = torch.load(Path(base_dir) / BASE_FILE, map_location="cpu", weights_only=True)
    missing, unexpected = network.load_state_dict(state, strict=False)
    own = [key for _, layer in network.gated_layers() for key in _gate_keys(network, layer)]
    left = sorted(set(missing) - set(own))
    if unexpected or left:
        raise ValueError(f"{base_dir}/{BASE_FILE} does not fit the dynamic network: unexpected {unexpected[:5]}, "
                         f"missing {left[:5]}; train the base stage with the same backbone")


def _gate_keys(network: VaredNetwork, layer: nn.Module) -> list[str]:
    """State-dict keys of ``layer``'s own parts that the base network lacks (gate, cheap ops)."""
    prefix = next(name for name, module in network.named_modules() if module is layer)
    return [f"{prefix}.{key}" for key in layer.state_dict() if not key.startswith("conv.")]


def _gated_metrics(net: VaredNetwork, inputs: LoopInputs, worker: Worker, data: TrainData) -> dict[str, Any]:
    return evaluate_inference(net, worker=worker, data=inputs.data, manifest=data.manifest, root=data.root,
                              alternative_names=inputs.vared.alternative_names(), seed=inputs.seed)


def _train(
    inputs: LoopInputs, worker: Worker, *, data: TrainData, network: VaredNetwork, recipe: StageRecipe, stage: str,
    lambda_e: float, evaluate: Evaluation, weights_file: str, sources: Mapping[str, str],
) -> None:
    """The epochs of one stage: schedule, resume, checkpoints, final evaluation, artifact."""
    cfg = inputs.vared
    network = network.to(worker.device)
    layer_fractions = vared_costs(network).layer_fractions().to(worker.device) if lambda_e > 0 else torch.zeros(0)
    model = worker.prepare_model(network)
    lr = recipe.lr * recipe.batch_size * worker.world_size / cfg.lr_batch  # the linear scaling rule
    optimizer = torch.optim.SGD(network.parameters(), lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                weight_decay=cfg.weight_decay)
    steps = len(data)
    scheduler = warmup_cosine_scheduler(optimizer, warmup_steps=recipe.warmup_epochs * steps,
                                        total_steps=recipe.epochs * steps)
    models = {"vared": network}
    start_epoch, _ = resume(worker, models=models, optimizer=optimizer, scheduler=scheduler)
    log = ScalarLog(inputs.log_dir, enabled=worker.is_writer, start_epoch=start_epoch)
    name = f"vared_{stage}"

    for epoch in range(start_epoch, recipe.epochs):
        network.train()

        def step(_: int, batch: dict[str, Tensor]) -> dict[str, Tensor]:
            terms = vared_step(model=model, network=network, optimizer=optimizer,
                               frames=batch["frames"].to(worker.device), labels=batch["label"].to(worker.device),
                               lambda_e=lambda_e, layer_fractions=layer_fractions, config=cfg)
            scheduler.step()
            return terms

        scalars = run_epoch(worker, data.epoch(epoch), step)
        # before evaluating: a diverged network fails here with its reason, not in evaluation code
        check_finite(stage=name, epoch=epoch + 1, metrics=scalars, models=models)
        scalars["lr"] = scheduler.get_last_lr()[0]
        last = epoch + 1 == recipe.epochs
        metrics: dict[str, Any] = {}
        if inputs.evaluates(epoch, epochs=recipe.epochs):
            evaluating = time.perf_counter()
            network.eval()
            metrics = evaluate(network, inputs, worker, data)
            scalars["eval_seconds"] = time.perf_counter() - evaluating  # measuring, not training
            scalars.update({f"eval/{k}": v for k, v in metrics.items() if isinstance(v, float)})
        log.log(epoch, scalars)

        def artifact(folder: Path) -> None:
            write_artifact(folder, state_dicts={weights_file[:-3]: unwrap(network).state_dict()}, metrics=metrics,
                           config=inputs.artifact_config(stage=stage), sources=dict(sources) or None)

        checkpoint_epoch(
            worker, stage=name, epoch=epoch + 1,
            metrics={"epoch": epoch + 1, **scalars, **{k: v for k, v in metrics.items() if isinstance(v, float)}},
            models=models, optimizer=optimizer, scheduler=scheduler, extra={},
            write_artifact=artifact if last else None,
            inject_failure_after_epoch=inputs.inject_failure_after_epoch,
            save=last or (epoch + 1) % recipe.checkpoint_every == 0, epochs=recipe.epochs,
        )
