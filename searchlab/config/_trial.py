"""Typed configuration: one trial's settings (`TrialConfig`) and a sweep file (`Sweep`).

A sweep file is YAML with four sections::

    base:     a TrialConfig (data, model, teacher, stage1, stage2, resources, seed)
    search:   trials, sampler, seed, objectives, constraints, points_to_evaluate, max_concurrent
    space:    dotted keys into the trial configuration -> search-space entries
    storage:  where the run directory lives (a folder every node of a cluster sees)

`load_sweep` reports every problem of a file at once (`ConfigError`), naming each key, the bad value
and the fix; the CLIs turn that into exit code 2. It checks what a run would meet later too (names
against their registries, files, packages, every choice, range end and starting point as a trial),
so a file that loads does not fail at a trial's configuration. Relative paths are resolved against
the working directory at load time, because Ray workers run in other directories.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import re
import typing
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from searchlab.objectives import METRICS


class ConfigError(ValueError):
    """Every problem found in a configuration, one per line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in problems))


# Upper limits on sizes and counts (docs/configuration.md, "Limits"). None is a limit of the method;
# each is far beyond any sensible value (the papers: 8-16 frames at 224 px, tens of epochs, batches
# of 8-64, tens of trials), so a value past one is a typo -- an extra zero, a wrong unit -- caught at
# load instead of after hours of compute or an out-of-memory crash.
MAX_TRIALS = 10_000
MAX_CONCURRENT = 1_024  # trials at a time; also Ray Train workers per stage and loader processes
MAX_FRAMES = 512  # frames sampled per clip
MAX_SIDE = 2_048  # pixels: crop, scales, evaluation short side, policy input, synthetic frames
MAX_EPOCHS = 10_000
MAX_BATCH = 4_096  # clips per worker and step
MAX_VIEWS = 64  # evaluation clips per video; cached augmentation views per training clip
MAX_SEED = 2**32 - 1  # NumPy's RandomState (Optuna's samplers) takes seeds in [0, 2**32)

Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Side = Annotated[int, Field(ge=8, le=MAX_SIDE)]

# Folders under `storage` that are not run directories: the stage cache every sweep there shares
# (CACHE_DIR_NAME of searchlab.pipeline and searchlab.run_dir, which a test keeps equal).
RESERVED_RUN_NAMES = ("cache",)
# The `python -m searchlab.data.prepare` subcommands (a test keeps them equal).
DataSource = Literal["synthetic", "activitynet", "fcvid", "minisports", "minikinetics", "kinetics"]
# Packages a sampler needs beyond Optuna's required ones: sampler -> (package, what for).
SAMPLER_NEEDS: dict[str, tuple[str, str]] = {"gp": ("scipy", "Optuna's GPSampler fits its kernel with it")}


class _Strict(BaseModel):
    """Unknown keys are errors (a typo must not pass silently); objects are immutable; numbers are
    finite (pydantic would otherwise take YAML's .nan and .inf for floats)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SyntheticData(_Strict):
    """Knobs of the embedded synthetic data set, generated when the manifest is missing."""

    classes: int = Field(8, ge=2)
    train_per_class: int = Field(24, ge=1, le=100_000)
    val_per_class: int = Field(8, ge=1, le=100_000)
    frames: int = Field(32, ge=2, le=8 * MAX_FRAMES)
    fps: float = Field(8.0, gt=0, le=1_000)
    size: int = Field(64, ge=16, le=MAX_SIDE)
    seed: Seed = 0
    multi_label: bool = False
    fine_contrast: float = Field(0.6, gt=0, le=1, description="stripe contrast of the fine classes")

    @model_validator(mode="after")
    def _generator_accepts(self) -> SyntheticData:
        """The generator's own checks (e.g. even sizes, enough distinct looks), at load time."""
        from searchlab.data.synthetic import SyntheticConfig  # imports PyAV

        knobs = SyntheticConfig(
            num_classes=self.classes, train_per_class=self.train_per_class, val_per_class=self.val_per_class,
            num_frames=self.frames, fps=self.fps, size=self.size, seed=self.seed, multi_label=self.multi_label,
            fine_contrast=self.fine_contrast,
        )
        problems = knobs.problems()
        if problems:  # the generator names two knobs differently; say the sweep file's names
            renamed = [re.sub(r"\bnum_(classes|frames)=", r"\1=", problem) for problem in problems]
            raise ValueError("\n".join(renamed))
        return self


