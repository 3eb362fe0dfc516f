"""The synthetic set: real decodable H.264 files matching the manifest, and the class structure the
demo relies on (informative windows, fine vs coarse cues, motion, multi-label)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import av
import decord
import numpy as np
import pytest

from searchlab.data.manifest import Manifest, read_manifest
from searchlab.data.synthetic import _trajectory, _windows, class_specs, generate_synthetic, render_video, write_mp4


def test_videos_decode_and_match_the_manifest(synthetic_set: tuple[Manifest, Path]) -> None:
    manifest, root = synthetic_set
    assert read_manifest(root / "manifest.parquet", data_root=root).table.equals(manifest.table)
    assert len(manifest.split("train")) == 8 and len(manifest.split("val")) == 4
    for row in manifest.rows():
        reader = decord.VideoReader(str(root / row["path"]), num_threads=1)
        assert len(reader) == row["num_frames"] == 16
        assert reader.get_avg_fps() == pytest.approx(row["fps"])
        assert reader[0].shape == (row["height"], row["width"], 3)
        assert row["duration"] == pytest.approx(16 / 8.0)
    with av.open(str(root / manifest.rows()[0]["path"])) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"


def _digest(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.mp4"))}


def test_same_seed_same_bytes_other_seed_other_videos(tmp_path: Path) -> None:
    knobs = dict(num_classes=2, train_per_class=1, val_per_class=0, num_frames=8, size=32, workers=1, progress=False)
    generate_synthetic(tmp_path / "a", seed=3, **knobs)
    generate_synthetic(tmp_path / "b", seed=3, **knobs)
    generate_synthetic(tmp_path / "c", seed=4, **knobs)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_writing_the_same_frames_again_gives_the_same_bytes(tmp_path: Path) -> None:
    # x264's mbtree read heap memory left by earlier writes: repeated writes in one process differed.
    frames = render_video(class_specs(8), np.random.default_rng(1), classes=[1], num_frames=32, size=64)
    for i in range(6):
        write_mp4(tmp_path / f"{i}.mp4", frames, fps=8.0)
    assert len({hashlib.sha256(p.read_bytes()).digest() for p in tmp_path.glob("*.mp4")}) == 1


def test_parallel_writers_and_a_second_generation_give_the_same_files(tmp_path: Path) -> None:
    knobs = dict(num_classes=4, train_per_class=2, val_per_class=1, num_frames=16, size=64, progress=False)
    generate_synthetic(tmp_path / "one", workers=1, **knobs)
    generate_synthetic(tmp_path / "two", workers=2, **knobs)
    generate_synthetic(tmp_path / "again", workers=1, **knobs)
    one = _digest(tmp_path / "one")
    assert len(one) == 12
    assert _digest(tmp_path / "two") == one and _digest(tmp_path / "again") == one


def test_rerun_with_same_knobs_reuses_the_set(synthetic_set: tuple[Manifest, Path]) -> None:
    manifest, root = synthetic_set
    video = root / manifest.rows()[0]["path"]
    before = video.stat().st_mtime_ns
    again = generate_synthetic(root, num_classes=4, train_per_class=2, val_per_class=1, num_frames=16,
                               fps=8.0, size=32, seed=0, workers=1, progress=False)
    assert again.table.equals(manifest.table) and video.stat().st_mtime_ns == before


def test_bad_knobs_are_all_reported(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        generate_synthetic(tmp_path, num_classes=1, num_frames=2, size=33, fps=0, fine_fraction=2.0)
    text = str(info.value)
    for expected in ("num_classes=1", "num_frames=2", "size=33", "fps=0", "fine_fraction=2.0"):
        assert expected in text
    assert not (tmp_path / "manifest.parquet").exists()


def test_fine_pairs_share_coarse_cues_and_coarse_classes_differ() -> None:
    specs = class_specs(8, fine_fraction=0.5)
    coarse = [s for s in specs if s.kind == "coarse"]
    fine = [s for s in specs if s.kind == "fine"]
    assert len(coarse) == 4 and len(fine) == 4
    assert len({(s.colour, s.shape) for s in coarse + fine[::2]}) == 6  # one look per coarse class / pair
    for a, b in zip(fine[::2], fine[1::2]):
        assert (a.colour, a.shape, a.motion) == (b.colour, b.shape, b.motion) and a.texture != b.texture
    assert {"still", "drift", "orbit", "oscillate"} <= {s.motion for s in specs}
    assert len({s.name for s in specs}) == 8


def _render(class_id: int, seed: int = 7, frames: int = 32, size: int = 64) -> np.ndarray:
    specs = class_specs(8)
    return render_video(specs, np.random.default_rng(seed), classes=[class_id], num_frames=frames, size=size).astype(float)


def _window_mask(class_a: int, class_b: int) -> np.ndarray:
    """Frames where two classes rendered from the same random draws differ: the informative window."""
    return np.abs(_render(class_a) - _render(class_b)).reshape(32, -1).max(axis=1) > 0


def test_class_shows_only_inside_a_window_of_a_quarter_to_a_half() -> None:
    inside = _window_mask(0, 1)
    assert 8 <= inside.sum() <= 16
    first = int(np.argmax(inside))
    assert inside[first : first + inside.sum()].all()  # one contiguous window
    for seed in range(50):
        (start, length), = _windows(np.random.default_rng(seed), 32, 1)
        assert 8 <= length <= 16 and 0 <= start <= 32 - length


def test_multi_label_windows_are_separate() -> None:
    for seed in range(50):
        (s1, l1), (s2, l2) = _windows(np.random.default_rng(seed), 32, 2)
        assert s1 + l1 < s2 and s2 + l2 <= 32 and min(l1, l2) >= 8


def _downsample(frames: np.ndarray, factor: int) -> np.ndarray:
    t, h, w, c = frames.shape
    return frames.reshape(t, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def test_fine_detail_blurs_away_coarse_cues_survive_low_resolution_and_2_bits() -> None:
    window = _window_mask(4, 5)
    fine_a, fine_b = _render(4)[window], _render(5)[window]
    coarse_a, coarse_b = _render(0)[window], _render(1)[window]
    full_fine = np.abs(fine_a - fine_b).mean()
    low_fine = np.abs(_downsample(fine_a, 4) - _downsample(fine_b, 4)).mean()
    low_coarse = np.abs(_downsample(coarse_a, 4) - _downsample(coarse_b, 4)).mean()
    assert full_fine > 5 * low_fine  # stripes are real detail at 64 px ...
    assert low_coarse > 5 * low_fine  # ... that 16 px loses, while colour/shape stay apart
    two_bit = lambda x: np.floor(x / 64)  # noqa: E731
    assert np.abs(two_bit(coarse_a) - two_bit(coarse_b)).mean() > 0.05


def test_still_classes_stay_moving_ones_move() -> None:
    for spec in class_specs(8):
        path = _trajectory(spec, np.random.default_rng(0), 32, 64, 16.0)
        step = np.linalg.norm(np.diff(path, axis=0), axis=1).mean()
        assert (step == 0.0) if spec.motion == "still" else (step > 1.0), spec.name
        assert path.min() >= 16.0 and path.max() <= 64 - 16.0  # the object stays inside the frame


def test_multi_label_variant(multilabel_set: tuple[Manifest, Path]) -> None:
    manifest, root = multilabel_set
    assert manifest.multi_label and manifest.dataset == "synthetic-multilabel"
    for row in manifest.rows():
        assert len(row["labels"]) == 2 and row["label"] in row["labels"]
        assert len(decord.VideoReader(str(root / row["path"]), num_threads=1)) == 16


def test_data_files_get_the_users_default_mode(synthetic_set) -> None:
    """Written through mkstemp (0600), videos and the manifest must still be readable as any file the user makes."""
    import os
    import stat

    from searchlab.atomic_dir import current_umask

    _, root = synthetic_set
    expected = 0o666 & ~current_umask()
    files = [path for path in root.rglob("*") if path.is_file() and not path.name.startswith(".")]
    assert any(path.suffix == ".mp4" for path in files) and (root / "manifest.parquet") in files
    assert {oct(stat.S_IMODE(os.stat(path).st_mode)) for path in files} == {oct(expected)}
