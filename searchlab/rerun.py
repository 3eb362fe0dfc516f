"""`python -m searchlab.rerun RUN_DIR --front --seeds N`: the front's configurations trained again with new seeds.

A sweep ranks its trials on one seed each, so a front point may sit there by luck. This command
takes the finished sweep's accuracy/GFLOPs front (feasible operating points of completed trials, as
`pick` reads it: a trial as trained, or a point of its curve at ``inference.cost_bias`` λ), rebuilds
each front trial's configuration from the sweep snapshot (`Sweep.trial_config(params)`), and
re-trains it with N new seeds: seed s0 + 1 .. s0 + N, s0 the configuration's own seed. Each (trial,
seed) is one run of `pipeline.run_trial` with a fresh id, as a Ray task, at most
``--max-concurrent`` at a time, which measures every front point of that trial (the trained one,
and the others as points of its new curve); a failed run is recorded with its reason and the others
go on.

Which stages a seed retrains. Every stage's cache key includes ``seed`` (its declared fields), so a
plain ``seed`` override would retrain the shared stages too (teacher, backbones). By default the
seed (and the evaluation overrides) apply to the per-trial stages only: `run_trial(config,
shared_config=...)` keys and builds the shared stages with the configuration the search ran, so
they are the search's own cached artifacts (cache hits, the same keys), and only the per-trial
stages train again. That measures the variance of what the search chose per trial. With
``--shared-seeds`` the shared stages get the new seed too (new keys: trained once per seed, shared
by the front's configurations of that seed) and the figures include the shared stages' variance.

Evaluation: ``--eval-clips K`` / ``--eval-crops C`` set data.eval_clips / data.eval_crops (the full
protocol, K clips x C crops per video) for the per-trial stages, whose last one evaluates.

Output, RUN_DIR/rerun/ (replaced as a whole, atomically, only if it holds searchlab's marker
.searchlab-rerun; anything else there is refused): seeds.parquet (one row per configuration and
seed: figures, status, reason, stage keys, which shared stages were reused), summary.json (per
front point: mean and sample standard deviation (ddof 1; 0 with one seed) of accuracy, GFLOPs,
p95 GFLOPs and memory over the completed seeds, each seed's figures, whether it is on the front
rebuilt on the means), rerun.md (the same as Markdown), trials/ and ray-train/ (the runs'
artifacts). The sweep's run folder is locked while it runs (a live sweep is refused). `report`
shows the table next to the search's front. Exit codes: 0 done, 1 every run failed, 2 refused.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from searchlab.atomic_dir import staged_directory, write_text_atomic
from searchlab.cli import command_parser
from searchlab.config import ConfigError, TrialConfig
from searchlab.config._limits import MAX_SEED
from searchlab.pareto import pareto_front
from searchlab.pick import OBJECTIVES, PickError, candidates
from searchlab.results import point_label
from searchlab.run_dir import (
    CACHE_DIR_NAME,
    RUN_MARKER,
    SWEEP_SNAPSHOT,
    RunDirError,
    has_marker,
    hold_run_dir,
    read_sweep_snapshot,
    write_marker,
)

RERUN_DIR_NAME = "rerun"
RERUN_MARKER = ".searchlab-rerun"
SEEDS_TABLE = "seeds.parquet"
SUMMARY = "summary.json"
MARKDOWN = "rerun.md"
# the figures summarised over seeds (searchlab.objectives names)
FIGURES = ("accuracy", "gflops", "gflops_p95", "memory_mb")


class RerunError(RuntimeError):
    """The re-run cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class Job:
    """One (configuration, seed) run."""

    number: int
    trial_id: str
    method: str
    params: dict[str, Any]
    seed: int
    rerun_id: str
    config: TrialConfig
    shared_config: TrialConfig
    search_keys: dict[str, Any] = field(default_factory=dict)
    #: The cost_bias of each of the trial's front points (0: the trial as trained)
    cost_biases: tuple[float, ...] = (0.0,)


def front_of(run_dir: Path) -> pd.DataFrame:
    """The sweep's accuracy/GFLOPs front over every operating point (``pick.candidates``), by trial number
    and cost_bias."""
    frame = candidates(run_dir)
    return frame[pareto_front(frame, OBJECTIVES)].sort_values(["number", "cost_bias"])