class DataConfig(_Strict):
    manifest: str
    source: DataSource = Field("synthetic", description="prepare subcommand that makes the manifest")
    root: str | None = None  # data root the manifest's paths are relative to; default: its folder
    synthetic: SyntheticData | None = None
    frames: int = Field(16, ge=1, le=MAX_FRAMES, description="T, frames sampled TSN-style per clip")
    train_scale: tuple[Side, Side] = (256, 320)
    crop_size: Side = 224
    eval_short_side: Side = 256
    eval_clips: int = Field(1, ge=1, le=MAX_VIEWS)
    loader_workers: int = Field(2, ge=0, le=MAX_CONCURRENT)
    max_failure_fraction: float = Field(0.05, ge=0, le=1)
    metric: Literal["auto", "map", "top1"] = Field(
        "auto", description="accuracy metric; auto = mAP for multi-label manifests, top-1 otherwise"
    )

    @model_validator(mode="after")
    def _sizes_consistent(self) -> DataConfig:
        low, high = self.train_scale
        if not 0 < low < high:
            raise ValueError(f"train_scale {list(self.train_scale)} must be [low, high) with 0 < low < high")
        if self.crop_size > low or self.crop_size > self.eval_short_side:
            raise ValueError(
                f"crop_size {self.crop_size} exceeds train_scale low {low} or eval_short_side "
                f"{self.eval_short_side}; lower crop_size or raise the scales"
            )
        return self


class ModelConfig(_Strict):
    backbone: str = "resnet50"
    bit_widths: tuple[int, ...] = (32, 4, 2)
    pretrained: str | None = None  # torchvision state dict (.pt) on disk for the backbone
    policy_input_size: int = Field(84, ge=16, le=MAX_SIDE)
    policy_hidden: int = Field(512, ge=1, le=16_384)
    policy_width_mult: float = Field(1.0, gt=0, le=4.0)
    policy_pretrained: str | None = None  # MobileNetV2 state dict on disk

    @field_validator("backbone")
    @classmethod
    def _registered(cls, backbone: str) -> str:
        from searchlab.models.registry import list_backbones  # imports torchvision

        known = list_backbones()
        if backbone not in known:
            raise ValueError(f"unknown backbone {backbone!r}; registered (searchlab.models.registry): {', '.join(known)}")
        return backbone

    @field_validator("bit_widths")
    @classmethod
    def _bits_valid(cls, bits: tuple[int, ...]) -> tuple[int, ...]:
        bad = [b for b in bits if not 1 <= b <= 32]
        if bad or len(set(bits)) != len(bits) or not bits:
            raise ValueError(f"bit_widths {list(bits)} must be distinct integers in 1..32, e.g. [32, 4, 2]")
        return tuple(sorted(bits, reverse=True))


class OptimConfig(_Strict):
    epochs: int = Field(ge=1, le=MAX_EPOCHS)
    lr: float = Field(gt=0)
    batch_size: int = Field(8, ge=1, le=MAX_BATCH)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    checkpoint_every: int = Field(1, ge=1, le=MAX_EPOCHS, description="epochs between resumable checkpoints (the last is always saved)")


class TeacherConfig(OptimConfig):
    """Full-precision network and the policy's feature extractor, trained on the same data."""

    epochs: int = Field(10, ge=1, le=MAX_EPOCHS)
    lr: float = Field(0.01, gt=0)
    policy_epochs: int = Field(5, ge=0, le=MAX_EPOCHS)
    policy_target: Literal["distill", "labels"] = Field(
        "distill", description="MobileNetV2 pretraining target: the teacher's per-frame predictions, or video labels"
    )


class AlphaConfig(_Strict):
    """PACT clip values: initial value, and a learning rate and weight decay per bit-width."""

    init: float = Field(2.0, gt=0)
    lr: dict[int, Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: {32: 0.1, 4: 0.1, 2: 0.01})
    wd: dict[int, Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: {32: 5e-4, 4: 5e-4, 2: 6e-2})


class Stage1Config(OptimConfig):
    epochs: int = Field(100, ge=1, le=MAX_EPOCHS)
    lr: float = Field(0.01, gt=0)
    kd_weight: float = Field(1.0, ge=0)
    alpha: AlphaConfig = AlphaConfig()


