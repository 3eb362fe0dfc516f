"""Space checks at load time: everything `searchlab.space` and a trial would meet later."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from searchlab.config._dotted import get_dotted, plain
from searchlab.config._methods import METHOD_KEY, trial_problem
from searchlab.config._points import _point_trial_problems, point_problems
from searchlab.config._space import SpaceEntry, _space_order, schema_key_problem, value_problem
from searchlab.config._trial import TrialConfig


# Combinations of the entries' extreme values (choices, range ends) checked as whole trials; past
# this many only each entry alone is checked, which catches all but cross-entry conflicts.
MAX_COMBINATIONS = 1_024


def _extremes(entry: SpaceEntry) -> list[tuple[str, Any]]:
    """(label, value) of the values that bound what an entry gives a trial: every choice, or a
    range's ends (on its grid: SpaceEntry checks that high is)."""
    if entry.choice is not None:
        return [("choice", value) for value in entry.choice]
    low, high = entry.uniform or entry.loguniform or entry.integer  # type: ignore[misc]
    return [("low", low), ("high", high)]


def _inner_value(entry: SpaceEntry) -> tuple[str, Any] | None:
    """A fractional value inside a float range, on its grid (None for choices and int ranges):
    a float range over an integer field passes at whole ends but fails inside."""
    if entry.uniform is not None and entry.step is not None:
        low, high = entry.uniform
        return ("value", low + entry.step) if low + entry.step <= high else None
    if entry.uniform is not None:
        low, high = entry.uniform
        inner = [low + (high - low) * fraction for fraction in (0.37, 0.63)]
    elif entry.loguniform is not None:
        low, high = entry.loguniform
        inner = [low * (high / low) ** fraction for fraction in (0.37, 0.63)]
    else:
        return None
    return ("value", next((x for x in inner if not float(x).is_integer()), inner[0]))


def _conditions_hold(entry: SpaceEntry, chosen: Mapping[str, Any], trees: Mapping[str, dict[str, Any]]) -> bool:
    """`searchlab.space.conditions_hold` on dumped bases: chosen values first, else the base's of the
    trial's method."""
    tree = _tree_for(trees, chosen)
    for key, wanted in (entry.when or {}).items():
        actual = chosen[key] if key in chosen else get_dotted(tree, key)[1]
        if plain(actual) != plain(wanted):
            return False
    return True


def _tree_for(trees: Mapping[str, dict[str, Any]], chosen: Mapping[str, Any]) -> dict[str, Any]:
    """The dumped base of the trial's method (chosen first in a cross-method sweep), else the only one."""
    return trees.get(chosen.get(METHOD_KEY), next(iter(trees.values())))


def _methods_of(entry_method: Any, trees: Mapping[str, dict[str, Any]]) -> list[str]:
    """The methods whose trials an entry (or a point) with this method condition can be part of."""
    return [entry_method] if entry_method in trees else list(trees)


def _check_space(sweep_tree: dict[str, Any], bases: Mapping[str, TrialConfig] | None,
                 skip: Mapping[tuple[Any, ...], Any]) -> list[str]:
    """Space keys must name config fields, conditions must be decidable and acyclic, and every
    choice, range end and starting point must give a valid trial: a file that loads never fails
    at a trial's configuration. ``bases``: the base configuration of each method the trials can
    train (one for a single-method sweep); None when the base is invalid. Entries and points at
    locations in `skip` (non-finite numbers, reported already) are left out."""
    raw_space = sweep_tree.get("space")
    if not isinstance(raw_space, dict):
        return []  # pydantic reports a space that is not a mapping
    skipped = {loc[1] for loc in skip if loc[:1] == ("space",) and len(loc) > 1}
    problems, space = [], {}
    for key, raw in raw_space.items():
        if not isinstance(key, str) or key in skipped:
            continue  # pydantic reports a key that is not text
        problem = schema_key_problem(key)
        if problem:
            problems.append(f"space.{problem}")
            continue
        try:
            space[key] = SpaceEntry.model_validate(raw)
        except ValidationError:
            continue  # reported by the Sweep's own validation
    trees = {name: base.model_dump(mode="python") for name, base in (bases or {}).items()}
    order, cycles = _space_order(space)
    problems += cycles + _condition_problems(space, trees or None)
    search = sweep_tree.get("search")
    points = search.get("points_to_evaluate") if isinstance(search, dict) else None
    for index, point in enumerate(points if isinstance(points, list) else []):
        if isinstance(point, dict) and ("search", "points_to_evaluate", index) not in {loc[:3] for loc in skip}:
            # values for entries that are themselves invalid are checked once the entry is fixed
            point = {k: v for k, v in point.items() if k in space or k not in raw_space}
            problems += [f"search.points_to_evaluate[{index}].{p}" for p in point_problems(point, space)]
            if bases:
                problems += _point_trial_problems(index, point, space, bases, trees)
    if bases and not cycles:
        entry_problems = _entry_trial_problems(space, bases, trees)
        # Conflicts between entries only mean something once each entry is valid on its own.
        problems += entry_problems or _combination_problems(space, order, bases, trees)
    if isinstance(search, dict) and search.get("sampler") == "grid":
        continuous = [k for k, e in space.items() if e.choice is None]
        if continuous:
            problems.append(f"search.sampler grid needs choice entries only; {continuous} are continuous")
        conditional = [k for k, e in space.items() if e.when]
        if conditional:
            problems.append(f"search.sampler grid cannot search conditional entries {conditional}; drop when: or use tpe")
    return problems


