"""VA-RED²'s network core (METHODS.md §3): gate, dynamic convolution, network, cost model, loss."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from searchlab.methods.vared.dynamic_conv import DynamicConv, channel_counts
from searchlab.methods.vared.gate import Gate
from searchlab.methods.vared.network import VaredNetwork

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FRAMES, SIZE, CLASSES = 4, 32, 5

# (conv, input): a 3D spatial conv, a 3D temporal conv with temporal stride 2 and an odd clip, and
# a per-frame 2D conv over (N·T, C, H, W)
CONVS = {
    "spatial3d": (lambda: nn.Conv3d(4, 8, (1, 3, 3), padding=(0, 1, 1), bias=False), (3, 4, 7, 5, 5), 7),
    "temporal3d": (lambda: nn.Conv3d(4, 6, (3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0)), (3, 4, 9, 5, 5), 9),
    "perframe2d": (lambda: nn.Conv2d(4, 8, 3, padding=1), (3 * 7, 4, 5, 5), 7),
}


def _dynamic(kind: str, *, options: int = 3, cheap_op: str = "depthwise", zero_gate: str = "cheapest",
             seed: int = 0) -> tuple[DynamicConv, Tensor]:
    """A DynamicConv around a fresh conv of ``kind``, its cheap ops randomised (not the identity)."""
    torch.manual_seed(seed)
    make, shape, frames = CONVS[kind]
    layer = DynamicConv(make(), frames=frames, channel_options=options, temporal_options=options, gate_hidden=None,
                        beta_init=1.0, cheap_op=cheap_op, zero_gate=zero_gate)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith(("channel_ops", "temporal_ops")):
                p.normal_()
    return layer.eval(), torch.randn(shape)


def _clip(layer: DynamicConv, y: Tensor) -> Tensor:
    """A layer output in (N, C, T, H, W), whatever the conv's kind."""
    return y if layer.layout.video else y.unflatten(0, (-1, layer.frames)).transpose(1, 2)


def _affine(op: nn.Module, y: Tensor) -> Tensor:
    """What a depthwise cheap op does to (N, C, T, H, W), written out: a_c·y_c + b_c."""
    a, b = op.weight, op.bias
    return a.view(1, -1, 1, 1, 1) * y + b.view(1, -1, 1, 1, 1)


def _fix_gate(monkeypatch: pytest.MonkeyPatch, layer: DynamicConv, v_t: Tensor, v_c: Tensor) -> None:
    monkeypatch.setattr(layer.gate, "forward", lambda x: (v_t, v_c))


# -- gate --------------------------------------------------------------------------------------


def test_gate_weights_lie_in_zero_one_and_an_off_dimension_is_ones() -> None:
    torch.manual_seed(0)
    gate = Gate(in_channels=4, frames=3, hidden=None, temporal_options=1, channel_options=3, beta_init=1.0)
    assert gate.fc1.in_features == 12 and gate.fc1.out_features == 16  # max(C·T // 4, 16)
    assert gate.fc2.out_features == 3 and torch.equal(gate.beta.detach(), torch.ones(3))
    v_t, v_c = gate(torch.randn(5, 4, 3, 6, 6))
    assert torch.equal(v_t, torch.ones(5, 1)) and v_c.shape == (5, 3)
    assert ((v_c >= 0) & (v_c < 1)).all() and (v_c > 0).all()  # β = 1 starts every alternative on
    with pytest.raises(ValueError, match="frames"):
        gate(torch.randn(5, 4, 2, 6, 6))
    with pytest.raises(ValueError, match="nothing to gate"):
        Gate(in_channels=4, frames=3, hidden=8, temporal_options=1, channel_options=1, beta_init=1.0)


# -- the dynamic convolution --------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(CONVS))
def test_forced_full_is_the_plain_conv_exactly(kind: str) -> None:
    layer, x = _dynamic(kind)
    with torch.no_grad():
        plain = layer.conv(x)
        layer.forced = (0, 0)
        assert torch.equal(layer(x), plain)
        layer.infer_mode = True
        assert torch.equal(layer(x), plain)
    assert torch.equal(layer.last_weights[0], torch.tensor([[1.0, 0.0, 0.0]]).expand(x.shape[0] // (
        1 if layer.layout.video else layer.frames), 3))


