"""Content-addressed artifacts: keys, hit/miss, one build under concurrency, crash then rebuild."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from searchlab.cache import ArtifactCache, canonical_json, stage_key


def _slow_build(count_file: Path, payload: str) -> Callable[[Path], None]:
    def build(tmp: Path) -> None:
        with open(count_file, "a") as handle:  # one line per build that actually ran
            handle.write("built\n")
        time.sleep(0.3)
        (tmp / "weights.txt").write_text(payload)

    return build


def _worker(root: str, count_file: str, barrier: Any, out: Any) -> None:
    barrier.wait()
    path = ArtifactCache(root).get_or_build("stage1", "abc123", _slow_build(Path(count_file), "shared"))
    out.put(str(path))


def test_stage_key_is_canonical_and_sensitive() -> None:
    fields = {"backbone": "resnet10", "bits": (32, 4, 2), "alpha": {"lr": {32: 0.1, 4: 0.1}}, "seed": 0}
    reordered = {"seed": 0, "alpha": {"lr": {4: 0.1, 32: 0.1}}, "bits": [32, 4, 2], "backbone": "resnet10"}
    key = stage_key("stage1", fields)
    assert key == stage_key("stage1", reordered)
    assert len(key) == 16 and int(key, 16) >= 0
    assert key != stage_key("stage1", {**fields, "seed": 1})
    assert key != stage_key("stage2", fields)
    assert canonical_json({"b": 1, "a": (1.5, None)}) == '{"a":[1.5,null],"b":1}'
    with pytest.raises(TypeError, match="Path is not JSON"):
        stage_key("stage1", {"manifest": Path("x")})
    with pytest.raises(ValueError, match="nan cannot be part"):
        stage_key("stage1", {"lr": float("nan")})
    with pytest.raises(ValueError, match="collide"):
        stage_key("stage1", {"lr": {1: 0.1, "1": 0.2}})


def test_miss_builds_then_hit_reuses(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache")
    count = tmp_path / "count.txt"
    first = cache.get_or_build("stage1", "k1", _slow_build(count, "v1"))
    second = cache.get_or_build("stage1", "k1", _slow_build(count, "v2"))
    assert first == second == tmp_path / "cache" / "stage1" / "k1"
    assert (first / "weights.txt").read_text() == "v1"  # never rewritten
    assert count.read_text().count("built") == 1
    assert cache.summary("stage1") == {"hits": 1, "misses": 1, "builds": 1, "failures": 0, "keys": 1, "built_keys": 1}
    assert cache.ledger()["stage1"]["k1"]["build_s"] >= 0.3
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".tmp-")]


def test_concurrent_misses_from_processes_build_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    count = tmp_path / "count.txt"
    workers = [
        ctx.Process(target=_worker, args=(str(tmp_path / "cache"), str(count), barrier, out)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    paths = {out.get(timeout=5) for _ in workers}
    assert paths == {str(tmp_path / "cache" / "stage1" / "abc123")}
    assert count.read_text().count("built") == 1
    summary = ArtifactCache(tmp_path / "cache").summary("stage1")
    assert summary["builds"] == 1 and summary["hits"] + summary["builds"] == 4


def test_concurrent_misses_from_threads_build_once(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache")
    count = tmp_path / "count.txt"
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_build("stage1", "t", _slow_build(count, "x"))))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 3
    assert count.read_text().count("built") == 1


def test_crashed_build_publishes_nothing_and_next_caller_rebuilds(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache")

    def crash(tmp: Path) -> None:
        (tmp / "half.bin").write_bytes(b"\0" * 10)
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        cache.get_or_build("stage1", "k", crash)
    folder = tmp_path / "cache" / "stage1"
    assert not (folder / "k").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp-")]
    # A builder killed outright leaves its temp dir behind: the next build clears it.
    (folder / ".tmp-k-dead").mkdir()
    path = cache.get_or_build("stage1", "k", _slow_build(tmp_path / "count.txt", "ok"))
    assert (path / "weights.txt").read_text() == "ok"
    assert not (folder / ".tmp-k-dead").exists()
    assert cache.summary("stage1")["failures"] == 1 and cache.summary("stage1")["builds"] == 1


def test_empty_build_and_bad_names_are_errors(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    with pytest.raises(RuntimeError, match="wrote nothing"):
        cache.get_or_build("stage1", "k", lambda tmp: None)
    assert not (tmp_path / "stage1" / "k").exists()
    with pytest.raises(ValueError, match="plain, non-empty name"):
        cache.get_or_build("stage1", "../escape", lambda tmp: None)


def test_a_published_artifact_has_the_default_mode_not_mkdtemps(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        path = ArtifactCache(tmp_path / "cache").get_or_build("stage1", "k", lambda tmp: (tmp / "w").write_text("w"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o750


def test_notify_hears_each_cache_event_as_it_happens(tmp_path: Path) -> None:
    """build then built for the builder, wait then hit for a caller that met the builder's lock, hit after."""
    heard: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def notify(kind: str, key: str, event: str, seconds: float) -> None:
        with lock:
            heard.append((threading.current_thread().name, event, f"{kind}/{key}"))
        assert seconds >= 0

    cache = ArtifactCache(tmp_path / "cache", notify=notify)
    started = threading.Event()

    def build(tmp: Path) -> None:
        started.set()
        time.sleep(0.5)  # the second caller arrives while this one holds the key's lock
        (tmp / "w").write_text("w")

    builder = threading.Thread(target=cache.get_or_build, args=("stage1", "k", build), name="builder")
    builder.start()
    started.wait(5)
    waiter = threading.Thread(target=cache.get_or_build, args=("stage1", "k", build), name="waiter")
    waiter.start()
    builder.join()
    waiter.join()
    cache.get_or_build("stage1", "k", build)
    assert [event for name, event, _ in heard if name == "builder"] == ["build", "built"]
    assert [event for name, event, _ in heard if name == "waiter"] == ["wait", "hit"]
    assert heard[-1][1:] == ("hit", "stage1/k")
    with pytest.raises(RuntimeError, match="wrote nothing"):
        cache.get_or_build("stage1", "empty", lambda tmp: None)
    assert heard[-2:] == [("MainThread", "build", "stage1/empty"), ("MainThread", "failed", "stage1/empty")]
