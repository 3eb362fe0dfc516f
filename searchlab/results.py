"""The run's tables: one row per trial (trials.parquet), one per operating point of each completed
trial's curve (points.parquet) and the methods' reference points (baselines).

A sweep's driver upserts a row whenever a trial starts, finishes or fails; the report, `pick` and
analysis scripts read the same file. Each upsert rewrites the whole (small) file through a temp
file and ``os.replace`` under a file lock, so readers never see a half-written table and two
writers never lose each other's rows.

Trial columns: ``trial_id, number, status, error, params`` (JSON) and ``param.<dotted key>``
(flattened: scalars as they are, lists as JSON text), one float column per metric of
``searchlab.objectives.METRICS``, ``metrics_extra`` (JSON: action usage, per-class usage, ...),
``feasible``, ``violations`` (JSON: constraint -> value, <= 0 feasible), ``method``,
``stage_keys`` (JSON: stage -> cache key), ``stage_seconds`` (JSON: stage -> seconds, cache hits
included), ``total_s``, ``started, finished`` (UTC timestamps), ``nodes`` (JSON: ``driver`` -> the Ray node id of the
trial's process, stage -> node ids of the stage workers this trial ran; a cluster's placement).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from searchlab.objectives import METRICS

TRIALS_FILE = "trials.parquet"
BASELINES_FILE = "baselines.parquet"
POINTS_FILE = "points.parquet"
PARAM_PREFIX = "param."
ACTION_USAGE = "action_usage"  # metrics_extra key: {action label: fraction of frames}
STATUSES = ("completed", "failed", "running", "pruned", "stopped")  # stopped: by the scheduler at a rung
Status = Literal["completed", "failed", "running", "pruned", "stopped"]

_TIME = pa.timestamp("us", tz="UTC")
TRIAL_SCHEMA = pa.schema(
    [
        ("trial_id", pa.string()),
        ("number", pa.int64()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("params", pa.string()),
        *[(name, pa.float64()) for name in METRICS],
        ("metrics_extra", pa.string()),
        ("feasible", pa.bool_()),
        ("violations", pa.string()),
        ("method", pa.string()),
        ("stage_keys", pa.string()),
        ("stage_seconds", pa.string()),
        ("total_s", pa.float64()),
        ("started", _TIME),
        ("finished", _TIME),
        ("nodes", pa.string()),
    ]
)
POINT_SCHEMA = pa.schema(
    [
        ("trial_id", pa.string()),
        ("number", pa.int64()),
        ("method", pa.string()),
        ("cost_bias", pa.float64()),
        *[(name, pa.float64()) for name in METRICS],
        ("metrics_extra", pa.string()),
        ("feasible", pa.bool_()),
        ("violations", pa.string()),
    ]
)
BASELINE_SCHEMA = pa.schema(
    [
        ("method", pa.string()),
        ("key", pa.string()),
        ("label", pa.string()),
        ("accuracy", pa.float64()),
        ("gflops", pa.float64()),
        ("memory_mb", pa.float64()),
    ]
)


@dataclass(frozen=True)
class TrialRecord:
    """What the sweep knows about one trial; `TrialsTable.upsert` turns it into a row."""

    trial_id: str
    number: int
    status: Status
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)  # METRICS names -> float, other keys -> extra
    error: str | None = None
    feasible: bool | None = None
    violations: Mapping[str, float] = field(default_factory=dict)
    method: str | None = None
    stage_keys: Mapping[str, str] = field(default_factory=dict)
    stage_seconds: Mapping[str, float] = field(default_factory=dict)
    total_s: float | None = None
    started: datetime | None = None
    finished: datetime | None = None
    nodes: Mapping[str, Any] = field(default_factory=dict)  # "driver": node id, stage -> its workers' node ids

    def __post_init__(self) -> None:
        problems = []
        if self.status not in STATUSES:
            problems.append(f"status {self.status!r} must be one of {', '.join(STATUSES)}")
        if self.status == "failed" and not self.error:
            problems.append("a failed trial needs its error (the reason it failed)")
        for name in ("started", "finished"):
            stamp = getattr(self, name)
            if stamp is not None and stamp.tzinfo is None:
                problems.append(f"{name} {stamp} has no time zone; use datetime.now(timezone.utc)")
        for name in METRICS:
            value = self.metrics.get(name)
            if value is not None and not isinstance(value, (int, float)):
                problems.append(f"metric {name} = {value!r} must be a number")
            elif value is not None and self.status == "completed" and not math.isfinite(value):
                # stored, NaN would read as "missing" (see _float): a diverged trial is a failure with a reason
                problems.append(f"metric {name} = {value} of a completed trial must be finite; record a trial "
                                "that diverged as failed, with the reason")
        if problems:
            raise ValueError(f"trial {self.trial_id}: " + "; ".join(problems))

    def to_row(self) -> dict[str, Any]:
        extra = {k: v for k, v in self.metrics.items() if k not in METRICS}
        row: dict[str, Any] = {
            "trial_id": self.trial_id,
            "number": self.number,
            "status": self.status,
            "error": self.error,
            "params": _dumps(self.params),
            **{name: _float(self.metrics.get(name)) for name in METRICS},
            "metrics_extra": _dumps(extra),
            "feasible": self.feasible,
            "violations": _dumps(self.violations),
            "method": self.method,
            "stage_keys": _dumps(self.stage_keys),
            "stage_seconds": _dumps(self.stage_seconds),
            "total_s": self.total_s,
            "started": self.started,
            "finished": self.finished,
            "nodes": _dumps(self.nodes),
        }
        for key, value in self.params.items():
            row[PARAM_PREFIX + key] = value if isinstance(value, (bool, int, float, str)) else _dumps(value)
        return row


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} {value!r} cannot be stored in the trials table; use plain values")


def _float(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _param_type(values: Iterable[Any]) -> pa.DataType:
    """One Arrow type for a flattened param column: bool, int64, float64, else string."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.bool_()
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.int64()
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pa.float64()
    return pa.string()


