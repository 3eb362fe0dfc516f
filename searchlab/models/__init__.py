"""searchlab.models: any-precision backbones, quantisers, the backbone registry and VideoIQ."""

from searchlab.models.anyprec import AnyPrecisionResNet, storage_bits, validate_bit_widths
from searchlab.models.quant import (
    FULL_PRECISION_BITS,
    QuantConv2d,
    QuantLinear,
    SwitchableBatchNorm2d,
    quantize_activation,
    quantize_weight,
)
from searchlab.models.policy import PolicyNetwork, PolicyOutput, cost_offsets, select_actions
from searchlab.models.registry import (
    create_backbone,
    create_teacher,
    list_backbones,
    register_backbone,
)
from searchlab.models.temperature import TemperatureSchedule
from searchlab.models.videoiq import VideoIQ, action_usage, combine_frame_logits, validate_decision_space

__all__ = [
    "FULL_PRECISION_BITS",
    "AnyPrecisionResNet",
    "QuantConv2d",
    "QuantLinear",
    "SwitchableBatchNorm2d",
    "create_backbone",
    "create_teacher",
    "list_backbones",
    "quantize_activation",
    "quantize_weight",
    "register_backbone",
    "storage_bits",
    "validate_bit_widths",
    "PolicyNetwork",
    "PolicyOutput",
    "cost_offsets",
    "select_actions",
    "TemperatureSchedule",
    "VideoIQ",
    "action_usage",
    "combine_frame_logits",
    "validate_decision_space",
]
