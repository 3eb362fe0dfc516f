"""The trial plan a sweep prints before it runs (and all that `--dry-run` does)."""

from __future__ import annotations

from pathlib import Path

from searchlab.config import Sweep
from searchlab.methods import depends_on_key, get_method

def shared_stage_keys(sweep: Sweep) -> dict[str, list[str]]:
    """For each shared stage of the sweep's method: the searched keys that change its cache key (it,
    or a stage it needs, declares them), in the space's order; each new value means one more training.
    Read from the same declarations as the keys themselves (searchlab.methods.stage_keys)."""
    method = get_method("videoiq")
    affected: dict[str, set[str]] = {}
    for stage in method.stages:
        own = {key for key in sweep.space
               if depends_on_key(stage, key) or (stage.reads_data and key == "data.manifest")}
        affected[stage.name] = own.union(*(affected[need] for need in stage.needs))
    return {stage.name: [key for key in sweep.space if key in affected[stage.name]]
            for stage in method.stages if stage.shared}


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
    lines.append("  shared stages (cached, trained once per key and reused by every trial that has it):")
    for name, keys in shared_stage_keys(sweep).items():
        reuse = f"once per distinct value of {keys}" if keys else "once for the whole sweep"
        lines.append(f"    {name:<12} {reuse}")
    return "\n".join(lines)
