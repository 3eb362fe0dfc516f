"""AR-Net's network, decision loop, loss, costs and config (METHODS.md §2), on tiny networks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from searchlab.methods.arnet import (
    OFFICIAL_ACTION_WEIGHTS,
    ARNetConfig,
    ActionLayout,
    arnet_costs,
    arnet_loss,
    backbone_gflops,
    build_model,
    efficiency_weights,
    module_gflops,
    parameter_groups,
    paper_starting_point,
    run_decisions,
)
from searchlab.models import PolicyNetwork

# Action indices of the tiny layout: res28, res21, res14, head16, skip1, skip2, skip4.
R28, R21, R14, HEAD, SKIP1, SKIP2, SKIP4 = range(7)
TINY = dict(resolutions=(28, 21, 14), backbones=("resnet10",) * 3, policy_input_size=16, policy_hidden=16,
            policy_width_mult=0.25)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(ARNetConfig(**TINY), num_classes=4).eval()


def one_hot(rows: list[list[int]], num_actions: int = 7) -> torch.Tensor:
    return F.one_hot(torch.tensor(rows), num_actions).float()


def test_config_defaults_are_the_papers():
    config = ARNetConfig()
    assert config.action_names() == ("res224", "res168", "res112", "head84", "skip1", "skip2", "skip4")
    assert (config.w_acc, config.w_eff, config.lambda_u, config.dropout, config.grad_clip) == (0.95, 0.05, 3.0, 0.5, 20.0)
    assert (config.backbone_stage.lr, config.backbone_stage.epochs) == (0.02, 10)
    assert (config.joint_stage.lr, config.joint_stage.epochs, config.finetune_stage.lr) == (0.001, 50, 0.0005)
    assert config.joint_stage.temperature["rate"] == pytest.approx(math.exp(-0.045))
    assert config.finetune_stage.temperature["tau0"] == 0.6309
    assert ARNetConfig(**{k: v for k, v in paper_starting_point().items() if "." not in k}) == config


def test_config_reports_every_cross_field_problem_with_its_fix():
    with pytest.raises(ValidationError) as error:
        ARNetConfig(resolutions=(112, 224), backbones=("resnet18", "nope", "resnet50"), skips=(2, 2, 0))
    text = str(error.value)
    for expected in ("differ in length", "distinct and descending", "not registered", "distinct positive"):
        assert expected in text
    with pytest.raises(ValidationError, match="extra"):
        ARNetConfig(resolution=(224,))
    with pytest.raises(ValidationError, match="at least two actions"):
        ARNetConfig(resolutions=(224,), backbones=("resnet50",), use_84=False, skips=())


class _StepPolicy(PolicyNetwork):
    """The real LSTM, but records the state each step receives."""

    def step(self, feature_t, state=None):
        self.seen.append(state)
        return super().step(feature_t, state)


def test_skip2_removes_two_frames_and_holds_h_but_not_c():
    torch.manual_seed(0)
    policy = _StepPolicy(num_actions=7, input_size=16, hidden_size=5, width_mult=0.25).eval()
    policy.seen = []
    layout = ActionLayout(resolutions=(28, 21, 14), use_84=True, skips=(1, 2, 4))
    # Sample 0: skip-2 at t=1 (the res21 asked at t=2 is overwritten); sample 1: skip-4 at t=0.
    asked = one_hot([[R28, SKIP2, R21, HEAD, SKIP1, R14], [SKIP4, R28, R28, R28, R28, R21]])
    features = torch.randn(2, 6, policy.feature_dim)
    with torch.no_grad():
        out = run_decisions(policy, features, layout=layout, choose=lambda t, _: asked[:, t])
    assert out.actions.argmax(-1).tolist() == [[R28, SKIP2, SKIP2, HEAD, SKIP1, R14],
                                               [SKIP4, SKIP4, SKIP4, SKIP4, R28, R21]]
    # Hand-run LSTM of sample 0: at t=2 h is the previous h, c is the new one.
    lstm = policy.lstm
    with torch.no_grad():
        h1, c1 = lstm(features[:1, 1], lstm(features[:1, 0]))
        h2_new, c2 = lstm(features[:1, 2], (h1, c1))
        h3, _ = lstm(features[:1, 3], (h1, c2))
    assert torch.equal(out.hidden[0, 2], out.hidden[0, 1]) and not torch.allclose(h2_new, h1)
    torch.testing.assert_close(out.hidden[0, 1], h1[0])
    h_in, c_in = policy.seen[3]  # the state step t=3 received
    torch.testing.assert_close(h_in[0], h1[0])
    torch.testing.assert_close(c_in[0], c2[0])  # c NOT restored to c1
    assert not torch.allclose(c2, c1)
    torch.testing.assert_close(out.hidden[0, 3], h3[0])


def test_all_frames_skipped_gives_zero_logits(model):
    frames = torch.randn(2, 4, 3, 28, 28)
    skipped = one_hot([[SKIP4] * 4, [SKIP1, SKIP2, SKIP2, SKIP1]])
    logits, actions = model.infer(frames, actions=skipped)
    assert torch.equal(logits, torch.zeros(2, 4)) and torch.equal(actions, skipped)
    with torch.no_grad():
        trained = model(frames, tau=1.0, actions=skipped)["video_logits"]
    assert torch.equal(trained, torch.zeros(2, 4))


MIXED = [[R28, SKIP2, SKIP2, HEAD], [R21, R14, SKIP1, R28], [HEAD, R14, R21, SKIP4]]


@pytest.mark.parametrize("decisions", ["given", "sampled"])
def test_inference_agrees_with_the_training_fusion(model, decisions):
    torch.manual_seed(1)
    frames = torch.randn(3, 4, 3, 28, 28)
    if decisions == "given":
        infer_logits, actions = model.infer(frames, actions=one_hot(MIXED))
    else:
        infer_logits, actions = model.infer(frames, mode="sample")
    with torch.no_grad():
        out = model(frames, tau=1.0, actions=actions)
    assert torch.equal(out["actions"], actions)
    torch.testing.assert_close(infer_logits, out["video_logits"], rtol=1e-5, atol=1e-6)
    # The fusion by hand: mean of the processed frames' chosen logits.
    chosen = actions.argmax(-1)
    for n in range(3):
        rows = [out["frame_logits"][n, t, a] for t, a in enumerate(chosen[n].tolist()) if a < SKIP1]
        expected = torch.stack(rows).mean(0) if rows else torch.zeros(4)
        torch.testing.assert_close(out["video_logits"][n], expected, rtol=1e-5, atol=1e-6)


def _record_calls(model):
    """Forward hooks recording every call's inputs on the modules inference runs."""
    calls = []
    modules = {**{f"backbone{i}": net for i, net in enumerate(model.backbones)}, "head": model.head,
               "features": model.policy.features, "lstm": model.policy.lstm, "fc": model.policy.fc}

    def hook(name):
        return lambda module, args, output: calls.append((name, module, args))

    handles = [module.register_forward_hook(hook(name)) for name, module in modules.items()]
    return calls, handles


