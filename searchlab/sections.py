"""What every configuration section is built from, outside the ``searchlab.config`` package so that
a method's own section model (``searchlab.methods.arnet.config``) can use it while that package
imports the method's section: the strict base model, and the Gumbel-softmax τ schedule's section
(rules in `searchlab.models.temperature`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer, model_validator


class Strict(BaseModel):
    """Unknown keys are errors (a typo must not pass silently); objects are immutable; numbers are
    finite (pydantic would otherwise take YAML's .nan and .inf for floats)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


TemperatureKind = Literal["exponential", "linear", "cosine", "constant"]


class TemperatureConfig(Strict, Mapping[str, Any]):
    """`stage2.temperature`: the Gumbel-softmax τ schedule (`searchlab.models.temperature`).

    Which parameters a kind reads and their ranges (tau0 > 0, tau_end > 0, rate in (0, 1], per
    epoch or iteration) are checked by the schedule's own `schedule_problems` on the section as
    written, so every problem of it is listed at once, a section that loads is one stage 2 can
    build, and the rules live in one place. The section reads as the mapping
    `TemperatureSchedule.from_dict` takes (only the parameters its kind reads), so consumers build
    the schedule with `TemperatureSchedule.from_dict(config.stage2.temperature)`.
    """

    kind: TemperatureKind
    tau0: float | None = None
    rate: float | None = None
    tau_end: float | None = None
    per: Literal["epoch", "iteration"] = "epoch"

    @model_validator(mode="before")
    @classmethod
    def _schedule_valid(cls, data: Any) -> Any:
        from searchlab.models.temperature import schedule_problems  # searchlab.models imports torch

        problems = [] if isinstance(data, TemperatureConfig) else schedule_problems(data)
        if problems:
            raise ValueError("\n".join(problems))
        return data

    @model_serializer(mode="wrap")
    def _read_parameters_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A kind's unused parameters are None; dumped, they would be keys `from_dict` must skip.
        return {key: value for key, value in handler(self).items() if value is not None}

    def __getitem__(self, key: str) -> Any:
        return self.model_dump()[key]

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]  # a Mapping's keys, not pydantic's (name, value) pairs
        return iter(self.model_dump())

    def __len__(self) -> int:
        return len(self.model_dump())


def _official_temperature() -> TemperatureConfig:
    from searchlab.models.temperature import TemperatureSchedule  # searchlab.models imports torch

    return TemperatureConfig.model_validate(TemperatureSchedule().to_dict())
