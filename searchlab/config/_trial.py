"""One trial's settings: the sections of `TrialConfig` (data, resources, and the sections of its
method: model, teacher, stage1, stage2 for VideoIQ; arnet for AR-Net; vared for VA-RED²), their cross-section checks,
and parsing a tree into one."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from searchlab.config._dotted import set_dotted
from searchlab.config._errors import ConfigError, _format_pydantic
from searchlab.config._limits import (
    MAX_BATCH,
    MAX_COST_BIAS,
    MAX_CONCURRENT,
    MAX_DENSE_WINDOW,
    MAX_EPOCHS,
    MAX_FRAME_STRIDE,
    MAX_FRAMES,
    MAX_SIDE,
    MAX_VIEWS,
    Seed,
    Side,
)
from searchlab.methods.arnet.config import ARNetConfig
from searchlab.methods.vared.config import VaredConfig
from searchlab.sections import Strict as _Strict, TemperatureConfig, _official_temperature


# Folders under `storage` that are not run directories: the stage cache every sweep there shares
# (CACHE_DIR_NAME of searchlab.pipeline and searchlab.run_dir, which a test keeps equal).
RESERVED_RUN_NAMES = ("cache",)
# The `python -m searchlab.data.prepare` subcommands (a test keeps them equal).
DataSource = Literal["synthetic", "activitynet", "fcvid", "minisports", "minikinetics", "kinetics", "mit"]


class SyntheticData(_Strict):
    """Knobs of the embedded synthetic data set, generated when the manifest is missing."""

    classes: int = Field(8, ge=2)
    train_per_class: int = Field(24, ge=1, le=100_000)
    val_per_class: int = Field(8, ge=1, le=100_000)
    frames: int = Field(32, ge=2, le=8 * MAX_FRAMES)
    fps: float = Field(8.0, gt=0, le=1_000)
    size: int = Field(64, ge=16, le=MAX_SIDE)
    seed: Seed = 0
    multi_label: bool = False
    fine_contrast: float = Field(0.6, gt=0, le=1, description="stripe contrast of the fine classes")

    @model_validator(mode="after")
    def _generator_accepts(self) -> SyntheticData:
        """The generator's own checks (e.g. even sizes, enough distinct looks), at load time."""
        from searchlab.data.synthetic import SyntheticConfig  # imports PyAV

        knobs = SyntheticConfig(
            num_classes=self.classes, train_per_class=self.train_per_class, val_per_class=self.val_per_class,
            num_frames=self.frames, fps=self.fps, size=self.size, seed=self.seed, multi_label=self.multi_label,
            fine_contrast=self.fine_contrast,
        )
        problems = knobs.problems()
        if problems:  # the generator names two knobs differently; say the sweep file's names
            renamed = [re.sub(r"\bnum_(classes|frames)=", r"\1=", problem) for problem in problems]
            raise ValueError("\n".join(renamed))
        return self


