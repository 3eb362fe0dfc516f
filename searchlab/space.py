"""Sweep space entries -> Optuna: define-by-run suggestion, distributions, samplers, constraints.

Optuna categorical values must be None, bool, int, float or str, but a sweep searches lists too
(decision spaces such as ``[32, 4, 2, 0]``). Such values are handed to Optuna as the text they read
as (``"[32, 4, 2, 0]"``: JSON), so optuna-dashboard shows the value, and decoded back by lookup in
the entry's own choices, so decoding is exact (the text is never parsed). Studies begun before
stored flat lists as ``"32-4-2-0"``; a resumed one keeps its own codes (`_study_table`), since
Optuna refuses a parameter whose choices change within a study.

Conditional entries (``when: {key: value}``) are suggested only when every condition holds for the
values already suggested in this trial or, for keys not searched or not suggested, for the base
configuration: entries are ordered so that the keys a condition reads come first.

Constraints reach Optuna 5 through ``Trial.set_constraint`` (`record_constraints`), which every
constrained sampler reads; Optuna 5 deprecates the ``constraints_func`` argument, so none is given.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from searchlab.config import (
    METHOD_KEY,
    Constraint,
    SearchConfig,
    SpaceEntry,
    TrialConfig,
    get_dotted,
    ordered_keys,
    plain,
    point_problems,
    sampler_dependency_problem,
)

_SCALAR = (type(None), bool, int, float, str)


# ---------------------------------------------------------------------------------------------
# Categorical encoding


def encode_value(value: Any) -> Any:
    """An Optuna-storable stand-in for a choice: scalars as they are, lists and mappings as the text
    they read as (``"[32, 4, 2, 0]"``), which optuna-dashboard shows. The JSON that trials.parquet's
    param.* columns hold (`searchlab.results`), so the report's parameters read alike."""
    if isinstance(value, _SCALAR):
        return value
    return json.dumps(plain(value), sort_keys=True)


def _legacy_code(value: Any) -> Any:
    """The stand-in of studies begun before choices read as values: flat lists joined by '-'
    (``"32-4-2-0"``), compact JSON for anything nested. Only read, for such a study's resume."""
    if isinstance(value, _SCALAR):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str)) for v in value):
        return "-".join(str(v) for v in value)
    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"))


def _choice_table(key: str, entry: SpaceEntry, *, encode: Callable[[Any], Any] = encode_value) -> dict[Any, Any]:
    """Encoded -> original value of a choice entry; two choices must not share an encoding."""
    table: dict[Any, Any] = {}
    for value in entry.choice or []:
        code = encode(value)
        if code in table and plain(table[code]) != plain(value):
            raise ValueError(
                f"space.{key}: choices {table[code]!r} and {value!r} both encode to {code!r}; "
                "make the choices distinct"
            )
        table[code] = value
    return table


def _study_table(trial: optuna.trial.Trial, key: str, entry: SpaceEntry) -> dict[Any, Any]:
    """The choice table of the trial's study: today's encoding, or the legacy one when the study's
    earlier trials stored the key's choices so (a sweep resumed across this change)."""
    table = _choice_table(key, entry)
    study = getattr(trial, "study", None)  # an optuna.trial.FixedTrial has none
    stored = _stored_choices(study, key) if study is not None else None
    if stored is None or stored == list(table):
        return table
    legacy = _choice_table(key, entry, encode=_legacy_code)
    if stored == list(legacy):
        return legacy
    raise ValueError(
        f"space.{key}: the study {study.study_name!r} stored its choices as {stored!r}, but the sweep's space "
        f"gives {list(table)!r}; the space changed since the study began: start the sweep again (--overwrite)"
    )


def _stored_choices(study: optuna.Study, key: str) -> list[Any] | None:
    """The choices the study's earlier trials stored for ``key`` (None before any trial suggested it)."""
    for frozen in study.get_trials(deepcopy=False):
        distribution = frozen.distributions.get(key)
        if isinstance(distribution, CategoricalDistribution):
            return list(distribution.choices)
    return None


