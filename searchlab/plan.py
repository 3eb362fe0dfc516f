"""The trial plan a sweep prints before it runs (and all that `--dry-run` does)."""

from __future__ import annotations

from pathlib import Path

from searchlab.config import Sweep

# Keys whose change needs a new stage-1 (and teacher) training; everything else reuses them. They
# mirror the fields `searchlab.pipeline` hashes into the teacher and stage-1 cache keys: the teacher
# also trains the policy's feature extractor (so its input size, width and initialisation count),
# and the global batch is the per-worker batch times resources.workers.
STAGE1_SECTIONS = (
    "data.", "model.backbone", "model.bit_widths", "model.pretrained", "model.policy_input_size",
    "model.policy_width_mult", "model.policy_pretrained", "teacher.", "stage1.", "resources.workers", "seed",
)
# Data keys the cache keys leave out: how many loader processes read the videos.
NOT_STAGE1 = ("data.loader_workers",)


def stage1_keys(sweep: Sweep) -> list[str]:
    """Searched keys that change what stage 1 trains (each new value means one more training)."""
    return [key for key in sweep.space if key.startswith(STAGE1_SECTIONS) and key not in NOT_STAGE1]


def _schedule(sweep: Sweep) -> str:
    """The stage-2 temperature schedule in a few words: "exponential tau0=5 rate=0.956 per epoch"."""
    temperature = sweep.base.stage2.temperature
    parameters = " ".join(f"{k}={v:g}" for k, v in temperature.items() if k not in ("kind", "per"))
    return f"{temperature['kind']} {parameters} per {temperature['per']}"


def describe_plan(sweep: Sweep, *, run_dir: Path) -> str:
    base, search = sweep.base, sweep.search
    lines = [
        f"sweep {base.name!r} from {sweep.source}",
        f"  run directory   {run_dir}",
        f"  data            {base.data.manifest} ({base.data.source}, {base.data.frames} frames at "
        f"{base.data.crop_size} px, metric {base.data.metric})",
        f"  model           {base.model.backbone}, bit-widths {list(base.model.bit_widths)}, policy MobileNetV2 "
        f"x{base.model.policy_width_mult} at {base.model.policy_input_size} px",
        f"  stages          teacher {base.teacher.epochs} ep -> stage 1 {base.stage1.epochs} ep -> "
        f"stage 2 {base.stage2.epochs} ep (τ {_schedule(sweep)})",
        f"  resources       {base.resources.workers} worker(s) per stage, "
        f"{base.resources.cpus_per_worker:g} CPU + {base.resources.gpus_per_worker:g} GPU each, "
        f"{search.max_concurrent} trial(s) at a time",
        f"  search          {search.trials} trials, sampler {search.sampler} (seed {search.seed}), objectives "
        + ", ".join(f"{name} ({direction})" for name, direction in search.objectives.items()),
        f"  constraints     {', '.join(search.constraints) or 'none'}",
        "  space:",
    ]
    for key, entry in sweep.space.items():
        values = entry.choice if entry.choice is not None else getattr(entry, entry.kind)
        condition = f"  when {entry.when}" if entry.when else ""
        lines.append(f"    {key:<32} {entry.kind:<10} {values}{condition}")
    if search.points_to_evaluate:
        lines.append(f"  starting points ({len(search.points_to_evaluate)}):")
        lines.extend(f"    {point}" for point in search.points_to_evaluate)
    shared = stage1_keys(sweep)
    if shared:
        lines.append(f"  stage 1 is trained once per distinct value of {shared} (cached and shared)")
    else:
        lines.append("  stage 1 and the teacher are trained once and shared by every trial")
    return "\n".join(lines)