class DataConfig(_Strict):
    manifest: str
    source: DataSource = Field("synthetic", description="prepare subcommand that makes the manifest")
    root: str | None = None  # data root the manifest's paths are relative to; default: its folder
    synthetic: SyntheticData | None = None
    frames: int = Field(16, ge=1, le=MAX_FRAMES, description="T, frames sampled per clip (see sampling)")
    sampling: Literal["tsn", "dense"] = Field(
        "tsn", description="how a clip's T frames are chosen: tsn = one per equal segment of the whole video "
        "(2D backbones over frames); dense = T consecutive frames every frame_stride frames (3D backbones), at a "
        "random start in training and eval_clips evenly spaced starts in evaluation")
    frame_stride: int = Field(
        1, ge=1, le=MAX_FRAME_STRIDE, description="dense sampling: video frames from one sampled frame to the "
        "next; a clip spans (frames - 1) * frame_stride + 1 frames (tsn: must stay 1)")
    train_scale: tuple[Side, Side] = (256, 320)
    crop_size: Side = 224
    eval_short_side: Side = 256
    eval_clips: int = Field(1, ge=1, le=MAX_VIEWS, description="clips per video at evaluation (K)")
    eval_crops: int = Field(
        1, description="crops per evaluation clip: 1 = centre; 3 = left/centre/right along the long side "
        "(top/centre/bottom for portrait videos); a video is scored on eval_clips * eval_crops views")
    loader_workers: int = Field(2, ge=0, le=MAX_CONCURRENT)
    max_failure_fraction: float = Field(0.05, ge=0, le=1)
    metric: Literal["auto", "map", "top1"] = Field(
        "auto", description="accuracy metric; auto = mAP for multi-label manifests, top-1 otherwise"
    )

    @model_validator(mode="after")
    def _sizes_consistent(self) -> DataConfig:
        low, high = self.train_scale
        if not 0 < low < high:
            raise ValueError(f"train_scale {list(self.train_scale)} must be [low, high) with 0 < low < high")
        if self.crop_size > low or self.crop_size > self.eval_short_side:
            raise ValueError(
                f"crop_size {self.crop_size} exceeds train_scale low {low} or eval_short_side "
                f"{self.eval_short_side}; lower crop_size or raise the scales"
            )
        return self

    @field_validator("eval_crops")
    @classmethod
    def _crops_known(cls, crops: int) -> int:
        if crops not in (1, 3):
            raise ValueError(f"eval_crops {crops}: use 1 (the centre crop) or 3 (left/centre/right crops along the long side)")
        return crops

    @model_validator(mode="after")
    def _sampling_consistent(self) -> DataConfig:
        """A frame_stride that tsn ignores, or a dense window longer than the limit or than every
        synthetic video (each clip would repeat the last frame), is a mistake, named with its fix."""
        from searchlab.data.video import dense_window  # imports decord

        if self.sampling == "tsn":
            if self.frame_stride != 1:
                raise ValueError(f"frame_stride {self.frame_stride} applies to dense sampling only, and sampling is "
                                 "tsn: set sampling: dense, or remove frame_stride")
            return self
        window = dense_window(self.frames, self.frame_stride)
        clip = f"a dense clip of frames {self.frames} at frame_stride {self.frame_stride} spans {window} video frames"
        if window > MAX_DENSE_WINDOW:
            raise ValueError(f"{clip}, above the limit {MAX_DENSE_WINDOW}; lower frame_stride or frames")
        if self.synthetic is not None and window > self.synthetic.frames:
            available = self.synthetic.frames
            widest = (available - 1) // (self.frames - 1)  # frames > 1 here: one frame always fits
            fix = f"lower frame_stride to at most {widest}" if widest >= 1 else f"lower frames to at most {available}"
            raise ValueError(f"{clip}, but the synthetic videos have {available}: {fix}, or raise synthetic.frames")
        return self

    @property
    def eval_views(self) -> int:
        """Views per video at evaluation: eval_clips clips × eval_crops crops (each one forward pass)."""
        return self.eval_clips * self.eval_crops


class ModelConfig(_Strict):
    backbone: str = "resnet50"
    bit_widths: tuple[int, ...] = (32, 4, 2)
    pretrained: str | None = None  # torchvision state dict (.pt) on disk for the backbone
    policy_input_size: int = Field(84, ge=16, le=MAX_SIDE)
    policy_hidden: int = Field(512, ge=1, le=16_384)
    policy_width_mult: float = Field(1.0, gt=0, le=4.0)
    policy_pretrained: str | None = None  # MobileNetV2 state dict on disk

    @field_validator("backbone")
    @classmethod
    def _registered(cls, backbone: str) -> str:
        from searchlab.models.registry import list_backbones  # imports torchvision

        known = list_backbones()
        if backbone not in known:
            raise ValueError(f"unknown backbone {backbone!r}; registered (searchlab.models.registry): {', '.join(known)}")
        return backbone

    @field_validator("bit_widths")
    @classmethod
    def _bits_valid(cls, bits: tuple[int, ...]) -> tuple[int, ...]:
        bad = [b for b in bits if not 1 <= b <= 32]
        if bad or len(set(bits)) != len(bits) or not bits:
            raise ValueError(f"bit_widths {list(bits)} must be distinct integers in 1..32, e.g. [32, 4, 2]")
        return tuple(sorted(bits, reverse=True))


class OptimConfig(_Strict):
    epochs: int = Field(ge=1, le=MAX_EPOCHS)
    lr: float = Field(gt=0)
    batch_size: int = Field(8, ge=1, le=MAX_BATCH)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    checkpoint_every: int = Field(1, ge=1, le=MAX_EPOCHS, description="epochs between resumable checkpoints (the last is always saved)")


class TeacherConfig(OptimConfig):
    """Full-precision network and the policy's feature extractor, trained on the same data."""

    epochs: int = Field(10, ge=1, le=MAX_EPOCHS)
    lr: float = Field(0.01, gt=0)
    policy_epochs: int = Field(5, ge=0, le=MAX_EPOCHS)
    policy_target: Literal["distill", "labels"] = Field(
        "distill", description="MobileNetV2 pretraining target: the teacher's per-frame predictions, or video labels"
    )


