"""Search efficiency on the demo: hypervolume of the feasible front against wall-clock time, four ways.

One run of this script searches the demo problem (``spaces/demo.yaml``: VideoIQ on the synthetic
set) four times, one arm after the other, with the same trial budget, seeds, search space, starting
point (the demo's ``points_to_evaluate``) and ``max_concurrent`` on the same machine:

(a) searchlab as shipped: the demo's sweep file plus ``search.scheduler: pareto_asha`` (shared stage
    cache, the stage-2 inputs cache, the launch policy, Pareto-aware early stopping; the demo's TPE).
(b) what a user writes without searchlab: Ray Tune with ``OptunaSearch`` (Optuna's TPE, seeded) where
    every trial trains its own teacher, stage 1 and stage 2 from scratch, each under Ray Train's
    ``TorchTrainer`` (searchlab's stage loops through ``run_stage`` as library code, launch forced to
    distributed, a fresh folder per trial: no cache, stage 2 on live backbone outputs), one point
    per trial. Its trial processes reserve what searchlab's do (a custom driver resource, no CPU), so
    that both arms train the same number of stages at once.
(c) as (a) with ``search.sampler: random``.
(d) as (a) with ``search.sampler: gp`` (Optuna's GPSampler; needs scipy).

Each arm runs in its own process (its own local Ray) with its own storage folder ``OUT/ARM`` and
therefore its own stage cache ``OUT/ARM/cache``: no arm reuses another's trainings. An arm's clock
starts when its process is started (imports and Ray's start-up count) and each completed trial
counts at its finish time; the data set is generated (or found) before any clock starts. Curves
(points.parquet, extra operating points per trial) join the front when the run folder has them,
at their trial's finish time (`arm_points`).

Hypervolume: ``searchlab.pareto.hypervolume`` of each arm's feasible completed trials (and points)
so far, against one reference point for all arms: 0 for a maximised objective (accuracy) and 1.1 x
the largest value any arm saw for a minimised one (GFLOPs). The headline is the ratio of the time
(b) takes to reach its final hypervolume to the time (a) takes to reach at least as much.

    .venv/bin/python bench/search_efficiency.py [--quick] [--out DIR] [--json OUT] [--arms a,b,c,d]

``--quick``: 6 trials per arm and short stages (see QUICK), for a 2-core machine; without it the
demo's own settings. Timings depend on what else runs on the machine: the load average is recorded.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from searchlab.config._dotted import set_dotted
from searchlab.pareto import hypervolume

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "spaces" / "demo.yaml"
ARMS: dict[str, str] = {
    "a": "searchlab as shipped (demo + pareto_asha)",
    "b": "plain Ray Tune + OptunaSearch, no cache",
    "c": "searchlab, random sampler",
    "d": "searchlab, GP sampler",
}
SAMPLERS = {"a": None, "c": "random", "d": "gp"}  # None: the demo's own sampler
# --quick: dotted overrides of the demo's sweep tree, and its trial budget, sized so that the four arms
# take under 30 minutes on 2 cores. The teacher and stage 1 keep the demo's epochs: with one epoch each
# the backbone is too weak for any policy to trade accuracy for compute, and every trial lands on the
# same accuracy (a front of one accuracy says nothing about a search). Stage 2 keeps two pareto_asha
# rungs (epochs 3 and 9: grace period 3, η 3) and anneals its temperature within them
# (5 × 0.7^9 ≈ 0.20, as the demo's 30 epochs at 0.9 reach 0.21).
QUICK: dict[str, Any] = {"base.stage2.epochs": 9, "base.stage2.checkpoint_every": 3,
                         "base.stage2.temperature.rate": 0.7, "search.pareto_asha.grace_period": 3}
QUICK_TRIALS = 6
PLAIN_RESULTS = "plain_trials.json"  # arm (b)'s trial records, in its run folder
POINTS_FILE = "points.parquet"  # curves: one row per (trial, knob value), when the run has them
REFERENCE_MARGIN = 0.1


# --------------------------------------------------------------------------------------------
# Hypervolume over time (pure)


def hypervolume_curve(points: pd.DataFrame, *, objectives: Mapping[str, str],
                      reference: Sequence[float]) -> list[tuple[float, float]]:
    """(seconds, hypervolume) after each feasible point in time order, starting at (0, 0).

    ``points``: columns ``time_s``, ``feasible`` and one per objective. Never decreases.
    """
    names, directions = list(objectives), list(objectives.values())
    ordered = points[points["feasible"].astype(bool)].sort_values("time_s", kind="stable")
    values = ordered[names].to_numpy(dtype=float)
    curve = [(0.0, 0.0)]
    for i, seconds in enumerate(ordered["time_s"].to_numpy(dtype=float)):
        curve.append((float(seconds), hypervolume(values[: i + 1], reference, directions)))
    return curve


def time_to_reach(curve: Sequence[tuple[float, float]], target: float) -> float | None:
    """The first time the curve's hypervolume is at least ``target`` (None: never)."""
    slack = 1e-12 * max(1.0, abs(target))  # the same front summed in another order
    return next((seconds for seconds, volume in curve if volume >= target - slack), None)


