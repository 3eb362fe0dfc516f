"""The synthetic video data set: the embedded default of every demo and test.

It is built so that a dynamic-inference policy has something real to learn (docs/synthetic_data.md):
- each video shows its class only inside an informative window (a quarter to a half of the frames);
  every other frame shows only distractors drawn from one distribution shared by all classes, so
  skipping them costs no accuracy;
- "coarse" classes differ in colour and large shape (cues that survive 2-bit or low-resolution
  processing); "fine" classes come in pairs that share colour, shape and motion and differ only in
  a high-frequency stripe orientation that blurring or coarse quantisation removes;
- objects move with a class-specific motion or stand still, so temporal redundancy varies;
- an untrimmed multi-label variant shows two classes in two separate windows (scored with mAP).
Videos are real H.264 MP4 files (PyAV, libx264, yuv420p), written in parallel and atomically.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from tqdm import tqdm

from searchlab.atomic_dir import give_default_mode
from searchlab.data.manifest import Manifest, ManifestError, build_manifest, read_manifest, write_manifest

__all__ = ["ClassSpec", "SyntheticConfig", "class_specs", "generate_synthetic", "render_video", "write_mp4"]

# Saturated hues only: distractors are grey, so colour alone never comes from the background.
_PALETTE: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (230, 40, 40)),
    ("green", (40, 200, 60)),
    ("blue", (50, 80, 240)),
    ("yellow", (235, 220, 40)),
    ("magenta", (220, 50, 210)),
    ("cyan", (40, 210, 220)),
    ("orange", (245, 140, 30)),
    ("purple", (130, 50, 200)),
)
_SHAPES: tuple[str, ...] = ("disk", "square", "triangle", "ring", "cross", "diamond")
_MOTIONS: tuple[str, ...] = ("still", "drift", "orbit", "oscillate")
_SPLIT_CODES = {"train": 0, "val": 1}
# Stripes alternate full colour and this fraction of it; plain objects use the mean of the two,
# so every texture has the same average colour and only fine detail tells them apart.
MANIFEST_NAME = "manifest.parquet"
CONFIG_NAME = "synthetic.json"


@dataclass(frozen=True)
class ClassSpec:
    """What one class looks like: coarse cues (colour, shape), fine cue (texture), motion."""

    name: str
    colour: tuple[int, int, int]
    shape: str
    texture: str  # "plain" | "hstripes" | "vstripes"
    motion: str  # one of _MOTIONS
    kind: str  # "coarse" | "fine"
    direction: float  # radians; orientation of drift / oscillation, phase of the orbit


@dataclass(frozen=True)
class SyntheticConfig:
    """The generator's knobs; stored as DIR/synthetic.json so a rerun can tell it is up to date."""

    num_classes: int = 8
    train_per_class: int = 24
    val_per_class: int = 8
    num_frames: int = 32
    fps: float = 8.0
    size: int = 64
    seed: int = 0
    multi_label: bool = False
    fine_fraction: float = 0.5
    fine_contrast: float = 0.6
    crf: int = 12

    def problems(self) -> list[str]:
        """Every invalid knob at once, each with the allowed range."""
        found = []
        looks = len(_PALETTE) * len(_SHAPES)
        if not 2 <= self.num_classes:
            found.append(f"num_classes={self.num_classes}: need at least 2")
        n_fine = _num_fine(self.num_classes, self.fine_fraction)
        if self.num_classes - n_fine // 2 > looks:
            found.append(f"num_classes={self.num_classes}: at most {looks} distinct looks; lower it")
        if not 0.0 <= self.fine_fraction <= 1.0:
            found.append(f"fine_fraction={self.fine_fraction}: must be in [0, 1]")
        if not 0.0 < self.fine_contrast <= 1.0:
            found.append(f"fine_contrast={self.fine_contrast}: must be in (0, 1]")
        if self.train_per_class < 0 or self.val_per_class < 0:
            found.append("train_per_class and val_per_class must be >= 0")
        if self.train_per_class + self.val_per_class == 0:
            found.append("train_per_class + val_per_class is 0: nothing to generate")
        if self.num_frames < 4:
            found.append(f"num_frames={self.num_frames}: need at least 4 (window = 1/4..1/2 of it)")
        if self.multi_label and self.num_frames < 8:
            found.append(f"num_frames={self.num_frames}: the multi-label variant needs at least 8")
        if not self.fps > 0:
            found.append(f"fps={self.fps}: must be > 0")
        if self.size < 16 or self.size % 2:
            found.append(f"size={self.size}: must be even (yuv420p) and >= 16")
        if not 0 <= self.crf <= 51:
            found.append(f"crf={self.crf}: x264 accepts 0..51")
        return found


