"""VideoIQ (METHODS.md §1) declared as a method: teacher -> stage 1 -> stage-2 inputs -> stage 2.

The teacher (full-precision network and the policy's MobileNetV2), the any-precision backbone
(stage 1) and the frozen backbone's per-frame outputs are shared: every trial that agrees on what
they depend on reuses them. Stage 2 (the policy) is trained per trial. The loops live in
searchlab.train (teacher, stage1, stage2); this module says how they connect.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from searchlab.methods._contract import Artifacts, Bundle, Method, Stage
from searchlab.methods.videoiq import bundle
from searchlab.results import Baseline
from searchlab.train.backbone_cache import FORMAT as OUTPUTS_FORMAT, build_backbone_outputs
from searchlab.train.checkpointing import read_artifact_metrics
from searchlab.train.stage1 import stage1_loop
from searchlab.train.stage2 import stage2_loop
from searchlab.train.teacher import teacher_loop

__all__ = ["OUTPUTS_SUBDIR", "VIDEOIQ"]

#: The stage-2 inputs live in this sub-folder of their artifact (the builder swaps it in atomically).
OUTPUTS_SUBDIR = "outputs"


def _teacher_config(config: Any, inputs: Artifacts, item: int | None) -> dict[str, Any]:
    return {"config": config, "teacher_dir": None, "stage1_dir": None, "cache_dir": None}


def _stage1_config(config: Any, inputs: Artifacts, item: int | None) -> dict[str, Any]:
    return {"config": config, "teacher_dir": str(inputs["teacher"]), "stage1_dir": None, "cache_dir": None}


def _stage2_config(config: Any, inputs: Artifacts, item: int | None) -> dict[str, Any]:
    """Without the outputs artifact, stage 2 runs the frozen backbone and teacher on decoded clips."""
    cache = str(inputs["outputs"] / OUTPUTS_SUBDIR) if "outputs" in inputs else None
    return {"config": config, "teacher_dir": str(inputs["teacher"]), "stage1_dir": str(inputs["stage1"]),
            "cache_dir": cache}


def _uniform_baselines(artifacts: Artifacts, keys: Mapping[str, Any]) -> list[Baseline]:
    """Every frame at one bit-width through the trial's stage-1 network, for each trained bit-width."""
    metrics = read_artifact_metrics(artifacts["stage1"])
    memory = float(metrics.get("memory_mb", 0.0))
    return [Baseline(method="videoiq", key=keys["stage1"], label=f"uniform {bits}-bit",
                     accuracy=float(values["accuracy"]), gflops=float(values["gflops"]),
                     memory_mb=float(values.get("memory_mb", memory)))
            for bits, values in metrics["uniform"].items()]


def _describe(config: Any) -> list[str]:
    """The dry-run plan's lines for a VideoIQ trial."""
    model, stage2, t = config.model, config.stage2, config.stage2.temperature
    schedule = " ".join(f"{k}={v:g}" for k, v in t.items() if k not in ("kind", "per"))
    return [
        f"model           {model.backbone}, bit-widths {list(model.bit_widths)}, policy MobileNetV2 "
        f"x{model.policy_width_mult} at {model.policy_input_size} px",
        f"stages          teacher {config.teacher.epochs} ep -> stage 1 {config.stage1.epochs} ep -> "
        f"stage 2 {stage2.epochs} ep (τ {t['kind']} {schedule} per {t['per']})",
    ]


def _build_outputs(config: Any, inputs: Artifacts, target: Path) -> None:
    build_backbone_outputs(target / OUTPUTS_SUBDIR, config=config, teacher_dir=inputs["teacher"],
                           stage1_dir=inputs["stage1"], device="cuda" if config.resources.use_gpu else "cpu",
                           batch_size=config.stage2.batch_size)


VIDEOIQ = Method(
    name="videoiq",
    description="per-frame precision (or skip) chosen by a policy over an any-precision quantised backbone",
    stages=(
        Stage(
            name="teacher",
            needs=(),
            # The teacher also trains the policy's feature extractor, so the policy's input size, width
            # and initialisation count; the global batch is the per-worker batch times the workers.
            depends_on=("data", "model.backbone", "model.pretrained", "model.policy_input_size",
                        "model.policy_width_mult", "model.policy_pretrained", "teacher", "resources.workers", "seed"),
            # How many processes read the data changes nothing it learns; what the data is comes in
            # through the manifest's fingerprint (and data.root, where its files are).
            ignores=("data.manifest", "data.loader_workers"),
            shared=True,
            loop=teacher_loop,
            loop_config=_teacher_config,
            description="full-precision network and the policy's MobileNetV2",
        ),
        Stage(
            name="stage1",
            needs=("teacher",),
            depends_on=("model.bit_widths", "stage1", "resources.workers", "seed"),
            shared=True,
            loop=stage1_loop,
            loop_config=_stage1_config,
            description="any-precision backbone",
        ),
        Stage(
            name="outputs",
            needs=("teacher", "stage1"),
            depends_on=("stage2.cached_views", "model.policy_input_size"),
            shared=True,
            build=_build_outputs,
            version=OUTPUTS_FORMAT,
            description="the frozen backbone's per-frame outputs (stage 2's inputs)",
        ),
        Stage(
            name="stage2",
            needs=("teacher", "stage1", "outputs"),
            optional=("outputs",),
            depends_on=("stage2", "model", "data", "seed"),
            ignores=("data.loader_workers",),
            shared=False,
            loop=stage2_loop,
            loop_config=_stage2_config,
            description="the policy",
        ),
    ),
    baselines=_uniform_baselines,
    bundle=Bundle(files=bundle.BUNDLE_FILES, load=bundle.load_bundle, measure=bundle.measure,
                  measure_curve=bundle.measure_curve, card_rows=bundle.card_rows),
    describe=_describe,
)