def _condition_problems(space: Mapping[str, SpaceEntry], trees: Mapping[str, dict[str, Any]] | None) -> list[str]:
    """A `when` must read a known key and be able to hold (in the base of some method the entry's
    trials can train); else its entry is never searched."""
    problems = []
    for key, entry in space.items():
        when = entry.when or {}
        for cond_key, wanted in when.items():
            if cond_key in space:
                problem = value_problem(space[cond_key], wanted)
                if problem:
                    problems.append(
                        f"space.{key}.when: {cond_key} never equals {wanted!r} ({problem}), so {key} would never "
                        "be searched; fix the value or drop the condition"
                    )
            elif schema_key_problem(cond_key):
                problems.append(f"space.{key}.when: {cond_key!r} is neither a searched key nor a config key")
            elif trees:
                looked_up = [get_dotted(trees[name], cond_key) for name in _methods_of(when.get(METHOD_KEY), trees)]
                if any(found and plain(actual) == plain(wanted) for found, actual in looked_up):
                    continue
                found, actual = looked_up[0]
                if not found:
                    problems.append(
                        f"space.{key}.when: {cond_key} has no value in base (an optional key left out), so the "
                        f"condition cannot be decided; set {cond_key} in base or search it"
                    )
                else:
                    problems.append(
                        f"space.{key}.when: {cond_key} is not searched and is {plain(actual)!r} in base, never "
                        f"{wanted!r}, so {key} would never be searched; fix the value, search {cond_key}, or drop "
                        "the condition"
                    )
    return problems


def _entry_trial_problems(space: Mapping[str, SpaceEntry], bases: Mapping[str, TrialConfig],
                          trees: Mapping[str, dict[str, Any]]) -> list[str]:
    """Each entry's choices and range ends, alone on the base of each method its trials can train
    (with the searched values its conditions ask for), must give a valid trial."""
    problems: dict[str, None] = {}  # the same problem in several methods' trials is said once
    cross = METHOD_KEY in space
    for key, entry in space.items():
        when = entry.when or {}
        for name in _methods_of(when.get(METHOD_KEY), trees):
            if any(plain(get_dotted(trees[name], k)[1]) != plain(v) for k, v in when.items() if k not in space):
                continue  # never searched there: reported by the condition checks
            conditions = {k: v for k, v in when.items() if k in space}
            method = {METHOD_KEY: name} if cross and key != METHOD_KEY else {}
            inner = _inner_value(entry)
            for label, value in _extremes(entry) + ([inner] if inner else []):
                problem = trial_problem(bases, {**method, **conditions, key: value})
                if problem:
                    problems[f"space.{key}: {label} {value!r} gives an invalid trial: {problem}"] = None
    return list(problems)


def _combination_problems(space: Mapping[str, SpaceEntry], order: list[str], bases: Mapping[str, TrialConfig],
                          trees: Mapping[str, dict[str, Any]]) -> list[str]:
    """Every combination of the entries' extremes, applied as a trial would apply them (an entry
    whose conditions fail keeps the base value), must give a valid trial; a few distinct problems
    are shown with the combination that met each first."""
    extremes = [[value for _, value in _extremes(space[key])] for key in order]
    if math.prod(len(values) for values in extremes) > MAX_COMBINATIONS:
        return []
    first: dict[str, dict[str, Any]] = {}
    for combination in itertools.product(*extremes):
        chosen: dict[str, Any] = {}
        for key, value in zip(order, combination):
            if _conditions_hold(space[key], chosen, trees):
                chosen[key] = value
        problem = trial_problem(bases, chosen)
        if problem is not None:
            first.setdefault(problem, chosen)
    return [
        f"space: the values {chosen} together give an invalid trial: {problem}; narrow these entries so that "
        "every combination is valid"
        for problem, chosen in list(first.items())[:3]
    ]