class _KeyedParquet:
    """A small Parquet table keyed by some columns, rewritten whole and atomically on each upsert."""

    def __init__(self, path: str | Path, *, schema: pa.Schema, keys: tuple[str, ...], kind: str) -> None:
        self.path = Path(path)
        self.schema = schema
        self.keys = keys
        self.kind = kind

    def _rows(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return self._table().to_pylist()

    def _table(self) -> pa.Table:
        # One open file: pq.read_table(path) may open the path more than once (footer, then pages), and
        # a writer's os.replace between those opens hands it pages of the new file ("Page was smaller
        # than expected"). An open handle keeps reading the file it opened.
        with open(self.path, "rb") as handle:
            return pq.read_table(handle)

    def _upsert_rows(self, new_rows: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            rows = {tuple(row[k] for k in self.keys): row for row in self._rows()}
            for row in new_rows:
                rows[tuple(row[k] for k in self.keys)] = row
            self._write(list(rows.values()))

    def _write(self, rows: list[dict[str, Any]]) -> None:
        schema = self.schema
        extra = sorted({name for row in rows for name in row} - set(schema.names))
        for name in extra:
            schema = schema.append(pa.field(name, _param_type(row.get(name) for row in rows)))
        columns = {}
        for column in schema:
            values = [row.get(column.name) for row in rows]
            if column.type == pa.string():
                values = [v if v is None or isinstance(v, str) else json.dumps(v) for v in values]
            columns[column.name] = pa.array(values, type=column.type)
        table = pa.table(columns, schema=schema.with_metadata({"searchlab.table": self.kind}))
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, self.path)

    def read(self) -> pd.DataFrame:
        """The table as a DataFrame; an empty one with the fixed columns before the first row."""
        if not self.path.is_file():
            return self.schema.empty_table().to_pandas()
        return self._table().to_pandas()


class TrialsTable(_KeyedParquet):
    """RUN_DIR/trials.parquet: one row per trial, keyed by trial_id, ordered by trial number."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, schema=TRIAL_SCHEMA, keys=("trial_id",), kind="trials")

    @classmethod
    def in_run(cls, run_dir: str | Path) -> TrialsTable:
        return cls(Path(run_dir) / TRIALS_FILE)

    def upsert(self, record: TrialRecord) -> None:
        """Insert or replace the row of `record.trial_id`."""
        self._upsert_rows([record.to_row()])

    def read(self) -> pd.DataFrame:
        return super().read().sort_values("number", kind="stable").reset_index(drop=True)

    def completed_ids(self) -> set[str]:
        """Trials that need not run again when a sweep resumes."""
        frame = self.read()
        return set(frame.loc[frame["status"] == "completed", "trial_id"])


@dataclass(frozen=True)
class PointRecord:
    """One operating point of a completed trial's curve (``searchlab.curve``): its network measured at
    ``inference.cost_bias`` = ``cost_bias``; 0 is the trial's own, trained point."""

    trial_id: str
    number: int
    method: str | None
    cost_bias: float
    metrics: Mapping[str, Any]  # METRICS names -> float, other keys -> extra
    violations: Mapping[str, float] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            "number": self.number,
            "method": self.method,
            "cost_bias": float(self.cost_bias),
            **{name: _float(self.metrics.get(name)) for name in METRICS},
            "metrics_extra": _dumps({k: v for k, v in self.metrics.items() if k not in METRICS}),
            "feasible": all(v <= 0 for v in self.violations.values()),
            "violations": _dumps(self.violations),
        }