TemperatureKind = Literal["exponential", "linear", "cosine", "constant"]


class TemperatureConfig(_Strict, Mapping[str, Any]):
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


class Stage2Config(OptimConfig):
    epochs: int = Field(50, ge=1, le=MAX_EPOCHS)
    lr: float = Field(0.01, gt=0, description="LSTM and fc learning rate")
    lr_body: float = Field(1e-4, ge=0, description="MobileNetV2 body learning rate; 0 freezes it")
    decision_space: tuple[int, ...] = (32, 4, 2, 0)
    w1: float = Field(0.21, ge=0, description="efficiency loss weight")
    efficiency_cost: Literal["flops", "official"] = Field(
        "flops", description="L_e's per-action cost: exact FLOPs / top precision's, or official min(b,8)^2/64"
    )
    w2: float = Field(0.5, ge=0, description="balanced-usage loss weight")
    w3: float = Field(0.1, ge=0, description="decisiveness (entropy) loss weight")
    kd_weight: float = Field(1.0, ge=0)
    temperature: TemperatureConfig = Field(default_factory=_official_temperature)
    eval_mode: Literal["argmax", "sample"] = "argmax"
    cached_views: int = Field(2, ge=1, le=MAX_VIEWS, description="fixed augmentation views per training clip in the cache")


class ResourcesConfig(_Strict):
    workers: int = Field(1, ge=1, le=MAX_CONCURRENT, description="Ray Train workers per stage")
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0, le=256)
    gpus_per_worker: float = Field(0.0, ge=0, le=16)

    @model_validator(mode="after")
    def _gpus_used(self) -> ResourcesConfig:
        if self.gpus_per_worker > 0 and not self.use_gpu:
            raise ValueError(
                f"gpus_per_worker {self.gpus_per_worker:g} would be ignored: use_gpu is false; set use_gpu: true "
                "to train on GPUs, or gpus_per_worker: 0"
            )
        return self


