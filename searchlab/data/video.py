"""Clips for training and evaluation: TSN frame sampling, the clip transforms, the Dataset.

`VideoClipDataset` decodes only the T frames a clip needs with decord (at reduced size when the
transform will shrink the frames anyway), applies one set of random parameters to all T frames of a
clip (METHODS §1.2), and never lets one bad file stop a multi-hour run: the sample is replaced by a
deterministic other one and counted in counters shared with DataLoader workers. Only when more than
max_failure_fraction of the split's videos are unreadable does it raise, naming the files.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import decord
import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import Dataset

from searchlab.data.manifest import SPLITS, Manifest

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DataFailureError",
    "EvalClipTransform",
    "FailureStats",
    "TrainClipTransform",
    "VideoClipDataset",
    "tsn_indices",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_log = logging.getLogger(__name__)
# decord's own logger prints every FFmpeg complaint; failures are reported once per file below.
decord.logging.set_level(decord.logging.QUIET)


def tsn_indices(
    video_frames: int,
    num_segments: int,
    *,
    train: bool,
    rng: np.random.Generator | None = None,
    clip_index: int = 0,
    num_clips: int = 1,
) -> np.ndarray:
    """Frame indices (num_segments,) int64 for one clip, TSN style.

    The video is cut into `num_segments` equal segments and one frame is taken from each: in
    training at an independent random offset per segment; in evaluation at position
    (clip_index + 0.5) / num_clips of every segment (the centre when num_clips == 1), so the K
    clips of multi-clip evaluation see different frames. Videos with fewer frames than segments
    repeat indices; the result is always sorted and inside [0, video_frames).
    """
    if video_frames < 1:
        raise ValueError(f"video_frames={video_frames}: a video needs at least one frame")
    if num_segments < 1:
        raise ValueError(f"num_segments={num_segments}: need at least one segment")
    if not 0 <= clip_index < num_clips:
        raise ValueError(f"clip_index={clip_index} must be in [0, num_clips={num_clips})")
    edges = np.arange(num_segments + 1, dtype=np.float64) * (video_frames / num_segments)
    if train:
        if rng is None:
            raise ValueError("training sampling needs rng (a numpy Generator)")
        start = np.floor(edges[:-1]).astype(np.int64)
        stop = np.maximum(np.floor(edges[1:]).astype(np.int64), start + 1)
        indices = rng.integers(start, stop)
    else:
        position = (clip_index + 0.5) / num_clips
        indices = np.floor(edges[:-1] + position * (video_frames / num_segments)).astype(np.int64)
    return np.clip(indices, 0, video_frames - 1)


def _to_float_normalised(frames: torch.Tensor) -> torch.Tensor:
    x = TF.to_dtype(frames, torch.float32, scale=True)
    return TF.normalize(x, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))


@dataclass(frozen=True)
class TrainClipTransform:
    """Random short side in [s_min, s_max), random square crop, horizontal flip (METHODS §1.2).

    One draw of these parameters is applied to all T frames of a clip, so motion stays coherent.
    Input: uint8 (T, 3, H, W); output: float32 (T, 3, crop_size, crop_size), ImageNet-normalised.
    """

    short_side_range: tuple[int, int] = (256, 320)
    crop_size: int = 224
    flip: bool = True

    def __post_init__(self) -> None:
        s_min, s_max = self.short_side_range
        if not s_min < s_max:
            raise ValueError(f"short_side_range={self.short_side_range}: need s_min < s_max ([s_min, s_max))")
        if not 0 < self.crop_size <= s_min:
            raise ValueError(
                f"crop_size={self.crop_size} must be in (0, s_min={s_min}]; the crop is taken "
                "after resizing the short side"
            )

    @property
    def max_short_side(self) -> int:
        """The largest short side this transform resizes to (lets the reader decode smaller)."""
        return self.short_side_range[1] - 1

    def __call__(self, frames: torch.Tensor, rng: np.random.Generator | None) -> torch.Tensor:
        if rng is None:
            raise ValueError("TrainClipTransform needs rng (a numpy Generator)")
        short = int(rng.integers(*self.short_side_range))
        x = TF.resize(frames, [short], antialias=True)
        height, width = x.shape[-2:]
        top = int(rng.integers(0, height - self.crop_size + 1))
        left = int(rng.integers(0, width - self.crop_size + 1))
        x = TF.crop(x, top=top, left=left, height=self.crop_size, width=self.crop_size)
        if self.flip and rng.random() < 0.5:
            x = TF.horizontal_flip(x)
        return _to_float_normalised(x)


@dataclass(frozen=True)
class EvalClipTransform:
    """Resize the short side to `short_side`, then centre crop `crop_size` (METHODS §1.2)."""

    short_side: int = 256
    crop_size: int = 224

    def __post_init__(self) -> None:
        if not 0 < self.crop_size <= self.short_side:
            raise ValueError(f"crop_size={self.crop_size} must be in (0, short_side={self.short_side}]")

    @property
    def max_short_side(self) -> int:
        return self.short_side

    def __call__(self, frames: torch.Tensor, rng: np.random.Generator | None = None) -> torch.Tensor:
        x = TF.resize(frames, [self.short_side], antialias=True)
        x = TF.center_crop(x, [self.crop_size, self.crop_size])
        return _to_float_normalised(x)


@dataclass(frozen=True)
class FailureStats:
    """Reads so far over the main process and every DataLoader worker: all reads, failed reads,
    the files that ever failed, and how many of the split's videos failed their latest read."""

    reads: int
    failures: int
    failed_files: tuple[str, ...]
    videos: int
    unreadable: int

    @property
    def fraction(self) -> float:
        """The share of the split's videos that are unreadable: what max_failure_fraction limits."""
        return self.unreadable / self.videos


