"""Trials and baselines tables: columns, upsert semantics, atomic rewrites, resume ids."""

from __future__ import annotations

import multiprocessing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from searchlab.objectives import METRICS
from searchlab.results import (
    ACTION_USAGE,
    Baseline,
    BaselinesTable,
    TrialRecord,
    TrialsTable,
    decoded_json,
)

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=timezone.utc)


def _completed(number: int, **params: object) -> TrialRecord:
    return TrialRecord(
        trial_id=f"t{number:03d}",
        number=number,
        status="completed",
        params={"stage2.decision_space": [32, 4, 2, 0], "stage2.w1": 0.2 + number / 10, **params},
        metrics={"accuracy": 0.5 + number / 100, "gflops": 10.0 + number, ACTION_USAGE: {"32": 0.5, "0": 0.5}},
        feasible=True,
        violations={"gflops <= 30": -20.0 + number},
        method="videoiq",
        stage_keys={"teacher": "t1", "stage1": "abc", "outputs": "o1", "stage2": "s1"},
        stage_seconds={"teacher": 10.0, "stage1": 2.5, "outputs": 0.0, "stage2": 3.0},
        total_s=15.5,
        started=T0,
        finished=T0 + timedelta(seconds=15.5),
    )


def test_rows_have_every_documented_column(tmp_path: Path) -> None:
    table = TrialsTable.in_run(tmp_path)
    table.upsert(_completed(0))
    frame = table.read()
    expected = {
        "trial_id", "number", "status", "error", "params", "metrics_extra", "feasible", "violations",
        "method", "stage_keys", "stage_seconds", "total_s", "started", "finished",
        "param.stage2.decision_space", "param.stage2.w1", *METRICS,
    }  # fmt: skip
    assert expected <= set(frame.columns)
    row = frame.iloc[0]
    assert row["accuracy"] == pytest.approx(0.5) and row["gflops"] == pytest.approx(10.0)
    assert frame["memory_mb"].isna().all()  # not reported -> null, not 0
    assert row["param.stage2.decision_space"] == "[32, 4, 2, 0]" and row["param.stage2.w1"] == pytest.approx(0.2)
    assert decoded_json(frame, "params")[0]["stage2.decision_space"] == [32, 4, 2, 0]
    assert decoded_json(frame, "metrics_extra")[0] == {ACTION_USAGE: {"32": 0.5, "0": 0.5}}
    assert decoded_json(frame, "violations")[0] == {"gflops <= 30": -20.0}
    assert row["finished"] - row["started"] == timedelta(seconds=15.5)
    assert str(row["started"].tz) == "UTC"
    assert pq.read_schema(tmp_path / "trials.parquet").metadata[b"searchlab.table"] == b"trials"


def test_upsert_replaces_by_trial_id_and_keeps_order(tmp_path: Path) -> None:
    table = TrialsTable(tmp_path / "trials.parquet")
    table.upsert(TrialRecord(trial_id="t002", number=2, status="running", started=T0))
    table.upsert(_completed(1))
    table.upsert(TrialRecord(trial_id="t003", number=3, status="failed", error="CUDA out of memory"))
    table.upsert(_completed(2))
    table.upsert(TrialRecord(trial_id="t004", number=4, status="pruned", error="stopped by scheduler"))
    frame = table.read()
    assert list(frame["trial_id"]) == ["t001", "t002", "t003", "t004"]
    assert list(frame["status"]) == ["completed", "completed", "failed", "pruned"]
    assert frame.loc[frame["trial_id"] == "t003", "error"].item() == "CUDA out of memory"
    assert table.completed_ids() == {"t001", "t002"}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_param_columns_widen_when_types_differ(tmp_path: Path) -> None:
    table = TrialsTable(tmp_path / "trials.parquet")
    table.upsert(_completed(0, **{"stage2.epochs": 2}))
    assert str(table.read()["param.stage2.epochs"].dtype) == "int64"
    table.upsert(_completed(1, **{"stage2.epochs": 2.5}))
    assert list(table.read()["param.stage2.epochs"]) == [2.0, 2.5]
    table.upsert(_completed(2))  # a conditional param absent in this trial: null
    assert table.read()["param.stage2.epochs"].isna().tolist() == [False, False, True]


def test_bad_records_are_rejected_with_every_reason() -> None:
    with pytest.raises(ValueError) as error:
        TrialRecord(
            trial_id="x", number=0, status="failed", metrics={"accuracy": "high"}, started=datetime(2026, 1, 1)
        )
    message = str(error.value)
    assert "needs its error" in message and "no time zone" in message and "must be a number" in message
    with pytest.raises(ValueError, match="must be one of completed, failed, running, pruned"):
        TrialRecord(trial_id="x", number=0, status="done")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_completed_trial_with_a_non_finite_metric_is_refused(value: float) -> None:
    """Stored, NaN would read as a missing value: a diverged trial must be recorded as failed instead."""
    with pytest.raises(ValueError, match=f"metric accuracy = {value} of a completed trial must be finite"):
        TrialRecord(trial_id="x", number=0, status="completed", metrics={"accuracy": value, "gflops": 1.0})
    TrialRecord(trial_id="x", number=0, status="failed", error="accuracy is NaN after stage2",
                metrics={"accuracy": value})


def test_empty_table_reads_with_fixed_columns(tmp_path: Path) -> None:
    table = TrialsTable(tmp_path / "missing" / "trials.parquet")
    frame = table.read()
    assert frame.empty and {"trial_id", "status", "accuracy"} <= set(frame.columns)
    assert table.completed_ids() == set()


def _upsert_many(path: str, start: int) -> None:
    table = TrialsTable(path)
    for number in range(start, start + 5):
        table.upsert(_completed(number))


def test_concurrent_writers_lose_no_rows(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    path = str(tmp_path / "trials.parquet")
    writers = [ctx.Process(target=_upsert_many, args=(path, start)) for start in (0, 100)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
        assert writer.exitcode == 0
    assert len(TrialsTable(path).read()) == 10


def test_baselines_are_keyed_by_method_stage_key_and_label(tmp_path: Path) -> None:
    table = BaselinesTable.in_run(tmp_path)
    table.upsert([Baseline("videoiq", "abc", f"uniform {bits}-bit", 0.5 + bits / 100, bits * 1.0, 10.0)
                  for bits in (32, 4, 2)])
    table.upsert([Baseline("videoiq", "abc", "uniform 32-bit", 0.9, 32.0, 10.0),
                  Baseline("videoiq", "def", "uniform 32-bit", 0.8, 32.0, 10.0)])
    frame = table.read()
    assert len(frame) == 4
    chosen = (frame["key"] == "abc") & (frame["label"] == "uniform 32-bit")
    assert frame.loc[chosen, "accuracy"].item() == pytest.approx(0.9)
    assert list(frame.columns) == ["method", "key", "label", "accuracy", "gflops", "memory_mb"]
