"""One video file decoded the way evaluation decodes it: the preprocessing every deployed method shares.

``open_eval_video(path, data)`` returns a decord reader at evaluation's reduced decode size, the
evaluation transform (short side ``data.eval_short_side``, centre crop ``data.crop_size``, ImageNet
normalisation) and the TSN segment-centre indices of each of the ``data.eval_clips`` clips; a
deployed model can read frames from it lazily (AR-Net decodes a frame when its decision loop reaches
it) or all at once with ``decode_video`` -- the same clips as
``searchlab.train.evaluate.eval_dataset`` makes for that video.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = ["EvalVideo", "decode_video", "open_eval_video"]


class EvalVideo(NamedTuple):
    reader: Any  # decord.VideoReader at evaluation's decode size
    transform: Any  # searchlab.data.video.EvalClipTransform
    indices: list[list[int]]  # per clip: the frame index of each of its data.frames segments


def open_eval_video(path: str | Path, data: Any, size: tuple[int, int] | None = None) -> EvalVideo:
    """Open ``path`` for evaluation-style reads (``data``: a ``searchlab.config.DataConfig``).

    ``size`` (width, height) is the video's full frame size as a manifest records it; without it the
    container's header is read. It sets the reduced size decord decodes at, as evaluation does.
    A missing file raises FileNotFoundError, an undecodable one ValueError naming it.
    """
    import decord

    from searchlab.data.video import EvalClipTransform, tsn_indices

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file")
    transform = EvalClipTransform(short_side=data.eval_short_side, crop_size=data.crop_size)
    width, height = _decode_size(path, size, transform.max_short_side)
    try:
        reader = decord.VideoReader(str(path), num_threads=1, width=width, height=height)
    except (decord.DECORDError, RuntimeError) as error:
        raise ValueError(f"{path} cannot be decoded ({' '.join(str(error).split())[:200]})") from error
    available = len(reader)
    if available < 1:
        raise ValueError(f"{path} has no decodable frames")
    clips = data.eval_clips
    indices = [tsn_indices(available, data.frames, train=False, clip_index=k, num_clips=clips).tolist()
               for k in range(clips)]
    return EvalVideo(reader, transform, indices)


def decode_video(path: str | Path, data: Any, *, size: tuple[int, int] | None = None) -> Tensor:
    """The evaluation clips of a video file, decoded eagerly: float32 (data.eval_clips, data.frames, 3,
    S, S), RGB, ImageNet-normalised, as ``searchlab.train.evaluate.eval_dataset`` makes them."""
    reader, transform, indices = open_eval_video(path, data, size)
    flat = [i for clip in indices for i in clip]
    batch = torch.from_numpy(reader.get_batch(flat).asnumpy()).permute(0, 3, 1, 2).contiguous()
    frames = transform(batch)
    return frames.reshape(len(indices), data.frames, *frames.shape[1:])


def _decode_size(path: Path, size: tuple[int, int] | None, short_side: int) -> tuple[int, int]:
    """decord's decode size for evaluation (``searchlab.data.video._decode_size``) from the full size."""
    from searchlab.data.video import _decode_size as reduced

    if size is None:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            size = (stream.codec_context.width, stream.codec_context.height)
    return reduced(*size, short_side)
