"""Stage-1 and stage-2 loss terms on hand-made inputs."""

import math

import pytest
import torch
import torch.nn.functional as F

from searchlab.train.losses import (
    balance_loss,
    decisiveness_loss,
    efficiency_costs,
    efficiency_loss,
    kd_loss,
    stage1_loss,
    stage2_loss,
)


def test_kd_is_zero_when_student_equals_teacher():
    logits = torch.randn(5, 7)
    assert kd_loss(logits, logits.clone()).item() == pytest.approx(0.0, abs=1e-7)


def test_kd_is_positive_and_matches_kl_by_hand():
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # p_t = (3/4, 1/4), p_s = (1/2, 1/2)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert kd_loss(student, teacher).item() == pytest.approx(expected, rel=1e-6)


def test_kd_does_not_train_the_teacher():
    teacher = torch.randn(3, 4, requires_grad=True)
    student = torch.randn(3, 4, requires_grad=True)
    kd_loss(student, teacher).backward()
    assert teacher.grad is None and student.grad is not None


def test_stage1_loss_sums_every_bit_width():
    labels = torch.tensor([0, 1])
    logits = torch.randn(3, 2, 4)
    teacher = torch.randn(2, 4)
    total, terms = stage1_loss(logits, labels=labels, teacher_logits=teacher, kd_weight=0.5, bit_widths=(32, 4, 2))
    by_hand = sum(F.cross_entropy(l, labels) + 0.5 * kd_loss(l, teacher) for l in logits)
    assert total.item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert set(terms) == {"ce_32", "kd_32", "ce_4", "kd_4", "ce_2", "kd_2"}


def test_efficiency_costs_follow_the_official_code():
    assert efficiency_costs((32, 4, 2, 0)).tolist() == pytest.approx([1.0, 0.25, 0.0625, 0.0])


def test_efficiency_and_balance_by_hand():
    # 2 videos x 2 frames over Ω = (32, 4, 2, 0): usage = (1/2, 1/4, 0, 1/4)
    index = torch.tensor([[0, 1], [0, 3]])
    actions = F.one_hot(index, 4).float()
    assert efficiency_loss(actions, decision_space=(32, 4, 2, 0)).item() == pytest.approx(0.5 + 0.25 * 0.25)
    expected_balance = (0.5 - 0.25) ** 2 + 0 + 0.25**2 + 0
    assert balance_loss(actions).item() == pytest.approx(expected_balance)
    uniform = F.one_hot(torch.tensor([[0, 1, 2, 3]]), 4).float()
    assert balance_loss(uniform).item() == pytest.approx(0.0)


def test_decisiveness_averages_frame_entropies():
    probs = torch.full((2, 3, 4), 0.25)
    assert decisiveness_loss(probs).item() == pytest.approx(math.log(4))
    assert decisiveness_loss(F.one_hot(torch.zeros(2, 3, dtype=torch.long), 4).float()).item() == pytest.approx(0.0)


def test_stage2_loss_weights_its_terms():
    torch.manual_seed(0)
    logits = torch.randn(2, 5)
    teacher = torch.randn(2, 5)
    labels = torch.tensor([1, 3])
    actions = F.one_hot(torch.tensor([[0, 3], [1, 2]]), 4).float()
    probs = torch.softmax(torch.randn(2, 2, 4), dim=-1)
    kwargs = dict(video_logits=logits, teacher_logits=teacher, labels=labels, actions=actions, probs=probs,
                  decision_space=(32, 4, 2, 0))
    total, terms = stage2_loss(**kwargs, kd_weight=1.0, w1=0.0, w2=0.0, w3=0.0)
    assert total.item() == pytest.approx((terms["ce"] + terms["kd"]).item())
    total2, _ = stage2_loss(**kwargs, kd_weight=2.0, w1=0.3, w2=0.5, w3=0.1)
    expected = terms["ce"] + 2 * terms["kd"] + 0.3 * terms["efficiency"] + 0.5 * terms["balance"] + 0.1 * terms["decisiveness"]
    assert total2.item() == pytest.approx(expected.item(), rel=1e-6)


def test_flops_efficiency_costs_charge_the_exact_per_layer_price():
    from searchlab import flops
    from searchlab.train.losses import flops_efficiency_costs

    costs = flops_efficiency_costs((32, 4, 2, 0), backbone="resnet10", size=32, num_classes=4)
    table = flops.action_cost_table("resnet10", decision_space=[32, 4, 2, 0], size=32, num_classes=4)
    assert costs.tolist() == pytest.approx([1.0, table[4] / table[32], table[2] / table[32], 0.0])
    # first conv and fc stay at full precision, so 2 bits cost more than the official 1/16
    assert costs[2] > efficiency_costs((32, 4, 2, 0))[2]
    actions = F.one_hot(torch.tensor([[2, 3]]), 4).float()
    assert efficiency_loss(actions, decision_space=(32, 4, 2, 0), costs=costs).item() == pytest.approx(costs[2].item() / 2)