class TrialConfig(_Strict):
    name: str = "trial"
    seed: Seed = 0
    data: DataConfig
    model: ModelConfig = ModelConfig()
    teacher: TeacherConfig = TeacherConfig()
    stage1: Stage1Config = Stage1Config()
    stage2: Stage2Config = Stage2Config()
    resources: ResourcesConfig = ResourcesConfig()

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if name in ("", ".", "..") or any(c in name for c in "/\\\0") or name != name.strip():
            raise ValueError(
                f"name {name!r} must be a plain folder name, since the run directory is storage/name: not "
                "empty, not . or .., no / or \\, no surrounding spaces; e.g. anet-videoiq-r50"
            )
        if name in RESERVED_RUN_NAMES:
            raise ValueError(
                f"name {name!r} is the folder of the stage cache that every sweep in storage shares; choose another name"
            )
        return name

    @model_validator(mode="after")
    def _cross_checks(self) -> TrialConfig:
        problems = cross_check_trial(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def with_overrides(self, overrides: dict[str, Any]) -> TrialConfig:
        """A new config with dotted keys replaced, validated again (raises ConfigError)."""
        tree = self.model_dump(mode="python")
        problems = []
        for key, value in overrides.items():
            problem = set_dotted(tree, key, value)
            if problem:
                problems.append(problem)
        if problems:
            raise ConfigError("overrides", problems)
        return parse_trial_config(tree, source="overrides")


def cross_check_trial(config: TrialConfig) -> list[str]:
    """Checks that span sections (the decision space against the trained bit-widths, α per bit)."""
    return _decision_space_problems(config.model, config.stage2) + _alpha_problems(config.model, config.stage1)


def _decision_space_problems(model: ModelConfig, stage2: Stage2Config) -> list[str]:
    problems = []
    bits = model.bit_widths
    space = stage2.decision_space
    if bits[0] not in space:
        problems.append(
            f"stage2.decision_space {list(space)} must contain the top bit-width {bits[0]} of model.bit_widths"
        )
    unknown = [b for b in space if b != 0 and b not in bits]
    if unknown:
        problems.append(
            f"stage2.decision_space has {unknown} not in model.bit_widths {list(bits)}; "
            "use trained bit-widths or 0 (skip)"
        )
    if len(set(space)) != len(space):
        problems.append(f"stage2.decision_space {list(space)} has duplicates")
    return problems


def _alpha_problems(model: ModelConfig, stage1: Stage1Config) -> list[str]:
    problems = []
    for field in ("lr", "wd"):
        missing = [b for b in model.bit_widths if b not in getattr(stage1.alpha, field)]
        if missing:
            problems.append(f"stage1.alpha.{field} lacks bit-widths {missing}; give one value per bit-width")
    return problems


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> str | None:
    """Set `a.b.c` in a nested dict; returns a problem string when the key does not exist."""
    parts = key.split(".")
    node: Any = tree
    for depth, part in enumerate(parts):
        if not isinstance(node, dict):
            return f"{key}: {'.'.join(parts[:depth])} is not a section, so {part!r} cannot be set"
        name: Any = part
        if name not in node and part.lstrip("-").isdigit() and int(part) in node:
            name = int(part)
        if name not in node and not _open_mapping(node):
            known = ", ".join(str(k) for k in node)
            return f"{key}: unknown key {part!r}; known keys here: {known}"
        if depth == len(parts) - 1:
            node[name] = value
        else:
            node = node.setdefault(name, {})
    return None


def _open_mapping(node: dict[Any, Any]) -> bool:
    """Per-bit tables (dict[int, float]) accept new integer keys; sections do not."""
    return bool(node) and all(isinstance(k, int) for k in node)


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


def parse_trial_config(tree: dict[str, Any], *, source: str, prefix: str = "") -> TrialConfig:
    try:
        return TrialConfig.model_validate(tree)
    except ValidationError as error:
        raise ConfigError(source, _format_pydantic(error, prefix)) from None


# ---------------------------------------------------------------------------------------------
# Sweep files

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


class Sweep(_Strict):
    base: TrialConfig
    search: SearchConfig = SearchConfig()
    space: dict[str, SpaceEntry] = Field(default_factory=dict)
    storage: str = "runs"
    source: str = ""  # the file it was loaded from

    @property
    def run_dir(self) -> Path:
        return Path(self.storage) / self.base.name


def schema_key_problem(key: str) -> str | None:
    """Whether a dotted key names a field of TrialConfig (checked on the schema, not on values)."""
    model: Any = TrialConfig
    parts = key.split(".")
    for depth, part in enumerate(parts):
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


# ---------------------------------------------------------------------------------------------
# Space checks at load time: everything `searchlab.space` and a trial would meet later

# Combinations of the entries' extreme values (choices, range ends) checked as whole trials; past
# this many only each entry alone is checked, which catches all but cross-entry conflicts.
MAX_COMBINATIONS = 1_024


def plain(value: Any) -> Any:
    """Tuples as lists and mappings as dicts, recursively: YAML gives lists, a config gives tuples,
    so values compare equal whichever side they come from."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    return value


def get_dotted(tree: Any, key: str) -> tuple[bool, Any]:
    """(found, value) of dotted `key` in a nested dict; per-bit tables have integer keys."""
    node = tree
    for part in key.split("."):
        name: Any = part
        if isinstance(node, dict) and part not in node and part.lstrip("-").isdigit():
            name = int(part)
        if not isinstance(node, dict) or name not in node:
            return False, None
        node = node[name]
    return True, node


def ordered_keys(space: Mapping[str, SpaceEntry]) -> list[str]:
    """Space keys with every searched key a `when` reads placed before the entry that reads it;
    raises ValueError on a cycle of conditions."""
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

    for key in space:
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


def _extremes(entry: SpaceEntry) -> list[tuple[str, Any]]:
    """(label, value) of the values that bound what an entry gives a trial: every choice, or a
    range's ends (on its grid: SpaceEntry checks that high is)."""
    if entry.choice is not None:
        return [("choice", value) for value in entry.choice]
    low, high = entry.uniform or entry.loguniform or entry.integer  # type: ignore[misc]
    return [("low", low), ("high", high)]


def _inner_value(entry: SpaceEntry) -> tuple[str, Any] | None:
    """A fractional value inside a float range, on its grid (None for choices and int ranges):
    a float range over an integer field passes at whole ends but fails inside."""
    if entry.uniform is not None and entry.step is not None:
        low, high = entry.uniform
        return ("value", low + entry.step) if low + entry.step <= high else None
    if entry.uniform is not None:
        low, high = entry.uniform
        inner = [low + (high - low) * fraction for fraction in (0.37, 0.63)]
    elif entry.loguniform is not None:
        low, high = entry.loguniform
        inner = [low * (high / low) ** fraction for fraction in (0.37, 0.63)]
    else:
        return None
    return ("value", next((x for x in inner if not float(x).is_integer()), inner[0]))


def _conditions_hold(entry: SpaceEntry, chosen: Mapping[str, Any], base_tree: dict[str, Any]) -> bool:
    """`searchlab.space.conditions_hold` on a dumped base: chosen values first, else the base's."""
    for key, wanted in (entry.when or {}).items():
        actual = chosen[key] if key in chosen else get_dotted(base_tree, key)[1]
        if plain(actual) != plain(wanted):
            return False
    return True


def _trial_problem(base: TrialConfig, overrides: dict[str, Any]) -> str | None:
    try:
        base.with_overrides(overrides)
    except ConfigError as error:
        return "; ".join(error.problems)
    return None


def _check_space(sweep_tree: dict[str, Any], base: TrialConfig | None, skip: Mapping[tuple[Any, ...], Any]) -> list[str]:
    """Space keys must name config fields, conditions must be decidable and acyclic, and every
    choice, range end and starting point must give a valid trial: a file that loads never fails
    at a trial's configuration. Entries and points at locations in `skip` (non-finite numbers,
    reported already) are left out."""
    raw_space = sweep_tree.get("space")
    if not isinstance(raw_space, dict):
        return []  # pydantic reports a space that is not a mapping
    skipped = {loc[1] for loc in skip if loc[:1] == ("space",) and len(loc) > 1}
    problems, space = [], {}
    for key, raw in raw_space.items():
        if not isinstance(key, str) or key in skipped:
            continue  # pydantic reports a key that is not text
        problem = schema_key_problem(key)
        if problem:
            problems.append(f"space.{problem}")
            continue
        try:
            space[key] = SpaceEntry.model_validate(raw)
        except ValidationError:
            continue  # reported by the Sweep's own validation
    base_tree = base.model_dump(mode="python") if base is not None else None
    order, cycles = _space_order(space)
    problems += cycles + _condition_problems(space, base_tree)
    search = sweep_tree.get("search")
    points = search.get("points_to_evaluate") if isinstance(search, dict) else None
    for index, point in enumerate(points if isinstance(points, list) else []):
        if isinstance(point, dict) and ("search", "points_to_evaluate", index) not in {loc[:3] for loc in skip}:
            # values for entries that are themselves invalid are checked once the entry is fixed
            point = {k: v for k, v in point.items() if k in space or k not in raw_space}
            problems += [f"search.points_to_evaluate[{index}].{p}" for p in point_problems(point, space)]
            if base is not None and base_tree is not None:
                problems += _point_trial_problems(index, point, space, base, base_tree)
    if base is not None and base_tree is not None and not cycles:
        entry_problems = _entry_trial_problems(space, base, base_tree)
        # Conflicts between entries only mean something once each entry is valid on its own.
        problems += entry_problems or _combination_problems(space, order, base, base_tree)
    if isinstance(search, dict) and search.get("sampler") == "grid":
        continuous = [k for k, e in space.items() if e.choice is None]
        if continuous:
            problems.append(f"search.sampler grid needs choice entries only; {continuous} are continuous")
        conditional = [k for k, e in space.items() if e.when]
        if conditional:
            problems.append(f"search.sampler grid cannot search conditional entries {conditional}; drop when: or use tpe")
    return problems


def _condition_problems(space: Mapping[str, SpaceEntry], base_tree: dict[str, Any] | None) -> list[str]:
    """A `when` must read a known key and be able to hold; else its entry is never searched."""
    problems = []
    for key, entry in space.items():
        for cond_key, wanted in (entry.when or {}).items():
            if cond_key in space:
                problem = value_problem(space[cond_key], wanted)
                if problem:
                    problems.append(
                        f"space.{key}.when: {cond_key} never equals {wanted!r} ({problem}), so {key} would never "
                        "be searched; fix the value or drop the condition"
                    )
            elif schema_key_problem(cond_key):
                problems.append(f"space.{key}.when: {cond_key!r} is neither a searched key nor a config key")
            elif base_tree is not None:
                found, actual = get_dotted(base_tree, cond_key)
                if not found:
                    problems.append(
                        f"space.{key}.when: {cond_key} has no value in base (an optional key left out), so the "
                        f"condition cannot be decided; set {cond_key} in base or search it"
                    )
                elif plain(actual) != plain(wanted):
                    problems.append(
                        f"space.{key}.when: {cond_key} is not searched and is {plain(actual)!r} in base, never "
                        f"{wanted!r}, so {key} would never be searched; fix the value, search {cond_key}, or drop "
                        "the condition"
                    )
    return problems


def _entry_trial_problems(space: Mapping[str, SpaceEntry], base: TrialConfig, base_tree: dict[str, Any]) -> list[str]:
    """Each entry's choices and range ends, alone on the base (with the searched values its
    conditions ask for), must give a valid trial."""
    problems = []
    for key, entry in space.items():
        when = entry.when or {}
        if any(plain(get_dotted(base_tree, k)[1]) != plain(v) for k, v in when.items() if k not in space):
            continue  # never searched: reported by the condition checks
        conditions = {k: v for k, v in when.items() if k in space}
        inner = _inner_value(entry)
        for label, value in _extremes(entry) + ([inner] if inner else []):
            problem = _trial_problem(base, {**conditions, key: value})
            if problem:
                problems.append(f"space.{key}: {label} {value!r} gives an invalid trial: {problem}")
    return problems


def _combination_problems(
    space: Mapping[str, SpaceEntry], order: list[str], base: TrialConfig, base_tree: dict[str, Any]
) -> list[str]:
    """Every combination of the entries' extremes, applied as a trial would apply them (an entry
    whose conditions fail keeps the base value), must give a valid trial; a few distinct problems
    are shown with the combination that met each first."""
    extremes = [[value for _, value in _extremes(space[key])] for key in order]
    if math.prod(len(values) for values in extremes) > MAX_COMBINATIONS:
        return []
    first: dict[str, dict[str, Any]] = {}
    for combination in itertools.product(*extremes):
        chosen: dict[str, Any] = {}
        for key, value in zip(order, combination):
            if _conditions_hold(space[key], chosen, base_tree):
                chosen[key] = value
        problem = _trial_problem(base, chosen)
        if problem is not None:
            first.setdefault(problem, chosen)
    return [
        f"space: the values {chosen} together give an invalid trial: {problem}; narrow these entries so that "
        "every combination is valid"
        for problem, chosen in list(first.items())[:3]
    ]


def _point_trial_problems(
    index: int, point: dict[str, Any], space: Mapping[str, SpaceEntry], base: TrialConfig, base_tree: dict[str, Any]
) -> list[str]:
    """A starting point's values must be used (their entries' conditions hold) and give a valid trial."""
    problems, used = [], {}
    where = f"search.points_to_evaluate[{index}]"
    for key, value in point.items():
        entry = space.get(key)
        if entry is None:
            continue  # reported by point_problems
        for cond_key, wanted in (entry.when or {}).items():
            if cond_key in space and cond_key not in point:
                continue  # sampled in that trial: cannot be known here
            actual = point[cond_key] if cond_key in point else get_dotted(base_tree, cond_key)[1]
            if plain(actual) != plain(wanted):
                problems.append(
                    f"{where}.{key}: would be dropped: its condition {cond_key} = {wanted!r} does not hold for this "
                    f"point ({cond_key} is {plain(actual)!r}); remove {key} from the point or change {cond_key}"
                )
                break
        else:
            used[key] = value
    problem = _trial_problem(base, used) if used else None
    if problem:
        problems.append(f"{where}: gives an invalid trial: {problem}")
    return problems


class _SweepLoader(yaml.SafeLoader):
    """yaml.safe_load's loader that also notes repeated keys, of which YAML keeps the last silently."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.repeated: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # keys merged in with `<<` are meant to be overridden
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                if key in first_line:
                    self.repeated.append(
                        f"line {line}: key {key!r} repeats the one on line {first_line[key]} of the same "
                        "mapping; YAML would keep only the last, so remove one"
                    )
                first_line.setdefault(key, line)
            except TypeError:
                continue  # an unhashable key: SafeLoader reports it as invalid YAML
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> tuple[Any, list[str]]:
    """The file's YAML tree and its repeated keys; a ConfigError when it cannot be read as YAML."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(str(path), [f"cannot read the file: {error.strerror}; check its permissions"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ConfigError(str(path), [
            f"not UTF-8 text: byte 0x{raw[error.start]:02x} on line {line} cannot be decoded; save the file as UTF-8"
        ]) from None
    loader = _SweepLoader(text)
    try:
        return loader.get_single_data(), loader.repeated
    except yaml.YAMLError as error:
        raise ConfigError(str(path), [f"not valid YAML: {error}"]) from None
    except RecursionError:
        raise ConfigError(str(path), ["not a sweep file: YAML nested too deeply to read"]) from None
    finally:
        loader.dispose()


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file; raises ConfigError with every problem found."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), ["no such file; sweep files live in spaces/ (e.g. spaces/demo.yaml)"])
    tree, problems = _read_yaml(path)
    if not isinstance(tree, dict):
        found = "the file is empty" if tree is None else f"the top level is a {type(tree).__name__}"
        raise ConfigError(str(path), [
            *problems, f"{found}; a sweep file is a mapping with base, search, space, storage (see spaces/demo.yaml)"
        ])
    try:
        sweep = parse_sweep(tree, source=str(path))
    except ConfigError as error:
        problems += error.problems
    if problems:
        raise ConfigError(str(path), problems)
    return sweep