def test_inference_runs_only_the_chosen_backbone_per_frame(model):
    frames = torch.randn(3, 4, 3, 28, 28)
    calls, handles = _record_calls(model)
    try:
        model.infer(frames, actions=one_hot(MIXED))
    finally:
        for handle in handles:
            handle.remove()
    rows = {name: sum(args[0].shape[0] for n, _, args in calls if n == name) for name, _, _ in calls}
    # res28: 2 frames, res21: 2, res14: 2, head: 2; the 4 skipped slots run no backbone.
    assert [rows.get(f"backbone{i}", 0) for i in range(3)] == [2, 2, 2] and rows["head"] == 2
    assert rows["features"] == 12 and rows["lstm"] == 12  # the policy consumes every frame
    inputs = {n: args[0] for n, _, args in calls if n.startswith("backbone")}
    expected = F.interpolate(frames[[0, 1]][:, [0, 3]].flatten(0, 1)[[0, 3]], size=(28, 28))  # frames 0/0 and 1/3
    torch.testing.assert_close(inputs["backbone0"], expected)
    assert inputs["backbone2"].shape[-1] == 14 and inputs["backbone1"].shape[-1] == 21


def test_costs_equal_fvcores_count_of_the_modules_inference_runs(model):
    frames = torch.randn(3, 4, 3, 28, 28)
    costs = arnet_costs(model)
    calls, handles = _record_calls(model)
    try:
        _, actions = model.infer(frames, actions=one_hot(MIXED))
    finally:
        for handle in handles:
            handle.remove()
    counted = 0.0
    for _, module, args in calls:
        counted += module_gflops(module, *[a for a in args if a is not None])  # the LSTM's first state is None
    assert costs.video_gflops(actions).sum() == pytest.approx(counted, rel=1e-12)
    assert costs.action_gflops[R28] == backbone_gflops("resnet10", size=28, num_classes=4)
    assert costs.action_gflops[R28] > costs.action_gflops[R21] > costs.action_gflops[R14] > costs.action_gflops[HEAD] > 0
    assert costs.action_gflops[SKIP1:] == (0.0, 0.0, 0.0)
    # Paper formula on video 0 (res28, skip2, skip2, head): backbone once, the policy 1 + ½ + ½ + 1.
    paper = costs.paper_video_gflops(actions)[0]
    assert paper == pytest.approx(costs.action_gflops[R28] + 3 * costs.policy_gflops_per_frame)
    params = sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())
    assert costs.memory_mb == pytest.approx(params * 4 / 2**20)


