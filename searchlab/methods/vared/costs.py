"""VA-RED²'s cost model: GFLOPs of a clip from the gate weights it used, and memory (METHODS.md §3).

Counting convention: fvcore multiply-accumulates (``searchlab.flops``), as for the other methods;
gates and cheap ops are counted (the thesis neglects them). What a gated layer costs on one clip is
what ``VaredNetwork.infer`` runs for it:

* its convolution at the largest alternative with non-zero weight, i.e. the first C_{i0} filters
  on every R_{j0}-th output frame, i0/j0 the first non-zero index of each dimension: C_{i0}·(C_in /
  groups)·∏kernel·⌈T_out/R_{j0}⌉·H_out·W_out;
* Φ^c_i for every non-zero channel alternative i > 0 (one MAC per generated element, on the
  ⌈T_out/R_{j0}⌉ computed frames), Φ^t_{j,k} for every non-zero temporal alternative j > 0 (one MAC
  per generated frame element); nothing for the ``"copy"`` form;
* its gate (fc1, BatchNorm, fc2), whatever the weights;
* nothing but the gate when a dimension's weights are all zero (``zero_gate="zero"``).

Everything that is not a gated layer (stem, BatchNorms, ungated convs, pooling, fc) is counted by
fvcore on the network itself with every gate forced to the full alternative. The per-layer tables
are exact formulas of the layers' shapes; a test holds them to fvcore's count of the traced inference
path, clip by clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from searchlab import flops
from searchlab.methods.vared.dynamic_conv import DynamicConv
from searchlab.methods.vared.network import GateDecisions, VaredNetwork

__all__ = ["LayerCosts", "VaredCosts", "state_dict_mb", "vared_costs"]


@dataclass(frozen=True)
class LayerCosts:
    """MACs of one gated layer on one clip, per alternative."""

    name: str
    conv: tuple[tuple[int, ...], ...]  # [t][c]: the conv computing alternative (t, c), the largest one
    channel_ops: tuple[tuple[int, ...], ...]  # [t][c]: Φ^c_c on the frames of temporal alternative t (0 for c = 0)
    temporal_ops: tuple[int, ...]  # [t]: every Φ^t_{t,k} of temporal alternative t (0 for t = 0)
    gate: int  # 0 for a layer without gate


@dataclass(frozen=True)
class VaredCosts:
    """Per-layer cost tables of a ``VaredNetwork``, the MACs of everything else, and memory."""

    layers: tuple[LayerCosts, ...]
    ungated_macs: int
    memory_mb: float

    def clip_gflops(self, decisions: GateDecisions) -> np.ndarray:
        """GFLOPs (N,) of each clip as the inference path runs it with these gate weights.

        A network with forced gates runs no gate: price it with ``forced_gflops``.
        """
        temporal = decisions.temporal.detach().cpu().numpy() > 0
        channel = decisions.channel.detach().cpu().numpy() > 0
        if temporal.ndim != 3 or channel.ndim != 3 or temporal.shape[1] != len(self.layers) \
                or channel.shape[:2] != temporal.shape[:2]:
            raise ValueError(f"decisions must be (N, {len(self.layers)}, S) per dimension, got temporal "
                             f"{temporal.shape} and channel {channel.shape}")
        macs = np.full(temporal.shape[0], float(self.ungated_macs + sum(layer.gate for layer in self.layers)))
        for index, layer in enumerate(self.layers):
            on_t, on_c = temporal[:, index], channel[:, index]
            t0, c0 = on_t.argmax(axis=1), on_c.argmax(axis=1)  # the first non-zero: the largest alternative
            conv = np.asarray(layer.conv, dtype=np.float64)
            cost = (conv[t0, c0] + (on_c * np.asarray(layer.channel_ops, dtype=np.float64)[t0]).sum(axis=1)
                    + on_t @ np.asarray(layer.temporal_ops, dtype=np.float64))
            macs += np.where(on_t.any(axis=1) & on_c.any(axis=1), cost, 0.0)
        return macs / 1e9

    def forced_gflops(self, t_index: int, c_index: int) -> float:
        """GFLOPs of one clip with every gate forced to (t_index, c_index): no gate runs."""
        s_t, s_c = len(self.layers[0].conv), len(self.layers[0].conv[0])
        if not (0 <= t_index < s_t and 0 <= c_index < s_c):
            raise ValueError(f"alternative ({t_index}, {c_index}) is out of range for S_t={s_t}, S_c={s_c}")
        gated = sum(layer.conv[t_index][c_index] + layer.channel_ops[t_index][c_index]
                    + layer.temporal_ops[t_index] for layer in self.layers)
        return (gated + self.ungated_macs) / 1e9

    def base_gflops(self) -> float:
        """GFLOPs of one clip through the network without gates (every layer its plain conv)."""
        return self.forced_gflops(0, 0)

    def layer_fractions(self) -> Tensor:
        """C(f_l) / Σ_k C(f_k) per gated layer (L,), C the full conv's MACs: L_e's layer weights."""
        full = torch.tensor([float(layer.conv[0][0]) for layer in self.layers], dtype=torch.float64)
        return (full / full.sum()).float()


def state_dict_mb(model: torch.nn.Module) -> float:
    """MiB of every floating tensor of ``model``'s state dict: what inference loads."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values() if t.is_floating_point()) / 2**20


