"""Stage-2 inputs computed once per stage-1 artifact: what makes a policy trial cheap.

In stage 2 the backbone and the teacher are frozen, so their outputs on a clip depend only on the
clip. ``build_backbone_outputs`` decodes every training clip in ``V = stage2.cached_views`` fixed
augmentation views (view v draws TSN offsets, crop and flip exactly as epoch v of the live path)
and the eval split in its centre view, and stores, per split, NumPy arrays that are read
memory-mapped (no decoding, no per-item files):

    <split>_frames.npy    uint8   (V, N, T, 3, s, s)   frames at policy_input_size (what g sees)
    <split>_logits.npy    float16 (V, N, T, |B|, C)    backbone logits per frame and bit-width
    <split>_teacher.npy   float16 (V, N, C)            teacher video logits (the KD target)
    <split>_labels.npy    int64   (V, N)               label of the clip actually decoded
    <split>_index.npy     int64   (V, N)               its row in the split
    <split>_targets.npy   uint8   (V, N, C)            multi-hot targets
    meta.json             what the cache was built from (checked by ``CachedBackboneOutputs``)

Epoch e reads view e mod V. The folder is built under a temp name and renamed into place, so a
reader never sees half a cache; keying and locking belong to the caller (the sweep).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from searchlab.atomic_dir import staged_directory
from searchlab.config import TrialConfig
from searchlab.data.video import IMAGENET_MEAN, IMAGENET_STD
from searchlab.models import create_backbone
from searchlab.train.loader import clip_dataset, load_manifest
from searchlab.train.stage1 import BACKBONE_FILE, load_teacher
from searchlab.train.teacher import policy_frames, video_logits

__all__ = ["FORMAT", "CacheMismatch", "CachedBackboneOutputs", "build_backbone_outputs", "cache_meta", "load_backbone"]

FORMAT = 2
_FILES = ("frames", "logits", "teacher", "labels", "index", "targets")


class CacheMismatch(ValueError):
    """The cache was built for other settings; the message says which and how to rebuild."""


def _fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def cache_meta(config: TrialConfig, *, stage1_dir: str | Path) -> dict[str, Any]:
    """What a cache depends on: the stage-1 weights (content hash), data and view settings."""
    data = config.data
    return {
        "format": FORMAT,
        "backbone_sha": _fingerprint(Path(stage1_dir) / BACKBONE_FILE),
        "backbone": config.model.backbone,
        "bit_widths": list(config.model.bit_widths),
        # the manifest's content, not its path: the cache stays valid when the data folder moves, and
        # names no path of the machine that built it
        "manifest_sha": _fingerprint(Path(data.manifest)),
        "frames": data.frames,
        "sampling": data.sampling,
        "frame_stride": data.frame_stride,
        "crop_size": data.crop_size,
        "train_scale": list(data.train_scale),
        "eval_short_side": data.eval_short_side,
        "eval_clips": data.eval_clips,
        "eval_crops": data.eval_crops,
        "policy_input_size": config.model.policy_input_size,
        "views": config.stage2.cached_views,
        "seed": config.seed,
    }


def load_backbone(config: TrialConfig, *, stage1_dir: str | Path, num_classes: int) -> torch.nn.Module:
    """The stage-1 artifact's any-precision network, frozen and in eval mode."""
    path = Path(stage1_dir) / BACKBONE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run stage 1 first (python -m searchlab.train stage1)")
    backbone = create_backbone(config.model.backbone, num_classes=num_classes,
                               bit_widths=config.model.bit_widths, alpha_init=config.stage1.alpha.init)
    backbone.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return backbone.eval().requires_grad_(False)


