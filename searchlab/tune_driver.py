"""Ray Tune side of a sweep: the Tuner, its Optuna searcher, the trial function, the results stream.

Kept apart from `searchlab.sweep` (the CLI) so that validating and planning a sweep never imports
Ray. The trial function runs in a Tune worker process and calls `searchlab.pipeline.run_trial`;
the driver-side `TrialsTableCallback` is the single writer of RUN_DIR/trials.parquet.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import ray
import ray.train
from ray import tune

from searchlab.atomic_dir import write_text_atomic
from searchlab.config import Sweep, TrialConfig
from searchlab.objectives import METRICS
from searchlab.pareto_asha import EPOCH_KEY, PROGRESS_KEY, ParetoASHA, StoppedAsPruned
from searchlab.progress import TrialTag, figures, output_level, parse_trial_name
from searchlab.ray_output import ray_init_options
from searchlab.results import PointRecord, PointsTable, TrialRecord, TrialsTable
from searchlab.run_dir import TUNE_DIR_NAME, relative_path, write_sweep_snapshot
from searchlab.space import constraint_violations, encode_point, make_sampler, suggest
from searchlab.tune_search import VIOLATIONS_KEY, ConstrainedOptunaSearch

# The trial process only drives Ray Train (its workers hold the real CPU/GPU reservations), so it
# reserves a sliver of a CPU: a whole one would starve the stage workers on a small machine.
TRIAL_DRIVER_CPUS = 0.01
# Tune snapshots the experiment (trial states, searcher) at most every 10 s by default, so a driver
# killed within 10 s of a trial finishing reran that trial on --resume (and lost trials started
# since). Trials take minutes and the snapshot is small: take one every second.
EXPERIMENT_SNAPSHOT_S = "1"
# A cluster whose head offers this custom resource (cluster.yaml) runs the trial processes there: a worker
# node lost mid-stage then takes only the stage's workers with it, and the stage resumes elsewhere.
TRIAL_DRIVER_RESOURCE = "searchlab_trial_driver"
# A local Ray offers it too, so that trial processes take none of the CPUs: with even a sliver each, two
# trials on a 2-CPU machine left 1.98 CPUs, one stage worker at a time, and the other trial waited for
# a whole CPU (`search.max_concurrent` bounds the trials; this only has to exceed it x TRIAL_DRIVER_CPUS).
LOCAL_DRIVER_SLOTS = 100


def trial_resources() -> dict[str, Any]:
    """What each trial's process reserves: a sliver of the head's driver resource if offered, else of a CPU."""
    if ray.cluster_resources().get(TRIAL_DRIVER_RESOURCE, 0) > 0:
        return {"cpu": 0, TRIAL_DRIVER_RESOURCE: TRIAL_DRIVER_CPUS}
    return {"cpu": TRIAL_DRIVER_CPUS}


def init_ray(address: str | None, *, output: str = "normal") -> None:
    """Join a cluster (address, or RAY_ADDRESS from `ray job submit`) or start a local Ray; ``output``:
    how much the job's processes print (``searchlab.ray_output``)."""
    if ray.is_initialized():
        return
    target = address or os.environ.get("RAY_ADDRESS")
    if target:
        ray.init(address=target, **ray_init_options(output))
    else:
        ray.init(include_dashboard=False, resources={TRIAL_DRIVER_RESOURCE: LOCAL_DRIVER_SLOTS},
                 **ray_init_options(output))