def parse_sweep(tree: dict[str, Any], *, source: str) -> Sweep:
    non_finite = dict(_non_finite_numbers(tree))
    problems = [f"{_where(loc)}: {value} is not a finite number; write a finite value" for loc, value in non_finite.items()]
    tree = dict(tree)
    base_tree = _resolve_paths(tree.get("base"))
    tree["base"] = base_tree
    try:
        sweep = Sweep.model_validate({**tree, "source": source})
    except ValidationError as error:
        # a .nan/.inf is reported once, above, also where a key was meant to hold something else
        problems.extend(_format_pydantic(error, skip=non_finite))
        problems.extend(_hidden_cross_checks(error, base_tree))
        sweep = None
    base = None
    if isinstance(base_tree, dict):
        try:
            base = TrialConfig.model_validate(base_tree)
        except ValidationError:
            base = None  # already reported above
    problems.extend(_check_space(tree, base, non_finite))
    problems.extend(_environment_problems(tree))
    if problems:
        raise ConfigError(source, problems)
    assert sweep is not None
    return sweep


def sampler_dependency_problem(sampler: str) -> str | None:
    """Why `sampler` cannot run in this environment (a package it needs is missing), or None."""
    if sampler not in SAMPLER_NEEDS:
        return None
    package, purpose = SAMPLER_NEEDS[sampler]
    if importlib.util.find_spec(package) is not None:
        return None
    return (
        f"search.sampler {sampler} needs {package} ({purpose}), which this environment lacks; use sampler tpe "
        f"or nsga2, or add {package} to the dependencies"
    )


