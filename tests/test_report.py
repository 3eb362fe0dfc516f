"""The report CLI on a hand-built run directory: HTML content, valid PNGs, exit codes."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from searchlab.report import format_usage, main
from searchlab.results import ACTION_USAGE, Baseline, BaselinesTable, TrialRecord, TrialsTable
from searchlab.space import encode_value

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=timezone.utc)

# number: (accuracy, gflops, feasible, decision space); front = 0, 2, 4 (knee: 2); 1 and 3 dominated;
# 5 would dominate all but is infeasible.
TRIALS = {
    0: (0.50, 2.0, True, [32, 0]),
    1: (0.55, 9.0, True, [32, 4, 2]),
    2: (0.78, 4.0, True, [32, 4, 2, 0]),
    3: (0.60, 6.0, True, [32, 2, 0]),
    4: (0.82, 10.0, True, [32, 4, 2]),
    5: (0.95, 1.0, False, [32, 0]),
}


def _run_dir(tmp_path: Path) -> Path:
    run_dir = tmp_path / "demo"
    table = TrialsTable.in_run(run_dir)
    for number, (accuracy, gflops, feasible, space) in TRIALS.items():
        table.upsert(
            TrialRecord(
                trial_id=f"trial_{number:03d}",
                number=number,
                status="completed",
                params={"stage2.decision_space": space, "stage2.w1": 0.1 * number},
                metrics={"accuracy": accuracy, "gflops": gflops, "memory_mb": 5.0,
                         ACTION_USAGE: {"32": 0.25, "4": 0.5, "0": 0.25}},  # fmt: skip
                feasible=feasible,
                violations={"gflops <= 12": gflops - 12.0},
                method="videoiq",
                stage_keys={"teacher": "k0", "stage1": "k1", "stage2": f"s{number}"},
                total_s=10.0,
                started=T0,
                finished=T0,
            )
        )
    table.upsert(TrialRecord(trial_id="trial_006", number=6, status="failed", error="CUDA out of memory at stage 2"))
    table.upsert(TrialRecord(trial_id="trial_007", number=7, status="running", started=T0))
    BaselinesTable.in_run(run_dir).upsert(
        [Baseline("videoiq", "k1", "uniform 32-bit", 0.85, 16.0, 40.0),
         Baseline("videoiq", "k1", "uniform 4-bit", 0.80, 1.0, 5.0),
         Baseline("videoiq", "k1", "uniform 2-bit", 0.6, 0.25, 2.5),
         Baseline("videoiq", "other", "uniform 2-bit", 0.99, 0.01, 2.5)]  # another stage 1: compared with no trial
    )
    return run_dir


def _rows_of_front_table(page: str) -> list[str]:
    section = page.split("<h2>Pareto front")[1].split("<h2>")[0]
    return re.findall(r'<span class="dim id">(trial_\d{3})</span>', section)


def test_report_shows_the_front_and_writes_valid_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = _run_dir(tmp_path)
    assert main([str(run_dir)]) == 0
    page = (run_dir / "report.html").read_text()
    assert _rows_of_front_table(page) == ["trial_000", "trial_002", "trial_004"]  # cheapest first
    assert "Pareto front (3 points)" in page
    assert '<span class="kv">32b 25%</span><br><span class="kv">4b 50%</span><br><span class="kv">skip 25%</span>' in page
    assert "CUDA out of memory at stage 2" in page
    assert "<td class=\"t\">uniform 32-bit</td>" in page  # baselines table
    for name in ("pareto.png", "hypervolume.png"):
        with Image.open(run_dir / name) as image:
            image.verify()
        with Image.open(run_dir / name) as image:
            assert image.format == "PNG" and image.size[0] > 300
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == 2 and base64.b64decode(embedded[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "src=\"http" not in page  # self-contained
    out = capsys.readouterr().out
    assert "trials: 8 (6 completed, 1 failed, 0 pruned, 0 stopped early, 1 running; 1 infeasible)" in out
    assert "Pareto front: 3 points" in out and "trial_002" in out and str(run_dir / "report.html") in out
    knee_line = next(line for line in out.splitlines() if "trial_002" in line)
    assert "True" in knee_line  # trial 2 is the knee of the front


def test_hypervolume_uses_the_given_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = _run_dir(tmp_path)
    assert main([str(run_dir), "--reference", "0", "12"]) == 0
    # Front (acc, gflops) (.5, 2), (.78, 4), (.82, 10) under (0, 12): .82*2 + .78*6 + .5*2 = 7.32.
    assert "hypervolume: 7.32 " in capsys.readouterr().out


def test_usage_labels() -> None:
    assert format_usage({"32": 0.5, "0": 0.5}) == "32b 50% · skip 50%"
    assert format_usage({"full": 1.0}) == "full 100%"
    assert format_usage(None) == ""


def test_missing_run_dir_and_empty_table_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "trials.parquet: missing" in capsys.readouterr().err
    TrialsTable.in_run(tmp_path / "empty").upsert(TrialRecord(trial_id="t", number=0, status="running"))
    TrialsTable.in_run(tmp_path / "empty")._write([])  # a table whose rows were all removed
    assert main([str(tmp_path / "empty")]) == 2
    assert "no trials yet" in capsys.readouterr().err


def test_module_entry_point(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "searchlab.report", str(tmp_path / "missing")], capture_output=True, text=True
    )
    assert result.returncode == 2 and "no such run directory" in result.stderr


def test_front_points_are_compared_with_the_methods_baselines():
    from searchlab.report import versus_baselines

    baselines = pd.DataFrame({"key": ["k"] * 3, "label": ["uniform 32-bit", "uniform 4-bit", "uniform 2-bit"],
                              "accuracy": [1.0, 0.95, 0.94],
                              "gflops": [0.5, 0.17, 0.09]})
    assert versus_baselines(0.93, 0.10, baselines) == "dominated by uniform 2-bit"
    assert versus_baselines(0.90, 0.60, baselines) == "dominated by uniform 32-bit, uniform 4-bit, uniform 2-bit"
    verdict = versus_baselines(0.97, 0.18, baselines)
    assert verdict.startswith("not dominated: +2.0 pts over uniform 4-bit (0.17 GFLOPs)")
    assert versus_baselines(0.90, 0.05, baselines).startswith("not dominated: fewer GFLOPs than every baseline")
    assert versus_baselines(0.97, 0.18, baselines.iloc[0:0]) == ""


def test_report_states_the_fixed_augmentation_views(tmp_path: Path):
    import json

    from searchlab.report import cache_note

    assert cache_note(tmp_path) == ""  # no sweep snapshot: nothing claimed
    (tmp_path / "sweep.json").write_text(json.dumps({"base": {"stage2": {"cached_views": 3}}}))
    assert "3 fixed augmentation view(s) per training clip" in cache_note(tmp_path)
    assert "view e mod 3" in cache_note(tmp_path)


def _expect_error(run_dir: Path, capsys: pytest.CaptureFixture[str], *fragments: str) -> None:
    assert main([str(run_dir)]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.err.startswith("error: ")
    assert all(fragment in captured.err for fragment in fragments), captured.err


def test_a_garbage_trials_table_exits_2_naming_the_file_and_the_fix(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from searchlab.results import TRIAL_SCHEMA

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    table = run_dir / "trials.parquet"
    fix = "a sweep writes it (python -m searchlab.sweep FILE): restore the file, or run the sweep again with --overwrite"
    table.write_text("not parquet at all")
    _expect_error(run_dir, capsys, f"{table}: not a Parquet table", fix)
    table.write_bytes(b"")
    _expect_error(run_dir, capsys, f"{table}: not a Parquet table", fix)
    pq.write_table(pa.table({"trial": [1, 2]}), table)
    _expect_error(run_dir, capsys, f"{table}: not a searchlab trials table (missing columns trial_id, number", fix)
    columns = {f.name: pa.array([], type=pa.int64() if f.name == "status" else f.type) for f in TRIAL_SCHEMA}
    pq.write_table(pa.table(columns), table)
    _expect_error(run_dir, capsys, "(status is int64, not string)", fix)


def test_a_garbage_baselines_table_or_snapshot_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = _run_dir(tmp_path)
    (run_dir / "baselines.parquet").write_text("junk")
    _expect_error(run_dir, capsys, f"{run_dir / 'baselines.parquet'}: not a Parquet table")
    (run_dir / "baselines.parquet").unlink()
    assert main([str(run_dir)]) == 0  # no baselines yet: the report goes on without them
    capsys.readouterr()
    (run_dir / "sweep.json").write_text("{not json")
    _expect_error(run_dir, capsys, f"{run_dir / 'sweep.json'}: not the sweep snapshot a sweep writes")


def test_report_explains_itself_and_gives_each_front_row_its_export_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import json as _json

    from searchlab.report import GLOSSARY

    run_dir = _run_dir(tmp_path)
    extra = TrialsTable.in_run(run_dir).read()
    row = extra[extra["number"] == 2].iloc[0]
    record = TrialRecord(trial_id="trial_002", number=2, status="completed",
                         params={"stage2.decision_space": [32, 4, 2, 0], "stage2.w1": 0.2},
                         metrics={"accuracy": 0.78, "gflops": 4.0, "gflops_p5": 3.0, "gflops_p95": 5.5, "memory_mb": 5.0,
                                  ACTION_USAGE: {"32": 0.25, "4": 0.5, "0": 0.25},
                                  "usage_per_class": {"archery": {"32": 0.5, "4": 0.5, "0": 0.0},
                                                      "bowling": {"32": 0.0, "4": 0.5, "0": 0.5}}},
                         feasible=True, method="videoiq", stage_keys=_json.loads(row["stage_keys"]), total_s=10.0)
    TrialsTable.in_run(run_dir).upsert(record)
    assert main([str(run_dir)]) == 0
    page = (run_dir / "report.html").read_text()
    out = capsys.readouterr().out
    # every term defined, every searched parameter explained in a line
    for term in GLOSSARY:
        assert f"<dt>{term}</dt>" in page
    assert "<code>stage2.w1</code></dt><dd>efficiency loss weight" in page
    assert "Ω: the actions per frame" in page  # from docs/configuration.md where the field has no description
    # per-front-row export command, runnable from where the report ran, naming no absolute path
    front = page.split("<h2>Pareto front")[1].split("<h2>")[0]
    front_text = re.sub(r"<[^>]+>", "", front)  # the text a person copies from the page
    for number in (0, 2, 4):
        assert f"python -m searchlab.pick demo --trial {number} --out bundle-trial-{number}" in front_text
    assert str(tmp_path) not in page
    # the decision space reads as optuna-dashboard shows the study's parameter (searchlab.space.encode_value)
    assert f"decision_space&nbsp;= {encode_value([32, 4, 2, 0])}</span>" in front
    # the baseline-dominated flag: trials 0 and 2 are dominated by uniform 4-bit (0.80 at 1.0 GFLOPs)
    assert front.count('class="dominated"') == 2 and "⚠ dominated by uniform 4-bit" in front
    # p5-p95 beside the mean; per-class usage of the knee, open
    assert "4 <span class=\"dim\">(3–5.5)</span>" in front
    per_class = page.split("<h2>Decision usage per class")[1].split("<h2>")[0]
    assert "<details open><summary>trial 2 (knee)" in per_class
    assert "<td class=\"t\">bowling</td><td class=\"n\">0%</td><td class=\"n\">50%</td><td class=\"n\">50%</td>" in per_class
    # normalised hypervolume, by hand: box accuracy 0.6-0.85, GFLOPs 0.25-16 (baselines of stage key k1);
    # front (0.72, 0.7619), (0.88, 0.3810) -> 0.6095; baselines (0.8, 0.9524) -> 0.7619 (the others lie on the box)
    assert "normalised hypervolume (baselines' box): front 0.610, baselines 0.762" in out
    assert "front 0.610, baselines 0.762" in page
    assert "export a front point: python -m searchlab.pick" in out


def test_parameter_meanings_come_from_the_config_fields_or_the_docs() -> None:
    from searchlab.report import parameter_meaning

    assert parameter_meaning("stage2.w1") == "efficiency loss weight"
    assert parameter_meaning("data.frames").startswith("T, frames sampled")
    assert parameter_meaning("stage2.decision_space").startswith("Ω: the actions per frame")
    assert parameter_meaning("no.such.key") == ""


def _cross_method_run_dir(tmp_path: Path) -> Path:
    """Trials of two methods, each with its own baselines: VideoIQ's 0 and 1, AR-Net's 2, 3 and 4;
    the front over both is 0 (videoiq), 2 and 4 (arnet); AR-Net's 3 is on its own front only."""
    run_dir = tmp_path / "cross"
    table = TrialsTable.in_run(run_dir)
    points = {0: ("videoiq", 0.70, 1.0), 1: ("videoiq", 0.60, 3.0), 2: ("arnet", 0.80, 2.0),
              3: ("arnet", 0.68, 1.5), 4: ("arnet", 0.90, 5.0)}
    for number, (method, accuracy, gflops) in points.items():
        keys = {"stage1": "v1", "stage2": f"s{number}"} if method == "videoiq" else {"backbone": ["a56", "a32"]}
        table.upsert(TrialRecord(
            trial_id=f"trial_{number:03d}", number=number, status="completed",
            params={"method": method, **({"stage2.w1": 0.1} if method == "videoiq" else {"arnet.w_eff": 1.0})},
            metrics={"accuracy": accuracy, "gflops": gflops, "memory_mb": 5.0, ACTION_USAGE: {"32": 1.0}},
            feasible=True, method=method, stage_keys=keys, total_s=1.0, started=T0, finished=T0))
    BaselinesTable.in_run(run_dir).upsert(
        [Baseline("videoiq", "v1", "uniform 32-bit", 0.72, 4.0, 40.0),
         Baseline("videoiq", "v1", "uniform 2-bit", 0.65, 0.9, 2.5),
         Baseline("arnet", "a56", "56 px", 0.95, 6.0, 40.0),
         Baseline("arnet", "a32", "32 px", 0.70, 1.8, 40.0)])
    return run_dir


