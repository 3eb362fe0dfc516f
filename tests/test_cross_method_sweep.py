"""A cross-method sweep end to end on local Ray: one trial of VideoIQ and one of AR-Net in one study,
one trials table, one front over both, the report per method, and a bundle of each method's point
that `searchlab.deploy.load` runs (see `sweep_fixtures.cross_method_sweep_tree`)."""

from __future__ import annotations

import json
from typing import Any

import optuna
import pytest
import torch
from sweep_fixtures import cross_method_sweep_tree, write_sweep

from searchlab import deploy, pick, report
from searchlab import sweep as sweep_cli
from searchlab.config import TrialConfig
from searchlab.results import BaselinesTable, TrialsTable, decoded_json
from searchlab.run_dir import absolute_config_paths
from searchlab.train.loader import clip_dataset, load_manifest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cross_run(ray_local, synthetic_set, tmp_path_factory) -> dict[str, Any]:
    _, data_root = synthetic_set
    folder = tmp_path_factory.mktemp("cross")
    storage = folder / "runs"
    path = write_sweep(folder / "cross.yaml", cross_method_sweep_tree(
        manifest=data_root / "manifest.parquet", storage=storage, name="cross"))
    code = sweep_cli.main([str(path)])
    run_dir = storage / "cross"
    return {"code": code, "run_dir": run_dir, "trials": TrialsTable.in_run(run_dir).read(), "data_root": data_root}


def test_one_sweep_trains_each_method_with_its_own_sub_space(cross_run):
    assert cross_run["code"] == 0
    frame = cross_run["trials"]
    assert list(frame["status"]) == ["completed", "completed"]
    assert list(frame["method"]) == ["videoiq", "arnet"] and list(frame["param.method"]) == ["videoiq", "arnet"]
    params = decoded_json(frame, "params")
    assert params == [{"method": "videoiq", "stage2.w1": 0.2}, {"method": "arnet", "arnet.w_eff": 1.0}]
    keys = decoded_json(frame, "stage_keys")  # each method's own stages, keyed on its own keys
    assert set(keys[0]) == {"teacher", "stage1", "outputs", "stage2"} and set(keys[1]) == {"backbone", "joint", "finetune"}
    baselines = BaselinesTable.in_run(cross_run["run_dir"]).read()
    assert set(baselines["method"]) == {"videoiq", "arnet"}
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{cross_run['run_dir'] / 'optuna.db'}")
    assert study.user_attrs["method"] == "videoiq | arnet"
    assert [t.params for t in study.trials] == [{"method": "videoiq", "stage2.w1": 0.2},
                                                {"method": "arnet", "arnet.w_eff": 1.0}]
    assert [t.user_attrs["method"] for t in study.trials] == ["videoiq", "arnet"]


def test_the_report_draws_one_front_over_both_methods(cross_run, capsys):
    run_dir = cross_run["run_dir"]
    assert report.main([str(run_dir)]) == 0
    out = capsys.readouterr().out
    built = report.build_report(run_dir)
    assert {summary.method for summary in built.methods} == {"videoiq", "arnet"}
    assert set(built.front["method"]) <= {"videoiq", "arnet"} and not built.front.empty
    for summary in built.methods:
        # one trial each, its curve's points: the method's own front is among them
        assert 1 <= len(summary.front) <= 6 and summary.baselines > 0 and summary.hypervolume > 0
        assert set(summary.front["number"]) == {summary.front["number"].iloc[0]}
        assert f"{summary.method}: 1 completed trials, own front {len(summary.front)}" in out
    assert "Per method: best trade-offs against its own baselines" in (run_dir / "report.html").read_text()


@pytest.mark.parametrize("number, method", [(0, "videoiq"), (1, "arnet")])
def test_each_methods_point_exports_a_bundle_that_loads_and_predicts(cross_run, tmp_path, number, method):
    out = tmp_path / f"bundle-{method}"
    assert pick.main([str(cross_run["run_dir"]), "--trial", str(number), "--out", str(out)]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["method"] == method and card["params"]["method"] == method
    model = deploy.load(out)
    assert model.config.method == method and model.config.name == "cross"
    config = TrialConfig.model_validate(absolute_config_paths(model.config.model_dump(mode="json"),
                                                              cross_run["data_root"]))
    manifest, root = load_manifest(config.data)
    clip = clip_dataset(config.data, manifest=manifest, root=root, split="val", train=False, seed=0)[0]
    probabilities, _ = model.predict(clip["frames"].unsqueeze(0))
    assert probabilities.shape == (1, 4) and torch.allclose(probabilities.sum(), torch.tensor(1.0))