def plan(run_dir: Path, front: pd.DataFrame, *, seeds: int, eval_clips: int | None, eval_crops: int | None,
         shared_seeds: bool) -> list[Job]:
    """Each front trial's runs: its configuration with seed s0 + i (i = 1..seeds) and the eval overrides,
    measuring the cost_bias of each of its front points."""
    sweep = read_sweep_snapshot(run_dir)
    evaluation = {key: value for key, value in (("data.eval_clips", eval_clips), ("data.eval_crops", eval_crops))
                  if value is not None}
    jobs = []
    for _, points in front.groupby("number", sort=True):
        row = points.iloc[0]
        cost_biases = tuple(sorted(float(b) for b in points["cost_bias"]))
        params = dict(row["params_decoded"] or {})
        original = sweep.trial_config(params)
        keys = row.get("stage_keys")
        search_keys = json.loads(keys) if isinstance(keys, str) and keys else {}
        for i in range(1, seeds + 1):
            seed = (original.seed + i) % (MAX_SEED + 1)
            config = original.with_overrides({"seed": seed, **evaluation})
            shared = original.with_overrides({"seed": seed}) if shared_seeds else original
            jobs.append(Job(number=int(row["number"]), trial_id=str(row["trial_id"]), method=str(row["method"]),
                            params=params, seed=seed, rerun_id=f"rerun-{int(row['number'])}-s{seed}-{uuid.uuid4().hex[:6]}",
                            config=config, shared_config=shared, search_keys=search_keys, cost_biases=cost_biases))
    return jobs


def _run_one(job: Job, rerun_dir: str, cache_root: str) -> dict[str, Any]:
    """The Ray task: one run's stages; a failure comes back as its reason (the other runs go on)."""
    from searchlab.pipeline import run_trial
    from searchlab.progress import TrialTag
    from searchlab.tune_driver import NonFiniteMetric, failure_reason, nonfinite_problem, portable_details

    try:
        # the searched trial's number, the run's own id: its folders are trials/<rerun id>, ray-train/trial-N-<rerun id>
        outcome = run_trial(job.config, run_dir=Path(rerun_dir), trial=TrialTag(number=job.number, trial_id=job.rerun_id),
                            shared_config=job.shared_config, cache_root=Path(cache_root),
                            curve=[bias for bias in job.cost_biases if bias != 0])
        problem = nonfinite_problem(outcome, after=outcome["final_stage"])
        if problem:
            raise NonFiniteMetric(problem)
    except Exception as error:  # noqa: BLE001 -- recorded, the re-run goes on
        return {"status": "failed", "error": failure_reason(error)}
    return {"status": "completed", "metrics": outcome["metrics"], "stage_keys": outcome["stage_keys"],
            "points": {float(point["cost_bias"]): {name: point[name] for name in FIGURES + ("gflops_p5", "skip_fraction")
                                                   if name in point} for point in outcome["points"]},
            "details": portable_details(outcome["details"], run_dir=Path(rerun_dir)),
            "stage_seconds": outcome["stage_seconds"], "total_s": outcome["total_s"]}


def run_jobs(jobs: list[Job], *, rerun_dir: Path, cache_root: Path, max_concurrent: int) -> list[dict[str, Any]]:
    """Run every job as a Ray task, at most ``max_concurrent`` at once; one result per job, in order."""
    import ray

    from searchlab.tune_driver import TRIAL_DRIVER_CPUS, TRIAL_DRIVER_RESOURCE

    # like a sweep's trial process: it only drives its stages (their Ray Train workers hold the real resources)
    options: dict[str, Any] = {"num_cpus": TRIAL_DRIVER_CPUS, "max_retries": 0}
    if ray.cluster_resources().get(TRIAL_DRIVER_RESOURCE, 0) > 0:
        options = {"num_cpus": 0, "resources": {TRIAL_DRIVER_RESOURCE: TRIAL_DRIVER_CPUS}, "max_retries": 0}
    task = ray.remote(_run_one).options(**options)
    results: dict[int, dict[str, Any]] = {}
    waiting = list(enumerate(jobs))
    running: dict[Any, int] = {}
    while waiting or running:
        while waiting and len(running) < max_concurrent:
            index, job = waiting.pop(0)
            running[task.remote(job, str(rerun_dir), str(cache_root))] = index
        [ready], _ = ray.wait(list(running), num_returns=1)
        index = running.pop(ready)
        try:
            results[index] = ray.get(ready)
        except Exception as error:  # noqa: BLE001 -- the task's process died (killed, out of memory)
            results[index] = {"status": "failed", "error": f"{type(error).__name__}: the run's process died"}
        job, result = jobs[index], results[index]
        figures = (f"accuracy {result['metrics']['accuracy']:.4f}, {result['metrics']['gflops']:.4g} GFLOPs"
                   if result["status"] == "completed" else result["error"])
        print(f"[{len(results)}/{len(jobs)}] trial {job.number} seed {job.seed}: {result['status']} ({figures})",
              flush=True)
    return [results[i] for i in range(len(jobs))]


