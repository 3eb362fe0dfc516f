"""`search.points_to_evaluate`: each starting point checked against the space and as a trial."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from searchlab.config._dotted import get_dotted, plain
from searchlab.config._methods import METHOD_KEY, section_method, trial_problem
from searchlab.config._space import SpaceEntry, value_problem
from searchlab.config._trial import TrialConfig


def point_problems(point: Mapping[str, Any], space: Mapping[str, SpaceEntry]) -> list[str]:
    """A starting point's problems against the space alone: every key searched, every value one its
    entry can take (Optuna would otherwise sample a value it does not recognise, silently)."""
    problems = []
    for key, value in point.items():
        entry = space.get(key)
        if entry is None:
            problems.append(f"{key}: not in space (known: {', '.join(space)}); add it to space or remove it")
        elif (problem := value_problem(entry, value)) is not None:
            problems.append(f"{key}: {problem}")
    return problems


def _point_trial_problems(
    index: int, point: dict[str, Any], space: Mapping[str, SpaceEntry], bases: Mapping[str, TrialConfig],
    trees: Mapping[str, dict[str, Any]],
) -> list[str]:
    """A starting point's values must be used (their entries' conditions hold) and give a valid trial
    (in a cross-method sweep: in the method the point names, and it must name one to set a key of a
    method's own section)."""
    problems: list[str] = []
    where = f"search.points_to_evaluate[{index}]"
    if METHOD_KEY in space and METHOD_KEY not in point:
        owned = [key for key in point if section_method(key) is not None]
        if owned:
            return [f"{where}: sets {', '.join(owned)} of a method's own section without naming the method; add "
                    f"{METHOD_KEY}: {section_method(owned[0])} to the point"]
    if METHOD_KEY in point:  # a method whose base is invalid is reported under methods
        names = [point[METHOD_KEY]] if point[METHOD_KEY] in trees else []
    else:
        names = list(trees)
    for name in names:
        tree, used = trees[name], {}
        for key, value in point.items():
            entry = space.get(key)
            if entry is None:
                continue  # reported by point_problems
            for cond_key, wanted in (entry.when or {}).items():
                if cond_key in space and cond_key not in point:
                    continue  # sampled in that trial: cannot be known here
                actual = point[cond_key] if cond_key in point else get_dotted(tree, cond_key)[1]
                if plain(actual) != plain(wanted):
                    problems.append(
                        f"{where}.{key}: would be dropped: its condition {cond_key} = {wanted!r} does not hold for "
                        f"this point ({cond_key} is {plain(actual)!r}); remove {key} from the point or change {cond_key}"
                    )
                    break
            else:
                used[key] = value
        chosen = {**used, METHOD_KEY: name} if METHOD_KEY in space else used
        problem = trial_problem(bases, chosen) if used else None
        if problem:
            problems.append(f"{where}: gives an invalid trial: {problem}")
    return list(dict.fromkeys(problems))
