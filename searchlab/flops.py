"""Compute and memory accounting of VideoIQ (METHODS.md §1.4), counted with fvcore.

FLOPs are multiply-accumulates (fvcore's convention: torchvision ResNet-50 at 224 px is 4.11 G per
frame, BatchNorm included). Per-layer counts come from fvcore's per-module analysis of the backbone
at 32 bits, where every quantised layer is a plain conv (no custom autograd Function in the graph).
A layer quantised to b bits costs ``min(b·b/64, 1)`` of its MACs:

* ``"exact"`` (default): only the quantised convs/linears (``QuantConv2d``/``QuantLinear``) get the
  reduced rate; the first conv, the fc, BatchNorm and pooling cost their full count;
* ``"paper"``: every counted op gets the reduced rate, as the papers' tables do.

Memory is the storage of what inference needs, in MiB: weights at their stored bit-width, every
other tensor (full-precision first conv and fc, BN affine parameters and running statistics, PACT
α) at 32 bits.

CLI: ``python -m searchlab.flops NETWORK --frames 16 --size 224 --bits 32 4 2 [--classes N]
[--paper-convention] [--json]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

with warnings.catch_warnings():
    # fvcore decorates helpers with torch.jit.script at import, which torch now flags as deprecated.
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import elementwise_flop_counter

from searchlab.models.anyprec import validate_bit_widths
from searchlab.models.quant import FULL_PRECISION_BITS, QuantConv2d, QuantLinear, SwitchableBatchNorm2d
from searchlab.models.registry import create_backbone, list_backbones

__all__ = [
    "CONVENTIONS",
    "LayerMacs",
    "ParameterInventory",
    "action_cost_table",
    "backbone_layer_macs",
    "bit_rate",
    "main",
    "memory_mb",
    "module_macs",
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
    "aten::chunk", "aten::argmax", "aten::one_hot", "aten::stack", "aten::cat",
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


@functools.lru_cache(maxsize=64)
def backbone_layer_macs(backbone: str, *, size: int, num_classes: int) -> tuple[LayerMacs, ...]:
    """Per-layer MACs of registered ``backbone`` on one ``size``×``size`` frame, cached.

    Counted at 32 bits, where the graph is the plain conv graph; which layers are quantised does
    not depend on B, so the counts serve every bit-width.
    """
    if size < 1 or num_classes < 1:
        raise ValueError(f"size and num_classes must be >= 1, got size={size}, num_classes={num_classes}")
    # fork_rng: building a network draws random weights, and a cost lookup in the middle of training
    # must not move the global generator (resumed runs must replay the same Gumbel noise).
    with torch.random.fork_rng(devices=[]):
        net = create_backbone(backbone, num_classes=num_classes, bit_widths=(FULL_PRECISION_BITS,), alpha_init=1.0)
        layers = module_macs(_AtBits(net, FULL_PRECISION_BITS), torch.zeros(1, 3, size, size))
    return tuple(
        LayerMacs(name=layer.name.removeprefix("net."), macs=layer.macs, quantised=layer.quantised)
        for layer in layers
    )


def bit_rate(bits: int) -> float:
    """Cost of a layer at ``bits`` bits relative to full precision: min(b·b/64, 1)."""
    if bits < 1:
        raise ValueError(f"bits must be >= 1, got {bits}")
    return 1.0 if bits >= FULL_PRECISION_BITS else min(bits * bits / 64.0, 1.0)


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")


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
    layers = backbone_layer_macs(backbone, size=size, num_classes=num_classes)
    table = {}
    for action in map(int, actions):
        if action == 0:
            table[0] = 0.0
            continue
        rate = bit_rate(action)
        macs = sum(l.macs * (rate if l.quantised or convention == "paper" else 1.0) for l in layers)
        table[action] = macs / 1e9
    return table


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
    """Mean and 5th/95th percentiles of per-video GFLOPs (the cost is input-dependent)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("summarize_gflops needs at least one value")
    return {
        "mean": float(arr.mean()),
        "p5": float(np.percentile(arr, 5)),
        "p95": float(np.percentile(arr, 95)),
    }


