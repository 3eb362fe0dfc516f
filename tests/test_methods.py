"""The method contract: registry, stage declarations, and keys derived from them."""

from __future__ import annotations

import dataclasses

import pytest

from searchlab.methods import Method, Stage, get_method, list_methods, stage_keys


def _tree() -> dict:
    return {"data": {"frames": 8, "loader_workers": 2}, "model": {"backbone": "resnet10", "bits": [32, 2]},
            "stage2": {"w1": 0.2}, "seed": 0}


def _noop(config, inputs, target) -> None:  # a build step that writes nothing; keys never run it
    return None


def _method(*stages: Stage) -> Method:
    return Method(name="toy", description="two stages", stages=stages, baselines=lambda artifacts, keys: [])


A = Stage(name="a", needs=(), depends_on=("data", "model.backbone"), ignores=("data.loader_workers",), shared=True,
          build=_noop)
B = Stage(name="b", needs=("a",), depends_on=("stage2",), shared=False, build=_noop)


def test_videoiq_is_registered_with_its_stages_in_running_order() -> None:
    assert "videoiq" in list_methods() and list_methods("video*") == ["videoiq"]
    assert [stage.name for stage in get_method("videoiq").stages] == ["teacher", "stage1", "outputs", "stage2"]
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
