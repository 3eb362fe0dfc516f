"""The method contract: registry, stage declarations, and keys derived from them."""

from __future__ import annotations

import dataclasses

import pytest

from searchlab.config import METHOD_SECTIONS
from searchlab.methods import Bundle, FanOut, Method, Stage, get_method, list_methods, stage_keys


def _tree() -> dict:
    return {"data": {"frames": 8, "loader_workers": 2}, "model": {"backbone": "resnet10", "bits": [32, 2]},
            "stage2": {"w1": 0.2}, "seed": 0}


def _noop(config, inputs, target) -> None:  # a build step that writes nothing; keys never run it
    return None


def _method(*stages: Stage) -> Method:
    nothing = Bundle(files={}, load=_noop, measure=_noop, measure_curve=_noop, card_rows=lambda config: [])
    return Method(name="toy", description="two stages", stages=stages, baselines=lambda artifacts, keys: [],
                  bundle=nothing, describe=lambda config: [])


A = Stage(name="a", needs=(), depends_on=("data", "model.backbone"), ignores=("data.loader_workers",), shared=True,
          build=_noop)
B = Stage(name="b", needs=("a",), depends_on=("stage2",), shared=False, build=_noop)


def test_the_methods_are_registered_with_their_stages_in_running_order() -> None:
    assert list_methods() == ["arnet", "vared", "videoiq"] and list_methods("v*") == ["vared", "videoiq"]
    assert [stage.name for stage in get_method("videoiq").stages] == ["teacher", "stage1", "outputs", "stage2"]
    assert [stage.name for stage in get_method("arnet").stages] == ["backbone", "joint", "finetune"]
    assert [stage.name for stage in get_method("vared").stages] == ["base", "dynamic", "finetune"]
    # the configuration has a section for every registered method, and no other
    assert sorted(METHOD_SECTIONS) == list_methods()
    with pytest.raises(KeyError, match="unknown method 'nope'; registered: .*videoiq"):
        get_method("nope")


def test_a_key_changes_exactly_with_the_declared_fields_and_what_the_stage_needs() -> None:
    method = _method(A, B)
    keys = stage_keys(method, _tree(), data_fingerprint="d1")
    changed = _tree()
    changed["data"]["loader_workers"] = 8  # ignored: how many processes read the data
    changed["model"]["bits"] = [32, 4]  # not declared by a
    assert stage_keys(method, changed, data_fingerprint="d1")["a"] == keys["a"]
    changed["model"]["backbone"] = "resnet18"
    after = stage_keys(method, changed, data_fingerprint="d1")
    assert after["a"] != keys["a"] and after["b"] != keys["b"]  # b needs a: a's change reaches it
    assert stage_keys(method, _tree(), data_fingerprint="d2")["a"] != keys["a"]  # other data


def test_a_new_artifact_format_is_a_new_key() -> None:
    before = stage_keys(_method(A, B), _tree(), data_fingerprint="d")
    after = stage_keys(_method(dataclasses.replace(A, version=2), B), _tree(), data_fingerprint="d")
    assert after["a"] != before["a"] and after["b"] != before["b"]


def test_declarations_are_checked_when_a_method_is_made() -> None:
    with pytest.raises(ValueError, match="needs \\['a'\\], which are not declared before it"):
        _method(B, A)
    with pytest.raises(ValueError, match="give loop and loop_config, or build"):
        Stage(name="c", needs=(), depends_on=(), shared=True)
    with pytest.raises(KeyError, match="declared key 'model.width' is not in the trial configuration"):
        stage_keys(_method(dataclasses.replace(A, depends_on=("model.width",))), _tree(), data_fingerprint="d")


def test_a_fanned_out_stage_has_a_key_per_item_each_changing_only_with_its_item() -> None:
    tree = {**_tree(), "arnet": {"resolutions": [56, 32], "backbones": ["resnet18", "resnet10"], "pretrained": []}}
    fan = Stage(name="f", needs=(), depends_on=("data",), shared=True, build=_noop,
                fan_out=FanOut(over=("arnet.resolutions", "arnet.backbones", "arnet.pretrained")))
    after = Stage(name="g", needs=("f",), depends_on=(), shared=False, build=_noop)
    keys = stage_keys(_method(fan, after), tree, data_fingerprint="d")
    assert len(keys["f"]) == 2 and len(set(keys["f"])) == 2
    # a third resolution adds one item and keeps the other two (their backbones are reused)
    more = {**tree, "arnet": {"resolutions": [56, 44, 32], "backbones": ["resnet18", "resnet10", "resnet10"],
                              "pretrained": []}}
    grown = stage_keys(_method(fan, after), more, data_fingerprint="d")
    assert grown["f"][0] == keys["f"][0] and grown["f"][2] == keys["f"][1] and grown["f"][1] not in keys["f"]
    assert grown["g"] != keys["g"]
    uneven = {**tree, "arnet": {**tree["arnet"], "backbones": ["resnet18"]}}
    with pytest.raises(ValueError, match="unequal length"):
        stage_keys(_method(fan, after), uneven, data_fingerprint="d")
    with pytest.raises(ValueError, match="a fanned-out stage is shared"):
        dataclasses.replace(fan, shared=False)


@pytest.mark.parametrize("module", ["searchlab.methods.arnet.config", "searchlab.methods.arnet.method",
                                    "searchlab.methods.videoiq.method", "searchlab.deploy", "searchlab.config"])
def test_each_entry_point_imports_first_in_a_fresh_process(module: str) -> None:
    """The configuration imports a method's section and the method imports the configuration:
    whichever a process meets first (Ray unpickles an ARNetConfig first), neither may be half-made."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, capture_output=True)
