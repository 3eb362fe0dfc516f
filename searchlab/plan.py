"""The trial plan a sweep prints before it runs (and all that `--dry-run` does)."""

from __future__ import annotations

from pathlib import Path

from searchlab.config import METHOD_KEY, Sweep
from searchlab.methods import Method, depends_on_key, get_method


def method_keys(sweep: Sweep, method: str) -> list[str]:
    """The searched keys of ``method``'s trials: every entry but the method itself whose `when` does
    not ask for another method (in a single-method sweep, every entry)."""
    return [key for key, entry in sweep.space.items()
            if key != METHOD_KEY and (entry.when or {}).get(METHOD_KEY, method) == method]


def shared_stage_keys(sweep: Sweep, *, method: str | None = None) -> dict[str, list[str]]:
    """For each shared stage of ``method`` (default: the sweep's first method): the searched keys that
    change its cache key (it, or a stage it needs, declares them), in the space's order; each new value
    means one more training. Read from the same declarations as the keys themselves
    (searchlab.methods.stage_keys)."""
    declared = get_method(method or sweep.method_names[0])
    searched = method_keys(sweep, declared.name)
    affected: dict[str, set[str]] = {}
    for stage in declared.stages:
        own = {key for key in searched if depends_on_key(stage, key) or (stage.reads_data and key == "data.manifest")}
        affected[stage.name] = own.union(*(affected[need] for need in stage.needs))
    return {stage.name: [key for key in searched if key in affected[stage.name]]
            for stage in declared.stages if stage.shared}


def _method_lines(sweep: Sweep, method: Method, *, indent: str) -> list[str]:
    """What one method's trials run: its description, recipe lines and stage graph."""
    return [
        f"{indent}method          {method.name}: {method.description}",
        *(f"{indent}{line}" for line in method.describe(sweep.method_base(method.name))),
        f"{indent}stage graph     " + " -> ".join(
            f"{stage.name}{' (per item of ' + ', '.join(stage.fan_out.over) + ')' if stage.fan_out else ''}"
            f"{'' if stage.shared else ' [per trial]'}" for stage in method.stages),
    ]


def _reuse_lines(sweep: Sweep, method: Method, *, indent: str) -> list[str]:
    lines = []
    for name, keys in shared_stage_keys(sweep, method=method.name).items():
        each = " per item" if method.stage(name).fan_out else ""
        reuse = f"once{each} per distinct value of {keys}" if keys else f"once{each} for the whole sweep"
        lines.append(f"{indent}{name:<12} {reuse}")
    return lines


def describe_plan(sweep: Sweep, *, run_dir: Path) -> str:
    base, search = sweep.base, sweep.search
    methods = [get_method(name) for name in sweep.method_names]
    lines = [
        f"sweep {base.name!r} from {sweep.source}",
        f"  run directory   {run_dir}",
        f"  data            {base.data.manifest} ({base.data.source}, {base.data.frames} frames at "
        f"{base.data.crop_size} px, metric {base.data.metric})",
    ]
    if sweep.cross_method:
        lines.append(f"  methods         {', '.join(sweep.method_names)} (searched: space.{METHOD_KEY}; each "
                     "method's own keys only in its trials)")
        for method in methods:
            lines += _method_lines(sweep, method, indent="    ")
    else:
        lines += _method_lines(sweep, methods[0], indent="  ")
    lines += [
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
    for method in methods:
        if sweep.cross_method:
            lines.append(f"    {method.name}:")
        lines += _reuse_lines(sweep, method, indent="      " if sweep.cross_method else "    ")
    return "\n".join(lines)
