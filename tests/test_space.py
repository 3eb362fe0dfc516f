"""Space entries -> Optuna: encoding of list choices, conditions, points, samplers, constraints."""

from __future__ import annotations

import importlib.util
import re
import statistics
from functools import partial

import optuna
import pytest

from searchlab.config import Constraint, SearchConfig, SpaceEntry, TrialConfig, load_sweep
from searchlab.space import (
    constraint_violations,
    decode_params,
    encode_point,
    encode_value,
    make_sampler,
    ordered_keys,
    record_constraints,
    suggest,
    to_distributions,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

DECISIONS = [[32, 4, 2, 0], [32, 2, 0], [32, 0]]


def _space(**entries: dict) -> dict[str, SpaceEntry]:
    return {key.replace("__", "."): SpaceEntry.model_validate(value) for key, value in entries.items()}


def _base() -> TrialConfig:
    return TrialConfig.model_validate({"data": {"manifest": "m.parquet"}})


def test_list_choices_round_trip_through_optuna() -> None:
    space = _space(stage2__decision_space={"choice": DECISIONS}, stage2__w1={"uniform": [0.0, 1.0]})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(12):
        trial = study.ask()
        values = suggest(trial, space)
        seen.append(values["stage2.decision_space"])
        assert trial.params["stage2.decision_space"] == encode_value(values["stage2.decision_space"])
        assert decode_params(trial.params, space) == values
        study.tell(trial, values["stage2.w1"])
    assert {tuple(v) for v in seen} == {tuple(d) for d in DECISIONS}
    assert all(isinstance(v, list) for v in seen)
    assert encode_value([32, 4, 2, 0]) == "[32, 4, 2, 0]"  # what optuna-dashboard shows


def test_choices_that_encode_alike_are_rejected() -> None:
    space = _space(stage2__decision_space={"choice": [[32, 0], "[32, 0]"]})
    with pytest.raises(ValueError, match=re.escape("both encode to '[32, 0]'")):
        to_distributions(space)


def test_nested_choices_read_as_json_with_sorted_keys() -> None:
    assert encode_value({"b": [1, 2], "a": True}) == '{"a": true, "b": [1, 2]}'
    space = _space(stage2__w={"choice": [{"b": 1, "a": 2}, [[32, 0], [4]]]})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(6):
        trial = study.ask()
        values = suggest(trial, space)
        assert decode_params(trial.params, space) == values
        study.tell(trial, 0.0)


def _legacy_study(codes: list[str]) -> optuna.Study:
    """A study as searchlab stored it before choices read as values: one finished trial."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    trial.suggest_categorical("stage2.decision_space", codes)
    study.tell(trial, 0.0)
    return study


def test_a_study_begun_with_the_legacy_encoding_goes_on_with_it() -> None:
    """A sweep resumed across the change: Optuna refuses new choices for a stored parameter, so its
    study keeps "32-4-2-0"; the values decode alike."""
    space = _space(stage2__decision_space={"choice": DECISIONS})
    study = _legacy_study(["32-4-2-0", "32-2-0", "32-0"])
    seen = set()
    for _ in range(8):
        trial = study.ask()
        values = suggest(trial, space)
        assert trial.params["stage2.decision_space"] == "-".join(map(str, values["stage2.decision_space"]))
        assert decode_params(trial.params, space) == values
        seen.add(tuple(values["stage2.decision_space"]))
        study.tell(trial, 0.0)
    assert seen == {tuple(d) for d in DECISIONS}


def test_a_study_whose_stored_choices_match_neither_encoding_is_refused_clearly() -> None:
    space = _space(stage2__decision_space={"choice": DECISIONS})
    study = _legacy_study(["32-4-2-0", "32-0"])  # the space gained a choice since
    with pytest.raises(ValueError, match="the space changed since the study began"):
        suggest(study.ask(), space)


def test_distributions_of_every_kind() -> None:
    space = _space(
        stage2__w1={"uniform": [0.0, 1.0], "step": 0.25},
        stage2__lr={"loguniform": [1e-4, 1e-1]},
        stage2__epochs={"int": [2, 10], "step": 2},
        model__backbone={"choice": ["resnet10", "resnet18"]},
    )
    dists = to_distributions(space)
    assert dists["stage2.w1"] == optuna.distributions.FloatDistribution(0.0, 1.0, step=0.25)
    assert dists["stage2.lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    assert dists["stage2.epochs"] == optuna.distributions.IntDistribution(2, 10, step=2)
    assert dists["model.backbone"].choices == ("resnet10", "resnet18")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(10):
        values = suggest(study.ask(), space)
        assert values["stage2.w1"] in (0.0, 0.25, 0.5, 0.75, 1.0)
        assert values["stage2.epochs"] in (2, 4, 6, 8, 10)
        assert 1e-4 <= values["stage2.lr"] <= 1e-1


def test_conditional_entries_follow_their_conditions() -> None:
    # Declared before the key it depends on: ordering must still put the condition first.
    space = _space(
        stage2__w2={"uniform": [0.0, 1.0], "when": {"stage2.decision_space": [32, 4, 2, 0]}},
        stage2__w3={"uniform": [0.0, 0.3], "when": {"model.backbone": "resnet50"}},
        stage2__decision_space={"choice": DECISIONS},
    )
    assert ordered_keys(space).index("stage2.decision_space") < ordered_keys(space).index("stage2.w2")
    with pytest.raises(ValueError, match="conditional"):
        to_distributions(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    base = _base()  # backbone resnet50: the w3 condition reads the base config
    outcomes = set()
    for _ in range(15):
        values = suggest(study.ask(), space, base=base)
        assert "stage2.w3" in values
        assert ("stage2.w2" in values) == (values["stage2.decision_space"] == [32, 4, 2, 0])
        outcomes.add("stage2.w2" in values)
    assert outcomes == {True, False}
    with pytest.raises(ValueError, match="pass base="):
        suggest(study.ask(), space)


def test_condition_cycle_is_reported() -> None:
    space = _space(
        stage2__w1={"uniform": [0.0, 1.0], "when": {"stage2.w2": 0.5}},
        stage2__w2={"uniform": [0.0, 1.0], "when": {"stage2.w1": 0.5}},
    )
    with pytest.raises(ValueError, match="cycle: stage2.w1 -> stage2.w2 -> stage2.w1"):
        ordered_keys(space)


def test_points_to_evaluate_are_encoded_and_enqueued() -> None:
    sweep = load_sweep("spaces/demo.yaml")
    point = encode_point(sweep.search.points_to_evaluate[0], sweep.space)
    assert point["stage2.decision_space"] == "[32, 4, 2, 0]"
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(sweep.search, sweep.space))
    study.enqueue_trial(point)
    values = suggest(study.ask(), sweep.space, base=sweep.base)
    assert values == {"stage2.decision_space": [32, 4, 2, 0], "stage2.w1": 0.21, "stage2.w2": 0.5, "stage2.w3": 0.1}
    with pytest.raises(ValueError) as error:
        encode_point({"stage2.decision_space": [4, 2], "stage2.w1": 30.0, "nope": 1}, sweep.space)
    low, high = sweep.space["stage2.w1"].uniform
    for fragment in ("not among the choices", f"30.0 is not a number in [{low}, {high}]", "nope: not in space"):
        assert fragment in str(error.value)


def test_define_by_run_works_through_rays_suggest_captor() -> None:
    """Ray's OptunaSearch wraps the trial and merges our returned dict over the raw suggestions."""
    from ray.tune.search.optuna.optuna_search import _OptunaTrialSuggestCaptor

    space = _space(stage2__decision_space={"choice": DECISIONS}, stage2__w1={"uniform": [0.0, 1.0]})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    captor = _OptunaTrialSuggestCaptor(study.ask())
    returned = partial(suggest, space=space)(captor)
    merged = {**captor.captured_values, **returned}
    assert isinstance(merged["stage2.decision_space"], list)
    assert captor.captured_values["stage2.decision_space"] == encode_value(merged["stage2.decision_space"])


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random", "grid"])
def test_every_sampler_runs_a_tiny_study(sampler: str) -> None:
    space = _space(stage2__decision_space={"choice": DECISIONS}, model__backbone={"choice": ["a", "b"]})
    if sampler != "grid":
        space["stage2.w1"] = SpaceEntry.model_validate({"uniform": [0.0, 1.0]})
    search = SearchConfig(sampler=sampler, trials=6, seed=5)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(search, space))
    for number in range(6):
        trial = study.ask()
        values = suggest(trial, space)
        objectives = [len(values["stage2.decision_space"]), float(values["model.backbone"] == "a")]
        if sampler == "grid" and number == 5:
            # The exhausted grid calls Study.stop, which ask/tell users (Ray) see as an error
            # after the trial is stored; Ray's OptunaSearch logs it as a warning.
            with pytest.raises(RuntimeError, match="Study.stop"):
                study.tell(trial, objectives)
        else:
            study.tell(trial, objectives)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 6
    if sampler == "grid":
        combos = {(t.params["stage2.decision_space"], t.params["model.backbone"]) for t in study.trials}
        assert len(combos) == 6  # a grid visits each of the 3 x 2 points once


