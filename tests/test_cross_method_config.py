"""Cross-method sweep files: `methods:` gives each method its own sections, `space.method` searches the
method, and each method's keys form their own conditional sub-space (config, Optuna, plan, snapshot).

Loaded the way `python -m searchlab.sweep FILE --dry-run` loads them; Optuna runs for real (an
in-memory study, ask/tell), no mocks.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from searchlab import sweep as sweep_cli
from searchlab.config import ConfigError, load_sweep, load_trial_config, parse_sweep
from searchlab.methods import get_method, stage_keys
from searchlab.plan import describe_plan, shared_stage_keys
from searchlab.run_dir import read_sweep_snapshot, write_sweep_snapshot
from searchlab.space import decode_params, encode_point, make_sampler, suggest

REPO = Path(__file__).resolve().parents[1]
DEMO_ALL = REPO / "spaces" / "demo-all.yaml"


def demo_all_tree() -> dict[str, Any]:
    return yaml.safe_load(DEMO_ALL.read_text())


def problems_of(tree: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as error:
        parse_sweep(tree, source="cross.yaml")
    return "\n".join(error.value.problems)


def test_each_methods_trials_start_from_the_shared_keys_and_their_own_sections() -> None:
    sweep = load_sweep(DEMO_ALL)
    assert sweep.cross_method and sweep.method_names == ["videoiq", "arnet", "vared"]
    videoiq = sweep.trial_config({"method": "videoiq", "stage2.w1": 1.5})
    arnet = sweep.trial_config({"method": "arnet", "arnet.w_eff": 2.0})
    vared = sweep.trial_config({"method": "vared", "vared.lambda_e": 3.0})
    assert (vared.method, vared.vared.lambda_e, vared.vared.backbone, vared.arnet) == ("vared", 3.0, "resnet10", None)
    assert (videoiq.method, videoiq.stage2.w1, videoiq.model.backbone, videoiq.arnet) == ("videoiq", 1.5, "resnet10", None)
    assert (arnet.method, arnet.arnet.w_eff, arnet.arnet.resolutions) == ("arnet", 2.0, (56, 32))
    defaults = type(arnet)(data=arnet.data)  # an AR-Net trial carries none of VideoIQ's settings
    assert (arnet.model, arnet.stage2) == (defaults.model, defaults.stage2)
    assert videoiq.data == arnet.data == sweep.base.data and videoiq.name == arnet.name == "demo-all"
    with pytest.raises(KeyError, match="not searched by this sweep"):
        sweep.trial_config({"method": "nope"})


@pytest.mark.parametrize("method", ["videoiq", "arnet", "vared"])
def test_a_methods_trials_share_the_stage_keys_of_its_single_method_sweep(method: str) -> None:
    """The same sections alone in a single-method file give the same configuration, so the same cache keys:
    a cross-method sweep reuses the stages a single-method sweep trained (and the other way round)."""
    tree = demo_all_tree()
    single = {**tree, "base": {**tree["base"], **tree["methods"][method], "method": method}, "space": {},
              "search": {**tree["search"], "points_to_evaluate": []}}
    del single["methods"]
    cross = load_sweep(DEMO_ALL).method_base(method)
    alone = parse_sweep(single, source="single.yaml").base
    declared = get_method(method)
    keys = [stage_keys(declared, config.model_dump(mode="json"), data_fingerprint="data") for config in (cross, alone)]
    assert cross == alone and keys[0] == keys[1]


def test_single_method_sweeps_read_as_before() -> None:
    sweep = load_sweep(REPO / "spaces" / "demo-arnet.yaml")
    assert not sweep.cross_method and sweep.method_names == ["arnet"]
    assert sweep.trial_config({"arnet.w_eff": 2.0}) == sweep.base.with_overrides({"arnet.w_eff": 2.0})


def test_every_layout_mistake_is_reported_at_once_naming_the_fix(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    tree = demo_all_tree()
    tree["base"]["method"] = "arnet"
    tree["base"]["stage2"] = {"w1": 0.3}
    tree["methods"]["arnet"]["stage2"] = {"w1": 0.3}
    tree["methods"]["arnet"]["arnet"]["w_eff"] = -1.0
    tree["methods"]["foo"] = {}
    tree["space"]["method"]["choice"].append("bar")
    tree["space"]["arnet.lambda_u"].pop("when")
    tree["space"]["arnet.skips"]["when"] = {"method": "videoiq"}
    tree["search"]["points_to_evaluate"].append({"arnet.w_eff": 1.0})
    last = len(tree["search"]["points_to_evaluate"]) - 1
    expected = [
        "base.method: in a cross-method sweep space.method chooses the method; remove base.method",
        "base.stage2: a section of method videoiq; in a cross-method sweep it goes under methods.videoiq.stage2",
        "methods.arnet.stage2: not a section of arnet (its sections: arnet)",
        "methods.arnet.arnet.w_eff: -1.0 is out of range",
        "methods.foo: unknown method; registered: videoiq, arnet, vared",
        "space.method: choice 'bar' has no sections under methods; add methods.bar",
        "methods.foo: never used, 'foo' is not among space.method's choices",
        "space.arnet.lambda_u: a key of arnet's own section, searched in a cross-method sweep on no condition on the "
        "method; add when: {method: arnet}",
        "space.arnet.skips: a key of arnet's own section, searched when method is 'videoiq'; use when: {method: arnet}",
        f"search.points_to_evaluate[{last}]: sets arnet.w_eff of a method's own section without naming the method; add "
        "method: arnet to the point",
    ]
    problems = problems_of(tree)
    assert [fragment for fragment in expected if fragment not in problems] == [], problems
    path = tmp_path / "cross.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    assert sweep_cli.main([str(path), "--dry-run"]) == 2  # the CLI: every problem, exit 2
    err = capsys.readouterr().err
    assert all(fragment in err for fragment in expected[:3])


def test_the_method_is_searched_only_with_each_methods_sections() -> None:
    tree = demo_all_tree()
    del tree["space"]["method"]
    assert "a cross-method sweep (methods: given) searches the method: add space.method: {choice: " \
           "['videoiq', 'arnet', 'vared']}" in problems_of(tree)
    single = yaml.safe_load((REPO / "spaces" / "demo.yaml").read_text())
    single["space"]["method"] = {"choice": ["videoiq", "arnet"]}
    assert "space.method: searching the method needs each method's own sections under a top-level methods: " \
           "mapping" in problems_of(single)


def test_a_methods_invalid_starting_point_and_range_end_name_the_method_sub_space() -> None:
    tree = demo_all_tree()
    tree["space"]["stage2.decision_space"]["choice"].append([4, 2, 0])  # without the top bit-width
    tree["search"]["points_to_evaluate"][1]["stage2.w1"] = 0.5  # an AR-Net point: VideoIQ's w1 would be dropped
    problems = problems_of(tree)
    assert "space.stage2.decision_space: choice [4, 2, 0] gives an invalid trial" in problems
    assert "search.points_to_evaluate[1].stage2.w1: would be dropped: its condition method = 'videoiq' does not " \
           "hold for this point (method is 'arnet')" in problems


def test_optuna_searches_the_method_and_only_its_own_sub_space() -> None:
    sweep = load_sweep(DEMO_ALL)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(sweep.search, sweep.space))
    for point in sweep.search.points_to_evaluate:
        study.enqueue_trial(encode_point(point, sweep.space))
    space = functools.partial(suggest, space=sweep.space, base=sweep.base, bases=sweep.method_bases())
    own = {"videoiq": {"stage2.w1", "stage2.decision_space"}, "arnet": {"arnet.w_eff", "arnet.lambda_u", "arnet.skips"},
           "vared": {"vared.lambda_e", "vared.finetune_stage.lr"}}
    seen = set()
    for number in range(12):
        trial = study.ask()
        params = space(trial)
        assert set(params) == {"method"} | own[params["method"]], params  # the conditional sub-space
        assert decode_params(trial.params, sweep.space) == params
        config = sweep.trial_config(params)  # every sampled trial is a valid configuration of its method
        assert config.method == params["method"]
        if number < len(sweep.search.points_to_evaluate):  # the starting points name their method
            assert params["method"] == sweep.search.points_to_evaluate[number]["method"]
        seen.add(params["method"])
        study.tell(trial, [0.5 + 0.01 * number, 1.0 - 0.01 * number])
    assert seen == {"videoiq", "arnet", "vared"}
    assert study.trials[1].params["method"] == "arnet" and "arnet.w_eff" in study.trials[1].distributions


def test_the_plan_and_the_snapshot_hold_every_methods_base(tmp_path: Path) -> None:
    sweep = load_sweep(DEMO_ALL)
    plan = describe_plan(sweep, run_dir=tmp_path / "demo-all")
    assert "methods         videoiq, arnet, vared" in plan and "stage graph     teacher -> stage1" in plan
    assert "stage graph     backbone (per item of" in plan
    assert shared_stage_keys(sweep, method="videoiq") == {"teacher": [], "stage1": [], "outputs": []}
    assert shared_stage_keys(sweep, method="arnet") == {"backbone": []}
    assert shared_stage_keys(sweep, method="vared") == {"base": [], "dynamic": []}
    searched = copy.deepcopy(demo_all_tree())
    searched["space"]["arnet.resolutions"] = {"choice": [[56, 32], [48, 32]], "when": {"method": "arnet"}}
    assert shared_stage_keys(parse_sweep(searched, source="x"), method="arnet") == {"backbone": ["arnet.resolutions"]}
    write_sweep_snapshot(tmp_path, sweep)
    assert read_sweep_snapshot(tmp_path).method_bases() == sweep.method_bases()


def test_the_train_cli_config_of_a_cross_method_file_names_the_method() -> None:
    with pytest.raises(ConfigError, match="say which method's configuration with method=NAME"):
        load_trial_config(DEMO_ALL)
    assert load_trial_config(DEMO_ALL, {"method": "arnet", "arnet.w_eff": 3.0}).arnet.w_eff == 3.0
