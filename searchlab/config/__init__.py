"""Typed configuration: one trial's settings (`TrialConfig`) and a sweep file (`Sweep`).

A sweep file is YAML with four sections (five in a cross-method sweep)::

    base:     a TrialConfig (method, data, resources, seed and the method's sections: model, teacher,
              stage1, stage2 for VideoIQ; arnet for AR-Net); in a cross-method sweep only the keys
              every method shares
    methods:  (cross-method sweeps only) each method's own sections, the method searched by space.method
    search:   trials, sampler, seed, objectives, constraints, points_to_evaluate, max_concurrent
    space:    dotted keys into the trial configuration -> search-space entries
    storage:  where the run directory lives (a folder every node of a cluster sees)

`load_sweep` reports every problem of a file at once (`ConfigError`), naming each key, the bad value
and the fix; the CLIs turn that into exit code 2. It checks what a run would meet later too (names
against their registries, files, packages, every choice, range end and starting point as a trial),
so a file that loads does not fail at a trial's configuration. Relative paths are resolved against
the working directory at load time, because Ray workers run in other directories.

Every name is imported from this package; the modules behind it, one concept each:

    _errors        ConfigError; pydantic's errors as one problem line each
    _limits        upper limits (MAX_*), Seed/Side, non-finite numbers (the strict base model and
                   TemperatureConfig live in searchlab.sections, which a method's section can import)
    _dotted        dotted keys into a configuration tree (set_dotted, get_dotted, plain)
    _trial         TrialConfig and its sections, cross-section checks, parse_trial_config
    _search        the search section: SearchConfig, Constraint, Sampler
    _methods       cross-method sweeps: `methods:` (each method's own sections), per-method bases
                   and their load-time checks
    _space         SpaceEntry, key order by conditions, values an entry can take
    _points        starting points (search.points_to_evaluate) against the space and as trials
    _space_checks  the space's load-time checks: conditions, range ends, combinations
    _environment   packages, files and storage a sweep needs; the command line's run options
    _sweep         Sweep, load_sweep / parse_sweep, load_trial_config
"""

from searchlab.config._dotted import get_dotted, plain, set_dotted
from searchlab.config._environment import SAMPLER_NEEDS, apply_run_options, sampler_dependency_problem
from searchlab.config._errors import ConfigError
from searchlab.config._limits import (
    MAX_BATCH,
    MAX_CONCURRENT,
    MAX_EPOCHS,
    MAX_FRAMES,
    MAX_SEED,
    MAX_SIDE,
    MAX_TRIALS,
    MAX_VIEWS,
    Seed,
    Side,
)
from searchlab.config._methods import METHOD_KEY, section_method
from searchlab.config._points import point_problems
from searchlab.config._search import Constraint, Sampler, SearchConfig
from searchlab.config._space import SpaceEntry, ordered_keys, schema_key_problem, value_problem
from searchlab.config._space_checks import MAX_COMBINATIONS
from searchlab.config._sweep import Sweep, _resolve_paths as _resolve_paths, load_sweep, load_trial_config, parse_sweep
from searchlab.sections import TemperatureConfig, TemperatureKind
from searchlab.config._trial import (
    METHOD_SECTIONS,
    RESERVED_RUN_NAMES,
    AlphaConfig,
    DataConfig,
    DataSource,
    InferenceConfig,
    ModelConfig,
    OptimConfig,
    ResourcesConfig,
    Stage1Config,
    Stage2Config,
    SyntheticData,
    TeacherConfig,
    TrialConfig,
    cross_check_trial,
    parse_trial_config,
)

__all__ = [
    "MAX_BATCH",
    "MAX_COMBINATIONS",
    "MAX_CONCURRENT",
    "MAX_EPOCHS",
    "MAX_FRAMES",
    "MAX_SEED",
    "MAX_SIDE",
    "MAX_TRIALS",
    "MAX_VIEWS",
    "METHOD_KEY",
    "METHOD_SECTIONS",
    "RESERVED_RUN_NAMES",
    "SAMPLER_NEEDS",
    "AlphaConfig",
    "ConfigError",
    "Constraint",
    "DataConfig",
    "DataSource",
    "InferenceConfig",
    "ModelConfig",
    "OptimConfig",
    "ResourcesConfig",
    "Sampler",
    "SearchConfig",
    "Seed",
    "Side",
    "SpaceEntry",
    "Stage1Config",
    "Stage2Config",
    "Sweep",
    "SyntheticData",
    "TeacherConfig",
    "TemperatureConfig",
    "TemperatureKind",
    "TrialConfig",
    "apply_run_options",
    "cross_check_trial",
    "get_dotted",
    "load_sweep",
    "load_trial_config",
    "ordered_keys",
    "parse_sweep",
    "parse_trial_config",
    "plain",
    "point_problems",
    "sampler_dependency_problem",
    "schema_key_problem",
    "section_method",
    "set_dotted",
    "value_problem",
]
