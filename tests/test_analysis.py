"""analysis/: the compute tables come from searchlab's own cost model; the cross-run figure reads run folders."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from searchlab import flops
from test_report import _run_dir

ANALYSIS = Path(__file__).resolve().parents[1] / "analysis"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"analysis_{name}", ANALYSIS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_videoiq_table_rows_are_searchlab_flops_figures() -> None:
    text = _script("videoiq_compute").table(frames=4, size=32, classes=5, backbones=("resnet18",))
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[1:-1]]
            for line in text.splitlines() if line.startswith("| resnet18")}
    for bits in (32, 4, 2):
        row = rows[str(bits)]
        exact = flops.network_gflops_per_frame("resnet18", size=32, num_classes=5, bits=bits)
        paper = flops.network_gflops_per_frame("resnet18", size=32, num_classes=5, bits=bits, convention="paper")
        assert row[2] == f"{exact:.3f}" and row[3] == f"{paper:.3f}" and row[4] == f"{4 * exact:.2f}"
        assert row[6] == f"{flops.memory_mb('resnet18', bit_widths=(bits,), num_classes=5):.2f}"
    assert float(rows["2"][3]) < float(rows["2"][2])  # the paper charges first conv and fc at 2 bits too
    assert "any-precision {32, 4, 2}" in text


def test_fronts_figure_of_several_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = _run_dir(tmp_path / "a")
    second = tmp_path / "b" / "demo-copy"
    shutil.copytree(first, second)
    out = tmp_path / "fronts.png"
    assert _script("fronts").main([str(first), str(second), "--by", "run", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("knee trial 2: 3 front points") == 2
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 500
    assert _script("fronts").main([str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "trials.parquet is missing" in capsys.readouterr().err
