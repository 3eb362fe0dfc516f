"""AR-Net's training loss (METHODS.md §2).

L = w_acc·CE(video logits, y) + w_eff·( Σ_a ū_a·G_a + λ_u·‖ū − mean(ū)‖₂ )

ū_a is the mean usage of action a over the batch × T slots (slots filled by a skip window count as
that skip action), G_a the action's efficiency weight (``efficiency_weights``) and the uniform term
an unsquared L2 norm over all actions (the official code's ``torch.norm``). There is no entropy term,
and the policy's own cost is not in the loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from searchlab.methods.arnet.decisions import ActionLayout

__all__ = ["EFFICIENCY_COSTS", "action_usage", "arnet_loss", "efficiency_weights"]

EFFICIENCY_COSTS: tuple[str, ...] = ("flops", "official")


def efficiency_weights(
    layout: ActionLayout, *, kind: str, resolution_gflops: Sequence[float] | None = None
) -> Tensor:
    """G_a per action (|A|,).

    ``"flops"``: GFLOPs per frame of resolution i's backbone at its size (``resolution_gflops[i]``,
    from ``costs.backbone_gflops``); 0 for the head and the skips. ``"official"``: the code's fixed
    weights, action k weighing 4·2^−k ([4, 2, 1, .5, .25, .125, .0625] for the paper's seven).
    """
    if kind == "official":
        return torch.tensor([4.0 * 2.0**-k for k in range(layout.num_actions)])
    if kind != "flops":
        raise ValueError(f"unknown efficiency cost {kind!r}; choose one of {list(EFFICIENCY_COSTS)}")
    if resolution_gflops is None or len(resolution_gflops) != layout.num_resolutions:
        raise ValueError(f"efficiency cost 'flops' needs one GFLOPs value per resolution {layout.resolutions}, "
                         f"got {resolution_gflops!r}; pass costs.backbone_gflops of each")
    zeros = [0.0] * (layout.num_actions - layout.num_resolutions)
    return torch.tensor([float(g) for g in resolution_gflops] + zeros)


def action_usage(actions: Tensor) -> Tensor:
    """ū (|A|,): mean of the one-hot actions (N, T, |A|) over the N × T slots (differentiable)."""
    return actions.reshape(-1, actions.shape[-1]).mean(dim=0)


def arnet_loss(
    *,
    video_logits: Tensor,
    labels: Tensor,
    actions: Tensor,
    weights: Tensor,
    w_acc: float,
    w_eff: float,
    lambda_u: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The total loss and its detached terms (ce, efficiency, uniform) for logging."""
    if weights.shape != actions.shape[-1:]:
        raise ValueError(f"weights {tuple(weights.shape)} must have one entry per action ({actions.shape[-1]})")
    usage = action_usage(actions)
    ce = F.cross_entropy(video_logits, labels)
    efficiency = (usage * weights.to(usage)).sum()
    # Unsquared norm; at exactly uniform usage its gradient is 0/0, which torch defines as 0.
    uniform = torch.linalg.vector_norm(usage - usage.mean())
    total = w_acc * ce + w_eff * (efficiency + lambda_u * uniform)
    return total, {"ce": ce.detach(), "efficiency": efficiency.detach(), "uniform": uniform.detach()}
