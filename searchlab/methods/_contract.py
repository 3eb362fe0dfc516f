"""What a method declares, as data and plain functions: its stages as a small graph.

A stage is one training (a loop run under Ray Train by the launch layer, or by ``LocalRun`` in tests)
or one build step (a plain function, e.g. a cache of a frozen network's outputs). It names the stages
whose artifacts it reads (``needs``) and the configuration keys its result depends on
(``depends_on``: dotted keys or section prefixes of the trial configuration). A shared stage is
content-addressed: its key hashes those values (and the data's fingerprint) with the keys of the
stages it needs, so trials that agree on them train it once; a per-trial stage runs in the trial's
own folder. Cache keys, the dry-run plan and the trial runner all read these declarations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from searchlab.train.worker import Worker

__all__ = ["Method", "Stage", "depends_on_key", "stage_order"]

#: A stage loop: ``loop(loop_config, worker)``, plain PyTorch (see searchlab.train.worker.Worker).
Loop = Callable[[dict[str, Any], Worker], None]
#: ``loop_config(config, inputs)``: the loop's arguments from the trial configuration and the
#: artifact folders of the stages it needs (by stage name).
LoopConfig = Callable[[Any, Mapping[str, Path]], dict[str, Any]]
#: ``build(config, inputs, target)``: a build step writing its artifact into the folder ``target``.
Build = Callable[[Any, Mapping[str, Path], Path], None]
#: ``baselines(artifacts, keys)``: the method's reference points (searchlab.results.Baseline rows)
#: read from a trial's stage artifacts and stage keys.
Baselines = Callable[[Mapping[str, Path], Mapping[str, str]], list[Any]]


@dataclass(frozen=True)
class Stage:
    """One step of a method. Exactly one of ``loop`` (with ``loop_config``) and ``build`` is set."""

    name: str
    needs: tuple[str, ...]
    depends_on: tuple[str, ...]
    shared: bool
    loop: Loop | None = None
    loop_config: LoopConfig | None = None
    build: Build | None = None
    #: Keys under ``depends_on`` prefixes that do not change the result (e.g. loader processes).
    ignores: tuple[str, ...] = ()
    #: Needs the loop can do without (it then computes that input itself, more slowly).
    optional: tuple[str, ...] = ()
    #: Whether the result depends on the data set's content (its manifest's fingerprint joins the key).
    reads_data: bool = True
    #: The artifact's format: part of the key, so a stage that now writes something else is rebuilt
    #: instead of being read in the old format.
    version: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        if (self.loop is None) == (self.build is None) or (self.loop is not None) != (self.loop_config is not None):
            raise ValueError(f"stage {self.name!r}: give loop and loop_config, or build, not both or neither")


@dataclass(frozen=True)
class Method:
    """A dynamic video method searchlab can train, search and deploy."""

    name: str
    description: str
    stages: tuple[Stage, ...]
    baselines: Baselines
    #: The papers' starting points: dotted keys -> values, offered as Optuna's first trials.
    paper_points: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        stage_order(self.stages)  # rejects unknown needs and cycles at registration

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"method {self.name!r} has no stage {name!r}; its stages: {[s.name for s in self.stages]}")

    def upstream(self, name: str) -> list[Stage]:
        """The stage and every stage it needs, directly or not, in running order."""
        wanted: set[str] = set()

        def visit(stage_name: str) -> None:
            if stage_name not in wanted:
                wanted.add(stage_name)
                for need in self.stage(stage_name).needs:
                    visit(need)

        visit(name)
        return [stage for stage in self.stages if stage.name in wanted]


def stage_order(stages: Sequence[Stage]) -> list[Stage]:
    """``stages`` checked to be in running order: each needs only stages declared before it."""
    seen: set[str] = set()
    for stage in stages:
        if stage.name in seen:
            raise ValueError(f"stage {stage.name!r} is declared twice")
        unknown = [need for need in stage.needs if need not in seen]
        if unknown:
            raise ValueError(f"stage {stage.name!r} needs {unknown}, which are not declared before it "
                             "(declare stages in running order; the graph must have no cycle)")
        seen.add(stage.name)
    return list(stages)


def depends_on_key(stage: Stage, key: str) -> bool:
    """Whether changing the dotted configuration ``key`` can change ``stage``'s own fields: the key
    is one it declares, lies inside a declared section, or is a section holding a declared key."""
    if key in stage.ignores:
        return False
    return any(key == prefix or key.startswith(prefix + ".") or prefix.startswith(key + ".")
               for prefix in stage.depends_on)