def test_a_cross_method_report_compares_each_method_with_its_own_baselines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from searchlab.report import build_report

    run_dir = _cross_method_run_dir(tmp_path)
    report = build_report(run_dir)
    assert list(report.front["number"]) == [0, 2, 4] and list(report.front["method"]) == ["videoiq", "arnet", "arnet"]
    by_method = {summary.method: summary for summary in report.methods}
    assert set(by_method) == {"videoiq", "arnet"}
    arnet, videoiq = by_method["arnet"], by_method["videoiq"]
    assert list(arnet.front["number"]) == [3, 2, 4] and arnet.on_whole_front == ("2", "4")
    assert list(videoiq.front["number"]) == [0] and videoiq.on_whole_front == ("0",)
    # each method against its own baselines only: AR-Net's 3 beats 32 px, VideoIQ's 0 is cheaper than 32-bit
    assert list(arnet.front["vs baselines"])[0].startswith("not dominated: fewer GFLOPs than every baseline")
    assert "over 32 px" in list(arnet.front["vs baselines"])[1]
    assert "over uniform 2-bit" in list(videoiq.front["vs baselines"])[0]
    # hypervolume: each method's own against the whole front's reference; together at least the whole front's
    assert 0 < videoiq.hypervolume < report.hypervolume and 0 < arnet.hypervolume < report.hypervolume
    assert videoiq.hypervolume + arnet.hypervolume >= report.hypervolume
    assert videoiq.normalised is not None and arnet.normalised is not None and videoiq.baselines == 2
    page = report.html.read_text()
    section = page.split("<h2>Per method: best trade-offs against its own baselines</h2>")[1].split("<h2>")[0]
    assert "arnet" in section and "videoiq" in section and "fewer GFLOPs than every baseline" in section
    assert Image.open(report.pareto_png).size[0] > 0 and Image.open(report.hypervolume_png).size[0] > 0
    assert main([str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "Pareto front: 3 points over every method" in out
    assert "arnet: 3 completed trials, own front 3 (points 3, 2, 4), on the whole front: 2, 4" in out


def test_a_single_method_report_has_no_per_method_section(tmp_path: Path) -> None:
    from searchlab.report import build_report

    report = build_report(_run_dir(tmp_path))
    assert report.methods == () and "Per method" not in report.html.read_text()


def test_curves_join_the_front_and_the_hypervolume_and_each_point_gets_its_export_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """Trial 3 (0.60 at 6.0, dominated as trained) has a curve: at cost_bias 2 it reaches 0.70 at 3.0,
    which joins the front between trials 0 and 2; at 4 (0.40 at 2.5) it is dominated by trial 0."""
    from searchlab.results import PointRecord, PointsTable

    run_dir = _run_dir(tmp_path)
    assert main([str(run_dir), "--reference", "0", "12"]) == 0
    without = capsys.readouterr().out
    PointsTable.in_run(run_dir).upsert(
        PointRecord(trial_id="trial_003", number=3, method="videoiq", cost_bias=bias,
                    metrics={"accuracy": accuracy, "gflops": gflops, "memory_mb": 5.0,
                             "usage": {"32": share, "0": 1 - share}},
                    violations={"gflops <= 12": gflops - 12.0})
        for bias, accuracy, gflops, share in [(0.0, 0.60, 6.0, 0.5), (2.0, 0.70, 3.0, 0.3), (4.0, 0.40, 2.5, 0.1)])
    assert main([str(run_dir), "--reference", "0", "12"]) == 0
    out = capsys.readouterr().out
    page = (run_dir / "report.html").read_text()
    assert _rows_of_front_table(page) == ["trial_000", "trial_003", "trial_002", "trial_004"]
    front = page.split("<h2>Pareto front")[1].split("<h2>")[0]
    assert "<b>3@2</b>" in front and "cost_bias 2" in front
    command = "python -m searchlab.pick demo --trial 3 --cost-bias 2 --out bundle-trial-3-cost-bias-2"
    assert command in re.sub(r"<[^>]+>", "", front)  # the text a person copies from the page
    assert '<span class="kv">32b 30%</span><br><span class="kv">skip 70%</span>' in front  # the point's own usage
    # front (.5, 2), (.70, 3), (.78, 4), (.82, 10) under (0, 12): .82*2 + .78*6 + .70*1 + .5*1 = 7.52 (7.32 before)
    assert "hypervolume: 7.32 " in without and "hypervolume: 7.52 " in out
    assert "Pareto front: 4 points" in out
    assert '<th class="n">points</th>' in page.split("<h2>Trials</h2>")[1].split("<h2>")[0]