def trial_main(params: dict[str, Any], *, sweep_json: str, run_dir: str) -> None:
    """One trial: resolve its configuration, run the stages, report metrics and constraint violations."""
    from searchlab.pipeline import run_trial  # torch and the stages load in the trial process only
    from searchlab.train.launch import take_stage_records

    sweep = Sweep.model_validate_json(sweep_json)
    overrides = dict(params)  # already decoded: `suggest` returns real values, which Ray passes on
    config: TrialConfig = sweep.trial_config(overrides)
    trial_id = tune.get_context().get_trial_id()
    tag = parse_trial_name(tune.get_context().get_trial_name(), trial_id, epochs=output_level() != "quiet")
    take_stage_records()  # this process's earlier trials' stages are not this trial's
    rungs: dict[str, Any] = {}
    if sweep.search.scheduler == "pareto_asha":  # the per-trial stage reports its rungs (searchlab.pareto_asha)
        from searchlab.pareto_asha import make_relay

        asha = sweep.search.rungs
        rungs = {"eval_every": asha.grace_period, "progress": make_relay(
            list(sweep.search.objectives), grace_period=asha.grace_period, reduction_factor=asha.reduction_factor)}
    try:
        outcome = run_trial(config, run_dir=Path(run_dir), trial=tag, curve=list(sweep.search.curve), **rungs)
        # A diverged stage can end "successfully" with NaN metrics; reported, they would rank on the
        # front (or make Optuna fail the trial without a reason). It fails here, with one.
        problem = nonfinite_problem(outcome, after=outcome["final_stage"])
        if problem:
            raise NonFiniteMetric(problem)
    except BaseException as error:
        # Tune keeps the traceback; the trials table gets the reason in one line, written before the
        # trial dies so the driver's callback can read it.
        write_text_atomic(reason_path(Path(run_dir), trial_id), failure_reason(error))
        raise
    constraints = sweep.search.parsed_constraints()
    violations = constraint_violations(constraints, outcome["metrics"])
    points = [{**point, VIOLATIONS_KEY: list(constraint_violations(constraints, point).values())}
              for point in outcome["points"]]
    tune.report(
        {
            **outcome["metrics"],
            # a list, in the sweep's constraint order: Tune flattens nested dicts in results
            VIOLATIONS_KEY: list(violations.values()),
            "feasible": all(v <= 0 for v in violations.values()),
            "details_json": json.dumps(portable_details(outcome["details"], run_dir=Path(run_dir))),
            "method": outcome["method"],
            "stage_keys_json": json.dumps(outcome["stage_keys"]),
            "stage_seconds_json": json.dumps(outcome["stage_seconds"]),
            "total_s": outcome["total_s"],
            "params_json": json.dumps(overrides),
            "nodes_json": json.dumps(_trial_nodes(take_stage_records())),
            "points_json": json.dumps(points),
        }
    )