class PointsTable(_KeyedParquet):
    """RUN_DIR/points.parquet: every completed trial's curve, one row per (trial_id, cost_bias)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, schema=POINT_SCHEMA, keys=("trial_id", "cost_bias"), kind="points")

    @classmethod
    def in_run(cls, run_dir: str | Path) -> PointsTable:
        return cls(Path(run_dir) / POINTS_FILE)

    def upsert(self, points: Iterable[PointRecord]) -> None:
        self._upsert_rows([point.to_row() for point in points])

    def read(self) -> pd.DataFrame:
        return super().read().sort_values(["number", "cost_bias"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Baseline:
    """A method's reference point, measured on one of its shared stage artifacts: e.g. VideoIQ's
    "uniform 4-bit" (every frame at 4 bits through stage 1's network). ``key`` is that stage's cache
    key: a trial is compared with the baselines whose key is among its stage keys."""

    method: str
    key: str
    label: str
    accuracy: float
    gflops: float
    memory_mb: float


class BaselinesTable(_KeyedParquet):
    """RUN_DIR/baselines.parquet: the methods' reference points, keyed by (method, key, label)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, schema=BASELINE_SCHEMA, keys=("method", "key", "label"), kind="baselines")

    @classmethod
    def in_run(cls, run_dir: str | Path) -> BaselinesTable:
        return cls(Path(run_dir) / BASELINES_FILE)

    def upsert(self, baselines: Iterable[Baseline]) -> None:
        self._upsert_rows([dict(vars(b)) for b in baselines])


#: The point's columns that replace its trial's in ``with_points``.
_POINT_COLUMNS = ("cost_bias", *METRICS, "metrics_extra", "feasible", "violations")


def point_label(number: int, cost_bias: float) -> str:
    """How the report, pick and the card name an operating point: "7" (trial 7 as trained), "7@2" (λ = 2)."""
    return str(int(number)) if cost_bias == 0 else f"{int(number)}@{cost_bias:g}"


def with_points(trials: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """The trials with each completed trial's curve: one row per operating point, its trial's columns
    with the point's metrics, feasibility and extras (``action_usage`` = the point's ``usage``), and
    ``cost_bias`` and ``point`` (its label). A completed trial without points (a run made before curves)
    is its trained point, cost_bias 0; other trials keep their row, cost_bias NaN."""
    completed = trials["status"] == "completed"
    measured = trials["trial_id"].isin(set(points["trial_id"])) & completed
    unmeasured = trials[~measured].assign(cost_bias=np.where(completed[~measured], 0.0, np.nan))
    curve = trials[measured].drop(columns=[c for c in _POINT_COLUMNS if c in trials.columns and c != "cost_bias"])
    curve = curve.merge(points[["trial_id", *_POINT_COLUMNS]], on="trial_id", how="inner")
    if not curve.empty:
        extras = {trial_id: extra or {} for trial_id, extra in zip(trials["trial_id"], decoded_json(trials, "metrics_extra"))}
        curve["metrics_extra"] = [
            json.dumps({**extras[trial_id], **(extra or {}), ACTION_USAGE: (extra or {}).get("usage", {})}, sort_keys=True)
            for trial_id, extra in zip(curve["trial_id"], decoded_json(curve, "metrics_extra"))]
    frame = pd.concat([unmeasured, curve], ignore_index=True) if not curve.empty else unmeasured.reset_index(drop=True)
    frame = frame.sort_values(["number", "cost_bias"], kind="stable").reset_index(drop=True)
    frame["point"] = [point_label(n, b) if b == b else str(int(n)) for n, b in zip(frame["number"], frame["cost_bias"])]
    return frame


def decoded_json(frame: pd.DataFrame, column: str) -> list[Any]:
    """A JSON column of a read table as Python values (None where the cell is empty)."""
    return [json.loads(text) if isinstance(text, str) and text else None for text in frame[column]]
