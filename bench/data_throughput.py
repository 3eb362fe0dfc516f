"""Clip-reading throughput: decord (what VideoClipDataset uses) against PyAV, on the synthetic set.

Each clip is T frames at TSN evaluation positions, delivered as uint8 RGB at SIZE x SIZE. decord
decodes at the reduced size (VideoReader(width=, height=)) and fetches the frames with get_batch;
PyAV, the peer a user might pick, seeks to the first needed frame and decodes forward, scaling only
the needed frames (frame.to_ndarray(width=, height=)). Both run single-threaded in one process, over
the same clips, timed back to back per clip; the script checks that both return the same frames (mean absolute
difference) and prints clips/s and their ratio.

    python bench/data_throughput.py                     # generates a synthetic set in a temp dir
    python bench/data_throughput.py --data DIR --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import decord
import numpy as np

from searchlab.data.manifest import read_manifest
from searchlab.data.synthetic import generate_synthetic
from searchlab.data.video import tsn_indices


def read_decord(path: str, indices: list[int], size: int) -> np.ndarray:
    reader = decord.VideoReader(path, num_threads=1, width=size, height=size)
    return reader.get_batch(indices).asnumpy()


def read_pyav(path: str, indices: list[int], size: int) -> np.ndarray:
    wanted = sorted(set(indices))
    found: dict[int, np.ndarray] = {}
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        fps = Fraction(stream.average_rate)
        start = stream.start_time or 0
        ticks_per_frame = 1 / (fps * stream.time_base)
        container.seek(int(start + wanted[0] * ticks_per_frame), stream=stream, backward=True)
        for frame in container.decode(stream):
            index = round((frame.pts - start) / ticks_per_frame)
            if index in wanted and index not in found:
                found[index] = frame.to_ndarray(format="rgb24", width=size, height=size)
            if len(found) == len(wanted) or index > wanted[-1]:
                break
    missing = [i for i in wanted if i not in found]
    if missing:
        raise RuntimeError(f"{path}: PyAV did not reach frame(s) {missing}")
    return np.stack([found[i] for i in indices])


def _clips(data: Path, count: int, frames: int) -> list[tuple[str, list[int]]]:
    rows = read_manifest(data / "manifest.parquet", data_root=data).rows()
    clips = []
    for i in range(count):
        row = rows[i % len(rows)]
        k = (i // len(rows)) % 3  # later passes read other frames (3-clip evaluation positions)
        idx = tsn_indices(row["num_frames"], frames, train=False, clip_index=k, num_clips=3)
        clips.append((str(data / row["path"]), idx.tolist()))
    return clips


def _interleaved(readers: dict, clips: list[tuple[str, list[int]]], size: int) -> tuple[dict, dict]:
    """Clips/s per reader, timing the readers back to back on every clip so that load from other
    processes (a shared machine) hits both alike; returns the rates and each reader's frames."""
    for reader in readers.values():
        reader(*clips[0], size)  # warm-up: codec tables, page cache
    seconds = dict.fromkeys(readers, 0.0)
    frames: dict[str, list[np.ndarray]] = {name: [] for name in readers}
    for path, indices in clips:
        for name, reader in readers.items():
            start = time.perf_counter()
            frames[name].append(reader(path, indices, size))
            seconds[name] += time.perf_counter() - start
    return {name: len(clips) / s for name, s in seconds.items()}, frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="synthetic set folder (default: generate one in a temp dir)")
    parser.add_argument("--clips", type=int, default=96, help="clips per reader (default %(default)s)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip, T (default %(default)s)")
    parser.add_argument("--size", type=int, default=112, help="output frame size in px (default %(default)s)")
    parser.add_argument("--video-frames", type=int, default=64, help="frames per generated video (default %(default)s)")
    parser.add_argument("--video-size", type=int, default=128, help="size of generated videos (default %(default)s)")
    parser.add_argument("--json", help="write the results as JSON to this path ('-' for stdout)")
    args = parser.parse_args(argv)
    decord.logging.set_level(decord.logging.QUIET)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp)
            generate_synthetic(data, num_classes=4, train_per_class=8, val_per_class=0,
                               num_frames=args.video_frames, fps=16.0, size=args.video_size, progress=False)
        clips = _clips(data, args.clips, args.frames)
        rates, frames = _interleaved({"decord": read_decord, "pyav": read_pyav}, clips, args.size)
        decord_rate, pyav_rate = rates["decord"], rates["pyav"]
        decord_out, pyav_out = frames["decord"], frames["pyav"]
        video = read_manifest(data / "manifest.parquet").rows()[0]
    diff = float(np.mean([np.abs(a.astype(np.int16) - b).mean() for a, b in zip(decord_out, pyav_out)]))
    result = {
        "clips": args.clips, "frames_per_clip": args.frames, "size": args.size,
        "video": {"num_frames": video["num_frames"], "fps": video["fps"], "width": video["width"],
                  "height": video["height"], "codec": "h264 yuv420p"},
        "decord_clips_per_s": round(decord_rate, 2), "pyav_clips_per_s": round(pyav_rate, 2),
        "decord_over_pyav": round(decord_rate / pyav_rate, 3),
        "mean_abs_pixel_difference": round(diff, 3),
        "threads": 1, "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "decord": decord.__version__, "av": av.__version__,
    }
    print(f"T={args.frames} frames at {args.size}px from {video['width']}x{video['height']} "
          f"{video['num_frames']}-frame H.264 videos, {args.clips} clips, 1 thread each:")
    print(f"  decord {decord_rate:8.1f} clips/s")
    print(f"  PyAV   {pyav_rate:8.1f} clips/s")
    print(f"  decord / PyAV = {decord_rate / pyav_rate:.2f}x  (mean |pixel difference| {diff:.2f} of 255)")
    if args.json == "-":
        json.dump(result, sys.stdout, indent=2)
        print()
    elif args.json:
        target = Path(args.json)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(result, handle, indent=2)
        os.replace(tmp_path, target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