class AlphaConfig(_Strict):
    """PACT clip values: initial value, and a learning rate and weight decay per bit-width."""

    init: float = Field(2.0, gt=0)
    lr: dict[int, Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: {32: 0.1, 4: 0.1, 2: 0.01})
    wd: dict[int, Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: {32: 5e-4, 4: 5e-4, 2: 6e-2})


class Stage1Config(OptimConfig):
    epochs: int = Field(100, ge=1, le=MAX_EPOCHS)
    lr: float = Field(0.01, gt=0)
    kd_weight: float = Field(1.0, ge=0)
    alpha: AlphaConfig = AlphaConfig()


class Stage2Config(OptimConfig):
    epochs: int = Field(50, ge=1, le=MAX_EPOCHS)
    lr: float = Field(0.01, gt=0, description="LSTM and fc learning rate")
    lr_body: float = Field(1e-4, ge=0, description="MobileNetV2 body learning rate; 0 freezes it")
    decision_space: tuple[int, ...] = (32, 4, 2, 0)
    w1: float = Field(0.21, ge=0, description="efficiency loss weight")
    efficiency_cost: Literal["flops", "official"] = Field(
        "flops", description="L_e's per-action cost: exact FLOPs / top precision's, or official min(b,8)^2/64"
    )
    w2: float = Field(0.5, ge=0, description="balanced-usage loss weight")
    w3: float = Field(0.1, ge=0, description="decisiveness (entropy) loss weight")
    kd_weight: float = Field(1.0, ge=0)
    temperature: TemperatureConfig = Field(default_factory=_official_temperature)
    eval_mode: Literal["argmax", "sample"] = "argmax"
    cached_views: int = Field(2, ge=1, le=MAX_VIEWS, description="fixed augmentation views per training clip in the cache")


class ResourcesConfig(_Strict):
    workers: int = Field(1, ge=1, le=MAX_CONCURRENT, description="Ray Train workers per stage")
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0, le=256)
    gpus_per_worker: float = Field(0.0, ge=0, le=16)
    launch: Literal["auto", "distributed", "local"] = Field(
        "auto", description="how a stage runs: under Ray Train's TorchTrainer (distributed), in the trial's own "
        "process (local), or auto: local for a per-trial stage with one CPU worker run inside a sweep's trial, "
        "distributed otherwise (searchlab.train.launch.launch_mode)")

    @model_validator(mode="after")
    def _gpus_used(self) -> ResourcesConfig:
        if self.gpus_per_worker > 0 and not self.use_gpu:
            raise ValueError(
                f"gpus_per_worker {self.gpus_per_worker:g} would be ignored: use_gpu is false; set use_gpu: true "
                "to train on GPUs, or gpus_per_worker: 0"
            )
        if self.launch == "local" and (self.workers > 1 or self.use_gpu):
            raise ValueError(
                f"launch: local runs a stage in the trial's own process, one worker on CPU (Ray gives that process "
                f"no GPU); this has workers {self.workers} and use_gpu {str(self.use_gpu).lower()}: use launch: "
                "distributed (or auto)"
            )
        return self


class InferenceConfig(_Strict):
    """The operating point of a trained network: an inference-time knob every method has, turned
    without retraining (a trial's curve, `search.curve`; a bundle picked from a curve carries its value)."""

    cost_bias: float = Field(
        0.0, ge=-MAX_COST_BIAS, le=MAX_COST_BIAS,
        description="λ: each decision's relative cost (the most expensive = 1) times λ is subtracted from the "
        "policy's logits (VideoIQ, AR-Net) or from the gates' pre-activations (VA-RED²) before deciding; "
        "0 is the network as trained, > 0 cheaper, < 0 costlier")


#: The configuration sections of each method (searchlab.methods' registry names the same methods).
#: VideoIQ's sections are always present (with defaults), so that its dotted keys stay as they were;
#: another method's section is present only in that method's trials.
METHOD_SECTIONS: dict[str, tuple[str, ...]] = {
    "videoiq": ("model", "teacher", "stage1", "stage2"),
    "arnet": ("arnet",),
    "vared": ("vared",),
}
MethodName = Literal["videoiq", "arnet", "vared"]


