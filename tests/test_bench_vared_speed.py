"""bench/vared_speed.py: its pure timing logic, and that each mode runs and reports (no ratio is asserted:
timings are the bench's business, not the tests')."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("vared_speed", ROOT / "bench" / "vared_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rounds_alternate_order_and_warm_up_each_path_once(bench):
    assert bench.round_orders(["a", "b", "c"], 3) == [["a", "b", "c"], ["c", "b", "a"], ["a", "b", "c"]]
    calls: list[str] = []
    times = bench.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=2)
    assert calls == ["a", "b", "a", "b", "b", "a"]
    assert {name: len(t) for name, t in times.items()} == {"a": 2, "b": 2}


def test_paired_ratio_and_savings(bench):
    # each round's pair shares its load: the ratio is the median of the per-round ratios
    times = {"base": [1.0, 2.0, 4.0], "dynamic": [0.5, 1.2, 2.0]}
    assert bench.paired_ratio(times, "dynamic", "base") == pytest.approx(0.5)
    result = bench.savings(0.7, 0.6)
    assert result["wall_saving"] == pytest.approx(0.3)
    assert result["flops_saving"] == pytest.approx(0.4)
    assert result["saving_ratio"] == pytest.approx(0.75)
    assert bench.savings(0.9, 1.0)["saving_ratio"] != bench.savings(0.9, 1.0)["saving_ratio"]  # nan: no saving


def test_parse_nets(bench):
    assert bench.parse_nets("resnet10:8:56, r2plus1d_18:8:112") == [("resnet10", 8, 56), ("r2plus1d_18", 8, 112)]
    for text in ("resnet10:8", "resnet10:x:56", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.parse_nets(text)


def test_fixed_decisions_and_training_modes_report(bench, tmp_path, capsys):
    out = tmp_path / "fixed.json"
    assert bench.main(["--backbone", "resnet10", "--frames", "4", "--size", "32", "--clips", "2", "--repeats", "1",
                       "--breakdown", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["rows"]) == {"base", "forced", "all_on", "cheapest", "mixed"}
    assert report["rows"]["cheapest"]["gflops_ratio"] < 1
    parts = report["breakdown"]["cheapest"]
    assert parts["gate"] > 0 and parts["conv"] > 0 and parts["total"] >= parts["gated"]
    assert report["breakdown"]["base"]["gate"] == 0 and report["breakdown"]["base"]["conv"] > 0
    out = tmp_path / "train.json"
    assert bench.main(["--mode", "train", "--train-nets", "resnet10:4:32", "--batch", "2", "--classes", "4",
                       "--repeats", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["seconds"]) == {"base", "dynamic", "finetune"} and set(report["ratio"]) == {"dynamic", "finetune"}
    assert "training step" in capsys.readouterr().out
