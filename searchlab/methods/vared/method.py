"""VA-RED² declared as a method (METHODS.md §3): base network, dynamic network -> fine-tune.

The base network (no gates) and the dynamic network (gates on, no efficiency loss; from scratch or
from the base network's weights, ``vared.dynamic_init``) are shared: every trial with the same
backbone, data and recipe (and, for the dynamic one, the same S, dimensions, gate options and gated
layers) trains them once. Fine-tuning with λ_e·L_e runs per trial. The
baselines are the base network and the dynamic network with every gate forced to one alternative.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from searchlab.methods._contract import Artifacts, Bundle, Method, Stage
from searchlab.methods.vared.build import MODEL_FILE
from searchlab.methods.vared.evaluate import measure_bundle, measure_curve
from searchlab.methods.vared.stages import base_loop, dynamic_loop, finetune_loop
from searchlab.results import Baseline
from searchlab.train.checkpointing import read_artifact_metrics

__all__ = ["VARED"]

#: What the base and the dynamic network share: data, backbone, optimiser, workers (the global batch).
_TRAINING = ("data", "vared.backbone", "vared.momentum", "vared.nesterov", "vared.weight_decay", "vared.lr_batch",
             "resources.workers", "seed")
#: The dynamic network's own structure.
_GATES = ("vared.gated", "vared.temporal_options", "vared.channel_options", "vared.gate_hidden", "vared.beta_init",
          "vared.cheap_op", "vared.zero_gate")
_IGNORED = ("data.manifest", "data.loader_workers")


def _common(config: Any, inputs: Artifacts, item: int | None) -> dict[str, Any]:
    return {"vared": config.vared, "data": config.data, "seed": config.seed}


def _dynamic_config(config: Any, inputs: Artifacts, item: int | None) -> dict[str, Any]:
    return {**_common(config, inputs, item), "base_dir": str(inputs["base"])}


def _finetune_config(config: Any, inputs: Artifacts, item: int | None) -> dict[str, Any]:
    return {**_common(config, inputs, item), "dynamic_dir": str(inputs["dynamic"])}


def _baselines(artifacts: Artifacts, keys: Mapping[str, Any]) -> list[Baseline]:
    base = read_artifact_metrics(artifacts["base"])
    rows = [Baseline(method="vared", key=keys["base"], label=f"{base['backbone']} without gates",
                     accuracy=float(base["accuracy"]), gflops=float(base["gflops"]),
                     memory_mb=float(base["memory_mb"]))]
    dynamic = read_artifact_metrics(artifacts["dynamic"])
    for name, forced in sorted(dynamic["forced"].items(), key=lambda item: -item[1]["gflops"]):  # full first
        rows.append(Baseline(method="vared", key=keys["dynamic"], label=f"every gate forced to {name}",
                             accuracy=float(forced["accuracy"]), gflops=float(forced["gflops"]),
                             memory_mb=float(dynamic["memory_mb"])))
    return rows


def _load_bundle(folder: Path, *, config: Any, class_names: tuple[str, ...], card: dict, device: str = "cpu") -> Any:
    from searchlab.methods.vared.deploy import load_vared_bundle

    return load_vared_bundle(folder, vared=config.vared, data=config.data, class_names=class_names, card=card,
                             device=device, config=config)


def _card_rows(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    vared = config["vared"]
    return [("backbone", f"{vared['backbone']}, {vared['gated']} convs gated"),
            ("alternatives", f"S_t = {vared['temporal_options']}, S_c = {vared['channel_options']} "
                             f"(cheap op {vared['cheap_op']}, all-zero gate: {vared['zero_gate']})"),
            ("efficiency loss", f"λ_e = {vared['lambda_e']}, surrogate {vared['surrogate']}")]


def _describe(config: Any) -> list[str]:
    vared = config.vared
    return [
        f"network         {vared.backbone}, {vared.gated} convs gated, S_t={vared.temporal_options} "
        f"S_c={vared.channel_options}, {config.data.frames} frames x {config.data.crop_size} px",
        f"stages          base {vared.base_stage.epochs} ep, dynamic {vared.dynamic_stage.epochs} ep -> "
        f"fine-tune {vared.finetune_stage.epochs} ep (lambda_e {vared.lambda_e})",
    ]


VARED = Method(
    name="vared",
    description="per-layer temporal/channel redundancy reduction by soft gates over cheap alternatives",
    stages=(
        Stage(name="base", needs=(), depends_on=(*_TRAINING, "vared.base_stage"), ignores=_IGNORED, shared=True,
              loop=base_loop, loop_config=_common, description="the backbone without gates"),
        # needs the base network even when it starts from scratch: its key then follows the base's recipe
        # too, which costs a retraining only when that recipe changes (the base is trained for its baseline anyway)
        Stage(name="dynamic", needs=("base",), depends_on=(*_TRAINING, *_GATES, "vared.dynamic_init",
                                                         "vared.calibration_batches", "vared.dynamic_stage"), ignores=_IGNORED,
              shared=True, loop=dynamic_loop, loop_config=_dynamic_config,
              description="gates on, alternatives mixed, no efficiency loss"),
        Stage(name="finetune", needs=("dynamic",), depends_on=("vared", "data", "resources.workers", "seed"),
              ignores=("data.loader_workers",), shared=False, loop=finetune_loop, loop_config=_finetune_config,
              description="fine-tuned with the efficiency loss"),
    ),
    baselines=_baselines,
    bundle=Bundle(files={MODEL_FILE: ("finetune", MODEL_FILE)}, load=_load_bundle, measure=measure_bundle,
                  measure_curve=measure_curve, card_rows=_card_rows),
    describe=_describe,
)
