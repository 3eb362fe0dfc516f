"""VA-RED²'s configuration section (METHODS.md §3): every knob with the thesis's default.

``VaredConfig`` is the ``vared`` section of a trial configuration. The thesis leaves several details
open; each is a field here, with the default METHODS.md names:

* ``gate_hidden``: the gate's hidden size D_h (None = max(C_in·T/4, 16));
* ``beta_init``: β's initial value, positive so that every alternative starts on;
* ``cheap_op``: the form of Φ^c and Φ^t ("depthwise": a per-channel 1×1 linear map with bias,
  initialised to copy; "copy": the computed channels/frames repeated, no parameters);
* ``zero_gate``: a sample whose gate weights in a dimension are all zero ("cheapest": it computes
  that dimension's cheapest alternative at weight 1; "zero": the layer's output is zero);
* ``dynamic_init``: the dynamic network starts from random weights ("scratch", the thesis trains it
  from scratch) or from the trained base network ("base": its convolutions become the full kernels,
  the gates and cheap ops start fresh; a short recipe then suffices, as in the demo);
* ``surrogate``: the differentiable stand-in for r^s/R^s in L_e ("expected": the gate-weighted
  expected ratio; "largest": the exact piecewise-constant ratio, which passes no gradient to the gates);
* the counting convention: fvcore multiply-accumulates, gates and cheap ops included.

Frames and resolution are the data section's ``frames`` and ``crop_size`` (a gate's first layer
reads C_in·T features, so a network is tied to the clip length it was trained with). The learning
rates are the thesis's for its global batch of ``lr_batch`` clips and are scaled linearly to this
run's ``batch_size × workers``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from searchlab.sections import Strict as _Strict

__all__ = [
    "BaseRecipe",
    "DynamicRecipe",
    "FinetuneRecipe",
    "StageRecipe",
    "VaredConfig",
    "alternative_names",
]

class StageRecipe(_Strict):
    """SGD (Nesterov momentum) with a linear warm-up, then a cosine decay, stepped per iteration."""

    lr: float = Field(gt=0, description="lr for a global batch of vared.lr_batch clips (scaled linearly)")
    epochs: int = Field(ge=1, le=10_000)
    warmup_epochs: int = Field(0, ge=0, le=10_000, description="linear warm-up from 0 before the cosine decay")
    batch_size: int = Field(12, ge=2, le=4096, description="clips per worker and step (the thesis: 12; BatchNorm needs >= 2)")
    checkpoint_every: int = Field(1, ge=1, le=10_000, description="epochs between resumable checkpoints")

    @model_validator(mode="after")
    def _warmup_within(self) -> StageRecipe:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs {self.warmup_epochs} must be below epochs {self.epochs}")
        return self


class BaseRecipe(StageRecipe):
    """The base network without gates, trained like the dynamic one (R(2+1)D: 0.18, 120 ep, 15 warm-up)."""

    lr: float = Field(0.18, gt=0)
    epochs: int = Field(120, ge=1, le=10_000)
    warmup_epochs: int = Field(15, ge=0, le=10_000)


class DynamicRecipe(StageRecipe):
    """Stage (a): the dynamic network with its gates on and no efficiency loss."""

    lr: float = Field(0.18, gt=0)
    epochs: int = Field(120, ge=1, le=10_000)
    warmup_epochs: int = Field(15, ge=0, le=10_000)


class FinetuneRecipe(StageRecipe):
    """Stage (b): fine-tuning with L = L_acc + λ_e·L_e (R(2+1)D: lr 0.01, 40 epochs)."""

    lr: float = Field(0.01, gt=0)
    epochs: int = Field(40, ge=1, le=10_000)


class VaredConfig(_Strict):
    """The ``vared`` section. Defaults: R(2+1)D-18 on Mini-Kinetics/Kinetics (thesis §4.3)."""

    backbone: str = Field("r2plus1d_18", description="r2plus1d_18/r2plus1d_10 (3D) or a registered 2D ResNet (TSN)")
    gated: Literal["spatial", "all"] = Field(
        "spatial", description="which convs are gated: the residual blocks' spatial ones, or every one of them"
    )
    temporal_options: Literal[1, 2, 3] = Field(2, description="S_t: temporal alternatives (1 = dimension off)")
    channel_options: Literal[1, 2, 3] = Field(2, description="S_c: channel alternatives (1 = dimension off)")
    gate_hidden: int | None = Field(None, ge=1, le=65_536, description="gate hidden size D_h; null = max(C_in·T/4, 16)")
    beta_init: float = Field(1.0, ge=-10, le=10, description="initial β of every gate (positive: all alternatives on)")
    cheap_op: Literal["depthwise", "copy"] = Field("depthwise", description="form of the cheap ops Φ^c and Φ^t")
    zero_gate: Literal["cheapest", "zero"] = Field(
        "cheapest", description="an all-zero gate: compute the cheapest alternative, or output zero"
    )
    dynamic_init: Literal["scratch", "base"] = Field(
        "scratch", description="the dynamic network's start: random (the thesis), or the trained base network's weights"
    )
    calibration_batches: int = Field(
        16, ge=0, le=10_000,
        description="training batches re-estimating each forced-alternative baseline's BatchNorm statistics (0: none)",
    )
    lambda_e: float = Field(0.8, ge=0, description="weight λ_e of the efficiency loss in fine-tuning")
    surrogate: Literal["expected", "largest"] = Field(
        "expected", description="differentiable stand-in for r^s/R^s in L_e"
    )
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    lr_batch: int = Field(1152, ge=1, description="global batch the stage lrs are given for (thesis: 12 clips × 96 GPUs)")
    base_stage: BaseRecipe = BaseRecipe()
    dynamic_stage: DynamicRecipe = DynamicRecipe()
    finetune_stage: FinetuneRecipe = FinetuneRecipe()

    @model_validator(mode="after")
    def _cross_checks(self) -> VaredConfig:
        problems = _problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def alternative_names(self) -> tuple[str, ...]:
        return alternative_names(temporal_options=self.temporal_options, channel_options=self.channel_options)

    def forced_alternatives(self) -> tuple[tuple[int, int], ...]:
        """The forced-alternative baselines: every gate at index k on each dimension that is on (full,
        1/2 and, when S = 3, 1/4)."""
        levels = max(self.temporal_options, self.channel_options)
        return tuple((min(k, self.temporal_options - 1), min(k, self.channel_options - 1)) for k in range(levels))


def _fraction(denominator: int) -> str:
    return "1" if denominator == 1 else f"1/{denominator}"


def alternative_names(*, temporal_options: int, channel_options: int) -> tuple[str, ...]:
    """Names of a layer's (temporal, channel) alternatives, temporal-major: "t1·c1", "t1·c1/2", ...
    (t1/R: every R-th frame computed; c r: that share of the filters computed)."""
    return tuple(f"t{_fraction(2 ** j)}·c{_fraction(2 ** i)}" for j in range(temporal_options)
                 for i in range(channel_options))


def _problems(config: VaredConfig) -> list[str]:
    from searchlab.models.registry import list_backbones  # imports torchvision
    from searchlab.models.video_resnet import VIDEO_NETWORKS

    problems = []
    known = (*VIDEO_NETWORKS, *list_backbones())
    if config.backbone not in known:
        problems.append(f"backbone {config.backbone!r} is unknown; choose from {', '.join(known)}")
    if config.temporal_options == 1 and config.channel_options == 1:
        problems.append("temporal_options and channel_options are both 1: nothing would be gated; set one of them "
                        "to 2 or 3")
    return problems
