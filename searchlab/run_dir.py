"""What makes a folder searchlab's to write or delete, and paths that survive a move to another machine.

Markers. A sweep writes RUN_DIR/.searchlab-run when it starts and `pick` writes .searchlab-bundle
into each bundle (small JSON files). Only a folder with the marker is ever deleted or replaced:
`--overwrite` or `--out` pointed at someone's data is refused, never obeyed.

The run lock. A sweep holds an exclusive flock on RUN_DIR/.searchlab-run.lock for its whole life, so
a second sweep on the same run folder (a fresh one, --resume or --overwrite) is refused at once. The
OS drops the lock when the process dies, so a crashed sweep can be resumed without a manual unlock.

Portable paths. The path fields of a trial configuration are absolute while a sweep runs (Ray workers
run in other folders). Files written for later (the sweep snapshot, each artifact's config.yaml) store
them relative to a folder instead, so a run folder or bundle names no absolute path of the machine
that made it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from searchlab.atomic_dir import write_text_atomic

if TYPE_CHECKING:  # searchlab.config imports the methods, whose stages write run folders
    from searchlab.config import Sweep

RUN_MARKER = ".searchlab-run"
RUN_LOCK = ".searchlab-run.lock"
BUNDLE_MARKER = ".searchlab-bundle"
# Names inside a run folder and beside it, shared by the CLI (which must not import Ray) and the driver.
TUNE_DIR_NAME = "tune"
SWEEP_SNAPSHOT = "sweep.json"
# The stage cache beside the run folders (searchlab.pipeline's, which imports Ray): no run may be
# named so (config.RESERVED_RUN_NAMES; a test keeps the three equal).
CACHE_DIR_NAME = "cache"
# (section, key) of every path field of a TrialConfig; config._resolve_paths makes them absolute at load.
# (section, key) of every path in a trial configuration; a key may hold a list of paths (or nulls).
CONFIG_PATH_FIELDS = (("data", "manifest"), ("data", "root"), ("model", "pretrained"), ("model", "policy_pretrained"),
                      ("arnet", "policy_pretrained"), ("arnet", "backbone_pretrained"))
CONFIG_PATHS_NOTE = "# Paths are relative to the data root (data.root, else the manifest's folder).\n"


class RunDirError(RuntimeError):
    """A folder searchlab was asked to use or delete is not its own, or is in use; the message says the fix."""


# ---------------------------------------------------------------------------------------------
# Markers


def write_marker(folder: Path, name: str, **fields: Any) -> None:
    """Mark ``folder`` as searchlab's (``name``: RUN_MARKER or BUNDLE_MARKER), with when and what made it."""
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_text_atomic(folder / name, json.dumps({"created": created, **fields}, indent=2) + "\n")


