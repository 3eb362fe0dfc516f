"""Quantisers and quantised layers (METHODS.md §1.1)."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from searchlab.models.quant import (
    QuantConv2d,
    QuantLinear,
    SwitchableBatchNorm2d,
    quantize_activation,
    quantize_weight,
    weight_grid,
)


@pytest.fixture
def weights() -> torch.Tensor:
    return torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(0)) * 0.3


def _dorefa_integers(w: torch.Tensor, max_bits: int) -> torch.Tensor:
    t = torch.tanh(w)
    return torch.round((t / (2 * t.abs().max()) + 0.5) * (2**max_bits - 1))


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_weight_levels_at_most_two_to_the_bits(weights: torch.Tensor, bits: int) -> None:
    q = quantize_weight(weights, bits, 4)
    assert q.unique().numel() <= 2**bits
    assert q.unique().numel() >= 2  # not collapsed to a constant


def test_weight_max_bits_is_plain_dorefa_in_minus_one_one(weights: torch.Tensor) -> None:
    q = quantize_weight(weights, 4, 4)
    expected = 2 * _dorefa_integers(weights, 4) / 15 - 1
    torch.testing.assert_close(q, expected)
    assert q.abs().max().item() == pytest.approx(1.0) and q.min() >= -1.0


@pytest.mark.parametrize(("bits", "max_bits"), [(1, 8), (2, 8), (3, 8), (4, 12)])
def test_lower_bits_truncate_the_max_bit_grid_then_align_means(
    weights: torch.Tensor, bits: int, max_bits: int
) -> None:
    q_int = _dorefa_integers(weights, max_bits)
    step = 2 ** (max_bits - bits)
    truncated = torch.floor(q_int / step) * step / (2**max_bits - 1)
    full = q_int / (2**max_bits - 1)
    aligned = truncated * full.mean() / truncated.mean()
    q = quantize_weight(weights, bits, max_bits)
    torch.testing.assert_close(q, 2 * aligned - 1)
    # Mean alignment: same mean as the max-bit tensor.
    torch.testing.assert_close(q.mean(), quantize_weight(weights, max_bits, max_bits).mean())
    # Every value lies on the truncated grid (times the alignment factor).
    levels = ((q + 1) / 2 * (2**max_bits - 1) * truncated.mean() / full.mean()) / step
    torch.testing.assert_close(levels, levels.round(), atol=1e-3, rtol=0)
    assert q.min() == -1


def test_mean_alignment_skipped_when_truncated_mean_is_zero() -> None:
    # Every weight below the top 2-bit level of an 8-bit grid except one: 1-bit truncation -> all 0.
    w = torch.full((10,), -1.0)
    w[0] = 1.0
    q = quantize_weight(w, 1, 8)
    assert torch.isfinite(q).all()
    assert q.unique().tolist() == [-1.0, 1.0]


def test_weight_full_precision_path_returns_raw_weights(weights: torch.Tensor) -> None:
    assert quantize_weight(weights, 32, 4) is weights


def test_weight_straight_through_gradient(weights: torch.Tensor) -> None:
    w = weights.clone().double().requires_grad_()
    upstream = torch.randn_like(w)
    (quantize_weight(w, 2, 4) * upstream).sum().backward()
    w2 = weights.clone().double().requires_grad_()
    t = torch.tanh(w2)
    # Straight-through: the gradient of 2u - 1, the normalising max held constant.
    (((t / (2 * t.abs().max().detach()) + 0.5) * 2 - 1) * upstream).sum().backward()
    torch.testing.assert_close(w.grad, w2.grad)


def test_weight_rejects_bits_above_grid(weights: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="max_bits"):
        quantize_weight(weights, 8, 4)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_activation_levels_and_range(bits: int) -> None:
    x = torch.linspace(-2, 6, 1001)
    y = quantize_activation(x, torch.tensor(3.0), bits)
    assert y.min() == 0 and y.max() == 3.0
    assert y.unique().numel() == 2**bits
    torch.testing.assert_close(y.unique(), torch.linspace(0, 3, 2**bits))


def test_activation_full_precision_passes_through() -> None:
    x = torch.randn(10) * 10
    assert quantize_activation(x, torch.tensor(1.0), 32) is x


def test_activation_gradients_pact() -> None:
    x = torch.tensor([-1.0, 0.5, 1.5, 2.5, 4.0], requires_grad=True)
    alpha = torch.tensor(2.0, requires_grad=True)
    upstream = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    (quantize_activation(x, alpha, 2) * upstream).sum().backward()
    assert x.grad.tolist() == [0.0, 2.0, 3.0, 0.0, 0.0]
    assert alpha.grad.item() == 4.0 + 5.0


def test_activation_alpha_gradient_matches_finite_difference() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(500, generator=gen, dtype=torch.float64) * 2
    upstream = torch.randn(500, generator=gen, dtype=torch.float64)
    alpha = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    bits = 30  # fine grid: the quantised function is the clip up to ~1e-9
    (quantize_activation(x, alpha, bits) * upstream).sum().backward()
    eps = 1e-4

    def loss(a: float) -> float:
        return float((quantize_activation(x, torch.tensor(a, dtype=torch.float64), bits) * upstream).sum())

    numeric = (loss(1.3 + eps) - loss(1.3 - eps)) / (2 * eps)
    assert alpha.grad.item() == pytest.approx(numeric, abs=1e-3)
    assert alpha.grad.item() == pytest.approx(float(upstream[x > 1.3].sum()))


def test_quant_conv_matches_functional_quantisers() -> None:
    torch.manual_seed(0)
    conv = QuantConv2d(4, 6, 3, bit_widths=(32, 4, 2), max_bits=4, alpha_init=2.0, padding=1)
    x = torch.rand(2, 4, 8, 8) * 3
    conv.bits = 2
    expected = torch.nn.functional.conv2d(
        quantize_activation(x, torch.tensor(2.0), 2), quantize_weight(conv.weight, 2, 4), conv.bias, padding=1
    )
    torch.testing.assert_close(conv(x), expected)
    conv.bits = 32
    torch.testing.assert_close(conv(x), torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1))
    assert sorted(conv.alpha.keys()) == ["2", "4"]


def test_quant_linear_alpha_per_bit_gets_its_own_gradient() -> None:
    lin = QuantLinear(5, 3, bit_widths=(4, 2), max_bits=4, alpha_init=0.5)
    x = torch.rand(4, 5) * 2
    lin.bits = 4
    lin(x).sum().backward()
    assert lin.alpha["4"].grad is not None and lin.alpha["2"].grad is None


def test_switchable_bn_copies_are_independent() -> None:
    bn = SwitchableBatchNorm2d(3, bit_widths=(32, 4))
    bn.train()
    bn.bits = 4
    bn(torch.randn(4, 3, 5, 5) + 7)
    assert bn.bns["4"].running_mean.mean() > 0.5
    assert torch.equal(bn.bns["32"].running_mean, torch.zeros(3))
    bn.bns["4"].weight.data.fill_(3.0)
    assert torch.equal(bn.bns["32"].weight, torch.ones(3))


def test_layer_reuses_its_grid_until_the_weight_changes() -> None:
    torch.manual_seed(0)
    conv = QuantConv2d(4, 6, 3, bit_widths=(32, 4, 2), max_bits=4, alpha_init=2.0)
    x = torch.rand(2, 4, 6, 6)
    conv.bits = 4
    conv(x)
    grid = conv._weight_grid(conv.weight)
    assert grid.levels.dtype == torch.uint8 and int(grid.levels.max()) <= 15
    conv.bits = 2
    conv(x)
    assert conv._weight_grid(conv.weight) is grid  # one stored grid serves every bit-width
    with torch.no_grad():
        conv.weight.mul_(-1.0)  # what an optimizer step does: an in-place write
    out = conv(x)
    expected = torch.nn.functional.conv2d(
        quantize_activation(x, torch.tensor(2.0), 2), quantize_weight(conv.weight, 2, 4), conv.bias
    )
    torch.testing.assert_close(out, expected)
    assert conv._weight_grid(conv.weight) is not grid


def test_grid_of_another_weight_is_rejected(weights: torch.Tensor) -> None:
    grid = weight_grid(weights, 4)
    torch.testing.assert_close(quantize_weight(weights, 2, 4, grid=grid), quantize_weight(weights, 2, 4))
    with pytest.raises(ValueError, match="another weight version"):
        quantize_weight(weights.clone(), 2, 4, grid=grid)
    with pytest.raises(ValueError, match="max_bits must be < 32"):
        weight_grid(weights, 32)


def test_layers_with_a_grid_pickle_and_deepcopy() -> None:
    conv = QuantConv2d(2, 3, 1, bit_widths=(4, 2), max_bits=4, alpha_init=1.0)
    conv.bits = 2
    x = torch.rand(1, 2, 3, 3)
    out = conv(x)
    for twin in (pickle.loads(pickle.dumps(conv)), copy.deepcopy(conv)):
        assert twin._grid is None
        torch.testing.assert_close(twin(x), out)
    assert conv._grid is not None
