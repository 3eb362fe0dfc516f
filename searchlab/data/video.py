"""Clips for training and evaluation: frame sampling (TSN or dense), the clip transforms, the Dataset.

`VideoClipDataset` decodes only the T frames a clip needs with decord (at reduced size when the
transform will shrink the frames anyway), applies one set of random parameters to all T frames of a
clip (METHODS §1.2), and never lets one bad file stop a multi-hour run: the sample is replaced by a
deterministic other one and counted in counters shared with DataLoader workers. Only when more than
max_failure_fraction of the split's videos are unreadable does it raise, naming the files.

Two ways to choose a clip's T frames (`clip_indices`): TSN (`tsn_indices`: one frame per equal
segment of the whole video, for 2D backbones over frames) and dense (`dense_indices`: T consecutive
frames at a fixed stride, a short window, for 3D backbones). Evaluation takes K clips per video and,
with `EvalClipTransform(crops=3)`, three crops per clip: K·crops views per video.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

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
    "SAMPLINGS",
    "Sampling",
    "TrainClipTransform",
    "VideoClipDataset",
    "clip_indices",
    "crop_offsets",
    "dense_indices",
    "dense_window",
    "tsn_indices",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

Sampling = Literal["tsn", "dense"]
SAMPLINGS: tuple[Sampling, ...] = ("tsn", "dense")

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


def dense_window(num_frames: int, stride: int) -> int:
    """How many consecutive video frames a dense clip of `num_frames` at `stride` spans."""
    return (num_frames - 1) * stride + 1


def dense_indices(
    video_frames: int,
    num_frames: int,
    *,
    stride: int,
    train: bool,
    rng: np.random.Generator | None = None,
    clip_index: int = 0,
    num_clips: int = 1,
) -> np.ndarray:
    """Frame indices (num_frames,) int64 for one dense clip: start, start + stride, ... (3D backbones).

    The clip spans W = (num_frames - 1) * stride + 1 frames (`dense_window`); its start is in
    [0, L] with L = max(video_frames - W, 0). Training draws the start uniformly from [0, L];
    evaluation takes K = num_clips evenly spaced starts from 0 to L, floor(L * k / (K - 1)) for clip
    k (the centre, floor(L / 2), when K == 1), so the first clip starts at the first frame and the
    last ends at the last (the PySlowFast multi-clip test protocol). A video shorter than the window
    starts at 0 and its indices past the end are clamped to the last frame (repeated, never random).
    Strides are in the video's own frames (the manifest records its fps).
    """
    if video_frames < 1:
        raise ValueError(f"video_frames={video_frames}: a video needs at least one frame")
    if num_frames < 1 or stride < 1:
        raise ValueError(f"num_frames={num_frames}, stride={stride}: both must be >= 1")
    if not 0 <= clip_index < num_clips:
        raise ValueError(f"clip_index={clip_index} must be in [0, num_clips={num_clips})")
    last_start = max(video_frames - dense_window(num_frames, stride), 0)
    if train:
        if rng is None:
            raise ValueError("training sampling needs rng (a numpy Generator)")
        start = int(rng.integers(0, last_start + 1))
    elif num_clips == 1:
        start = last_start // 2
    else:
        start = last_start * clip_index // (num_clips - 1)
    indices = start + np.arange(num_frames, dtype=np.int64) * stride
    return np.minimum(indices, video_frames - 1)


def clip_indices(
    video_frames: int,
    num_frames: int,
    *,
    sampling: Sampling,
    frame_stride: int,
    train: bool,
    rng: np.random.Generator | None = None,
    clip_index: int = 0,
    num_clips: int = 1,
) -> np.ndarray:
    """The frame indices of one clip by `sampling`: "tsn" (`tsn_indices`; frame_stride unused) or
    "dense" (`dense_indices` at frame_stride)."""
    if sampling == "dense":
        return dense_indices(video_frames, num_frames, stride=frame_stride, train=train, rng=rng,
                             clip_index=clip_index, num_clips=num_clips)
    if sampling != "tsn":
        raise ValueError(f"sampling={sampling!r}: use one of {', '.join(SAMPLINGS)}")
    return tsn_indices(video_frames, num_frames, train=train, rng=rng, clip_index=clip_index, num_clips=num_clips)


def crop_offsets(height: int, width: int, *, crop_size: int, crops: int) -> list[tuple[int, int]]:
    """(top, left) of each evaluation crop of a (height, width) frame: 1 crop = the centre; 3 crops =
    start, centre and end of the long side (left/centre/right; top/centre/bottom for portrait frames,
    left/centre/right for square ones), centred on the short side. The centre offset rounds as
    torchvision's center_crop does, so the 1-crop view equals the middle one of 3."""
    if crops not in (1, 3):
        raise ValueError(f"crops={crops}: use 1 (centre) or 3 (both ends and the centre of the long side)")
    centre = (round((height - crop_size) / 2), round((width - crop_size) / 2))
    if crops == 1:
        return [centre]
    if height > width:
        return [(top, centre[1]) for top in (0, centre[0], height - crop_size)]
    return [(centre[0], left) for left in (0, centre[1], width - crop_size)]


