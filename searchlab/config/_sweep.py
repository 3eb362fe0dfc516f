"""Sweep files: the `Sweep` model and `load_sweep`, which reads the YAML and reports every problem
of it at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from searchlab.config._environment import _environment_problems
from searchlab.config._errors import ConfigError, _format_pydantic, _where
from searchlab.config._limits import _non_finite_numbers
from searchlab.config._methods import METHOD_KEY, cross_method_problems, method_base, method_bases, shared_keys
from searchlab.sections import Strict as _Strict
from searchlab.config._search import SearchConfig
from searchlab.config._space import SpaceEntry
from searchlab.config._space_checks import _check_space
from searchlab.config._trial import (
    ModelConfig,
    Stage1Config,
    Stage2Config,
    TrialConfig,
    _alpha_problems,
    _decision_space_problems,
)


class Sweep(_Strict):
    """A sweep file. `base` is the trial configuration every trial starts from; in a cross-method sweep
    (`methods` given, `space.method` choosing among them) it holds the keys every method shares and
    `methods.<name>` that method's own sections (searchlab.config._methods)."""

    base: TrialConfig
    methods: dict[str, dict[str, Any]] = Field(default_factory=dict)
    search: SearchConfig = SearchConfig()
    space: dict[str, SpaceEntry] = Field(default_factory=dict)
    storage: str = "runs"
    source: str = ""  # the file it was loaded from

    @property
    def run_dir(self) -> Path:
        return Path(self.storage) / self.base.name

    @property
    def cross_method(self) -> bool:
        return bool(self.methods)

    @property
    def method_names(self) -> list[str]:
        """The methods this sweep's trials train, in the file's order."""
        return list(self.methods) if self.methods else [self.base.method]

    def method_base(self, name: str) -> TrialConfig:
        """The configuration method ``name``'s trials start from (before their parameters)."""
        if name not in self.method_names:
            raise KeyError(f"method {name!r} is not searched by this sweep; its methods: {', '.join(self.method_names)}")
        return method_base(self.base, self.methods[name], name) if self.methods else self.base

    def method_bases(self) -> dict[str, TrialConfig]:
        return {name: self.method_base(name) for name in self.method_names}

    def trial_config(self, params: dict[str, Any]) -> TrialConfig:
        """A trial's configuration: its method's base with its parameters (dotted keys) applied."""
        method = params.get(METHOD_KEY) if self.methods else self.base.method
        if method is None:
            raise KeyError(f"a cross-method sweep's trial names its method: give {METHOD_KEY} (one of "
                           f"{', '.join(self.method_names)}) among the parameters")
        overrides = {key: value for key, value in params.items() if key != METHOD_KEY}
        base = self.method_base(method)
        return base.with_overrides(overrides) if overrides else base


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
    problems.extend(cross_method_problems(tree))
    if isinstance(tree.get("methods"), dict):
        tree["methods"] = {name: _resolve_paths(sections) for name, sections in tree["methods"].items()}
        # what base must not hold in a cross-method sweep is reported above: the rest is checked as usual
        base_tree = tree["base"] = shared_keys(base_tree)
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
    bases: dict[str, TrialConfig] = {}
    if base is not None and isinstance(tree.get("methods"), dict):
        bases, method_problems = method_bases(base, tree["methods"])
        problems.extend(method_problems)
    elif base is not None:
        bases = {base.method: base}
    problems.extend(_check_space(tree, bases if base is not None else None, non_finite))
    problems.extend(_environment_problems(tree))
    if problems:
        raise ConfigError(source, problems)
    assert sweep is not None
    return sweep


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


def load_trial_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrialConfig:
    """The trial configuration of a sweep file (its `base`), with optional dotted overrides; a
    cross-method sweep's overrides name the method (``method``), whose base they apply to."""
    sweep = load_sweep(path)
    overrides = dict(overrides or {})
    if sweep.cross_method and overrides.get(METHOD_KEY) not in sweep.method_names:
        raise ConfigError(str(path), [
            f"a cross-method sweep: say which method's configuration with method=NAME (one of "
            f"{', '.join(sweep.method_names)}), e.g. --set method={sweep.method_names[0]}"])
    return sweep.trial_config(overrides)


def _resolve_paths(base: Any) -> Any:
    """Make path fields absolute against the working directory (Ray workers chdir elsewhere)."""
    if not isinstance(base, dict):
        return base
    base = {**base}
    for section, keys in (("data", ("manifest", "root")), ("model", ("pretrained", "policy_pretrained")),
                          ("arnet", ("policy_pretrained", "backbone_pretrained"))):
        block = base.get(section)
        if isinstance(block, dict):
            block = dict(block)
            for key in keys:
                if isinstance(block.get(key), str):
                    block[key] = _absolute(block[key])
                elif isinstance(block.get(key), list):
                    block[key] = [_absolute(item) if isinstance(item, str) else item for item in block[key]]
            base[section] = block
    return base


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve())