def seed_rows(jobs: list[Job], results: list[dict[str, Any]], shared_stages: list[str]) -> pd.DataFrame:
    """One row per (front point, seed): its figures or its failure, and which shared stages it reused."""
    rows = []
    for job, result in zip(jobs, results):
        keys = result.get("stage_keys") or {}
        reused = [stage for stage in shared_stages if stage in keys and keys[stage] == job.search_keys.get(stage)]
        for cost_bias in job.cost_biases:
            metrics = (result.get("points") or {}).get(cost_bias) or {}
            rows.append({"number": job.number, "cost_bias": cost_bias, "point": point_label(job.number, cost_bias),
                         "trial_id": job.trial_id, "method": job.method,
                         "params": json.dumps(job.params, sort_keys=True), "seed": job.seed, "rerun_id": job.rerun_id,
                         "status": result["status"], "error": result.get("error"),
                         **{name: float(metrics[name]) if name in metrics else math.nan
                            for name in ("accuracy", "gflops", "gflops_p5", "gflops_p95", "memory_mb", "skip_fraction")},
                         "stage_keys": json.dumps(keys, sort_keys=True), "reused_shared": json.dumps(reused),
                         "total_s": result.get("total_s")})
    return pd.DataFrame(rows)


def _stats(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one value); NaN for none."""
    if not values:
        return math.nan, math.nan
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def summarise(seeds: pd.DataFrame, front: pd.DataFrame) -> list[dict[str, Any]]:
    """Per front point: mean and std of FIGURES over its completed seeds, each seed's figures, the search's
    own figures, and whether it is on the front rebuilt on the means (None when no seed completed)."""
    configurations = []
    for (number, cost_bias), group in seeds.groupby(["number", "cost_bias"], sort=True):
        done = group[group["status"] == "completed"]
        search = front[(front["number"] == number) & (front["cost_bias"] == cost_bias)].iloc[0]
        entry: dict[str, Any] = {
            "number": int(number), "cost_bias": float(cost_bias), "point": point_label(number, cost_bias),
            "trial_id": str(group["trial_id"].iloc[0]), "method": str(group["method"].iloc[0]),
            "params": json.loads(group["params"].iloc[0]), "seeds": [int(s) for s in group["seed"]],
            "completed": len(done), "failed": int((group["status"] != "completed").sum()),
            "search": {name: float(search[name]) for name in FIGURES if name in search and pd.notna(search[name])},
            "per_seed": [{"seed": int(r["seed"]), "rerun_id": r["rerun_id"], "status": r["status"], "error": r["error"],
                          **{name: (None if pd.isna(r[name]) else float(r[name])) for name in FIGURES}}
                         for _, r in group.iterrows()],
        }
        for name in FIGURES:
            entry[f"{name}_mean"], entry[f"{name}_std"] = _stats([float(v) for v in done[name]])
        configurations.append(entry)
    means = pd.DataFrame([{"accuracy": c["accuracy_mean"], "gflops": c["gflops_mean"]} for c in configurations])
    finite = means.notna().all(axis=1) if not means.empty else pd.Series(dtype=bool)
    on_front = pareto_front(means[finite], OBJECTIVES) if finite.any() else pd.Series(dtype=bool)
    for i, entry in enumerate(configurations):
        entry["on_front"] = bool(on_front.loc[i]) if i in on_front.index else None
    return configurations


def _fmt(mean: float, std: float) -> str:
    return "n/a" if mean is None or not math.isfinite(mean) else f"{mean:.4g} ± {std:.2g}"


def markdown(summary: dict[str, Any]) -> str:
    """The re-run table as Markdown: the configurations, then each seed's figures."""
    lines = [f"# Front re-run: {summary['run']}", "", summary["shared_note"], "",
             f"Seeds per configuration: {summary['seeds']}; evaluation: {summary['evaluation']}. "
             "Mean ± sample std over the completed seeds; \"front\" marks the front rebuilt on the means.", "",
             "| point | id | method | params | seeds ok | accuracy | GFLOPs | p95 GFLOPs | memory MiB | front | search accuracy / GFLOPs |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in summary["configurations"]:
        params = ", ".join(f"{k}={v}" for k, v in c["params"].items())
        search = c["search"]
        lines.append(f"| {c.get('point', c['number'])} | {c['trial_id']} | {c['method']} | {params} | {c['completed']}/{len(c['seeds'])} "
                     f"| {_fmt(c['accuracy_mean'], c['accuracy_std'])} | {_fmt(c['gflops_mean'], c['gflops_std'])} "
                     f"| {_fmt(c['gflops_p95_mean'], c['gflops_p95_std'])} | {_fmt(c['memory_mb_mean'], c['memory_mb_std'])} "
                     f"| {'yes' if c['on_front'] else 'no' if c['on_front'] is False else 'n/a'} "
                     f"| {search.get('accuracy', math.nan):.4g} / {search.get('gflops', math.nan):.4g} |")
    lines += ["", "## Each seed", "", "| point | seed | run id | status | accuracy | GFLOPs | p95 GFLOPs | memory MiB | reason |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in summary["configurations"]:
        for s in c["per_seed"]:
            cells = [("" if s[name] is None else f"{s[name]:.4g}") for name in FIGURES]
            lines.append(f"| {c.get('point', c['number'])} | {s['seed']} | {s['rerun_id']} | {s['status']} | {' | '.join(cells)} "
                         f"| {s['error'] or ''} |")
    return "\n".join(lines) + "\n"


def read_rerun(run_dir: str | Path) -> dict[str, Any] | None:
    """RUN_DIR/rerun/summary.json if a re-run finished there (for the report), else None."""
    path = Path(run_dir) / RERUN_DIR_NAME / SUMMARY
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except ValueError:
        return None
    return summary if isinstance(summary, dict) else None


def _shared_note(jobs: list[Job], shared_stages: list[str], *, shared_seeds: bool) -> str:
    names = ", ".join(shared_stages) or "none"
    if shared_seeds:
        return (f"--shared-seeds: the shared stages ({names}) were trained again with each new seed "
                "(new cache keys), so the spread includes theirs.")
    original = sorted({job.shared_config.seed for job in jobs})
    return (f"The shared stages ({names}) were reused from the stage cache as the search trained them (seed "
            f"{', '.join(map(str, original))}); only the per-trial stages were trained again with the new seeds. "
            "Give --shared-seeds to retrain them too.")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = command_parser("searchlab.rerun", description=(
        "Re-train the Pareto front's configurations of a finished sweep with new seeds and write a robust "
        "table (mean ± std over seeds, each seed's figures, the front rebuilt on the means) into RUN_DIR/rerun/."),
        examples=["python -m searchlab.rerun runs/demo --front --seeds 3",
                  "python -m searchlab.rerun runs/anet-videoiq-r50 --front --seeds 3 --eval-clips 10 --eval-crops 3 "
                  "--address auto"])
    parser.add_argument("run_dir", type=Path, help="a finished sweep's run directory (trials.parquet, sweep.json)")
    parser.add_argument("--front", action="store_true", required=True,
                        help="re-run the accuracy/GFLOPs front's configurations (the only selection so far)")
    parser.add_argument("--seeds", type=int, default=3, help="new seeds per configuration (the search's seed + 1..N)")
    parser.add_argument("--eval-clips", type=int, default=None, help="data.eval_clips for the re-runs (K clips)")
    parser.add_argument("--eval-crops", type=int, default=None, help="data.eval_crops for the re-runs (1 or 3)")
    parser.add_argument("--shared-seeds", action="store_true",
                        help="give the shared stages (teacher, backbones) the new seeds too, instead of reusing them")
    parser.add_argument("--max-concurrent", type=int, default=2, help="runs at a time")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    return parser.parse_args(argv)


def _checked(args: argparse.Namespace) -> None:
    if args.seeds < 1:
        raise RerunError(f"--seeds {args.seeds}: give at least 1 seed per configuration")
    if args.max_concurrent < 1:
        raise RerunError(f"--max-concurrent {args.max_concurrent}: give at least 1")
    run_dir = args.run_dir
    if not run_dir.is_dir():
        raise RerunError(f"{run_dir} is not a run directory (it does not exist); give a sweep's RUN_DIR")
    if not (run_dir / SWEEP_SNAPSHOT).is_file():
        raise RerunError(f"{run_dir} has no {SWEEP_SNAPSHOT}: it is not a sweep's run directory, or the sweep never started")
    target = run_dir / RERUN_DIR_NAME
    if (target.exists() or target.is_symlink()) and not has_marker(target, RERUN_MARKER):
        raise RerunError(f"{target} exists but is not a searchlab re-run (no {RERUN_MARKER} marker), so it will not be "
                         "replaced; move it away")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    try:
        _checked(args)
        run_dir = args.run_dir.resolve()
        if not has_marker(run_dir, RUN_MARKER):
            raise RerunError(f"{run_dir} is not a searchlab run folder (no {RUN_MARKER} marker)")
        with hold_run_dir(run_dir):  # no sweep may run or --overwrite it meanwhile
            front = front_of(run_dir)
            try:
                jobs = plan(run_dir, front, seeds=args.seeds, eval_clips=args.eval_clips, eval_crops=args.eval_crops,
                            shared_seeds=args.shared_seeds)
            except (ConfigError, ValueError, KeyError) as error:
                raise RerunError(f"cannot rebuild the front's configurations: {error}") from error
            from searchlab.methods import get_method

            shared_stages = list(dict.fromkeys(stage.name for job in jobs for stage in get_method(job.method).stages
                                               if stage.shared))
            note = _shared_note(jobs, shared_stages, shared_seeds=args.shared_seeds)
            print(f"re-running the {len(front)} front points (points {', '.join(front['point'])}) of "
                  f"{len(jobs) // args.seeds} trials x {args.seeds} seeds = {len(jobs)} runs, {args.max_concurrent} at a time")
            print(note, flush=True)
            from searchlab.tune_driver import init_ray

            init_ray(args.address)
            with staged_directory(run_dir / RERUN_DIR_NAME) as staging:
                write_marker(staging, RERUN_MARKER, run=run_dir.name)
                results = run_jobs(jobs, rerun_dir=staging, cache_root=run_dir.parent / CACHE_DIR_NAME,
                                   max_concurrent=args.max_concurrent)
                seeds = seed_rows(jobs, results, shared_stages)
                configurations = summarise(seeds, front)
                first = jobs[0].config.data
                summary = {"run": run_dir.name, "seeds": args.seeds, "shared_seeds": args.shared_seeds,
                           "shared_stages": shared_stages, "shared_note": note,
                           "evaluation": f"{first.eval_clips} clips x {first.eval_crops} crops per video",
                           "eval_clips": first.eval_clips, "eval_crops": first.eval_crops,
                           "seconds": time.time() - started, "configurations": configurations}
                seeds.to_parquet(staging / SEEDS_TABLE, index=False)
                write_text_atomic(staging / SUMMARY, json.dumps(summary, indent=2) + "\n")
                write_text_atomic(staging / MARKDOWN, markdown(summary))
    except (RerunError, PickError, RunDirError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = run_dir / RERUN_DIR_NAME
    print(markdown(summary))
    print(f"re-run table: {out / MARKDOWN}, {out / SEEDS_TABLE}, {out / SUMMARY} "
          f"(python -m searchlab.report {args.run_dir} shows it next to the front)")
    if (seeds["status"] != "completed").all():
        print("error: every run failed; their reasons are in the table", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    sys.exit(main())
