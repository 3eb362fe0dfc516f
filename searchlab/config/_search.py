"""The sweep file's `search` section: sampler, objectives, constraints, starting points, trial counts."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from searchlab.config._limits import MAX_CONCURRENT, MAX_COST_BIAS, MAX_CURVE_POINTS, MAX_TRIALS, Seed
from searchlab.sections import Strict as _Strict
from searchlab.objectives import METRICS


Sampler = Literal["tpe", "nsga2", "gp", "random", "grid"]
_CONSTRAINT = re.compile(r"^\s*([a-z_0-9]+)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")


class Constraint(_Strict):
    """`metric op bound`; a trial is feasible when it holds."""

    metric: str
    op: Literal["<=", ">=", "<", ">"]
    bound: float

    @classmethod
    def parse(cls, text: str) -> Constraint:
        match = _CONSTRAINT.match(text)
        if not match:
            raise ValueError(f"constraint {text!r} must read 'metric <= number' (or >=, <, >), e.g. 'gflops <= 30'")
        metric, op, bound = match.groups()
        if metric not in METRICS:
            raise ValueError(f"constraint {text!r} names unknown metric {metric!r}; known: {', '.join(METRICS)}")
        return cls(metric=metric, op=op, bound=float(bound))

    def violation(self, value: float) -> float:
        """Optuna's convention: <= 0 is feasible, > 0 measures how far off it is."""
        if self.op in ("<=", "<"):
            return value - self.bound
        return self.bound - value

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


Scheduler = Literal["none", "pareto_asha"]


class ParetoASHAConfig(_Strict):
    """Rungs of `search.scheduler: pareto_asha` (searchlab.pareto_asha), in epochs of the per-trial stage."""

    grace_period: int = Field(5, ge=1, description="the first rung: no trial is stopped before this epoch")
    reduction_factor: int = Field(3, ge=2, description="η: rungs at grace_period·η^k; a rung keeps the top 1/η")


class SearchConfig(_Strict):
    trials: int = Field(20, ge=1, le=MAX_TRIALS)
    sampler: Sampler = "tpe"
    seed: Seed = 0
    objectives: dict[str, Literal["max", "min"]] = Field(
        default_factory=lambda: {"accuracy": "max", "gflops": "min"}
    )
    constraints: list[str] = Field(default_factory=list)
    points_to_evaluate: list[dict[str, Any]] = Field(default_factory=list)
    max_concurrent: int = Field(1, ge=1, le=MAX_CONCURRENT)
    scheduler: Scheduler = "none"
    pareto_asha: ParetoASHAConfig | None = None  # its defaults when scheduler: pareto_asha
    curve: list[Annotated[float, Field(ge=-MAX_COST_BIAS, le=MAX_COST_BIAS)]] = Field(
        default_factory=lambda: [-1.0, 0.5, 1.0, 2.0, 4.0], max_length=MAX_CURVE_POINTS,
        description="inference.cost_bias values at which each completed trial's network is evaluated again, "
        "without retraining: its curve of operating points (points.parquet); the trained point (0) is the "
        "trial's own; [] turns curves off")

    @property
    def rungs(self) -> ParetoASHAConfig:
        """The rung settings of scheduler: pareto_asha (the section, or its defaults)."""
        return self.pareto_asha or ParetoASHAConfig()

    @model_validator(mode="after")
    def _scheduler_settings(self) -> SearchConfig:
        problems = []
        if self.pareto_asha is not None and self.scheduler != "pareto_asha":
            problems.append("search.pareto_asha is read only with scheduler: pareto_asha; set it, or drop the section")
        if self.scheduler == "pareto_asha" and len(self.objectives) < 2:
            problems.append(f"scheduler: pareto_asha ranks trials by two or more objectives; this search has "
                            f"{list(self.objectives)}: add one, e.g. {{accuracy: max, gflops: min}}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @field_validator("curve")
    @classmethod
    def _distinct_points(cls, curve: list[float]) -> list[float]:
        repeated = sorted({value for value in curve if curve.count(value) > 1 or value == 0})
        if repeated:
            raise ValueError(f"curve values {repeated} are repeated or 0 (the trained point, always measured); "
                             "list each other cost_bias once")
        return curve

    @field_validator("objectives")
    @classmethod
    def _known_objectives(cls, objectives: dict[str, str]) -> dict[str, str]:
        problems = []
        for name, direction in objectives.items():
            if name not in METRICS:
                problems.append(f"unknown metric {name!r} (known: {', '.join(METRICS)})")
            elif METRICS[name].direction != direction:
                problems.append(f"{name} is to be {METRICS[name].direction}imised, not {direction}imised")
        if not objectives:
            problems.append("give at least one objective, e.g. {accuracy: max, gflops: min}")
        if problems:
            raise ValueError("\n".join(problems))
        return objectives

    @field_validator("constraints")
    @classmethod
    def _parse_constraints(cls, constraints: list[str]) -> list[str]:
        problems = []
        for text in constraints:
            try:
                Constraint.parse(text)
            except ValueError as error:
                problems.append(str(error))
        if problems:
            raise ValueError("\n".join(problems))
        return constraints

    def parsed_constraints(self) -> list[Constraint]:
        return [Constraint.parse(text) for text in self.constraints]