def _num_fine(num_classes: int, fine_fraction: float) -> int:
    return 2 * int(num_classes * min(max(fine_fraction, 0.0), 1.0) // 2)


def class_specs(num_classes: int, *, fine_fraction: float = 0.5) -> tuple[ClassSpec, ...]:
    """The classes: coarse ones first (one look each), then fine pairs (one look per pair).

    Looks cycle through colours first and shapes second, so the first eight looks all differ in
    colour and in shape. Class names spell out the cues, which keeps confusion matrices readable.
    """
    n_fine = _num_fine(num_classes, fine_fraction)
    n_coarse = num_classes - n_fine
    specs = []
    for c in range(num_classes):
        fine = c >= n_coarse
        look = n_coarse + (c - n_coarse) // 2 if fine else c
        colour_name, colour = _PALETTE[look % len(_PALETTE)]
        shape = _SHAPES[(look + look // len(_PALETTE)) % len(_SHAPES)]
        texture = ("hstripes", "vstripes")[(c - n_coarse) % 2] if fine else "plain"
        motion = _MOTIONS[look % len(_MOTIONS)]
        direction = (look * 0.618034 % 1.0) * 2.0 * math.pi
        name = f"{colour_name}_{shape}_{texture}_{motion}"
        specs.append(ClassSpec(name, colour, shape, texture, motion, "fine" if fine else "coarse", direction))
    return tuple(specs)


def _upsample(grid: np.ndarray, out: int) -> np.ndarray:
    """Bilinear upsampling of a small (k, k, 3) grid to (out, out, 3): a smooth texture."""
    k = grid.shape[0]
    pos = np.linspace(0, k - 1, out)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, k - 1)
    w = (pos - lo)[:, None, None]
    rows = grid[lo] * (1 - w) + grid[hi] * w
    w = (pos - lo)[None, :, None]
    return rows[:, lo] * (1 - w) + rows[:, hi] * w


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == "disk":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        return np.maximum(ax, ay) <= 0.85 * r
    if shape == "triangle":
        return (dy >= -r) & (dy <= 0.75 * r) & (ax <= (dy + r) / 1.75)
    if shape == "ring":
        d = np.sqrt(dx**2 + dy**2)
        return (d <= r) & (d >= 0.55 * r)
    if shape == "cross":
        return ((ax <= 0.3 * r) & (ay <= r)) | ((ay <= 0.3 * r) & (ax <= r))
    if shape == "diamond":
        return ax + ay <= r
    raise ValueError(f"unknown shape {shape!r}; use one of {_SHAPES}")


def _bounce(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect positions into [lo, hi] (a triangle wave), so moving objects bounce off the border."""
    span = hi - lo
    y = np.mod(x - lo, 2 * span)
    return lo + np.where(y > span, 2 * span - y, y)


def _trajectory(spec: ClassSpec, rng: np.random.Generator, n: int, size: int, r: float) -> np.ndarray:
    """Object centres (n, 2) as (x, y): still, drifting, orbiting or oscillating, inside the frame."""
    lo, hi = r + 1.0, size - r - 1.0
    start = rng.uniform(lo, hi, size=2)
    t = np.arange(n, dtype=np.float64)
    axis = np.array([math.cos(spec.direction), math.sin(spec.direction)])
    if spec.motion == "still":
        path = np.repeat(start[None], n, axis=0)
    elif spec.motion == "drift":
        path = start[None] + t[:, None] * axis[None] * (0.06 * size)
    elif spec.motion == "orbit":
        angle = spec.direction + t * (2 * math.pi / 8)
        path = start[None] + 0.15 * size * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    else:  # oscillate
        path = start[None] + np.sin(t * (2 * math.pi / 6))[:, None] * axis[None] * (0.18 * size)
    return _bounce(path, lo, hi)


def _paint(
    frame: np.ndarray, spec: ClassSpec, centre: np.ndarray, r: float, half_period: int, contrast: float
) -> None:
    size = frame.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dx, dy = xx - centre[0], yy - centre[1]
    mask = _shape_mask(spec.shape, dx, dy, r)
    colour = np.asarray(spec.colour, dtype=np.float64)
    # Stripes alternate full colour and (1 - contrast) of it; a plain object has their mean shade, so
    # once stripes are blurred or lost to coarse activation levels, a striped object looks plain.
    if spec.texture == "plain":
        shade = np.full((size, size), 1.0 - contrast / 2.0)
    else:
        # Stripes are fixed to the object (they move with it), in whole pixels so they stay sharp.
        along = np.floor(dy if spec.texture == "hstripes" else dx) + 4 * half_period * size
        shade = np.where((along // half_period) % 2 == 0, 1.0, 1.0 - contrast)
    frame[mask] = (shade[..., None] * colour)[mask]


def _windows(rng: np.random.Generator, n: int, count: int) -> list[tuple[int, int]]:
    """`count` disjoint informative windows (start, length) with at least one frame between them.

    One window: length in [n/4, n/2]. Two windows: each in [n/4, 3n/8], so at least a quarter of
    the video stays uninformative and the two classes never share a frame.
    """
    low = max(1, math.ceil(n / 4))
    high = max(low, n // 2 if count == 1 else (3 * n) // 8)
    lengths = [int(rng.integers(low, high + 1)) for _ in range(count)]
    free = n - sum(lengths) - (count - 1)
    cuts = np.sort(rng.integers(0, free + 1, size=count))
    gaps = np.diff(np.concatenate([[0], cuts]))
    windows, pos = [], 0
    for i, (gap, length) in enumerate(zip(gaps, lengths)):
        pos += int(gap) + (1 if i else 0)
        windows.append((pos, length))
        pos += length
    return windows


def render_video(
    specs: tuple[ClassSpec, ...],
    rng: np.random.Generator,
    *,
    classes: list[int],
    num_frames: int,
    size: int,
    fine_contrast: float = 0.6,
) -> np.ndarray:
    """Frames (T, size, size, 3) uint8 showing classes[i] only inside window i.

    Outside the windows every class looks the same: a smooth grey-ish background that pans, an
    optional grey distractor object (half of the videos) and sensor noise.
    """
    canvas = _upsample(110.0 + rng.normal(0.0, 35.0, size=(8, 8, 1)) + rng.normal(0, 10, (8, 8, 3)), 2 * size)
    pan = rng.uniform(-0.5, 0.5, size=2)
    offset0 = rng.uniform(0, size, size=2)
    r = 0.25 * size
    half_period = max(2, size // 32)
    distractor = None
    if rng.random() < 0.5:
        grey = float(rng.uniform(60, 200))
        distractor = ClassSpec(
            "distractor", (grey, grey, grey), str(rng.choice(_SHAPES)), "plain",
            str(rng.choice(_MOTIONS)), "distractor", float(rng.uniform(0, 2 * math.pi)),
        )
        distractor_path = _trajectory(distractor, rng, num_frames, size, 0.18 * size)
    windows = _windows(rng, num_frames, len(classes))
    paths = [_trajectory(specs[c], rng, num_frames, size, r) for c in classes]
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        ox, oy = (np.floor(offset0 + pan * t).astype(int)) % size
        frame = canvas[oy : oy + size, ox : ox + size].copy()
        if distractor is not None:
            _paint(frame, distractor, distractor_path[t], 0.18 * size, half_period, fine_contrast)
        for c, (start, length), path in zip(classes, windows, paths):
            if start <= t < start + length:
                _paint(frame, specs[c], path[t], r, half_period, fine_contrast)
        frame += rng.normal(0.0, 3.0, size=frame.shape)
        frames[t] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return frames


def write_mp4(path: str | os.PathLike[str], frames: np.ndarray, *, fps: float, crf: int = 12) -> None:
    """Write (T, H, W, 3) uint8 RGB frames as H.264 (libx264, yuv420p) MP4, atomically.

    The same frames give the same bytes in any process, whatever ran in it before. Macroblock-tree
    rate control is off because x264's AVX-512 mbtree routines read heap memory they never wrote:
    with it on, the bytes followed what the process had freed earlier, so they changed from one
    write to the next and with the number of writer processes. One encoder thread: the writer
    processes are the parallelism.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3); got {frames.dtype} {frames.shape}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"yuv420p needs even width and height; got {frames.shape[2]}x{frames.shape[1]}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".mp4.tmp")
    os.close(fd)
    try:
        with av.open(tmp, mode="w", format="mp4") as container:
            stream = container.add_stream(
                "libx264", rate=Fraction(fps).limit_denominator(1001),
                options={"crf": str(crf), "threads": "1", "preset": "veryfast", "mbtree": "0"},
            )
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode(None))
        give_default_mode(tmp)  # mkstemp made it 0600: data files get the user's usual mode
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _plan(config: SyntheticConfig) -> list[dict[str, Any]]:
    """One job per video: id, relative path, split, its classes in time order."""
    jobs = []
    for split, per_class in (("train", config.train_per_class), ("val", config.val_per_class)):
        for c in range(config.num_classes):
            for j in range(per_class):
                video_id = f"{split}_{c:03d}_{j:04d}"
                jobs.append(
                    {"video_id": video_id, "path": f"videos/{split}/{video_id}.mp4", "split": split,
                     "primary": c, "index": j}
                )
    return jobs


def _make_video(job: dict[str, Any], config: SyntheticConfig, out_dir: str) -> dict[str, Any]:
    """Render and write one video; everything random comes from (seed, split, class, index)."""
    specs = class_specs(config.num_classes, fine_fraction=config.fine_fraction)
    rng = np.random.default_rng(
        [config.seed, _SPLIT_CODES[job["split"]], job["primary"], job["index"], int(config.multi_label)]
    )
    classes = [job["primary"]]
    if config.multi_label:
        other = int(rng.integers(0, config.num_classes - 1))
        classes.append(other + (other >= job["primary"]))
    frames = render_video(specs, rng, classes=classes, num_frames=config.num_frames, size=config.size,
                          fine_contrast=config.fine_contrast)
    write_mp4(Path(out_dir) / job["path"], frames, fps=config.fps, crf=config.crf)
    return {
        "video_id": job["video_id"], "path": job["path"], "label": job["primary"],
        "labels": sorted(classes), "split": job["split"], "num_frames": config.num_frames,
        "fps": config.fps, "duration": config.num_frames / config.fps,
        "width": config.size, "height": config.size,
    }


def _up_to_date(out: Path, config: SyntheticConfig) -> Manifest | None:
    try:
        stored = json.loads((out / CONFIG_NAME).read_text())
        manifest = read_manifest(out / MANIFEST_NAME, data_root=out)
    except (OSError, json.JSONDecodeError, ManifestError):
        return None
    if stored != asdict(config):
        return None
    if not all((out / p).is_file() for p in manifest.table["path"].to_pylist()):
        return None
    return manifest


def worker_context() -> multiprocessing.context.BaseContext:
    """fork where the OS has it: a spawned worker would re-import torch (seconds per worker, since
    importing any searchlab.data module imports the package); the workers only run numpy and PyAV,
    the same pattern as DataLoader workers. Elsewhere spawn (the caller then needs a main guard)."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def generate_synthetic(
    out_dir: str | os.PathLike[str],
    *,
    num_classes: int = 8,
    train_per_class: int = 24,
    val_per_class: int = 8,
    num_frames: int = 32,
    fps: float = 8.0,
    size: int = 64,
    seed: int = 0,
    multi_label: bool = False,
    fine_fraction: float = 0.5,
    fine_contrast: float = 0.6,
    crf: int = 12,
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
) -> Manifest:
    """Write the synthetic set to out_dir (videos/<split>/*.mp4, manifest.parquet, synthetic.json).

    Deterministic per seed (same knobs -> byte-identical files). If out_dir already holds a
    complete set made with the same knobs it is returned as is, unless `force`. `workers` processes
    write videos in parallel (default: the CPU count, capped by the number of videos).
    """
    config = SyntheticConfig(
        num_classes=num_classes, train_per_class=train_per_class, val_per_class=val_per_class,
        num_frames=num_frames, fps=float(fps), size=size, seed=seed, multi_label=multi_label,
        fine_fraction=fine_fraction, fine_contrast=fine_contrast, crf=crf,
    )
    problems = config.problems()
    if workers is not None and workers < 1:
        problems.append(f"workers={workers}: must be >= 1")
    if problems:
        raise ValueError("invalid synthetic data set knobs:\n  - " + "\n  - ".join(problems))
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; the synthetic set is a folder (manifest.parquet, videos/...): name a folder")
    if not force and (existing := _up_to_date(out, config)) is not None:
        return existing
    out.mkdir(parents=True, exist_ok=True)
    jobs = _plan(config)
    n_workers = min(workers or os.cpu_count() or 1, len(jobs))
    bar = tqdm(total=len(jobs), desc="synthetic videos", unit="video", disable=not progress)
    if n_workers == 1:
        rows = []
        for job in jobs:
            rows.append(_make_video(job, config, str(out)))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=worker_context()) as pool:
            futures = [pool.submit(_make_video, job, config, str(out)) for job in jobs]
            rows = []
            for future in futures:
                rows.append(future.result())
                bar.update()
    bar.close()
    specs = class_specs(num_classes, fine_fraction=fine_fraction)
    dataset = "synthetic-multilabel" if multi_label else "synthetic"
    manifest = build_manifest(rows, class_names=[s.name for s in specs], dataset=dataset)
    write_manifest(manifest, out / MANIFEST_NAME)
    _write_json_atomic(out / CONFIG_NAME, asdict(config))
    return manifest


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
    give_default_mode(tmp)  # mkstemp made it 0600: data files get the user's usual mode
    os.replace(tmp, path)
