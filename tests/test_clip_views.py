"""Dense clips and multi-view evaluation: dense_indices, crop_offsets, the 3-crop transform, and the
views of a real landscape MP4 through clip_dataset (every method's evaluation) and decode_video
(every bundle's predict_video); the DataConfig checks of these options."""

from __future__ import annotations

import typing
from pathlib import Path

import decord
import numpy as np
import pytest
import torch

from searchlab.config import ConfigError, DataConfig, parse_trial_config
from searchlab.data.eval_video import decode_video
from searchlab.data.manifest import Manifest, build_manifest
from searchlab.data.synthetic import write_mp4
from searchlab.data.video import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SAMPLINGS,
    EvalClipTransform,
    clip_indices,
    crop_offsets,
    dense_indices,
    dense_window,
    tsn_indices,
)
from searchlab.train.loader import clip_dataset


# ----------------------------------------------------------------------------- dense sampling
@pytest.mark.parametrize(("video_frames", "frames", "stride"), [(100, 8, 4), (40, 4, 3), (29, 8, 4)])
def test_dense_training_clips_are_consecutive_frames_at_the_stride(video_frames: int, frames: int, stride: int) -> None:
    draws = np.stack([dense_indices(video_frames, frames, stride=stride, train=True, rng=np.random.default_rng(s))
                      for s in range(200)])
    assert draws.shape == (200, frames) and draws.dtype == np.int64
    assert (np.diff(draws, axis=1) == stride).all()
    last_start = video_frames - dense_window(frames, stride)
    assert draws[:, 0].min() == 0 and draws[:, 0].max() == last_start  # every start in [0, L] is drawn
    assert draws.max() < video_frames


def test_dense_evaluation_starts_are_evenly_spaced_and_deterministic() -> None:
    # window (8 - 1) * 4 + 1 = 29 frames of 100: starts in [0, 71]
    starts = [dense_indices(100, 8, stride=4, train=False, clip_index=k, num_clips=3)[0] for k in range(3)]
    assert starts == [0, 35, 71]  # the first clip starts at the first frame, the last ends at the last
    assert dense_indices(100, 8, stride=4, train=False).tolist() == list(range(35, 64, 4))  # one clip: the centre
    assert dense_indices(100, 8, stride=4, train=False, clip_index=2, num_clips=3)[-1] == 99
    again = [dense_indices(100, 8, stride=4, train=False, clip_index=k, num_clips=3) for k in range(3)]
    assert all(a[0] == s for a, s in zip(again, starts))


@pytest.mark.parametrize("train", [True, False])
def test_dense_clips_of_short_videos_clamp_to_the_last_frame(train: bool) -> None:
    for seed in range(5):  # no randomness left: the window does not fit, so it starts at 0
        indices = dense_indices(10, 8, stride=4, train=train, rng=np.random.default_rng(seed))
        assert indices.tolist() == [0, 4, 8, 9, 9, 9, 9, 9]
    assert dense_indices(1, 4, stride=2, train=False).tolist() == [0, 0, 0, 0]


def test_dense_sampling_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="needs rng"):
        dense_indices(50, 4, stride=2, train=True)
    with pytest.raises(ValueError, match="stride=0"):
        dense_indices(50, 4, stride=0, train=False)
    with pytest.raises(ValueError, match="clip_index=2"):
        dense_indices(50, 4, stride=2, train=False, clip_index=2, num_clips=2)
    with pytest.raises(ValueError, match="sampling='uniform'"):
        clip_indices(50, 4, sampling="uniform", frame_stride=1, train=False)  # type: ignore[arg-type]


def test_clip_indices_follows_the_sampling() -> None:
    tsn = clip_indices(80, 8, sampling="tsn", frame_stride=1, train=False, clip_index=1, num_clips=2)
    assert tsn.tolist() == tsn_indices(80, 8, train=False, clip_index=1, num_clips=2).tolist()
    dense = clip_indices(80, 8, sampling="dense", frame_stride=2, train=False, clip_index=1, num_clips=2)
    assert dense.tolist() == list(range(65, 80, 2))


