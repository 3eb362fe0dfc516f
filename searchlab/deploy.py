"""Load a bundle exported by `searchlab.pick` into a model that runs only what its decisions chose.

A bundle is a folder with `config.yaml` (the trial's resolved configuration, naming its method),
`card.json` / `card.md` (accuracy, GFLOPs, memory, action usage), `classes.json` and the weights its
method declares (`Method.bundle.files`: VideoIQ's `backbone.pt` and `policy.pt`, AR-Net's
`arnet.pt`). `load(DIR)` returns the method's deployed model; it needs torch and torchvision only:
no Ray, no Optuna, no training code.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml
from torch import Tensor, nn

T = TypeVar("T")

#: Files every bundle has, whatever its method.
COMMON_FILES = ("config.yaml", "card.json", "card.md", "classes.json")
EXPORT_HINT = "export the bundle again with `python -m searchlab.pick`"


class BundleError(ValueError):
    """A bundle folder that cannot be loaded; the message names the file and the fix."""


def bundle_files(method: str) -> tuple[str, ...]:
    """Every file of a bundle of ``method``."""
    from searchlab.methods import get_method

    return (*COMMON_FILES, *get_method(method).bundle.files)


def load(directory: str | Path, *, device: str = "cpu") -> Any:
    """The bundle's deployed model (``predict``, ``config``, ``class_names``, ``card``), its weights
    loaded with weights_only=True. A missing or broken file raises ``BundleError`` naming it."""
    from searchlab.config import TrialConfig  # the bundle's method decides which model code loads
    from searchlab.methods import get_method

    folder = Path(directory)
    if not folder.is_dir():
        raise BundleError(f"{folder} is not a folder; export a bundle with `python -m searchlab.pick RUN_DIR --knee --out DIR`")
    config_path = folder / "config.yaml"
    config = _read(config_path, lambda text: TrialConfig.model_validate(yaml.safe_load(text))) if config_path.is_file() else None
    method = get_method(config.method) if config is not None else None
    expected = [*COMMON_FILES, *(method.bundle.files if method is not None else ())]
    missing = [name for name in expected if not (folder / name).is_file()]
    if missing:
        raise BundleError(f"{folder} is not a complete {method.name + ' ' if method else ''}searchlab bundle: missing "
                          f"{missing}; export one with `python -m searchlab.pick RUN_DIR --knee --out DIR`")
    assert config is not None and method is not None
    class_names = tuple(_read(folder / "classes.json", _class_names))
    card = _read(folder / "card.json", json.loads)
    return method.bundle.load(folder, config=config, class_names=class_names, card=card, device=device)


def load_weights(module: nn.Module, path: Path, *, device: str = "cpu") -> None:
    """``module``'s state from the weights file ``path``; a BundleError names a damaged or foreign file."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as error:
        # torch's own message suggests weights_only=False, which would run whatever the file holds
        raise BundleError(f"{path} is not a readable weights file (damaged, or not written by searchlab: "
                          f"{type(error).__name__}); {EXPORT_HINT}") from error
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise BundleError(f"{path} does not load into the network config.yaml describes ({first}); "
                          f"{EXPORT_HINT}") from error


def check_clip(frames: Tensor, *, frames_per_clip: int, size: int) -> None:
    """The input contract of a bundle's ``predict``; a ValueError says what differs."""
    expected = f"a float tensor (N, {frames_per_clip}, 3, {size}, {size}), ImageNet-normalised"
    if not isinstance(frames, Tensor):
        raise ValueError(f"frames must be {expected}; got {type(frames).__name__}")
    if frames.dim() != 5 or tuple(frames.shape[1:]) != (frames_per_clip, 3, size, size):
        raise ValueError(f"frames must be {expected}; got shape {tuple(frames.shape)} "
                         "(the network was trained on this many frames of this size)")
    if not frames.is_floating_point():
        raise ValueError(f"frames must be {expected}; got dtype {frames.dtype} (convert uint8 pixels with "
                         "(x / 255 - mean) / std)")
    if not torch.isfinite(frames).all():
        raise ValueError(f"frames must be {expected}; the input holds NaN or infinite values")


def _class_names(text: str) -> list[str]:
    names = json.loads(text)
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names) or not names:
        raise ValueError("expected a non-empty JSON list of class names")
    return names


def _read(path: Path, parse: Callable[[str], T]) -> T:
    """``parse`` of a bundle file's text; any failure becomes a BundleError naming the file."""
    try:
        return parse(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, yaml.YAMLError, TypeError) as error:
        detail = " ".join(str(error).split())[:300]
        raise BundleError(f"{path} is broken ({type(error).__name__}: {detail}); {EXPORT_HINT}") from error
