"""PolicyNetwork: shapes, the three action modes, gradient flow, frame-by-frame equivalence, loading φ."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import mobilenet_v2

from searchlab.models.policy import PolicyNetwork, PolicyOutput, select_actions
from searchlab.models.videoiq import combine_frame_logits

DECISION_SPACE = (32, 4, 2, 0)
BIT_WIDTHS = (32, 4, 2)


def tiny_policy(**overrides: object) -> PolicyNetwork:
    arguments = dict(num_actions=len(DECISION_SPACE), input_size=32, hidden_size=16, width_mult=0.25, dropout=0.2)
    arguments.update(overrides)
    return PolicyNetwork(**arguments)


def frames(n: int = 2, t: int = 4, size: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, t, 3, size, size, generator=torch.Generator().manual_seed(seed))


def is_one_hot(actions: torch.Tensor) -> bool:
    return bool(((actions == 0) | (actions == 1)).all() and (actions.sum(-1) == 1).all())


def test_extract_resizes_with_antialias_then_pools() -> None:
    torch.manual_seed(0)
    policy = tiny_policy().eval()
    clip = frames(size=48)
    features = policy.extract(clip)
    assert features.shape == (2, 4, policy.feature_dim)
    resized = F.interpolate(clip.flatten(0, 1), size=(32, 32), mode="bilinear", antialias=True).unflatten(0, (2, 4))
    torch.testing.assert_close(policy.extract(resized), features)


def test_gumbel_hard_is_one_hot_and_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    policy = tiny_policy().train()
    clip = frames()
    out = policy.decide(policy.extract(clip), tau=5.0, mode="gumbel_hard")
    assert isinstance(out, PolicyOutput)
    assert out.logits.shape == out.probs.shape == out.actions.shape == (2, 4, len(DECISION_SPACE))
    assert is_one_hot(out.actions)
    torch.testing.assert_close(out.probs.sum(-1), torch.ones(2, 4))
    frame_logits = torch.randn(2, 4, len(BIT_WIDTHS), 5)
    video_logits = combine_frame_logits(frame_logits, out.actions, decision_space=DECISION_SPACE, bit_widths=BIT_WIDTHS)
    F.cross_entropy(video_logits, torch.tensor([1, 3])).backward()
    missing = [name for name, p in policy.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_argmax_is_deterministic_and_matches_logits() -> None:
    torch.manual_seed(0)
    policy = tiny_policy().eval()
    features = policy.extract(frames())
    first = policy.decide(features, mode="argmax")
    second = policy.decide(features, mode="argmax")
    assert is_one_hot(first.actions)
    assert torch.equal(first.actions, second.actions)
    assert torch.equal(first.actions.argmax(-1), first.logits.argmax(-1))


def test_sample_mode_draws_from_the_policy_distribution() -> None:
    torch.manual_seed(0)
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0]).expand(20000, 4)
    actions = select_actions(logits, mode="sample")
    assert is_one_hot(actions)
    torch.testing.assert_close(actions.mean(0), logits[0].softmax(-1), atol=0.015, rtol=0)


def test_step_by_step_equals_decide() -> None:
    torch.manual_seed(0)
    policy = tiny_policy().eval()
    features = policy.extract(frames())
    state = None
    steps = []
    for t in range(features.shape[1]):
        logits_t, state = policy.step(features[:, t], state)
        steps.append(logits_t)
    torch.testing.assert_close(torch.stack(steps, 1), policy.decide(features, mode="argmax").logits)


def test_mode_and_temperature_errors() -> None:
    logits = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="unknown mode 'soft'"):
        select_actions(logits, mode="soft")
    with pytest.raises(ValueError, match="needs a temperature tau > 0"):
        select_actions(logits, mode="gumbel_hard")
    with pytest.raises(ValueError, match="needs a temperature tau > 0"):
        select_actions(logits, mode="gumbel_hard", tau=0.0)


def test_constructor_reports_every_problem() -> None:
    with pytest.raises(ValueError) as info:
        PolicyNetwork(num_actions=1, input_size=8, hidden_size=0, width_mult=0.0, dropout=1.0)
    message = str(info.value)
    for fragment in ("num_actions=1", "input_size=8", "hidden_size=0", "width_mult=0.0", "dropout=1.0"):
        assert fragment in message


def test_feature_weights_load_from_a_trained_mobilenet_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(1)
    trained = mobilenet_v2(weights=None, width_mult=0.25, num_classes=7)
    path = tmp_path / "mobilenet.pt"
    torch.save(trained.state_dict(), path)
    policy = tiny_policy(feature_weights=path)
    for name, tensor in trained.features.state_dict().items():
        assert torch.equal(policy.features.state_dict()[name], tensor), name
    wider = mobilenet_v2(weights=None, width_mult=0.5).state_dict()
    with pytest.raises(ValueError, match="same width_mult"):
        tiny_policy().load_feature_state_dict(wider)
    with pytest.raises(ValueError, match="no 'features"):
        tiny_policy().load_feature_state_dict({"fc.weight": torch.zeros(1)})
