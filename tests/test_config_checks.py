"""Load-time checks of sweep files: every problem a run would meet is reported by load_sweep, at once.

Each bad input is written to a YAML file and loaded the way `python -m searchlab.sweep FILE --dry-run`
loads it; the ConfigError must name the key, the bad value and the fix.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from searchlab.config import ConfigError, TemperatureConfig, TemperatureKind, TrialConfig, load_sweep
from searchlab.models.temperature import KINDS, PER, TemperatureSchedule

REPO = Path(__file__).resolve().parents[1]


def demo_tree() -> dict[str, Any]:
    return yaml.safe_load((REPO / "spaces" / "demo.yaml").read_text())


def problems_of(tmp_path: Path, tree: dict[str, Any]) -> list[str]:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    with pytest.raises(ConfigError) as error:
        load_sweep(path)
    return error.value.problems


def assert_reported(problems: list[str], *fragments: str) -> None:
    text = "\n".join(problems)
    missing = [fragment for fragment in fragments if fragment not in text]
    assert not missing, f"not reported: {missing}\nreported:\n{text}"


# ---------------------------------------------------------------------------------------------
# stage2.temperature


def test_temperature_section_lists_every_problem_of_the_schedule(tmp_path: Path) -> None:
    tree = demo_tree()
    tree["base"]["stage2"]["temperature"] = {"kind": "linear", "tau0": -1.0, "rate": 0.9, "per": "step"}
    problems = problems_of(tmp_path, tree)
    assert_reported(
        problems,
        "base.stage2.temperature: kind 'linear' needs 'tau_end'; add it",
        "base.stage2.temperature: 'rate' is not a parameter of kind 'linear'; remove it",
        "base.stage2.temperature: unknown per 'step'; choose one of ['epoch', 'iteration']",
        "base.stage2.temperature: tau0=-1.0 must be > 0",
    )
    assert len(problems) == 4  # one line each


def test_temperature_section_rejects_unknown_kinds_and_keys(tmp_path: Path) -> None:
    tree = demo_tree()
    tree["base"]["stage2"]["temperature"] = {"kind": "expo", "tau0": 5.0, "rate": 1.5, "speed": 2}
    assert_reported(
        problems_of(tmp_path, tree),
        "unknown kind 'expo'; choose one of ['constant', 'cosine', 'exponential', 'linear']",
        "unknown key 'speed'",
        "rate=1.5 must lie in (0, 1]",
    )
    tree["base"]["stage2"]["temperature"] = "exponential"
    assert_reported(problems_of(tmp_path, tree), "base.stage2.temperature: a temperature schedule must be a mapping")


def test_temperature_section_reads_as_the_mapping_the_schedule_takes() -> None:
    sweep = load_sweep(REPO / "spaces" / "anet.yaml")
    section = sweep.base.stage2.temperature
    assert isinstance(section, TemperatureConfig)
    assert dict(section) == {"kind": "exponential", "tau0": 5.0, "rate": 0.956, "per": "epoch"}
    assert TemperatureSchedule.from_dict(section) == TemperatureSchedule()  # what stage 2 builds
    linear = TemperatureConfig.model_validate({"kind": "linear", "tau0": 5, "tau_end": 0.5, "per": "iteration"})
    assert dict(linear) == {"kind": "linear", "tau0": 5.0, "tau_end": 0.5, "per": "iteration"}
    assert TemperatureSchedule.from_dict(linear).value(epoch=1, total_epochs=2, iterations_per_epoch=1) == 0.5
    default = TrialConfig.model_validate({"data": {"manifest": "m.parquet"}}).stage2.temperature
    assert dict(default) == TemperatureSchedule().to_dict()  # the official VideoIQ schedule
    assert sweep.model_validate_json(sweep.model_dump_json()) == sweep  # what a trial process receives
    assert sweep.base.model_dump()["stage2"]["temperature"] == dict(section)


def test_searched_temperature_parameters_are_validated_like_the_section() -> None:
    base = load_sweep(REPO / "spaces" / "anet.yaml").base
    assert base.with_overrides({"stage2.temperature.rate": 0.93}).stage2.temperature["rate"] == 0.93
    with pytest.raises(ConfigError, match=r"stage2.temperature: rate=1.2 must lie in \(0, 1\]"):
        base.with_overrides({"stage2.temperature.rate": 1.2})


def test_typed_kinds_match_the_schedules() -> None:
    assert set(typing.get_args(TemperatureKind)) == set(KINDS)
    assert set(typing.get_args(TemperatureConfig.model_fields["per"].annotation)) == set(PER)


# ---------------------------------------------------------------------------------------------
# The file itself, numbers, limits


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"base:\n  name: caf\xe9\n", "not UTF-8 text: byte 0xe9 on line 2 cannot be decoded; save the file as UTF-8"),
        (b"", "the file is empty; a sweep file is a mapping with base, search, space, storage"),
        (b"- base\n- search\n", "the top level is a list; a sweep file is a mapping"),
        (b"just text\n", "the top level is a str; a sweep file is a mapping"),
        (b"base: [unclosed\n", "not valid YAML"),
        (b"base: {}\n---\nbase: {}\n", "not valid YAML"),
    ],
    ids=["latin-1", "empty", "list", "text", "unclosed", "two-documents"],
)
def test_unreadable_files_are_config_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        load_sweep(path)
    assert message in error.value.problems[0] and error.value.source == str(path)


def test_a_directory_is_not_a_sweep_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_sweep(tmp_path)


def test_repeated_keys_are_reported_with_the_other_problems(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    text = (REPO / "spaces" / "demo.yaml").read_text()
    text = text.replace("    w1: 0.21\n", "    w1: 0.21\n    w1: 0.5\n").replace("  seed: 0\n  data:", "  seed: -1\n  data:")
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_sweep(path)
    assert_reported(error.value.problems, "key 'w1' repeats the one on line", "YAML would keep only the last",
                    "base.seed: -1 is out of range; use a value >= 0")


def test_yaml_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    tree_text = (REPO / "spaces" / "demo.yaml").read_text().replace(
        "  teacher: {epochs: 4, lr: 0.05, batch_size: 16, policy_epochs: 8}",
        "  teacher: &optim {epochs: 4, lr: 0.05, batch_size: 16, policy_epochs: 8}",
    ).replace("  stage1:\n    epochs: 3\n", "  stage1:\n    <<: *optim\n    policy_epochs: null\n    epochs: 3\n")
    path = tmp_path / "sweep.yaml"
    path.write_text(tree_text)
    with pytest.raises(ConfigError) as error:  # policy_epochs is not a stage-1 key, but no repeat is claimed
        load_sweep(path)
    assert not any("repeats" in p for p in error.value.problems)


def test_non_finite_numbers_anywhere_are_reported_once_each(tmp_path: Path) -> None:
    tree = demo_tree()
    tree["base"]["stage2"]["w1"] = float("nan")
    tree["base"]["data"]["crop_size"] = float("inf")
    tree["base"]["stage1"]["alpha"]["lr"][4] = float("-inf")
    tree["space"]["stage2.w2"] = {"uniform": [0.0, float("inf")]}
    problems = problems_of(tmp_path, tree)  # yaml.safe_dump writes them as .nan / .inf / -.inf
    assert_reported(
        problems,
        "base.stage2.w1: nan is not a finite number; write a finite value",
        "base.data.crop_size: inf is not a finite number",
        "base.stage1.alpha.lr.4: -inf is not a finite number",
        "space.stage2.w2.uniform.1: inf is not a finite number",
    )
    assert len(problems) == 4


def test_a_quoted_nan_is_no_number_either() -> None:
    with pytest.raises(ConfigError, match="stage2.w1: Input should be a finite number"):
        TrialConfig.model_validate({"data": {"manifest": "m"}}).with_overrides({"stage2.w1": "nan"})


@pytest.mark.parametrize(
    ("key", "value", "limit"),
    [
        ("search.trials", 50_000, 10_000),
        ("search.max_concurrent", 5_000, 1_024),
        ("base.data.frames", 1_600, 512),
        ("base.data.crop_size", 22_400, 2_048),
        ("base.data.eval_short_side", 25_600, 2_048),
        ("base.data.eval_clips", 100, 64),
        ("base.model.policy_input_size", 8_400, 2_048),
        ("base.teacher.epochs", 100_000, 10_000),
        ("base.stage1.batch_size", 16_000, 4_096),
        ("base.stage2.epochs", 30_000, 10_000),
        ("base.stage2.cached_views", 200, 64),
        ("base.resources.workers", 4_000, 1_024),
        ("base.seed", 2**40, 2**32 - 1),
    ],
)
def test_absurd_sizes_name_their_limit(tmp_path: Path, key: str, value: int, limit: int) -> None:
    tree = demo_tree()
    *sections, last = key.split(".")
    node = tree
    for section in sections:
        node = node.setdefault(section, {})
    node[last] = value
    if last == "crop_size":  # the crop must fit the scales: raise them within their limits
        tree["base"]["data"].update(train_scale=[2000, 2048], eval_short_side=2048)
    assert_reported(problems_of(tmp_path, tree), f"{key}: {value} is above the limit {limit}; use at most {limit}")


# ---------------------------------------------------------------------------------------------
# Names looked up later, files, packages, the run directory


def test_names_are_checked_against_their_registries(tmp_path: Path) -> None:
    tree = demo_tree()
    tree["base"]["model"]["backbone"] = "resnet99"
    tree["base"]["data"]["source"] = "anet"
    tree["base"]["data"]["synthetic"].update(size=63, classes=100)
    tree["base"]["teacher"]["policy_target"] = "logits"
    assert_reported(
        problems_of(tmp_path, tree),
        "base.model.backbone: unknown backbone 'resnet99'; registered (searchlab.models.registry): resnet10, resnet18",
        "base.data.source: Input should be 'synthetic', 'activitynet',",
        "(got 'anet')",
        "base.data.synthetic: size=63: must be even (yuv420p) and >= 16",
        "base.data.synthetic: classes=100: at most",
        "base.teacher.policy_target: Input should be 'distill' or 'labels' (got 'logits')",
    )


def test_data_sources_are_the_prepare_subcommands() -> None:
    import argparse

    from searchlab.config import DataSource
    from searchlab.data.prepare import _build_parser

    parser = _build_parser()
    (subcommands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(typing.get_args(DataSource)) == set(subcommands.choices)


def test_the_reserved_run_name_is_the_cache_folder() -> None:
    from searchlab import pipeline, run_dir  # pipeline imports Ray: in this test only
    from searchlab.config import RESERVED_RUN_NAMES

    assert {pipeline.CACHE_DIR_NAME, run_dir.CACHE_DIR_NAME} <= set(RESERVED_RUN_NAMES)


@pytest.mark.parametrize("name", ["", ".", "..", "runs/demo", "a\\b", " demo", "cache"])
def test_the_run_name_must_be_a_plain_folder_name(tmp_path: Path, name: str) -> None:
    tree = demo_tree()
    tree["base"]["name"] = name
    expected = "the stage cache" if name == "cache" else "must be a plain folder name"
    assert_reported(problems_of(tmp_path, tree), f"base.name: name {name!r}", expected)


def test_a_run_directory_that_holds_the_data_is_refused(tmp_path: Path) -> None:
    tree = demo_tree()
    tree["storage"] = str(tmp_path / "runs")
    tree["base"]["name"] = "data"  # the demo's manifest lives in runs/data/synthetic/
    tree["base"]["data"]["manifest"] = str(tmp_path / "runs" / "data" / "synthetic" / "manifest.parquet")
    assert_reported(problems_of(tmp_path, tree), f"base.name 'data': the run directory {tmp_path / 'runs' / 'data'} "
                    "would hold data.manifest", "--overwrite deletes the run directory")


def test_missing_weight_files_and_unused_gpus_are_reported(tmp_path: Path) -> None:
    tree = demo_tree()
    tree["base"]["model"]["pretrained"] = str(tmp_path / "resnet10.pth")
    tree["base"]["resources"]["gpus_per_worker"] = 1
    assert_reported(
        problems_of(tmp_path, tree),
        f"base.model.pretrained: {tmp_path / 'resnet10.pth'} is not a file; put the state dict there or set pretrained: null",
        "base.resources: gpus_per_worker 1 would be ignored: use_gpu is false",
    )


def test_a_sampler_whose_package_is_missing_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from searchlab import config

    monkeypatch.setitem(config.SAMPLER_NEEDS, "nsga2", ("no_such_package_for_searchlab", "a test"))
    tree = demo_tree()
    tree["search"]["sampler"] = "nsga2"
    assert_reported(problems_of(tmp_path, tree), "search.sampler nsga2 needs no_such_package_for_searchlab (a test), "
                    "which this environment lacks")


# ---------------------------------------------------------------------------------------------
# The space: conditions, range ends, combinations, starting points


def test_condition_cycles_are_reported_at_load(tmp_path: Path) -> None:
    tree = demo_tree()
    tree["space"]["stage2.w1"]["when"] = {"stage2.w2": 0.5}
    tree["space"]["stage2.w2"]["when"] = {"stage2.w1": 0.5}
    tree["space"]["stage2.w3"]["when"] = {"stage2.w3": 0.1}
    tree["search"]["points_to_evaluate"] = []
    assert_reported(
        problems_of(tmp_path, tree),
        "space conditions form a cycle: stage2.w1 -> stage2.w2 -> stage2.w1",
        "space conditions form a cycle: stage2.w3 -> stage2.w3",
    )


def test_conditions_that_can_never_hold_are_reported(tmp_path: Path) -> None:
    tree = demo_tree()
    tree["space"]["stage2.w2"]["when"] = {"stage2.decision_space": [32, 8, 0]}  # not a choice
    tree["space"]["stage2.w3"]["when"] = {"model.backbone": "resnet50"}  # the base's is resnet10, not searched
    tree["search"]["points_to_evaluate"] = []
    assert_reported(
        problems_of(tmp_path, tree),
        "space.stage2.w2.when: stage2.decision_space never equals [32, 8, 0] ([32, 8, 0] is not among the choices",
        "space.stage2.w3.when: model.backbone is not searched and is 'resnet10' in base, never 'resnet50'",
    )


def test_range_ends_must_give_valid_trials(tmp_path: Path) -> None:
    tree = demo_tree()
    tree["space"]["stage2.momentum"] = {"uniform": [0.5, 1.0]}  # momentum < 1
    tree["space"]["data.frames"] = {"int": [4, 600], "step": 4}  # 600 is on the grid, above the limit
    tree["space"]["stage2.lr"] = {"loguniform": [1.0e-4, 1.0e-1]}  # fine
    assert_reported(
        problems_of(tmp_path, tree),
        "space.stage2.momentum: high 1.0 gives an invalid trial: stage2.momentum: 1.0 is out of range; use a value < 1",
        "space.data.frames: high 600 gives an invalid trial: data.frames: 600 is above the limit 512",
    )


def test_searched_schedule_parameters_are_checked_at_their_ends(tmp_path: Path) -> None:
    tree = yaml.safe_load((REPO / "spaces" / "anet.yaml").read_text())
    tree["space"]["stage2.temperature.rate"] = {"uniform": [0.9, 1.2]}
    tree["search"]["points_to_evaluate"] = []
    assert_reported(problems_of(tmp_path, tree), "space.stage2.temperature.rate: high 1.2 gives an invalid trial: "
                    "stage2.temperature: rate=1.2 must lie in (0, 1]")


def crop_space_tree() -> dict[str, Any]:
    """Each entry valid alone on the base, but crop 64 with scale [56, 64] is not (crop > scale low)."""
    tree = demo_tree()
    tree["space"] = {
        "data.crop_size": {"int": [32, 64]},
        "data.train_scale": {"choice": [[64, 72], [56, 64]]},
        "stage2.w1": {"uniform": [0.0, 2.0]},
    }
    tree["search"]["points_to_evaluate"] = []
    return tree


def test_entries_that_conflict_with_each_other_are_reported(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, crop_space_tree())
    assert_reported(problems, "space: the values {'data.crop_size': 64, 'data.train_scale': [56, 64]",
                    "together give an invalid trial: data: crop_size 64 exceeds train_scale low 56",
                    "narrow these entries so that every combination is valid")
    assert len(problems) == 1  # one problem, shown once, with the first combination that met it


def test_a_conditional_entry_is_combined_only_where_it_applies(tmp_path: Path) -> None:
    tree = crop_space_tree()
    tree["space"]["data.crop_size"]["when"] = {"data.train_scale": [64, 72]}  # never with [56, 64]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    assert load_sweep(path).space["data.crop_size"].when == {"data.train_scale": [64, 72]}


def test_starting_points_outside_the_space_are_reported(tmp_path: Path) -> None:
    tree = crop_space_tree()
    tree["space"]["stage2.w2"] = {"uniform": [0.0, 1.0], "step": 0.25}
    tree["space"]["stage2.w3"] = {"uniform": [0.0, 0.2], "when": {"data.train_scale": [56, 64]}}
    tree["space"]["data.crop_size"]["when"] = {"data.train_scale": [64, 72]}
    tree["search"]["points_to_evaluate"] = [
        {"stage2.w1": 3.0, "data.crop_size": 40.5, "stage2.w2": 0.3, "data.train_scale": [64, 80], "stage2.w9": 1},
        {"data.train_scale": [64, 72], "stage2.w3": 0.1},  # w3 applies only with [56, 64]: it would be dropped
        {"stage2.w1": "high"},
    ]
    assert_reported(
        problems_of(tmp_path, tree),
        "search.points_to_evaluate[0].stage2.w1: 3.0 is not a number in [0.0, 2.0]",
        "search.points_to_evaluate[0].data.crop_size: 40.5 is not an integer",
        "search.points_to_evaluate[0].stage2.w2: 0.3 is not on the entry's grid 0.0 + k * 0.25",
        "search.points_to_evaluate[0].data.train_scale: [64, 80] is not among the choices [[64, 72], [56, 64]]",
        "search.points_to_evaluate[0].stage2.w9: not in space",
        "search.points_to_evaluate[1].stage2.w3: would be dropped: its condition data.train_scale = [56, 64] does "
        "not hold for this point (data.train_scale is [64, 72])",
        "search.points_to_evaluate[2].stage2.w1: 'high' is not a number in [0.0, 2.0]",
    )


def test_a_starting_point_must_give_a_valid_trial(tmp_path: Path) -> None:
    tree = crop_space_tree()
    tree["search"]["points_to_evaluate"] = [{"data.crop_size": 64, "data.train_scale": [56, 64]}]
    assert_reported(problems_of(tmp_path, tree), "search.points_to_evaluate[0]: gives an invalid trial: data: "
                    "crop_size 64 exceeds train_scale low 56")
    tree["space"]["data.crop_size"]["when"] = {"data.train_scale": [64, 72]}
    tree["search"]["points_to_evaluate"] = [{"data.crop_size": 64, "stage2.w1": 0.5}]  # with the base's scale
    path = tmp_path / "valid.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    assert load_sweep(path).search.points_to_evaluate == [{"data.crop_size": 64, "stage2.w1": 0.5}]


def test_every_kind_of_problem_is_reported_at_once(tmp_path: Path) -> None:
    tree = demo_tree()
    tree["base"]["name"] = "runs/demo"
    tree["base"]["model"]["backbone"] = "resnet99"
    tree["base"]["stage2"]["temperature"] = {"kind": "exponential", "tau0": 5.0}
    tree["base"]["stage2"]["w2"] = float("nan")
    tree["search"]["trials"] = 1_000_000
    tree["space"]["stage2.w1"]["when"] = {"stage2.w3": 0.1}
    tree["space"]["stage2.w3"]["when"] = {"stage2.w1": 0.1}
    tree["search"]["points_to_evaluate"][0]["stage2.decision_space"] = [32, 0, 4]
    problems = problems_of(tmp_path, tree)
    assert_reported(
        problems,
        "base.name: name 'runs/demo' must be a plain folder name",
        "base.model.backbone: unknown backbone 'resnet99'",
        "base.stage2.temperature: kind 'exponential' needs 'rate'",
        "base.stage2.w2: nan is not a finite number",
        "search.trials: 1000000 is above the limit 10000",
        "space conditions form a cycle",
        "search.points_to_evaluate[0].stage2.decision_space: [32, 0, 4] is not among the choices",
    )


def test_a_float_range_over_an_integer_key_is_reported(tmp_path: Path) -> None:
    tree = demo_tree()
    tree["space"]["stage2.epochs"] = {"uniform": [10, 40]}  # whole ends, fractional values inside
    tree["space"]["stage1.epochs"] = {"uniform": [2, 4], "step": 1}  # whole grid: fine
    problems = problems_of(tmp_path, tree)
    assert_reported(problems, "space.stage2.epochs: value 21.1 gives an invalid trial: stage2.epochs: Input should "
                    "be a valid integer, got a number with a fractional part")
    assert not any("stage1.epochs" in p for p in problems)


def test_a_condition_on_a_key_the_base_leaves_out_is_reported(tmp_path: Path) -> None:
    tree = demo_tree()
    tree["space"]["stage2.w3"]["when"] = {"stage1.alpha.lr.8": 0.1}  # no 8-bit entry in base
    assert_reported(problems_of(tmp_path, tree), "space.stage2.w3.when: stage1.alpha.lr.8 has no value in base")


def test_a_step_that_does_not_divide_the_range_is_reported(tmp_path: Path) -> None:
    tree = demo_tree()
    tree["space"]["stage2.w1"] = {"uniform": [0.0, 2.0], "step": 0.3}
    tree["space"]["stage2.epochs"] = {"int": [10, 40], "step": 4}
    tree["search"]["points_to_evaluate"] = []
    assert_reported(
        problems_of(tmp_path, tree),
        "space.stage2.w1: range [0.0, 2.0] is not a whole number of steps 0.3: its highest value would be 1.8",
        "space.stage2.epochs: range [10, 40] is not a whole number of steps 4: its highest value would be 38",
    )


def test_the_plan_shows_the_temperature_schedule() -> None:
    from searchlab.plan import describe_plan

    plan = describe_plan(load_sweep(REPO / "spaces" / "anet.yaml"), run_dir=Path("/runs/anet"))
    assert "stage 2 50 ep (τ exponential tau0=5 rate=0.956 per epoch)" in plan


def test_storage_must_be_a_path(tmp_path: Path) -> None:
    tree = demo_tree()
    tree["storage"] = "s3://bucket/runs"
    assert_reported(problems_of(tmp_path, tree), "storage 's3://bucket/runs' is a URI; searchlab needs a file system path")


def test_command_line_options_are_checked_like_the_file(tmp_path: Path) -> None:
    from searchlab.config import apply_run_options

    sweep = load_sweep(REPO / "spaces" / "demo.yaml")
    changed = apply_run_options(sweep, trials=3, storage=str(tmp_path / "runs"))
    assert (changed.search.trials, changed.storage) == (3, str(tmp_path / "runs"))
    assert apply_run_options(sweep) == sweep
    with pytest.raises(ConfigError) as error:
        apply_run_options(sweep, trials=50_000, storage="gs://bucket")
    assert error.value.problems[0].startswith("--max-trials 50000 is above the limit 10000")
    assert error.value.problems[1].startswith("--storage gs://bucket: storage 'gs://bucket' is a URI")
    manifest = Path(sweep.base.data.manifest)  # runs/data/synthetic/manifest.parquet
    with pytest.raises(ConfigError, match="would hold data.manifest"):  # a run named synthetic under runs/data
        apply_run_options(sweep.model_copy(update={"base": sweep.base.model_copy(update={"name": "synthetic"})}),
                          storage=str(manifest.parent.parent))
    with pytest.raises(ConfigError, match="--max-trials 0 is out of range; use a value >= 1"):
        apply_run_options(sweep, trials=0)
