"""The trial plan a sweep prints before it runs (and all that `--dry-run` does)."""

from __future__ import annotations

from pathlib import Path

from searchlab.config import Sweep
from searchlab.methods import depends_on_key, get_method


def shared_stage_keys(sweep: Sweep) -> dict[str, list[str]]:
    """For each shared stage of the sweep's method: the searched keys that change its cache key (it,
    or a stage it needs, declares them), in the space's order; each new value means one more training.
    Read from the same declarations as the keys themselves (searchlab.methods.stage_keys)."""
    method = get_method(sweep.base.method)
    affected: dict[str, set[str]] = {}
    for stage in method.stages:
        own = {key for key in sweep.space
               if depends_on_key(stage, key) or (stage.reads_data and key == "data.manifest")}
        affected[stage.name] = own.union(*(affected[need] for need in stage.needs))
    return {stage.name: [key for key in sweep.space if key in affected[stage.name]]
            for stage in method.stages if stage.shared}


def describe_plan(sweep: Sweep, *, run_dir: Path) -> str:
    base, search = sweep.base, sweep.search
    method = get_method(base.method)
    lines = [
        f"sweep {base.name!r} from {sweep.source}",
        f"  run directory   {run_dir}",
        f"  data            {base.data.manifest} ({base.data.source}, {base.data.frames} frames at "
        f"{base.data.crop_size} px, metric {base.data.metric})",
        f"  method          {method.name}: {method.description}",
        *(f"  {line}" for line in method.describe(base)),
        "  stage graph     " + " -> ".join(
            f"{stage.name}{' (per item of ' + ', '.join(stage.fan_out.over) + ')' if stage.fan_out else ''}"
            f"{'' if stage.shared else ' [per trial]'}" for stage in method.stages),
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
        each = " per item" if method.stage(name).fan_out else ""
        reuse = f"once{each} per distinct value of {keys}" if keys else f"once{each} for the whole sweep"
        lines.append(f"    {name:<12} {reuse}")
    return "\n".join(lines)