def to_uint8(frames: Tensor) -> Tensor:
    """ImageNet-normalised float frames (..., 3, H, W) back to uint8 pixels."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (frames.cpu() * std + mean).mul(255).round().clamp(0, 255).to(torch.uint8)


def from_uint8(frames: Tensor) -> Tensor:
    """Inverse of ``to_uint8`` (up to its rounding): float frames normalised as the loader does."""
    mean = torch.tensor(IMAGENET_MEAN, device=frames.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=frames.device).view(3, 1, 1)
    return (frames.float() / 255 - mean) / std


@torch.no_grad()
def _fill_split(
    folder: Path, split: str, *, dataset: Any, views: int, backbone: torch.nn.Module, teacher: torch.nn.Module,
    config: TrialConfig, num_classes: int, device: torch.device, batch_size: int,
) -> None:
    n, t, s = len(dataset), config.data.frames, config.model.policy_input_size
    widths = config.model.bit_widths
    arrays = {
        "frames": np.lib.format.open_memmap(folder / f"{split}_frames.npy", "w+", np.uint8, (views, n, t, 3, s, s)),
        "logits": np.lib.format.open_memmap(folder / f"{split}_logits.npy", "w+", np.float16,
                                            (views, n, t, len(widths), num_classes)),
        "teacher": np.lib.format.open_memmap(folder / f"{split}_teacher.npy", "w+", np.float16, (views, n, num_classes)),
        "labels": np.lib.format.open_memmap(folder / f"{split}_labels.npy", "w+", np.int64, (views, n)),
        "index": np.lib.format.open_memmap(folder / f"{split}_index.npy", "w+", np.int64, (views, n)),
        "targets": np.lib.format.open_memmap(folder / f"{split}_targets.npy", "w+", np.uint8, (views, n, num_classes)),
    }
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=config.data.loader_workers)
    for view in range(views):
        dataset.set_epoch(view)
        position = 0
        for batch in loader:
            frames = batch["frames"].to(device)
            size = len(frames)
            rows = slice(position, position + size)
            flat = frames.flatten(0, 1)
            logits = torch.stack([backbone(flat, bits=b) for b in widths], dim=1).view(size, t, len(widths), -1)
            arrays["frames"][view, rows] = to_uint8(policy_frames(frames, s)).numpy()
            arrays["logits"][view, rows] = logits.cpu().half().numpy()
            arrays["teacher"][view, rows] = video_logits(teacher, frames).cpu().half().numpy()
            arrays["labels"][view, rows] = batch["label"].numpy()
            arrays["index"][view, rows] = batch["index"].numpy()
            arrays["targets"][view, rows] = batch["target"].numpy().astype(np.uint8)
            position += size
    for array in arrays.values():
        array.flush()


def build_backbone_outputs(
    cache_dir: str | os.PathLike[str],
    *,
    config: TrialConfig,
    teacher_dir: str | os.PathLike[str],
    stage1_dir: str | os.PathLike[str],
    device: str = "cpu",
    batch_size: int = 16,
) -> Path:
    """Build the stage-2 cache of a stage-1 artifact into ``cache_dir`` (atomically); return it.

    A folder already there with the same ``cache_meta`` is reused as is.
    """
    target = Path(cache_dir)
    meta = cache_meta(config, stage1_dir=stage1_dir)
    meta_path = target / "meta.json"
    if meta_path.is_file() and json.loads(meta_path.read_text()) == meta:
        return target
    manifest, root = load_manifest(config.data)
    torch_device = torch.device(device)
    backbone = load_backbone(config, stage1_dir=stage1_dir, num_classes=manifest.num_classes).to(torch_device)
    teacher = load_teacher(config, teacher_dir=teacher_dir, num_classes=manifest.num_classes).to(torch_device)
    with staged_directory(target) as staging:
        for split, train, views in (("train", True, config.stage2.cached_views), ("val", False, 1)):
            dataset = clip_dataset(config.data, manifest=manifest, root=root, split=split, train=train, seed=config.seed)
            _fill_split(staging, split, dataset=dataset, views=views, backbone=backbone, teacher=teacher,
                        config=config, num_classes=manifest.num_classes, device=torch_device, batch_size=batch_size)
        (staging / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return target


def _passthrough(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Collate function of a Dataset whose ``__getitems__`` already returns a collated batch."""
    return batch


class CachedBackboneOutputs(Dataset):
    """Stage-2 batches read from a cache: the same dict as the live path, no decoding.

    Items: ``policy_frames`` float (T, 3, s, s) normalised, ``frame_logits`` float (T, |B|, C),
    ``teacher_logits`` (C,), ``label``, ``target`` (C,), ``index``, and ``position`` (the item
    number in the cache, which keys per-clip memos). ``set_epoch(e)`` selects view
    e mod V. ``__getitems__`` reads a whole batch with one indexed read per array (the DataLoader
    uses it; pass ``collate_fn=CachedBackboneOutputs.collate``).
    """

    collate = staticmethod(_passthrough)

    def __init__(self, cache_dir: str | os.PathLike[str], *, split: str, expected: dict[str, Any] | None = None) -> None:
        self.folder = Path(cache_dir)
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.folder} is not a stage-2 cache (no meta.json); build it with "
                                    "searchlab.train.backbone_cache.build_backbone_outputs")
        self.meta = json.loads(meta_path.read_text())
        if expected is not None:
            different = sorted(k for k in expected if self.meta.get(k) != expected[k])
            if different:
                raise CacheMismatch(
                    f"{self.folder} was built for other settings ({', '.join(different)} differ); "
                    "rebuild it with build_backbone_outputs for this stage-1 artifact and config"
                )
        self.split = split
        self.arrays = {name: np.load(self.folder / f"{split}_{name}.npy", mmap_mode="r") for name in _FILES}
        self.views = self.arrays["frames"].shape[0]
        self.view = 0

    def set_epoch(self, epoch: int) -> None:
        self.view = epoch % self.views

    def __len__(self) -> int:
        return self.arrays["frames"].shape[1]

    def __getitem__(self, item: int) -> dict[str, Tensor]:
        batch = self.__getitems__([item])
        return {key: value[0] for key, value in batch.items()}

    def __getitems__(self, items: Sequence[int]) -> dict[str, Tensor]:
        order = np.asarray(items, dtype=np.int64)
        rows = {name: torch.from_numpy(np.ascontiguousarray(array[self.view][order])) for name, array in self.arrays.items()}
        return {
            "policy_frames": from_uint8(rows["frames"]),
            "frame_logits": rows["logits"].float(),
            "teacher_logits": rows["teacher"].float(),
            "label": rows["labels"],
            "index": rows["index"],
            "target": rows["targets"].float(),
            "position": torch.from_numpy(order),
        }
