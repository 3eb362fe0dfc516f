"""Gumbel-softmax temperature schedules as data (METHODS.md §1.3).

The policy's straight-through Gumbel sample is trained with a temperature τ that starts high
(soft, exploratory gradients) and is annealed towards 0 (near-discrete decisions). The schedule is a
searchable hyperparameter, so it is a small frozen dataclass that round-trips through a plain dict
(the sweep file and the trials table store it that way) instead of a closure.

Kinds (``step`` counts epochs or iterations, see ``per``):

- ``exponential``: τ = tau0 · rate^step. Default: tau0 = 5, rate = 0.956 per epoch, the official
  VideoIQ code (AR-Net writes the same curve as 5·exp(−0.045·epoch)).
- ``linear``: straight line from tau0 at the first step to tau_end at the last step.
- ``cosine``: half cosine from tau0 at the first step to tau_end at the last step.
- ``constant``: τ = tau0 (AR-Net's stage 3 keeps τ fixed at its last value).

``linear`` and ``cosine`` need to know where training ends, so ``value`` takes ``total_epochs``;
the last step (epoch ``total_epochs − 1``, or its last iteration) reaches tau_end exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["TemperatureSchedule", "KINDS", "PER", "schedule_problems"]

#: Parameters each kind reads; every other parameter is an error for that kind.
KINDS: dict[str, tuple[str, ...]] = {
    "exponential": ("tau0", "rate"),
    "linear": ("tau0", "tau_end"),
    "cosine": ("tau0", "tau_end"),
    "constant": ("tau0",),
}
#: Units the schedule steps in.
PER: tuple[str, ...] = ("epoch", "iteration")

_OFFICIAL_RATE = 0.956
_PARAMETERS = ("tau0", "rate", "tau_end")


@dataclass(frozen=True)
class TemperatureSchedule:
    """A temperature schedule; ``TemperatureSchedule()`` is the official VideoIQ one.

    ``rate`` left as None for kind ``exponential`` becomes the official 0.956; parameters that the
    kind does not read must stay None (a ``rate`` on a linear schedule is a mistake, not a no-op).
    The constructor raises ValueError listing every problem at once.
    """

    kind: str = "exponential"
    tau0: float = 5.0
    rate: float | None = None
    tau_end: float | None = None
    per: str = "epoch"

    def __post_init__(self) -> None:
        if self.kind == "exponential" and self.rate is None:
            object.__setattr__(self, "rate", _OFFICIAL_RATE)
        problems = _problems(
            kind=self.kind,
            per=self.per,
            values={name: getattr(self, name) for name in _PARAMETERS},
        )
        if problems:
            raise ValueError(_message(problems))

    def value(
        self,
        *,
        epoch: int,
        iteration: int = 0,
        iterations_per_epoch: int = 1,
        total_epochs: int | None = None,
    ) -> float:
        """τ at ``iteration`` (0-based, within the epoch) of ``epoch`` (0-based).

        Per-epoch schedules ignore the iteration; per-iteration schedules step once per iteration
        (global step = epoch · iterations_per_epoch + iteration). ``total_epochs`` is required by
        the linear and cosine kinds, which end at tau_end on the last step.
        """
        problems = []
        if epoch < 0:
            problems.append(f"epoch={epoch} is negative; epochs count from 0")
        if iterations_per_epoch < 1:
            problems.append(f"iterations_per_epoch={iterations_per_epoch} must be >= 1")
        elif not 0 <= iteration < iterations_per_epoch:
            problems.append(
                f"iteration={iteration} is outside [0, iterations_per_epoch={iterations_per_epoch}); "
                "pass the iteration index within the epoch"
            )
        needs_total = self.kind in ("linear", "cosine")
        if needs_total and (total_epochs is None or total_epochs < 1):
            problems.append(
                f"kind {self.kind!r} needs total_epochs >= 1 (got {total_epochs}); pass the "
                "number of training epochs so the schedule knows where it ends"
            )
        if problems:
            raise ValueError(_message(problems))

        if self.per == "epoch":
            step, last_step = epoch, (total_epochs or 1) - 1
        else:
            step = epoch * iterations_per_epoch + iteration
            last_step = (total_epochs or 1) * iterations_per_epoch - 1

        if self.kind == "constant":
            return float(self.tau0)
        if self.kind == "exponential":
            assert self.rate is not None  # filled in by __post_init__
            return float(self.tau0 * self.rate**step)
        assert self.tau_end is not None  # checked by __post_init__
        progress = min(step / last_step, 1.0) if last_step > 0 else 1.0
        if self.kind == "linear":
            return float(self.tau0 + (self.tau_end - self.tau0) * progress)
        return float(self.tau_end + 0.5 * (self.tau0 - self.tau_end) * (1.0 + math.cos(math.pi * progress)))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with only the parameters this kind reads (what ``from_dict`` accepts)."""
        out: dict[str, Any] = {"kind": self.kind, "per": self.per}
        for name in KINDS[self.kind]:
            out[name] = getattr(self, name)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TemperatureSchedule":
        """Build from a dict such as a sweep file's; every parameter of the kind must be given.

        Raises ValueError listing every problem (``schedule_problems``) with how to fix it.
        """
        problems = schedule_problems(data)
        if problems:
            raise ValueError(_message(problems))
        values = {name: data.get(name) for name in _PARAMETERS}
        return cls(kind=data["kind"], per=data.get("per", "epoch"), **{k: v for k, v in values.items() if v is not None})


