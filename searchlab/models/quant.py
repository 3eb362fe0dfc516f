"""Quantisers and quantised layers of VideoIQ's any-precision network (METHODS.md §1.1).

Weights: DoReFa with bit truncation. ``u = tanh(W) / (2·max|tanh W|) + 1/2`` is quantised once on
the integer grid of ``max_bits`` (the *storage grid*); a lower bit-width ``b`` drops the
``max_bits - b`` least significant bits of that integer, so every precision is derived from one
stored integer tensor. The truncated tensor is rescaled to the mean of the ``max_bits`` tensor
(mean alignment, skipped when its mean is 0) and mapped to ``[-1, 1]`` (``2·x - 1``; after mean
alignment the top level can exceed 1 slightly, which is what the method specifies).

Design choices (documented here because METHODS.md leaves them open):

* ``bits >= 32`` is the full-precision path and returns the **raw** weights ``W``, not the
  tanh-normalised ones. A torchvision state dict loaded into the any-precision network therefore
  reproduces the torchvision network exactly at 32 bits (the teacher of §1.2), and the official
  code's 2^32 grid in float32 (which cannot be represented) never arises.
* The storage grid ``max_bits`` is an explicit argument. The networks in ``anyprec.py`` use the
  largest bit-width below 32 in B (4 for B = {32, 4, 2}), so the 4-bit weights are the plain DoReFa
  4-bit weights and 2-bit weights are their truncation.
* Gradients are straight-through: identity through rounding, truncation and mean alignment,
  so the weight gradient is the gradient of ``2u - 1`` (normalising max held constant).

* Speed: ``weight_grid`` computes the integer weights (uint8 up to 8 bits) and the STE slope once
  per weight version; a quantised layer keeps that grid and reuses it for every bit-width until
  the weight is written again (an optimizer step), so a joint step over B pays for tanh/max once
  and each bit-width costs one masked ``addcmul``.

Activations: PACT (``quantize_activation``) with a custom autograd Function; at 32 bits they pass
through unchanged (no clip). The layers read the active bit-width from their attribute ``bits``,
which the owning network sets before each forward.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

FULL_PRECISION_BITS = 32

__all__ = [
    "FULL_PRECISION_BITS",
    "QuantConv2d",
    "QuantLinear",
    "SwitchableBatchNorm2d",
    "WeightGrid",
    "quantize_activation",
    "quantize_weight",
    "weight_grid",
]


def _check_bits(bits: int, *, name: str) -> None:
    if not isinstance(bits, int) or isinstance(bits, bool) or bits < 1:
        raise ValueError(f"{name} must be a positive int (1..32), got {bits!r}")


@dataclass(frozen=True)
class WeightGrid:
    """The stored form of one weight tensor: its ``max_bits`` DoReFa integers (computed once).

    ``levels``: ``round((2^max_bits - 1)·u)`` as unsigned integers (uint8 up to 8 bits);
    ``mean``: their mean; ``slope``: the straight-through derivative ``dŴ/dW = (1 - tanh²W)/m``
    (``m = max|tanh W|`` held constant). ``source`` and ``key`` identify the weight tensor and
    version it was made from.
    """

    source: weakref.ref
    key: tuple
    max_bits: int
    levels: torch.Tensor
    mean: torch.Tensor
    slope: torch.Tensor


def _grid_key(w: torch.Tensor, max_bits: int) -> tuple:
    # Tensor._version counts in-place writes (optimizer steps, load_state_dict); the data pointer
    # changes when .to()/.data swap the storage.
    return (w.data_ptr(), w._version, w.dtype, w.device, max_bits)


def _grid_fits(grid: WeightGrid, w: torch.Tensor, max_bits: int) -> bool:
    """Whether ``grid`` was made from this very tensor in its current version."""
    return grid.source() is w and grid.key == _grid_key(w, max_bits)


def weight_grid(w: torch.Tensor, max_bits: int) -> WeightGrid:
    """DoReFa integer grid of ``w`` on ``max_bits`` bits (``1 <= max_bits < 32``)."""
    _check_bits(max_bits, name="max_bits")
    if max_bits >= FULL_PRECISION_BITS:
        raise ValueError(f"max_bits must be < 32 (the storage grid of quantised weights), got {max_bits}")
    with torch.no_grad():
        t = torch.tanh(w)
        low, high = torch.aminmax(t)
        m = torch.maximum(-low, high)
        top = float(2**max_bits - 1)
        q = torch.addcmul(torch.full((), 0.5 * top, dtype=w.dtype, device=w.device), t, 0.5 * top / m).round_()
        mean = q.mean()
        levels = q.to(torch.uint8 if max_bits <= 8 else torch.int32)
        slope = t.square_().sub_(1.0).div_(-m)
    return WeightGrid(
        source=weakref.ref(w), key=_grid_key(w, max_bits), max_bits=max_bits, levels=levels, mean=mean, slope=slope
    )


class _TruncatedWeight(torch.autograd.Function):
    """Ŵ_b from the stored grid: drop low bits, align means, map to [-1, 1]; STE backward."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, grid: WeightGrid, bits: int) -> torch.Tensor:
        top = float(2**grid.max_bits - 1)
        levels = grid.levels
        factor = torch.full((), 2.0 / top, dtype=w.dtype, device=w.device)
        if bits < grid.max_bits:
            levels = levels & ~(2 ** (grid.max_bits - bits) - 1)  # drop the low bits
            low_mean = levels.sum(dtype=w.dtype) / levels.numel()
            # Mean alignment on the integer grid (the 1/top factor cancels in the ratio).
            tiny = torch.finfo(w.dtype).tiny
            factor = factor * torch.where(low_mean > 0, grid.mean / low_mean.clamp_min(tiny), 1.0)
        ctx.slope = grid.slope
        return torch.addcmul(torch.full((), -1.0, dtype=w.dtype, device=w.device), levels, factor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.slope, None, None


def quantize_weight(
    w: torch.Tensor, bits: int, max_bits: int, *, grid: WeightGrid | None = None
) -> torch.Tensor:
    """Quantise weights to ``bits`` by truncating their ``max_bits`` DoReFa integer grid.

    Returns ``w`` itself for ``bits >= 32`` (full precision, raw weights: see module docstring).
    Otherwise ``1 <= bits <= max_bits < 32`` must hold; the result has at most ``2**bits``
    distinct values and carries a straight-through gradient. ``grid``: a ``weight_grid(w,
    max_bits)`` made earlier for this very weight version (the layers reuse it across bit-widths).
    """
    _check_bits(bits, name="bits")
    if bits >= FULL_PRECISION_BITS:
        return w
    _check_bits(max_bits, name="max_bits")
    if not bits <= max_bits < FULL_PRECISION_BITS:
        raise ValueError(
            f"need bits <= max_bits < 32 for a quantised weight, got bits={bits}, "
            f"max_bits={max_bits}; pass the storage grid (largest bit-width below 32) as max_bits"
        )
    if grid is None:
        grid = weight_grid(w, max_bits)
    elif not _grid_fits(grid, w, max_bits):
        raise ValueError("grid was made from another weight version or max_bits; make it with weight_grid(w, max_bits)")
    return _TruncatedWeight.apply(w, grid, bits)


class _PACT(torch.autograd.Function):
    """PACT forward (clip, uniform quantisation) with the PACT straight-through backward.

    Saves the unquantised input ``x`` (the preceding ReLU keeps it alive anyway) rather than
    masks, and builds the masks in backward only.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: torch.Tensor, levels: float) -> torch.Tensor:
        ctx.save_for_backward(x, alpha)
        scale = levels / alpha
        return torch.clamp(x, min=alpha.new_zeros(()), max=alpha).mul_(scale).round_().div_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, alpha = ctx.saved_tensors
        above = x > alpha
        grad_x = grad_alpha = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.where(above | (x < 0), 0.0, grad)
        if ctx.needs_input_grad[1]:
            grad_alpha = torch.where(above, grad, 0.0).sum().reshape(alpha.shape)
        return grad_x, grad_alpha, None


def quantize_activation(x: torch.Tensor, alpha: torch.Tensor, bits: int) -> torch.Tensor:
    """PACT: clip ``x`` to ``[0, alpha]`` and quantise uniformly to ``bits`` bits.

    ``alpha`` is a one-element tensor (learnable). Gradient: identity for ``0 <= x <= alpha``, zero
    elsewhere; ``dL/dalpha`` is the sum of the upstream gradient where ``x > alpha``. At
    ``bits >= 32`` ``x`` is returned unchanged (no clip).
    """
    _check_bits(bits, name="bits")
    if bits >= FULL_PRECISION_BITS:
        return x
    if alpha.numel() != 1:
        raise ValueError(f"alpha must hold one value, got shape {tuple(alpha.shape)}")
    return _PACT.apply(x, alpha, float(2**bits - 1))


def _alpha_dict(bit_widths: Sequence[int], alpha_init: float) -> nn.ParameterDict:
    """One learnable PACT α per quantised bit-width (none for 32: activations pass unquantised)."""
    if alpha_init <= 0:
        raise ValueError(f"alpha_init must be > 0 (PACT clip value), got {alpha_init}")
    return nn.ParameterDict(
        {
            str(b): nn.Parameter(torch.tensor(float(alpha_init)))
            for b in bit_widths
            if b < FULL_PRECISION_BITS
        }
    )


class _QuantMixin:
    """Shared state of the quantised layers: bit-widths, storage grid, active bits, α per bit."""

    bits: int
    max_bits: int
    bit_widths: tuple[int, ...]
    alpha: nn.ParameterDict

    def _init_quant(self, *, bit_widths: Sequence[int], max_bits: int, alpha_init: float) -> None:
        self.bit_widths = tuple(bit_widths)
        self.max_bits = max_bits
        self.bits = max(self.bit_widths)
        self.alpha = _alpha_dict(self.bit_widths, alpha_init)
        self._grid: WeightGrid | None = None

    def __getstate__(self) -> dict:
        # The grid is a cache (and holds a weak reference, which cannot be pickled): copies and
        # pickles (torch.save of a module, Ray) leave it out and rebuild it on first use.
        state = self.__dict__.copy()
        state["_grid"] = None
        return state

    def _weight_grid(self, weight: torch.Tensor) -> WeightGrid:
        """The stored integer weights, recomputed only when the weight changed (once per step)."""
        if self._grid is None or not _grid_fits(self._grid, weight, self.max_bits):
            self._grid = weight_grid(weight, self.max_bits)
        return self._grid

    def _quantized_inputs(
        self, x: torch.Tensor, weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        bits = self.bits
        if bits >= FULL_PRECISION_BITS:
            return x, weight
        return (
            quantize_activation(x, self.alpha[str(bits)], bits),
            quantize_weight(weight, bits, self.max_bits, grid=self._weight_grid(weight)),
        )

    def _quant_repr(self) -> str:
        return f"bit_widths={self.bit_widths}, max_bits={self.max_bits}"


class QuantConv2d(_QuantMixin, nn.Conv2d):
    """Conv2d whose weights and input activations are quantised at the active ``bits``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        *,
        bit_widths: Sequence[int],
        max_bits: int,
        alpha_init: float,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        nn.Conv2d.__init__(
            self,
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
        )
        self._init_quant(bit_widths=bit_widths, max_bits=max_bits, alpha_init=alpha_init)

    @classmethod
    def from_conv(
        cls, conv: nn.Conv2d, *, bit_widths: Sequence[int], max_bits: int, alpha_init: float
    ) -> QuantConv2d:
        """Quantised twin of ``conv`` that shares (takes over) its weight and bias parameters."""
        if conv.padding_mode != "zeros":
            raise ValueError(f"only padding_mode='zeros' is supported, got {conv.padding_mode!r}")
        q = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            bit_widths=bit_widths,
            max_bits=max_bits,
            alpha_init=alpha_init,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
        )
        q.weight = conv.weight
        q.bias = conv.bias
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, weight = self._quantized_inputs(x, self.weight)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._quant_repr()}"


