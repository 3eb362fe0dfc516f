"""What a finished sweep cost: stage-1 trainings, the stage-2 cache's speed-up, the fixed overhead.

Reads a run folder written by ``python -m searchlab.sweep`` (the demo's is ``runs/demo``, its
cache ``runs/cache``) and reports:

(a) stage-1 trainings: the cache ledger's build count of each ``stage1`` (and ``teacher``) key that
    the run's completed trials used, against the number of distinct keys. Each configuration must
    have been trained exactly once (PASS/FAIL). The ledger spans the cache's lifetime: a key an
    earlier run trained shows its one build there.
(b) stage 2 with the backbone-output cache against without it, measured in this process with the
    stages' own step functions, optimizer and schedules (no Ray: this is the data path): all
    ``stage2.epochs`` epochs of the run's first completed trial from the run's cache folder, then
    the same training with live outputs (decode, frozen backbone at every bit-width, teacher, each
    epoch). The live run stops after ``--live-budget`` seconds and is extrapolated linearly per
    epoch; the output says so when it does.
(c) fixed overhead per completed trial: its wall time (the driver's start/finish timestamps) split,
    with the stage-2 TensorBoard events (``epoch_seconds`` and when each was written) and the
    start of the stage's launch (the creation of its Ray run folder when distributed, its start record
    ``local/start-*.json`` when local: ``resources.launch``), into trial start, stage 1, stage-2 inputs, stage launch, epochs,
    evaluations (the stage's ``eval_seconds`` events: the rungs' evaluations and the final one on the
    decoded val videos, which measure the trial's figures), between epochs (checkpoint/report) and tail.
    Fixed overhead = start + launch + between + tail (evaluations and the curve are measurement, not
    overhead; a run written before stages logged ``eval_seconds`` has the evaluation timed in (b)
    subtracted instead), reported as a share of the trial's wall time. With ``--probe-launch``, or when no trial has
    those events, it also times one ``TorchTrainer.fit()`` of an empty loop and a fresh
    ``import torch, torchvision``.

Timings depend on what else runs on the machine: the load average is printed with them.

    .venv/bin/python bench/sweep_cost.py --run-dir runs/demo [--json OUT] [--live-budget 180] [--probe-launch]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from searchlab.cache import ArtifactCache
from searchlab.config import Sweep, TrialConfig
from searchlab.models import TemperatureSchedule
from searchlab.pipeline import CACHE_DIR_NAME
from searchlab.results import TRIALS_FILE, TrialsTable, decoded_json
from searchlab.train.backbone_cache import CachedBackboneOutputs, cache_meta, load_backbone
from searchlab.train.loader import EpochSampler, clip_dataset, load_manifest, make_loader
from searchlab.train.schedules import cosine_scheduler
from searchlab.train.stage1 import load_teacher
from searchlab.train.stage2 import (
    FrozenFeatures,
    LiveOutputs,
    PolicyDecisions,
    Source,
    build_policy,
    input_metrics,
    policy_optimizer,
    stage2_step,
    train_mode,
)
from searchlab.train.worker import LocalRun, run_epoch
from searchlab.run_dir import SWEEP_SNAPSHOT, read_sweep_snapshot, resolve_in

CPU = LocalRun(tempfile.mkdtemp(prefix="searchlab-bench-")).worker()
RAY_STORAGE_MARKER = ".validate_storage_marker"  # Ray Train writes it when a run's folder is set up
Batch = dict[str, torch.Tensor]


# --------------------------------------------------------------------------------------------
# The run


def load_run(run_dir: Path) -> tuple[Sweep, pd.DataFrame, dict[str, int]]:
    """The sweep snapshot, the completed trials (with decoded ``extra``) and the count per status."""
    missing = [str(p) for p in (run_dir / SWEEP_SNAPSHOT, run_dir / TRIALS_FILE) if not p.is_file()]
    if missing:
        raise SystemExit(f"sweep_cost: {', '.join(missing)} missing; "
                         "run the sweep first (`make demo` writes runs/demo)")
    sweep = read_sweep_snapshot(run_dir)
    trials = TrialsTable.in_run(run_dir).read()
    statuses = {str(k): int(v) for k, v in trials["status"].value_counts().items()}
    completed = trials[trials["status"] == "completed"].reset_index(drop=True)
    if completed.empty:
        raise SystemExit(f"sweep_cost: {run_dir / TRIALS_FILE} has no completed trial ({statuses}); wait for the sweep")
    completed["extra"] = decoded_json(completed, "metrics_extra")
    completed["keys"] = decoded_json(completed, "stage_keys")
    completed["seconds"] = decoded_json(completed, "stage_seconds")
    return sweep, completed, statuses


def trial_config(sweep: Sweep, row: pd.Series) -> TrialConfig:
    return sweep.trial_config(json.loads(row["params"]))


# --------------------------------------------------------------------------------------------
# (a) stage-1 trainings against distinct configurations


def count_trainings(cache: ArtifactCache, completed: pd.DataFrame) -> dict[str, Any]:
    """Per kind: ledger builds of the keys the run used; PASS when every key was built exactly once."""
    keys = {kind: {keys[kind] for keys in completed["keys"]} for kind in ("teacher", "stage1")}
    ledger = cache.ledger()
    result: dict[str, Any] = {}
    for kind, used in keys.items():
        entries = ledger.get(kind, {})
        builds = {key: int(entries.get(key, {}).get("builds", 0)) for key in sorted(used)}
        result[kind] = {
            "distinct_keys": len(used),
            "trainings": sum(builds.values()),
            "builds_per_key": builds,
            "failed_attempts": sum(int(entries.get(key, {}).get("failures", 0)) for key in used),
            "build_seconds": sum(float(entries.get(key, {}).get("build_s", 0.0)) for key in used),
            "pass": all(count == 1 for count in builds.values()),
        }
    result["pass"] = all(result[kind]["pass"] for kind in keys)
    return result


# --------------------------------------------------------------------------------------------
# (b) stage 2 from the cache against live backbone outputs


def train_stage2(
    config: TrialConfig, policy: Any, source: Source, *, budget_s: float | None
) -> list[dict[str, float]]:
    """``stage2_loop``'s training epochs in this process: same optimizer, cosine lr, τ schedule and step.

    Stops early once ``budget_s`` seconds have passed (None: never); returns ``run_epoch``'s result per epoch.
    """
    hp = config.stage2
    optimizer = policy_optimizer(policy, config=config)
    model = PolicyDecisions(policy)
    steps = len(source)
    scheduler = cosine_scheduler(optimizer, windows=[(0, hp.epochs * steps)] * len(optimizer.param_groups))
    schedule = TemperatureSchedule.from_dict(hp.temperature)
    started = time.perf_counter()
    epochs = []
    for epoch in range(hp.epochs):
        train_mode(policy, config=config)

        def step(iteration: int, batch: Batch, epoch: int = epoch) -> dict[str, torch.Tensor]:
            tau = schedule.value(epoch=epoch, iteration=iteration, iterations_per_epoch=steps, total_epochs=hp.epochs)
            terms = stage2_step(model=model, optimizer=optimizer, batch=batch, tau=tau, config=config)
            scheduler.step()
            return terms

        epochs.append(run_epoch(CPU, source.epoch(epoch), step))
        if budget_s is not None and time.perf_counter() - started > budget_s:
            break
    return epochs


def _identity(batch: Batch) -> Batch:
    """Cached batches are already on the CPU, where this benchmark runs."""
    return batch


def _source(
    config: TrialConfig, dataset: Any, *, shuffle: bool, workers: int, transform: Callable[[Batch], Batch]
) -> Source:
    """A stage-2 ``Source`` over ``dataset`` as ``stage2_loop`` builds one for a single worker."""
    sampler = EpochSampler(len(dataset), rank=0, world_size=1, shuffle=shuffle, seed=config.seed)
    loader = make_loader(dataset, sampler=sampler, batch_size=config.stage2.batch_size, workers=workers,
                         pin_memory=False)
    if isinstance(dataset, CachedBackboneOutputs):
        loader.collate_fn = CachedBackboneOutputs.collate
    return Source(dataset, loader=loader, sampler=sampler, transform=transform)


def compare_stage2(config: TrialConfig, *, teacher_dir: Path, stage1_dir: Path, outputs_dir: Path,
                   budget_s: float) -> dict[str, Any]:
    """Wall time of one whole stage-2 training from the cache and with live outputs, and their ratio.

    Each time runs from building the policy and the data source to the last step, as in a stage
    worker. The cached run is also evaluated on the cached val split (timed separately).
    """
    manifest, root = load_manifest(config.data)
    epochs_total = config.stage2.epochs
    expected = cache_meta(config, stage1_dir=stage1_dir)

    started = time.perf_counter()
    torch.manual_seed(config.seed * 1000)  # as seed_worker seeds rank 0
    policy = build_policy(config, teacher_dir=teacher_dir)
    train = CachedBackboneOutputs(outputs_dir, split="train", expected=expected)
    memo = FrozenFeatures(policy, train) if config.stage2.lr_body == 0 else _identity
    source = _source(config, train, shuffle=True, workers=0, transform=memo)
    cached = train_stage2(config, policy, source, budget_s=None)
    cached_s = time.perf_counter() - started
    started = time.perf_counter()
    val = CachedBackboneOutputs(outputs_dir, split="val", expected=expected)
    evaluation = input_metrics(CPU, config, _source(config, val, shuffle=False, workers=0, transform=_identity),
                           policy, manifest)
    eval_s = time.perf_counter() - started

    started = time.perf_counter()
    torch.manual_seed(config.seed * 1000)
    policy = build_policy(config, teacher_dir=teacher_dir)
    live = LiveOutputs(backbone=load_backbone(config, stage1_dir=stage1_dir, num_classes=manifest.num_classes),
                       teacher=load_teacher(config, teacher_dir=teacher_dir, num_classes=manifest.num_classes),
                       config=config, device=CPU.device)
    clips = clip_dataset(config.data, manifest=manifest, root=root, split="train", train=True, seed=config.seed)
    source = _source(config, clips, shuffle=True, workers=config.data.loader_workers, transform=live)
    lived = train_stage2(config, policy, source, budget_s=budget_s)
    live_measured_s = time.perf_counter() - started
    live_epochs_s = sum(e["epoch_seconds"] for e in lived)
    live_setup_s = live_measured_s - live_epochs_s
    live_s = live_setup_s + live_epochs_s * epochs_total / len(lived)
    return {
        "epochs": epochs_total,
        "batch_size": config.stage2.batch_size,
        "cached_s": cached_s,
        "cached_epochs_s": sum(e["epoch_seconds"] for e in cached),
        "cached_data_wait_fraction": _weighted(cached, "data_wait_fraction"),
        "cached_eval_s": eval_s,
        "cached_accuracy": float(evaluation["accuracy"]),
        "live_s": live_s,
        "live_epochs_measured": len(lived),
        "live_measured_s": live_measured_s,
        "live_setup_s": live_setup_s,
        "live_extrapolated": len(lived) < epochs_total,
        "live_data_wait_fraction": _weighted(lived, "data_wait_fraction"),
        "ratio": live_s / cached_s,
    }


def _weighted(epochs: list[dict[str, float]], name: str) -> float:
    seconds = sum(e["epoch_seconds"] for e in epochs)
    return sum(e[name] * e["epoch_seconds"] for e in epochs) / max(seconds, 1e-9)


# --------------------------------------------------------------------------------------------
# (c) fixed overhead per trial


def epoch_events(log_dir: Path) -> tuple[list[tuple[float, float]], float | None]:
    """(time written, epoch_seconds) per epoch in epoch order (a re-logged epoch keeps its last event),
    and the seconds of all evaluations (``eval_seconds``; None when the stage did not log them)."""
    if not log_dir.is_dir():
        return [], None
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags().get("scalars", [])
    if "epoch_seconds" not in tags:
        return [], None
    by_epoch = {event.step: (event.wall_time, event.value) for event in events.Scalars("epoch_seconds")}
    evaluations = ({event.step: event.value for event in events.Scalars("eval_seconds")}
                   if "eval_seconds" in tags else None)
    return [by_epoch[epoch] for epoch in sorted(by_epoch)], (sum(evaluations.values()) if evaluations else None)


def stage_launched(stage_run: Path) -> float | None:
    """When a stage's launch began: Ray Train's storage marker (a distributed stage), else the first
    start record a local launch writes before it reserves its CPUs (``local/start-*.json``)."""
    marker = stage_run / RAY_STORAGE_MARKER
    if marker.is_file():
        return marker.stat().st_mtime
    local = [json.loads(p.read_text()) for p in (stage_run / "local").glob("start-*.json")]
    local += [json.loads(p.read_text()) for p in (stage_run / "worker-starts").glob("*.json")]  # an earlier layout
    times = [float(start["time"]) for start in local if start.get("launch") == "local"]
    return min(times) if times else None


def trial_breakdown(row: pd.Series, *, run_dir: Path) -> dict[str, Any]:
    """Where one trial's wall time went (seconds); the stage-2 parts only when its events exist.
    ``stage1_s``: teacher and stage 1 (cache hits or builds); ``stage2_s``: stage-2 inputs and stage 2."""
    t_start, t_end = row["started"].timestamp(), row["finished"].timestamp()
    wall = t_end - t_start
    seconds = row["seconds"]
    out: dict[str, Any] = {"trial_id": row["trial_id"], "number": int(row["number"]), "wall_s": wall,
                           "start_s": wall - row["total_s"], "stage1_s": seconds["teacher"] + seconds["stage1"],
                           "stage2_s": seconds["outputs"] + seconds["stage2"],
                           # measuring the curve's other operating points (after stage 2): work that yields
                           # points, not overhead
                           "curve_s": float(row["extra"].get("curve_seconds", 0.0))}
    log_dir = resolve_in(run_dir, row["extra"]["tensorboard"])
    events, eval_s = epoch_events(log_dir)
    launched = stage_launched(log_dir.parent)
    if not events or launched is None:
        return out
    out["launch"] = "local" if (log_dir.parent / "local").is_dir() else "distributed"
    first_start = events[0][0] - events[0][1]
    last_end = events[-1][0]
    epochs_s = sum(seconds for _, seconds in events)
    out.update({
        # stage-2 cache: a hit, its build, or waiting for another trial's build
        "inputs_s": launched - (t_end - out["curve_s"] - out["stage2_s"]),
        "launch_s": first_start - launched,  # TorchTrainer: worker group, imports, data and model set-up
        "epochs": len(events),
        "epochs_s": epochs_s,
        "eval_s": eval_s,  # the rungs' and the final evaluation: they measure the trial's figures
        "between_s": (last_end - first_start) - epochs_s - (eval_s or 0.0),  # checkpoint + report each epoch
    })
    # last checkpoint, artifact, publish, Ray teardown, result to the driver
    out["tail_s"] = t_end - last_end - out["curve_s"]
    return out


def add_fixed_overhead(trial: dict[str, Any], *, cached_eval_s: float) -> dict[str, Any]:
    """``fixed_s`` (start + launch + between + tail) and its share of the wall time. A stage that did not
    log its evaluations' seconds has them in ``between_s``: the evaluation timed in (b) is subtracted."""
    if "epochs_s" not in trial:
        return trial
    unlogged_eval = cached_eval_s if trial["eval_s"] is None else 0.0
    fixed = trial["start_s"] + trial["launch_s"] + trial["between_s"] - unlogged_eval + trial["tail_s"]
    # the share with the curve's measurement as work, and as if the trial had no curve
    return {**trial, "fixed_s": fixed, "fixed_share": fixed / trial["wall_s"],
            "fixed_share_without_curve": fixed / (trial["wall_s"] - trial["curve_s"])}