def test_loss_terms_on_a_made_up_usage():
    layout = ActionLayout(resolutions=(224,), use_84=True, skips=(1,))  # actions: res224, head, skip1
    actions = one_hot([[0, 0, 1, 2]], num_actions=3)  # usage [1/2, 1/4, 1/4]
    weights = torch.tensor([2.0, 1.0, 0.0])
    total, terms = arnet_loss(video_logits=torch.zeros(1, 2), labels=torch.tensor([0]), actions=actions,
                              weights=weights, w_acc=0.95, w_eff=0.05, lambda_u=3.0)
    # ū − mean(ū) = [1/6, −1/12, −1/12]: unsquared norm √6/12; Σ ū·G = 1 + 1/4.
    assert terms["ce"].item() == pytest.approx(math.log(2))
    assert terms["efficiency"].item() == pytest.approx(1.25)
    assert terms["uniform"].item() == pytest.approx(math.sqrt(6) / 12)
    assert total.item() == pytest.approx(0.95 * math.log(2) + 0.05 * (1.25 + 3.0 * math.sqrt(6) / 12))
    assert efficiency_weights(layout, kind="flops", resolution_gflops=[4.1]).tolist() == pytest.approx([4.1, 0, 0])
    paper = ActionLayout(resolutions=(224, 168, 112), use_84=True, skips=(1, 2, 4))
    assert tuple(efficiency_weights(paper, kind="official").tolist()) == OFFICIAL_ACTION_WEIGHTS


def test_training_forward_reaches_every_trainable_parameter():
    torch.manual_seed(0)
    model = build_model(ARNetConfig(**TINY), num_classes=4).train()
    out = model(torch.randn(2, 4, 3, 28, 28), tau=1.0)
    loss, _ = arnet_loss(video_logits=out["video_logits"], labels=torch.tensor([0, 1]), actions=out["actions"],
                         weights=torch.arange(7.0), w_acc=0.95, w_eff=0.05, lambda_u=3.0)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_linear_layers_get_5x_lr_and_their_biases_10x_without_weight_decay(model):
    model.policy.requires_grad_(False)
    try:
        groups = {g["name"]: g for g in parameter_groups([model], lr=0.1, weight_decay=1e-4, linear_lr_mult=5.0,
                                                         linear_bias_lr_mult=10.0)}
    finally:
        model.policy.requires_grad_(True)
    linears = [model.head] + [net.fc for net in model.backbones]  # the policy fc is frozen here
    assert {id(p) for p in groups["linear_weight"]["params"]} == {id(m.weight) for m in linears}
    assert {id(p) for p in groups["linear_bias"]["params"]} == {id(m.bias) for m in linears}
    assert (groups["linear_weight"]["lr"], groups["linear_bias"]["lr"]) == pytest.approx((0.5, 1.0))
    assert groups["linear_bias"]["weight_decay"] == 0.0 and groups["other"]["weight_decay"] == 1e-4
    assert not any(p is q for p in groups["other"]["params"] for q in model.policy.parameters())
