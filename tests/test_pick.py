"""`python -m searchlab.pick` on a hand-built run directory with real weights and a real config.

Trials (number: accuracy, GFLOPs): the feasible completed front is 0 (0.50, 1.0), 1 (0.75, 2.0),
2 (0.80, 4.0), 3 (0.82, 8.0), whose knee is 1; 4 (0.60, 5.0) is dominated by 2; 5 (0.99, 0.5) would
dominate everything but is infeasible; 6 failed and 7 is still running (both with metrics that
would dominate everything, so picking them would show).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import torch
import yaml

from searchlab import deploy
from searchlab.config import TrialConfig, load_sweep
from searchlab.models import PolicyNetwork, create_backbone
from searchlab.pick import main
from searchlab.results import ACTION_USAGE, TrialRecord, TrialsTable
from searchlab.run_dir import BUNDLE_MARKER, absolute_config_paths, data_root, write_sweep_snapshot

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 21, 9, 0, tzinfo=timezone.utc)
CLASSES = ["archery", "bowling", "cooking", "diving"]
TINY = {"data.frames": 4, "data.crop_size": 32, "model.policy_width_mult": 0.25, "model.policy_input_size": 32,
        "model.policy_hidden": 16}

# number: (accuracy, gflops, status, feasible, decision space)
TRIALS = {
    0: (0.50, 1.0, "completed", True, [32, 0]),
    1: (0.75, 2.0, "completed", True, [32, 4, 2, 0]),
    2: (0.80, 4.0, "completed", True, [32, 4, 2]),
    3: (0.82, 8.0, "completed", True, [32, 4, 0]),
    4: (0.60, 5.0, "completed", True, [32, 2, 0]),
    5: (0.99, 0.5, "completed", False, [32, 0]),
    6: (0.99, 0.1, "failed", None, [32, 0]),
    7: (0.99, 0.1, "running", None, [32, 0]),
}
FRONT = {0, 1, 2, 3}


def trial_config(decision_space: list[int]) -> TrialConfig:
    """The demo sweep's base at test sizes: what a sweep writes into each stage-2 artifact."""
    return load_sweep(REPO / "spaces" / "demo.yaml").base.with_overrides(
        {**TINY, "stage2.decision_space": decision_space}
    )