@dataclass(frozen=True)
class ParameterInventory:
    """Scalar counts of what inference stores, split by how each is stored."""

    quantised: int  # weights of quantised layers (one stored copy)
    full_precision: int  # first conv, its BN, fc, biases of quantised layers
    bn_per_bit: int  # one copy of the switchable BNs (affine + running statistics)
    alpha_sites: int  # quantised layers, each with one α per quantised bit-width


@functools.lru_cache(maxsize=64)
def parameter_inventory(backbone: str, *, num_classes: int) -> ParameterInventory:
    """Storage inventory of registered ``backbone`` with ``num_classes`` outputs, cached."""
    net = create_backbone(backbone, num_classes=num_classes, bit_widths=(FULL_PRECISION_BITS,), alpha_init=1.0)
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


def memory_mb(
    backbone: str, *, bit_widths: Sequence[int], num_classes: int, storage: str = "any_precision"
) -> float:
    """Inference storage in MiB.

    ``storage="any_precision"``: one network for all of B: the quantised weights stored once at
    max(B) bits (32 when 32 ∈ B, since the 32-bit path needs the raw weights), full-precision layers
    at 32 bits, one BN copy per bit-width and one α per quantised bit-width and site.
    ``storage="separate"``: one uniform model per bit-width, summed. A uniform b-bit model is either
    with ``bit_widths=(b,)``.
    """
    bits = validate_bit_widths(bit_widths)
    if storage == "separate":
        return sum(memory_mb(backbone, bit_widths=(b,), num_classes=num_classes) for b in bits)
    if storage != "any_precision":
        raise ValueError(f"storage must be 'any_precision' or 'separate', got {storage!r}")
    inv = parameter_inventory(backbone, num_classes=num_classes)
    n_alpha = sum(1 for b in bits if b < FULL_PRECISION_BITS)
    total_bits = (
        inv.quantised * max(bits)
        + FULL_PRECISION_BITS * (inv.full_precision + inv.bn_per_bit * len(bits) + inv.alpha_sites * n_alpha)
    )
    return total_bits / 8 / 2**20


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m searchlab.flops",
        description="Video GFLOPs (uniform precision over all frames) and memory of a backbone.",
    )
    parser.add_argument("network", help=f"registered backbone: {', '.join(list_backbones())}")
    parser.add_argument("--frames", type=int, default=16, help="frames per video (default 16)")
    parser.add_argument("--size", type=int, default=224, help="frame side in px (default 224)")
    parser.add_argument("--bits", type=int, nargs="+", default=[32, 4, 2], help="bit-widths B")
    parser.add_argument("--classes", type=int, default=1000, help="fc outputs (default 1000)")
    parser.add_argument("--paper-convention", action="store_true", help="every layer at the reduced rate")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    problems = []
    if args.network not in list_backbones():
        problems.append(f"unknown network {args.network!r}; choose one of {', '.join(list_backbones())}")
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


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (argparse exits 2 on bad arguments)."""
    args = _parse(argv)
    bits = validate_bit_widths(args.bits)
    convention = "paper" if args.paper_convention else "exact"
    table = action_cost_table(
        args.network, decision_space=bits, size=args.size, num_classes=args.classes, convention=convention
    )
    per_bits = {
        str(b): {
            "gflops": table[b] * args.frames,
            "memory_mb": memory_mb(args.network, bit_widths=(b,), num_classes=args.classes),
        }
        for b in bits
    }
    if args.json:
        print(json.dumps({
            "network": args.network, "frames": args.frames, "size": args.size,
            "classes": args.classes, "convention": convention, "per_bits": per_bits,
        }))  # fmt: skip
        return 0
    print(f"{args.network}: {args.frames} frames of {args.size} px, {args.classes} classes, {convention} convention")
    print(f"{'bits':>5} {'GFLOPs/video':>13} {'GFLOPs/frame':>13} {'memory MiB':>11}")
    for b in bits:
        row = per_bits[str(b)]
        print(f"{b:>5} {row['gflops']:>13.3f} {table[b]:>13.4f} {row['memory_mb']:>11.2f}")
    for storage in ("any_precision", "separate"):
        mb = memory_mb(args.network, bit_widths=bits, num_classes=args.classes, storage=storage)
        print(f"memory, {storage.replace('_', '-')} storage of B={list(bits)}: {mb:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