def time_to_front_ratio(plain: Sequence[tuple[float, float]], shipped: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """How much sooner ``shipped`` reaches the hypervolume ``plain`` ends with.

    ``ratio`` = (time ``plain`` needs to reach its final hypervolume) / (time ``shipped`` needs to
    reach at least that); None with ``reached`` False when ``shipped`` never gets there, or when
    ``plain`` found no feasible point (its target would be 0).
    """
    target = plain[-1][1]
    plain_s = time_to_reach(plain, target)
    shipped_s = time_to_reach(shipped, target)
    reached = target > 0 and shipped_s is not None
    return {"target_hv": target, "plain_s": plain_s, "shipped_s": shipped_s, "reached": reached,
            "ratio": plain_s / shipped_s if reached and plain_s is not None and shipped_s > 0 else None}


def common_reference(frames: Sequence[pd.DataFrame], *, objectives: Mapping[str, str],
                     margin: float = REFERENCE_MARGIN) -> list[float]:
    """One reference point for every arm: 0 for a maximised objective (accuracy is never below it),
    (1 + margin) x the largest value any arm saw for a minimised one (GFLOPs are positive)."""
    seen = pd.concat([frame[list(objectives)] for frame in frames], ignore_index=True)
    if seen.empty:
        raise ValueError("no arm completed a trial: there is nothing to place a reference point by")
    return [0.0 if direction == "max" else (1 + margin) * float(seen[name].max())
            for name, direction in objectives.items()]


# --------------------------------------------------------------------------------------------
# Reading an arm's results


def arm_points(run_dir: Path, *, started: float, objectives: Sequence[str]) -> pd.DataFrame:
    """A searchlab run's completed trials (``time_s``: finish time after ``started``, the objectives,
    ``feasible``), plus its curves' points when ``points.parquet`` exists: each at its trial's finish
    time. Stopped (early-stopped) and failed trials are not results and add nothing."""
    from searchlab.results import TrialsTable

    trials = TrialsTable.in_run(run_dir).read()
    done = trials[trials["status"] == "completed"]
    frame = pd.DataFrame({
        "trial_id": done["trial_id"].to_numpy(),
        "time_s": [stamp.timestamp() - started for stamp in done["finished"]],
        **{name: done[name].to_numpy(dtype=float) for name in objectives},
        "feasible": ~done["feasible"].eq(False).fillna(False).astype(bool).to_numpy(),
    })
    return pd.concat([frame, _curve_points(run_dir / POINTS_FILE, trials=frame, objectives=objectives)],
                     ignore_index=True)


def _curve_points(path: Path, *, trials: pd.DataFrame, objectives: Sequence[str]) -> pd.DataFrame:
    """The points table's rows of completed trials, timed by their trial (empty when there is none)."""
    if not path.is_file():
        return trials.iloc[0:0]
    points = pd.read_parquet(path)
    if "feasible" not in points:
        points["feasible"] = True
    points = points[["trial_id", *objectives, "feasible"]].merge(trials[["trial_id", "time_s"]], on="trial_id")
    return points[list(trials.columns)]


def plain_points(run_dir: Path, *, started: float, objectives: Sequence[str]) -> pd.DataFrame:
    """Arm (b)'s completed trials in the same form as `arm_points` (it has no constraints: all feasible)."""
    records = json.loads((run_dir / PLAIN_RESULTS).read_text())
    done = [r for r in records if r["status"] == "completed"]
    return pd.DataFrame({"trial_id": [r["trial_id"] for r in done],
                         "time_s": [r["finished_at"] - started for r in done],
                         **{name: [float(r[name]) for r in done] for name in objectives},
                         "feasible": [True] * len(done)})


def trial_counts(run_dir: Path, *, plain: bool) -> dict[str, int]:
    """Trials per status (completed, stopped, failed) of an arm's run."""
    if plain:
        statuses = [r["status"] for r in json.loads((run_dir / PLAIN_RESULTS).read_text())]
    else:
        from searchlab.results import TrialsTable

        statuses = list(TrialsTable.in_run(run_dir).read()["status"])
    return {status: statuses.count(status) for status in sorted(set(statuses))}


# --------------------------------------------------------------------------------------------
# The arms' sweep files


def arm_tree(arm: str, *, demo: Mapping[str, Any], storage: Path, manifest: Path, overrides: Mapping[str, Any],
             trials: int | None) -> dict[str, Any]:
    """The sweep file of one arm: the demo with its overrides, its own storage (hence cache) and name."""
    tree = json.loads(json.dumps(demo))  # a deep copy of plain YAML values
    for key, value in overrides.items():
        problem = set_dotted(tree, key, value)
        if problem:
            raise ValueError(f"override {problem}")
    base, search = tree["base"], tree["search"]
    base["name"] = f"effbench-{arm}"
    base["data"]["manifest"] = str(manifest)
    if trials is not None:
        search["trials"] = trials
    if arm == "b":  # a plain Tune script has no Pareto-aware scheduler
        search["scheduler"] = "none"
        search.pop("pareto_asha", None)
    else:
        search["scheduler"] = "pareto_asha"
        search["sampler"] = SAMPLERS[arm] or search["sampler"]
    tree["storage"] = str(storage)
    return tree


def run_arm(arm: str, *, sweep_file: Path, log: Path) -> tuple[float, float]:
    """Run one arm in its own process; its (start, end) wall-clock times. Its output goes to ``log``."""
    if arm == "b":
        command = [sys.executable, str(Path(__file__).resolve()), "--plain-arm", str(sweep_file)]
    else:
        command = [sys.executable, "-m", "searchlab.sweep", str(sweep_file), "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    started = time.time()
    with log.open("w") as out:
        code = subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    ended = time.time()
    if code != 0:
        print(f"  arm {arm} exited with {code}; see {log}", flush=True)
    return started, ended


# --------------------------------------------------------------------------------------------
# Arm (b): the plain Ray Tune script (run in its own process by `run_arm`)


def plain_trial(params: dict[str, Any], *, sweep_json: str, root: str) -> None:
    """One trial as a user would write it: teacher, stage 1 and stage 2 trained from scratch in this
    trial's own folder, each a Ray Train run (no cache, so stage 2 reads live backbone outputs)."""
    from ray import tune

    from searchlab.config import Sweep
    from searchlab.methods import get_method
    from searchlab.train.checkpointing import read_artifact_metrics
    from searchlab.train.launch import run_stage

    sweep = Sweep.model_validate_json(sweep_json)
    config = sweep.trial_config(params).with_overrides({"resources.launch": "distributed"})
    folder = Path(root) / "trials" / tune.get_context().get_trial_id()
    artifacts: dict[str, Path] = {}
    for stage in get_method(config.method).stages:
        if stage.loop is None:  # the stage-2 inputs cache: a user without searchlab has none
            continue
        inputs = {need: artifacts[need] for need in stage.needs if need in artifacts}
        run_stage(stage, config=config, inputs=inputs, output_dir=folder / stage.name,
                  storage_path=folder / "ray-train", name=stage.name)
        artifacts[stage.name] = folder / stage.name
    metrics = read_artifact_metrics(artifacts[get_method(config.method).stages[-1].name])
    tune.report({name: float(metrics[name]) for name in sweep.search.objectives} | {"finished_at": time.time()})


def run_plain_arm(sweep_file: Path) -> int:
    """Arm (b): Ray Tune + OptunaSearch over the sweep's space, budget, seed and concurrency."""
    from searchlab.config import load_sweep
    from searchlab.ray_output import prepare_driver_env

    prepare_driver_env("quiet")  # before Ray is imported
    import optuna
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from searchlab.space import encode_point, suggest
    from searchlab.tune_driver import init_ray, trial_resources

    sweep = load_sweep(sweep_file)
    search = sweep.search
    run_dir = Path(sweep.storage) / sweep.base.name
    run_dir.mkdir(parents=True, exist_ok=True)
    init_ray(None, output="quiet")  # a sweep's own local Ray, so its trials reserve what searchlab's do
    searcher = OptunaSearch(
        space=functools.partial(suggest, space=sweep.space, base=sweep.base),
        metric=list(search.objectives), mode=list(search.objectives.values()),
        points_to_evaluate=[encode_point(point, sweep.space) for point in search.points_to_evaluate] or None,
        sampler=optuna.samplers.TPESampler(seed=search.seed))
    trainable = tune.with_resources(
        tune.with_parameters(plain_trial, sweep_json=sweep.model_dump_json(), root=str(run_dir)),
        trial_resources())
    tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(
        search_alg=searcher, num_samples=search.trials, max_concurrent_trials=search.max_concurrent),
        run_config=tune.RunConfig(storage_path=str(run_dir), name="tune", verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0)))
    grid = tuner.fit()
    records = [{"trial_id": result.metrics.get("trial_id") if result.metrics else None,
                "status": "failed" if result.error is not None else "completed",
                **({name: result.metrics[name] for name in [*search.objectives, "finished_at"]}
                   if result.error is None else {"error": str(result.error).splitlines()[-1]})}
               for result in grid]
    (run_dir / PLAIN_RESULTS).write_text(json.dumps(records, indent=2))
    ray.shutdown()
    return 0 if any(r["status"] == "completed" for r in records) else 1


