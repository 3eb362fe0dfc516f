"""The method contract, checked for every registered method (``list_methods()``), so a method that is
registered is tested without a line here beyond its entry in ``TINY`` (and, where the generic rules
cannot make a valid change of one of its keys, in ``CHANGES``; its inference-path counter in ``COUNTS``):

1. defaults: ``method: <name>`` and a data section validate, with the method's sections present; another
   method's section is an error naming it;
2. stage keys: changing any key of the trial configuration changes exactly the keys of the stages that
   declare it (``depends_on``, ``fan_out.over``, less ``ignores``) and of every stage downstream of them
   (a fanned-out stage: only the items whose values changed); another method's section, the data's
   fingerprint likewise;
3. every stage trains two real steps on the tiny synthetic set without Ray (``LocalRun``), in running
   order, build steps called directly, fanned-out stages once per item; the last stage publishes the
   metric contract;
4. the cost model's GFLOPs equal fvcore's count of the inference path on the same decisions;
5. a bundle written from the artifacts of 3 (as ``searchlab.pick`` writes one) loads with
   ``searchlab.deploy.load``, predicts, and its measurement reproduces the recorded metrics exactly.

The trained artifacts are shared by a module-scoped fixture (one chain per method, trained when a test
first asks for it). Tiny everywhere: 4 frames of 28 px, a 0.25-wide policy, one epoch of two steps.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import Tensor, nn

from searchlab.config import METHOD_SECTIONS, ConfigError, TrialConfig, parse_trial_config
from searchlab.methods import Method, Stage, get_method, list_methods, stage_keys
from searchlab.methods._keys import fan_out_items
from searchlab.train.worker import ARTIFACT_DIR, LocalRun

METHODS = list_methods()

#: The data section every tiny trial shares: 4 frames, 28-px crops of the 32-px synthetic videos.
DATA: dict[str, Any] = {"data.frames": 4, "data.train_scale": [32, 40], "data.crop_size": 28,
                        "data.eval_short_side": 32, "data.loader_workers": 0}
#: Per method: dotted overrides making a tiny trial (one epoch of every stage, 4 clips a step: the tiny
#: set's 8 training videos are two steps). A newly registered method must add its entry.
TINY: dict[str, dict[str, Any]] = {
    "videoiq": {
        "model.backbone": "resnet10", "model.policy_input_size": 16, "model.policy_hidden": 16,
        "model.policy_width_mult": 0.25,
        "teacher.epochs": 1, "teacher.policy_epochs": 1, "teacher.batch_size": 4,
        "stage1.epochs": 1, "stage1.batch_size": 4,
        "stage2.epochs": 1, "stage2.batch_size": 4, "stage2.cached_views": 1,
    },
    "arnet": {
        "arnet.resolutions": [28, 21, 14], "arnet.backbones": ["resnet10"] * 3, "arnet.policy_input_size": 16,
        "arnet.policy_hidden": 16, "arnet.policy_width_mult": 0.25,
        "arnet.backbone_stage.epochs": 1, "arnet.backbone_stage.batch_size": 4,
        "arnet.joint_stage.epochs": 1, "arnet.joint_stage.batch_size": 4,
        "arnet.finetune_stage.epochs": 1, "arnet.finetune_stage.batch_size": 4,
    },
    "vared": {
        "vared.backbone": "resnet10", "vared.lr_batch": 4,
        **{f"vared.{stage}.{key}": value for stage in ("base_stage", "dynamic_stage", "finetune_stage")
           for key, value in (("epochs", 1), ("warmup_epochs", 0), ("batch_size", 4))},
    },
}
#: The metric contract every method's last stage records (at least).
CONTRACT = ("accuracy", "gflops", "gflops_p5", "gflops_p95", "memory_mb", "skip_fraction", "usage")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config(name: str, manifest: str | Path = "data/manifest.parquet") -> TrialConfig:
    base = TrialConfig.model_validate({"method": name, "data": {"manifest": str(manifest)}})
    return base.with_overrides({**DATA, **TINY[name]})


def test_every_registered_method_has_a_tiny_trial() -> None:
    assert sorted(TINY) == METHODS, "add the new method's tiny overrides to TINY (and COUNTS)"
    assert sorted(COUNTS) == METHODS, "add the new method's inference-path counter to COUNTS"
    assert sorted(DECISIONS) == METHODS, "add the check of the new method's bundle decisions to DECISIONS"


# --- 1. defaults ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", METHODS)
def test_defaults_validate_with_the_methods_sections_present(name: str) -> None:
    config = parse_trial_config({"method": name, "data": {"manifest": "m.parquet"}}, source="test")
    assert config.method == name
    assert all(getattr(config, section) is not None for section in METHOD_SECTIONS[name])
    # every key the stages declare exists in the default configuration
    keys = stage_keys(get_method(name), config.model_dump(mode="json"), data_fingerprint="fp")
    assert set(keys) == {stage.name for stage in get_method(name).stages}


@pytest.mark.parametrize("name", METHODS)
def test_another_methods_section_is_an_error_naming_it(name: str) -> None:
    checked = 0
    for other in METHODS:
        if other == name:
            continue
        theirs = tiny_config(other).model_dump(mode="json")
        for section in METHOD_SECTIONS[other]:
            tree = {"method": name, "data": {"manifest": "m.parquet"}, section: theirs[section]}
            with pytest.raises(ConfigError, match=rf"\b{section}: configures method {other}, but this trial's "
                                                  rf"method is {name}"):
                parse_trial_config(tree, source="test")
            checked += 1
    assert checked or len(METHODS) == 1


# --- 2. stage keys -------------------------------------------------------------------------------------

#: A changed string per value: choices of Literal fields and registry names (other strings get a suffix).
ALTERNATIVES: dict[str, str] = {
    "synthetic": "fcvid", "auto": "top1", "resnet10": "resnet18", "resnet18": "resnet10", "resnet50": "resnet18",
    "distill": "labels", "flops": "official", "argmax": "sample", "epoch": "iteration", "nearest": "bilinear",
    "exponential": "constant", "spatial": "all", "depthwise": "copy", "cheapest": "zero", "expected": "largest", "scratch": "base",
}
#: Keys the generic rules cannot change alone into a valid trial: dotted key -> the overrides that change it.
COMMON_CHANGES: dict[str, dict[str, Any]] = {
    "resources.gpus_per_worker": {"resources.use_gpu": True, "resources.gpus_per_worker": 1.0},
    "resources.launch": {"resources.launch": "local"},
    "data.sampling": {"data.sampling": "dense"},
    "data.frame_stride": {"data.sampling": "dense", "data.frame_stride": 2},  # a stride is dense sampling's
    "data.eval_crops": {"data.eval_crops": 3},  # 1 or 3
}
CHANGES: dict[str, dict[str, dict[str, Any]]] = {
    "videoiq": {
        # a new bit-width needs its PACT α learning rate and weight decay
        "model.bit_widths": {"model.bit_widths": [32, 8, 4, 2], "stage1.alpha.lr.8": 0.1, "stage1.alpha.wd.8": 5e-4},
        # another kind of τ schedule reads other parameters
        "stage2.temperature.kind": {"stage2.temperature": {"kind": "constant", "tau0": 5.0}},
    },
    "arnet": {
        # random initialisation ([]) -> a weights file for the last resolution only
        "arnet.backbone_pretrained": {"arnet.backbone_pretrained": [None, None, "weights.pt"]},
        # another kind of τ schedule reads other parameters
        "arnet.joint_stage.temperature.kind": {"arnet.joint_stage.temperature": {"kind": "constant", "tau0": 5.0}},
        "arnet.finetune_stage.temperature.kind": {"arnet.finetune_stage.temperature": {"kind": "constant",
                                                                                       "tau0": 0.6}},
    },
    "vared": {
        "vared.gate_hidden": {"vared.gate_hidden": 32},  # null (the default size) -> a given size
        # a warm-up must end before the last epoch
        **{f"vared.{stage}.warmup_epochs": {f"vared.{stage}.epochs": 2, f"vared.{stage}.warmup_epochs": 1}
           for stage in ("base_stage", "dynamic_stage", "finetune_stage")},
    },
}


def _candidates(value: Any) -> list[Any]:
    """Changed values of ``value`` by type, in the order tried (the first valid one is used)."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [v for v in (value + 1, value * 2, value - 1, value // 2) if v != value]
    if isinstance(value, float):
        return [v for v in (value * 2, value / 2, value + 1.0, 0.5) if v != value]
    if isinstance(value, str):
        return [ALTERNATIVES.get(value, value + "-changed")]
    if value is None:
        return ["changed", {}]
    if isinstance(value, list) and value:
        last = _candidates(value[-1])
        return [[*value[:-1], c] for c in last] + [value[:-1]] + [[*value, c] for c in last]
    return []


