"""Limits on sizes and counts, the numeric field types built on them, and the search for non-finite
numbers (.nan, .inf) anywhere in a YAML tree. (The strict base model every section derives from is
searchlab.sections.Strict.)"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import Field



# Upper limits on sizes and counts (docs/configuration.md, "Limits"). None is a limit of the method;
# each is far beyond any sensible value (the papers: 8-16 frames at 224 px, tens of epochs, batches
# of 8-64, tens of trials), so a value past one is a typo -- an extra zero, a wrong unit -- caught at
# load instead of after hours of compute or an out-of-memory crash.
MAX_TRIALS = 10_000
MAX_CONCURRENT = 1_024  # trials at a time; also Ray Train workers per stage and loader processes
MAX_FRAMES = 512  # frames sampled per clip
MAX_FRAME_STRIDE = 64  # video frames from one sampled frame of a dense clip to the next
MAX_DENSE_WINDOW = 4_096  # video frames a dense clip spans: over 2 min at 30 fps
MAX_SIDE = 2_048  # pixels: crop, scales, evaluation short side, policy input, synthetic frames
MAX_EPOCHS = 10_000
MAX_BATCH = 4_096  # clips per worker and step
MAX_VIEWS = 64  # evaluation clips per video; cached augmentation views per training clip
MAX_COST_BIAS = 100.0  # the operating-point knob, in logit (or gate pre-activation) units
MAX_CURVE_POINTS = 32  # operating points per trial's curve
MAX_SEED = 2**32 - 1  # NumPy's RandomState (Optuna's samplers) takes seeds in [0, 2**32)

Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Side = Annotated[int, Field(ge=8, le=MAX_SIDE)]


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
