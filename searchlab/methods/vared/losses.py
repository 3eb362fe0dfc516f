"""VA-RED²'s efficiency loss L_e (METHODS.md §3, eq. 3.6) and its differentiable surrogate.

L_e = mean over the batch of (μ0 · Σ_l frac_l · ratio_l)², μ0 = 1 for a correctly classified clip
and 0 otherwise, frac_l = C(f_l) / Σ_k C(f_k) (``VaredCosts.layer_fractions``). The thesis's ratio_l
is r^s/R^s of layer l's largest non-zero alternative: piecewise constant in the gate weights, so it
passes no gradient to the gates. ``SURROGATES``:

* ``"expected"`` (default): the gate-weighted expected cost ratio
  Σ_i Σ_j V_c[i]·V_t[j]·(r_i/R_j) / (Σ V_c · Σ V_t) = (Σ_i V_c[i]·r_i / Σ V_c)·(Σ_j V_t[j]/R_j / Σ V_t),
  differentiable in every weight; a dimension whose weights are all zero (``zero_gate="zero"``)
  contributes 0, as that layer computes nothing;
* ``"largest"``: the thesis's exact r^s/R^s (0 when a dimension is all zero), with no gradient; L_e
  then only reports the cost it would charge and cannot train the gates.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["SURROGATES", "efficiency_loss"]

SURROGATES: tuple[str, ...] = ("expected", "largest")


def _expected(weights: Tensor, costs: Tensor) -> Tensor:
    """Σ_i w_i·costs_i / Σ_i w_i per sample; 0 where every weight is 0."""
    return (weights * costs).sum(dim=1) / weights.sum(dim=1).clamp_min(torch.finfo(weights.dtype).tiny)


def _largest(weights: Tensor, costs: Tensor) -> Tensor:
    """costs of the first non-zero weight per sample (the largest alternative); 0 where all are 0."""
    on = weights.detach() > 0
    return torch.where(on.any(dim=1), costs[on.int().argmax(dim=1)], torch.zeros((), dtype=costs.dtype,
                                                                                   device=costs.device))


def efficiency_loss(
    *,
    weights: Sequence[tuple[Tensor, Tensor]],
    layer_fractions: Tensor,
    channel_ratios: Sequence[float],
    temporal_strides: Sequence[int],
    correct: Tensor,
    surrogate: str = "expected",
) -> Tensor:
    """L_e of one batch from each gated layer's (v_t (N, S_t), v_c (N, S_c)) (``gate_weights()``).

    ``channel_ratios`` r_i and ``temporal_strides`` R_j are those of the network's alternatives
    (``VaredNetwork.channel_ratios`` / ``temporal_strides``); ``correct`` (N,) is 1 for correctly
    classified clips and 0 otherwise.
    """
    if surrogate not in SURROGATES:
        raise ValueError(f"unknown surrogate {surrogate!r}; choose one of {list(SURROGATES)}")
    if len(weights) != len(layer_fractions) or not weights:
        raise ValueError(f"{len(weights)} layers of gate weights for {len(layer_fractions)} layer fractions")
    reference = weights[0][1]
    ratios = torch.as_tensor(channel_ratios, dtype=reference.dtype, device=reference.device)
    inverse_strides = 1.0 / torch.as_tensor(temporal_strides, dtype=reference.dtype, device=reference.device)
    ratio = _expected if surrogate == "expected" else _largest
    fractions = layer_fractions.to(device=reference.device, dtype=reference.dtype)
    cost = torch.zeros(reference.shape[0], dtype=reference.dtype, device=reference.device)
    for (v_t, v_c), fraction in zip(weights, fractions):
        if v_t.shape[1] != len(inverse_strides) or v_c.shape[1] != len(ratios):
            raise ValueError(f"gate weights {tuple(v_t.shape)}, {tuple(v_c.shape)} do not match "
                             f"{len(temporal_strides)} temporal and {len(channel_ratios)} channel alternatives")
        cost = cost + fraction * ratio(v_c, ratios) * ratio(v_t, inverse_strides)
    return ((correct.to(cost.dtype) * cost) ** 2).mean()
