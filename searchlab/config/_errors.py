"""`ConfigError`, and pydantic's validation errors as its problem lines: one per problem, naming
the key, the bad value and the fix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError


class ConfigError(ValueError):
    """Every problem found in a configuration, one per line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in problems))


# pydantic's range error types -> (operator, name of the bound in the error's context)
_RANGES = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"), "less_than": ("<", "lt")}


def _format_pydantic(error: ValidationError, prefix: str = "", *, skip: Mapping[tuple[Any, ...], Any] = {}) -> list[str]:
    """One line per problem naming the key, the bad value and the fix; our validators put one
    problem per line. Errors at the locations in `skip` are left out (reported otherwise)."""
    problems = []
    for item in error.errors():
        if item["loc"] in skip:
            continue
        where = _where(item["loc"])
        kind, value = item["type"], item.get("input")
        if kind == "extra_forbidden":
            messages = ["unknown key; remove it or check its spelling (see docs/configuration.md)"]
        elif kind == "missing":
            messages = ["required key is missing"]
        elif kind == "value_error":
            messages = item["msg"].removeprefix("Value error, ").split("\n")
        elif kind == "less_than_equal":
            limit = item["ctx"]["le"]
            messages = [f"{value!r} is above the limit {limit}; use at most {limit} (limits: docs/configuration.md)"]
        elif kind in _RANGES:
            op, bound = _RANGES[kind]
            messages = [f"{value!r} is out of range; use a value {op} {item['ctx'][bound]}"]
        elif isinstance(value, (dict, list)):
            messages = [item["msg"]]
        else:
            messages = [f"{item['msg']} (got {value!r})"]
        problems.extend(f"{prefix}{where}: {message}" for message in messages)
    return problems


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"
