"""The ``loop_config`` keys every stage loop of a method with its own configuration section reads.

A method whose settings live in one section of the trial configuration (AR-Net's ``arnet``,
VA-RED²'s ``vared``) hands each stage loop that section under its own name, with ``data`` (a
``searchlab.config.DataConfig``), ``seed``, ``log_dir`` (TensorBoard folder), ``eval_every``
(optional: also evaluate every that many epochs, for the curves; the last epoch always evaluates)
and ``inject_failure_after_epoch`` (optional, tests of resumption). A method subclasses
``SectionLoopInputs`` once, naming its section (``METHOD``, ``SECTION``) and giving it a property.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from searchlab.config import DataConfig

__all__ = ["SectionLoopInputs"]

Section = TypeVar("Section", bound=BaseModel)
Inputs = TypeVar("Inputs", bound="SectionLoopInputs[Any]")


@dataclass(frozen=True)
class SectionLoopInputs(Generic[Section]):
    """The keys every loop of one method reads from ``loop_config``; ``section`` is the method's own."""

    #: The method's name: its section's key in ``loop_config`` and in the artifact's config.yaml.
    METHOD: ClassVar[str]
    #: The section's pydantic model.
    SECTION: ClassVar[type[BaseModel]]
    #: How errors name a stage of the method: "an AR-Net stage".
    STAGE_NAME: ClassVar[str]

    section: Section
    data: DataConfig
    seed: int
    log_dir: str
    eval_every: int | None
    inject_failure_after_epoch: int | None

    @classmethod
    def parse(cls: type[Inputs], loop_config: dict[str, Any], *, needs: tuple[str, ...] = ()) -> Inputs:
        """The inputs from ``loop_config``; a KeyError names the missing keys (``needs``: the stage's own)."""
        required = (cls.METHOD, "data", "seed", "log_dir", *needs)
        missing = [key for key in required if key not in loop_config]
        if missing:
            raise KeyError(f"loop_config lacks {missing}; {cls.STAGE_NAME} needs {list(required)}")
        section = loop_config[cls.METHOD]
        if not isinstance(section, cls.SECTION):
            raise TypeError(f"loop_config[{cls.METHOD!r}] must be a {cls.SECTION.__name__}, got {type(section).__name__}")
        return cls(section=section, data=loop_config["data"], seed=int(loop_config["seed"]),
                   log_dir=str(loop_config["log_dir"]), eval_every=loop_config.get("eval_every"),
                   inject_failure_after_epoch=loop_config.get("inject_failure_after_epoch"))

    def evaluates(self, epoch: int, *, epochs: int) -> bool:
        """Whether the epoch (0-based) ends with an evaluation: the last, and every ``eval_every``."""
        return epoch + 1 == epochs or bool(self.eval_every and (epoch + 1) % self.eval_every == 0)

    def artifact_config(self, *, stage: str, **extra: Any) -> dict[str, Any]:
        """``config.yaml`` of the artifact: what the stage was trained with (data paths made
        portable by ``write_artifact``)."""
        return {"method": self.METHOD, "stage": stage, "seed": self.seed, "data": self.data.model_dump(mode="json"),
                self.METHOD: self.section.model_dump(mode="json"), **extra}