def _to_float_normalised(frames: torch.Tensor) -> torch.Tensor:
    x = TF.to_dtype(frames, torch.float32, scale=True)
    return TF.normalize(x, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))


@dataclass(frozen=True)
class TrainClipTransform:
    """Random short side in [s_min, s_max), random square crop, horizontal flip (METHODS §1.2).

    One draw of these parameters is applied to all T frames of a clip, so motion stays coherent.
    Input: uint8 (T, 3, H, W); output: float32 (T, 3, crop_size, crop_size), ImageNet-normalised.
    `crops` and the `crop` argument match `EvalClipTransform`'s, so the Dataset treats both alike:
    a training clip has one (random) crop.
    """

    short_side_range: tuple[int, int] = (256, 320)
    crop_size: int = 224
    flip: bool = True
    crops: ClassVar[int] = 1

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

    def __call__(self, frames: torch.Tensor, rng: np.random.Generator | None, crop: int = 0) -> torch.Tensor:
        if rng is None:
            raise ValueError("TrainClipTransform needs rng (a numpy Generator)")
        if crop != 0:
            raise ValueError(f"crop={crop}: a training clip has one random crop (crop 0)")
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
    """Resize the short side to `short_side`, then take crop `crop` of `crops` square crops of
    `crop_size` (METHODS §1.2, §3): 1 = the centre crop; 3 = left/centre/right along the long side
    (top/centre/bottom for portrait frames), see `crop_offsets`."""

    short_side: int = 256
    crop_size: int = 224
    crops: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.crop_size <= self.short_side:
            raise ValueError(f"crop_size={self.crop_size} must be in (0, short_side={self.short_side}]")
        if self.crops not in (1, 3):
            raise ValueError(f"crops={self.crops}: use 1 (centre) or 3 (left/centre/right)")

    @property
    def max_short_side(self) -> int:
        return self.short_side

    def __call__(self, frames: torch.Tensor, rng: np.random.Generator | None = None, crop: int = 0) -> torch.Tensor:
        if not 0 <= crop < self.crops:
            raise ValueError(f"crop={crop} must be in [0, crops={self.crops})")
        x = TF.resize(frames, [self.short_side], antialias=True)
        offsets = crop_offsets(*x.shape[-2:], crop_size=self.crop_size, crops=self.crops)
        top, left = offsets[crop]
        x = TF.crop(x, top=top, left=left, height=self.crop_size, width=self.crop_size)
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
    "index": int64 row in the split}. A clip's frames are chosen by `sampling` (`clip_indices`). In
    evaluation a video has V = num_clips · transform.crops views (K clips × 1 or 3 crops), one item
    each: item i is view i % V of row i // V, and view v is crop v % crops of clip v // crops; average
    their outputs by "index". A view's decoded frames are kept until the next item asks for another
    clip, so the crops of one clip decode it once (consecutive items share a worker in a batch).
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
        sampling: Sampling = "tsn",
        frame_stride: int = 1,
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
        if sampling not in SAMPLINGS:
            problems.append(f"sampling={sampling!r}: use one of {', '.join(SAMPLINGS)}")
        if frame_stride < 1:
            problems.append(f"frame_stride={frame_stride}: must be >= 1")
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
        self.sampling = sampling
        self.frame_stride = frame_stride
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
        # (row, clip) -> its decoded uint8 frames: the last evaluation clip read (per process)
        self._last_clip: tuple[tuple[int, int], torch.Tensor] | None = None

    @property
    def views_per_video(self) -> int:
        """Items per video: num_clips clips × the transform's crops (1 in training)."""
        return self.num_clips * self.transform.crops

    def __len__(self) -> int:
        return len(self._paths) * self.views_per_video

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
        row, view = divmod(item, self.views_per_video)
        clip, crop = divmod(view, self.transform.crops)
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
            return self._item(row, frames, rng, crop)
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
        # Evaluation clips do not depend on rng or epoch, so the other crops of a clip reuse its frames.
        if not self.train and self._last_clip is not None and self._last_clip[0] == (row, clip):
            return self._last_clip[1]
        frames = self._decode(row, clip, rng)
        if not self.train:
            self._last_clip = ((row, clip), frames)
        return frames

    def _decode(self, row: int, clip: int, rng: np.random.Generator) -> torch.Tensor:
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
            indices = clip_indices(
                available, self.num_frames, sampling=self.sampling, frame_stride=self.frame_stride,
                train=self.train, rng=rng, clip_index=clip, num_clips=self.num_clips,
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

    def _item(self, row: int, frames: torch.Tensor, rng: np.random.Generator, crop: int) -> dict[str, Any]:
        target = torch.zeros(self.num_classes, dtype=torch.float32)
        target[self._label_lists[row]] = 1.0
        return {
            "frames": self.transform(frames, rng, crop),
            "label": torch.tensor(self._labels[row], dtype=torch.int64),
            "target": target,
            "index": torch.tensor(row, dtype=torch.int64),
        }