def test_grid_rejects_ranges_and_conditions() -> None:
    search = SearchConfig(sampler="grid")
    with pytest.raises(ValueError, match="choice entries only"):
        make_sampler(search, _space(stage2__w1={"uniform": [0.0, 1.0]}))
    with pytest.raises(ValueError, match="conditional"):
        make_sampler(search, _space(stage2__w1={"choice": [0.1], "when": {"model.backbone": "x"}}))


def test_gp_sampler_needs_scipy() -> None:
    space = _space(stage2__w1={"uniform": [0.0, 1.0]})
    search = SearchConfig(sampler="gp", seed=0)
    if importlib.util.find_spec("scipy") is None:
        with pytest.raises(RuntimeError, match="needs scipy"):
            make_sampler(search, space)
    else:
        assert isinstance(make_sampler(search, space), optuna.samplers.GPSampler)


def test_constraint_violations_follow_optunas_sign_convention() -> None:
    constraints = [Constraint.parse("gflops <= 30"), Constraint.parse("accuracy >= 0.5")]
    assert constraint_violations(constraints, {"gflops": 25.0, "accuracy": 0.7}) == pytest.approx(
        {"gflops <= 30": -5.0, "accuracy >= 0.5": -0.2}
    )
    assert constraint_violations(constraints, {"gflops": 40.0, "accuracy": 0.4}) == pytest.approx(
        {"gflops <= 30": 10.0, "accuracy >= 0.5": 0.1}
    )
    with pytest.raises(KeyError, match="accuracy"):
        constraint_violations(constraints, {"gflops": 1.0})


