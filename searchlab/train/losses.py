"""Loss terms of VideoIQ's two stages (METHODS.md §1.2, §1.3).

Stage 1: L_f = Σ_b [ CE(f_b(V), y) + kd_weight · KD(teacher ‖ f_b(V)) ] on video logits.
Stage 2: L_g = CE(V|A) + kd_weight · KD(V|A) + w1·L_e(A) + w2·L_b(A) + w3·L_d(π).

Choices (documented here because they change what w1..w3 mean):
- L_e follows the official code: Σ over actions of usage · min(b, 8)²/64, skip = 0. It is already
  normalised (1.0 = every frame at full precision) whatever the backbone, so one w1 is comparable
  across backbones; the honest per-layer GFLOPs of ``searchlab.flops`` are what evaluation reports.
- L_b is the squared deviation of the batch's action usage from uniform, as in the official code.
- L_d is Σ_i H(π_i): the entropy summed over a clip's frames, averaged over the batch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from searchlab import flops

__all__ = [
    "balance_loss",
    "decisiveness_loss",
    "efficiency_costs",
    "efficiency_loss",
    "flops_efficiency_costs",
    "kd_loss",
    "stage1_loss",
    "stage2_loss",
]


def kd_loss(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """KL(softmax(teacher) ‖ softmax(student)) per video, averaged over the batch.

    The teacher side is detached: it is a frozen target, never trained through this loss.
    """
    return F.kl_div(
        F.log_softmax(student_logits, dim=-1),
        F.log_softmax(teacher_logits.detach().to(student_logits.dtype), dim=-1),
        reduction="batchmean",
        log_target=True,
    )


def stage1_loss(
    video_logits: Tensor, *, labels: Tensor, teacher_logits: Tensor, kd_weight: float, bit_widths: Sequence[int]
) -> tuple[Tensor, dict[str, Tensor]]:
    """Sum over bit-widths of CE + kd_weight·KD; ``video_logits`` (|B|, N, C) in ``bit_widths`` order.

    Returns the total and its terms (``ce_<b>``, ``kd_<b>``, detached) for logging.
    """
    if video_logits.dim() != 3 or video_logits.shape[0] != len(bit_widths):
        raise ValueError(f"video_logits must be (|B|={len(bit_widths)}, N, C), got {tuple(video_logits.shape)}")
    total = video_logits.new_zeros(())
    terms: dict[str, Tensor] = {}
    for logits, bits in zip(video_logits, bit_widths):
        ce = F.cross_entropy(logits, labels)
        kd = kd_loss(logits, teacher_logits)
        total = total + ce + kd_weight * kd
        terms[f"ce_{bits}"] = ce.detach()
        terms[f"kd_{bits}"] = kd.detach()
    return total, terms


def efficiency_costs(decision_space: Sequence[int]) -> Tensor:
    """Per-action cost of L_e: min(b, 8)²/64 for a bit-width b, 0 for skip (official code)."""
    return torch.tensor([min(b, 8) ** 2 / 64.0 if b else 0.0 for b in decision_space])


@functools.lru_cache(maxsize=64)
def _flops_costs(decision_space: tuple[int, ...], backbone: str, size: int, num_classes: int) -> tuple[float, ...]:
    table = flops.action_cost_table(backbone, decision_space=list(decision_space), size=size, num_classes=num_classes)
    top = table[max(decision_space)]
    return tuple(table[bits] / top for bits in decision_space)


def flops_efficiency_costs(decision_space: Sequence[int], *, backbone: str, size: int, num_classes: int) -> Tensor:
    """Per-action cost of L_e as METHODS §1.3 defines it: the action's exact FLOPs (first conv and fc
    at full precision, searchlab.flops) over the top precision's, skip = 0.

    The official min(b,8)²/64 charges a 2-bit frame 1/16 of a full one, while its real cost is
    higher (1/6 for ResNet-10 at 56 px): with the official costs skipping is barely cheaper than
    2 bits, so a policy never learns to skip where the FLOPs say it should.
    """
    return torch.tensor(_flops_costs(tuple(decision_space), backbone, size, num_classes))


def _usage(actions: Tensor) -> Tensor:
    """Fraction of frames per action (|Ω|,), differentiable through straight-through actions."""
    return actions.reshape(-1, actions.shape[-1]).mean(dim=0)


def efficiency_loss(actions: Tensor, *, decision_space: Sequence[int], costs: Tensor | None = None) -> Tensor:
    """L_e = Σ_k usage_k · cost_k; ``actions`` (N, T, |Ω|); costs default to ``efficiency_costs``."""
    costs = efficiency_costs(decision_space) if costs is None else costs
    return (_usage(actions) * costs.to(actions)).sum()


def balance_loss(actions: Tensor) -> Tensor:
    """L_b = Σ_k (usage_k − 1/|Ω|)²: pushes the batch towards using every action."""
    usage = _usage(actions)
    return ((usage - 1.0 / usage.numel()) ** 2).sum()


def decisiveness_loss(probs: Tensor) -> Tensor:
    """L_d = (1/T) Σ_i H(π_i), averaged over clips; ``probs`` (N, T, |Ω|).

    Divided by T like L_e and L_b (per-frame usages), so that w3 means the same at 8 or 16 frames:
    summed over 8 frames the entropy term outweighed the others and collapsed every policy onto
    one action within two epochs.
    """
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=-1)  # (N, T)
    return entropy.mean()


def stage2_loss(
    *,
    video_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    actions: Tensor,
    probs: Tensor,
    decision_space: Sequence[int],
    kd_weight: float,
    w1: float,
    w2: float,
    w3: float,
    action_costs: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """L_g and its detached terms (ce, kd, efficiency, balance, decisiveness) for logging."""
    terms = {
        "ce": F.cross_entropy(video_logits, labels),
        "kd": kd_loss(video_logits, teacher_logits),
        "efficiency": efficiency_loss(actions, decision_space=decision_space, costs=action_costs),
        "balance": balance_loss(actions),
        "decisiveness": decisiveness_loss(probs),
    }
    total = (
        terms["ce"]
        + kd_weight * terms["kd"]
        + w1 * terms["efficiency"]
        + w2 * terms["balance"]
        + w3 * terms["decisiveness"]
    )
    return total, {name: value.detach() for name, value in terms.items()}
