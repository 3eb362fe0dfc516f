"""Cross-method sweeps: `space.method` chooses the method of each trial, and `methods:` gives each
method its own sections.

A single-method sweep's `base` is one trial configuration. A cross-method sweep splits it: `base`
holds what every method shares (name, seed, data, resources) and `methods.<name>` holds only that
method's sections (METHOD_SECTIONS), so a trial's configuration is its method's base (the shared
keys plus its sections) with its parameters applied. A key of a method's section is searched only
in that method's trials (`when: {method: <name>}`), which is Optuna's conditional sub-space.

This module holds those rules and their load-time checks; `searchlab.config._sweep` applies them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from searchlab.config._errors import _format_pydantic
from searchlab.config._trial import METHOD_SECTIONS, TrialConfig, _trial_problem

METHOD_KEY = "method"  # the trial configuration's key, and the space key that searches it


def section_method(key: str) -> str | None:
    """The method whose own section the dotted ``key`` lies in, or None for a key every method shares."""
    head = key.split(".")[0]
    return next((name for name, sections in METHOD_SECTIONS.items() if head in sections), None)


def _every_section() -> set[str]:
    return {section for sections in METHOD_SECTIONS.values() for section in sections}


def shared_keys(base: Any) -> Any:
    """A base tree without the method and any method's section: what every method of a cross-method
    sweep shares."""
    if not isinstance(base, dict):
        return base
    return {key: value for key, value in base.items() if key != METHOD_KEY and key not in _every_section()}


def method_base(base: TrialConfig, sections: Mapping[str, Any], name: str) -> TrialConfig:
    """The base configuration of method ``name``'s trials: ``base``'s shared keys and ``sections``.

    Every method section of ``base`` is dropped first (VideoIQ's are always present with their
    defaults), so a method's trials see only the sections given for it.
    """
    return TrialConfig.model_validate({**shared_keys(base.model_dump(mode="python")), **sections, METHOD_KEY: name})


def base_for(bases: Mapping[str, TrialConfig], chosen: Mapping[str, Any]) -> TrialConfig | None:
    """The base a trial with the searched values ``chosen`` starts from: its method's (None when that
    method's base is invalid, reported elsewhere), or the only one of a single-method sweep."""
    if METHOD_KEY in chosen:
        return bases.get(chosen[METHOD_KEY])
    return next(iter(bases.values())) if len(bases) == 1 else None


def trial_problem(bases: Mapping[str, TrialConfig], chosen: Mapping[str, Any]) -> str | None:
    """Why the searched values ``chosen`` (the method among them, in a cross-method sweep) give an
    invalid trial, or None (also when the method's own base is invalid: reported already)."""
    base = base_for(bases, chosen)
    if base is None:
        return None
    return _trial_problem(base, {key: value for key, value in chosen.items() if key != METHOD_KEY})


# ---------------------------------------------------------------------------------------------
# Load-time checks of a sweep file's tree (paths resolved, not yet validated)


def cross_method_problems(tree: Mapping[str, Any]) -> list[str]:
    """The layout rules of a cross-method sweep: a `methods:` mapping of registered methods to their own
    sections, the method searched by a `space.method` choice of exactly those methods, nothing of a
    method in `base`, and every key of a method's section searched only in that method's trials."""
    methods, space = tree.get("methods"), tree.get("space")
    space = space if isinstance(space, dict) else {}
    entry = space.get(METHOD_KEY)
    if methods is None:
        if entry is None:
            return []
        return [f"space.{METHOD_KEY}: searching the method needs each method's own sections under a top-level "
                f"methods: mapping (e.g. methods: {{videoiq: {{model: ..., stage2: ...}}, arnet: {{arnet: ...}}}}), "
                "with only the shared keys in base; see docs/configuration.md"]
    if not isinstance(methods, dict) or not methods:
        return ["methods: must map each searched method to its own sections, e.g. {videoiq: {stage2: ...}, "
                "arnet: {arnet: ...}}"]
    problems = _methods_layout_problems(methods) + _base_problems(tree.get("base"))
    choices = entry.get("choice") if isinstance(entry, dict) else None
    if not isinstance(choices, list):
        problems.append(f"space.{METHOD_KEY}: a cross-method sweep (methods: given) searches the method: add "
                        f"space.{METHOD_KEY}: {{choice: {list(methods)}}}")
    else:
        if entry.get("when"):
            problems.append(f"space.{METHOD_KEY}: the method is chosen first, on no condition; remove its when:")
        problems += [f"space.{METHOD_KEY}: choice {name!r} has no sections under methods; add methods.{name} "
                     f"({{}} for its defaults) or drop the choice"
                     for name in choices if not isinstance(name, str) or name not in methods]
        problems += [f"methods.{name}: never used, {name!r} is not among space.{METHOD_KEY}'s choices "
                     f"{choices}; add it there or remove methods.{name}" for name in methods if name not in choices]
    return problems + _unconditioned_problems(space)


