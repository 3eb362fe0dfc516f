"""AR-Net's configuration section (METHODS.md §2): every knob with the paper's default.

``ARNetConfig`` is the ``arnet`` section of a trial configuration. It is frozen and forbids unknown
keys (a typo must not pass silently), and it checks the rules that span fields (one backbone per
resolution, resolutions descending and distinct, skips positive and distinct, registered backbone
names) at load time, listing every problem at once with its fix.

Actions, in the order the policy's outputs use (``action_names``): one per resolution (that
resolution's backbone runs on the frame), then "head<policy_input_size>" when ``use_84`` (the
frame's logits come from a linear head on the policy's LSTM state), then one skip-k per entry of
``skips``. The paper: res224, res168, res112, head84, skip1, skip2, skip4.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from searchlab.sections import Strict as _Strict, TemperatureConfig

__all__ = [
    "ARNetConfig",
    "FinetuneRecipe",
    "JointRecipe",
    "OFFICIAL_ACTION_WEIGHTS",
    "PAPER_JOINT_RATE",
    "PAPER_FINETUNE_TAU0",
    "BackboneRecipe",
    "StageRecipe",
    "action_names",
    "paper_starting_point",
]

#: The official code's fixed efficiency weights for the paper's seven actions; action k weighs
#: 4·2^−k, which is how ``efficiency_cost: official`` extends them to any number of actions.
OFFICIAL_ACTION_WEIGHTS: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5, 0.25, 0.125, 0.0625)
#: τ_e = 5·exp(−0.045·e) in stage 2 (per epoch): the exponential kind's rate is exp(−0.045).
PAPER_JOINT_RATE: float = math.exp(-0.045)
#: Stage 3 starts where 46 epochs of that curve end (5·exp(−0.045·46) ≈ 0.6309) and keeps decaying.
PAPER_FINETUNE_TAU0: float = 0.6309

Side = Annotated[int, Field(ge=8, le=2048)]


class StageRecipe(_Strict):
    """Constant-lr SGD of one stage (AR-Net uses no lr schedule)."""

    lr: float = Field(gt=0)
    epochs: int = Field(ge=1, le=10_000)
    batch_size: int = Field(48, ge=1, le=4096, description="clips per worker and step (paper: 48)")
    checkpoint_every: int = Field(1, ge=1, le=10_000, description="epochs between resumable checkpoints")


def _temperature(tau0: float) -> TemperatureConfig:
    return TemperatureConfig(kind="exponential", tau0=tau0, rate=PAPER_JOINT_RATE, per="epoch")


class JointRecipe(StageRecipe):
    """Stage 2: policy + backbones trained together; τ_e = 5·exp(−0.045·e)."""

    lr: float = Field(0.001, gt=0)
    epochs: int = Field(50, ge=1, le=10_000)
    temperature: TemperatureConfig = Field(default_factory=lambda: _temperature(5.0))


class FinetuneRecipe(StageRecipe):
    """Stage 3: backbones fine-tuned under the frozen policy; τ from 0.6309, still decaying."""

    lr: float = Field(0.0005, gt=0)
    epochs: int = Field(50, ge=1, le=10_000)
    temperature: TemperatureConfig = Field(default_factory=lambda: _temperature(PAPER_FINETUNE_TAU0))


class BackboneRecipe(StageRecipe):
    """Stage 1: each (backbone, resolution) trained alone as a TSN classifier."""

    lr: float = Field(0.02, gt=0)
    epochs: int = Field(10, ge=1, le=10_000)


class ARNetConfig(_Strict):
    """The ``arnet`` section. Defaults are the paper's (ResNet-50/34/18 at 224/168/112)."""

    resolutions: tuple[Side, ...] = (224, 168, 112)
    backbones: tuple[str, ...] = ("resnet50", "resnet34", "resnet18")
    backbone_pretrained: tuple[str | None, ...] = Field(
        (), description="torchvision state dict per resolution (None = random init); empty = all random"
    )
    use_84: bool = Field(True, description="offer the action whose logits come from the policy's LSTM state")
    skips: tuple[int, ...] = (1, 2, 4)
    resize_mode: Literal["nearest", "bilinear", "antialiased"] = "nearest"
    policy_input_size: int = Field(84, ge=16, le=2048)
    policy_hidden: int = Field(512, ge=1, le=16_384)
    policy_width_mult: float = Field(1.0, gt=0, le=4.0)
    policy_pretrained: str | None = Field(None, description="MobileNetV2 state dict for the policy's features")
    dropout: float = Field(0.5, ge=0, lt=1)
    w_acc: float = Field(0.95, ge=0)
    w_eff: float = Field(0.05, ge=0)
    lambda_u: float = Field(3.0, ge=0)
    efficiency_cost: Literal["flops", "official"] = Field(
        "flops", description="G_a: GFLOPs per frame of the action's backbone, or the code's weights 4·2^-k"
    )
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    grad_clip: float = Field(20.0, gt=0, description="max global gradient norm")
    linear_lr_mult: float = Field(5.0, gt=0, description="lr factor of nn.Linear weights")
    linear_bias_lr_mult: float = Field(10.0, gt=0, description="lr factor of nn.Linear biases (no weight decay)")
    eval_mode: Literal["argmax", "sample"] = "argmax"
    backbone_stage: BackboneRecipe = BackboneRecipe()
    joint_stage: JointRecipe = JointRecipe()
    finetune_stage: FinetuneRecipe = FinetuneRecipe()

    @model_validator(mode="after")
    def _cross_checks(self) -> ARNetConfig:
        problems = _problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def num_actions(self) -> int:
        return len(self.resolutions) + int(self.use_84) + len(self.skips)

    def action_names(self) -> tuple[str, ...]:
        return action_names(resolutions=self.resolutions, use_84=self.use_84,
                            policy_input_size=self.policy_input_size, skips=self.skips)


