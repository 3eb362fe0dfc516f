"""The sweep file's `space`: one `SpaceEntry` per searched dotted key, the keys' order by their
conditions, and which values an entry can take."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from searchlab.config._dotted import plain
from searchlab.config._methods import METHOD_KEY
from searchlab.sections import Strict as _Strict
from searchlab.config._trial import TrialConfig


class SpaceEntry(_Strict):
    """One searched key: exactly one of choice / uniform / loguniform / int, optionally conditional."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    integer: tuple[int, int] | None = Field(None, alias="int")
    step: float | None = None
    when: dict[str, Any] | None = None  # {dotted key: value}: searched only when those hold

    @model_validator(mode="after")
    def _one_kind(self) -> SpaceEntry:
        kinds = [k for k in ("choice", "uniform", "loguniform", "integer") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of choice, uniform, loguniform, int (got {kinds or 'none'})")
        problems = []
        if self.choice is not None and not self.choice:
            problems.append("choice is empty; list at least one value")
        for kind in ("uniform", "loguniform", "integer"):
            bounds = getattr(self, kind)
            if bounds is not None and not bounds[0] < bounds[1]:
                problems.append(f"{kind} bounds {list(bounds)} must be [low, high] with low < high")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            problems.append(f"loguniform low {self.loguniform[0]} must be > 0")
        if self.step is not None:
            # Optuna's own limits: no step on log scales; integer ranges take integer steps.
            if self.choice is not None or self.loguniform is not None:
                problems.append("step applies to uniform and int only; remove it")
            elif self.step <= 0 or (self.integer is not None and self.step != int(self.step)):
                problems.append(f"step {self.step} must be > 0 (and a whole number for int)")
            elif not problems:
                problems += _grid_problems(self.uniform or self.integer, self.step)  # type: ignore[arg-type]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("choice", "uniform", "loguniform", "integer") if getattr(self, k) is not None)


def _decimal(number: float) -> Decimal:
    return Decimal(str(number))  # Optuna's own arithmetic for step grids (exact for the decimals written)


def _grid_problems(bounds: tuple[float, float], step: float) -> list[str]:
    """Optuna would silently lower `high` onto the grid low + k * step (only warning): say so instead."""
    low, high = bounds
    if _on_grid(bounds, high, step):
        return []
    reachable = low + int((_decimal(high) - _decimal(low)) // _decimal(step)) * step
    return [
        f"range [{low}, {high}] is not a whole number of steps {step:g}: its highest value would be {reachable:g}; "
        "make high - low a multiple of step"
    ]


def _on_grid(bounds: tuple[float, float], value: float, step: float) -> bool:
    """Whether `value` is bounds[0] + k * step, decided as Optuna decides it."""
    return (_decimal(value) - _decimal(bounds[0])) % _decimal(step) == 0


def schema_key_problem(key: str) -> str | None:
    """Whether a dotted key names a field of TrialConfig (checked on the schema, not on values)."""
    model: Any = TrialConfig
    parts = key.split(".")
    for depth, part in enumerate(parts):
        sections = [arg for arg in typing.get_args(model) if isinstance(arg, type) and issubclass(arg, BaseModel)]
        if typing.get_origin(model) in (typing.Union, types.UnionType) and len(sections) == 1:
            model = sections[0]  # an optional section (a method's): its keys are searchable
        if isinstance(model, type) and issubclass(model, BaseModel):
            if part not in model.model_fields:
                known = ", ".join(model.model_fields)
                where = ".".join(parts[:depth]) or "the trial config"
                return f"{key}: unknown key {part!r} in {where}; known keys: {known}"
            model = model.model_fields[part].annotation
        elif typing.get_origin(model) is dict:
            model = typing.get_args(model)[1]
        else:
            return f"{key}: {'.'.join(parts[:depth])} is a value, not a section"
    return None


def ordered_keys(space: Mapping[str, SpaceEntry]) -> list[str]:
    """Space keys with every searched key a `when` reads placed before the entry that reads it, and a
    searched method before all; raises ValueError on a cycle of conditions."""
    order, cycles = _space_order(space)
    if cycles:
        raise ValueError(cycles[0])
    return order


def _space_order(space: Mapping[str, SpaceEntry]) -> tuple[list[str], list[str]]:
    """The order of `ordered_keys`, and a description of each cycle of conditions found."""
    order: list[str] = []
    state: dict[str, str] = {}
    cycles: list[str] = []

    def visit(key: str, path: list[str]) -> None:
        if state.get(key) == "done":
            return
        if state.get(key) == "active":
            cycle = " -> ".join([*path[path.index(key) :], key])
            cycles.append(f"space conditions form a cycle: {cycle}; a when: may not depend on itself")
            return
        state[key] = "active"
        for needed in space[key].when or {}:
            if needed in space:
                visit(needed, [*path, key])
        state[key] = "done"
        order.append(key)

    # The method (a cross-method sweep's `method` entry) first: every other entry's trial depends on it.
    for key in sorted(space, key=lambda key: key != METHOD_KEY):
        visit(key, [])
    return order, cycles


def value_problem(entry: SpaceEntry, value: Any) -> str | None:
    """Why `value` is not one the entry can take (a choice, a number in range, on its grid), or None."""
    if entry.choice is not None:
        if plain(value) not in [plain(c) for c in entry.choice]:
            return f"{value!r} is not among the choices {entry.choice!r}"
        return None
    low, high = entry.uniform or entry.loguniform or entry.integer  # type: ignore[misc]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        return f"{value!r} is not a number in [{low}, {high}]"
    if entry.integer is not None and value != int(value):
        return f"{value!r} is not an integer"
    if entry.step is not None and not _on_grid((low, high), value, entry.step):
        return f"{value!r} is not on the entry's grid {low} + k * {entry.step:g}"
    return None
