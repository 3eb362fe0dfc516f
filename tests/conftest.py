"""Shared fixtures: tiny real synthetic data sets, generated once per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from searchlab.data.manifest import Manifest
from searchlab.data.synthetic import generate_synthetic


@pytest.fixture(scope="session")
def synthetic_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, Path]:
    """4 classes (2 coarse, one fine pair), 2 train + 1 val videos each, 16 frames, 32x32 px."""
    root = tmp_path_factory.mktemp("synthetic")
    manifest = generate_synthetic(
        root, num_classes=4, train_per_class=2, val_per_class=1, num_frames=16, fps=8.0, size=32,
        seed=0, workers=1, progress=False,
    )
    return manifest, root


@pytest.fixture(scope="session")
def multilabel_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, Path]:
    """The untrimmed variant: two classes per video in separate windows."""
    root = tmp_path_factory.mktemp("synthetic_multilabel")
    manifest = generate_synthetic(
        root, num_classes=4, train_per_class=1, val_per_class=1, num_frames=16, fps=8.0, size=32,
        seed=0, multi_label=True, workers=1, progress=False,
    )
    return manifest, root


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session (2 CPUs, as on the team's machines); stages and sweeps join it."""
    import ray

    from searchlab.tune_driver import LOCAL_DRIVER_SLOTS, TRIAL_DRIVER_RESOURCE

    started = not ray.is_initialized()
    if started:  # trial processes take the driver resource, as in a sweep's own local Ray
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 resources={TRIAL_DRIVER_RESOURCE: LOCAL_DRIVER_SLOTS},
                 runtime_env={"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}})
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny networks gain nothing from a second thread, and on shared cores every op waits for it to
    be scheduled (tiny convolutions ran up to 100x slower); restored for the other test modules.
    A module opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
