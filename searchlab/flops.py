"""Compute and memory accounting (METHODS.md §1.4), counted with fvcore.

FLOPs are multiply-accumulates (fvcore's convention: torchvision ResNet-50 at 224 px is 4.11 G per
frame, BatchNorm included). Per-layer counts come from fvcore's per-module analysis of the network
at 32 bits, where every quantised layer is a plain conv (no custom autograd Function in the graph).

Priced networks (``list_networks()``): every registered backbone (any-precision ResNets, which
VideoIQ runs at any bit-width of B), ``mobilenet_v2``, torchvision's MobileNetV2 with a width
multiplier (the policy network's body, and AR-Net's 84-px network), and the R(2+1)D video networks
(``searchlab.models.video_resnet``, VA-RED²'s 3D backbones). searchlab never quantises MobileNetV2 or
R(2+1)D, so they are priced at 32 bits only: any other bit-width is an error rather than a figure for
a network that does not exist.

2D networks are counted per frame (one frame traced; a video costs frames × that); the 3D video
networks per clip (the whole clip traced once: their temporal convolutions and strides see it all),
``clip_layer_macs`` / ``network_gflops_per_clip``.

A layer quantised to b bits costs ``min(b·b/64, 1)`` of its MACs:

* ``"exact"`` (default): only the quantised convs/linears (``QuantConv2d``/``QuantLinear``) get the
  reduced rate; the first conv, the fc, BatchNorm and pooling cost their full count;
* ``"paper"``: every counted op gets the reduced rate, as the papers' tables do.

Memory is the storage of what inference needs, in MiB. ``"exact"``: weights of quantised layers at
their stored bit-width, every other tensor (full-precision first conv and fc, BN affine parameters
and running statistics, PACT α) at 32 bits. ``"paper"``: every one of those scalars at the
bit-width of the copy it belongs to, as the papers' tables store them (see ``memory_mb``).

CLI: ``python -m searchlab.flops NETWORK --frames 16 --size 224 --bits 32 4 2 [--classes N]
[--width-mult W] [--paper-convention] [--vared-force T,C [--vared-gated spatial|all]] [--json]``.
``--vared-force T,C`` prices VA-RED²'s dynamic network of NETWORK (an R(2+1)D or a TSN ResNet) per
clip with every gate forced to temporal alternative T and channel alternative C (0 = full, 1 = 1/2,
2 = 1/4), as ``searchlab.methods.vared.costs`` counts it.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchvision.models import mobilenet_v2

with warnings.catch_warnings():
    # fvcore decorates helpers with torch.jit.script at import, which torch now flags as deprecated.
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import elementwise_flop_counter

from searchlab.models.anyprec import validate_bit_widths
from searchlab.models.quant import FULL_PRECISION_BITS, QuantConv2d, QuantLinear, SwitchableBatchNorm2d
from searchlab.models.registry import create_backbone, list_backbones
from searchlab.models.video_resnet import VIDEO_NETWORKS, create_video_network
from searchlab.cli import command_parser

__all__ = [
    "CONVENTIONS",
    "LayerMacs",
    "ParameterInventory",
    "action_cost_table",
    "backbone_layer_macs",
    "bit_rate",
    "clip_layer_macs",
    "list_networks",
    "main",
    "memory_mb",
    "module_macs",
    "network_gflops_per_clip",
    "network_gflops_per_frame",
    "parameter_inventory",
    "policy_gflops_per_frame",
    "summarize_gflops",
    "video_gflops",
]

CONVENTIONS = ("exact", "paper")

# Ops fvcore has no handle for that we leave uncounted on purpose: elementwise activations,
# residual additions, pooling by max/mean, reshapes, LSTM gate arithmetic. They are a small
# fraction of the MACs and no convention in METHODS.md counts them.
_IGNORED_OPS = (
    "aten::add", "aten::add_", "aten::sub", "aten::mul", "aten::mul_", "aten::div",
    "aten::relu", "aten::relu_", "aten::hardtanh", "aten::hardtanh_", "aten::sigmoid",
    "aten::sigmoid_", "aten::tanh", "aten::tanh_", "aten::softmax", "aten::log_softmax",
    "aten::max_pool2d", "aten::mean", "aten::flatten", "aten::dropout", "aten::unsafe_chunk",
    "aten::chunk", "aten::argmax", "aten::one_hot", "aten::stack", "aten::cat", "aten::unflatten",
)  # fmt: skip

_UNITS = (QuantConv2d, QuantLinear, SwitchableBatchNorm2d)


@dataclass(frozen=True)
class LayerMacs:
    """MACs of one layer (a leaf module, a quantised layer or a switchable BN) at one input size."""

    name: str
    macs: int
    quantised: bool


def _counting_units(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """Modules whose counts are reported: quantised layers, switchable BNs, other leaves."""
    if isinstance(module, _UNITS) or not any(True for _ in module.children()):
        return [(prefix, module)]
    units = []
    for name, child in module.named_children():
        units += _counting_units(child, f"{prefix}.{name}" if prefix else name)
    return units


def _macs_by_module(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[str, int]:
    """fvcore per-module counts with our ignored ops; warns naming any other op left uncounted."""
    analysis = FlopCountAnalysis(module, inputs)
    analysis.set_op_handle(**dict.fromkeys(_IGNORED_OPS))
    # The policy's antialiased resize: priced like fvcore prices plain bilinear resizing.
    analysis.set_op_handle("aten::_upsample_bilinear2d_aa", elementwise_flop_counter(0, 4))
    # A fused per-element multiply-add (VA-RED²'s cheap ops): one MAC per output element, as fvcore
    # prices the depthwise 1x1 convolution it stands for.
    analysis.set_op_handle("aten::addcmul", elementwise_flop_counter(0, 1))
    # R(2+1)D's final pooling: one add per input element, as fvcore prices adaptive_avg_pool2d.
    analysis.set_op_handle("aten::adaptive_avg_pool3d", elementwise_flop_counter(1, 0))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    by_module = dict(analysis.by_module())
    uncounted = dict(analysis.unsupported_ops())
    if uncounted:
        warnings.warn(
            f"fvcore has no FLOP handle for {uncounted}; their cost is missing from the count "
            "(add a handle in searchlab.flops if they matter)",
            stacklevel=3,
        )
    return by_module


def module_macs(module: nn.Module, inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[LayerMacs, ...]:
    """Per-layer MACs of ``module(*inputs)`` (eval mode, no gradients), in module order.

    MACs fvcore attributes to no reporting unit (ops run in a parent's own ``forward``) appear as
    one extra entry named ``"(other)"``, so the entries always sum to the total.
    """
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    # Each submodule's own mode is restored, not the root's: a wrapper built for counting (always in
    # training mode) once put an evaluated policy back into training mode, so its evaluation ran
    # with dropout and batch statistics and moved its BatchNorm running statistics.
    modes = [(child, child.training) for child in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            by_module = _macs_by_module(module, inputs)
    finally:
        for child, training in modes:
            child.training = training
    layers = [
        LayerMacs(name=name, macs=int(by_module.get(name, 0)), quantised=isinstance(m, QuantConv2d | QuantLinear))
        for name, m in _counting_units(module)
    ]
    other = int(by_module[""]) - sum(layer.macs for layer in layers)
    if other:
        layers.append(LayerMacs(name="(other)", macs=other, quantised=False))
    return tuple(layers)


class _AtBits(nn.Module):
    """Single-input view of an any-precision network at fixed ``bits``, for tracing."""

    def __init__(self, net: nn.Module, bits: int) -> None:
        super().__init__()
        self.net, self.bits = net, bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.bits)


def _mobilenet_v2(*, num_classes: int, width_mult: float) -> nn.Module:
    return mobilenet_v2(weights=None, num_classes=num_classes, width_mult=width_mult)


# Networks searchlab only ever runs at full precision: name -> factory(*, num_classes, width_mult).
# They live here, not in the backbone registry, because every registered backbone must survive the
# any-precision surgery (ResNets only).
_UNQUANTISED: dict[str, Callable[..., nn.Module]] = {"mobilenet_v2": _mobilenet_v2}


def list_networks() -> list[str]:
    """Names of every network priced here: the registered backbones, ``mobilenet_v2`` and the video
    networks, sorted."""
    return sorted(set(list_backbones()) | set(_UNQUANTISED) | set(VIDEO_NETWORKS))


def _network_problems(network: str, *, width_mult: float, bits: Sequence[int]) -> list[tuple[str, str]]:
    """Every problem with pricing ``network`` at ``width_mult`` and ``bits``, as (argument, message).

    Shared by the Python API (which raises them joined) and the CLI (which prefixes each with its
    flag), so both refuse the same requests with the same words.
    """
    if network not in list_networks():
        return [("network", f"unknown network {network!r}; choose one of {', '.join(list_networks())}")]
    problems = []
    if network in _UNQUANTISED and not (math.isfinite(width_mult) and width_mult > 0):
        problems.append(("width_mult", f"the width multiplier must be a finite number > 0, got {width_mult}"))
    elif network not in _UNQUANTISED and width_mult != 1.0:
        problems.append((
            "width_mult",
            f"{network} has no width multiplier (only {', '.join(_UNQUANTISED)} has one); leave it at 1.0",
        ))  # fmt: skip
    if network in _UNQUANTISED or network in VIDEO_NETWORKS:
        reduced = [b for b in bits if b != FULL_PRECISION_BITS]
        if reduced:
            problems.append((
                "bits",
                f"{network} is never quantised in searchlab, so it has no cost or memory at {reduced} bits; "
                f"price it at {FULL_PRECISION_BITS} bits",
            ))  # fmt: skip
    return problems


def _check_network(network: str, *, width_mult: float, bits: Sequence[int] = ()) -> None:
    problems = _network_problems(network, width_mult=width_mult, bits=bits)
    if problems:
        raise ValueError("; ".join(message for _, message in problems))


def _full_precision_network(network: str, *, num_classes: int, width_mult: float) -> nn.Module:
    """A fresh, randomly initialised ``network`` at 32 bits taking one (N, 3, H, W) input, or one
    (N, 3, T, H, W) clip for a video network.

    Callers fork the global generator around it: a cost lookup in the middle of training must not
    move it (resumed runs must replay the same Gumbel noise).
    """
    if network in _UNQUANTISED:
        return _UNQUANTISED[network](num_classes=num_classes, width_mult=width_mult)
    if network in VIDEO_NETWORKS:
        return create_video_network(network, num_classes=num_classes)
    net = create_backbone(network, num_classes=num_classes, bit_widths=(FULL_PRECISION_BITS,), alpha_init=1.0)
    return _AtBits(net, FULL_PRECISION_BITS)


# Private and positional so that every public spelling of a request (width_mult given or left at its
# default, an int or a float) shares one cache entry.
@functools.lru_cache(maxsize=64)
def _layer_macs(network: str, size: int, num_classes: int, width_mult: float) -> tuple[LayerMacs, ...]:
    with torch.random.fork_rng(devices=[]):
        net = _full_precision_network(network, num_classes=num_classes, width_mult=width_mult)
        layers = module_macs(net, torch.zeros(1, 3, size, size))
    # Report the network's own module names, without the "net." of the any-precision wrapper.
    return tuple(
        LayerMacs(name=layer.name.removeprefix("net."), macs=layer.macs, quantised=layer.quantised)
        for layer in layers
    )


def backbone_layer_macs(
    backbone: str, *, size: int, num_classes: int, width_mult: float = 1.0
) -> tuple[LayerMacs, ...]:
    """Per-layer MACs of ``backbone`` (any of ``list_networks()``) on one ``size``×``size`` frame.

    ``num_classes`` sizes the fc; ``width_mult`` is MobileNetV2's (1.0 for every other network).
    Cached per (network, size, classes, width). Counted at 32 bits, where the graph is the plain
    conv graph; which layers are quantised does not depend on B, so the counts serve every bit-width.
    """
    if size < 1 or num_classes < 1:
        raise ValueError(f"size and num_classes must be >= 1, got size={size}, num_classes={num_classes}")
    _check_network(backbone, width_mult=width_mult)
    _check_per_frame(backbone)
    return _layer_macs(backbone, size, num_classes, float(width_mult))


def _check_per_frame(network: str) -> None:
    if network in VIDEO_NETWORKS:
        raise ValueError(f"{network} is a 3D network over whole clips, priced per clip: use clip_layer_macs or "
                         "network_gflops_per_clip")


# Private and positional for the same reason as _layer_macs.
@functools.lru_cache(maxsize=32)
def _clip_layer_macs(network: str, frames: int, size: int, num_classes: int) -> tuple[LayerMacs, ...]:
    with torch.random.fork_rng(devices=[]):  # see _full_precision_network
        net = create_video_network(network, num_classes=num_classes)
        return module_macs(net, torch.zeros(1, 3, frames, size, size))


def clip_layer_macs(network: str, *, frames: int, size: int, num_classes: int) -> tuple[LayerMacs, ...]:
    """Per-layer MACs of video network ``network`` (one of ``VIDEO_NETWORKS``) on one clip of
    ``frames`` × ``size``² (fc for ``num_classes``), cached."""
    if network not in VIDEO_NETWORKS:
        raise ValueError(f"{network!r} is not a video network ({', '.join(VIDEO_NETWORKS)}); 2D networks are priced "
                         "per frame: use backbone_layer_macs")
    if min(frames, size, num_classes) < 1:
        raise ValueError(f"frames, size and num_classes must be >= 1, got {frames}, {size}, {num_classes}")
    return _clip_layer_macs(network, frames, size, num_classes)


def network_gflops_per_clip(network: str, *, frames: int, size: int, num_classes: int) -> float:
    """GFLOPs (GMACs) of one clip of ``frames`` × ``size``² at 32 bits: a video network traced on the
    whole clip, any other network ``frames`` × its per-frame figure."""
    if network in VIDEO_NETWORKS:
        return sum(layer.macs for layer in clip_layer_macs(network, frames=frames, size=size,
                                                           num_classes=num_classes)) / 1e9
    return frames * network_gflops_per_frame(network, size=size, num_classes=num_classes)


def bit_rate(bits: int) -> float:
    """Cost of a layer at ``bits`` bits relative to full precision: min(b·b/64, 1)."""
    if bits < 1:
        raise ValueError(f"bits must be >= 1, got {bits}")
    return 1.0 if bits >= FULL_PRECISION_BITS else min(bits * bits / 64.0, 1.0)


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")


def network_gflops_per_frame(
    network: str,
    *,
    size: int,
    num_classes: int,
    bits: int = FULL_PRECISION_BITS,
    convention: str = "exact",
    width_mult: float = 1.0,
) -> float:
    """GFLOPs (GMACs) of one ``size``×``size`` frame through ``network`` and its ``num_classes``-way fc.

    Quantised layers run at ``bits`` bits (every layer under the paper convention); networks that
    are never quantised (``mobilenet_v2``) accept only 32. AR-Net's per-resolution cost G_a is this
    at 32 bits, e.g. ``network_gflops_per_frame("resnet34", size=168, num_classes=200)``.
    """
    _check_convention(convention)
    if not isinstance(bits, int | np.integer) or isinstance(bits, bool) or not 1 <= bits <= FULL_PRECISION_BITS:
        raise ValueError(f"bits must be an int in 1..{FULL_PRECISION_BITS}, got {bits!r}")
    _check_network(network, width_mult=width_mult, bits=(int(bits),))
    _check_per_frame(network)
    rate = bit_rate(int(bits))
    layers = backbone_layer_macs(network, size=size, num_classes=num_classes, width_mult=width_mult)
    return sum(l.macs * (rate if l.quantised or convention == "paper" else 1.0) for l in layers) / 1e9


def action_cost_table(
    backbone: str,
    *,
    decision_space: Sequence[int],
    size: int,
    num_classes: int,
    convention: str = "exact",
) -> dict[int, float]:
    """Backbone GFLOPs (GMACs) per frame of every action in Ω; the skip action 0 costs 0."""
    _check_convention(convention)
    actions = list(decision_space)
    bad = [a for a in actions if not isinstance(a, int | np.integer) or not 0 <= a <= FULL_PRECISION_BITS]
    if bad or not actions:
        raise ValueError(f"decision_space must be non-empty bit-widths in 0..32 (0 = skip), bad: {bad}")
    return {
        action: 0.0
        if action == 0
        else network_gflops_per_frame(backbone, size=size, num_classes=num_classes, bits=action, convention=convention)
        for action in map(int, actions)
    }


def policy_gflops_per_frame(policy: nn.Module, *, size: int, frames: int = 1) -> float:
    """GFLOPs per frame of a policy network with ``extract``/``decide`` (models.policy contract).

    Traces ``decide(extract(x), mode="argmax")`` on ``frames`` frames of ``size`` px (the size the
    backbone sees; the policy downsizes itself) and divides by ``frames``.
    """

    class _Decide(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.policy = policy

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.policy.decide(self.policy.extract(x), mode="argmax").probs

    with torch.random.fork_rng(devices=[]):  # dropout in a traced forward must not move the generator
        layers = module_macs(_Decide(), torch.zeros(1, frames, 3, size, size))
    return sum(l.macs for l in layers) / 1e9 / frames


def video_gflops(
    actions: np.ndarray, *, cost_table: Mapping[int, float], policy_gflops_per_frame: float
) -> np.ndarray:
    """GFLOPs of each video: Σ_t cost(action_t) + T·policy cost (the policy sees every frame).

    ``actions`` is an int array ``(N, T)`` of chosen bit-widths, 0 meaning skip.
    """
    actions = np.asarray(actions)
    if actions.ndim != 2 or not np.issubdtype(actions.dtype, np.integer):
        raise ValueError(f"actions must be an int array (N, T), got {actions.dtype} {actions.shape}")
    unknown = sorted(set(np.unique(actions).tolist()) - set(cost_table))
    if unknown:
        raise ValueError(f"actions {unknown} have no entry in cost_table {sorted(cost_table)}")
    keys = np.array(sorted(cost_table))
    costs = np.array([cost_table[k] for k in keys], dtype=np.float64)
    per_frame = costs[np.searchsorted(keys, actions)]
    return per_frame.sum(axis=1) + actions.shape[1] * float(policy_gflops_per_frame)


def summarize_gflops(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Mean, 5th/95th percentiles, min and max of per-video GFLOPs (the cost is input-dependent)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("summarize_gflops needs at least one value")
    return {
        "mean": float(arr.mean()),
        "p5": float(np.percentile(arr, 5)),
        "p95": float(np.percentile(arr, 95)),
        "min": float(arr.min()),
        "max": float(arr.max()),
    }


@dataclass(frozen=True)
class ParameterInventory:
    """Scalar counts of what inference stores, split by how each is stored."""

    quantised: int  # weights of quantised layers (one stored copy)
    full_precision: int  # first conv, its BN, fc, biases of quantised layers; all of an unquantised network
    bn_per_bit: int  # one copy of the switchable BNs (affine + running statistics)
    alpha_sites: int  # quantised layers, each with one α per quantised bit-width


# Private and positional for the same reason as _layer_macs.
@functools.lru_cache(maxsize=64)
def _inventory(network: str, num_classes: int, width_mult: float) -> ParameterInventory:
    with torch.random.fork_rng(devices=[]):  # see _full_precision_network
        net = _full_precision_network(network, num_classes=num_classes, width_mult=width_mult)
    quantised = full = bn = sites = 0
    for _, m in _counting_units(net):
        if isinstance(m, QuantConv2d | QuantLinear):
            quantised += m.weight.numel()
            full += m.bias.numel() if m.bias is not None else 0
            sites += 1
        elif isinstance(m, SwitchableBatchNorm2d):
            bn += 4 * m.bns[str(FULL_PRECISION_BITS)].num_features
        else:
            full += sum(p.numel() for p in m.parameters())
            full += sum(b.numel() for n, b in m.named_buffers() if n != "num_batches_tracked")
    return ParameterInventory(quantised=quantised, full_precision=full, bn_per_bit=bn, alpha_sites=sites)


def parameter_inventory(backbone: str, *, num_classes: int, width_mult: float = 1.0) -> ParameterInventory:
    """Storage inventory of ``backbone`` (any of ``list_networks()``) with ``num_classes`` outputs, cached."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    _check_network(backbone, width_mult=width_mult)
    return _inventory(backbone, num_classes, float(width_mult))


def memory_mb(
    backbone: str,
    *,
    bit_widths: Sequence[int],
    num_classes: int,
    storage: str = "any_precision",
    convention: str = "exact",
    width_mult: float = 1.0,
) -> float:
    """Inference storage in MiB of ``backbone`` (any of ``list_networks()``).

    ``storage="any_precision"``: one network for all of B: the quantised weights stored once at
    max(B) bits (32 when 32 ∈ B, since the 32-bit path needs the raw weights), one BN copy per
    bit-width and one α per quantised bit-width and site. ``storage="separate"``: one uniform model
    per bit-width, summed. A uniform b-bit model is either with ``bit_widths=(b,)``.

    ``convention="exact"`` stores everything but the quantised weights (first conv, fc, biases, BN,
    α) at 32 bits. ``convention="paper"`` stores every scalar at the bit-width of the copy it
    belongs to, as the papers' tables do: the shared copy (quantised weights, first conv, fc, their
    BN) at max(B), each bit-width's BN copy and α at that bit-width; a uniform b-bit model is then
    every stored scalar × b bits.
    """
    bits = validate_bit_widths(bit_widths)
    _check_convention(convention)
    if storage not in ("any_precision", "separate"):
        raise ValueError(f"storage must be 'any_precision' or 'separate', got {storage!r}")
    _check_network(backbone, width_mult=width_mult, bits=bits)
    if storage == "separate":
        return sum(
            memory_mb(backbone, bit_widths=(b,), num_classes=num_classes, convention=convention, width_mult=width_mult)
            for b in bits
        )
    inv = parameter_inventory(backbone, num_classes=num_classes, width_mult=width_mult)
    top = max(bits)
    quantised_bits = [b for b in bits if b < FULL_PRECISION_BITS]
    if convention == "paper":
        total_bits = (
            (inv.quantised + inv.full_precision) * top
            + inv.bn_per_bit * sum(bits)
            + inv.alpha_sites * sum(quantised_bits)
        )
    else:
        total_bits = inv.quantised * top + FULL_PRECISION_BITS * (
            inv.full_precision + inv.bn_per_bit * len(bits) + inv.alpha_sites * len(quantised_bits)
        )
    return total_bits / 8 / 2**20


# Each argument of a pricing request on the command line: (flag, how the command line spells the fix).
_FLAGS = {
    "network": ("", ""),
    "width_mult": ("--width-mult: ", ""),
    "bits": ("--bits: ", f" (--bits {FULL_PRECISION_BITS}, or leave --bits out)"),
}


def _vared_force(text: str) -> tuple[int, int]:
    """``--vared-force T,C`` → (T, C), each an alternative index in 0..2."""
    try:
        t_index, c_index = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected T,C (two alternative indices, e.g. 1,1), got {text!r}") from None
    if not (0 <= t_index <= 2 and 0 <= c_index <= 2):
        raise argparse.ArgumentTypeError(f"alternative indices are 0 (full), 1 (1/2) or 2 (1/4), got {text!r}")
    return t_index, c_index


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = command_parser("searchlab.flops", description=(
        "Price a network with fvcore: GFLOPs per video (2D networks: every frame at one precision; 3D "
        "networks: the whole clip) and memory, per bit-width; or VA-RED²'s dynamic network with every gate "
        "forced to one alternative."),
        examples=["python -m searchlab.flops resnet50 --frames 16 --size 224 --bits 32 4 2",
                  "python -m searchlab.flops mobilenet_v2 --frames 1 --size 84 --bits 32 --json",
                  "python -m searchlab.flops r2plus1d_18 --frames 16 --size 128 --vared-force 1,1"])
    parser.add_argument("network", help=f"network to price: {', '.join(list_networks())}")
    parser.add_argument("--frames", type=int, default=16, help="frames per video (default 16)")
    parser.add_argument("--size", type=int, default=224, help="frame side in px (default 224)")
    parser.add_argument(
        "--bits", type=int, nargs="+",
        help="bit-widths B (default 32 4 2; mobilenet_v2 and the R(2+1)D networks are never quantised: 32, "
             "their default, only)",
    )  # fmt: skip
    parser.add_argument("--classes", type=int, default=1000, help="fc outputs (default 1000)")
    parser.add_argument(
        "--width-mult", type=float, default=1.0, help="MobileNetV2 width multiplier (default 1.0; mobilenet_v2 only)"
    )
    parser.add_argument(
        "--paper-convention", action="store_true",
        help="the papers' tables: every layer's FLOPs at the reduced rate, every stored parameter at b bits",
    )  # fmt: skip
    parser.add_argument(
        "--vared-force", type=_vared_force, metavar="T,C",
        help="price VA-RED²'s dynamic network per clip with every gate forced to temporal alternative T and channel "
             "alternative C (0 full, 1 half, 2 quarter; S = 2 per dimension, 3 where an index needs it)",
    )  # fmt: skip
    parser.add_argument("--vared-gated", choices=("spatial", "all"), default="spatial",
                        help="with --vared-force: which convs are gated")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    never_quantised = args.network in _UNQUANTISED or args.network in VIDEO_NETWORKS or args.vared_force
    if args.bits is None:
        args.bits = [FULL_PRECISION_BITS] if never_quantised else [FULL_PRECISION_BITS, 4, 2]
    problems = [
        _FLAGS[arg][0] + message + _FLAGS[arg][1]
        for arg, message in _network_problems(args.network, width_mult=args.width_mult, bits=args.bits)
    ]
    if args.vared_force:
        vared_backbones = (*VIDEO_NETWORKS, *list_backbones())
        if args.network not in vared_backbones:
            problems.append(f"--vared-force: VA-RED² runs on {', '.join(vared_backbones)}, not {args.network}")
        if args.bits != [FULL_PRECISION_BITS] or args.paper_convention:
            problems.append(f"--vared-force: the dynamic network is priced at {FULL_PRECISION_BITS} bits only "
                            "(leave --bits and --paper-convention out)")
    for flag in ("frames", "size", "classes"):
        if getattr(args, flag) < 1:
            problems.append(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    try:
        validate_bit_widths(args.bits)
    except ValueError as err:
        problems.append(f"--bits: {err}")
    if problems:
        parser.error("; ".join(problems))
    return args


def _vared_forced_figures(args: argparse.Namespace) -> tuple[float, float, tuple[int, int]]:
    """(GFLOPs per clip, memory MiB, (S_t, S_c)) of VA-RED²'s network with every gate forced."""
    # imported here: the method's cost model imports this module
    from searchlab.methods.vared.costs import vared_costs
    from searchlab.methods.vared.network import VaredNetwork

    t_index, c_index = args.vared_force
    options = (max(2, t_index + 1), max(2, c_index + 1))
    with torch.random.fork_rng(devices=[]):
        network = VaredNetwork(backbone=args.network, num_classes=args.classes, frames=args.frames, size=args.size,
                               gated=args.vared_gated, temporal_options=options[0], channel_options=options[1])
    costs = vared_costs(network)
    return costs.forced_gflops(t_index, c_index), costs.memory_mb, options


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (argparse exits 2 on bad arguments)."""
    args = _parse(argv)
    bits = validate_bit_widths(args.bits)
    convention = "paper" if args.paper_convention else "exact"
    network = {"num_classes": args.classes, "convention": convention, "width_mult": args.width_mult}
    vared = None
    if args.vared_force:
        gflops, memory, options = _vared_forced_figures(args)
        per_bits = {str(FULL_PRECISION_BITS): {"gflops": gflops, "memory_mb": memory}}
        vared = {"force": list(args.vared_force), "gated": args.vared_gated, "options": list(options)}
        counted = "per clip"
    elif args.network in VIDEO_NETWORKS:
        gflops = network_gflops_per_clip(args.network, frames=args.frames, size=args.size, num_classes=args.classes)
        memory = memory_mb(args.network, bit_widths=bits, **network)
        per_bits = {str(FULL_PRECISION_BITS): {"gflops": gflops, "memory_mb": memory}}
        counted = "per clip"
    else:
        per_frame = {b: network_gflops_per_frame(args.network, size=args.size, bits=b, **network) for b in bits}
        per_bits = {
            str(b): {"gflops": per_frame[b] * args.frames,
                     "memory_mb": memory_mb(args.network, bit_widths=(b,), **network)}
            for b in bits
        }  # fmt: skip
        counted = "per frame"
    if args.json:
        print(json.dumps({
            "network": args.network, "frames": args.frames, "size": args.size, "classes": args.classes,
            "width_mult": args.width_mult, "convention": convention, "counted": counted, "vared": vared,
            "per_bits": per_bits,
        }))  # fmt: skip
        return 0
    width = f" (width multiplier {args.width_mult:g})" if args.network in _UNQUANTISED else ""
    print(f"{args.network}{width}: {args.frames} frames of {args.size} px, {args.classes} classes, "
          f"{convention} convention")  # fmt: skip
    if vared:
        print(f"VA-RED² dynamic network, {args.vared_gated} convs gated (S_t={options[0]}, S_c={options[1]}), every "
              f"gate forced to temporal alternative {args.vared_force[0]}, channel alternative {args.vared_force[1]}")
    print("counted per clip: the whole clip traced once (GFLOPs/frame = GFLOPs/video / frames)" if counted == "per clip"
          else "counted per frame: one frame traced (GFLOPs/video = frames x GFLOPs/frame)")
    print(f"{'bits':>5} {'GFLOPs/video':>13} {'GFLOPs/frame':>13} {'memory MiB':>11}")
    for b in bits:
        row = per_bits[str(b)]
        print(f"{b:>5} {row['gflops']:>13.3f} {row['gflops'] / args.frames:>13.4f} {row['memory_mb']:>11.2f}")
    if len(bits) > 1:  # with one bit-width both storages are the row above
        for storage in ("any_precision", "separate"):
            mb = memory_mb(args.network, bit_widths=bits, storage=storage, **network)
            print(f"memory, {storage.replace('_', '-')} storage of B={list(bits)}: {mb:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