# ----------------------------------------------------------------------------- crops
def test_crop_offsets_are_both_ends_and_the_centre_of_the_long_side() -> None:
    assert crop_offsets(48, 64, crop_size=32, crops=3) == [(8, 0), (8, 16), (8, 32)]  # landscape: left/centre/right
    assert crop_offsets(64, 48, crop_size=32, crops=3) == [(0, 8), (16, 8), (32, 8)]  # portrait: top/centre/bottom
    assert crop_offsets(48, 48, crop_size=32, crops=3) == [(8, 0), (8, 8), (8, 16)]  # square: along the width
    assert crop_offsets(48, 64, crop_size=32, crops=1) == [(8, 16)]
    assert crop_offsets(48, 67, crop_size=32, crops=3)[1] == crop_offsets(48, 67, crop_size=32, crops=1)[0]
    with pytest.raises(ValueError, match="crops=2"):
        crop_offsets(48, 64, crop_size=32, crops=2)


def test_three_crop_transform_checks_its_crop() -> None:
    transform = EvalClipTransform(short_side=32, crop_size=28, crops=3)
    frames = torch.zeros(2, 3, 32, 48, dtype=torch.uint8)
    assert transform(frames, crop=2).shape == (2, 3, 28, 28)
    with pytest.raises(ValueError, match="crop=3"):
        transform(frames, crop=3)
    with pytest.raises(ValueError, match="crops=2"):
        EvalClipTransform(short_side=32, crop_size=28, crops=2)


# ----------------------------------------------------------------------------- views of a real video
_FRAMES = 40


@pytest.fixture(scope="module")
def landscape(tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, Path]:
    """One 64x48 (landscape) MP4 of 40 frames: red ramps left to right, green encodes the frame number.
    At short side 48 decord decodes it at full size, so a view can be rebuilt exactly from its frames."""
    root = tmp_path_factory.mktemp("landscape")
    ramp = np.linspace(0, 255, 64).round().astype(np.uint8)
    frames = np.zeros((_FRAMES, 48, 64, 3), dtype=np.uint8)
    frames[..., 0] = ramp
    frames[..., 1] = (6 * np.arange(_FRAMES, dtype=np.uint8))[:, None, None]
    write_mp4(root / "wide.mp4", frames, fps=10.0)
    row = {"path": "wide.mp4", "label": 0, "num_frames": _FRAMES, "fps": 10.0, "duration": 4.0, "width": 64,
           "height": 48}
    rows = [{**row, "video_id": f"wide_{split}", "split": split} for split in ("train", "val")]
    return build_manifest(rows, class_names=["a", "b"], dataset="wide"), root


def _data(**overrides: object) -> DataConfig:
    return DataConfig(manifest="unused.parquet", frames=4, crop_size=32, train_scale=(32, 40), eval_short_side=48,
                      loader_workers=0, **overrides)