def write_run_dir(root: Path) -> Path:
    """A run directory as the sweep leaves it: trials.parquet plus the stage artifacts it points to."""
    run_dir = root / "runs" / "demo"
    stage1 = root / "runs" / "cache" / "stage1" / "k1"
    stage1.mkdir(parents=True)
    sweep = load_sweep(REPO / "spaces" / "demo.yaml")
    write_sweep_snapshot(run_dir, sweep.model_copy(update={"base": sweep.base.with_overrides(TINY)}))
    torch.manual_seed(0)
    backbone = create_backbone("resnet10", num_classes=len(CLASSES), bit_widths=(32, 4, 2), alpha_init=4.0)
    torch.save(backbone.state_dict(), stage1 / "backbone.pt")
    table = TrialsTable.in_run(run_dir)
    for number, (accuracy, gflops, status, feasible, space) in TRIALS.items():
        stage2 = run_dir / "trials" / f"trial_{number:03d}" / "stage2"
        stage2.mkdir(parents=True)
        torch.manual_seed(100 + number)
        policy = PolicyNetwork(num_actions=len(space), input_size=32, hidden_size=16, width_mult=0.25)
        torch.save(policy.state_dict(), stage2 / "policy.pt")
        config = trial_config(space)
        (stage2 / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        usage = {str(b): 1.0 / len(space) for b in space}
        table.upsert(TrialRecord(
            trial_id=f"trial_{number:03d}",
            number=number,
            status=status,
            error="stage 2 ran out of memory" if status == "failed" else None,
            params={"stage2.decision_space": space},
            metrics={
                "accuracy": accuracy, "gflops": gflops, "gflops_p5": 0.5 * gflops, "gflops_p95": 1.5 * gflops,
                "memory_mb": 4.0 + number, "skip_fraction": usage.get("0", 0.0), "top1": accuracy,
                ACTION_USAGE: usage, "class_names": CLASSES,
                "artifacts": {"stage1": str(stage1), "stage2": str(stage2)},
            },
            feasible=feasible,
            violations={"gflops <= 20": gflops - 20.0},
            method="videoiq",
            stage_keys={"teacher": "k0", "stage1": "k1", "stage2": f"s{number}"},
            started=T0,
            finished=T0 if status != "running" else None,
        ))
    return run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run_dir(tmp_path_factory.mktemp("pick"))


def picked(run_dir: Path, out: Path, *flags: str) -> dict:
    assert main([str(run_dir), *flags, "--out", str(out)]) == 0
    return json.loads((out / "card.json").read_text())


@pytest.mark.parametrize(
    ("flags", "number"),
    [
        (("--max-gflops", "4.5"), 2),  # 5 (infeasible, 0.99 at 0.5) and 4 (dominated) lie within too
        (("--max-gflops", "100"), 3),
        (("--max-gflops", "1.0"), 0),  # the bound itself is within budget
        (("--min-accuracy", "0.78"), 2),
        (("--min-accuracy", "0.5"), 0),
        (("--min-accuracy", "0.82"), 3),
        (("--knee",), 1),
    ],
)
def test_pick_chooses_the_requested_front_point(run_dir: Path, tmp_path: Path, flags: tuple[str, ...],
                                                number: int) -> None:
    card = picked(run_dir, tmp_path / "bundle", *flags)
    assert card["source"]["number"] == number
    assert card["source"]["trial_id"] == f"trial_{number:03d}"


@pytest.mark.parametrize("budget", [1.0, 1.5, 2.0, 3.9, 5.0, 7.99, 9.0])
def test_budget_picks_only_feasible_completed_front_points(run_dir: Path, tmp_path: Path, budget: float) -> None:
    number = picked(run_dir, tmp_path / "bundle", "--max-gflops", str(budget))["source"]["number"]
    assert number in FRONT
    assert number == max((n for n in FRONT if TRIALS[n][1] <= budget), key=lambda n: TRIALS[n][0])


def test_bundle_holds_every_file_and_the_chosen_trials_numbers(run_dir: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bundle"
    card = picked(run_dir, out, "--min-accuracy", "0.7")
    assert sorted(p.name for p in out.iterdir()) == sorted([*deploy.bundle_files("videoiq"), BUNDLE_MARKER])
    accuracy, gflops, _, _, space = TRIALS[1]
    assert card["accuracy"] == pytest.approx(accuracy)
    assert card["accuracy_metric"] == "top-1"
    assert card["gflops_mean"] == pytest.approx(gflops)
    assert card["gflops_p5"] == pytest.approx(0.5 * gflops)
    assert card["gflops_p95"] == pytest.approx(1.5 * gflops)
    assert card["memory_mb"] == pytest.approx(5.0)
    assert card["skip_fraction"] == pytest.approx(0.25)
    assert card["action_usage"] == {str(b): 0.25 for b in space}
    assert card["params"] == {"stage2.decision_space": space}
    trial = run_dir / "trials" / "trial_001" / "stage2"
    assert (out / "policy.pt").read_bytes() == (trial / "policy.pt").read_bytes()
    written = yaml.safe_load((trial / "config.yaml").read_text())  # absolute paths, as older runs wrote them
    assert yaml.safe_load((out / "config.yaml").read_text())["data"]["manifest"] == "manifest.parquet"
    assert absolute_config_paths(yaml.safe_load((out / "config.yaml").read_text()), data_root(written)) == written
    assert json.loads((out / "classes.json").read_text()) == CLASSES
    markdown = (out / "card.md").read_text()
    assert "accuracy (top-1) | 0.7500" in markdown
    assert "GFLOPs per video, mean | 2.000" in markdown
    assert "GFLOPs per video, p5 / p95 | 1.000 / 3.000" in markdown
    assert "32b 25%" in markdown and "skip 25%" in markdown
    printed = capsys.readouterr().out
    assert "picked trial 1: accuracy 0.7500, 2.000 GFLOPs" in printed
    model = deploy.load(out)
    assert model.model.decision_space == tuple(space)
    assert model.class_names == tuple(CLASSES)


def test_budget_nothing_meets_exits_2_naming_the_cheapest(run_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bundle"
    assert main([str(run_dir), "--max-gflops", "0.8", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "within 0.8 GFLOPs" in error
    assert "trial 0" in error and "needs 1 GFLOPs" in error
    assert not out.exists()
    assert main([str(run_dir), "--min-accuracy", "0.9", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "accuracy 0.9" in error and "trial 3" in error and "0.82" in error
    assert list(tmp_path.iterdir()) == []  # no bundle, no staging folder left behind


def test_missing_run_dir_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope"), "--knee", "--out", str(tmp_path / "bundle")]) == 2
    error = capsys.readouterr().err
    assert "trials.parquet does not exist" in error and "searchlab.sweep" in error


def test_run_without_completed_feasible_trials_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    TrialsTable.in_run(tmp_path / "run").upsert(
        TrialRecord(trial_id="t0", number=0, status="failed", error="boom", metrics={"accuracy": 0.9, "gflops": 1.0})
    )
    assert main([str(tmp_path / "run"), "--knee", "--out", str(tmp_path / "bundle")]) == 2
    assert "no completed feasible trial" in capsys.readouterr().err


def test_missing_weights_exit_2_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = write_run_dir(tmp_path)
    (run_dir / "trials" / "trial_001" / "stage2" / "policy.pt").unlink()
    assert main([str(run_dir), "--knee", "--out", str(tmp_path / "bundle")]) == 2
    error = capsys.readouterr().err
    assert "trial_001" in error and "the policy (stage2)" in error and "policy.pt" in error
    assert not (tmp_path / "bundle").exists()


def test_out_replaces_a_bundle_but_never_another_folder(run_dir: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bundle"
    assert picked(run_dir, out, "--knee")["source"]["number"] == 1
    assert picked(run_dir, out, "--max-gflops", "100")["source"]["number"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert picked(run_dir, empty, "--knee")["source"]["number"] == 1  # nothing to lose in an empty folder


def unmarked_bundle(folder: Path) -> Path:
    """A bundle as an older searchlab wrote it (card.json, no marker): not provably ours."""
    folder.mkdir()
    (folder / "card.json").write_text("{}")
    (folder / "notes.txt").write_text("keep me")
    return folder


@pytest.mark.parametrize(("make", "what"), [
    (lambda path: unmarked_bundle(path), "is a non-empty folder"),
    (lambda path: path.write_text("keep me"), "is a file"),
])
def test_out_refuses_anything_but_its_own_bundle(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 make, what: str) -> None:
    out = tmp_path / "out"
    make(out)
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert main([str(run_dir), "--knee", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {out} {what} but not a searchlab bundle (no {BUNDLE_MARKER} marker)")
    assert "choose another --out" in error
    assert {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.fixture
def umask() -> Iterator[None]:
    previous = os.umask(0o027)  # group may read, others nothing: neither mkdtemp's 0700 nor 0755
    yield
    os.umask(previous)


def test_the_bundle_has_the_users_default_permissions(run_dir: Path, tmp_path: Path, umask: None) -> None:
    out = tmp_path / "bundle"
    picked(run_dir, out, "--knee")
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {
        name: 0o640 for name in [*deploy.bundle_files("videoiq"), BUNDLE_MARKER]}


def test_the_bundle_names_no_path_of_the_machine(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    picked(run_dir, out, "--knee")
    for path in out.iterdir():
        content = path.read_bytes()
        for folder in (REPO, run_dir, tmp_path):  # the data set lives in the repository, the run in tmp
            assert str(folder).encode() not in content, (path.name, folder)
    assert json.loads((out / "card.json").read_text())["source"]["run"] == "demo"


def test_a_trial_with_a_non_finite_objective_is_never_picked(tmp_path: Path) -> None:
    """A table from before completed trials had to be finite: an infinite accuracy must not win."""
    run_dir = write_run_dir(tmp_path)
    table = TrialsTable.in_run(run_dir)
    row = table.read().set_index("trial_id").loc["trial_000"]
    record = TrialRecord(trial_id="trial_000", number=0, status="completed", params=json.loads(row["params"]),
                         metrics={"accuracy": 0.5, "gflops": 1.0, **json.loads(row["metrics_extra"])}).to_row()
    table._upsert_rows([{**record, "accuracy": float("inf")}])  # written as an older searchlab could
    assert main([str(run_dir), "--max-gflops", "1.5", "--out", str(tmp_path / "bundle")]) == 2  # 0 was the only fit
    assert main([str(run_dir), "--knee", "--out", str(tmp_path / "bundle")]) == 0
    assert json.loads((tmp_path / "bundle" / "card.json").read_text())["source"]["number"] != 0


def test_trial_exports_that_trial_even_off_the_front(run_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    card = picked(run_dir, tmp_path / "bundle", "--trial", "4")  # dominated by trial 2, still exportable
    assert card["source"] == {"run": "demo", "trial_id": "trial_004", "number": 4, "cost_bias": 0.0}
    assert card["selection"]["rule"] == "--trial 4"
    assert card["selection"]["on_front"] is False and card["selection"]["front_numbers"] == [0, 1, 2, 3]
    assert "picked trial 4" in capsys.readouterr().out
    assert "trial 4 is not on the front" in (tmp_path / "bundle" / "card.md").read_text()


@pytest.mark.parametrize(("number", "expected"), [
    (6, "trial 6 is failed (stage 2 ran out of memory): only a completed trial can be exported"),
    (7, "trial 7 is running"),
    (5, "trial 5 is infeasible"),
    (42, "has no trial 42; its trials are numbered 0..7"),
])
def test_trial_that_cannot_be_exported_exits_2_saying_why(run_dir: Path, tmp_path: Path, number: int, expected: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(run_dir), "--trial", str(number), "--out", str(tmp_path / "bundle")]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "bundle").exists()


def test_card_states_the_input_contract_the_choice_and_the_data(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    card = picked(run_dir, out, "--knee")
    contract = card["input"]
    assert contract["shape"] == "(N, 4, 3, 32, 32)" and contract["frames"] == 4
    assert contract["short_side"] == 64 and contract["crop"] == "centre 32x32"
    assert contract["channel_order"] == "RGB" and contract["dtype"] == "float32"
    assert contract["mean"] == [0.485, 0.456, 0.406] and contract["std"] == [0.229, 0.224, 0.225]
    assert "TSN" in contract["sampling"] and "centre frame" in contract["sampling"]
    selection = card["selection"]
    assert selection["rule"] == "--knee" and selection["knee"] and selection["on_front"]
    assert selection["trials"] == 8 and selection["completed_feasible"] == 5
    assert selection["sampler"] == "tpe" and "stage2.decision_space" in selection["searched"]
    assert card["data"]["manifest"] == "manifest.parquet" and card["data"]["classes"] == 4
    assert card["data"]["evaluation_split"] == "val"
    markdown = (out / "card.md").read_text()
    assert "Chosen with `--knee` among 5 completed feasible trials of 8 by the tpe sampler" in markdown
    assert "## Input contract" in markdown and "(N, 4, 3, 32, 32)" in markdown and "short side to 64 px" in markdown
    assert 'model.predict_video("video.mp4")' in markdown and "from searchlab.deploy import load" in markdown


def test_the_cards_snippet_runs(run_dir: Path, tmp_path: Path, synthetic_set, capsys: pytest.CaptureFixture[str]) -> None:
    import re

    import pandas as pd

    manifest, root = synthetic_set
    video = root / pd.read_parquet(root / "manifest.parquet")["path"].iloc[0]
    out = tmp_path / "bundle"
    picked(run_dir, out, "--knee")
    markdown = (out / "card.md").read_text()
    assert "| action usage | 32b 25%, 4b 25%, 2b 25%, skip 25% |" in markdown
    code = re.search(r"```python\n(.*?)```", markdown, re.S).group(1)
    code = code.replace("BUNDLE_DIR", str(out)).replace("video.mp4", str(video))
    capsys.readouterr()
    exec(compile(code, "card.md", "exec"), {})  # noqa: S102 (the card's own snippet)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[0] in CLASSES
    assert sum(line.split()[-1] in {"32b", "4b", "2b", "skip"} for line in printed) == 4  # one per sampled frame


# --- curves: every trial's operating points (points.parquet) -------------------------------------

#: trial 4's curve (cost_bias: accuracy, GFLOPs): at 2 it beats trial 1 (0.75 at 2.0), at 9 it is infeasible
CURVE_4 = {-1.0: (0.62, 6.0), 0.0: (0.60, 5.0), 2.0: (0.78, 1.8), 9.0: (0.99, 0.2)}


@pytest.fixture(scope="module")
def curve_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from searchlab.results import PointRecord, PointsTable

    run_dir = write_run_dir(tmp_path_factory.mktemp("pick_curves"))
    PointsTable.in_run(run_dir).upsert(
        PointRecord(trial_id="trial_004", number=4, method="videoiq", cost_bias=bias,
                    metrics={"accuracy": accuracy, "gflops": gflops, "gflops_p5": gflops / 2, "gflops_p95": gflops * 2,
                             "memory_mb": 8.0, "skip_fraction": 0.25, "usage": {"32": 0.5, "2": 0.25, "0": 0.25}},
                    violations={"gflops <= 20": gflops - 20.0} if bias != 9.0 else {"gflops <= 20": 1.0})
        for bias, (accuracy, gflops) in CURVE_4.items())
    return run_dir


def test_a_curve_point_joins_the_front_and_is_picked_with_its_operating_point(curve_run_dir: Path,
                                                                               tmp_path: Path) -> None:
    card = picked(curve_run_dir, tmp_path / "bundle", "--max-gflops", "1.9")  # trial 4 at 2: 0.78 at 1.8
    assert card["source"] == {"run": "demo", "trial_id": "trial_004", "number": 4, "cost_bias": 2.0}
    assert (card["accuracy"], card["gflops_mean"], card["gflops_p95"]) == (0.78, 1.8, 3.6)
    assert card["action_usage"] == {"32": 0.5, "2": 0.25, "0": 0.25}
    config = yaml.safe_load((tmp_path / "bundle" / "config.yaml").read_text())
    assert config["inference"] == {"cost_bias": 2.0}
    assert deploy.load(tmp_path / "bundle").config.inference.cost_bias == 2.0
    selection = card["selection"]
    assert selection["on_front"] and "4@2" in selection["front_points"] and "1" not in selection["front_points"]
    markdown = (tmp_path / "bundle" / "card.md").read_text()
    assert "Operating point: `inference.cost_bias` 2" in markdown
    assert "among 7 feasible operating points (their curves) of 5 trials of 8" in markdown


def test_trial_and_cost_bias_export_that_point_and_name_the_others(curve_run_dir: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    card = picked(curve_run_dir, tmp_path / "bundle", "--trial", "4", "--cost-bias", "-1")
    assert (card["source"]["cost_bias"], card["accuracy"], card["gflops_mean"]) == (-1.0, 0.62, 6.0)
    assert main([str(curve_run_dir), "--trial", "4", "--cost-bias", "9", "--out", str(tmp_path / "b2")]) == 2
    assert "no feasible point at cost_bias 9; its feasible points: cost_bias -1, 0, 2" in capsys.readouterr().err
    assert picked(curve_run_dir, tmp_path / "b3", "--trial", "4")["source"]["cost_bias"] == 0.0


def test_cost_bias_without_trial_is_a_usage_error(curve_run_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(curve_run_dir), "--knee", "--cost-bias", "2", "--out", str(tmp_path / "bundle")])
    assert exit_info.value.code == 2 and "give --trial N with it" in capsys.readouterr().err