def schedule_problems(data: Any) -> list[str]:
    """Every problem of a schedule written as a mapping (unknown kind or key, missing or
    out-of-range parameter), each with its fix; empty when ``from_dict`` accepts it.

    The sweep file's typed ``stage2.temperature`` section runs this same check at load time, so a
    schedule that loads is one that stage 2 can build.
    """
    if not isinstance(data, Mapping):
        return [
            f"a temperature schedule must be a mapping, got {type(data).__name__}; write e.g. "
            "{kind: exponential, tau0: 5, rate: 0.956, per: epoch}"
        ]
    problems: list[str] = []
    kind = data.get("kind")
    if kind is None:
        problems.append(f"missing 'kind'; choose one of {sorted(KINDS)}")
    allowed = {"kind", "per", *_PARAMETERS}
    for key in sorted(set(data) - allowed, key=str):
        problems.append(f"unknown key {key!r}; allowed keys are {sorted(allowed)}")
    if isinstance(kind, str) and kind in KINDS:
        for name in KINDS[kind]:
            if data.get(name) is None:
                problems.append(f"kind {kind!r} needs {name!r}; add it (e.g. {name}: {_EXAMPLE[name]})")
    values = {name: data.get(name) for name in _PARAMETERS}
    return problems + _problems(kind=kind, per=data.get("per", "epoch"), values=values, report_missing=False)


_EXAMPLE = {"tau0": 5.0, "rate": _OFFICIAL_RATE, "tau_end": 0.5}


def _problems(
    *, kind: Any, per: Any, values: Mapping[str, Any], report_missing: bool = True
) -> list[str]:
    """Every problem of a (kind, per, parameters) combination, each with its fix."""
    problems: list[str] = []
    known = isinstance(kind, str) and kind in KINDS
    if kind is not None and not known:
        problems.append(f"unknown kind {kind!r}; choose one of {sorted(KINDS)}")
    if per not in PER:
        problems.append(f"unknown per {per!r}; choose one of {list(PER)}")
    used = KINDS[kind] if known else _PARAMETERS
    for name in _PARAMETERS:
        value = values.get(name)
        if value is None:
            if report_missing and known and name in used:
                problems.append(f"kind {kind!r} needs {name!r}; set it (e.g. {name}={_EXAMPLE[name]})")
            continue
        if name not in used:
            problems.append(
                f"{name!r} is not a parameter of kind {kind!r}; remove it (kind {kind!r} reads {list(used)})"
            )
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.append(f"{name}={value!r} must be a finite number")
        elif name == "rate" and not 0.0 < value <= 1.0:
            problems.append(f"rate={value} must lie in (0, 1]; τ shrinks by this factor each step (official: 0.956)")
        elif name != "rate" and value <= 0.0:
            problems.append(
                f"{name}={value} must be > 0; the Gumbel-softmax divides by τ (anneal towards a small "
                "positive value such as 0.5)"
            )
    return problems


def _message(problems: list[str]) -> str:
    return "invalid temperature schedule:\n  - " + "\n  - ".join(problems)