def decode_params(params: Mapping[str, Any], space: Mapping[str, SpaceEntry]) -> dict[str, Any]:
    """Optuna's stored params (encoded, today's way or the legacy one) -> the values a trial uses."""
    decoded = {}
    for key, value in params.items():
        entry = space.get(key)
        if entry is not None and entry.choice is not None:
            table = _choice_table(key, entry)
            if value not in table:  # a study begun before choices read as values
                table = _choice_table(key, entry, encode=_legacy_code)
            if value not in table:
                raise ValueError(f"{key}: stored value {value!r} is not among the choices {entry.choice!r}")
            value = plain(table[value])
        decoded[key] = value
    return decoded


# ---------------------------------------------------------------------------------------------
# Distributions and define-by-run


def to_distribution(key: str, entry: SpaceEntry) -> BaseDistribution:
    """The Optuna distribution of one entry (choices encoded)."""
    if entry.choice is not None:
        return CategoricalDistribution(list(_choice_table(key, entry)))
    if entry.uniform is not None:
        low, high = entry.uniform
        return FloatDistribution(low, high, step=entry.step)
    if entry.loguniform is not None:
        low, high = entry.loguniform
        return FloatDistribution(low, high, log=True)
    assert entry.integer is not None
    low, high = entry.integer
    return IntDistribution(low, high, step=int(entry.step or 1))


def to_distributions(space: Mapping[str, SpaceEntry]) -> dict[str, BaseDistribution]:
    """Fixed distributions for a space without conditions (Optuna's ask(fixed_distributions))."""
    conditional = [key for key, entry in space.items() if entry.when]
    if conditional:
        raise ValueError(
            f"space entries {conditional} are conditional (when:); use the define-by-run `suggest` instead"
        )
    return {key: to_distribution(key, entry) for key, entry in space.items()}


def _base_value(base: TrialConfig | None, key: str) -> Any:
    if base is None:
        raise ValueError(f"condition on {key!r}, which is not searched: pass base= (the sweep's base config)")
    found, value = get_dotted(base.model_dump(mode="python"), key)
    if not found:
        raise ValueError(f"condition on {key!r}: no such key in the base config")
    return value


def conditions_hold(
    entry: SpaceEntry, chosen: Mapping[str, Any], *, base: TrialConfig | None = None,
    bases: Mapping[str, TrialConfig] | None = None,
) -> bool:
    """Whether every `when` pair equals the trial's value (suggested, else the base config's: in a
    cross-method sweep, ``bases[method]`` of the method the trial chose)."""
    if bases is not None and METHOD_KEY in chosen:
        base = bases[chosen[METHOD_KEY]]
    for key, wanted in (entry.when or {}).items():
        actual = chosen[key] if key in chosen else _base_value(base, key)
        if plain(actual) != plain(wanted):
            return False
    return True


def suggest(
    trial: optuna.trial.Trial, space: Mapping[str, SpaceEntry], *, base: TrialConfig | None = None,
    bases: Mapping[str, TrialConfig] | None = None,
) -> dict[str, Any]:
    """Define-by-run: suggest every applicable entry; returns dotted key -> decoded value.

    Usable as Ray's ``OptunaSearch(space=functools.partial(suggest, space=..., base=...))``:
    Ray merges the returned dict over the raw (encoded) suggestions, so trials see real lists.
    A cross-method sweep passes ``bases`` (method -> its base, `Sweep.method_bases`): the method is
    suggested first (a categorical parameter), then only the entries whose conditions hold for it,
    so each method's keys form its own conditional sub-space.
    """
    chosen: dict[str, Any] = {}
    for key in ordered_keys(space):
        entry = space[key]
        if not conditions_hold(entry, chosen, base=base, bases=bases):
            continue
        if entry.choice is not None:
            table = _study_table(trial, key, entry)
            code = trial.suggest_categorical(key, list(table))
            chosen[key] = plain(table[code])
        elif entry.integer is not None:
            low, high = entry.integer
            chosen[key] = trial.suggest_int(key, low, high, step=int(entry.step or 1))
        elif entry.loguniform is not None:
            low, high = entry.loguniform
            chosen[key] = trial.suggest_float(key, low, high, log=True)
        else:
            assert entry.uniform is not None
            low, high = entry.uniform
            chosen[key] = trial.suggest_float(key, low, high, step=entry.step)
    return chosen