class QuantLinear(_QuantMixin, nn.Linear):
    """Linear layer whose weights and input activations are quantised at the active ``bits``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bit_widths: Sequence[int],
        max_bits: int,
        alpha_init: float,
        bias: bool = True,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._init_quant(bit_widths=bit_widths, max_bits=max_bits, alpha_init=alpha_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, weight = self._quantized_inputs(x, self.weight)
        return F.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._quant_repr()}"


class SwitchableBatchNorm2d(nn.Module):
    """One BatchNorm2d per bit-width (statistics differ per precision); picks by ``bits``."""

    def __init__(self, num_features: int, *, bit_widths: Sequence[int]) -> None:
        super().__init__()
        self.bit_widths = tuple(bit_widths)
        self.bits = max(self.bit_widths)
        self.bns = nn.ModuleDict({str(b): nn.BatchNorm2d(num_features) for b in self.bit_widths})

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d, *, bit_widths: Sequence[int]) -> SwitchableBatchNorm2d:
        """Switchable BN with ``bn``'s hyperparameters; every copy starts from ``bn``'s state."""
        s = cls(bn.num_features, bit_widths=bit_widths)
        for copy in s.bns.values():
            copy.eps, copy.momentum = bn.eps, bn.momentum
            copy.load_state_dict(bn.state_dict())
        return s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bns[str(self.bits)](x)
