"""Content-addressed stage artifacts: build once, publish atomically, share between trials.

Trials of a sweep that differ only in stage-2 settings share a stage-1 network. Its directory is
named by a hash of everything stage 1 depends on (`stage_key`), so equal configurations meet at the
same path. `ArtifactCache.get_or_build` serialises builders of one key with an exclusive file lock
(threads and processes alike, on one machine or a shared POSIX file system that honours flock), so
concurrent misses build once and the others wait and then hit. A build writes into a private temp
directory that is renamed into place only when complete: a crash never leaves a half artifact, and
a finished artifact is never written again.

``notify(kind, key, event, seconds)`` (optional) hears each event as it happens: "hit", "wait" (another
caller holds the key's lock: it is building), "build" (a miss this caller builds), "built" and "failed";
a sweep prints them as progress lines (``searchlab.progress``).

A ledger (``root/ledger.json``) counts hits, misses, builds and failures per kind and key, so a
benchmark can compare stage-1 trainings with distinct stage-1 configurations.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from searchlab.atomic_dir import give_default_mode

KEY_LENGTH = 16  # hex digits of sha256: 64 bits, collisions negligible for any sweep
_TMP_PREFIX = ".tmp-"
_EVENTS = ("hits", "misses", "builds", "failures")


def canonical_json(value: Any) -> str:
    """One text per value: sorted keys, no spaces, tuples as lists; rejects what JSON cannot hold.

    Integer mapping keys (per-bit tables) become strings; NaN and non-JSON objects raise, since a
    key that silently stringified an object could change between runs.
    """
    return json.dumps(_canonical(value, "fields"), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _canonical(value: Any, where: str) -> Any:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TypeError(f"{where}: key {key!r} must be a string or an integer")
            if str(key) in out:
                raise ValueError(f"{where}: keys {key!r} and {str(key)!r} collide once written as JSON")
            out[str(key)] = _canonical(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_canonical(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value} cannot be part of a cache key")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{where}: {type(value).__name__} is not JSON; pass plain values (e.g. str(path))")


def stage_key(kind: str, fields: Mapping[str, Any]) -> str:
    """Short hex sha256 of the stage kind and everything the stage depends on."""
    text = canonical_json({"kind": kind, "fields": fields})
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


@contextmanager
def _locked(path: Path, *, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Exclusive flock on `path` (created if needed); released when the block ends or the process dies.
    ``on_wait()`` is called first if another holder makes this caller wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class ArtifactCache:
    """Directories ``root/kind/key``, each built at most once by `get_or_build`."""

    def __init__(self, root: str | Path, *, notify: Callable[[str, str, str, float], None] | None = None) -> None:
        self.root = Path(root)
        self.notify = notify

    def _tell(self, kind: str, key: str, event: str, seconds: float = 0.0) -> None:
        if self.notify is not None:
            self.notify(kind, key, event, seconds)

    def path(self, kind: str, key: str) -> Path:
        for name, value in (("kind", kind), ("key", key)):
            if not value or "/" in value or value.startswith(".") or value != value.strip():
                raise ValueError(f"{name} {value!r} must be a plain, non-empty name (no '/', no leading '.')")
        return self.root / kind / key

    def get_or_build(self, kind: str, key: str, build_fn: Callable[[Path], object]) -> Path:
        """The published directory for (kind, key), running ``build_fn(tmp_dir)`` only if it is absent.

        ``build_fn`` writes the artifact's files into the empty directory it is given; its return
        value is ignored. If it raises, nothing is published and the error propagates.
        """
        final = self.path(kind, key)
        if final.is_dir():
            self._count(kind, key, "hits")
            self._tell(kind, key, "hit")
            return final
        self._count(kind, key, "misses")
        with _locked(final.parent / f"{key}.lock", on_wait=lambda: self._tell(kind, key, "wait")):
            if final.is_dir():  # another caller built it while we waited
                self._count(kind, key, "hits")
                self._tell(kind, key, "hit")
                return final
            self._tell(kind, key, "build")
            self._remove_stale_builds(final)
            tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{key}-", dir=final.parent))
            started = time.perf_counter()
            try:
                build_fn(tmp)
                if not any(tmp.iterdir()):
                    raise RuntimeError(f"build of {kind}/{key} wrote nothing into {tmp}; write the artifact there")
                give_default_mode(tmp)  # mkdtemp made it private; the published artifact is not
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                self._count(kind, key, "failures")
                self._tell(kind, key, "failed", time.perf_counter() - started)
                raise
            self._count(kind, key, "builds", seconds=time.perf_counter() - started)
            self._tell(kind, key, "built", time.perf_counter() - started)
        return final

    def _remove_stale_builds(self, final: Path) -> None:
        """Temp dirs of this key left by builders that died (we hold the key's lock, so none is live)."""
        for stale in final.parent.glob(f"{_TMP_PREFIX}{final.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)

    # -----------------------------------------------------------------------------------------
    # Ledger

    @property
    def ledger_path(self) -> Path:
        return self.root / "ledger.json"

    def ledger(self) -> dict[str, dict[str, dict[str, float]]]:
        """kind -> key -> {hits, misses, builds, failures, build_s}; empty before the first call."""
        if not self.ledger_path.is_file():
            return {}
        return json.loads(self.ledger_path.read_text())

    def summary(self, kind: str) -> dict[str, int]:
        """Totals for one kind, plus `keys` (distinct keys seen) and `built_keys` (keys built at least once)."""
        entries = self.ledger().get(kind, {})
        totals = {event: int(sum(entry.get(event, 0) for entry in entries.values())) for event in _EVENTS}
        totals["keys"] = len(entries)
        totals["built_keys"] = sum(1 for entry in entries.values() if entry.get("builds", 0) > 0)
        return totals

    def _count(self, kind: str, key: str, event: str, *, seconds: float = 0.0) -> None:
        """Read-modify-write of the ledger under its own lock, replaced atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        with _locked(self.root / "ledger.lock"):
            ledger = self.ledger()
            entry = ledger.setdefault(kind, {}).setdefault(key, {e: 0 for e in _EVENTS} | {"build_s": 0.0})
            entry[event] += 1
            entry["build_s"] += seconds
            tmp = self.ledger_path.with_name(f"{self.ledger_path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(ledger, indent=1, sort_keys=True))
            os.replace(tmp, self.ledger_path)