# --------------------------------------------------------------------------------------------
# Output


def summarise(arm: str, *, curve: list[tuple[float, float]], wall_s: float, counts: Mapping[str, int]) -> dict[str, Any]:
    final = curve[-1][1]
    return {"arm": arm, "description": ARMS[arm], "final_hv": final, "time_to_final_s": time_to_reach(curve, final),
            "wall_s": wall_s, "trials": dict(counts), "curve": [list(p) for p in curve]}


def plot(arms: Mapping[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for arm, result in arms.items():
        seconds, volumes = zip(*(result["curve"] + [[result["wall_s"], result["final_hv"]]]))
        axes.step(np.asarray(seconds) / 60, volumes, where="post", label=f"({arm}) {result['description']}")
    axes.set_xlabel("wall-clock minutes since the arm started")
    axes.set_ylabel("hypervolume of the feasible front")
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def markdown_table(results: Mapping[str, Any]) -> str:
    rows = ["| arm | final HV | time to final HV | arm wall time | trials |", "|---|---|---|---|---|"]
    for arm, r in results["arms"].items():
        to_final = r["time_to_final_s"]
        rows.append(f"| ({arm}) {r['description']} | {r['final_hv']:.4f} | "
                    f"{f'{to_final:.0f} s' if to_final is not None else '-'} | {r['wall_s']:.0f} s | "
                    + ", ".join(f"{n} {s}" for s, n in r["trials"].items()) + " |")
    ratio = results.get("time_to_front")
    if ratio is not None:
        rows.append("")
        rows.append(f"(b) reaches its final HV {ratio['target_hv']:.4f} at {ratio['plain_s']:.0f} s; " + (
            f"(a) reaches it at {ratio['shipped_s']:.0f} s: ratio **{ratio['ratio']:.1f}x**" if ratio["reached"]
            else "(a) never reaches it"))
    return "\n".join(rows)


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# --------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_TRIALS} trials per arm and short stages ({QUICK}); default: the demo's settings")
    parser.add_argument("--trials", type=int, default=None, help="trial budget per arm (overrides --quick's and the demo's)")
    parser.add_argument("--arms", default="a,b,c,d", help="which arms, in the order run (default a,b,c,d)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "search_efficiency",
                        help="a new folder for the arms' storage, the figure and the JSON")
    parser.add_argument("--json", type=Path, default=None, help="the results as one JSON object (default OUT/results.json)")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="the demo's data manifest (default: the demo's, relative to the repository root)")
    parser.add_argument("--plain-arm", type=Path, default=None, help=argparse.SUPPRESS)  # internal: run arm (b)
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Path]]:
    """The demo's tree and each arm's sweep file under OUT (which must be new); the data exists after it."""
    from searchlab.config import load_sweep
    from searchlab.data_check import check_manifest, ensure_data

    arms = [arm.strip() for arm in args.arms.split(",") if arm.strip()]
    unknown = [arm for arm in arms if arm not in ARMS]
    if unknown:
        raise SystemExit(f"search_efficiency: unknown arms {unknown}; choose from {', '.join(ARMS)}")
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"search_efficiency: {args.out} is not empty; give a new --out")
    demo = yaml.safe_load(DEMO.read_text())
    manifest = (args.manifest or ROOT / demo["base"]["data"]["manifest"]).resolve()
    overrides = QUICK if args.quick else {}
    trials = args.trials if args.trials is not None else (QUICK_TRIALS if args.quick else None)
    files: dict[str, Path] = {}
    for arm in arms:
        folder = args.out / arm
        folder.mkdir(parents=True)
        files[arm] = folder / "sweep.yaml"
        files[arm].write_text(yaml.safe_dump(arm_tree(arm, demo=demo, storage=folder, manifest=manifest,
                                                      overrides=overrides, trials=trials), sort_keys=False))
    sweep = load_sweep(next(iter(files.values())))  # validates the first arm's file, then the data
    ensure_data(sweep.base.data, generate=True)
    check_manifest(sweep.base.data)
    return demo, files


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plain_arm is not None:
        return run_plain_arm(args.plain_arm)
    demo, files = prepare(args)
    objectives = dict(demo["search"]["objectives"])
    machine = {"cpus": os.cpu_count(), "uptime_before": _uptime(), "load_before": os.getloadavg()[0]}
    frames: dict[str, pd.DataFrame] = {}
    walls: dict[str, float] = {}
    counts: dict[str, dict[str, int]] = {}
    for arm, sweep_file in files.items():
        print(f"arm ({arm}) {ARMS[arm]}: running ({_uptime()})", flush=True)
        started, ended = run_arm(arm, sweep_file=sweep_file, log=sweep_file.with_name("log.txt"))
        run_dir = sweep_file.parent / f"effbench-{arm}"
        walls[arm] = ended - started
        read = plain_points if arm == "b" else arm_points
        frames[arm] = read(run_dir, started=started, objectives=list(objectives))
        counts[arm] = trial_counts(run_dir, plain=arm == "b")
        print(f"arm ({arm}): {walls[arm]:.0f} s, trials {counts[arm]}", flush=True)
    machine.update({"uptime_after": _uptime(), "load_after": os.getloadavg()[0]})
    reference = common_reference(list(frames.values()), objectives=objectives)
    arms = {arm: summarise(arm, curve=hypervolume_curve(frame, objectives=objectives, reference=reference),
                           wall_s=walls[arm], counts=counts[arm]) for arm, frame in frames.items()}
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full", "objectives": objectives, "reference": reference,
        "reference_rule": f"0 for a maximised objective, (1 + {REFERENCE_MARGIN}) x the largest value any arm saw "
                          "for a minimised one",
        "overrides": QUICK if args.quick else {}, "arms": arms, "machine": machine,
        "points": {arm: frame.to_dict(orient="records") for arm, frame in frames.items()},
    }
    if "a" in arms and "b" in arms:
        results["time_to_front"] = time_to_front_ratio(arms["b"]["curve"], arms["a"]["curve"])
    plot(arms, args.out / "hypervolume.png")
    table = markdown_table(results)
    (args.out / "results.md").write_text(table + "\n")
    json_path = args.json or args.out / "results.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nreference point {dict(zip(objectives, reference))}; machine: {machine['cpus']} CPUs, "
          f"{machine['uptime_before']} -> {machine['uptime_after']}\n{table}\n\nfigure {args.out / 'hypervolume.png'}, "
          f"results {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
