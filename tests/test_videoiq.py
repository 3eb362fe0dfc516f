"""VideoIQ: combining frame logits, decision-space validation, training vs inference path, compute."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from searchlab import flops
from searchlab.models.policy import PolicyNetwork
from searchlab.models.registry import create_backbone
from searchlab.models.videoiq import VideoIQ, action_usage, combine_frame_logits

DECISION_SPACE = (32, 4, 2, 0)
BIT_WIDTHS = (32, 4, 2)
NUM_CLASSES = 5
SIZE = 32


def tiny_videoiq(decision_space: tuple[int, ...] = DECISION_SPACE) -> VideoIQ:
    torch.manual_seed(0)
    backbone = create_backbone("resnet10", num_classes=NUM_CLASSES, bit_widths=BIT_WIDTHS, alpha_init=4.0)
    policy = PolicyNetwork(num_actions=len(decision_space), input_size=32, hidden_size=16, width_mult=0.25)
    return VideoIQ(backbone=backbone, policy=policy, decision_space=decision_space)


@pytest.fixture(scope="module")
def eval_model() -> VideoIQ:
    """One model in eval mode shared by the inference tests (they do not change it)."""
    return tiny_videoiq().eval()


def clip(n: int = 2, t: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, t, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def one_hot(indices: list[list[int]], num_actions: int = len(DECISION_SPACE)) -> torch.Tensor:
    return F.one_hot(torch.tensor(indices), num_actions).float()


def test_combine_averages_the_chosen_precision_over_processed_frames() -> None:
    # frame_logits[n, t, b, :] = distinct values per (video, frame, precision).
    frame_logits = torch.arange(2 * 3 * 3 * 2, dtype=torch.float32).reshape(2, 3, 3, 2)
    # Video 0: frame 0 at 32 bits, frame 1 skipped, frame 2 at 2 bits. Video 1: all skipped.
    actions = one_hot([[0, 3, 2], [3, 3, 3]])
    video = combine_frame_logits(frame_logits, actions, decision_space=DECISION_SPACE, bit_widths=BIT_WIDTHS)
    expected_0 = (frame_logits[0, 0, 0] + frame_logits[0, 2, 2]) / 2
    torch.testing.assert_close(video, torch.stack([expected_0, torch.zeros(2)]))


def test_combine_maps_actions_to_bit_widths_by_value_not_position() -> None:
    frame_logits = torch.randn(1, 2, 3, 4)
    # Ω listed in another order than B: action 0 means 2 bits, action 1 means 32 bits.
    actions = one_hot([[0, 1]], num_actions=3)
    video = combine_frame_logits(frame_logits, actions, decision_space=(2, 32, 0), bit_widths=BIT_WIDTHS)
    torch.testing.assert_close(video[0], (frame_logits[0, 0, 2] + frame_logits[0, 1, 0]) / 2)


def test_all_skipped_video_gets_zero_logits_and_a_bounded_gradient() -> None:
    frame_logits = torch.randn(1, 2, 3, 4)
    actions = one_hot([[3, 3]]).requires_grad_(True)
    video = combine_frame_logits(frame_logits, actions, decision_space=DECISION_SPACE, bit_widths=BIT_WIDTHS)
    assert torch.equal(video, torch.zeros(1, 4))
    video.sum().backward()
    # Divided by max(count, 1): the gradient to "run at b" is that frame's logit sum, not 1/ε times it.
    torch.testing.assert_close(actions.grad[0, :, :3], frame_logits[0].sum(-1))


def test_combine_rejects_mismatched_shapes_and_missing_precisions() -> None:
    with pytest.raises(ValueError) as info:
        combine_frame_logits(
            torch.zeros(1, 2, 2, 4), torch.zeros(1, 3, 4), decision_space=(32, 4, 2, 0), bit_widths=(32, 4)
        )
    message = str(info.value)
    assert "actions cover (N, T)=(1, 3) but frame_logits cover (1, 2)" in message
    assert "[2] have no logits" in message


def test_decision_space_validation_lists_every_problem() -> None:
    backbone = create_backbone("resnet10", num_classes=NUM_CLASSES, bit_widths=BIT_WIDTHS, alpha_init=4.0)
    policy = PolicyNetwork(num_actions=4, input_size=32, hidden_size=8, width_mult=0.25)
    with pytest.raises(ValueError) as info:
        VideoIQ(backbone=backbone, policy=policy, decision_space=(4, 4, 8, 0))
    message = str(info.value)
    assert "[4] appear more than once" in message
    assert "[8] are not among the backbone's (32, 4, 2)" in message
    assert "top bit-width 32 is missing" in message
    with pytest.raises(ValueError, match="the policy has 4 actions but the decision space"):
        VideoIQ(backbone=backbone, policy=policy, decision_space=(32, 0))


def test_forward_train_reaches_every_policy_parameter_and_not_the_frozen_backbone() -> None:
    model = tiny_videoiq()
    model.backbone.eval().requires_grad_(False)
    model.policy.train()
    out = model.forward_train(clip(), tau=5.0)
    assert out["video_logits"].shape == (2, NUM_CLASSES)
    assert out["frame_logits"].shape == (2, 4, 3, NUM_CLASSES)
    assert out["actions"].shape == out["probs"].shape == (2, 4, 4)
    assert bool((out["actions"].sum(-1) == 1).all())
    F.cross_entropy(out["video_logits"], torch.tensor([0, 3])).backward()
    assert [n for n, p in model.policy.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []
    assert all(p.grad is None for p in model.backbone.parameters())


def test_infer_equals_the_batched_path_under_the_same_actions(eval_model: VideoIQ) -> None:
    model = eval_model
    frames = clip(n=3)
    video_logits, actions = model.infer(frames)
    # The frame-by-frame decisions equal the whole-clip argmax decisions.
    expected_actions = model.policy.decide(model.policy.extract(frames), mode="argmax").actions
    assert torch.equal(actions, expected_actions)
    with torch.no_grad():
        frame_logits = model.frame_logits(frames)
        batched = combine_frame_logits(frame_logits, actions, decision_space=DECISION_SPACE, bit_widths=BIT_WIDTHS)
        torch.testing.assert_close(video_logits, batched)
        # Forced decisions covering every action and an all-skipped video.
        forced = one_hot([[0, 1, 2, 3], [3, 3, 3, 3], [2, 2, 0, 3]])
        forced_logits, _ = model.infer(frames, actions=forced)
        expected = combine_frame_logits(frame_logits, forced, decision_space=DECISION_SPACE, bit_widths=BIT_WIDTHS)
    torch.testing.assert_close(forced_logits, expected)
    assert torch.equal(forced_logits[1], torch.zeros(NUM_CLASSES))


def test_infer_runs_each_chosen_precision_once_and_skipped_frames_not_at_all(eval_model: VideoIQ) -> None:
    model = eval_model
    runs: list[tuple[int, int]] = []

    def record(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        runs.append((kwargs["bits"], args[0].shape[0]))

    handle = model.backbone.register_forward_pre_hook(record, with_kwargs=True)
    forced = one_hot([[0, 3, 2, 3], [3, 3, 3, 3], [2, 2, 0, 3]])
    model.infer(clip(n=3), actions=forced)
    handle.remove()
    assert sorted(runs) == [(2, 3), (32, 2)]  # 4 bits chosen by no frame: not run


def test_action_usage_is_the_fraction_per_action() -> None:
    usage = action_usage(one_hot([[0, 3, 2, 3], [3, 3, 1, 0]]))
    torch.testing.assert_close(usage, torch.tensor([0.25, 0.125, 0.125, 0.5]))


class _AtBits(torch.nn.Module):
    """The backbone at fixed bits with a single tensor input, so fvcore can trace it."""

    def __init__(self, backbone: torch.nn.Module, bits: int) -> None:
        super().__init__()
        self.backbone, self.bits = backbone, bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x, bits=self.bits)


def test_measured_flops_of_infer_equal_video_gflops_of_its_decisions(eval_model: VideoIQ) -> None:
    model = eval_model
    ran: list[tuple[int, torch.Size]] = []
    handle = model.backbone.register_forward_pre_hook(
        lambda module, args, kwargs: ran.append((kwargs["bits"], args[0].shape)), with_kwargs=True
    )
    forced = one_hot([[0, 3, 2, 1], [3, 3, 3, 3], [2, 2, 0, 3]])
    model.infer(clip(n=3), actions=forced)
    handle.remove()

    # What actually ran, priced layer by layer with fvcore at the real input shapes: a quantised
    # layer at b bits costs b*b/64 of its MACs, the others their full count.
    measured = 0.0
    for bits, shape in ran:
        layers = flops.module_macs(_AtBits(model.backbone, 32), torch.zeros(shape))
        measured += sum(layer.macs * (flops.bit_rate(bits) if layer.quantised else 1.0) for layer in layers) / 1e9

    table = flops.action_cost_table("resnet10", decision_space=DECISION_SPACE, size=SIZE, num_classes=NUM_CLASSES)
    decided_bits = torch.tensor(DECISION_SPACE)[forced.argmax(-1)].numpy()
    expected = flops.video_gflops(decided_bits, cost_table=table, policy_gflops_per_frame=0.0)
    assert measured == pytest.approx(float(expected.sum()), rel=1e-9)
    assert expected[1] == 0.0  # the all-skipped video costs nothing
    uniform = flops.video_gflops(torch.full((3, 4), 32).numpy(), cost_table=table, policy_gflops_per_frame=0.0)
    assert measured < 0.5 * float(uniform.sum())


def test_infer_rejects_frames_without_a_batch_axis(eval_model: VideoIQ) -> None:
    with pytest.raises(ValueError, match=r"frames must be \(N, T, 3, H, W\)"):
        eval_model.infer(clip()[0])
