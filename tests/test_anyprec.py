"""Any-precision backbones: contract suite over every registered backbone, plus the registry."""

from __future__ import annotations

import warnings

import pytest
import torch
from torchvision.models import ResNet
from torchvision.models.resnet import BasicBlock

from searchlab.models import registry
from searchlab.models.anyprec import AnyPrecisionResNet
from searchlab.models.quant import QuantConv2d, SwitchableBatchNorm2d
from searchlab.models.registry import create_backbone, create_teacher, list_backbones, register_backbone

BITS = (32, 4, 2)
CLASSES = 5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _pair(name: str) -> tuple[torch.nn.Module, AnyPrecisionResNet]:
    torch.manual_seed(0)
    teacher = create_teacher(name, num_classes=CLASSES)
    net = create_backbone(name, num_classes=CLASSES, bit_widths=BITS, alpha_init=2.0)
    return teacher, net


@pytest.mark.parametrize("name", list_backbones())
def test_contract_joint_training_step_and_independent_bn(name: str) -> None:
    _, net = _pair(name)
    net.train()
    x, y = _images(), torch.tensor([0, 3])
    switchable = [m for m in net.modules() if isinstance(m, SwitchableBatchNorm2d)]
    assert switchable
    losses = []
    for i, bits in enumerate(BITS):
        out = net(x, bits)
        assert out.shape == (2, CLASSES)
        assert torch.isfinite(out).all()
        losses.append(torch.nn.functional.cross_entropy(out, y))
        # BN copies are independent: only those of the bit-widths run so far saw a batch.
        for m in switchable:
            assert [m.bns[str(b)].num_batches_tracked.item() for b in BITS] == [1] * (i + 1) + [0] * (2 - i)
    sum(losses).backward()
    no_grad = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert no_grad == []
    alpha_grads = [p.grad for n, p in net.named_parameters() if ".alpha." in n]
    assert alpha_grads and any(g.abs().sum() > 0 for g in alpha_grads)


@pytest.mark.parametrize("name", list_backbones())
def test_contract_torchvision_weights_give_the_teacher_at_32_bits(name: str) -> None:
    teacher, net = _pair(name)
    # Non-trivial BN statistics so that loading them is visible in the output.
    teacher.train()
    with torch.no_grad():
        teacher(_images(seed=1) * 2 + 0.5)
    assert net.load_torchvision_state_dict(teacher.state_dict()) == []
    teacher.eval()
    net.eval()
    x = _images(seed=2)
    with torch.no_grad():
        torch.testing.assert_close(net(x, 32), teacher(x), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(net(x, 2), teacher(x), atol=1e-3)


def test_surgery_keeps_first_conv_and_fc_full_precision() -> None:
    _, net = _pair("resnet18")
    assert type(net.conv1) is torch.nn.Conv2d and type(net.bn1) is torch.nn.BatchNorm2d
    assert type(net.fc) is torch.nn.Linear
    assert isinstance(net.layer2[0].downsample[0], QuantConv2d)
    assert isinstance(net.layer2[0].downsample[1], SwitchableBatchNorm2d)
    quant = [m for m in net.modules() if isinstance(m, QuantConv2d)]
    assert len(quant) == 16 + 3  # 8 BasicBlocks x 2 convs + 3 downsample convs
    assert net.bit_widths == (32, 4, 2) and net.max_bits == 4 and net.num_classes == CLASSES


def test_weights_shared_across_bits() -> None:
    _, net = _pair("resnet10")
    conv = net.layer1[0].conv1
    params = {id(p) for p in net.parameters()}
    assert id(conv.weight) in params
    assert sum(1 for n, _ in net.named_parameters() if n.startswith("layer1.0.conv1.") and "alpha" not in n) == 1


def test_fc_of_another_class_count_is_skipped_with_a_warning() -> None:
    _, net = _pair("resnet10")
    other = create_teacher("resnet10", num_classes=CLASSES + 2)
    fc_before = net.fc.weight.detach().clone()
    with pytest.warns(UserWarning, match="fc not loaded"):
        skipped = net.load_torchvision_state_dict(other.state_dict())
    assert skipped == ["fc.weight", "fc.bias"]
    torch.testing.assert_close(net.fc.weight, fc_before)
    torch.testing.assert_close(net.layer1[0].conv1.weight, other.layer1[0].conv1.weight)
    for copy in net.layer1[0].bn1.bns.values():
        torch.testing.assert_close(copy.running_var, other.layer1[0].bn1.running_var)


def test_wrong_state_dict_lists_every_problem() -> None:
    _, net = _pair("resnet10")
    state = create_teacher("resnet18", num_classes=CLASSES).state_dict()
    with pytest.raises(ValueError) as err:
        net.load_torchvision_state_dict(state)
    message = str(err.value)
    assert "unexpected key 'layer1.1.conv1.weight'" in message
    assert "unexpected key 'layer4.1.bn2.running_mean'" in message


def test_optimizer_param_groups_give_alpha_its_own_lr_and_wd() -> None:
    _, net = _pair("resnet10")
    groups = net.optimizer_param_groups(
        lr=0.01, weight_decay=1e-4, alpha_lr={32: 0.01, 4: 0.02, 2: 0.03}, alpha_wd={4: 5e-4, 2: 5e-3}
    )
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"weights", "alpha_4", "alpha_2"}
    assert (by_name["alpha_2"]["lr"], by_name["alpha_2"]["weight_decay"]) == (0.03, 5e-3)
    n_alpha = sum(1 for n, _ in net.named_parameters() if ".alpha." in n)
    assert len(by_name["alpha_4"]["params"]) + len(by_name["alpha_2"]["params"]) == n_alpha
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    torch.optim.SGD(groups, lr=0.01)  # accepted as-is


def test_optimizer_param_groups_report_every_missing_or_unknown_bit() -> None:
    _, net = _pair("resnet10")
    with pytest.raises(ValueError) as err:
        net.optimizer_param_groups(lr=0.1, weight_decay=0.0, alpha_lr={4: 0.1, 8: 0.1}, alpha_wd={})
    message = str(err.value)
    assert "alpha_lr lacks bit-widths [2]" in message
    assert "alpha_lr names bit-widths [8]" in message
    assert "alpha_wd lacks bit-widths [4, 2]" in message


def test_forward_rejects_unknown_bits_and_bad_bit_widths() -> None:
    _, net = _pair("resnet10")
    with pytest.raises(ValueError, match="not one of this network's bit_widths"):
        net(_images(), 8)
    with pytest.raises(ValueError, match=r"ints in 1\.\.32.*distinct"):
        create_backbone("resnet10", num_classes=2, bit_widths=(33, 4, 4), alpha_init=1.0)


def test_registry_lookup_and_collision_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    assert {"resnet10", "resnet18", "resnet34", "resnet50"} <= set(list_backbones())
    assert list_backbones("resnet1*") == ["resnet10", "resnet18"]
    with pytest.raises(ValueError, match="unknown backbone 'vgg'.*resnet18"):
        create_backbone("vgg", num_classes=2, bit_widths=BITS, alpha_init=1.0)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    def tiny(*, num_classes: int) -> ResNet:
        return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_backbone("tiny-test")(tiny)
    with pytest.warns(UserWarning, match="already registered"):
        register_backbone("tiny-test")(tiny)
    net = create_backbone("tiny-test", num_classes=3, bit_widths=(8, 4), alpha_init=1.0)
    assert isinstance(net, AnyPrecisionResNet) and net.max_bits == 8
