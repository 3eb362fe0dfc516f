"""Space checks at load time: everything `searchlab.space` and a trial would meet later."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from searchlab.config._dotted import get_dotted, plain
from searchlab.config._points import _point_trial_problems, point_problems
from searchlab.config._space import SpaceEntry, _space_order, schema_key_problem, value_problem
from searchlab.config._trial import TrialConfig, _trial_problem


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


def _conditions_hold(entry: SpaceEntry, chosen: Mapping[str, Any], base_tree: dict[str, Any]) -> bool:
    """`searchlab.space.conditions_hold` on a dumped base: chosen values first, else the base's."""
    for key, wanted in (entry.when or {}).items():
        actual = chosen[key] if key in chosen else get_dotted(base_tree, key)[1]
        if plain(actual) != plain(wanted):
            return False
    return True


def _check_space(sweep_tree: dict[str, Any], base: TrialConfig | None, skip: Mapping[tuple[Any, ...], Any]) -> list[str]:
    """Space keys must name config fields, conditions must be decidable and acyclic, and every
    choice, range end and starting point must give a valid trial: a file that loads never fails
    at a trial's configuration. Entries and points at locations in `skip` (non-finite numbers,
    reported already) are left out."""
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
    base_tree = base.model_dump(mode="python") if base is not None else None
    order, cycles = _space_order(space)
    problems += cycles + _condition_problems(space, base_tree)
    search = sweep_tree.get("search")
    points = search.get("points_to_evaluate") if isinstance(search, dict) else None
    for index, point in enumerate(points if isinstance(points, list) else []):
        if isinstance(point, dict) and ("search", "points_to_evaluate", index) not in {loc[:3] for loc in skip}:
            # values for entries that are themselves invalid are checked once the entry is fixed
            point = {k: v for k, v in point.items() if k in space or k not in raw_space}
            problems += [f"search.points_to_evaluate[{index}].{p}" for p in point_problems(point, space)]
            if base is not None and base_tree is not None:
                problems += _point_trial_problems(index, point, space, base, base_tree)
    if base is not None and base_tree is not None and not cycles:
        entry_problems = _entry_trial_problems(space, base, base_tree)
        # Conflicts between entries only mean something once each entry is valid on its own.
        problems += entry_problems or _combination_problems(space, order, base, base_tree)
    if isinstance(search, dict) and search.get("sampler") == "grid":
        continuous = [k for k, e in space.items() if e.choice is None]
        if continuous:
            problems.append(f"search.sampler grid needs choice entries only; {continuous} are continuous")
        conditional = [k for k, e in space.items() if e.when]
        if conditional:
            problems.append(f"search.sampler grid cannot search conditional entries {conditional}; drop when: or use tpe")
    return problems


def _condition_problems(space: Mapping[str, SpaceEntry], base_tree: dict[str, Any] | None) -> list[str]:
    """A `when` must read a known key and be able to hold; else its entry is never searched."""
    problems = []
    for key, entry in space.items():
        for cond_key, wanted in (entry.when or {}).items():
            if cond_key in space:
                problem = value_problem(space[cond_key], wanted)
                if problem:
                    problems.append(
                        f"space.{key}.when: {cond_key} never equals {wanted!r} ({problem}), so {key} would never "
                        "be searched; fix the value or drop the condition"
                    )
            elif schema_key_problem(cond_key):
                problems.append(f"space.{key}.when: {cond_key!r} is neither a searched key nor a config key")
            elif base_tree is not None:
                found, actual = get_dotted(base_tree, cond_key)
                if not found:
                    problems.append(
                        f"space.{key}.when: {cond_key} has no value in base (an optional key left out), so the "
                        f"condition cannot be decided; set {cond_key} in base or search it"
                    )
                elif plain(actual) != plain(wanted):
                    problems.append(
                        f"space.{key}.when: {cond_key} is not searched and is {plain(actual)!r} in base, never "
                        f"{wanted!r}, so {key} would never be searched; fix the value, search {cond_key}, or drop "
                        "the condition"
                    )
    return problems


def _entry_trial_problems(space: Mapping[str, SpaceEntry], base: TrialConfig, base_tree: dict[str, Any]) -> list[str]:
    """Each entry's choices and range ends, alone on the base (with the searched values its
    conditions ask for), must give a valid trial."""
    problems = []
    for key, entry in space.items():
        when = entry.when or {}
        if any(plain(get_dotted(base_tree, k)[1]) != plain(v) for k, v in when.items() if k not in space):
            continue  # never searched: reported by the condition checks
        conditions = {k: v for k, v in when.items() if k in space}
        inner = _inner_value(entry)
        for label, value in _extremes(entry) + ([inner] if inner else []):
            problem = _trial_problem(base, {**conditions, key: value})
            if problem:
                problems.append(f"space.{key}: {label} {value!r} gives an invalid trial: {problem}")
    return problems


def _combination_problems(
    space: Mapping[str, SpaceEntry], order: list[str], base: TrialConfig, base_tree: dict[str, Any]
) -> list[str]:
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
            if _conditions_hold(space[key], chosen, base_tree):
                chosen[key] = value
        problem = _trial_problem(base, chosen)
        if problem is not None:
            first.setdefault(problem, chosen)
    return [
        f"space: the values {chosen} together give an invalid trial: {problem}; narrow these entries so that "
        "every combination is valid"
        for problem, chosen in list(first.items())[:3]
    ]
