"""An exported AR-Net ready for inference: clips in memory, or a video file decoded lazily.

``load_arnet_bundle(DIR, arnet=..., data=..., class_names=..., card=...)`` builds the network of a
bundle's ``arnet.pt`` (read with ``weights_only=True``) and returns a ``DeployedARNet``:

* ``predict(frames)``: ``ARNet.infer`` on ImageNet-normalised clips (N, T, 3, S, S), S = data.crop_size;
* ``predict_video(path)``: decodes the file the way evaluation does (``data.frames`` frames per clip
  sampled as ``data.sampling`` says, short side ``data.eval_short_side``, ``data.eval_crops`` crops of
  ``data.crop_size``, ImageNet normalisation; ``data.eval_clips`` × ``data.eval_crops`` views whose
  probabilities are averaged), but one frame at a time, when the decision loop reaches it
  (``stepwise_infer``).

What lazy decoding can save depends on the skip semantics (METHODS.md §2): the trained network's LSTM
**consumes the frames inside a skip window** (h is restored, the cell state c is not), so the
decisions after a window depend on the skipped frames' pixels. ``predict_video`` therefore has two
modes:

* ``decode_skipped=True`` (default): exactly the decisions and logits of ``predict`` on the eagerly
  decoded clip (every sampled frame is decoded, because the policy reads every one); skipped frames
  and head frames run no backbone;
* ``decode_skipped=False``: frames t+1..t+k-1 of a skip-k window are never decoded and the LSTM state
  (h and c) is carried over the window unchanged (the "ideal sequential inference" of the paper's
  cost formula). Decoding drops by the held slots, but the decisions after a window can differ from
  what the network was trained and evaluated with, so its accuracy is not the card's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from searchlab.config import DataConfig  # first: searchlab.config imports the arnet config section
from searchlab.data.eval_video import decode_video, open_eval_video
from searchlab.deploy import BundleError, check_clip, load_weights
from searchlab.methods.arnet.build import MODEL_FILE, build_model
from searchlab.methods.arnet.costs import arnet_costs
from searchlab.methods.arnet.config import ARNetConfig
from searchlab.methods.arnet.model import ARNet, resize_frames
from searchlab.models import select_actions

__all__ = ["DeployedARNet", "StepwiseResult", "VideoPrediction", "decode_video", "load_arnet_bundle", "stepwise_infer"]

#: read(step, rows) -> ImageNet-normalised frames (len(rows), 3, S, S) of those clips at that step.
FrameReader = Callable[[int, Tensor], Tensor]


class StepwiseResult(NamedTuple):
    logits: Tensor  # (N, C) video logits, as ARNet.infer
    actions: Tensor  # (N, T, |A|) one-hot actions taken, as ARNet.infer
    frames_read: int  # (clip, step) frames the loop asked ``read`` for


class VideoPrediction(NamedTuple):
    probabilities: Tensor  # (1, C): softmax of each view's logits, averaged over the views
    actions: Tensor  # (V, T, |A|): one-hot actions of each of the V = data.eval_clips × data.eval_crops views
    frames_decoded: int  # distinct video frames decoded


@torch.no_grad()
def stepwise_infer(
    model: ARNet,
    read: FrameReader,
    *,
    batch: int,
    steps: int,
    mode: str = "argmax",
    actions: Tensor | None = None,
    decode_skipped: bool = True,
) -> StepwiseResult:
    """``ARNet.infer`` as a loop over frames that asks ``read`` for frame t only when it needs it.

    With ``decode_skipped`` (the trained semantics) the result equals ``model.infer`` on the whole
    clip: the policy runs on every frame (``read`` is called for every step and clip), the skip rule
    of ``decisions.run_decisions`` is applied step by step, and each backbone then runs once on the
    frames that chose its resolution, in the same order as ``infer``. Without it, a clip inside a
    skip window is not read and its LSTM state is held whole (h and c). ``actions`` (N, T, |A|)
    replays given decisions, as ``ARNet.infer(actions=...)`` does. ``model`` must be in eval mode.
    """
    layout, policy = model.layout, model.policy
    if actions is not None and tuple(actions.shape) != (batch, steps, layout.num_actions):
        raise ValueError(f"actions must be (N, T, |A|)={(batch, steps, layout.num_actions)}, got {tuple(actions.shape)}")
    device = next(model.parameters()).device
    lengths = layout.skip_lengths(device)
    remain = torch.zeros(batch, dtype=torch.int64, device=device)
    everyone = torch.arange(batch, device=device)
    state: tuple[Tensor, Tensor] | None = None
    previous: tuple[Tensor, Tensor] | None = None  # (actions, h) of the previous step
    taken, hidden = [], []
    kept: dict[tuple[int, int], Tensor] = {}  # (clip, step) -> frame, for the frames a backbone needs
    frames_read = 0
    for step in range(steps):
        held = remain > 0
        rows = everyone if decode_skipped or previous is None else everyone[~held]
        if len(rows):
            frames = read(step, rows).to(device)
            frames_read += len(rows)
            small = resize_frames(frames, policy.input_size, mode=model.resize_mode)
            features = policy.extract(small.unsqueeze(1))[:, 0]
            if len(rows) == batch:
                logits, (h, c) = policy.step(features, state)
            else:  # only the clips outside a skip window step; the others keep (h, c)
                assert state is not None  # a window starts at step 1 at the earliest
                logits_rows, (h_rows, c_rows) = policy.step(features, (state[0][rows], state[1][rows]))
                h, c = state[0].clone(), state[1].clone()
                h[rows], c[rows] = h_rows, c_rows
                logits = logits_rows.new_zeros(batch, layout.num_actions)
                logits[rows] = logits_rows
        else:
            assert state is not None
            frames, (h, c) = None, state
            logits = h.new_zeros(batch, layout.num_actions)
        chosen = actions[:, step].to(logits.dtype) if actions is not None else select_actions(logits, mode=mode)
        if previous is not None:
            hold = held.to(chosen.dtype).unsqueeze(1)
            chosen = previous[0] * hold + chosen * (1 - hold)
            h = previous[1] * hold.to(h.dtype) + h * (1 - hold.to(h.dtype))
        index = chosen.argmax(dim=-1)
        remain = torch.where(remain == 0, lengths[index], remain)
        remain = (remain - 1).clamp_min(0)
        state, previous = (h, c), (chosen, h)
        taken.append(chosen)
        hidden.append(h)
        if frames is not None:
            for position, row in enumerate(rows.tolist()):
                if int(index[row]) < layout.num_resolutions:
                    kept[(row, step)] = frames[position]
    all_actions = torch.stack(taken, dim=1)
    t = all_actions.shape[1]
    logits = model.fuse_chosen(all_actions, torch.stack(hidden, dim=1),
                               lambda rows: torch.stack([kept[divmod(int(row), t)] for row in rows]))
    return StepwiseResult(logits, all_actions, frames_read)


@dataclass
class DeployedARNet:
    """An AR-Net ready for inference: the policy picks each frame's resolution, the head or a skip,
    then only the chosen backbones run (skipped and head frames run no backbone)."""

    model: ARNet
    arnet: ARNetConfig
    data: DataConfig
    class_names: tuple[str, ...]
    card: dict = field(default_factory=dict)
    #: The trial's whole configuration (searchlab.config.TrialConfig) when loaded from a bundle.
    config: Any = None

    @torch.no_grad()
    def predict(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """frames (N, T, 3, S, S), ImageNet-normalised -> (class probabilities (N, C), actions (N, T, |A|))."""
        self.check_input(frames)
        logits, actions = self.model.infer(frames, mode=self.arnet.eval_mode)
        return logits.softmax(dim=-1), actions

    def check_input(self, frames: Tensor) -> None:
        """The input contract the network was trained and evaluated with (clips at the top resolution;
        lower resolutions are made inside the network); a ValueError says what differs."""
        check_clip(frames, frames_per_clip=self.data.frames, size=self.data.crop_size)

    @torch.no_grad()
    def predict_video(
        self, path: str | Path, *, decode_skipped: bool = True, size: tuple[int, int] | None = None
    ) -> VideoPrediction:
        """Decode ``path`` lazily, frame by frame, and classify it (see the module docstring).

        ``size`` (width, height) is the video's full frame size as a manifest records it; without it
        the container's header is read. It sets the reduced size decord decodes at, as evaluation does.
        """
        video = open_eval_video(path, self.data, size)
        device = next(self.model.parameters()).device

        def read(step: int, rows: Tensor) -> Tensor:
            return video.frames_at(step, rows.tolist()).to(device)

        result = stepwise_infer(self.model, read, batch=len(video.indices), steps=self.data.frames,
                                mode=self.arnet.eval_mode, decode_skipped=decode_skipped)
        probabilities = result.logits.softmax(dim=-1).mean(dim=0, keepdim=True)
        return VideoPrediction(probabilities, result.actions, video.frames_decoded)


def load_arnet_bundle(
    folder: str | Path,
    *,
    arnet: ARNetConfig,
    data: DataConfig,
    class_names: Sequence[str],
    card: dict | None = None,
    device: str | torch.device = "cpu",
    config: Any = None,
) -> DeployedARNet:
    """The AR-Net of ``folder/arnet.pt`` (loaded with weights_only=True), in eval mode on ``device``.

    Pretrained-weight paths in ``arnet`` are ignored (the bundle's weights replace them; the files
    need not exist where the bundle is deployed). A missing, damaged or mismatched weights file
    raises ``BundleError`` (a ValueError) naming it.
    """
    path = Path(folder) / MODEL_FILE
    again = "export the bundle again with `python -m searchlab.pick`"
    if not path.is_file():
        raise BundleError(f"{path} is missing: the folder is not an AR-Net bundle; {again}")
    if not class_names:
        raise ValueError("class_names is empty; pass the bundle's classes.json list")
    bare = arnet.model_copy(update={"backbone_pretrained": (), "policy_pretrained": None})
    with torch.random.fork_rng(devices=[]):  # fresh weights are overwritten; keep the caller's generator
        model = build_model(bare, num_classes=len(class_names))
    load_weights(model, path)
    model = model.to(device).eval()
    if config is not None and config.inference.cost_bias != 0:  # the bundle's operating point (a point of its trial's curve)
        model.set_cost_bias(config.inference.cost_bias, action_gflops=arnet_costs(model).action_gflops)
    return DeployedARNet(model=model, arnet=arnet, data=data, class_names=tuple(class_names), card=dict(card or {}),
                         config=config)
