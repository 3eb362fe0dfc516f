"""A trial's curve: its trained network measured again at other operating points, without retraining.

Every method has one inference-time knob, ``inference.cost_bias`` (λ): each decision's cost relative
to the costliest, times λ, is subtracted from the policy's logits (VideoIQ, AR-Net) or from the
gates' pre-activations (VA-RED²) before deciding. λ = 0 is the network as trained, the trial's own
point; every other λ of ``search.curve`` gives one more point of the front from one more evaluation.

Each point is measured as a bundle exported at that point measures itself (the network its
``Method.bundle.load`` builds, ``Method.bundle.measure_curve``: ``measure`` at each point, on the
decoded val videos, each video decoded once for all points), so ``python -m searchlab.evaluate`` on
that bundle reproduces the point's figures (the contract suite checks it). Plain PyTorch: the launch
layer decides where this runs.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from searchlab.config import TrialConfig
from searchlab.methods import Method
from searchlab.methods._contract import Artifacts
from searchlab.train.evaluate import eval_dataset, uses_map
from searchlab.train.loader import load_manifest

__all__ = ["COST_BIAS", "artifact_bundle", "curve_points"]

COST_BIAS = "inference.cost_bias"  # the knob's dotted key


@contextlib.contextmanager
def artifact_bundle(method: Method, artifacts: Artifacts) -> Iterator[Path]:
    """A temporary folder with the weight files a bundle of ``method`` loads, linked from the trial's
    stage artifacts (``Method.bundle.files``), so the bundle's own loader builds the network."""
    with tempfile.TemporaryDirectory(prefix="searchlab-curve-") as folder:
        for name, (stage, file) in method.bundle.files.items():
            source = artifacts[stage]
            if isinstance(source, list):
                raise ValueError(f"bundle file {name} comes from the fanned-out stage {stage}; a bundle file must "
                                 "come from a stage trained once")
            (Path(folder) / name).symlink_to(Path(source).resolve() / file)
        yield Path(folder)


def curve_points(method: Method, config: TrialConfig, *, artifacts: Artifacts, cost_biases: Sequence[float],
                 device: torch.device, loader_workers: int) -> list[dict[str, Any]]:
    """The metrics (the trial's metric contract, plus ``cost_bias``) of the trained network at each
    λ of ``cost_biases``, on the val split the trial's own figures were measured on."""
    if not cost_biases:
        return []
    manifest, root = load_manifest(config.data)
    dataset = eval_dataset(config.data, manifest=manifest, root=root, split="val", seed=config.seed)
    multi_label = uses_map(config.data.metric, manifest_multi_label=manifest.multi_label)
    with artifact_bundle(method, artifacts) as folder:
        deployed = method.bundle.load(folder, config=config, class_names=tuple(manifest.class_names), card={},
                                      device=str(device))
        each = method.bundle.measure_curve(deployed, dataset, cost_biases=list(cost_biases), device=device,
                                           loader_workers=loader_workers, multi_label=multi_label)
    return [{"cost_bias": float(cost_bias), **metrics} for cost_bias, metrics in zip(cost_biases, each)]
