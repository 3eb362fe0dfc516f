"""searchlab.models: any-precision backbones, quantisers and the backbone registry."""

from searchlab.models.anyprec import AnyPrecisionResNet, storage_bits, validate_bit_widths
from searchlab.models.quant import (
    FULL_PRECISION_BITS,
    QuantConv2d,
    QuantLinear,
    SwitchableBatchNorm2d,
    quantize_activation,
    quantize_weight,
)
from searchlab.models.registry import (
    create_backbone,
    create_teacher,
    list_backbones,
    register_backbone,
)

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
]