@pytest.mark.parametrize("kind", sorted(CONVS))
def test_forced_channel_half_computes_the_first_half_of_the_filters(kind: str) -> None:
    from searchlab.flops import module_macs

    layer, x = _dynamic(kind)
    half = channel_counts(layer.conv.out_channels, 2)[1]
    with torch.no_grad():
        plain = _clip(layer, layer.conv(x))
        layer.forced = (0, 1)
        y = _clip(layer, layer(x))
    torch.testing.assert_close(y[:, :half], plain[:, :half], rtol=0, atol=1e-6)
    torch.testing.assert_close(y[:, half:], _affine(layer.channel_ops[0], y[:, :half]), rtol=0, atol=1e-6)
    # only half of the filters ran: the conv's count is half the plain one's
    forced_conv = sum(l.macs for l in module_macs(layer, x) if l.name == "conv" or l.name == "(other)")
    layer.forced = (0, 0)
    full_conv = sum(l.macs for l in module_macs(layer, x) if l.name == "conv")
    assert 2 * forced_conv == full_conv


@pytest.mark.parametrize("kind", sorted(CONVS))
@pytest.mark.parametrize("t_index", [1, 2])
def test_temporal_alternative_computes_every_rth_frame(kind: str, t_index: int) -> None:
    layer, x = _dynamic(kind)
    stride = layer.strides[t_index]
    with torch.no_grad():
        plain = _clip(layer, layer.conv(x))
        layer.forced = (t_index, 0)
        y = _clip(layer, layer(x))
    frames = plain.shape[2]
    assert y.shape == plain.shape and frames % stride  # the clip does not end on a computed frame
    for t in range(frames):
        k = t % stride
        expected = plain[:, :, t] if k == 0 else _affine(layer.temporal_ops[t_index - 1][k - 1],
                                                         plain[:, :, t - k].unsqueeze(2)).squeeze(2)
        torch.testing.assert_close(y[:, :, t], expected, rtol=0, atol=1e-5, msg=f"frame {t}")


# weights per sample (v_t, v_c) covering: everything on, the full alternatives off, one cheap one on,
# an all-zero temporal row and an all-zero channel row (the zero-gate rule decides those)
WEIGHTS = (
    torch.tensor([[0.9, 0.5, 0.2], [0.0, 0.7, 0.3], [0.0, 0.0, 0.6], [0.0, 0.0, 0.0], [0.4, 0.0, 0.8]]),
    torch.tensor([[0.3, 0.8, 0.1], [0.0, 0.6, 0.0], [0.0, 0.0, 0.9], [0.5, 0.2, 0.0], [0.0, 0.0, 0.0]]),
)


