"""What a method declares, as data and plain functions: its stages as a small graph.

A stage is one training (a loop run under Ray Train by the launch layer, or by ``LocalRun`` in tests)
or one build step (a plain function, e.g. a cache of a frozen network's outputs). It names the stages
whose artifacts it reads (``needs``) and the configuration keys its result depends on
(``depends_on``: dotted keys or section prefixes of the trial configuration). A shared stage is
content-addressed: its key hashes those values (and the data's fingerprint) with the keys of the
stages it needs, so trials that agree on them train it once; a per-trial stage runs in the trial's
own folder. A stage may fan out (``FanOut``): it is then trained once per item of lists in the
configuration (AR-Net's backbone per resolution), each item keyed on its own, so a trial that
changes one resolution retrains one backbone. Cache keys, the dry-run plan and the trial runner all
read these declarations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from searchlab.train.worker import Worker

__all__ = ["Bundle", "FanOut", "Method", "Stage", "depends_on_key", "stage_order"]

#: Where the stages a stage needs put their artifacts, by stage name: one folder, or one per item
#: of a fanned-out stage (in item order).
Artifacts = Mapping[str, Path | list[Path]]
#: A stage loop: ``loop(loop_config, worker)``, plain PyTorch (see searchlab.train.worker.Worker).
Loop = Callable[[dict[str, Any], Worker], None]
#: ``loop_config(config, inputs, item)``: the loop's arguments from the trial configuration, the
#: artifacts of the stages it needs and, for a fanned-out stage, the item's index (else None).
LoopConfig = Callable[[Any, Artifacts, int | None], dict[str, Any]]
#: ``build(config, inputs, target)``: a build step writing its artifact into the folder ``target``.
Build = Callable[[Any, Artifacts, Path], None]
#: ``baselines(artifacts, keys)``: the method's reference points (searchlab.results.Baseline rows)
#: read from a trial's stage artifacts and stage keys.
Baselines = Callable[[Artifacts, Mapping[str, Any]], list[Any]]


@dataclass(frozen=True)
class FanOut:
    """A stage trained once per item: item i takes the i-th element of each list in ``over``
    (dotted keys of equal-length lists; an empty list gives None, e.g. "no pretrained weights")."""

    over: tuple[str, ...]


@dataclass(frozen=True)
class Bundle:
    """What a deployable bundle of the method holds and how it is loaded and measured.

    ``files``: bundle file name -> (stage, file in that stage's artifact). ``load(folder, *, config,
    class_names, card, device)`` returns the deployed model (``.config``, ``.class_names``, ``.card``,
    ``.model``, ``predict``) at the configuration's operating point (``inference.cost_bias``).
    ``measure(deployed, dataset, *, device, loader_workers, multi_label)`` scores every video of an
    evaluation dataset with the inference path and returns the metric contract every method records;
    ``measure_curve(deployed, dataset, *, cost_biases, device, loader_workers, multi_label)`` returns
    what ``measure`` would at each operating point of ``cost_biases``, decoding each video once (a
    trial's curve, ``searchlab.curve``). ``card_rows(config)``: the method's lines of card.md.
    """

    files: Mapping[str, tuple[str, str]]
    load: Callable[..., Any]
    measure: Callable[..., dict[str, Any]]
    measure_curve: Callable[..., list[dict[str, Any]]]
    card_rows: Callable[[Any], list[tuple[str, str]]]


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
    #: Trained once per item of these configuration lists (None: once).
    fan_out: FanOut | None = None
    #: Whether the result depends on the data set's content (its manifest's fingerprint joins the key).
    reads_data: bool = True
    #: The artifact's format: part of the key, so a stage that now writes something else is rebuilt
    #: instead of being read in the old format.
    version: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        if (self.loop is None) == (self.build is None) or (self.loop is not None) != (self.loop_config is not None):
            raise ValueError(f"stage {self.name!r}: give loop and loop_config, or build, not both or neither")
        if self.fan_out is not None and not self.shared:
            raise ValueError(f"stage {self.name!r}: a fanned-out stage is shared (its items are cached one by one)")


@dataclass(frozen=True)
class Method:
    """A dynamic video method searchlab can train, search and deploy. Its last stage's metrics are
    a trial's, and its artifact (with the others ``bundle.files`` names) is what a bundle deploys."""

    name: str
    description: str
    stages: tuple[Stage, ...]
    baselines: Baselines
    bundle: Bundle
    #: One line of the dry-run plan per stage, from the trial configuration: "teacher 4 ep", ...
    describe: Callable[[Any], list[str]]
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
    over = stage.fan_out.over if stage.fan_out is not None else ()
    return any(key == prefix or key.startswith(prefix + ".") or prefix.startswith(key + ".")
               for prefix in (*stage.depends_on, *over))
