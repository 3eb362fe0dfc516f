"""Load-time checks of sweep files: every problem a run would meet is reported by load_sweep, at once.

Each bad input is written to a YAML file and loaded the way `python -m searchlab.sweep FILE --dry-run`
loads it; the ConfigError must name the key, the bad value and the fix.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from searchlab.config import ConfigError, TemperatureConfig, TemperatureKind, TrialConfig, load_sweep
from searchlab.models.temperature import KINDS, PER, TemperatureSchedule

REPO = Path(__file__).resolve().parents[1]


def demo_tree() -> dict[str, Any]:
    return yaml.safe_load((REPO / "spaces" / "demo.yaml").read_text())


def problems_of(tmp_path: Path, tree: dict[str, Any]) -> list[str]:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    with pytest.raises(ConfigError) as error:
        load_sweep(path)
    return error.value.problems


def assert_reported(problems: list[str], *fragments: str) -> None:
    text = "\n".join(problems)
    missing = [fragment for fragment in fragments if fragment not in text]
    assert not missing, f"not reported: {missing}\nreported:\n{text}"


# ---------------------------------------------------------------------------------------------
# stage2.temperature


def test_temperature_section_lists_every_problem_of_the_schedule(tmp_path: Path) -> None:
    tree = demo_tree()
    tree["base"]["stage2"]["temperature"] = {"kind": "linear", "tau0": -1.0, "rate": 0.9, "per": "step"}
    problems = problems_of(tmp_path, tree)
    assert_reported(
        problems,
        "base.stage2.temperature: kind 'linear' needs 'tau_end'; add it",
        "base.stage2.temperature: 'rate' is not a parameter of kind 'linear'; remove it",
        "base.stage2.temperature: unknown per 'step'; choose one of ['epoch', 'iteration']",
        "base.stage2.temperature: tau0=-1.0 must be > 0",
    )
    assert len(problems) == 4  # one line each


def test_temperature_section_rejects_unknown_kinds_and_keys(tmp_path: Path) -> None:
    tree = demo_tree()
    tree["base"]["stage2"]["temperature"] = {"kind": "expo", "tau0": 5.0, "rate": 1.5, "speed": 2}
    assert_reported(
        problems_of(tmp_path, tree),
        "unknown kind 'expo'; choose one of ['constant', 'cosine', 'exponential', 'linear']",
        "unknown key 'speed'",
        "rate=1.5 must lie in (0, 1]",
    )
    tree["base"]["stage2"]["temperature"] = "exponential"
    assert_reported(problems_of(tmp_path, tree), "base.stage2.temperature: a temperature schedule must be a mapping")


def test_temperature_section_reads_as_the_mapping_the_schedule_takes() -> None:
    sweep = load_sweep(REPO / "spaces" / "anet.yaml")
    section = sweep.base.stage2.temperature
    assert isinstance(section, TemperatureConfig)
    assert dict(section) == {"kind": "exponential", "tau0": 5.0, "rate": 0.956, "per": "epoch"}
    assert TemperatureSchedule.from_dict(section) == TemperatureSchedule()  # what stage 2 builds
    linear = TemperatureConfig.model_validate({"kind": "linear", "tau0": 5, "tau_end": 0.5, "per": "iteration"})
    assert dict(linear) == {"kind": "linear", "tau0": 5.0, "tau_end": 0.5, "per": "iteration"}
    assert TemperatureSchedule.from_dict(linear).value(epoch=1, total_epochs=2, iterations_per_epoch=1) == 0.5
    default = TrialConfig.model_validate({"data": {"manifest": "m.parquet"}}).stage2.temperature
    assert dict(default) == TemperatureSchedule().to_dict()  # the official VideoIQ schedule
    assert sweep.model_validate_json(sweep.model_dump_json()) == sweep  # what a trial process receives
    assert sweep.base.model_dump()["stage2"]["temperature"] == dict(section)


def test_searched_temperature_parameters_are_validated_like_the_section() -> None:
    base = load_sweep(REPO / "spaces" / "anet.yaml").base
    assert base.with_overrides({"stage2.temperature.rate": 0.93}).stage2.temperature["rate"] == 0.93
    with pytest.raises(ConfigError, match=r"stage2.temperature: rate=1.2 must lie in \(0, 1\]"):
        base.with_overrides({"stage2.temperature.rate": 1.2})


def test_typed_kinds_match_the_schedules() -> None:
    assert set(typing.get_args(TemperatureKind)) == set(KINDS)
    assert set(typing.get_args(TemperatureConfig.model_fields["per"].annotation)) == set(PER)