def encode_point(point: Mapping[str, Any], space: Mapping[str, SpaceEntry]) -> dict[str, Any]:
    """A points_to_evaluate entry in Optuna's encoded form (for ``Study.enqueue_trial``).

    Checks every key and value against the space (`searchlab.config.point_problems`, which
    load_sweep runs too) and reports all problems at once: Optuna would otherwise silently sample
    a value it does not recognise.
    """
    problems = point_problems(point, space)
    if problems:
        raise ValueError("points_to_evaluate: " + "; ".join(problems))
    return {key: encode_value(value) if space[key].choice is not None else value for key, value in point.items()}


# ---------------------------------------------------------------------------------------------
# Constraints


def constraint_violations(constraints: Sequence[Constraint], metrics: Mapping[str, float]) -> dict[str, float]:
    """Constraint text -> violation (Optuna's convention: <= 0 feasible) for a finished trial."""
    missing = [c.metric for c in constraints if c.metric not in metrics]
    if missing:
        raise KeyError(f"constraints need metrics {missing}, which the trial did not report")
    violations = {str(c): c.violation(float(metrics[c.metric])) for c in constraints}
    not_finite = [name for name, value in violations.items() if not math.isfinite(value)]
    if not_finite:
        raise ValueError(f"constraints {not_finite} have non-finite values; the trial's metrics are broken")
    return violations


def record_constraints(trial: optuna.trial.Trial, violations: Mapping[str, float] | Sequence[float]) -> None:
    """Store violations on a running trial before ``tell``; every constrained sampler reads them.

    This is the bridge for Ray's OptunaSearch, which does not pass constraints itself: call it with
    the searcher's Optuna trial in ``on_trial_complete`` before the result is told. A plain list
    (what survives Ray's flattening of nested result dicts) is recorded under names "0", "1", ...
    """
    named = violations.items() if isinstance(violations, Mapping) else enumerate(violations)
    for name, value in named:
        trial.set_constraint(str(name), float(value))


# ---------------------------------------------------------------------------------------------
# Samplers


def startup_trials(trials: int) -> int:
    """Random trials before a model-based sampler takes over: a quarter of the budget, 3..10."""
    return min(10, max(3, trials // 4))


def population_size(trials: int) -> int:
    """NSGA-II population: about five generations within the budget, 4..50 individuals."""
    return min(50, max(4, trials // 5))


def make_sampler(search: SearchConfig, space: Mapping[str, SpaceEntry]) -> optuna.samplers.BaseSampler:
    """The sampler named by ``search.sampler``, seeded with ``search.seed``.

    Constrained trials are handled by each sampler from the values `record_constraints` stores.
    """
    conditional = any(entry.when for entry in space.values())
    if search.sampler == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # Multivariate TPE models interactions (e.g. w1 with the decision space); `group`
            # splits the space by which conditional keys a trial used.
            return optuna.samplers.TPESampler(
                seed=search.seed,
                n_startup_trials=startup_trials(search.trials),
                multivariate=True,
                group=conditional,
                constant_liar=search.max_concurrent > 1,
            )
    if search.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=search.seed, population_size=population_size(search.trials))
    if search.sampler == "gp":
        missing = sampler_dependency_problem(search.sampler)
        if missing:  # load_sweep reports it; a SearchConfig built in code meets it here
            raise RuntimeError(missing)
        return optuna.samplers.GPSampler(seed=search.seed, n_startup_trials=startup_trials(search.trials))
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=search.seed)
    if search.sampler == "grid":
        if conditional:
            raise ValueError("search.sampler grid cannot search conditional entries (when:); drop when: or use tpe")
        not_choice = [key for key, entry in space.items() if entry.choice is None]
        if not_choice:
            raise ValueError(f"search.sampler grid needs choice entries only; {not_choice} are ranges")
        grid = {key: list(_choice_table(key, entry)) for key, entry in space.items()}
        return optuna.samplers.GridSampler(grid, seed=search.seed)
    raise ValueError(f"unknown sampler {search.sampler!r}; use tpe, nsga2, gp, random or grid")