@pytest.mark.parametrize("kind", sorted(CONVS))
@pytest.mark.parametrize("zero_gate", ["cheapest", "zero"])
def test_infer_skips_zero_weight_alternatives_and_equals_the_mixed_forward(
    kind: str, zero_gate: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer, _ = _dynamic(kind, zero_gate=zero_gate)
    _, shape, frames = CONVS[kind]
    clips = len(WEIGHTS[0])
    x = torch.randn((clips, *shape[1:]) if layer.layout.video else (clips * frames, *shape[1:]))
    _fix_gate(monkeypatch, layer, *WEIGHTS)
    with torch.no_grad():
        mixed = layer(x)
        mixed_weights = layer.last_weights
        calls: list[tuple[int, int, int]] = []
        run = layer._conv

        def recording(clip: Tensor, *, channels: int, stride: int) -> Tensor:
            calls.append((clip.shape[0], channels, stride))
            return run(clip, channels=channels, stride=stride)

        monkeypatch.setattr(layer, "_conv", recording)
        layer.infer_mode = True
        computed = layer(x)
    torch.testing.assert_close(computed, mixed, rtol=0, atol=1e-5)
    for used, expected in zip(layer.last_weights, mixed_weights):
        assert torch.equal(used, expected)
    c = layer.channels
    # one conv per sample pattern, at its largest non-zero alternative, nothing for a zero output
    expected_calls = [(1, c[0], 1), (1, c[1], 2), (1, c[2], 4)]
    if zero_gate == "cheapest":  # the all-zero rows use the cheapest alternative of that dimension
        assert torch.equal(layer.last_weights[0][3], torch.tensor([0.0, 0.0, 1.0]))
        assert torch.equal(layer.last_weights[1][4], torch.tensor([0.0, 0.0, 1.0]))
        expected_calls += [(1, c[0], 4), (1, c[2], 1)]
    else:
        assert _clip(layer, computed)[3:].abs().max() == 0
    assert sorted(calls) == sorted(expected_calls)


def test_a_layer_without_options_is_the_plain_conv() -> None:
    conv = nn.Conv3d(4, 8, (1, 3, 3), padding=(0, 1, 1))
    layer = DynamicConv(conv, frames=4, channel_options=1, temporal_options=1, gate_hidden=None, beta_init=1.0)
    x = torch.randn(2, 4, 4, 5, 5)
    assert layer.gate is None and not list(layer.channel_ops) and not list(layer.temporal_ops)
    assert torch.equal(layer(x), conv(x)) and torch.equal(layer.last_weights[1], torch.ones(2, 1))
    assert set(layer.state_dict()) == {"conv.weight", "conv.bias"}


def test_bad_arguments_are_refused_together() -> None:
    with pytest.raises(ValueError, match="cheap_op 'x'.*zero_gate 'y'"):
        DynamicConv(nn.Conv2d(4, 8, 3), frames=2, channel_options=2, temporal_options=2, gate_hidden=None,
                    beta_init=1.0, cheap_op="x", zero_gate="y")
    layer, _ = _dynamic("spatial3d")
    with pytest.raises(ValueError, match="out of range"):
        layer.forced = (3, 0)


# -- the network --------------------------------------------------------------------------------


def _network(backbone: str, *, seed: int = 0, **kwargs: object) -> VaredNetwork:
    torch.manual_seed(seed)
    return VaredNetwork(backbone=backbone, num_classes=CLASSES, frames=FRAMES, size=SIZE, **kwargs).eval()


def _clips(count: int = 2, *, seed: int = 1) -> Tensor:
    return torch.randn(count, FRAMES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("backbone", "gated", "layers"), [
    ("r2plus1d_10", "spatial", 8), ("r2plus1d_10", "all", 19), ("resnet10", "spatial", 8), ("resnet10", "all", 11),
])  # fmt: skip
def test_network_gates_the_chosen_convs_and_infer_equals_forward(backbone: str, gated: str, layers: int) -> None:
    network = _network(backbone, gated=gated)
    names = [name for name, _ in network.gated_layers()]
    assert len(names) == layers and all(name.startswith("backbone.layer") for name in names)
    if backbone == "r2plus1d_10":  # each 3D conv's gate is built for the T it sees (stride 2 in time per stage)
        frames = {name: layer.frames for name, layer in network.gated_layers()}
        assert frames["backbone.layer1.0.conv1.0.0"] == 4 and frames["backbone.layer3.0.conv1.0.0"] == 2
    clips = _clips()
    with torch.no_grad():
        logits = network(clips)
        inferred, decisions = network.infer(clips)
    assert logits.shape == (2, CLASSES) and torch.isfinite(logits).all()
    torch.testing.assert_close(inferred, logits, rtol=1e-4, atol=1e-4)
    assert decisions.temporal.shape == (2, layers, 2) and decisions.channel.shape == (2, layers, 2)
    assert not any(layer.infer_mode for _, layer in network.gated_layers())
    with pytest.raises(ValueError, match="built for 4 frames"):
        network(torch.zeros(1, FRAMES + 1, 3, SIZE, SIZE))


@pytest.mark.parametrize("backbone", ["r2plus1d_10", "resnet10"])
def test_a_training_step_reaches_every_parameter(backbone: str) -> None:
    network = _network(backbone, gated="all", channel_options=3, temporal_options=3).train()
    loss = nn.functional.cross_entropy(network(_clips(2)), torch.tensor([0, 1]))
    loss.backward()
    assert not [name for name, p in network.named_parameters() if p.grad is None]


def test_force_is_a_setter_and_a_context_manager() -> None:
    network = _network("resnet10")
    with network.force((1, 0)):
        assert all(layer.forced == (1, 0) for _, layer in network.gated_layers())
        with torch.no_grad():
            _, decisions = network.infer(_clips())
        assert torch.equal(decisions.temporal[..., 1], torch.ones(2, 8))
    assert network.forced is None
    network.force((0, 1))
    assert network.forced == (0, 1)
    with pytest.raises(ValueError, match="out of range"):
        network.force((2, 0))


@pytest.mark.parametrize("backbone", ["r2plus1d_10", "resnet10"])
def test_the_network_without_options_is_the_plain_backbone(backbone: str) -> None:
    from searchlab.models.registry import create_teacher
    from searchlab.models.video_resnet import create_video_network

    network = _network(backbone, channel_options=1, temporal_options=1)
    torch.manual_seed(0)  # the same draws: wrapping a conv without options adds no parameter
    plain = (create_video_network if backbone.startswith("r2") else create_teacher)(backbone, num_classes=CLASSES)
    plain.eval()
    clips = _clips()
    with torch.no_grad():
        expected = plain(clips.transpose(1, 2)) if backbone.startswith("r2") else \
            plain(clips.flatten(0, 1)).unflatten(0, (2, FRAMES)).mean(1)
        assert torch.equal(network(clips), expected)
    assert not any(".gate." in name or "_ops." in name for name in network.state_dict())


def test_state_dict_round_trip() -> None:
    network = _network("r2plus1d_10", channel_options=3, temporal_options=2, seed=0)
    network.train()
    network(_clips(3))  # move the BatchNorm statistics off their initial values
    network.eval()
    copy = _network("r2plus1d_10", channel_options=3, temporal_options=2, seed=1)
    assert list(copy.state_dict()) == list(network.state_dict())
    copy.load_state_dict(network.state_dict())
    clips = _clips()
    with torch.no_grad():
        assert torch.equal(copy(clips), network(clips))
        assert torch.equal(copy.infer(clips)[0], network.infer(clips)[0])


# -- the cost model -----------------------------------------------------------------------------

# β of each layer's gate (S_t = S_c = 3: three temporal then three channel outputs), cycled over the
# layers: everything on; the full alternatives off; an all-zero temporal row; an all-zero channel row
BETAS = ((2, 2, 2, 2, 2, 2), (-2, 2, -2, -2, -2, 2), (-2, -2, -2, 2, -2, 2), (2, -2, 2, -2, -2, -2))


def _set_gates(network: VaredNetwork) -> None:
    """Gates whose weights are set by the sign of β (fc2 nearly silenced): mixed zero/non-zero weights."""
    with torch.no_grad():
        for index, (_, layer) in enumerate(network.gated_layers()):
            layer.gate.fc2.weight.mul_(0.01)
            layer.gate.beta.copy_(torch.tensor(BETAS[index % len(BETAS)], dtype=torch.float))


class _Infer(nn.Module):
    """The inference path as a module, for fvcore. Its outputs include the decisions, as ``infer``'s do:
    a gate whose weights only steer Python control flow (a layer skipped by ``zero_gate="zero"``) would
    otherwise be dropped from the traced graph as dead code, although it runs."""

    def __init__(self, network: VaredNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, clips: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logits, decisions = self.network.infer(clips)
        return logits, decisions.temporal, decisions.channel


def _fvcore_gflops(module: nn.Module, clips: Tensor) -> float:
    import warnings

    from searchlab.flops import module_macs

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no op left uncounted
        return sum(layer.macs for layer in module_macs(module, clips)) / 1e9


@pytest.mark.parametrize(("backbone", "zero_gate", "cheap_op"), [
    ("r2plus1d_10", "cheapest", "depthwise"), ("r2plus1d_10", "zero", "copy"), ("resnet10", "zero", "depthwise"),
])  # fmt: skip
def test_the_cost_model_equals_fvcore_on_the_traced_inference_path(backbone: str, zero_gate: str,
                                                                   cheap_op: str) -> None:
    from searchlab.methods.vared.costs import vared_costs

    network = _network(backbone, gated="all", channel_options=3, temporal_options=3, zero_gate=zero_gate,
                       cheap_op=cheap_op)
    _set_gates(network)
    costs = vared_costs(network)
    clip = _clips(1)
    with torch.no_grad():
        _, decisions = network.infer(clip)
    on_t, on_c = decisions.temporal > 0, decisions.channel > 0
    assert (~on_t).any() and on_t.any() and (on_t.sum(-1) > 1).any()  # mixed zero / non-zero weights
    assert ((~on_t).all(-1) | (~on_c).all(-1)).any() == (zero_gate == "zero")  # "cheapest" fills empty rows
    assert costs.clip_gflops(decisions)[0] == pytest.approx(_fvcore_gflops(_Infer(network), clip), rel=1e-9)
    for alternative in [(0, 0), (1, 1), (2, 0), (0, 2)]:
        with network.force(alternative):
            assert costs.forced_gflops(*alternative) == pytest.approx(_fvcore_gflops(network, clip), rel=1e-9)
    assert costs.forced_gflops(1, 1) < costs.base_gflops()


def test_base_cost_is_the_plain_backbone_and_tables_are_consistent() -> None:
    from searchlab.flops import module_macs
    from searchlab.methods.vared.costs import vared_costs
    from searchlab.models.video_resnet import create_video_network

    network = _network("r2plus1d_10")
    costs = vared_costs(network)
    plain = create_video_network("r2plus1d_10", num_classes=CLASSES)
    counted = {l.name: l.macs for l in module_macs(plain, torch.zeros(1, 3, FRAMES, SIZE, SIZE))}
    assert costs.base_gflops() == pytest.approx(sum(counted.values()) / 1e9, rel=1e-12)
    first = costs.layers[0]
    assert first.name == "backbone.layer1.0.conv1.0.0"
    assert first.conv[0][0] == counted["layer1.0.conv1.0.0"]  # the formula against fvcore's layer count
    assert first.conv[1][1] * 4 == first.conv[0][0]  # half the filters on half the frames (T = 4)
    fractions = costs.layer_fractions()
    assert fractions.shape == (8,) and fractions.sum().item() == pytest.approx(1.0)
    expected_mb = sum(t.numel() * 4 for t in network.state_dict().values() if t.is_floating_point()) / 2**20
    assert costs.memory_mb == pytest.approx(expected_mb)
    batch = _clips(3)
    with torch.no_grad():
        _, decisions = network.infer(batch)
    assert costs.clip_gflops(decisions).shape == (3,)
    with pytest.raises(ValueError, match="out of range"):
        costs.forced_gflops(2, 0)


def test_counting_costs_leaves_the_network_as_it_was() -> None:
    from searchlab.methods.vared.costs import vared_costs

    network = _network("resnet10")
    network.train()
    network.force((1, 0))
    state = {k: v.clone() for k, v in network.state_dict().items()}
    generator = torch.random.get_rng_state()
    vared_costs(network)
    assert network.training and network.forced == (1, 0)
    assert torch.equal(torch.random.get_rng_state(), generator)
    assert all(torch.equal(v, network.state_dict()[k]) for k, v in state.items())


# -- the efficiency loss ------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["r2plus1d_10", "resnet10"])
def test_the_expected_surrogate_reaches_every_gate(backbone: str) -> None:
    from searchlab.methods.vared.costs import vared_costs
    from searchlab.methods.vared.losses import efficiency_loss

    network = _network(backbone, channel_options=3, temporal_options=2).train()
    network(_clips(3))
    loss = efficiency_loss(weights=network.gate_weights(), layer_fractions=vared_costs(network).layer_fractions(),
                           channel_ratios=network.channel_ratios, temporal_strides=network.temporal_strides,
                           correct=torch.ones(3))
    loss.backward()
    gates = [(name, p) for name, p in network.named_parameters() if ".gate." in name]
    assert len(gates) == 6 * len(network.gated_layers())  # fc1 (weight, bias), bn (weight, bias), fc2, β
    missing = [name for name, p in gates if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_efficiency_loss_values() -> None:
    from searchlab.methods.vared.losses import efficiency_loss

    v_t = torch.tensor([[0.5, 0.5], [0.0, 0.8], [0.0, 0.0]], requires_grad=True)
    v_c = torch.tensor([[1.0, 0.0], [0.3, 0.3], [0.6, 0.2]], requires_grad=True)
    common = {"weights": [(v_t, v_c)], "layer_fractions": torch.ones(1), "channel_ratios": (1.0, 0.5),
              "temporal_strides": (1, 2), "correct": torch.tensor([1.0, 1.0, 0.0])}
    expected = efficiency_loss(**common)
    # clip 0: (1·1)·(0.5·1 + 0.5·0.5)/1 = 0.75; clip 1: 0.75·0.5 = 0.375; clip 2: wrong, 0
    assert expected.item() == pytest.approx((0.75**2 + 0.375**2) / 3)
    expected.backward()
    assert v_t.grad.abs().sum() > 0
    largest = efficiency_loss(**common, surrogate="largest")
    # clip 0: the full alternative in both dimensions, 1; clip 1: r 1, R 2: 0.5
    assert largest.item() == pytest.approx((1.0 + 0.25) / 3) and not largest.requires_grad
    with pytest.raises(ValueError, match="surrogate"):
        efficiency_loss(**common, surrogate="exact")