def _layer_costs(name: str, layer: DynamicConv, *, height: int, width: int) -> LayerCosts:
    """The tables of ``layer`` whose full output is (C_out, T_out, height, width) per clip."""
    conv, frames_out, area = layer.conv, layer.frames_out, height * width
    per_output = conv.in_channels // conv.groups * math.prod(conv.kernel_size)  # MACs per output element
    computed = [-(-frames_out // stride) for stride in layer.strides]
    cheap = 1 if layer.cheap_op == "depthwise" else 0  # one MAC per generated element, or a copy
    out = conv.out_channels
    gate = 0
    if layer.gate is not None:
        device = conv.weight.device
        probe = torch.zeros(1, conv.in_channels, layer.frames, 1, 1, device=device)  # the pooling is free
        gate = sum(entry.macs for entry in flops.module_macs(layer.gate, probe))
    return LayerCosts(
        name=name,
        conv=tuple(tuple(c * per_output * frames * area for c in layer.channels) for frames in computed),
        channel_ops=tuple(tuple(cheap * (out - c) * frames * area if i else 0 for i, c in enumerate(layer.channels))
                          for frames in computed),
        temporal_ops=tuple(cheap * out * area * sum(max(0, -(-(frames_out - k) // stride)) for k in range(1, stride))
                           for stride in layer.strides),
        gate=gate,
    )


def vared_costs(model: VaredNetwork) -> VaredCosts:
    """The cost model of ``model`` at its ``frames`` × ``size``² clips (one fvcore trace of one clip).

    The model's modes, forced setting and the global random generator are left as they were.
    """
    layers = model.gated_layers()
    shapes: dict[str, tuple[int, ...]] = {}  # each layer's output shape (ints: under tracing they are tensors)
    hooks = [layer.register_forward_hook(
        lambda module, args, out, name=name: shapes.__setitem__(name, tuple(map(int, out.shape))))
        for name, layer in layers]
    clip = torch.zeros(1, model.frames, 3, model.size, model.size, device=next(model.parameters()).device)
    try:
        with model.force((0, 0)), torch.random.fork_rng(devices=[]):
            counted = flops.module_macs(model, clip)
    finally:
        for hook in hooks:
            hook.remove()
    prefixes = tuple(f"{name}." for name, _ in layers)
    ungated = sum(entry.macs for entry in counted if not entry.name.startswith(prefixes))
    tables = tuple(_layer_costs(name, layer, height=shapes[name][-2], width=shapes[name][-1]) for name, layer in layers)
    return VaredCosts(layers=tables, ungated_macs=ungated, memory_mb=state_dict_mb(model))