class TrialConfig(_Strict):
    name: str = "trial"
    method: MethodName = Field("videoiq", description="the method trained and searched (searchlab.methods)")
    seed: Seed = 0
    data: DataConfig
    model: ModelConfig = ModelConfig()
    teacher: TeacherConfig = TeacherConfig()
    stage1: Stage1Config = Stage1Config()
    stage2: Stage2Config = Stage2Config()
    arnet: ARNetConfig | None = Field(None, description="AR-Net's section (method: arnet); defaults when omitted")
    vared: VaredConfig | None = Field(None, description="VA-RED²'s section (method: vared); defaults when omitted")
    resources: ResourcesConfig = ResourcesConfig()
    inference: InferenceConfig = InferenceConfig()

    @model_validator(mode="before")
    @classmethod
    def _method_section_present(cls, tree: Any) -> Any:
        """A method's own section defaults to its defaults, as VideoIQ's sections do."""
        if isinstance(tree, dict) and tree.get("method") in METHOD_SECTIONS and tree.get("method") != "videoiq":
            missing = {section: {} for section in METHOD_SECTIONS[tree["method"]] if tree.get(section) is None}
            return {**tree, **missing}
        return tree

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if name in ("", ".", "..") or any(c in name for c in "/\\\0") or name != name.strip():
            raise ValueError(
                f"name {name!r} must be a plain folder name, since the run directory is storage/name: not "
                "empty, not . or .., no / or \\, no surrounding spaces; e.g. anet-videoiq-r50"
            )
        if name in RESERVED_RUN_NAMES:
            raise ValueError(
                f"name {name!r} is the folder of the stage cache that every sweep in storage shares; choose another name"
            )
        return name

    @model_validator(mode="after")
    def _cross_checks(self) -> TrialConfig:
        problems = cross_check_trial(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def with_overrides(self, overrides: dict[str, Any]) -> TrialConfig:
        """A new config with dotted keys replaced, validated again (raises ConfigError)."""
        tree = self.model_dump(mode="python")
        problems = []
        for key, value in overrides.items():
            problem = set_dotted(tree, key, value)
            if problem:
                problems.append(problem)
        if problems:
            raise ConfigError("overrides", problems)
        return parse_trial_config(tree, source="overrides")


def cross_check_trial(config: TrialConfig) -> list[str]:
    """Checks that span sections: only the method's own sections are set; VideoIQ's decision space
    against its trained bit-widths, α per bit."""
    problems = _foreign_section_problems(config)
    if config.method == "videoiq":
        problems += _decision_space_problems(config.model, config.stage2) + _alpha_problems(config.model, config.stage1)
    return problems


def _foreign_section_problems(config: TrialConfig) -> list[str]:
    """Settings of another method's section would be silently ignored: name them instead."""
    problems = []
    for method, sections in METHOD_SECTIONS.items():
        if method == config.method:
            continue
        for section in sections:
            value = getattr(config, section)
            default = type(config).model_fields[section].get_default(call_default_factory=True)
            if value is not None and value != default:
                problems.append(f"{section}: configures method {method}, but this trial's method is {config.method}; "
                                f"remove the {section} section or set method: {method}")
    return problems


def _decision_space_problems(model: ModelConfig, stage2: Stage2Config) -> list[str]:
    problems = []
    bits = model.bit_widths
    space = stage2.decision_space
    if bits[0] not in space:
        problems.append(
            f"stage2.decision_space {list(space)} must contain the top bit-width {bits[0]} of model.bit_widths"
        )
    unknown = [b for b in space if b != 0 and b not in bits]
    if unknown:
        problems.append(
            f"stage2.decision_space has {unknown} not in model.bit_widths {list(bits)}; "
            "use trained bit-widths or 0 (skip)"
        )
    if len(set(space)) != len(space):
        problems.append(f"stage2.decision_space {list(space)} has duplicates")
    return problems


def _alpha_problems(model: ModelConfig, stage1: Stage1Config) -> list[str]:
    problems = []
    for field in ("lr", "wd"):
        missing = [b for b in model.bit_widths if b not in getattr(stage1.alpha, field)]
        if missing:
            problems.append(f"stage1.alpha.{field} lacks bit-widths {missing}; give one value per bit-width")
    return problems


def parse_trial_config(tree: dict[str, Any], *, source: str, prefix: str = "") -> TrialConfig:
    try:
        return TrialConfig.model_validate(tree)
    except ValidationError as error:
        raise ConfigError(source, _format_pydantic(error, prefix)) from None


def _trial_problem(base: TrialConfig, overrides: dict[str, Any]) -> str | None:
    try:
        base.with_overrides(overrides)
    except ConfigError as error:
        return "; ".join(error.problems)
    return None