def has_marker(folder: Path, name: str) -> bool:
    """Whether ``folder`` is a real folder (not a link) holding a readable marker ``name``."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    try:
        return isinstance(json.loads((folder / name).read_text()), dict)
    except (OSError, ValueError):
        return False


def mark_run_dir(run_dir: Path, *, sweep_name: str) -> None:
    """Write the run marker unless there is one (a resumed run keeps its creation time)."""
    if not has_marker(run_dir, RUN_MARKER):
        write_marker(run_dir, RUN_MARKER, sweep=sweep_name)


def _refuse_unless_usable(run_dir: Path) -> None:
    """A run folder may be absent, empty, or a searchlab run; anything else belongs to someone else."""
    if run_dir.is_symlink() and not run_dir.exists():
        raise RunDirError(f"{run_dir} is a broken symbolic link; remove it or choose another base.name or storage")
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir} is a file, not a run folder; move it away or choose another base.name or storage")
    if run_dir.is_dir() and not has_marker(run_dir, RUN_MARKER) and any(
            entry.name != RUN_LOCK for entry in run_dir.iterdir()):
        raise RunDirError(
            f"{run_dir} holds files but is not a searchlab run folder (no {RUN_MARKER} marker), so searchlab will "
            "neither write into it nor delete it; choose another base.name or storage, or move the folder away")


# ---------------------------------------------------------------------------------------------
# The run lock


@contextlib.contextmanager
def hold_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block, creating the folder if it is absent.

    Raises RunDirError, before writing anything, when the folder is not a run folder (see
    `_refuse_unless_usable`) or another process holds its lock.
    """
    _refuse_unless_usable(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / RUN_LOCK, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunDirError(f"{run_dir} is in use by a running sweep ({holder}); wait for it to finish or stop "
                              "it, then run again (--resume continues it)") from None
        try:
            handle.truncate(0)
            stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
            handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def clear_run_dir(run_dir: Path, *, keep: Iterable[Path] = ()) -> None:
    """Delete a run folder's contents for --overwrite; the caller holds its lock (`hold_run_dir`).

    Refuses (RunDirError, nothing deleted) a folder without the run marker, a symbolic link (its
    contents live outside the storage folder), and a folder that contains any of ``keep`` (the
    user's data or sweep file). The lock file stays, so the lock is held without a gap. A folder
    holding nothing but the lock (just created) has nothing to delete.
    """
    if not run_dir.is_symlink() and all(entry.name == RUN_LOCK for entry in run_dir.iterdir()):
        return
    if run_dir.is_symlink() or not has_marker(run_dir, RUN_MARKER):
        raise RunDirError(f"{run_dir} is not a searchlab run folder (no {RUN_MARKER} marker, or a symbolic link), so "
                          "--overwrite will not delete it; delete it yourself or choose another base.name or storage")
    inside = [str(path) for path in keep if Path(path).resolve().is_relative_to(run_dir.resolve())]
    if inside:
        raise RunDirError(f"--overwrite would delete {', '.join(inside)}, inside the run folder {run_dir}; "
                          "move it out of the run folder first")
    for entry in run_dir.iterdir():
        if entry.name == RUN_LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


# ---------------------------------------------------------------------------------------------
# Portable paths


def resolve_in(base: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """``path`` read against ``base`` (an absolute ``path`` stays as it is), '..' resolved by name.

    By name, not by the file system: a run folder that is a symbolic link must not make '..' leave
    the storage folder it was written from.
    """
    return Path(os.path.normpath(Path(base) / path))


def relative_path(base: str | os.PathLike[str], path: str) -> str:
    """An absolute ``path`` relative to ``base`` (with '..' where needed); a relative one is kept as it is."""
    return os.path.relpath(path, base) if os.path.isabs(path) else path


def _map_path_fields(tree: Mapping[str, Any], convert: Any) -> dict[str, Any]:
    out = dict(tree)
    for section, key in CONFIG_PATH_FIELDS:
        block = out.get(section)
        if not isinstance(block, Mapping):
            continue
        value = block.get(key)
        if isinstance(value, str):
            out[section] = {**block, key: convert(value)}
        elif isinstance(value, (list, tuple)):
            out[section] = {**block, key: [convert(item) if isinstance(item, str) else item for item in value]}
    return out


def relative_config_paths(tree: Mapping[str, Any], base: str | os.PathLike[str]) -> dict[str, Any]:
    """A copy of a trial configuration tree with its absolute path fields made relative to ``base``."""
    return _map_path_fields(tree, lambda path: relative_path(base, path))


def absolute_config_paths(tree: Mapping[str, Any], base: str | os.PathLike[str]) -> dict[str, Any]:
    """Inverse of `relative_config_paths`: relative path fields read against ``base``."""
    return _map_path_fields(tree, lambda path: str(resolve_in(base, path)))


def data_root(tree: Mapping[str, Any]) -> Path | None:
    """The folder a configuration's video paths are relative to: data.root, else the manifest's folder.

    None when that is not an absolute path (the tree is already portable).
    """
    data = tree.get("data") or {}
    root = data.get("root") or (os.path.dirname(data["manifest"]) if isinstance(data.get("manifest"), str) else None)
    return Path(root) if root and os.path.isabs(root) else None


def portable_config_yaml(tree: Mapping[str, Any]) -> str:
    """config.yaml of an artifact or bundle: the configuration with paths relative to its data root.

    The data root, not the file's own folder: an artifact is written inside a checkpoint and then
    copied into the cache, a trial folder or a bundle, so a path relative to where it was written
    would be wrong where it is read.
    """
    root = data_root(tree)
    portable = relative_config_paths(tree, root) if root is not None else dict(tree)
    return CONFIG_PATHS_NOTE + yaml.safe_dump(portable, sort_keys=False)


def write_sweep_snapshot(run_dir: Path, sweep: Sweep) -> None:
    """RUN_DIR/sweep.json: the sweep as run, its paths relative to the run folder."""
    tree = sweep.model_dump(mode="json")
    tree["base"] = relative_config_paths(tree["base"], run_dir)
    tree["methods"] = {name: relative_config_paths(sections, run_dir) for name, sections in tree["methods"].items()}
    tree["storage"] = relative_path(run_dir, str(Path(sweep.storage).resolve()))
    if sweep.source:
        tree["source"] = relative_path(run_dir, str(Path(sweep.source).resolve()))
    write_text_atomic(run_dir / SWEEP_SNAPSHOT, json.dumps(tree, indent=2) + "\n")


def read_sweep_snapshot(run_dir: Path) -> Sweep:
    """The sweep a run folder was made by, its paths made absolute again against where the folder is now."""
    tree = json.loads((run_dir / SWEEP_SNAPSHOT).read_text())
    tree["base"] = absolute_config_paths(tree["base"], run_dir)
    tree["methods"] = {name: absolute_config_paths(sections, run_dir)  # cross-method sweeps' own sections
                       for name, sections in (tree.get("methods") or {}).items()}
    for key in ("storage", "source"):
        if tree.get(key):
            tree[key] = str(resolve_in(run_dir, tree[key]))
    from searchlab.config import Sweep

    return Sweep.model_validate(tree)
