"""What a sweep meets outside its file (packages a sampler needs, state-dict files, a storage folder
every node sees, a run directory apart from the data), and the command line's run options
(--max-trials, --storage), checked as the file's own values are."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from searchlab.config._errors import ConfigError, _format_pydantic
from searchlab.config._search import SearchConfig
from searchlab.config._trial import TrialConfig

if TYPE_CHECKING:
    from searchlab.config._sweep import Sweep


# Packages a sampler needs beyond Optuna's required ones: sampler -> (package, what for).
SAMPLER_NEEDS: dict[str, tuple[str, str]] = {"gp": ("scipy", "Optuna's GPSampler fits its kernel with it")}


def sampler_dependency_problem(sampler: str) -> str | None:
    """Why `sampler` cannot run in this environment (a package it needs is missing), or None."""
    if sampler not in SAMPLER_NEEDS:
        return None
    package, purpose = SAMPLER_NEEDS[sampler]
    if importlib.util.find_spec(package) is not None:
        return None
    return (
        f"search.sampler {sampler} needs {package} ({purpose}), which this environment lacks; use sampler tpe "
        f"or nsga2, or install searchlab's dependencies (pip install -e . -c constraints.txt pins {package})"
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
    data = _section(base, "data")
    # VideoIQ's model section: in base, or under methods.videoiq in a cross-method sweep
    for where, sections in [("base", base), *((f"methods.{name}", _section(_section(tree, "methods"), name))
                                              for name in _section(tree, "methods"))]:
        model = _section(sections, "model")
        for key in ("pretrained", "policy_pretrained"):
            value = model.get(key)
            if isinstance(value, str) and not Path(value).is_file():
                problems.append(f"{where}.model.{key}: {value} is not a file; put the state dict there or set {key}: "
                                "null (random initialisation)")
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