class DataFailureError(RuntimeError):
    """Too many videos could not be read; the message names them."""


# A rerun or a resume reads the same files again; only the files or the manifest can change that.
_FIX = (
    "Fix or replace these files, or drop them from the manifest (re-run `python -m "
    "searchlab.data.prepare`, which leaves unreadable videos out, or delete their rows); then start "
    "the run again. To train without them as they are, raise data.max_failure_fraction."
)


class _DecodeFailure(Exception):
    """One read that failed, with a one-line reason."""


def _decode_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) to decode at so the short side is still >= `short_side`, or (-1, -1) for
    full size when shrinking would not help.

    The width is rounded up to a multiple of 32: decord 0.6.0 pads scaled rows to an alignment and
    then fails ("DECORDArrayCopyFromTo: The size must exactly match") for widths such as 16, 48
    or 72; every multiple of 32 decodes correctly at any height.
    """
    scale = short_side / min(width, height)
    new_width = 32 * math.ceil(width * scale / 32)
    if new_width >= width:
        return -1, -1
    new_height = 2 * math.ceil(height * new_width / width / 2)
    return new_width, new_height


class VideoClipDataset(Dataset):
    """Clips of T frames from one split of a manifest; items follow docs/architecture.md.

    Item: {"frames": float32 (T, 3, H, W), "label": int64 scalar, "target": float32 (C,) multi-hot,
    "index": int64 row in the split}. With num_clips = K > 1 (evaluation) the dataset has K items
    per video (item i is clip i % K of row i // K); average their outputs by "index".
    Randomness comes from (seed, epoch, item) only, so results do not depend on worker count.
    A failed read is replaced by another row drawn from the same seed; the returned label, target and
    index are those of the row actually returned.

    The failure limit is judged on the whole split: the share of its videos whose latest read
    failed (a video that reads again stops counting). A share of reads would let one bad file that
    comes up early in an epoch stop a run. Under DDP each process judges the videos it has read
    against the whole split, so it can only under-count.
    """

    def __init__(
        self,
        *,
        manifest: Manifest,
        data_root: str | Path,
        split: str,
        num_frames: int,
        transform: TrainClipTransform | EvalClipTransform,
        train: bool,
        num_clips: int = 1,
        seed: int = 0,
        max_failure_fraction: float = 0.05,
        max_replacements: int = 10,
        decode_threads: int = 1,
    ) -> None:
        problems = []
        if split not in SPLITS:
            problems.append(f"split={split!r}: use one of {', '.join(SPLITS)}")
        if num_frames < 1:
            problems.append(f"num_frames={num_frames}: need at least 1")
        if num_clips < 1 or (train and num_clips != 1):
            problems.append(f"num_clips={num_clips}: must be >= 1, and 1 when train=True")
        if not 0.0 <= max_failure_fraction <= 1.0:
            problems.append(f"max_failure_fraction={max_failure_fraction}: must be in [0, 1]")
        if max_replacements < 0 or decode_threads < 0:
            problems.append(f"max_replacements={max_replacements}, decode_threads={decode_threads}: must be >= 0")
        if problems:
            raise ValueError("VideoClipDataset: " + "; ".join(problems))
        rows = manifest.split(split).table
        if rows.num_rows == 0:
            raise ValueError(
                f"split {split!r} of {manifest.dataset!r} is empty; its splits: "
                f"{sorted(set(manifest.table['split'].to_pylist()))}"
            )
        self.data_root = Path(data_root)
        self.split = split
        self.num_frames = num_frames
        self.transform = transform
        self.train = train
        self.num_clips = num_clips
        self.seed = seed
        self.num_classes = manifest.num_classes
        self.max_failure_fraction = max_failure_fraction
        self.max_replacements = max_replacements
        self.decode_threads = decode_threads
        self._paths: list[str] = rows["path"].to_pylist()
        self._labels: list[int] = rows["label"].to_pylist()
        self._label_lists: list[list[int]] = rows["labels"].to_pylist()
        self._sizes: list[tuple[int, int]] = list(zip(rows["width"].to_pylist(), rows["height"].to_pylist()))
        # Shared memory: set_epoch() and the counters reach (and come back from) DataLoader workers.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._reads = torch.zeros(len(self._paths), dtype=torch.int32).share_memory_()
        self._failures = torch.zeros(len(self._paths), dtype=torch.int32).share_memory_()
        self._unreadable = torch.zeros(len(self._paths), dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        return len(self._paths) * self.num_clips

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws of training clips; visible to running (persistent) workers."""
        self._epoch[0] = epoch

    def failure_stats(self) -> FailureStats:
        return FailureStats(
            reads=int(self._reads.sum()),
            failures=int(self._failures.sum()),
            failed_files=self._files(self._failures),
            videos=len(self._paths),
            unreadable=int(self._unreadable.sum()),
        )

    def __getitem__(self, item: int) -> dict[str, Any]:
        if not 0 <= item < len(self):
            raise IndexError(f"item {item} outside [0, {len(self)})")
        row, clip = divmod(item, self.num_clips)
        epoch = int(self._epoch[0])
        rng = np.random.default_rng([self.seed, epoch, item])
        replacements = np.random.default_rng([self.seed, epoch, item, 1])
        for _ in range(self.max_replacements + 1):
            try:
                frames = self._read(row, clip, rng)
            except _DecodeFailure as failure:
                self._record_failure(row, str(failure))
                row = self._replacement(row, replacements)
                continue
            self._unreadable[row] = False
            return self._item(row, frames, rng)
        raise DataFailureError(
            f"item {item} of split {self.split!r}: {self.max_replacements + 1} reads in a row failed. "
            f"Unreadable files: {self._names(self._files(self._unreadable))}. {_FIX}"
        )

    def _replacement(self, row: int, rng: np.random.Generator) -> int:
        if len(self._paths) == 1:
            return row
        other = int(rng.integers(0, len(self._paths) - 1))
        return other + (other >= row)

    def _read(self, row: int, clip: int, rng: np.random.Generator) -> torch.Tensor:
        """uint8 (T, 3, H, W) of the clip's frames, or _DecodeFailure with the reason."""
        self._reads[row] += 1
        path = self.data_root / self._paths[row]
        if not path.is_file():
            raise _DecodeFailure("missing file")
        if path.stat().st_size == 0:
            raise _DecodeFailure("empty file (0 bytes)")
        width, height = _decode_size(*self._sizes[row], self.transform.max_short_side)
        try:
            reader = decord.VideoReader(str(path), num_threads=self.decode_threads, width=width, height=height)
            available = len(reader)
            if available < 1:
                raise _DecodeFailure("no decodable frames")
            indices = tsn_indices(
                available, self.num_frames, train=self.train, rng=rng,
                clip_index=clip, num_clips=self.num_clips,
            )
            batch = reader.get_batch(indices.tolist()).asnumpy()
        except (decord.DECORDError, RuntimeError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise _DecodeFailure(f"unreadable ({reason[:200]})") from err
        if batch.shape[0] != self.num_frames or batch.ndim != 4 or batch.shape[-1] != 3:
            raise _DecodeFailure(f"decoded {batch.shape}, expected ({self.num_frames}, H, W, 3)")
        return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()

    def _record_failure(self, row: int, reason: str) -> None:
        first = int(self._failures[row]) == 0
        self._failures[row] += 1
        self._unreadable[row] = True
        if first:
            _log.warning("%s: %s; replaced by another video", self.data_root / self._paths[row], reason)
        stats = self.failure_stats()
        if stats.fraction > self.max_failure_fraction:
            raise DataFailureError(
                f"{stats.unreadable} of the {stats.videos} videos of split {self.split!r} cannot be read "
                f"({stats.fraction:.1%} > max_failure_fraction {self.max_failure_fraction:.1%}): "
                f"{self._names(self._files(self._unreadable))}. {_FIX}"
            )

    def _files(self, flags: torch.Tensor) -> tuple[str, ...]:
        return tuple(str(self.data_root / self._paths[i]) for i in torch.nonzero(flags).flatten().tolist())

    @staticmethod
    def _names(files: tuple[str, ...]) -> str:
        shown = ", ".join(files[:20])
        return shown + (f" ... and {len(files) - 20} more" if len(files) > 20 else "")

    def _item(self, row: int, frames: torch.Tensor, rng: np.random.Generator) -> dict[str, Any]:
        target = torch.zeros(self.num_classes, dtype=torch.float32)
        target[self._label_lists[row]] = 1.0
        return {
            "frames": self.transform(frames, rng),
            "label": torch.tensor(self._labels[row], dtype=torch.int64),
            "target": target,
            "index": torch.tensor(row, dtype=torch.int64),
        }
