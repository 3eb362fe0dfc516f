"""Clip datasets and loaders of the stages: data order as a function of (seed, epoch) only.

A resumed stage must see the same batches as a run that never stopped, however many DataLoader
workers decode the clips. ``VideoClipDataset`` draws its augmentation from
(seed, epoch, item); ``EpochSampler`` adds the shuffle, drawn from a generator seeded by
(seed, epoch) and sharded over the ranks. Each epoch the loop calls ``set_epoch`` on both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from searchlab.config import DataConfig
from searchlab.data.manifest import SPLITS, Manifest, ManifestError, read_manifest
from searchlab.data.video import EvalClipTransform, TrainClipTransform, VideoClipDataset

__all__ = ["EpochSampler", "TrainData", "clip_dataset", "load_manifest", "make_loader", "train_split"]

# Every stage trains on the train split and evaluates on the val split.
_STAGE_SPLITS: tuple[str, ...] = ("train", "val")


def load_manifest(data: DataConfig) -> tuple[Manifest, Path]:
    """The manifest and the data root its paths are relative to (default: the manifest's folder).

    Raises ManifestError, as read_manifest does, also when the manifest has no rows of a split the
    stages need, so a run stops when it loads the data rather than when a stage reaches that split.
    """
    root = Path(data.root) if data.root else Path(data.manifest).parent
    manifest = read_manifest(data.manifest, data_root=root)
    counts = {split: len(manifest.split(split)) for split in SPLITS}
    missing = [split for split in _STAGE_SPLITS if counts[split] == 0]
    if missing:
        present = ", ".join(f"{split} {n}" for split, n in counts.items() if n)
        raise ManifestError(
            [f"no rows of split {' or '.join(map(repr, missing))} (rows per split: {present}); the stages "
             "train on 'train' and evaluate on 'val', so prepare the data set with both a training and "
             "a validation list (the synthetic set: train_per_class and val_per_class > 0)"],
            source=str(data.manifest),
        )
    return manifest, root


def clip_dataset(
    data: DataConfig, *, manifest: Manifest, root: Path, split: str, train: bool, seed: int
) -> VideoClipDataset:
    """Clips of ``split`` sampled as ``data.sampling`` says, with the stage's training transform or
    the evaluation protocol (``data.eval_clips`` clips × ``data.eval_crops`` crops per video)."""
    if train:
        transform: TrainClipTransform | EvalClipTransform = TrainClipTransform(
            short_side_range=tuple(data.train_scale), crop_size=data.crop_size
        )
    else:
        transform = EvalClipTransform(short_side=data.eval_short_side, crop_size=data.crop_size, crops=data.eval_crops)
    return VideoClipDataset(
        manifest=manifest,
        data_root=root,
        split=split,
        num_frames=data.frames,
        transform=transform,
        train=train,
        num_clips=1 if train else data.eval_clips,
        sampling=data.sampling,
        frame_stride=data.frame_stride,
        seed=seed,
        max_failure_fraction=data.max_failure_fraction,
    )


class EpochSampler(Sampler[int]):
    """This rank's item indices for the epoch set by ``set_epoch``.

    Training (``shuffle=True``): a permutation seeded by (seed, epoch), padded by wrapping around
    so every rank gets the same number of items (DDP needs equal step counts), then strided by
    rank. Evaluation (``shuffle=False``): items in order, strided by rank, no padding, so every
    item is scored exactly once over the ranks.
    """

    def __init__(self, size: int, *, rank: int, world_size: int, shuffle: bool, seed: int) -> None:
        if size < 1:
            raise ValueError("EpochSampler needs a non-empty dataset; check the manifest's split")
        self.size, self.rank, self.world_size = size, rank, world_size
        self.shuffle, self.seed = shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.rank, self.size, self.world_size))
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        total = len(self) * self.world_size
        while len(order) < total:
            order += order[: total - len(order)]
        return iter(order[self.rank : total : self.world_size])

    def __len__(self) -> int:
        if not self.shuffle:
            return len(range(self.rank, self.size, self.world_size))
        return -(-self.size // self.world_size)


def make_loader(
    dataset: Dataset, *, sampler: EpochSampler, batch_size: int, workers: int, pin_memory: bool, drop_last: bool = False
) -> DataLoader:
    """DataLoader whose worker processes persist across epochs (decoding is the bottleneck).
    ``drop_last``: no short last batch (a layer with BatchNorm over a batch of one cannot train)."""
    return DataLoader(
        dataset,
        sampler=sampler,
        batch_size=batch_size,
        drop_last=drop_last,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers > 0 else None,
    )


@dataclass
class TrainData:
    """This rank's training batches; ``epoch(e)`` sets the data order and augmentation of epoch e."""

    manifest: Manifest
    root: Path
    dataset: VideoClipDataset
    sampler: EpochSampler
    loader: DataLoader

    def epoch(self, epoch: int) -> DataLoader:
        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)
        return self.loader

    def __len__(self) -> int:
        return len(self.loader)


def train_split(
    data: DataConfig, *, seed: int, rank: int, world_size: int, batch_size: int, pin_memory: bool,
    drop_last: bool = False,
) -> TrainData:
    """The manifest and this rank's share of the training split's clips, shuffled per epoch."""
    manifest, root = load_manifest(data)
    dataset = clip_dataset(data, manifest=manifest, root=root, split="train", train=True, seed=seed)
    sampler = EpochSampler(len(dataset), rank=rank, world_size=world_size, shuffle=True, seed=seed)
    if drop_last and len(sampler) < batch_size:
        raise ValueError(f"this rank has {len(sampler)} training clips, fewer than one batch of {batch_size}; "
                         "lower the stage's batch_size")
    loader = make_loader(dataset, sampler=sampler, batch_size=batch_size, workers=data.loader_workers,
                         pin_memory=pin_memory, drop_last=drop_last)
    return TrainData(manifest=manifest, root=root, dataset=dataset, sampler=sampler, loader=loader)