def _environment_problems(tree: dict[str, Any]) -> list[str]:
    """What the sweep would meet outside the file: missing packages and files, a run directory
    that holds the data (--overwrite deletes it). Checked at load, not on every validation: a trial
    process or a deployed bundle validates the same configuration elsewhere. Reads the raw tree
    (paths already resolved), so a problem elsewhere in `base` hides none of these."""
    problems = []
    search = _section(tree, "search")
    if isinstance(search.get("sampler"), str):
        missing = sampler_dependency_problem(search["sampler"])
        problems += [missing] if missing else []
    base = _section(tree, "base")
    model, data = _section(base, "model"), _section(base, "data")
    for key in ("pretrained", "policy_pretrained"):
        value = model.get(key)
        if isinstance(value, str) and not Path(value).is_file():
            problems.append(
                f"base.model.{key}: {value} is not a file; put the state dict there or set {key}: null (random initialisation)"
            )
    storage, name = tree.get("storage", "runs"), base.get("name", TrialConfig.model_fields["name"].default)
    return problems + _storage_problems(storage, name, data)


def _storage_problems(storage: Any, name: Any, data: dict[Any, Any]) -> list[str]:
    """`storage` must be a path every node sees, and the run directory must not hold the data."""
    if not isinstance(storage, str):
        return []  # pydantic reports it
    if "://" in storage:
        return [
            f"storage {storage!r} is a URI; searchlab needs a file system path that every node sees (mount the "
            "bucket or NFS share, e.g. /mnt/searchlab/runs, and set storage to it)"
        ]
    if not isinstance(name, str) or not name:
        return []  # the name's own check reports it
    run_dir = Path(storage).expanduser().resolve() / name
    return [
        f"base.name {name!r}: the run directory {run_dir} would hold data.{key} {data[key]}, and --overwrite "
        "deletes the run directory; choose another name or storage"
        for key in ("manifest", "root")
        if isinstance(data.get(key), str) and (Path(data[key]) == run_dir or run_dir in Path(data[key]).parents)
    ]


