"""Compute and memory accounting (METHODS.md §1.4) with real fvcore counts."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v2

from searchlab import flops
from searchlab.models.policy import PolicyNetwork
from searchlab.models.quant import QuantConv2d
from searchlab.models.registry import create_backbone, create_teacher
from searchlab.models.video_resnet import create_video_network

SIZE, CLASSES = 32, 10


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_module_macs_of_a_tiny_network_equal_hand_counts() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2),
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ReLU/flatten are ignored on purpose, nothing else is missing
        layers = {l.name: l.macs for l in flops.module_macs(net, torch.zeros(1, 3, 8, 8))}
    assert layers == {
        "0": 8 * 8 * 4 * 3 * 3 * 3,  # output pixels x C_out x C_in x k x k
        "1": 2 * 4 * 8 * 8,  # eval BN: scale and shift per element (fvcore's convention)
        "2": 0,
        "3": 4 * 8 * 8,  # average pooling: one add per input element
        "4": 0,
        "5": 4 * 2,
    }


def test_uncounted_ops_are_reported() -> None:
    class Cumsum(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.cumsum(1)

    with pytest.warns(UserWarning, match="aten::cumsum"):
        flops.module_macs(Cumsum(), torch.zeros(2, 3))


def test_backbone_conv_macs_match_shapes_and_quantised_flags() -> None:
    net = create_backbone("resnet10", num_classes=CLASSES, bit_widths=(32,), alpha_init=1.0).eval()
    expected = _hand_counts(net, (torch.zeros(1, 3, SIZE, SIZE), 32))
    layers = {l.name: l for l in flops.backbone_layer_macs("resnet10", size=SIZE, num_classes=CLASSES)}
    for name, macs in expected.items():
        assert layers[name].macs == macs, name
    assert not layers["conv1"].quantised and not layers["fc"].quantised and not layers["bn1"].quantised
    quantised = {n for n, l in layers.items() if l.quantised}
    assert quantised == {n for n, m in net.named_modules() if isinstance(m, QuantConv2d)}
    teacher = create_teacher("resnet10", num_classes=CLASSES)
    teacher_layers = flops.module_macs(teacher, torch.zeros(1, 3, SIZE, SIZE))
    assert sum(l.macs for l in layers.values()) == sum(l.macs for l in teacher_layers)


def test_counts_are_cached_per_network_size_classes_and_width() -> None:
    first = flops.backbone_layer_macs("resnet10", size=SIZE, num_classes=CLASSES)
    assert flops.backbone_layer_macs("resnet10", size=SIZE, num_classes=CLASSES) is first
    assert flops.backbone_layer_macs("resnet10", size=SIZE, num_classes=CLASSES, width_mult=1) is first
    assert flops.backbone_layer_macs("resnet10", size=SIZE, num_classes=CLASSES + 1) is not first
    quarter = flops.backbone_layer_macs("mobilenet_v2", size=SIZE, num_classes=CLASSES, width_mult=0.25)
    half = flops.backbone_layer_macs("mobilenet_v2", size=SIZE, num_classes=CLASSES, width_mult=0.5)
    assert sum(l.macs for l in quarter) < sum(l.macs for l in half)


def _hand_counts(net: nn.Module, inputs: tuple) -> dict[str, int]:
    """MACs of every conv (grouped ones included) and linear of ``net``, from the shapes it runs."""
    expected: dict[str, int] = {}

    def hook(name: str):
        def record(module: nn.Module, _inputs, output: torch.Tensor) -> None:
            if isinstance(module, nn.Conv2d):
                k = module.kernel_size[0] * module.kernel_size[1]
                expected[name] = output[0].numel() * module.in_channels // module.groups * k
            else:
                expected[name] = module.in_features * module.out_features

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in net.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        net.eval()(*inputs)
    for handle in handles:
        handle.remove()
    return expected


def test_mobilenet_v2_counts_match_shapes_and_the_policy_body() -> None:
    width = 0.25
    layers = {l.name: l for l in flops.backbone_layer_macs("mobilenet_v2", size=SIZE, num_classes=CLASSES,
                                                           width_mult=width)}  # fmt: skip
    net = mobilenet_v2(weights=None, num_classes=CLASSES, width_mult=width)
    expected = _hand_counts(net, (torch.zeros(1, 3, SIZE, SIZE),))
    assert any(net.get_submodule(n).groups > 1 for n in expected if n.startswith("features"))  # depthwise
    for name, macs in expected.items():
        assert layers[name].macs == macs, name
    assert not any(l.quantised for l in layers.values())  # never quantised: no layer gets a reduced rate
    # The policy's body is the same network without its classifier: its count must agree layer by layer.
    policy = PolicyNetwork(num_actions=3, input_size=SIZE, hidden_size=8, width_mult=width)
    body = flops.module_macs(policy.features, torch.zeros(1, 3, SIZE, SIZE))
    assert {l.name: l.macs for l in body} == {
        n.removeprefix("features."): l.macs for n, l in layers.items() if n.startswith("features.")
    }


def test_sanity_figures_at_224() -> None:
    """fvcore's published ResNet-50 count, and torchvision's 0.30 GFLOPs for MobileNetV2 (its convs
    and fc only: fvcore also charges BatchNorm, which is most of the rest)."""
    assert flops.network_gflops_per_frame("resnet50", size=224, num_classes=1000) == pytest.approx(4.1115, abs=5e-4)
    layers = flops.backbone_layer_macs("mobilenet_v2", size=224, num_classes=1000)
    net = dict(mobilenet_v2(weights=None).named_modules())
    convs_and_fc = sum(l.macs for l in layers if isinstance(net.get(l.name), nn.Conv2d | nn.Linear))
    assert convs_and_fc / 1e9 == pytest.approx(0.3008, abs=5e-4)
    assert flops.network_gflops_per_frame("mobilenet_v2", size=224, num_classes=1000) == pytest.approx(
        0.3142, abs=5e-4
    )


def test_network_gflops_per_frame_prices_bits_and_refuses_what_does_not_exist() -> None:
    for convention in flops.CONVENTIONS:
        table = flops.action_cost_table(
            "resnet10", decision_space=(32, 4, 2), size=SIZE, num_classes=CLASSES, convention=convention
        )
        for bits, gflops in table.items():
            assert flops.network_gflops_per_frame(
                "resnet10", size=SIZE, num_classes=CLASSES, bits=bits, convention=convention
            ) == pytest.approx(gflops)
    layers = flops.backbone_layer_macs("mobilenet_v2", size=SIZE, num_classes=CLASSES, width_mult=0.25)
    mobilenet = flops.network_gflops_per_frame("mobilenet_v2", size=SIZE, num_classes=CLASSES, width_mult=0.25)
    assert mobilenet == pytest.approx(sum(l.macs for l in layers) / 1e9)
    assert flops.action_cost_table("mobilenet_v2", decision_space=(32, 0), size=SIZE, num_classes=CLASSES) == {
        32: flops.network_gflops_per_frame("mobilenet_v2", size=SIZE, num_classes=CLASSES), 0: 0.0
    }
    with pytest.raises(ValueError, match=r"mobilenet_v2 is never quantised.*\[4\] bits; price it at 32 bits"):
        flops.network_gflops_per_frame("mobilenet_v2", size=SIZE, num_classes=CLASSES, bits=4)
    with pytest.raises(ValueError, match="resnet10 has no width multiplier"):
        flops.network_gflops_per_frame("resnet10", size=SIZE, num_classes=CLASSES, width_mult=0.5)
    with pytest.raises(ValueError, match="width multiplier must be a finite number > 0"):
        flops.backbone_layer_macs("mobilenet_v2", size=SIZE, num_classes=CLASSES, width_mult=0.0)
    with pytest.raises(ValueError, match="unknown network 'vgg16'; choose one of .*mobilenet_v2.*resnet50"):
        flops.network_gflops_per_frame("vgg16", size=SIZE, num_classes=CLASSES)
    with pytest.raises(ValueError, match="bits must be an int in 1..32"):
        flops.network_gflops_per_frame("resnet10", size=SIZE, num_classes=CLASSES, bits=33)
    assert set(flops.list_networks()) >= {"mobilenet_v2", "resnet10", "resnet18", "resnet34", "resnet50"}


def test_cost_table_scales_quantised_layers_only() -> None:
    layers = flops.backbone_layer_macs("resnet10", size=SIZE, num_classes=CLASSES)
    full = sum(l.macs for l in layers if not l.quantised) / 1e9
    quant = sum(l.macs for l in layers if l.quantised) / 1e9
    table = flops.action_cost_table(
        "resnet10", decision_space=(32, 4, 2, 0), size=SIZE, num_classes=CLASSES
    )
    assert table[0] == 0.0
    assert table[32] == pytest.approx(full + quant)
    assert table[4] == pytest.approx(full + quant / 4)
    assert table[2] == pytest.approx(full + quant / 16)
    assert quant > full > 0


def test_paper_convention_scales_every_layer() -> None:
    table = flops.action_cost_table(
        "resnet10", decision_space=(32, 4, 2), size=SIZE, num_classes=CLASSES, convention="paper"
    )
    assert table[4] == pytest.approx(table[32] / 4)
    assert table[2] == pytest.approx(table[32] / 16)
    with pytest.raises(ValueError, match="convention"):
        flops.action_cost_table("resnet10", decision_space=(32,), size=SIZE, num_classes=CLASSES, convention="x")


def test_bit_rate() -> None:
    assert [flops.bit_rate(b) for b in (32, 16, 8, 4, 2, 1)] == [1.0, 1.0, 1.0, 0.25, 1 / 16, 1 / 64]


def test_video_gflops_and_summary() -> None:
    table = {32: 2.0, 4: 0.5, 2: 0.125, 0: 0.0}
    actions = np.array([[32, 32, 0, 4], [2, 2, 2, 2], [0, 0, 0, 0]])
    got = flops.video_gflops(actions, cost_table=table, policy_gflops_per_frame=0.01)
    np.testing.assert_allclose(got, [4.5 + 0.04, 0.5 + 0.04, 0.04])
    summary = flops.summarize_gflops(got)
    assert summary["mean"] == pytest.approx(got.mean())
    assert summary["p5"] < summary["mean"] < summary["p95"] <= got.max()
    with pytest.raises(ValueError, match=r"actions \[8\] have no entry"):
        flops.video_gflops(np.array([[8, 32]]), cost_table=table, policy_gflops_per_frame=0.0)


def test_policy_gflops_per_frame_counts_features_and_lstm() -> None:
    policy = PolicyNetwork(num_actions=4, input_size=32, hidden_size=16, width_mult=0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        per_frame = flops.policy_gflops_per_frame(policy, size=64, frames=3)
    features = sum(l.macs for l in flops.module_macs(policy.features, torch.zeros(1, 3, 32, 32))) / 1e9
    lstm = 4 * 16 * (policy.feature_dim + 16) / 1e9
    assert features + lstm < per_frame < 1.1 * (features + lstm) + 1e-4


def test_memory_mb_uniform_any_precision_and_separate() -> None:
    teacher = create_teacher("resnet10", num_classes=CLASSES)
    stored = sum(p.numel() for p in teacher.parameters())
    stored += sum(b.numel() for n, b in teacher.named_buffers() if not n.endswith("num_batches_tracked"))
    mib = 8 * 2**20
    fp32 = flops.memory_mb("resnet10", bit_widths=(32,), num_classes=CLASSES)
    assert fp32 == pytest.approx(stored * 32 / mib)
    inv = flops.parameter_inventory("resnet10", num_classes=CLASSES)
    assert inv.quantised + inv.full_precision + inv.bn_per_bit == stored
    four = flops.memory_mb("resnet10", bit_widths=(4,), num_classes=CLASSES)
    assert four == pytest.approx((inv.quantised * 4 + 32 * (stored - inv.quantised + inv.alpha_sites)) / mib)
    anyprec = flops.memory_mb("resnet10", bit_widths=(4, 2), num_classes=CLASSES)
    extra_copy = 32 * (inv.bn_per_bit + inv.alpha_sites) / mib
    assert anyprec == pytest.approx(four + extra_copy)
    separate = flops.memory_mb("resnet10", bit_widths=(32, 4, 2), num_classes=CLASSES, storage="separate")
    assert separate == pytest.approx(
        fp32 + four + flops.memory_mb("resnet10", bit_widths=(2,), num_classes=CLASSES)
    )
    assert flops.memory_mb("resnet10", bit_widths=(32, 4, 2), num_classes=CLASSES) < separate


def test_paper_convention_stores_every_parameter_at_b_bits() -> None:
    inv = flops.parameter_inventory("resnet10", num_classes=CLASSES)
    stored = inv.quantised + inv.full_precision + inv.bn_per_bit
    mib = 8 * 2**20

    def paper(bit_widths: tuple[int, ...], storage: str = "any_precision") -> float:
        return flops.memory_mb("resnet10", bit_widths=bit_widths, num_classes=CLASSES, storage=storage,
                               convention="paper")  # fmt: skip

    assert paper((32,)) == flops.memory_mb("resnet10", bit_widths=(32,), num_classes=CLASSES)
    assert paper((4,)) == pytest.approx((stored + inv.alpha_sites) * 4 / mib)  # first conv, fc, BN, α too
    assert paper((4,)) < flops.memory_mb("resnet10", bit_widths=(4,), num_classes=CLASSES)
    # One shared copy at max(B) (here 4), then each bit-width's own BN copy and α at that bit-width.
    assert paper((4, 2)) == pytest.approx(paper((4,)) + (inv.bn_per_bit + inv.alpha_sites) * 2 / mib)
    assert paper((32, 4, 2), "separate") == pytest.approx(paper((32,)) + paper((4,)) + paper((2,)))
    with pytest.raises(ValueError, match="convention"):
        flops.memory_mb("resnet10", bit_widths=(4,), num_classes=CLASSES, convention="x")


def test_memory_of_mobilenet_v2_is_every_tensor_at_32_bits() -> None:
    net = mobilenet_v2(weights=None, num_classes=CLASSES, width_mult=0.5)
    stored = sum(p.numel() for p in net.parameters())
    stored += sum(b.numel() for n, b in net.named_buffers() if not n.endswith("num_batches_tracked"))
    for convention in flops.CONVENTIONS:
        assert flops.memory_mb("mobilenet_v2", bit_widths=(32,), num_classes=CLASSES, width_mult=0.5,
                               convention=convention) == pytest.approx(stored * 4 / 2**20)  # fmt: skip
    with pytest.raises(ValueError, match="mobilenet_v2 is never quantised"):
        flops.memory_mb("mobilenet_v2", bit_widths=(32, 4), num_classes=CLASSES)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "searchlab.flops", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_json() -> None:
    result = _cli("resnet10", "--frames", "4", "--size", str(SIZE), "--bits", "32", "4", "2",
                  "--classes", str(CLASSES), "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"network", "frames", "size", "classes", "width_mult", "convention", "counted", "vared",
                           "per_bits"}
    assert (report["network"], report["frames"], report["convention"]) == ("resnet10", 4, "exact")
    assert (report["counted"], report["vared"]) == ("per frame", None)
    assert set(report["per_bits"]) == {"32", "4", "2"}
    table = flops.action_cost_table("resnet10", decision_space=(32, 4, 2), size=SIZE, num_classes=CLASSES)
    for bits in (32, 4, 2):
        row = report["per_bits"][str(bits)]
        assert row["gflops"] == pytest.approx(4 * table[bits])
        assert row["memory_mb"] == pytest.approx(
            flops.memory_mb("resnet10", bit_widths=(bits,), num_classes=CLASSES)
        )


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI in-process (exit code, stdout, stderr): no interpreter start, no fresh counts."""
    try:
        code = flops.main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prices_mobilenet_v2_like_the_resnets(capsys: pytest.CaptureFixture[str]) -> None:
    common = ("--frames", "2", "--size", str(SIZE), "--classes", str(CLASSES), "--json")
    code, out, err = _main(capsys, "mobilenet_v2", "--bits", "32", "--width-mult", "0.25", *common)
    assert code == 0, err
    report = json.loads(out)
    code, out, err = _main(capsys, "resnet10", "--bits", "32", *common)
    assert code == 0, err
    assert set(report) == set(json.loads(out))
    assert (report["network"], report["width_mult"], list(report["per_bits"])) == ("mobilenet_v2", 0.25, ["32"])
    kwargs = {"num_classes": CLASSES, "width_mult": 0.25}
    assert report["per_bits"]["32"] == {
        "gflops": pytest.approx(2 * flops.network_gflops_per_frame("mobilenet_v2", size=SIZE, **kwargs)),
        "memory_mb": pytest.approx(flops.memory_mb("mobilenet_v2", bit_widths=(32,), **kwargs)),
    }
    code, out, _ = _main(capsys, "mobilenet_v2", "--size", str(SIZE), "--classes", str(CLASSES))  # --bits defaults to 32
    assert code == 0 and "mobilenet_v2 (width multiplier 1)" in out and "any-precision" not in out


