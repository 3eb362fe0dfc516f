"""Clip loading: TSN sampling, transforms, the Dataset's items, determinism and bad files."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import decord
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from searchlab.data.manifest import Manifest, build_manifest
from searchlab.data.synthetic import class_specs, render_video, write_mp4
from searchlab.data.video import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataFailureError,
    EvalClipTransform,
    TrainClipTransform,
    VideoClipDataset,
    _decode_size,
    tsn_indices,
)

TRAIN = TrainClipTransform(short_side_range=(32, 40), crop_size=28)
EVAL = EvalClipTransform(short_side=32, crop_size=28)


# ----------------------------------------------------------------------------- TSN sampling
@pytest.mark.parametrize("frames", [8, 16, 33, 100])
def test_training_offsets_are_random_inside_each_segment(frames: int) -> None:
    draws = np.stack([tsn_indices(frames, 8, train=True, rng=np.random.default_rng(s)) for s in range(200)])
    assert draws.shape == (200, 8) and draws.dtype == np.int64
    edges = np.floor(np.arange(9) * frames / 8).astype(int)
    assert (draws >= edges[:-1]).all() and (draws < np.maximum(edges[1:], edges[:-1] + 1)).all()
    assert (np.diff(draws, axis=1) > 0).all()  # one distinct frame per segment
    if frames >= 16:  # segments of 2+ frames: offsets vary, independently per segment
        assert all(len(set(draws[:, k])) > 1 for k in range(8))
        assert len({tuple(row) for row in draws}) > 20


def test_evaluation_takes_segment_centres() -> None:
    assert tsn_indices(80, 8, train=False).tolist() == [5, 15, 25, 35, 45, 55, 65, 75]
    assert (tsn_indices(80, 8, train=False) == tsn_indices(80, 8, train=False)).all()


def test_multi_clip_evaluation_shifts_offsets_within_segments() -> None:
    clips = np.stack([tsn_indices(80, 8, train=False, clip_index=k, num_clips=4) for k in range(4)])
    assert clips[:, 0].tolist() == [1, 3, 6, 8]
    assert (np.diff(clips, axis=0) > 0).all()  # clip k+1 later than clip k in every segment
    assert (clips // 10 == np.arange(8)).all()  # and still inside the segment


@pytest.mark.parametrize("train", [True, False])
def test_short_videos_repeat_indices(train: bool) -> None:
    for frames in (1, 3, 7):
        idx = tsn_indices(frames, 8, train=train, rng=np.random.default_rng(0))
        assert len(idx) == 8 and (np.diff(idx) >= 0).all()
        assert idx.min() >= 0 and idx.max() == frames - 1 and set(idx) == set(range(frames))


def test_sampling_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="needs rng"):
        tsn_indices(10, 4, train=True)
    with pytest.raises(ValueError, match="at least one frame"):
        tsn_indices(0, 4, train=False)
    with pytest.raises(ValueError, match="clip_index=3"):
        tsn_indices(10, 4, train=False, clip_index=3, num_clips=3)


# ----------------------------------------------------------------------------- transforms
def _clip(t: int = 4, h: int = 48, w: int = 64) -> torch.Tensor:
    gradient = torch.arange(w, dtype=torch.float32).expand(h, w) * (255 / w)
    frame = torch.stack([gradient, gradient.flip(-1), torch.full((h, w), 90.0)]).to(torch.uint8)
    return frame.expand(t, 3, h, w).contiguous()


def test_train_transform_shape_and_one_draw_for_all_frames() -> None:
    out = TRAIN(_clip(), np.random.default_rng(0))
    assert out.shape == (4, 3, 28, 28) and out.dtype == torch.float32
    assert all(torch.equal(out[0], out[k]) for k in range(4))  # same crop/flip for every frame
    outs = [TRAIN(_clip(), np.random.default_rng(s))[0] for s in range(12)]
    assert len({o.sum().item() for o in outs}) > 3  # but different clips get different draws
    flipped = [o for o in outs if o[0, 0, 0] > o[0, 0, -1]]  # red ramp increases left to right
    assert 0 < len(flipped) < len(outs)


def test_eval_transform_is_deterministic_centre_crop_and_normalised() -> None:
    first, second = EVAL(_clip()), EVAL(_clip())
    assert first.shape == (4, 3, 28, 28) and torch.equal(first, second)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255
    grey = mean.round().to(torch.uint8).expand(2, 3, 40, 40)
    assert EVAL(grey).abs().max() < 0.02  # the ImageNet mean maps to ~0
    assert EvalClipTransform(short_side=32, crop_size=32)(_clip(h=32, w=48)).shape == (4, 3, 32, 32)
    assert IMAGENET_STD == (0.229, 0.224, 0.225)


def test_transform_sizes_are_checked() -> None:
    with pytest.raises(ValueError, match="s_min < s_max"):
        TrainClipTransform(short_side_range=(40, 40), crop_size=28)
    with pytest.raises(ValueError, match="crop_size=64"):
        TrainClipTransform(short_side_range=(32, 40), crop_size=64)
    with pytest.raises(ValueError, match="crop_size=40"):
        EvalClipTransform(short_side=32, crop_size=40)


# ----------------------------------------------------------------------------- dataset
def _dataset(manifest: Manifest, root: Path, *, train: bool = True, **kwargs) -> VideoClipDataset:
    return VideoClipDataset(
        manifest=manifest, data_root=root, split="train" if train else "val", num_frames=8,
        transform=TRAIN if train else EVAL, train=train, **kwargs,
    )


def test_items_follow_the_contract(synthetic_set: tuple[Manifest, Path]) -> None:
    manifest, root = synthetic_set
    dataset = _dataset(manifest, root)
    item = dataset[3]
    assert set(item) == {"frames", "label", "target", "index"}
    assert item["frames"].shape == (8, 3, 28, 28) and item["frames"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and item["label"].shape == ()
    assert item["index"].item() == 3 and item["label"].item() == manifest.split("train").rows()[3]["label"]
    assert item["target"].dtype == torch.float32 and item["target"].tolist() == [
        float(c == item["label"].item()) for c in range(4)
    ]
    assert dataset.failure_stats().failures == 0


def test_multi_label_targets_are_multi_hot(multilabel_set: tuple[Manifest, Path]) -> None:
    manifest, root = multilabel_set
    dataset = _dataset(manifest, root)
    for i, row in enumerate(manifest.split("train").rows()):
        target = dataset[i]["target"]
        assert target.sum() == 2 and set(torch.nonzero(target).flatten().tolist()) == set(row["labels"])


def test_randomness_comes_from_seed_epoch_and_index(synthetic_set: tuple[Manifest, Path]) -> None:
    manifest, root = synthetic_set
    a, b, other_seed = _dataset(manifest, root, seed=1), _dataset(manifest, root, seed=1), _dataset(manifest, root, seed=2)
    assert torch.equal(a[2]["frames"], b[2]["frames"])
    assert not torch.equal(a[2]["frames"], other_seed[2]["frames"])
    before = a[2]["frames"]
    a.set_epoch(1)
    assert not torch.equal(before, a[2]["frames"])
    a.set_epoch(0)
    assert torch.equal(before, a[2]["frames"])


def test_workers_give_the_same_clips_and_share_counters(synthetic_set: tuple[Manifest, Path]) -> None:
    manifest, root = synthetic_set
    dataset = _dataset(manifest, root, seed=5)
    dataset.set_epoch(2)  # must reach the worker processes
    serial = torch.stack([dataset[i]["frames"] for i in range(len(dataset))])
    loader = DataLoader(dataset, batch_size=3, num_workers=2, persistent_workers=True)
    parallel = torch.cat([batch["frames"] for batch in loader])
    assert torch.equal(serial, parallel)
    assert dataset.failure_stats().reads == 2 * len(dataset)  # worker reads counted in the parent


def test_multi_clip_evaluation_items(synthetic_set: tuple[Manifest, Path]) -> None:
    manifest, root = synthetic_set
    dataset = _dataset(manifest, root, train=False, num_clips=3)
    assert len(dataset) == 3 * 4
    items = [dataset[i] for i in range(3)]
    assert {int(it["index"]) for it in items} == {0}
    assert not torch.equal(items[0]["frames"], items[1]["frames"])
    with pytest.raises(ValueError, match="num_clips=3"):
        _dataset(manifest, root, num_clips=3)


def test_constructor_reports_all_bad_arguments(synthetic_set: tuple[Manifest, Path]) -> None:
    manifest, root = synthetic_set
    with pytest.raises(ValueError) as info:
        VideoClipDataset(manifest=manifest, data_root=root, split="dev", num_frames=0, transform=TRAIN,
                         train=True, max_failure_fraction=2.0)
    assert all(s in str(info.value) for s in ("split='dev'", "num_frames=0", "max_failure_fraction=2.0"))
    with pytest.raises(ValueError, match="split 'test' of 'synthetic' is empty"):
        VideoClipDataset(manifest=manifest, data_root=root, split="test", num_frames=4, transform=EVAL, train=False)


# ----------------------------------------------------------------------------- bad files
@pytest.fixture()
def damaged_set(synthetic_set: tuple[Manifest, Path], tmp_path: Path) -> tuple[Manifest, Path]:
    """Four good training videos plus a corrupt, a zero-byte, a truncated, a missing and a too-short one."""
    manifest, source = synthetic_set
    good = manifest.split("train").rows()[:4]
    for row in good:
        (tmp_path / row["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / row["path"], tmp_path / row["path"])
    data = (source / good[0]["path"]).read_bytes()
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])
    frames = render_video(class_specs(4), np.random.default_rng(0), classes=[1], num_frames=3, size=32)
    write_mp4(tmp_path / "short.mp4", frames, fps=8.0)
    extra = [dict(good[0], video_id=name, path=f"{name}.mp4", label=1, labels=[1])
             for name in ("corrupt", "zero", "truncated", "missing", "short")]
    damaged = build_manifest(good + extra, class_names=manifest.class_names, dataset="damaged")
    return damaged, tmp_path


def test_bad_files_are_replaced_counted_and_logged_once(
    damaged_set: tuple[Manifest, Path], caplog: pytest.LogCaptureFixture
) -> None:
    manifest, root = damaged_set
    dataset = _dataset(manifest, root, max_failure_fraction=1.0)
    with caplog.at_level(logging.WARNING, logger="searchlab.data.video"):
        first = [dataset[i] for i in range(len(dataset))]
        second = [dataset[i] for i in range(len(dataset))]
    for item in first:
        assert item["frames"].shape == (8, 3, 28, 28) and torch.isfinite(item["frames"]).all()
    bad_rows = {4, 5, 6, 7}  # corrupt, zero, truncated, missing; the too-short video is fine
    assert {int(it["index"]) for it in first[4:8]}.isdisjoint(bad_rows)  # replaced by good rows
    assert int(first[8]["index"]) == 8 and int(first[8]["label"]) == 1
    assert all(torch.equal(a["frames"], b["frames"]) for a, b in zip(first, second))  # deterministic
    stats = dataset.failure_stats()
    assert sorted(Path(f).name for f in stats.failed_files) == ["corrupt.mp4", "missing.mp4", "truncated.mp4", "zero.mp4"]
    # Every item ends with one good read; a replacement may itself hit another bad file.
    assert stats.failures >= 8 and stats.reads == 2 * len(dataset) + stats.failures
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4  # once per file, although each failed twice
    reasons = " ".join(messages)
    assert "missing file" in reasons and "empty file (0 bytes)" in reasons and "unreadable" in reasons


def _split_of_32(synthetic_set: tuple[Manifest, Path], root: Path, damaged: dict[str, bytes]) -> Manifest:
    """32 training videos: the damaged files first (name -> bytes), then copies of good synthetic videos."""
    manifest, source = synthetic_set
    good = manifest.split("train").rows()
    names = [*damaged, *(f"good{i:02d}" for i in range(len(damaged), 32))]
    rows = []
    for i, name in enumerate(names):
        template = good[i % len(good)]
        if name in damaged:
            (root / f"{name}.mp4").write_bytes(damaged[name])
        else:
            shutil.copy(source / template["path"], root / f"{name}.mp4")
        rows.append(dict(template, video_id=name, path=f"{name}.mp4"))
    return build_manifest(rows, class_names=manifest.class_names, dataset="thirty-two")


def _damaged(synthetic_set: tuple[Manifest, Path]) -> dict[str, bytes]:
    manifest, source = synthetic_set
    data = (source / manifest.split("train").rows()[0]["path"]).read_bytes()
    return {
        "garbage": b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8,
        "truncated": data[: len(data) // 2],
        "zero": b"",
    }


def test_one_bad_video_in_32_never_stops_training(synthetic_set: tuple[Manifest, Path], tmp_path: Path) -> None:
    manifest = _split_of_32(synthetic_set, tmp_path, {"truncated": _damaged(synthetic_set)["truncated"]})
    dataset = _dataset(manifest, tmp_path)  # default limit 5%: 1 of 32 is 3.1%
    for epoch in range(3):  # the bad video is the first read of every epoch
        dataset.set_epoch(epoch)
        items = [dataset[i] for i in range(len(dataset))]
        assert int(items[0]["index"]) != 0 and all(torch.isfinite(it["frames"]).all() for it in items)
    loader = DataLoader(dataset, batch_size=8, num_workers=2)
    assert sum(len(batch["index"]) for batch in loader) == 32
    stats = dataset.failure_stats()
    assert [Path(f).name for f in stats.failed_files] == ["truncated.mp4"]
    assert stats.failures == 4 and stats.reads == 4 * 33  # every read of it failed and was replaced
    assert (stats.unreadable, stats.videos) == (1, 32) and stats.fraction == 1 / 32


def test_too_many_bad_videos_raise_naming_them_and_the_fix(
    synthetic_set: tuple[Manifest, Path], tmp_path: Path
) -> None:
    manifest = _split_of_32(synthetic_set, tmp_path, _damaged(synthetic_set))
    dataset = _dataset(manifest, tmp_path)
    dataset[0]  # 1 of 32 bad: replaced
    with pytest.raises(DataFailureError) as info:
        dataset[1]  # 2 of 32: over 5%
    text = str(info.value)
    assert "2 of the 32 videos of split 'train' cannot be read (6.2% > max_failure_fraction 5.0%)" in text
    assert "garbage.mp4" in text and "truncated.mp4" in text and "zero.mp4" not in text
    assert "drop them from the manifest" in text and "resume" not in text
    tolerant = _dataset(manifest, tmp_path, max_failure_fraction=0.1)  # 3 of 32 is 9.4%
    for epoch in range(2):
        tolerant.set_epoch(epoch)
        assert all(int(tolerant[i]["index"]) >= 3 for i in range(len(tolerant)))
    stats = tolerant.failure_stats()
    assert stats.unreadable == 3 and sorted(Path(f).name for f in stats.failed_files) == [
        "garbage.mp4", "truncated.mp4", "zero.mp4"]


def test_a_video_that_reads_again_stops_counting(synthetic_set: tuple[Manifest, Path], tmp_path: Path) -> None:
    manifest = _split_of_32(synthetic_set, tmp_path, {"truncated": _damaged(synthetic_set)["truncated"]})
    dataset = _dataset(manifest, tmp_path)
    dataset[0]
    assert dataset.failure_stats().unreadable == 1
    shutil.copy(tmp_path / "good01.mp4", tmp_path / "truncated.mp4")  # fixed on disk during the run
    assert int(dataset[0]["index"]) == 0
    stats = dataset.failure_stats()
    assert stats.unreadable == 0 and stats.failures == 1 and len(stats.failed_files) == 1


def test_reduced_size_decoding_matches_full_size(tmp_path: Path) -> None:
    frames = render_video(class_specs(4), np.random.default_rng(1), classes=[2], num_frames=8, size=128)
    write_mp4(tmp_path / "big.mp4", frames[:, 16:112], fps=8.0)  # 128x96 video
    row = {"video_id": "big", "path": "big.mp4", "label": 2, "split": "val", "num_frames": 8,
           "fps": 8.0, "duration": 1.0, "width": 128, "height": 96}
    manifest = build_manifest([row], class_names=["a", "b", "c", "d"], dataset="big")
    assert _decode_size(128, 96, 32) == (64, 48)  # what the dataset asks decord for
    assert _decode_size(128, 96, 96) == (-1, -1) and _decode_size(32, 32, 16) == (-1, -1)
    small = EvalClipTransform(short_side=32, crop_size=28)
    dataset = VideoClipDataset(manifest=manifest, data_root=tmp_path, split="val", num_frames=4,
                               transform=small, train=False)
    reduced = dataset[0]["frames"]
    full = decord.VideoReader(str(tmp_path / "big.mp4"), num_threads=1)
    indices = tsn_indices(8, 4, train=False).tolist()
    reference = small(torch.from_numpy(full.get_batch(indices).asnumpy()).permute(0, 3, 1, 2).contiguous())
    assert reduced.shape == reference.shape == (4, 3, 28, 28)
    assert (reduced - reference).abs().mean() < 0.06  # same frames; only the scaler path differs
