"""One video file decoded the way evaluation decodes it: the preprocessing every deployed method shares.

``open_eval_video(path, data)`` returns the video's evaluation views: a decord reader at evaluation's
reduced decode size, the evaluation transform (short side ``data.eval_short_side``, crops of
``data.crop_size``, ImageNet normalisation), and per view the frame indices of its clip (TSN or
dense, ``data.sampling``) and its crop. The views are ``data.eval_clips`` clips × ``data.eval_crops``
crops, in the order of ``searchlab.train.evaluate.eval_dataset``'s items (view v = crop v % crops of
clip v // crops). A deployed model reads frames lazily (``EvalVideo.frames_at``: AR-Net decodes a frame
when its decision loop reaches it) or all at once with ``decode_video`` -- the same views as
``eval_dataset`` makes for that video.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["EvalVideo", "decode_video", "open_eval_video"]


@dataclass
class EvalVideo:
    reader: Any  # decord.VideoReader at evaluation's decode size
    transform: Any  # searchlab.data.video.EvalClipTransform
    indices: list[list[int]]  # per view: the frame index of each of its data.frames frames
    crops: list[int]  # per view: its crop of transform.crops
    # (frame index, crop) -> the transformed frame, so a frame shared by views is decoded once
    _frames: dict[tuple[int, int], Tensor] = field(default_factory=dict, repr=False)

    @property
    def frames_decoded(self) -> int:
        """Distinct video frames decoded so far by ``frames_at``."""
        return len({frame for frame, _ in self._frames})

    def frames_at(self, step: int, views: Sequence[int]) -> Tensor:
        """Frame ``step`` of each of ``views``: float32 (len(views), 3, S, S), decoding only frames not
        read before."""
        wanted = [(self.indices[view][step], self.crops[view]) for view in views]
        missing = sorted(set(wanted) - set(self._frames))
        if missing:
            needed = sorted({frame for frame, _ in missing})
            batch = torch.from_numpy(self.reader.get_batch(needed).asnumpy()).permute(0, 3, 1, 2).contiguous()
            pixels = dict(zip(needed, batch))
            for frame, crop in missing:
                self._frames[(frame, crop)] = self.transform(pixels[frame][None], crop=crop)[0]
        return torch.stack([self._frames[key] for key in wanted])


def open_eval_video(path: str | Path, data: Any, size: tuple[int, int] | None = None) -> EvalVideo:
    """Open ``path`` for evaluation-style reads (``data``: a ``searchlab.config.DataConfig``).

    ``size`` (width, height) is the video's full frame size as a manifest records it; without it the
    container's header is read. It sets the reduced size decord decodes at, as evaluation does.
    A missing file raises FileNotFoundError, an undecodable one ValueError naming it.
    """
    import decord

    from searchlab.data.video import EvalClipTransform, clip_indices

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file")
    transform = EvalClipTransform(short_side=data.eval_short_side, crop_size=data.crop_size, crops=data.eval_crops)
    width, height = _decode_size(path, size, transform.max_short_side)
    try:
        reader = decord.VideoReader(str(path), num_threads=1, width=width, height=height)
    except (decord.DECORDError, RuntimeError) as error:
        raise ValueError(f"{path} cannot be decoded ({' '.join(str(error).split())[:200]})") from error
    available = len(reader)
    if available < 1:
        raise ValueError(f"{path} has no decodable frames")
    clips = [
        clip_indices(available, data.frames, sampling=data.sampling, frame_stride=data.frame_stride, train=False,
                     clip_index=k, num_clips=data.eval_clips).tolist()
        for k in range(data.eval_clips)
    ]
    views = [(clip, crop) for clip in clips for crop in range(transform.crops)]
    return EvalVideo(reader, transform, [clip for clip, _ in views], [crop for _, crop in views])


def decode_video(path: str | Path, data: Any, *, size: tuple[int, int] | None = None) -> Tensor:
    """The evaluation views of a video file, decoded eagerly: float32 (data.eval_clips · data.eval_crops,
    data.frames, 3, S, S), RGB, ImageNet-normalised, as ``searchlab.train.evaluate.eval_dataset`` makes them."""
    video = open_eval_video(path, data, size)
    needed = sorted({frame for clip in video.indices for frame in clip})
    batch = torch.from_numpy(video.reader.get_batch(needed).asnumpy()).permute(0, 3, 1, 2).contiguous()
    position = {frame: i for i, frame in enumerate(needed)}
    return torch.stack([
        video.transform(batch[[position[frame] for frame in clip]], crop=crop)
        for clip, crop in zip(video.indices, video.crops)
    ])


def _decode_size(path: Path, size: tuple[int, int] | None, short_side: int) -> tuple[int, int]:
    """decord's decode size for evaluation (``searchlab.data.video._decode_size``) from the full size."""
    from searchlab.data.video import _decode_size as reduced

    if size is None:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            size = (stream.codec_context.width, stream.codec_context.height)
    return reduced(*size, short_side)