def _empty_loop() -> None:
    """A stage with no work: what a fit() of it takes is the launch."""


def probe_launch(config: TrialConfig) -> dict[str, float]:
    """Seconds of a fresh ``import torch, torchvision``, of ``ray.init`` and of one empty ``TorchTrainer.fit()``."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    code = "import time; t = time.perf_counter(); import torch, torchvision; print(time.perf_counter() - t)"
    imports = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    started = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - started
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sweep-cost-") as storage:
            trainer = TorchTrainer(_empty_loop, scaling_config=ScalingConfig(
                num_workers=config.resources.workers, resources_per_worker={"CPU": config.resources.cpus_per_worker}),
                run_config=RunConfig(name="empty", storage_path=storage))
            started = time.perf_counter()
            trainer.fit()
            fit_s = time.perf_counter() - started
    finally:
        ray.shutdown()
    return {"import_torch_torchvision_s": imports, "ray_init_s": init_s, "empty_fit_s": fit_s}


# --------------------------------------------------------------------------------------------
# Output


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def print_report(results: dict[str, Any]) -> None:
    machine = results["machine"]
    print(f"run {results['run_dir']}: trials {results['statuses']}")
    print(f"machine: {machine['cpus']} CPUs, shared; load average {machine['load_before']:.2f} before, "
          f"{machine['load_after']:.2f} after; torch threads {machine['torch_threads']}")
    print("\n(a) trainings against distinct configurations (cache ledger)")
    counts = results["trainings"]
    for kind in ("teacher", "stage1"):
        c = counts[kind]
        print(f"  {kind:8s} trainings {c['trainings']:3d}   distinct keys {c['distinct_keys']:3d}   "
              f"failed attempts {c['failed_attempts']}   build time {c['build_seconds']:7.1f} s   "
              f"{'PASS' if c['pass'] else 'FAIL'}")
    print(f"  {'PASS' if counts['pass'] else 'FAIL'}: every configuration trained exactly once")

    s2 = results["stage2"]
    print(f"\n(b) one stage-2 training, {s2['epochs']} epochs, batch {s2['batch_size']}, in-process (no Ray)")
    print(f"  cached outputs  {s2['cached_s']:8.1f} s   data wait {s2['cached_data_wait_fraction']:6.1%}   "
          f"(+ final evaluation {s2['cached_eval_s']:.1f} s; accuracy {s2['cached_accuracy']:.3f}, "
          f"the trial recorded {s2['trial_accuracy']:.3f})")
    live_note = (f"extrapolated from {s2['live_epochs_measured']} of {s2['epochs']} epochs "
                 f"({s2['live_measured_s']:.1f} s measured, {s2['live_setup_s']:.1f} s of it set-up)"
                 if s2["live_extrapolated"] else "all epochs measured")
    print(f"  live outputs    {s2['live_s']:8.1f} s   data wait {s2['live_data_wait_fraction']:6.1%}   ({live_note})")
    print(f"  ratio live / cached: {s2['ratio']:.1f}x (target >= 10x: {'PASS' if s2['ratio'] >= 10 else 'FAIL'}); "
          f"the cache was built once in {s2['cache_build_s']:.1f} s for {s2['trials_sharing_cache']} trial(s)")

    over = results["overhead"]
    print("\n(c) trial wall time (s) and its fixed overhead "
          "(fixed = start + launch + between + tail; evaluations and the curve are measurement)")
    header = ("trial", "wall", "start", "stage1", "inputs", "launch", "epochs", "eval", "between", "tail", "curve",
              "fixed", "share", "w/o curve", "stage 2")
    print("  " + " ".join(f"{h:>8s}" for h in header))
    for t in over["trials"]:
        cells = [t["trial_id"]] + [t.get(k) for k in ("wall_s", "start_s", "stage1_s", "inputs_s", "launch_s",
                                                       "epochs_s", "eval_s", "between_s", "tail_s", "curve_s",
                                                       "fixed_s")]
        text = [f"{cells[0]:>8s}"] + [f"{v:8.1f}" if v is not None else f"{'-':>8s}" for v in cells[1:]]
        shares = [t.get("fixed_share"), t.get("fixed_share_without_curve")]
        print("  " + " ".join(text) + "".join(f" {v:8.1%}" if v is not None else f" {'-':>8s}" for v in shares)
              + f" {t.get('launch', '-'):>8s}")
    if over["trials_with_breakdown"]:
        print(f"  fixed overhead: mean share {over['mean_share']:.1%} per trial, {over['pooled_share']:.1%} of all "
              "trial time")
    print(f"  sweep wall time {over['sweep_wall_s']:.0f} s for {len(over['trials'])} completed trials")
    probe = results.get("launch_probe")
    if probe:
        print(f"  probe: import torch+torchvision {probe['import_torch_torchvision_s']:.1f} s, "
              f"ray.init {probe['ray_init_s']:.1f} s, empty TorchTrainer.fit() {probe['empty_fit_s']:.1f} s")


def _write_json(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a finished sweep's folder, e.g. runs/demo")
    parser.add_argument("--json", type=Path, help="also write the results to this file as one JSON object")
    parser.add_argument("--live-budget", type=float, default=180.0,
                        help="seconds after which the live stage-2 run stops and is extrapolated (default 180)")
    parser.add_argument("--probe-launch", action="store_true",
                        help="also time an empty TorchTrainer.fit() and a fresh import of torch + torchvision")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    sweep, completed, statuses = load_run(args.run_dir)
    cache = ArtifactCache(args.run_dir.parent / CACHE_DIR_NAME)
    # Everything read from the run and the ledger before the long measurement: a new sweep may replace them.
    trainings = count_trainings(cache, completed)
    breakdowns = [trial_breakdown(row, run_dir=args.run_dir) for _, row in completed.iterrows()]
    first = completed.iloc[0]
    config = trial_config(sweep, first)
    outputs_key = first["keys"]["outputs"]
    cache_build_s = float(cache.ledger().get("outputs", {}).get(outputs_key, {}).get("build_s", 0.0))
    artifacts = {name: resolve_in(args.run_dir, path) for name, path in first["extra"]["artifacts"].items()}

    torch.set_num_threads(max(1, int(config.resources.cpus_per_worker)))  # a Ray stage worker's OMP_NUM_THREADS
    stage2 = compare_stage2(config, teacher_dir=artifacts["teacher"], stage1_dir=artifacts["stage1"],
                            outputs_dir=cache.path("outputs", outputs_key) / "outputs", budget_s=args.live_budget)
    stage2["trial_accuracy"] = float(first["accuracy"])
    stage2["cache_build_s"] = cache_build_s
    stage2["trials_sharing_cache"] = sum(keys["stage1"] == first["keys"]["stage1"] for keys in completed["keys"])

    trials = [add_fixed_overhead(t, cached_eval_s=stage2["cached_eval_s"]) for t in breakdowns]
    broken_down = [t for t in trials if "fixed_s" in t]
    overhead = {
        "trials": trials,
        "trials_with_breakdown": len(broken_down),
        "mean_share": _mean(t["fixed_share"] for t in broken_down),
        "pooled_share": sum(t["fixed_s"] for t in broken_down) / max(sum(t["wall_s"] for t in broken_down), 1e-9),
        "sweep_wall_s": (completed["finished"].max() - completed["started"].min()).total_seconds(),
    }
    results: dict[str, Any] = {
        "run_dir": str(args.run_dir),
        "statuses": statuses,
        "trainings": trainings,
        "stage2": stage2,
        "overhead": overhead,
    }
    if args.probe_launch or not broken_down:
        results["launch_probe"] = probe_launch(config)
    results["machine"] = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "load_before": load_before, "load_after": os.getloadavg()[0]}
    print_report(results)
    if args.json:
        _write_json(args.json, results)
    return 0 if results["trainings"]["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