def _normalised(pixels: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (pixels.float() / 255 - mean) / std


def test_three_crop_dense_evaluation_views_are_left_centre_right_of_each_clip(landscape: tuple[Manifest, Path]) -> None:
    manifest, root = landscape
    data = _data(sampling="dense", frame_stride=3, eval_clips=2, eval_crops=3)
    dataset = clip_dataset(data, manifest=manifest, root=root, split="val", train=False, seed=0)
    assert dataset.views_per_video == 6 and len(dataset) == 6 == data.eval_views
    raw = torch.from_numpy(decord.VideoReader(str(root / "wide.mp4"), num_threads=1).get_batch(
        list(range(_FRAMES))).asnumpy()).permute(0, 3, 1, 2)
    assert (raw[:, 1].float().mean(dim=(1, 2)) / 6).round().tolist() == list(range(_FRAMES))  # green = frame number
    views = [dataset[v] for v in range(6)]
    assert dataset.failure_stats().reads == 2  # each clip decoded once for its three crops
    assert all(int(view["index"]) == 0 for view in views)  # one video: scores average per index
    # window (4 - 1) * 3 + 1 = 10 frames of 40: clip starts 0 and 30; crops at left 0, 16, 32 (top 8)
    for clip, start in enumerate((0, 30)):
        frames = raw[start:start + 10:3]
        for crop, left in enumerate((0, 16, 32)):
            expected = _normalised(frames[..., 8:40, left:left + 32])
            assert torch.allclose(views[3 * clip + crop]["frames"], expected, atol=1e-6)
    red = [views[crop]["frames"][:, 0].mean().item() for crop in range(3)]
    assert red[0] < red[1] < red[2]  # the crops differ: left, centre and right of the ramp
    centre = clip_dataset(_data(sampling="dense", frame_stride=3, eval_clips=2), manifest=manifest, root=root,
                          split="val", train=False, seed=0)
    assert len(centre) == 2 and torch.equal(centre[1]["frames"], views[4]["frames"])  # 1 crop = the middle of 3
    decoded = decode_video(root / "wide.mp4", data)  # what every bundle's predict_video decodes
    assert decoded.shape == (6, 4, 3, 32, 32)
    assert all(torch.equal(decoded[v], views[v]["frames"]) for v in range(6))


def test_dense_training_clip_draws_its_start(landscape: tuple[Manifest, Path]) -> None:
    manifest, root = landscape
    dataset = clip_dataset(_data(sampling="dense", frame_stride=3), manifest=manifest, root=root, split="train",
                           train=True, seed=0)
    starts = set()
    for epoch in range(8):
        dataset.set_epoch(epoch)
        frames = dataset[0]["frames"]
        assert frames.shape == (4, 3, 32, 32)
        green = (frames[:, 1] * IMAGENET_STD[1] + IMAGENET_MEAN[1]) * 255 / 6  # frame numbers (crop/flip keep green)
        numbers = green.mean(dim=(1, 2)).round().long()
        assert torch.diff(numbers).tolist() == [3, 3, 3]
        starts.add(int(numbers[0]))
    assert len(starts) > 1 and max(starts) <= _FRAMES - 10


# ----------------------------------------------------------------------------- configuration
@pytest.mark.parametrize(("overrides", "message"), [
    ({"frame_stride": 2}, "frame_stride 2 applies to dense sampling only, and sampling is tsn: set sampling: dense"),
    ({"eval_crops": 2}, "eval_crops 2: use 1 (the centre crop) or 3"),
    ({"sampling": "dense", "frame_stride": 0}, "data.frame_stride: 0 is out of range; use a value >= 1"),
    ({"sampling": "dense", "frame_stride": 65}, "data.frame_stride: 65 is above the limit 64"),
    ({"sampling": "dense", "frames": 512, "frame_stride": 64}, "spans 32705 video frames, above the limit 4096; "
                                                              "lower frame_stride or frames"),
    ({"sampling": "dense", "frames": 16, "frame_stride": 4, "synthetic": {}},
     "spans 61 video frames, but the synthetic videos have 32: lower frame_stride to at most 2"),
    ({"sampling": "dense", "frames": 40, "synthetic": {}}, "lower frames to at most 32, or raise synthetic.frames"),
    ({"sampling": "strided"}, "data.sampling: Input should be 'tsn' or 'dense'"),
    ({"eval_crops": 3, "crop_size": 64}, "crop_size 64 exceeds train_scale low 32 or eval_short_side 48"),
])
def test_view_options_are_checked_with_the_fix(overrides: dict[str, object], message: str) -> None:
    tree = {"data": {"manifest": "m.parquet", "crop_size": 32, "train_scale": [32, 40], "eval_short_side": 48,
                     **overrides}}
    with pytest.raises(ConfigError) as info:
        parse_trial_config(tree, source="test")
    assert any(message in problem for problem in info.value.problems), info.value.problems


def test_view_options_defaults_and_views() -> None:
    assert typing.get_args(DataConfig.model_fields["sampling"].annotation) == SAMPLINGS  # the config's = the loader's
    data = _data()
    assert (data.sampling, data.frame_stride, data.eval_crops, data.eval_views) == ("tsn", 1, 1, 1)
    assert _data(sampling="dense", frame_stride=8, eval_clips=10, eval_crops=3).eval_views == 30