def _trial_nodes(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the trial ran: its own process's node, and the nodes of each stage's workers it trained."""
    nodes: dict[str, Any] = {"driver": ray.get_runtime_context().get_node_id()}
    for record in records:  # a fanned-out stage trains once per item
        nodes[record["stage"]] = sorted(set(nodes.get(record["stage"], [])) | set(record["nodes"]))
    return nodes


class NonFiniteMetric(ArithmeticError):
    """A trial ran to its end but reported a NaN or infinite number: it diverged, it has no result."""


def nonfinite_problem(outcome: Mapping[str, Any], *, after: str) -> str | None:
    """The first NaN or infinite number among a trial's metrics and details, as a reason; None if all are finite.

    Details are searched through nested mappings and lists (action usage, per-class values), and
    named by their dotted path, e.g. "accuracy is NaN after stage2".
    """
    for name, value in _numbers({**outcome["metrics"], **outcome["details"]}):
        if not math.isfinite(value):
            text = "NaN" if math.isnan(value) else ("+inf" if value > 0 else "-inf")
            return f"{name} is {text} after {after}"
    return None


def _numbers(value: Any, name: str = "") -> list[tuple[str, float]]:
    if isinstance(value, Mapping):
        return [pair for key, item in value.items() for pair in _numbers(item, f"{name}.{key}" if name else str(key))]
    if isinstance(value, (list, tuple)):
        return [pair for i, item in enumerate(value) for pair in _numbers(item, f"{name}[{i}]")]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [(name, float(value))]
    return []


def portable_details(details: Mapping[str, Any], *, run_dir: Path) -> dict[str, Any]:
    """A trial's details with its artifact and TensorBoard folders relative to the run folder.

    The trials table then names no absolute path: a run folder moved with the cache beside it, or
    read on another machine, still finds them (`searchlab.run_dir.resolve_in(run_dir, path)`).
    """
    portable = dict(details)
    if "artifacts" in portable:
        portable["artifacts"] = {
            name: [relative_path(run_dir, p) for p in path] if isinstance(path, list) else relative_path(run_dir, path)
            for name, path in portable["artifacts"].items()}
    if "tensorboard" in portable:
        portable["tensorboard"] = relative_path(run_dir, portable["tensorboard"])
    return portable


def failure_reason(error: BaseException) -> str:
    """Why a trial failed, in one line that names the problem.

    A stage that fails in its Ray Train workers surfaces as a WorkerGroupError whose own message is
    only "Training failed due to worker errors:"; the reason is the worker's exception (lowest rank).
    Multi-line messages (a configuration's list of problems) are joined, not cut to their heading.
    """
    if isinstance(error, ray.train.WorkerGroupError) and error.worker_failures:
        error = error.worker_failures[min(error.worker_failures)]
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class TrialsTableCallback(tune.Callback):
    """Streams one row per trial into RUN_DIR/trials.parquet, from the driver (a single writer)."""

    def __init__(self, run_dir: str, constraint_names: list[str]) -> None:
        self.run_dir = run_dir
        self.constraint_names = constraint_names
        self._started: dict[str, datetime] = {}

    def _upsert(self, record: TrialRecord) -> None:
        TrialsTable.in_run(self.run_dir).upsert(record)

    def _upsert_points(self, trial_id: str, number: int, method: str | None, points: list[dict[str, Any]]) -> None:
        """The completed trial's curve; its points first, so a trial row marked completed has them."""
        PointsTable.in_run(self.run_dir).upsert(PointRecord(
            trial_id=trial_id, number=number, method=method, cost_bias=point.pop("cost_bias"),
            violations=dict(zip(self.constraint_names, point.pop(VIOLATIONS_KEY))), metrics=point)
            for point in points)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        params = ", ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                           for key, value in (trial.config or {}).items())
        _tag(trials, trial).say(f"started{': ' + params if params else ''}")
        self._started[trial.trial_id] = datetime.now(timezone.utc)
        self._upsert(TrialRecord(trial_id=trial.trial_id, number=_number(trials, trial), status="running",
                                 params=dict(trial.config or {}), started=self._started[trial.trial_id]))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        if not any(name in result for name in METRICS):
            return  # ended without a report: on_trial_error records it
        if result.get(PROGRESS_KEY):  # stopped by the scheduler at a rung: its figures there, not a result
            _tag(trials, trial).say(f"stopped by the scheduler after epoch {result.get(EPOCH_KEY)}: "
                                    + figures(result, tuple(METRICS)))
            self._upsert(TrialRecord(
                trial_id=trial.trial_id, number=_number(trials, trial), status="stopped",
                params=dict(trial.config or {}),
                metrics={**{name: result[name] for name in METRICS if name in result}, "stopped_at_epoch": result.get(EPOCH_KEY)},
                started=self._started.get(trial.trial_id), finished=datetime.now(timezone.utc)))
            return
        _tag(trials, trial).say(f"completed in {result.get('total_s', 0):.0f} s: {figures(result, tuple(METRICS))}")
        self._upsert_points(trial.trial_id, _number(trials, trial), result.get("method"),
                            json.loads(result.get("points_json", "[]")))
        self._upsert(TrialRecord(
            trial_id=trial.trial_id,
            number=_number(trials, trial),
            status="completed",
            params=json.loads(result.get("params_json", "{}")),
            metrics={**{name: result[name] for name in METRICS if name in result},
                     **json.loads(result.get("details_json", "{}"))},
            feasible=bool(result.get("feasible", True)),
            violations=dict(zip(self.constraint_names, result.get(VIOLATIONS_KEY) or [])),
            method=result.get("method"),
            stage_keys=json.loads(result.get("stage_keys_json", "{}")),
            stage_seconds=json.loads(result.get("stage_seconds_json", "{}")),
            total_s=result.get("total_s"),
            started=self._started.get(trial.trial_id),
            finished=datetime.now(timezone.utc),
            nodes=json.loads(result.get("nodes_json", "{}")),
        ))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        reason = _reason(self.run_dir, trial)
        _tag(trials, trial).say(f"failed: {reason} (traceback: {getattr(trial, 'error_file', None) or 'above'})")
        self._upsert(TrialRecord(trial_id=trial.trial_id, number=_number(trials, trial), status="failed",
                                 params=dict(trial.config or {}), error=reason,
                                 started=self._started.get(trial.trial_id), finished=datetime.now(timezone.utc)))


def _number(trials: list, trial: Any) -> int:
    """The trial's place in the sweep: Tune lists trials in creation order (restored ones too)."""
    return next(i for i, other in enumerate(trials) if other.trial_id == trial.trial_id)


def _tag(trials: list, trial: Any) -> TrialTag:
    return TrialTag(number=_number(trials, trial), trial_id=trial.trial_id)


def reason_path(run_dir: Path, trial_id: str) -> Path:
    return run_dir / "trials" / trial_id / "failure.txt"


def _reason(run_dir: str, trial: Any) -> str:
    """Why a trial failed: the line its trial function wrote, else the last line of Tune's traceback."""
    written = reason_path(Path(run_dir), trial.trial_id)
    if written.is_file():
        return written.read_text()
    lines = [line for line in str(trial.get_error() or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "the trial process died without a traceback (killed, or out of memory)"


def build_searcher(sweep: Sweep, *, run_dir: Path) -> ConstrainedOptunaSearch:
    search = sweep.search
    storage = optuna.storages.RDBStorage(f"sqlite:///{run_dir / 'optuna.db'}")
    searcher = StoppedAsPruned if search.scheduler == "pareto_asha" else ConstrainedOptunaSearch
    return searcher(
        space=functools.partial(suggest, space=sweep.space, base=sweep.base,
                                bases=sweep.method_bases() if sweep.cross_method else None),
        metric=list(search.objectives),
        mode=list(search.objectives.values()),
        points_to_evaluate=[encode_point(point, sweep.space) for point in search.points_to_evaluate] or None,
        sampler=make_sampler(search, sweep.space),
        study_name=sweep.base.name,  # optuna-dashboard lists the study by the sweep's name
        storage=storage,
        study_attrs=study_attrs(sweep, run_dir=run_dir),
    )


def study_attrs(sweep: Sweep, *, run_dir: Path) -> dict[str, Any]:
    """What optuna-dashboard shows about the sweep (the study's user attributes)."""
    search = sweep.search
    return {"searchlab_run": run_dir.name, "method": " | ".join(sweep.method_names), "sampler": search.sampler,
            "trials_planned": search.trials, "objectives": dict(search.objectives),
            "constraints": list(search.constraints), "searched": sorted(sweep.space),
            "report": f"python -m searchlab.report {run_dir.name} (from the run's storage folder)"}


def trial_name(trial: Any) -> str:
    """Tune's name and folder of a trial: "trial-N-ID", N its number in trials.parquet (Tune's creation
    order, from its experiment tag "N+1_..."), ID its trial id; TensorBoard lists it under tune/ so."""
    return f"trial-{_tune_number(trial)}-{trial.trial_id}"


def _tune_number(trial: Any) -> int:
    head = str(getattr(trial, "experiment_tag", "") or "").split("_", 1)[0]
    return int(head) - 1 if head.isdigit() else 0


def build_scheduler(sweep: Sweep) -> ParetoASHA | None:
    """The sweep's trial scheduler: None (every trial runs to its end) or ParetoASHA."""
    search = sweep.search
    if search.scheduler != "pareto_asha":
        return None
    return ParetoASHA(search.objectives, grace_period=search.rungs.grace_period,
                      reduction_factor=search.rungs.reduction_factor)


@dataclass(frozen=True)
class SweepSummary:
    """How a sweep ended: trials that completed and that failed, and where to look next."""

    run_dir: Path
    completed: int
    failed: int
    seconds: float
    stopped: int = 0  # by the scheduler at a rung (search.scheduler); not counted in completed

    @property
    def every_trial_failed(self) -> bool:
        return self.completed == 0 and self.stopped == 0 and self.failed > 0

    def __str__(self) -> str:
        run_dir = self.run_dir
        return (
            f"sweep finished in {self.seconds:.0f} s: {self.completed + self.stopped + self.failed} trials, "
            f"{self.completed} completed, " + (f"{self.stopped} stopped early, " if self.stopped else "")
            + f"{self.failed} failed.\n"
            f"  results   {run_dir / 'trials.parquet'}\n"
            f"  report    python -m searchlab.report {run_dir}\n"
            f"  dashboard optuna-dashboard sqlite:///{run_dir / 'optuna.db'}   (pip install -e '.[dashboard]')\n"
            # stage-2 runs live in the run directory, the shared teacher and stage-1 runs in the cache beside it
            f"  curves    tensorboard --logdir {run_dir.parent}"
        )


def run_sweep(sweep: Sweep, *, run_dir: Path, address: str | None, resume: bool,
              output: str = "normal") -> SweepSummary:
    """Run (or resume) the sweep to its trial budget in ``run_dir`` (an existing run folder).

    ``output`` (``searchlab.ray_output``): "normal" and "quiet" print searchlab's progress lines and
    Tune's legacy engine at verbosity 0 (nothing routine; errors and tracebacks still); "verbose" Tune's
    own trial tables and result boxes too."""
    init_ray(address, output=output)
    if not resume:
        write_sweep_snapshot(run_dir, sweep)
    trainable = tune.with_resources(
        tune.with_parameters(trial_main, sweep_json=sweep.model_dump_json(), run_dir=str(run_dir)),
        trial_resources(),
    )
    tune_path = run_dir / TUNE_DIR_NAME
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", EXPERIMENT_SNAPSHOT_S)  # read when fit() starts
    if resume:
        tuner = tune.Tuner.restore(str(tune_path), trainable=trainable, resume_unfinished=True, resume_errored=False)
    else:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=build_searcher(sweep, run_dir=run_dir),
                scheduler=build_scheduler(sweep),
                num_samples=sweep.search.trials,
                max_concurrent_trials=sweep.search.max_concurrent,
                trial_name_creator=trial_name,
                trial_dirname_creator=trial_name,
            ),
            run_config=tune.RunConfig(
                storage_path=str(run_dir),
                name=TUNE_DIR_NAME,
                callbacks=[TrialsTableCallback(str(run_dir), sweep.search.constraints)],
                failure_config=tune.FailureConfig(max_failures=0),
                verbose=1 if output == "verbose" else 0,
            ),
        )
    started = time.time()
    grid = tuner.fit()
    failed = sum(1 for result in grid if result.error is not None)
    stopped = sum(1 for result in grid if result.error is None and (result.metrics or {}).get(PROGRESS_KEY))
    return SweepSummary(run_dir=run_dir, completed=len(grid) - failed - stopped, failed=failed, stopped=stopped,
                        seconds=time.time() - started)