def _leaves(tree: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf: a value that is not a non-empty mapping (a list is one leaf)."""
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _own_leaves(name: str, tree: dict[str, Any]) -> list[tuple[str, Any]]:
    """The leaves of a trial of ``name``, without its method and the other methods' sections."""
    foreign = {s for other, sections in METHOD_SECTIONS.items() if other != name for s in sections}
    return [(key, value) for key, value in _leaves(tree) if key != "method" and key.split(".")[0] not in foreign]


def _set(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = tree
    for part in parents:
        node = node[part]
    node[last] = value


def _get(tree: dict[str, Any], key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        node = node[part]
    return node


def _changed(name: str, tree: dict[str, Any], key: str, value: Any) -> dict[str, Any] | None:
    """The JSON dump of a valid trial that differs from ``tree`` at ``key`` (None when none is found)."""
    table = CHANGES.get(name, {}).get(key) or COMMON_CHANGES.get(key)
    for overrides in [table] if table else [{key: c} for c in _candidates(value)]:
        candidate = copy.deepcopy(tree)
        for dotted, new in overrides.items():
            _set(candidate, dotted, new)
        try:
            dumped = TrialConfig.model_validate(candidate).model_dump(mode="json")
        except ValidationError:
            continue
        if _get(dumped, key) != value:
            return dumped
    return None


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


def _declares(stage: Stage, key: str, prefixes: tuple[str, ...]) -> bool:
    return not any(_under(key, ignored) for ignored in stage.ignores) and any(_under(key, p) for p in prefixes)


def _items(stage: Stage, tree: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Each item's values of ``fan_out.over`` (None from an empty list), written out again here."""
    assert stage.fan_out is not None
    lists = [_get(tree, key) for key in stage.fan_out.over]
    count = max(len(values) for values in lists)
    return [tuple(values[i] if values else None for values in lists) for i in range(count)]


def _expected(method: Method, before: dict, after: dict, changed: set[str], data: bool) -> dict[str, Any]:
    """Which keys must change: a stage's (True) or a fanned-out stage's items (their indices)."""
    expected: dict[str, Any] = {}
    for stage in method.stages:
        whole = (any(expected[need] for need in stage.needs) or (stage.reads_data and data)
                 or any(_declares(stage, key, stage.depends_on) for key in changed))
        if stage.fan_out is None:
            expected[stage.name] = whole
            continue
        old, new = _items(stage, before), _items(stage, after)
        assert len(old) == len(new), "a change for a fanned-out stage keeps the number of items"
        expected[stage.name] = tuple(i for i in range(len(new)) if whole or old[i] != new[i])
    return expected


def _actual(method: Method, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    actual: dict[str, Any] = {}
    for stage in method.stages:
        old, new = before[stage.name], after[stage.name]
        actual[stage.name] = (old != new if stage.fan_out is None
                              else tuple(i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b))
    return actual


@pytest.mark.parametrize("name", METHODS)
def test_every_key_changes_exactly_the_stages_declaring_it_and_those_downstream(name: str) -> None:
    method = get_method(name)
    tree = tiny_config(name).model_dump(mode="json")
    keys = stage_keys(method, tree, data_fingerprint="fp")
    unchangeable, wrong, covered = [], [], set()
    for key, value in _own_leaves(name, tree):
        after = _changed(name, tree, key, value)
        if after is None:
            unchangeable.append(key)
            continue
        old, new = dict(_leaves(tree)), dict(_leaves(after))
        changed = {k for k in old.keys() | new.keys() if old.get(k, old) != new.get(k, new)}
        covered |= changed
        expected = _expected(method, tree, after, changed, data=False)
        actual = _actual(method, keys, stage_keys(method, after, data_fingerprint="fp"))
        if actual != expected:
            wrong.append(f"{key} {value!r} -> {_get(after, key)!r}: keys changed {actual}, expected {expected}")
    assert not unchangeable, (f"no valid changed value found for {unchangeable}; add one to CHANGES[{name!r}] "
                              "(or a string to ALTERNATIVES)")
    assert not wrong, "\n".join(wrong)
    # every declared key was exercised (a declaration naming an empty section would not be)
    declared = {p for stage in method.stages
                for p in (*stage.depends_on, *(stage.fan_out.over if stage.fan_out else ()))}
    assert all(any(_under(key, p) for key in covered) for p in declared), declared


@pytest.mark.parametrize("name", METHODS)
def test_other_data_changes_the_stages_that_read_it_and_those_downstream(name: str) -> None:
    method = get_method(name)
    tree = tiny_config(name).model_dump(mode="json")
    actual = _actual(method, stage_keys(method, tree, data_fingerprint="fp"),
                     stage_keys(method, tree, data_fingerprint="other"))
    assert actual == _expected(method, tree, tree, set(), data=True)


@pytest.mark.parametrize("name", METHODS)
def test_another_methods_section_changes_no_key(name: str) -> None:
    method = get_method(name)
    tree = tiny_config(name).model_dump(mode="json")
    keys = stage_keys(method, tree, data_fingerprint="fp")
    for other in METHODS:
        if other == name:
            continue
        theirs = tiny_config(other).model_dump(mode="json")
        for section in METHOD_SECTIONS[other]:
            assert theirs[section] != tree[section]
            assert stage_keys(method, {**tree, section: theirs[section]}, data_fingerprint="fp") == keys, section


# --- 3. every stage trains -----------------------------------------------------------------------------


@dataclass
class Chain:
    """A method's stages run in order on the tiny set: artifacts and LocalRuns by stage name."""

    config: TrialConfig
    method: Method
    artifacts: dict[str, Path | list[Path]]
    runs: dict[str, list[LocalRun]]
    manifest: Any
    root: Path

    @property
    def metrics(self) -> dict[str, Any]:
        last = self.artifacts[self.method.stages[-1].name]
        assert isinstance(last, Path)
        return json.loads((last / "metrics.json").read_text())


def _train(name: str, manifest_path: Path, out: Path) -> Chain:
    from searchlab.train.loader import load_manifest

    config = tiny_config(name, manifest_path)
    method = get_method(name)
    tree = config.model_dump(mode="json")
    artifacts: dict[str, Path | list[Path]] = {}
    runs: dict[str, list[LocalRun]] = {}
    for stage in method.stages:
        inputs = {need: artifacts[need] for need in stage.needs}
        if stage.build is not None:
            stage.build(config, inputs, out / stage.name)
            artifacts[stage.name], runs[stage.name] = out / stage.name, []
            continue
        assert stage.loop is not None and stage.loop_config is not None
        items: list[int | None] = list(range(len(fan_out_items(stage, tree)))) if stage.fan_out else [None]
        runs[stage.name], published = [], []
        for item in items:
            folder = out / (stage.name if item is None else f"{stage.name}_{item}")
            run = LocalRun(folder / "run")
            # what searchlab.train.launch.run_stage adds to the stage's own loop configuration
            stage.loop({**stage.loop_config(config, inputs, item), "log_dir": str(folder / "tensorboard"),
                        "eval_every": 0, "inject_failure_after_epoch": None}, run.worker())
            runs[stage.name].append(run)
            published.append(run.checkpoints[-1] / ARTIFACT_DIR)
        artifacts[stage.name] = published if stage.fan_out else published[0]
    manifest, root = load_manifest(config.data)
    return Chain(config=config, method=method, artifacts=artifacts, runs=runs, manifest=manifest, root=root)


@pytest.fixture(scope="module")
def chains(synthetic_set, tmp_path_factory) -> Callable[[str], Chain]:
    """``chains(name)``: the method's trained chain, trained once per module when first asked for."""
    _, root = synthetic_set
    trained: dict[str, Chain | BaseException] = {}

    def chain(name: str) -> Chain:
        if name not in trained:
            try:
                trained[name] = _train(name, root / "manifest.parquet", tmp_path_factory.mktemp(f"chain_{name}"))
            except Exception as error:  # noqa: BLE001  # every test of the method reports it, none trains again
                trained[name] = error
        result = trained[name]
        if isinstance(result, BaseException):
            raise result
        return result

    return chain


@pytest.mark.parametrize("name", METHODS)
def test_every_stage_trains_two_steps_in_running_order(name: str, chains) -> None:
    chain = chains(name)
    train_videos = len(chain.manifest.split("train"))
    for stage in chain.method.stages:
        artifact = chain.artifacts[stage.name]
        folders = artifact if isinstance(artifact, list) else [artifact]
        assert all(folder.is_dir() and any(folder.iterdir()) for folder in folders), stage.name
        if stage.build is not None:
            continue
        if stage.fan_out is not None:
            assert len(folders) == len(fan_out_items(stage, chain.config.model_dump(mode="json")))
        for run in chain.runs[stage.name]:
            assert (run.checkpoints[-1] / ARTIFACT_DIR / "metrics.json").is_file()
            assert [r["epoch"] for r in run.reports] == list(range(1, len(run.reports) + 1)), stage.name
            for report in run.reports:
                # one epoch sees every training video once: two steps of TINY's 4 clips
                assert report["clips_per_second"] * report["epoch_seconds"] == pytest.approx(train_videos), stage.name
                losses = [v for k, v in report.items() if k.startswith("loss/")]
                assert losses and all(math.isfinite(v) for v in losses), (stage.name, report)


@pytest.mark.parametrize("name", METHODS)
def test_the_last_stage_publishes_the_metric_contract(name: str, chains) -> None:
    chain = chains(name)
    metrics = chain.metrics
    # its final evaluation's time is reported apart from training's (bench/sweep_cost.py counts it as measurement)
    last_report = chain.runs[chain.method.stages[-1].name][-1].reports[-1]
    assert last_report["eval_seconds"] > 0 and last_report["epoch_seconds"] > 0
    assert set(CONTRACT) <= set(metrics), sorted(metrics)
    assert 0 <= metrics["accuracy"] <= 1 and metrics["memory_mb"] > 0 and 0 <= metrics["skip_fraction"] <= 1
    assert 0 < metrics["gflops_p5"] <= metrics["gflops"] <= metrics["gflops_p95"]
    assert sum(metrics["usage"].values()) == pytest.approx(1.0)


# --- 4. the cost model against fvcore ------------------------------------------------------------------


@dataclass(frozen=True)
class InferenceCount:
    """A method's inference path for the fvcore check.

    ``build(config, num_classes)``: a network with ``infer(frames, mode=)`` and a ``policy``
    (searchlab.models.PolicyNetwork); ``decisions(model, frames)``: one-hot action indices per clip
    (covering every action); ``count(model, by_module, actions)``: GFLOPs from fvcore's per-module MACs
    of one clip's inference path under the method's counting convention; ``price(config, model)``:
    the method's cost model, actions -> GFLOPs per video.
    """

    build: Callable[[TrialConfig, int], nn.Module]
    decisions: Callable[[nn.Module, int], list[list[int]]]
    count: Callable[[nn.Module, dict[str, int], Tensor], float]
    price: Callable[[TrialConfig, nn.Module], Callable[[Tensor], np.ndarray]]


def _videoiq_build(config: TrialConfig, num_classes: int) -> nn.Module:
    from searchlab.models import PolicyNetwork, VideoIQ, create_backbone

    m = config.model
    backbone = create_backbone(m.backbone, num_classes=num_classes, bit_widths=m.bit_widths,
                               alpha_init=config.stage1.alpha.init)
    policy = PolicyNetwork(num_actions=len(config.stage2.decision_space), input_size=m.policy_input_size,
                           hidden_size=m.policy_hidden, width_mult=m.policy_width_mult)
    return VideoIQ(backbone=backbone, policy=policy, decision_space=config.stage2.decision_space)


def _videoiq_decisions(model: nn.Module, frames: int) -> list[list[int]]:
    """One precision per clip (its layers' MACs scale by one rate), every other frame skipped."""
    space = list(model.decision_space)
    skip = space.index(0) if 0 in space else None
    return [[k if t % 2 == 0 or skip is None else skip for t in range(frames)] for k in range(len(space))]


def _videoiq_count(model: nn.Module, by_module: dict[str, int], actions: Tensor) -> float:
    """Everything the path runs (policy with its resize, backbone), quantised layers at min(b²/64, 1)."""
    from searchlab.flops import bit_rate
    from searchlab.models.quant import QuantConv2d, QuantLinear

    bits = {model.decision_space[int(k)] for k in actions.argmax(-1).flatten()} - {0}
    assert len(bits) <= 1, "one precision per clip"
    total = float(by_module[""])
    for b in bits:
        for name, module in model.backbone.named_modules():
            if isinstance(module, QuantConv2d | QuantLinear):
                total += (bit_rate(b) - 1.0) * by_module.get(f"model.backbone.{name}", 0)
    return total / 1e9


def _videoiq_price(config: TrialConfig, model: nn.Module) -> Callable[[Tensor], np.ndarray]:
    from searchlab.methods.videoiq.evaluate import videoiq_costs, videoiq_price

    costs = videoiq_costs(model, backbone=config.model.backbone, size=config.data.crop_size)
    price = videoiq_price(costs, decision_space=model.decision_space)
    return lambda actions: price(actions)["gflops"]


def _arnet_build(config: TrialConfig, num_classes: int) -> nn.Module:
    from searchlab.methods.arnet import build_model

    return build_model(config.arnet, num_classes=num_classes)


def _arnet_decisions(model: nn.Module, frames: int) -> list[list[int]]:
    """Clip a starts with action a (never inside a skip window), then the following actions in turn."""
    actions = model.layout.num_actions
    return [[(a + t) % actions for t in range(frames)] for a in range(actions)]


def _arnet_count(model: nn.Module, by_module: dict[str, int], actions: Tensor) -> float:
    """The backbones that ran (each on its frames at its resolution), the head, and the policy's modules
    on every frame; the resize and pooling glue between them is not charged (searchlab.methods.arnet.costs)."""
    names = [f"model.backbones.{i}" for i in range(len(model.backbones))] + ["model.head"]
    names += [f"model.policy.{part}" for part in ("features", "lstm", "fc")]
    return sum(by_module.get(name, 0) for name in names) / 1e9


def _arnet_price(config: TrialConfig, model: nn.Module) -> Callable[[Tensor], np.ndarray]:
    from searchlab.methods.arnet.costs import arnet_costs
    from searchlab.methods.arnet.evaluate import arnet_price

    price = arnet_price(arnet_costs(model))
    return lambda actions: price(actions)["gflops"]


class _Infer(nn.Module):
    def __init__(self, model: nn.Module, mode: str | None = "argmax") -> None:
        super().__init__()
        self.model, self.mode = model, mode

    def forward(self, frames: Tensor) -> Any:
        # the decisions too: a traced graph keeps only what its outputs depend on (an all-skipped clip's
        # logits do not depend on the policy)
        return self.model.infer(frames) if self.mode is None else self.model.infer(frames, mode=self.mode)


def _inference_macs(model: nn.Module, clip: Tensor, forced: Tensor) -> tuple[dict[str, int], Tensor]:
    """fvcore's per-module MACs of ``model.infer(clip)`` (argmax) whose policy takes ``forced``, and the
    actions taken. The decisions are forced at the policy's output (its fc), so the path traced is the
    real one, policy included (``infer(actions=...)`` would skip, or dead-code away, the policy)."""
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import elementwise_flop_counter

    from searchlab.flops import _IGNORED_OPS

    step = [0]

    def force(module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
        logits = forced[:, step[0]] * 1e3
        step[0] += 1
        return output * 0 + logits

    handle = model.policy.fc.register_forward_hook(force)
    try:
        with torch.no_grad():
            taken = model.infer(clip, mode="argmax")[1]
            step[0] = 0
            analysis = FlopCountAnalysis(_Infer(model), (clip,))
            # searchlab.flops' conventions: the same ops left uncounted, its price of the policy's resize
            analysis.set_op_handle(**dict.fromkeys(_IGNORED_OPS))
            analysis.set_op_handle("aten::_upsample_bilinear2d_aa", elementwise_flop_counter(0, 4))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            by_module = dict(analysis.by_module())
    finally:
        handle.remove()
    return by_module, taken


#: (label, fvcore's count, the cost model's price) of one clip, in GFLOPs, per decision tried.
Pairs = Iterator[tuple[str, float, float]]


def _policy_pairs(case: InferenceCount, config: TrialConfig) -> Pairs:
    """A policy method: the policy forced to each decision sequence of ``case.decisions`` (covering
    every action), the traced path counted by ``case.count``, the decisions priced by ``case.price``."""
    torch.manual_seed(0)
    model = case.build(config, 4).eval()
    price = case.price(config, model)
    frames, size = config.data.frames, config.data.crop_size
    seen: set[int] = set()
    for decisions in case.decisions(model, frames):
        clip = torch.randn(1, frames, 3, size, size)
        forced = nn.functional.one_hot(torch.tensor([decisions]), model.policy.num_actions).float()
        by_module, taken = _inference_macs(model, clip, forced)
        # the forced policy took the decisions a replay of them takes (skip windows applied)
        assert torch.equal(taken, model.infer(clip, actions=forced)[1]), decisions
        seen |= set(taken.argmax(-1).flatten().tolist())
        priced = price(taken)
        assert priced.shape == (1,)
        yield str(decisions), case.count(model, by_module, taken), float(priced[0])
    assert seen == set(range(model.policy.num_actions)), "the decisions cover every action"


def _fixed_gate(v_t: Tensor, v_c: Tensor) -> Callable[..., tuple[Tensor, Tensor]]:
    """A forward hook setting a gate's weights; ``* 0 +`` keeps the gate in the traced graph (it runs)."""
    return lambda module, inputs, output: (output[0] * 0 + v_t, output[1] * 0 + v_c)


def _vared_pairs(config: TrialConfig) -> Pairs:
    """VA-RED²: the gates' weights set at their outputs to patterns that switch alternatives off (layer l
    of trial k takes pattern (k + l) mod 4), so each layer's largest computed alternative and its cheap
    ops vary; the traced inference path, gates included, counted by fvcore whole, priced by the cost
    model from the weights ``infer`` reports."""
    from searchlab.flops import _macs_by_module
    from searchlab.methods.vared.build import build_network
    from searchlab.methods.vared.costs import vared_costs
    from searchlab.methods.vared.evaluate import vared_price

    torch.manual_seed(0)
    frames, size = config.data.frames, config.data.crop_size
    network = build_network(config.vared, num_classes=4, frames=frames, size=size).eval()
    price = vared_price(vared_costs(network))
    gates = [layer.gate for _, layer in network.gated_layers()]
    patterns = [(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 1.0])), (torch.tensor([0.0, 0.7]), torch.tensor([0.0, 0.4])),
                (torch.tensor([0.3, 0.0]), torch.tensor([0.0, 0.9])), (torch.tensor([0.0, 0.5]), torch.tensor([0.6, 0.2]))]
    for trial in range(len(patterns)):
        handles = [gate.register_forward_hook(_fixed_gate(*patterns[(trial + layer) % len(patterns)]))
                   for layer, gate in enumerate(gates)]
        try:
            clip = torch.randn(1, frames, 3, size, size)
            with torch.no_grad():
                decisions = network.infer(clip)[1]
                counted = _macs_by_module(_Infer(network, mode=None), (clip,))[""] / 1e9
        finally:
            for handle in handles:
                handle.remove()
        yield f"pattern {trial}", counted, float(price(decisions)["gflops"][0])


COUNTS: dict[str, Callable[[TrialConfig], Pairs]] = {
    "videoiq": lambda config: _policy_pairs(InferenceCount(_videoiq_build, _videoiq_decisions, _videoiq_count,
                                                           _videoiq_price), config),
    "arnet": lambda config: _policy_pairs(InferenceCount(_arnet_build, _arnet_decisions, _arnet_count, _arnet_price),
                                          config),
    "vared": _vared_pairs,
}


@pytest.mark.parametrize("name", METHODS)
def test_the_cost_model_counts_what_the_inference_path_runs(name: str) -> None:
    pairs = list(COUNTS[name](tiny_config(name)))
    assert pairs
    for label, counted, priced in pairs:
        assert priced == pytest.approx(counted, rel=1e-9, abs=0), label


# --- 5. a bundle round-trips ---------------------------------------------------------------------------


def _write_bundle(chain: Chain, folder: Path) -> dict[str, Any]:
    """The bundle searchlab.pick exports for the chain's trial; returns its card."""
    from searchlab.pick import card_markdown
    from searchlab.run_dir import portable_config_yaml

    folder.mkdir()
    for file, (stage, source) in chain.method.bundle.files.items():
        artifact = chain.artifacts[stage]
        assert isinstance(artifact, Path), f"bundle file {file} comes from the fanned-out stage {stage}"
        shutil.copyfile(artifact / source, folder / file)
    tree = chain.config.model_dump(mode="json")
    metrics = chain.metrics
    card = {
        "source": {"run": "contract", "trial_id": "t0", "number": 0}, "method": chain.method.name,
        "accuracy": metrics["accuracy"], "accuracy_metric": "top-1", "gflops_mean": metrics["gflops"],
        "gflops_p5": metrics["gflops_p5"], "gflops_p95": metrics["gflops_p95"], "memory_mb": metrics["memory_mb"],
        "skip_fraction": metrics["skip_fraction"], "action_usage": metrics["usage"], "params": {},
    }
    (folder / "config.yaml").write_text(portable_config_yaml(tree))
    (folder / "classes.json").write_text(json.dumps(list(chain.manifest.class_names)))
    (folder / "card.json").write_text(json.dumps(card, indent=2))
    (folder / "card.md").write_text(card_markdown(card, tree))
    return card


def _one_hot_per_frame(decisions: Tensor, *, frames: int, actions: int) -> None:
    assert decisions.shape == (1, frames, actions)
    assert torch.equal(decisions.sum(-1), torch.ones(1, frames)) and set(decisions.unique().tolist()) <= {0.0, 1.0}


def _gate_weights(decisions: Any, *, frames: int, actions: int) -> None:
    """VA-RED²: gate weights in [0, 1) per gated layer, each dimension with a non-zero weight (the
    default zero-gate rule), one usage entry per (temporal, channel) pair."""
    temporal, channel = decisions
    assert temporal.shape[:2] == channel.shape[:2] and temporal.shape[2] * channel.shape[2] == actions
    for weights in (temporal, channel):
        assert ((weights >= 0) & (weights <= 1)).all() and (weights > 0).any(dim=2).all()


#: Per method: the check of what its bundle's ``predict`` returns beside the probabilities.
DECISIONS: dict[str, Callable[..., None]] = {"videoiq": _one_hot_per_frame, "arnet": _one_hot_per_frame,
                                             "vared": _gate_weights}


@pytest.mark.parametrize("name", METHODS)
def test_a_bundle_round_trips_and_reproduces_the_recorded_metrics(name: str, chains, tmp_path) -> None:
    from searchlab.deploy import load
    from searchlab.train.evaluate import eval_dataset, uses_map

    chain = chains(name)
    card = _write_bundle(chain, tmp_path / "bundle")
    deployed = load(tmp_path / "bundle")
    assert deployed.config.method == name and deployed.card == card
    assert tuple(deployed.class_names) == tuple(chain.manifest.class_names)

    data = deployed.config.data
    torch.manual_seed(0)
    probabilities, actions = deployed.predict(torch.randn(1, data.frames, 3, data.crop_size, data.crop_size))
    assert probabilities.shape == (1, len(deployed.class_names)) and (probabilities >= 0).all()
    assert float(probabilities.sum()) == pytest.approx(1.0, abs=1e-5)
    recorded = chain.metrics
    DECISIONS[name](actions, frames=data.frames, actions=len(recorded["usage"]))

    dataset = eval_dataset(data, manifest=chain.manifest, root=chain.root, split="val", seed=deployed.config.seed)
    measured = chain.method.bundle.measure(
        deployed, dataset, device=torch.device("cpu"), loader_workers=0,
        multi_label=uses_map(data.metric, manifest_multi_label=chain.manifest.multi_label))
    for key in ("accuracy", "gflops"):
        assert measured[key] == pytest.approx(recorded[key], rel=0, abs=1e-9), key
    assert set(CONTRACT) <= set(measured)
    assert json.loads(json.dumps({k: measured[k] for k in CONTRACT})) == {k: recorded[k] for k in CONTRACT}


@pytest.mark.parametrize("name", METHODS)
def test_the_curve_trades_cost_for_accuracy_and_its_bundles_reproduce_each_point(name: str, chains, tmp_path) -> None:
    """The operating-point knob (inference.cost_bias): 0 is the trained network (the recorded
    figures), a large λ makes every decision the cheapest, a large negative one the costliest, and a
    bundle exported at a point measures that point again exactly."""
    from searchlab.curve import COST_BIAS, curve_points
    from searchlab.deploy import load
    from searchlab.train.evaluate import eval_dataset, uses_map

    chain = chains(name)
    cheapest, costliest = 100.0, -100.0
    points = {p["cost_bias"]: p for p in curve_points(chain.method, chain.config, artifacts=chain.artifacts,
                                                      cost_biases=[0.0, cheapest, costliest],
                                                      device=torch.device("cpu"), loader_workers=0)}
    recorded = chain.metrics
    assert points[0.0]["accuracy"] == pytest.approx(recorded["accuracy"], rel=0, abs=1e-9)
    assert points[0.0]["gflops"] == pytest.approx(recorded["gflops"], rel=0, abs=1e-9)
    assert points[cheapest]["gflops"] <= points[0.0]["gflops"] <= points[costliest]["gflops"]
    assert points[cheapest]["gflops"] < points[costliest]["gflops"]

    chain_at_point = Chain(config=chain.config.with_overrides({COST_BIAS: cheapest}), method=chain.method,
                           artifacts=chain.artifacts, runs=chain.runs, manifest=chain.manifest, root=chain.root)
    _write_bundle(chain_at_point, tmp_path / "bundle")
    deployed = load(tmp_path / "bundle")
    assert deployed.config.inference.cost_bias == cheapest
    data = deployed.config.data
    dataset = eval_dataset(data, manifest=chain.manifest, root=chain.root, split="val", seed=deployed.config.seed)
    measured = chain.method.bundle.measure(
        deployed, dataset, device=torch.device("cpu"), loader_workers=0,
        multi_label=uses_map(data.metric, manifest_multi_label=chain.manifest.multi_label))
    assert json.loads(json.dumps({k: measured[k] for k in CONTRACT})) == \
        json.loads(json.dumps({k: points[cheapest][k] for k in CONTRACT}))
