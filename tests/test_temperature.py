"""Temperature schedules: values at given steps, dict round trip, validation messages."""

from __future__ import annotations

import math

import pytest

from searchlab.models.temperature import KINDS, TemperatureSchedule, schedule_problems


def test_default_is_official_videoiq_schedule() -> None:
    schedule = TemperatureSchedule()
    assert (schedule.kind, schedule.tau0, schedule.rate, schedule.per) == ("exponential", 5.0, 0.956, "epoch")
    assert schedule.value(epoch=0) == pytest.approx(5.0)
    assert schedule.value(epoch=10) == pytest.approx(5.0 * 0.956**10)
    # AR-Net writes the same curve as 5 * exp(-0.045 * epoch).
    assert schedule.value(epoch=49) == pytest.approx(5.0 * math.exp(-0.045 * 49), rel=2e-3)
    # Per-epoch schedules ignore the iteration within the epoch.
    assert schedule.value(epoch=3, iteration=7, iterations_per_epoch=10) == schedule.value(epoch=3)


def test_linear_and_cosine_reach_tau_end_on_the_last_epoch() -> None:
    linear = TemperatureSchedule(kind="linear", tau0=5.0, tau_end=1.0)
    assert [linear.value(epoch=e, total_epochs=5) for e in range(5)] == pytest.approx([5.0, 4.0, 3.0, 2.0, 1.0])
    cosine = TemperatureSchedule(kind="cosine", tau0=5.0, tau_end=1.0)
    assert cosine.value(epoch=0, total_epochs=5) == pytest.approx(5.0)
    assert cosine.value(epoch=2, total_epochs=5) == pytest.approx(3.0)
    assert cosine.value(epoch=1, total_epochs=5) == pytest.approx(1.0 + 2.0 * (1 + math.cos(math.pi / 4)))
    assert cosine.value(epoch=4, total_epochs=5) == pytest.approx(1.0)
    assert TemperatureSchedule(kind="constant", tau0=0.7).value(epoch=30) == pytest.approx(0.7)


def test_per_iteration_steps_count_global_iterations() -> None:
    exponential = TemperatureSchedule(kind="exponential", tau0=2.0, rate=0.5, per="iteration")
    assert exponential.value(epoch=1, iteration=1, iterations_per_epoch=3) == pytest.approx(2.0 * 0.5**4)
    linear = TemperatureSchedule(kind="linear", tau0=5.0, tau_end=1.0, per="iteration")
    values = [
        linear.value(epoch=e, iteration=i, iterations_per_epoch=2, total_epochs=3) for e in range(3) for i in range(2)
    ]
    assert values == pytest.approx([5.0, 4.2, 3.4, 2.6, 1.8, 1.0])


@pytest.mark.parametrize(
    "schedule",
    [
        TemperatureSchedule(),
        TemperatureSchedule(kind="exponential", tau0=3.0, rate=0.9, per="iteration"),
        TemperatureSchedule(kind="linear", tau0=5.0, tau_end=0.5),
        TemperatureSchedule(kind="cosine", tau0=4.0, tau_end=0.1, per="iteration"),
        TemperatureSchedule(kind="constant", tau0=1.0),
    ],
)
def test_dict_round_trip(schedule: TemperatureSchedule) -> None:
    data = schedule.to_dict()
    assert set(data) == {"kind", "per", *KINDS[schedule.kind]}
    assert TemperatureSchedule.from_dict(data) == schedule


def test_from_dict_reports_every_problem_with_its_fix() -> None:
    with pytest.raises(ValueError) as info:
        TemperatureSchedule.from_dict({"kind": "expo", "tau0": -1.0, "rate": 1.5, "speed": 2, "per": "batch"})
    message = str(info.value)
    assert "unknown kind 'expo'" in message and "exponential" in message
    assert "unknown key 'speed'" in message
    assert "tau0=-1.0 must be > 0" in message
    assert "rate=1.5 must lie in (0, 1]" in message
    assert "unknown per 'batch'" in message


def test_from_dict_requires_the_parameters_of_the_kind() -> None:
    with pytest.raises(ValueError) as info:
        TemperatureSchedule.from_dict({"kind": "linear", "tau0": 5.0, "rate": 0.9})
    message = str(info.value)
    assert "kind 'linear' needs 'tau_end'" in message
    assert "'rate' is not a parameter of kind 'linear'" in message
    with pytest.raises(ValueError, match="kind 'exponential' needs 'rate'"):
        TemperatureSchedule.from_dict({"kind": "exponential", "tau0": 5.0})
    with pytest.raises(ValueError, match="missing 'kind'"):
        TemperatureSchedule.from_dict({"tau0": 5.0})
    with pytest.raises(ValueError, match="rate=0.0 must lie in"):
        TemperatureSchedule.from_dict({"kind": "exponential", "tau0": 5.0, "rate": 0.0})


def test_constructor_and_value_validate() -> None:
    with pytest.raises(ValueError, match="kind 'cosine' needs 'tau_end'"):
        TemperatureSchedule(kind="cosine", tau0=5.0)
    with pytest.raises(ValueError, match="needs total_epochs"):
        TemperatureSchedule(kind="linear", tau0=5.0, tau_end=1.0).value(epoch=0)
    with pytest.raises(ValueError, match="iteration=4 is outside"):
        TemperatureSchedule(per="iteration").value(epoch=0, iteration=4, iterations_per_epoch=4)
    with pytest.raises(ValueError, match="epoch=-1 is negative"):
        TemperatureSchedule().value(epoch=-1)


def test_schedule_problems_is_what_from_dict_checks() -> None:
    assert schedule_problems(TemperatureSchedule(kind="cosine", tau0=4.0, tau_end=0.1).to_dict()) == []
    bad = {"kind": "constant", "tau0": 0.0, "tau_end": 1.0}
    problems = schedule_problems(bad)
    assert len(problems) == 2 and "tau0=0.0 must be > 0" in problems[0]
    with pytest.raises(ValueError) as info:
        TemperatureSchedule.from_dict(bad)
    assert all(problem in str(info.value) for problem in problems)
    assert schedule_problems([1, 2]) == [
        "a temperature schedule must be a mapping, got list; write e.g. {kind: exponential, tau0: 5, rate: 0.956, per: epoch}"
    ]