def test_cli_paper_convention_applies_to_memory(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _main(capsys, "resnet10", "--bits", "32", "4", "--size", str(SIZE), "--classes", str(CLASSES),
                           "--paper-convention", "--json")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["convention"] == "paper"
    for bits in (32, 4):
        assert report["per_bits"][str(bits)]["memory_mb"] == pytest.approx(
            flops.memory_mb("resnet10", bit_widths=(bits,), num_classes=CLASSES, convention="paper")
        )
    assert report["per_bits"]["4"]["memory_mb"] == pytest.approx(report["per_bits"]["32"]["memory_mb"] / 8, rel=1e-3)


def test_cli_reports_every_bad_argument(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _main(capsys, "nope", "--frames", "0", "--bits", "33")
    assert code == 2
    assert "error: unknown network 'nope'" in err
    assert "--frames must be >= 1" in err and "ints in 1..32" in err
    code, _, err = _main(capsys, "mobilenet_v2", "--bits", "32", "4", "--width-mult", "0", "--size", "0")
    assert code == 2
    assert "--bits: mobilenet_v2 is never quantised" in err and "(--bits 32, or leave --bits out)" in err
    assert "--width-mult: the width multiplier must be a finite number > 0, got 0.0" in err
    assert "--size must be >= 1" in err
    code, _, err = _main(capsys, "resnet50", "--width-mult", "0.5")
    assert code == 2 and "--width-mult: resnet50 has no width multiplier" in err


@pytest.mark.parametrize("network", ["resnet10", "mobilenet_v2"])
def test_cost_and_memory_lookups_leave_the_global_random_generator_alone(network: str) -> None:
    flops._layer_macs.cache_clear()  # a cached lookup builds nothing: clear to test the one that does
    flops._inventory.cache_clear()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    flops.network_gflops_per_frame(network, size=32, num_classes=3)
    flops.memory_mb(network, bit_widths=[32], num_classes=3)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("frozen_features", [False, True])
def test_counting_a_policy_leaves_every_module_mode_and_state_alone(frozen_features: bool) -> None:
    """Counting once put an evaluated policy back into training mode (the counting wrapper's mode),
    so stage 2 evaluated with dropout and batch statistics and saved moved BN running statistics."""
    policy = PolicyNetwork(num_actions=3, input_size=16, hidden_size=8, width_mult=0.25).eval()
    if frozen_features:  # stage 2's training mode with a frozen body: φ evaluates, the head trains
        policy.train()
        policy.features.eval()
    modes = {name: module.training for name, module in policy.named_modules()}
    state = {name: value.clone() for name, value in policy.state_dict().items()}
    flops.policy_gflops_per_frame(policy, size=32, frames=2)
    assert {name: module.training for name, module in policy.named_modules()} == modes
    assert all(torch.equal(value, policy.state_dict()[name]) for name, value in state.items())


def test_r2plus1d_18_layer_count_equals_the_hand_count() -> None:
    # layer1's first spatial conv at 16 x 128: the stem halves the side (64 px), keeps the 16 frames
    layers = {l.name: l.macs for l in flops.clip_layer_macs("r2plus1d_18", frames=16, size=128, num_classes=400)}
    c_in, kernel, c_out = 64, 3 * 3, 144  # midplanes of a 64 -> 64 block: 64·64·27 // (64·9 + 3·64) = 144
    assert layers["layer1.0.conv1.0.0"] == c_in * kernel * c_out * 16 * 64 * 64
    # and its temporal conv: 144 -> 64 channels, 3 x 1 x 1
    assert layers["layer1.0.conv1.0.3"] == 144 * 3 * 64 * 16 * 64 * 64
    assert "(other)" not in layers


def test_video_networks_are_priced_per_clip_only() -> None:
    clip = flops.network_gflops_per_clip("r2plus1d_10", frames=4, size=SIZE, num_classes=CLASSES)
    layers = flops.clip_layer_macs("r2plus1d_10", frames=4, size=SIZE, num_classes=CLASSES)
    assert clip == pytest.approx(sum(l.macs for l in layers) / 1e9)
    # twice the frames: exactly twice the cost (every layer's T doubles, fc and pooling aside)
    assert flops.network_gflops_per_clip("r2plus1d_10", frames=8, size=SIZE, num_classes=CLASSES) > 1.9 * clip
    assert flops.network_gflops_per_clip("resnet10", frames=4, size=SIZE, num_classes=CLASSES) == pytest.approx(
        4 * flops.network_gflops_per_frame("resnet10", size=SIZE, num_classes=CLASSES))
    with pytest.raises(ValueError, match="per clip"):
        flops.network_gflops_per_frame("r2plus1d_10", size=SIZE, num_classes=CLASSES)
    with pytest.raises(ValueError, match="per frame"):
        flops.clip_layer_macs("resnet10", frames=4, size=SIZE, num_classes=CLASSES)
    with pytest.raises(ValueError, match="never quantised"):
        flops.memory_mb("r2plus1d_10", bit_widths=(4,), num_classes=CLASSES)
    assert "r2plus1d_18" in flops.list_networks()


def test_cli_prices_a_video_network_per_clip(capsys: pytest.CaptureFixture[str]) -> None:
    common = ("--frames", "4", "--size", str(SIZE), "--classes", str(CLASSES))
    code, out, err = _main(capsys, "r2plus1d_10", *common, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["counted"], list(report["per_bits"])) == ("per clip", ["32"])
    assert report["per_bits"]["32"]["gflops"] == pytest.approx(
        flops.network_gflops_per_clip("r2plus1d_10", frames=4, size=SIZE, num_classes=CLASSES))
    model = create_video_network("r2plus1d_10", num_classes=CLASSES)
    assert report["per_bits"]["32"]["memory_mb"] == pytest.approx(
        sum(t.numel() * 4 for n, t in model.state_dict().items() if "num_batches" not in n) / 2**20)
    code, out, _ = _main(capsys, "r2plus1d_10", *common)
    assert code == 0 and "counted per clip" in out
    code, out, _ = _main(capsys, "resnet10", *common, "--bits", "32")
    assert code == 0 and "counted per frame" in out
    code, _, err = _main(capsys, "r2plus1d_10", *common, "--bits", "32", "4")
    assert code == 2 and "--bits: r2plus1d_10 is never quantised" in err


def test_cli_prices_vared_with_every_gate_forced(capsys: pytest.CaptureFixture[str]) -> None:
    from searchlab.methods.vared.costs import vared_costs
    from searchlab.methods.vared.network import VaredNetwork

    common = ("--frames", "4", "--size", str(SIZE), "--classes", str(CLASSES), "--json")
    reports = {}
    for force in ("0,0", "1,1", "0,2"):
        code, out, err = _main(capsys, "r2plus1d_10", *common, "--vared-force", force)
        assert code == 0, err
        reports[force] = json.loads(out)
    assert reports["1,1"]["vared"] == {"force": [1, 1], "gated": "spatial", "options": [2, 2]}
    assert reports["0,2"]["vared"]["options"] == [2, 3] and reports["1,1"]["counted"] == "per clip"
    network = VaredNetwork(backbone="r2plus1d_10", num_classes=CLASSES, frames=4, size=SIZE)
    costs = vared_costs(network)
    assert reports["1,1"]["per_bits"]["32"] == {"gflops": pytest.approx(costs.forced_gflops(1, 1)),
                                                "memory_mb": pytest.approx(costs.memory_mb)}
    # forced to the full alternatives, the dynamic network costs what the base network does
    assert reports["0,0"]["per_bits"]["32"]["gflops"] == pytest.approx(
        flops.network_gflops_per_clip("r2plus1d_10", frames=4, size=SIZE, num_classes=CLASSES), rel=1e-12)
    assert reports["1,1"]["per_bits"]["32"]["gflops"] < reports["0,0"]["per_bits"]["32"]["gflops"]
    code, out, err = _main(capsys, "resnet10", *common, "--vared-force", "1,0", "--vared-gated", "all")
    assert code == 0, err
    assert json.loads(out)["vared"] == {"force": [1, 0], "gated": "all", "options": [2, 2]}
    code, _, err = _main(capsys, "mobilenet_v2", "--vared-force", "1,1", "--bits", "32", "4")
    assert code == 2 and "VA-RED² runs on" in err and "never quantised" in err
    code, _, err = _main(capsys, "r2plus1d_10", "--vared-force", "1")
    assert code == 2 and "expected T,C" in err