def _section(tree: Any, key: str) -> dict[Any, Any]:
    """tree[key] when both are mappings, else {} (a wrong type there is reported by pydantic)."""
    value = tree.get(key) if isinstance(tree, dict) else None
    return value if isinstance(value, dict) else {}


def _non_finite_numbers(tree: Any, loc: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], float]]:
    """(location, value) of every nan and ±inf anywhere in a YAML tree (pydantic's loc style)."""
    if isinstance(tree, float) and not math.isfinite(tree):
        yield loc, tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from _non_finite_numbers(value, (*loc, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from _non_finite_numbers(value, (*loc, index))


def _hidden_cross_checks(error: ValidationError, base_tree: Any) -> list[str]:
    """Cross-section problems pydantic skipped because another field of `base` was invalid.

    TrialConfig's after-validator runs only when every field is valid, so a typo elsewhere would
    hide e.g. a decision space without the top bit-width; check the sections alone instead.
    """
    field_errors = [e for e in error.errors() if e["loc"][:1] == ("base",) and len(e["loc"]) > 1]
    if not field_errors or not isinstance(base_tree, dict):
        return []
    sections: dict[str, Any] = {}
    for name, model in (("model", ModelConfig), ("stage1", Stage1Config), ("stage2", Stage2Config)):
        section = base_tree.get(name) or {}
        known = {k: v for k, v in section.items() if k in model.model_fields} if isinstance(section, dict) else {}
        try:  # unknown keys are reported already; they must not hide the cross-section checks
            sections[name] = model.model_validate(known)
        except ValidationError:
            pass  # that section's own errors are already reported; skip the checks that need it
    problems = []
    if "model" in sections and "stage2" in sections:
        problems += _decision_space_problems(sections["model"], sections["stage2"])
    if "model" in sections and "stage1" in sections:
        problems += _alpha_problems(sections["model"], sections["stage1"])
    return [f"base: {problem}" for problem in problems]


def apply_run_options(sweep: Sweep, *, trials: int | None = None, storage: str | None = None) -> Sweep:
    """The sweep with the command line's --max-trials and --storage applied, checked as the file's
    own values are (limits, the run directory); raises ConfigError naming the option."""
    problems: list[str] = []
    update: dict[str, Any] = {}
    if trials is not None:
        try:
            update["search"] = SearchConfig.model_validate({**sweep.search.model_dump(), "trials": trials})
        except ValidationError as error:
            problems += [p.replace("trials: ", "", 1) for p in _format_pydantic(error, prefix="--max-trials ")]
    if storage is not None:
        update["storage"] = str(Path(storage).expanduser().resolve()) if "://" not in storage else storage
        data = sweep.base.data.model_dump()
        problems += [f"--storage {storage}: {p}" for p in _storage_problems(update["storage"], sweep.base.name, data)]
    if problems:
        raise ConfigError("command line", problems)
    return sweep.model_copy(update=update)


def load_trial_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrialConfig:
    """The trial configuration of a sweep file (its `base`), with optional dotted overrides."""
    config = load_sweep(path).base
    return config.with_overrides(overrides) if overrides else config


def _resolve_paths(base: Any) -> Any:
    """Make path fields absolute against the working directory (Ray workers chdir elsewhere)."""
    if not isinstance(base, dict):
        return base
    base = {**base}
    for section, keys in (("data", ("manifest", "root")), ("model", ("pretrained", "policy_pretrained"))):
        block = base.get(section)
        if isinstance(block, dict):
            block = dict(block)
            for key in keys:
                if isinstance(block.get(key), str):
                    block[key] = str(Path(block[key]).expanduser().resolve())
            base[section] = block
    return base