def action_names(
    *, resolutions: tuple[int, ...], use_84: bool, policy_input_size: int, skips: tuple[int, ...]
) -> tuple[str, ...]:
    """Names of the actions in policy-output order: res<r>..., head<p>, skip<k>..."""
    head = (f"head{policy_input_size}",) if use_84 else ()
    return (*(f"res{r}" for r in resolutions), *head, *(f"skip{k}" for k in skips))


def _problems(config: ARNetConfig) -> list[str]:
    from searchlab.models.registry import list_backbones  # imports torchvision

    problems = []
    res, nets = list(config.resolutions), list(config.backbones)
    if not res:
        problems.append("resolutions is empty; give at least one, e.g. [224, 168, 112]")
    if len(res) != len(nets):
        problems.append(f"resolutions {res} and backbones {nets} differ in length; give one backbone per resolution")
    if len(set(res)) != len(res) or res != sorted(res, reverse=True):
        problems.append(f"resolutions {res} must be distinct and descending (highest first), e.g. [224, 168, 112]")
    known = list_backbones()
    unknown = [n for n in nets if n not in known]
    if unknown:
        problems.append(f"backbones {unknown} are not registered; choose from {', '.join(known)}")
    if config.backbone_pretrained and len(config.backbone_pretrained) != len(res):
        problems.append(f"backbone_pretrained has {len(config.backbone_pretrained)} entries for {len(res)} "
                        "resolutions; give one path (or null) per resolution, or [] for random initialisation")
    skips = list(config.skips)
    if any(k < 1 for k in skips) or len(set(skips)) != len(skips):
        problems.append(f"skips {skips} must be distinct positive frame counts, e.g. [1, 2, 4] (or [] for no skipping)")
    if config.num_actions < 2:
        problems.append("the policy needs at least two actions; add a resolution, set use_84: true or add skips")
    return problems


def paper_starting_point() -> dict[str, Any]:
    """The paper's values of the searchable knobs, as dotted keys of the ``arnet`` section
    (a sweep's first trial; METHODS.md §2)."""
    return {
        "resolutions": [224, 168, 112],
        "backbones": ["resnet50", "resnet34", "resnet18"],
        "use_84": True,
        "skips": [1, 2, 4],
        "resize_mode": "nearest",
        "w_acc": 0.95,
        "w_eff": 0.05,
        "lambda_u": 3.0,
        "efficiency_cost": "flops",
        "joint_stage.lr": 0.001,
        "joint_stage.temperature": {"kind": "exponential", "tau0": 5.0, "rate": PAPER_JOINT_RATE, "per": "epoch"},
        "finetune_stage.lr": 0.0005,
        "finetune_stage.temperature": {"kind": "exponential", "tau0": PAPER_FINETUNE_TAU0,
                                       "rate": PAPER_JOINT_RATE, "per": "epoch"},
    }