def test_record_constraints_takes_names_or_a_list() -> None:
    study = optuna.create_study()
    named, listed = study.ask(), study.ask()
    record_constraints(named, {"gflops <= 30": 2.0})
    record_constraints(listed, [-1.0, 0.5])
    assert named.constraints == {"gflops <= 30": 2.0}
    assert listed.constraints == {"0": -1.0, "1": 0.5}
    with pytest.raises(ValueError, match="NaN"):
        record_constraints(study.ask(), [float("nan")])


def _constrained_run(sampler_name: str, *, constrained: bool) -> list[float]:
    """Minimise (a, b) on [0, 1]^2 subject to a >= 0.6: the unconstrained optimum is infeasible."""
    space = _space(stage2__w1={"uniform": [0.0, 1.0]}, stage2__w2={"uniform": [0.0, 1.0]})
    search = SearchConfig(sampler=sampler_name, trials=40, seed=11)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=make_sampler(search, space))
    constraint = Constraint.parse("accuracy >= 0.6")
    first = []
    for _ in range(40):
        trial = study.ask()
        values = suggest(trial, space)
        if constrained:
            record_constraints(trial, constraint_violations([constraint], {"accuracy": values["stage2.w1"]}))
        study.tell(trial, [values["stage2.w1"], values["stage2.w2"]])
        first.append(values["stage2.w1"])
    if constrained:
        infeasible = [t for t in study.trials if t.params["stage2.w1"] < 0.6]
        assert infeasible and all(t.constraints["accuracy >= 0.6"] > 0 for t in infeasible)
        assert all(t.params["stage2.w1"] >= 0.6 for t in study.best_trials)  # the front is feasible
    return first[20:]


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_samplers_steer_away_from_infeasible_trials(sampler: str) -> None:
    free = statistics.median(_constrained_run(sampler, constrained=False))
    bound = statistics.median(_constrained_run(sampler, constrained=True))
    # Unconstrained, the sampler pushes w1 towards 0; constrained, it settles at the 0.6 border.
    assert free < 0.4
    assert bound >= 0.55


def test_gp_sampler_fits_its_constrained_multi_objective_model() -> None:
    """`sampler: gp` with scipy installed (a dependency): after its random start-up trials the GP
    sampler models both objectives and the constraint that `record_constraints` stored (Optuna 5
    reads it from the trial; no constraints_func), and its suggestions are ones the space allows."""
    space = _space(stage2__decision_space={"choice": DECISIONS}, stage2__w1={"uniform": [0.0, 1.0]})
    search = SearchConfig(sampler="gp", trials=8, seed=3, constraints=["accuracy >= 0.3"])
    sampler = make_sampler(search, space)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for _ in range(search.trials):
        trial = study.ask()
        values = suggest(trial, space)
        accuracy = values["stage2.w1"]
        record_constraints(trial, constraint_violations(search.parsed_constraints(), {"accuracy": accuracy}))
        study.tell(trial, [accuracy, accuracy * len(values["stage2.decision_space"])])
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * search.trials
    assert all(t.params["stage2.decision_space"] in {encode_value(d) for d in DECISIONS} for t in study.trials)
    # one kernel per objective and one per constraint: the constrained multi-objective acquisition ran
    assert len(sampler._gprs_cache_list or []) == 2
    assert len(sampler._constraints_gprs_cache_list or []) == 1
