"""analysis/: the compute tables come from searchlab's own cost model; the cross-run figure reads run folders."""

from __future__ import annotations

import importlib.util
import json
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


def test_vared_table_rows_are_vared_costs_and_flops_cli_figures(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from searchlab.methods.vared.costs import vared_costs
    from searchlab.methods.vared.network import VaredNetwork

    out = tmp_path / "vared.md"
    common = ["--frames", "4", "--size", "32", "--classes", "5"]
    assert _script("vared_compute").main(["--backbone", "r2plus1d_10", *common, "--out", str(out)]) == 0
    text = out.read_text()
    assert capsys.readouterr().out == text
    header = next(line for line in text.splitlines() if line.startswith("| frames"))
    row = next([c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines() if line.startswith("| 4 |"))
    cells = dict(zip([c.strip() for c in header.split("|")[1:-1]], row, strict=True))
    costs = vared_costs(VaredNetwork(backbone="r2plus1d_10", num_classes=5, frames=4, size=32))
    base = flops.network_gflops_per_clip("r2plus1d_10", frames=4, size=32, num_classes=5)
    assert cells["base GFLOPs/clip"] == f"{costs.base_gflops():.3f}" == f"{base:.3f}"
    for (t, c), name in {(0, 0): "t1·c1", (0, 1): "t1·c1/2", (1, 0): "t1/2·c1", (1, 1): "t1/2·c1/2"}.items():
        assert cells[f"{name} GFLOPs/clip"].split(" (")[0] == f"{costs.forced_gflops(t, c):.3f}"
    # the flops CLI prices the same network (one alternative: every CLI call builds and traces it again)
    assert flops.main(["r2plus1d_10", *common, "--bits", "32", "--json", "--vared-force", "1,1"]) == 0
    report = json.loads(capsys.readouterr().out)["per_bits"]["32"]
    assert cells["t1/2·c1/2 GFLOPs/clip"] == f"{report['gflops']:.3f} ({100 * (report['gflops'] / base - 1):+.1f} %)"
    assert f"{report['memory_mb']:.2f}" == cells["memory MiB dynamic"]
    assert cells["gates MMACs/clip"] == f"{sum(layer.gate for layer in costs.layers) / 1e6:.3f}"
    assert cells["memory MiB dynamic"] == f"{costs.memory_mb:.2f}"
    assert cells["memory MiB base"] == f"{flops.memory_mb('r2plus1d_10', bit_widths=(32,), num_classes=5):.2f}"
    share = sum(layer.conv[0][0] for layer in costs.layers) / (base * 1e9)
    assert cells["gated convs' share of base"] == f"{100 * share:.1f} %"
    assert "stated, not computed" in text and "28 %" in text and "fvcore multiply-accumulates" in text


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
