"""Sweep-file schema: every shipped file loads; every problem of a bad file is reported at once."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from searchlab.config import ConfigError, SpaceEntry, TrialConfig, load_sweep, parse_sweep

SPACES = sorted(Path(__file__).resolve().parents[1].joinpath("spaces").glob("*.yaml"))


def _demo_tree() -> dict:
    return yaml.safe_load(Path("spaces/demo.yaml").read_text())


@pytest.mark.parametrize("path", SPACES, ids=[p.name for p in SPACES])
def test_every_shipped_sweep_file_is_valid(path: Path) -> None:
    sweep = load_sweep(path)
    assert sweep.source == str(path)
    assert Path(sweep.base.data.manifest).is_absolute()  # resolved for Ray workers
    for point in sweep.search.points_to_evaluate:
        sweep.trial_config(point)  # starting points give valid trials (in their method's base)


def test_spaces_folder_is_not_empty() -> None:
    assert any(p.name == "demo.yaml" for p in SPACES)


def test_all_problems_are_reported_at_once() -> None:
    tree = _demo_tree()
    tree["base"]["data"]["framez"] = 8  # unknown key
    tree["base"]["stage1"]["epochs"] = "three"  # wrong type
    tree["base"]["stage2"]["decision_space"] = [4, 2, 0]  # Ω without the top bit-width 32
    tree["search"]["constraints"] = ["latency <= 3"]  # unknown metric
    tree["space"]["stage2.w9"] = {"uniform": [0, 1]}  # no such config key
    tree["space"]["stage2.w3"] = {"choice": []}  # empty choice
    tree["search"]["points_to_evaluate"].append({"stage2.w4": 0.1})  # not in space
    with pytest.raises(ConfigError) as error:
        parse_sweep(tree, source="bad.yaml")
    problems = "\n".join(error.value.problems)
    expected = [
        "base.data.framez: unknown key",
        "base.stage1.epochs: Input should be a valid integer",
        "must contain the top bit-width 32",
        "unknown metric 'latency'",
        "space.stage2.w9: unknown key 'w9'",
        "space.stage2.w3",
        "choice is empty",
        "search.points_to_evaluate[1].stage2.w4: not in space",
    ]
    missing = [fragment for fragment in expected if fragment not in problems]
    assert not missing, f"not reported: {missing}\nreported:\n{problems}"
    assert str(error.value).startswith("bad.yaml: ")


def test_decision_space_alone_is_reported_too() -> None:
    tree = _demo_tree()
    tree["base"]["stage2"]["decision_space"] = [4, 2, 0]
    with pytest.raises(ConfigError) as error:
        parse_sweep(tree, source="x")
    assert sum("top bit-width 32" in p for p in error.value.problems) == 1  # once, not twice


def test_space_entry_rules() -> None:
    for bad, message in [
        ({"uniform": [1.0, 0.0]}, "low < high"),
        ({"loguniform": [0.0, 1.0]}, "must be > 0"),
        ({"loguniform": [0.1, 1.0], "step": 0.1}, "step applies to uniform and int only"),
        ({"int": [1, 9], "step": 1.5}, "whole number"),
        ({"choice": [1], "uniform": [0.0, 1.0]}, "exactly one of"),
        ({"uniform": [0.0, 1.0], "bogus": 1}, "Extra inputs"),
    ]:
        with pytest.raises(ValueError, match=message):
            SpaceEntry.model_validate(bad)
    assert SpaceEntry.model_validate({"int": [1, 9], "step": 2}).kind == "integer"


def test_points_must_use_listed_choices_and_grid_needs_plain_choices() -> None:
    tree = _demo_tree()
    tree["search"]["points_to_evaluate"][0]["stage2.decision_space"] = [32, 4]
    tree["search"]["sampler"] = "grid"
    tree["space"] = {
        "stage2.decision_space": tree["space"]["stage2.decision_space"],
        "stage2.w1": {"choice": [0.1, 0.2], "when": {"stage2.decision_space": [32, 0]}},
    }
    tree["search"]["points_to_evaluate"] = [{"stage2.decision_space": [32, 4]}]
    with pytest.raises(ConfigError) as error:
        parse_sweep(tree, source="x")
    problems = "\n".join(error.value.problems)
    assert "[32, 4] is not among the choices" in problems
    assert "grid cannot search conditional entries ['stage2.w1']" in problems


def test_choice_values_must_give_valid_trials() -> None:
    tree = _demo_tree()
    tree["space"]["stage2.decision_space"]["choice"].append([4, 0])
    with pytest.raises(ConfigError, match=r"choice \[4, 0\] gives an invalid trial"):
        parse_sweep(tree, source="x")


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_sweep(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("base: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_sweep(tmp_path / "bad.yaml")


def test_with_overrides_replaces_dotted_keys_and_validates() -> None:
    base = load_sweep("spaces/demo.yaml").base
    new = base.with_overrides({"stage2.w1": 0.5, "stage2.decision_space": [32, 0], "stage1.alpha.lr.4": 0.2})
    assert (new.stage2.w1, new.stage2.decision_space, new.stage1.alpha.lr[4]) == (0.5, (32, 0), 0.2)
    assert base.stage2.w1 == 0.21  # frozen original untouched
    with pytest.raises(ConfigError) as error:
        base.with_overrides({"stage2.nope": 1, "stage9.lr": 1})
    assert len(error.value.problems) == 2
    with pytest.raises(ConfigError, match="top bit-width"):
        base.with_overrides({"stage2.decision_space": [4, 0]})


def test_trial_config_needs_only_a_manifest() -> None:
    config = TrialConfig.model_validate({"data": {"manifest": "m.parquet"}})
    assert config.stage2.decision_space == (32, 4, 2, 0) and config.model.bit_widths == (32, 4, 2)
    assert copy.deepcopy(config) == config