def _methods_layout_problems(methods: Mapping[Any, Any]) -> list[str]:
    problems = []
    for name, sections in methods.items():
        if name not in METHOD_SECTIONS:
            problems.append(f"methods.{name}: unknown method; registered: {', '.join(METHOD_SECTIONS)}")
        elif isinstance(sections, dict):
            own = METHOD_SECTIONS[name]
            problems += [f"methods.{name}.{key}: not a section of {name} (its sections: {', '.join(own)}); keys "
                         "that every method shares go in base" for key in sections if key not in own]
    return problems  # a value that is not a mapping: pydantic reports it


def _base_problems(base: Any) -> list[str]:
    if not isinstance(base, dict):
        return []
    problems = []
    if METHOD_KEY in base:
        problems.append(f"base.{METHOD_KEY}: in a cross-method sweep space.{METHOD_KEY} chooses the method; "
                        f"remove base.{METHOD_KEY}")
    for key in base:
        owner = section_method(str(key))
        if owner is not None:
            problems.append(f"base.{key}: a section of method {owner}; in a cross-method sweep it goes under "
                            f"methods.{owner}.{key}")
    return problems


def _unconditioned_problems(space: Mapping[str, Any]) -> list[str]:
    """A key of a method's section searched in another method's trials would be a foreign section there."""
    problems = []
    for key, entry in space.items():
        owner = section_method(str(key))
        if owner is None or not isinstance(entry, dict):
            continue
        when = entry.get("when") if isinstance(entry.get("when"), dict) else {}
        if METHOD_KEY not in when:
            problems.append(f"space.{key}: a key of {owner}'s own section, searched in a cross-method sweep on no "
                            f"condition on the method; add when: {{{METHOD_KEY}: {owner}}}")
        elif when[METHOD_KEY] != owner:
            problems.append(f"space.{key}: a key of {owner}'s own section, searched when {METHOD_KEY} is "
                            f"{when[METHOD_KEY]!r}; use when: {{{METHOD_KEY}: {owner}}}")
    return problems


def method_bases(base: TrialConfig, methods: Mapping[str, Any]) -> tuple[dict[str, TrialConfig], list[str]]:
    """Each method's base (those that validate) and the problems of the others, named under
    `methods.<name>`; a problem of the shared keys is left out (reported once, under `base`)."""
    bases, problems = {}, []
    for name, sections in methods.items():
        if name not in METHOD_SECTIONS or not isinstance(sections, dict):
            continue  # reported by cross_method_problems / pydantic
        try:
            bases[name] = method_base(base, sections, name)
        except ValidationError as error:
            own = set(METHOD_SECTIONS[name])
            shared = {item["loc"]: None for item in error.errors() if item["loc"] and item["loc"][0] not in own}
            whole = {item["loc"]: None for item in error.errors() if not item["loc"]}
            problems += _format_pydantic(error, f"methods.{name}.", skip={**shared, **whole})
            problems += [f"methods.{name}: {line}" for item in error.errors() if not item["loc"]
                         for line in item["msg"].removeprefix("Value error, ").split("\n")]
    return bases, problems
