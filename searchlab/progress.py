"""searchlab's own progress lines: one line per stage event of a trial, in one format, on stdout.

    [trial 3 a1b2c3d4] started: stage2.w1=0.42, stage2.decision_space=[32, 4, 2, 0]
    [trial 3 a1b2c3d4] teacher: cache hit (key 9f3e0c1d2b4a5e6f)
    [trial 3 a1b2c3d4] stage1: cache miss, building (key 0a1b2c3d4e5f6a7b)
    [trial 3 a1b2c3d4] stage2 epoch 4/20 loss 0.731 acc 0.812 gflops 0.121 eta 35 s
    [trial 3 a1b2c3d4] completed in 143 s: accuracy 0.8125 gflops 0.1207

``N`` is the trial's number and ``ID`` its Tune trial id: the same pair names the trial's row in
trials.parquet, its Tune folder ``tune/trial-N-ID``, its Ray Train runs ``ray-train/trial-N-ID/<stage>``
(TensorBoard lists them so) and its Optuna trial's user attributes.

How the lines reach the sweep's output: each is written, flushed, to the stdout of the process where
the event happens (the trial's process for cache events and locally launched stages, a Ray Train
worker for distributed ones). Ray forwards every worker's stdout to its driver (``log_to_driver``),
that is the sweep's stdout and so a Ray Job's logs, behind Ray's ``(name pid=..., ip=...)`` prefix,
which names the process and node that printed the line. That is the honest route: no channel of our
own (a file to tail, an actor to call) that could lose or reorder lines, and it works on every node.
The sweep exempts these lines from Ray's log deduplication (``RAY_DEDUP_LOGS_ALLOW_REGEX``, set to
``LINE_PATTERN`` before Ray is imported), which would otherwise merge equal-looking lines of concurrent
trials into one "[repeated 2x across cluster]". Trial starts and ends are printed by the driver itself.

This module imports no Ray: the stage loops (``train.worker.checkpoint_epoch``) and the cache use it.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LINE_PATTERN", "OUTPUT_ENV", "OUTPUTS", "EpochLines", "TrialTag", "emit", "output_level", "parse_trial_name"]

#: How much a sweep prints (``searchlab.sweep --quiet | --verbose``), passed to its Ray processes in this
#: environment variable: "quiet" (trial and cache events, no epoch lines), "normal" (also one line per
#: epoch; Ray's routine output silenced), "verbose" (also Ray's own status tables and INFO logs).
OUTPUT_ENV = "SEARCHLAB_OUTPUT"
OUTPUTS = ("quiet", "normal", "verbose")
#: What every progress line starts with (a regular expression; Ray's dedup allow-list uses it).
LINE_PATTERN = r"\[trial [0-9]+ [0-9A-Za-z_]+\]"

# Figures an epoch line shows when the epoch reported them, as (metric key, shown as, digits); the loss is
# "loss/total", or the stage's only or first "loss/..." term (a teacher's cross-entropy).
_FIGURES = (("accuracy", "acc", 3), ("gflops", "gflops", 3))


def output_level() -> str:
    """This process's output level (``OUTPUT_ENV``; "normal" when unset or unknown)."""
    level = os.environ.get(OUTPUT_ENV, "normal")
    return level if level in OUTPUTS else "normal"


def emit(line: str) -> None:
    """Write one progress line to this process's stdout, flushed (Ray forwards it to the driver).

    ``sys.stdout.write``, not ``print``: Ray Train's workers replace ``print`` with a logger call.
    """
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class TrialTag:
    """Who a line is about: the trial's number (its row in trials.parquet) and its Tune trial id.

    ``epochs``: whether per-epoch lines are printed (``--quiet``: only the trial's and the cache's events).
    """

    number: int
    trial_id: str
    epochs: bool = True

    def __str__(self) -> str:
        return f"[trial {self.number} {self.trial_id}]"

    @property
    def name(self) -> str:
        """The trial's folder name, as Tune's: ``trial-N-ID``."""
        return f"trial-{self.number}-{self.trial_id}"

    def say(self, text: str) -> None:
        emit(f"{self} {text}")

    def cache_event(self, kind: str, key: str, event: str, seconds: float = 0.0) -> None:
        """A line for an ``ArtifactCache`` event (its ``notify`` hook)."""
        text = {"hit": "cache hit", "wait": "cache busy, waiting for the trial that builds it",
                "build": "cache miss, building", "built": f"built in {seconds:.0f} s, cached",
                "failed": f"build failed after {seconds:.0f} s"}.get(event, event)
        self.say(f"{kind}: {text} (key {key})")


def parse_trial_name(name: str, trial_id: str, *, epochs: bool = True) -> TrialTag:
    """The tag of a trial whose Tune name is ``trial-N-ID`` (``tune_driver.trial_name``); number 0 otherwise."""
    parts = name.split("-")
    number = int(parts[1]) if len(parts) >= 3 and parts[0] == "trial" and parts[1].isdigit() else 0
    return TrialTag(number=number, trial_id=trial_id, epochs=epochs)


class EpochLines:
    """A ``Worker.progress`` hook printing one line per epoch of a stage: ``TAG STAGE epoch k/N ... eta S s``.

    The ETA is the mean wall time per epoch seen so far (from the hook's creation, so a stage's setup
    counts in the first epoch) times the epochs left; ``N`` comes from ``checkpoint_epoch(epochs=...)``
    (the ``epochs`` entry it adds to the metrics the hook hears). ``then`` is another hook called
    after the line (a scheduler's relay).
    """

    def __init__(self, tag: str, stage: str, *, then: Any = None) -> None:
        self.tag = tag
        self.stage = stage
        self.then = then
        self._started = time.monotonic()
        self._first_epoch: int | None = None

    def __call__(self, epoch: int, metrics: dict[str, Any], final: bool) -> None:
        total = metrics.get("epochs")
        if self._first_epoch is None:
            self._first_epoch = epoch - 1  # a resumed stage starts after its checkpoint's epoch
        parts = [f"{self.tag} {self.stage} epoch {epoch}" + (f"/{total}" if total else "")]
        loss = metrics.get("loss/total", next((v for k, v in metrics.items() if k.startswith("loss/")), None))
        if isinstance(loss, (int, float)) and math.isfinite(float(loss)):
            parts.append(f"loss {float(loss):.3f}")
        parts += [f"{shown} {float(metrics[key]):.{digits}f}" for key, shown, digits in _FIGURES
                  if isinstance(metrics.get(key), (int, float)) and math.isfinite(float(metrics[key]))]
        if total and epoch < total:
            per_epoch = (time.monotonic() - self._started) / max(epoch - self._first_epoch, 1)
            parts.append(f"eta {per_epoch * (total - epoch):.0f} s")
        elif total:
            parts.append(f"done in {time.monotonic() - self._started:.0f} s")
        emit(" ".join(parts))
        if self.then is not None:
            self.then(epoch, {k: v for k, v in metrics.items() if k != "epochs"}, final)


def figures(values: Mapping[str, Any], names: tuple[str, ...]) -> str:
    """``name value`` pairs of the finite numbers among ``names`` (a trial's end line)."""
    shown = [f"{name} {float(values[name]):.4g}" for name in names
             if isinstance(values.get(name), (int, float)) and math.isfinite(float(values[name]))]
    return " ".join(shown)
