"""AR-Net declared as a method (METHODS.md §2): backbones per resolution -> joint -> fine-tune.

Stage 1 trains each (backbone, resolution) alone, once per item of ``arnet.resolutions`` /
``arnet.backbones`` / ``arnet.backbone_pretrained`` and the recipe it shares (``FanOut``): a sweep
over skip sets, loss weights or τ schedules trains every backbone once, and a sweep over resolution
sets trains each distinct (backbone, resolution) once. Joint training (policy and backbones) and
fine-tuning (policy frozen) run per trial. The baselines are stage 1's networks on every frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


from searchlab.methods._contract import Artifacts, Bundle, FanOut, Method, Stage
from searchlab.methods.arnet.backbone_stage import backbone_loop
from searchlab.methods.arnet.build import MODEL_FILE
from searchlab.methods.arnet.dynamic_stages import finetune_loop, joint_loop
from searchlab.methods.arnet.evaluate import measure_bundle, measure_curve
from searchlab.results import Baseline
from searchlab.train.checkpointing import read_artifact_metrics

__all__ = ["ARNET"]


def _common(config: Any) -> dict[str, Any]:
    return {"arnet": config.arnet, "data": config.data, "seed": config.seed}


def _backbone_config(config: Any, inputs: Artifacts, item: int | None) -> dict[str, Any]:
    return {**_common(config), "resolution_index": item}


def _joint_config(config: Any, inputs: Artifacts, item: int | None) -> dict[str, Any]:
    return {**_common(config), "backbone_dirs": [str(folder) for folder in inputs["backbone"]]}


def _finetune_config(config: Any, inputs: Artifacts, item: int | None) -> dict[str, Any]:
    return {**_common(config), "joint_dir": str(inputs["joint"])}


def _baselines(artifacts: Artifacts, keys: Mapping[str, Any]) -> list[Baseline]:
    """Each stage-1 network on every frame at its resolution (the top one is the paper's TSN point)."""
    rows = []
    for folder, key in zip(artifacts["backbone"], keys["backbone"]):
        metrics = read_artifact_metrics(folder)
        rows.append(Baseline(method="arnet", key=key,
                             label=f"{metrics['backbone']} at {metrics['resolution']} px, every frame",
                             accuracy=float(metrics["accuracy"]), gflops=float(metrics["gflops"]),
                             memory_mb=float(metrics["memory_mb"])))
    return rows


def _load_bundle(folder: Path, *, config: Any, class_names: tuple[str, ...], card: dict, device: str = "cpu") -> Any:
    from searchlab.methods.arnet.deploy import load_arnet_bundle

    return load_arnet_bundle(folder, arnet=config.arnet, data=config.data, class_names=class_names, card=card,
                             device=device, config=config)


def _card_rows(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    arnet = config["arnet"]
    pairs = ", ".join(f"{net} at {size} px" for net, size in zip(arnet["backbones"], arnet["resolutions"]))
    head = f"; head on the policy's state at {arnet['policy_input_size']} px" if arnet["use_84"] else ""
    return [("backbones", pairs + head), ("skips", str(arnet["skips"]))]


def _describe(config: Any) -> list[str]:
    arnet = config.arnet
    pairs = ", ".join(f"{net}@{size}" for net, size in zip(arnet.backbones, arnet.resolutions))
    return [
        f"networks        {pairs}; policy MobileNetV2 x{arnet.policy_width_mult} + LSTM {arnet.policy_hidden} at "
        f"{arnet.policy_input_size} px; actions {list(arnet.action_names())}",
        f"stages          backbones {arnet.backbone_stage.epochs} ep each -> joint {arnet.joint_stage.epochs} ep -> "
        f"fine-tune {arnet.finetune_stage.epochs} ep",
    ]


ARNET = Method(
    name="arnet",
    description="per-frame resolution (or skip) chosen by a policy, a backbone per resolution",
    stages=(
        Stage(
            name="backbone",
            needs=(),
            depends_on=("data", "arnet.resize_mode", "arnet.backbone_stage", "arnet.momentum", "arnet.weight_decay",
                        "arnet.grad_clip", "arnet.linear_lr_mult", "arnet.linear_bias_lr_mult", "resources.workers",
                        "seed"),
            ignores=("data.manifest", "data.loader_workers"),
            fan_out=FanOut(over=("arnet.resolutions", "arnet.backbones", "arnet.backbone_pretrained")),
            shared=True,
            loop=backbone_loop,
            loop_config=_backbone_config,
            description="one network per (backbone, resolution), trained alone",
        ),
        Stage(
            name="joint",
            needs=("backbone",),
            depends_on=("arnet", "data", "resources.workers", "seed"),
            ignores=("data.loader_workers",),
            shared=False,
            loop=joint_loop,
            loop_config=_joint_config,
            description="policy and backbones trained together",
        ),
        Stage(
            name="finetune",
            needs=("joint",),
            depends_on=("arnet", "data", "resources.workers", "seed"),
            ignores=("data.loader_workers",),
            shared=False,
            loop=finetune_loop,
            loop_config=_finetune_config,
            description="backbones fine-tuned under the frozen policy",
        ),
    ),
    baselines=_baselines,
    bundle=Bundle(files={MODEL_FILE: ("finetune", MODEL_FILE)}, load=_load_bundle, measure=measure_bundle,
                  measure_curve=measure_curve, card_rows=_card_rows),
    describe=_describe,
)
