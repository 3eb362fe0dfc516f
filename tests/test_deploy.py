"""`searchlab.deploy.load` on a bundle written by hand in the format `searchlab.pick` exports.

The precision test forces the policy's decisions: the LSTM's hidden states do not depend on the
actions, so an fc layer fitted to them (least squares) makes the policy take a chosen action on
each frame; a hook on the backbone then shows which precisions ran on how many frames.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from torch import Tensor

from searchlab.config import load_sweep
from searchlab.deploy import BundleError, bundle_files, load
from searchlab.methods.videoiq.bundle import DeployedVideoIQ

BUNDLE_FILES = bundle_files("videoiq")
from searchlab.models import PolicyNetwork, create_backbone

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["archery", "bowling", "cooking", "diving"]
SPACE = (32, 4, 2, 0)
TINY = {"data.frames": 4, "data.crop_size": 32, "model.policy_width_mult": 0.25, "model.policy_input_size": 32,
        "model.policy_hidden": 16, "stage2.decision_space": list(SPACE)}


def write_bundle(folder: Path, *, classes: list[str] = CLASSES, **overrides: Any) -> Path:
    """config.yaml, weights of both stages, classes and a card: the files of deploy.bundle_files("videoiq")."""
    folder.mkdir(parents=True)
    config = load_sweep(REPO / "spaces" / "demo.yaml").base.with_overrides({**TINY, **overrides})
    (folder / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    torch.manual_seed(0)
    backbone = create_backbone("resnet10", num_classes=len(classes), bit_widths=(32, 4, 2), alpha_init=4.0)
    torch.save(backbone.state_dict(), folder / "backbone.pt")
    policy = PolicyNetwork(num_actions=len(SPACE), input_size=32, hidden_size=16, width_mult=0.25)
    torch.save(policy.state_dict(), folder / "policy.pt")
    (folder / "classes.json").write_text(json.dumps(classes))
    (folder / "card.json").write_text(json.dumps({"accuracy": 0.7, "gflops_mean": 1.5}))
    (folder / "card.md").write_text("# card\n")
    return folder


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("deploy") / "bundle")


@pytest.fixture
def frames() -> Tensor:
    return torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_predict_gives_probabilities_and_one_hot_actions(bundle: Path, frames: Tensor) -> None:
    deployed = load(bundle)
    probs, actions = deployed.predict(frames)
    assert probs.shape == (2, len(CLASSES))
    assert torch.allclose(probs.sum(dim=1), torch.ones(2), atol=1e-6)
    assert (probs >= 0).all()
    assert actions.shape == (2, 4, len(SPACE))
    assert set(actions.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(actions.sum(dim=-1), torch.ones(2, 4))
    assert deployed.class_names == tuple(CLASSES)
    assert deployed.card == {"accuracy": 0.7, "gflops_mean": 1.5}
    assert deployed.config.stage2.decision_space == SPACE
    assert not deployed.model.training


def test_loaded_weights_equal_the_saved_ones(bundle: Path) -> None:
    deployed = load(bundle)
    for module, name in ((deployed.model.backbone, "backbone.pt"), (deployed.model.policy, "policy.pt")):
        saved = torch.load(bundle / name, weights_only=True)
        loaded = module.state_dict()
        assert loaded.keys() == saved.keys()
        assert all(torch.equal(loaded[key], saved[key]) for key in saved)


def test_incomplete_bundle_names_the_missing_files(tmp_path: Path) -> None:
    folder = write_bundle(tmp_path / "bundle")
    (folder / "policy.pt").unlink()
    (folder / "card.md").unlink()
    with pytest.raises(BundleError) as caught:
        load(folder)
    message = str(caught.value)
    assert "'policy.pt'" in message and "'card.md'" in message
    assert all(f"'{name}'" not in message for name in BUNDLE_FILES if name not in ("policy.pt", "card.md"))
    assert "searchlab.pick" in message
    with pytest.raises(BundleError, match="nothing-here is not a folder"):
        load(tmp_path / "nothing-here")


def hidden_states(policy: PolicyNetwork, frames: Tensor) -> Tensor:
    """The LSTM's hidden state after each frame (N, T, H), as the policy computes it at inference."""
    features = policy.extract(frames)
    state, steps = None, []
    for t in range(frames.shape[1]):
        _, state = policy.step(features[:, t], state)
        steps.append(state[0])
    return torch.stack(steps, dim=1)


def force_actions(deployed: DeployedVideoIQ, frames: Tensor, plan: list[list[int]]) -> None:
    """Fit the policy's fc so that frame (n, t) takes action index plan[n][t]."""
    policy = deployed.model.policy
    with torch.no_grad():
        hidden = hidden_states(policy, frames).reshape(-1, policy.fc.in_features).double()
        inputs = torch.cat([hidden, torch.ones(len(hidden), 1, dtype=hidden.dtype)], dim=1)
        targets = 10.0 * torch.nn.functional.one_hot(torch.tensor(plan).reshape(-1), len(SPACE)).double()
        solution = torch.linalg.lstsq(inputs, targets, driver="gelsd").solution  # (H + 1, |Ω|)
        policy.fc.weight.copy_(solution[:-1].T.float())
        policy.fc.bias.copy_(solution[-1].float())


def record_backbone_calls(deployed: DeployedVideoIQ) -> list[tuple[int, int]]:
    """(bit-width, number of frames) of every backbone call from now on."""
    calls: list[tuple[int, int]] = []
    deployed.model.backbone.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append((kwargs["bits"], args[0].shape[0])), with_kwargs=True
    )
    return calls


def test_inference_runs_only_the_chosen_precisions(bundle: Path, frames: Tensor) -> None:
    deployed = load(bundle)
    plan = [[0, 3, 1, 3], [2, 0, 0, 3]]  # action indices into SPACE: video 0 = 32, skip, 4, skip
    force_actions(deployed, frames, plan)
    calls = record_backbone_calls(deployed)
    probs, actions = deployed.predict(frames)
    assert actions.argmax(dim=-1).tolist() == plan
    assert sorted(calls) == [(2, 1), (4, 1), (32, 3)]  # 5 of 8 frames ran, skipped frames ran nothing
    calls.clear()
    backbone = deployed.model.backbone
    with torch.no_grad():
        expected = torch.stack([
            torch.stack([backbone(frames[n, t : t + 1], bits=SPACE[k])[0]
                         for t, k in enumerate(row) if SPACE[k] != 0]).mean(dim=0)
            for n, row in enumerate(plan)
        ]).softmax(dim=-1)
    assert torch.allclose(probs, expected, atol=1e-5)


def test_a_video_whose_frames_are_all_skipped_costs_nothing(bundle: Path, frames: Tensor) -> None:
    deployed = load(bundle)
    with torch.no_grad():
        deployed.model.policy.fc.weight.zero_()
        deployed.model.policy.fc.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 5.0]))  # always skip
    calls = record_backbone_calls(deployed)
    probs, actions = deployed.predict(frames)
    assert calls == []
    assert torch.equal(actions.argmax(dim=-1), torch.full((2, 4), SPACE.index(0)))
    assert torch.allclose(probs, torch.full((2, len(CLASSES)), 1 / len(CLASSES)))


def test_deploy_imports_neither_ray_nor_optuna() -> None:
    code = "import sys, searchlab.deploy; print(sorted({'ray', 'optuna'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("config.yaml", b"model: [unclosed\n", "config.yaml is broken"),
    ("config.yaml", b"\xff\xfe not utf-8", "config.yaml is broken"),
    ("classes.json", b'{"not": "a list"}', "classes.json is broken"),
    ("card.json", b"{", "card.json is broken"),
    ("policy.pt", b"not a checkpoint", "policy.pt is not a readable weights file"),
    ("backbone.pt", None, "backbone.pt does not load"),
])
def test_a_broken_bundle_file_is_named(tmp_path: Path, name: str, content: bytes | None, expected: str) -> None:
    folder = write_bundle(tmp_path / "bundle")
    if content is None:  # weights of another network: a state dict that does not fit
        torch.save(create_backbone("resnet18", num_classes=2, bit_widths=(32, 4, 2), alpha_init=4.0).state_dict(),
                   folder / name)
    else:
        (folder / name).write_bytes(content)
    with pytest.raises(BundleError, match=expected) as caught:
        load(folder)
    assert str(folder / name) in str(caught.value) and "searchlab.pick" in str(caught.value)


@pytest.mark.parametrize(("bad", "expected"), [
    (torch.randn(2, 3, 3, 32, 32), r"\(N, 4, 3, 32, 32\).*got shape \(2, 3, 3, 32, 32\)"),
    (torch.randn(4, 3, 32, 32), r"got shape \(4, 3, 32, 32\)"),
    (torch.randn(1, 4, 3, 64, 64), r"got shape \(1, 4, 3, 64, 64\)"),
    (torch.zeros(1, 4, 3, 32, 32, dtype=torch.uint8), "got dtype torch.uint8"),
    (torch.full((1, 4, 3, 32, 32), float("nan")), "NaN or infinite"),
    (np.zeros((1, 4, 3, 32, 32), dtype=np.float32), "got ndarray"),
])
def test_predict_says_what_input_it_expected(bundle: Path, bad: Any, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        load(bundle).predict(bad)


def test_predict_names_each_clips_class_and_each_frames_decision(bundle: Path, frames: Tensor) -> None:
    deployed = load(bundle)
    prediction = deployed.predict(frames)
    probs, actions = prediction  # still unpacks as (probabilities, actions)
    assert prediction.labels == [CLASSES[int(i)] for i in probs.argmax(dim=1)]
    names = ["32b", "4b", "2b", "skip"]
    assert deployed.action_labels == names
    assert prediction.decisions == [[names[int(k)] for k in clip] for clip in actions.argmax(dim=-1)]
    assert len(prediction.decisions) == 2 and all(len(clip) == 4 for clip in prediction.decisions)


@pytest.fixture(scope="module")
def video_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three classes, two held-out 96x96 videos each: decord decodes them reduced, as evaluation does."""
    from searchlab.data.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("videoiq_videos")
    generate_synthetic(root, num_classes=3, train_per_class=1, val_per_class=2, num_frames=16, size=96, seed=0,
                       workers=1, progress=False)
    return root / "manifest.parquet", root


@pytest.mark.parametrize(("clips", "crops", "sampling"), [(1, 1, {}), (2, 1, {}), (2, 3, {"data.sampling": "dense",
                                                                                    "data.frame_stride": 3})])
def test_predict_video_decides_and_predicts_as_evaluation_does(video_set: tuple[Path, Path], tmp_path: Path, clips: int,
                                                               crops: int, sampling: dict[str, Any],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """predict_video on a video file == the evaluation path (searchlab.evaluate's) on that video:
    the same decoded views (TSN or dense clips × 1 or 3 crops), the same per-frame decisions, the
    same class probabilities."""
    import pandas as pd

    from searchlab.data.manifest import read_manifest
    from searchlab.evaluate import main as evaluate_main
    from searchlab.methods.videoiq.evaluate import videoiq_costs, videoiq_price
    from searchlab.train.evaluate import eval_dataset, video_outputs

    manifest_path, root = video_set
    manifest = read_manifest(manifest_path, data_root=root)
    folder = write_bundle(tmp_path / "bundle", classes=list(manifest.class_names), **{
        "data.eval_short_side": 40, "data.eval_clips": clips, "data.eval_crops": crops, **sampling})
    deployed = load(folder)
    config = deployed.config
    dataset = eval_dataset(config.data, manifest=manifest, root=root, split="val", seed=config.seed)
    rows = pd.read_parquet(manifest_path)
    val = rows[rows["split"] == "val"].reset_index(drop=True)
    costs = videoiq_costs(deployed.model, backbone=config.model.backbone, size=config.data.crop_size)
    for video in range(len(val)):
        path = root / val.loc[video, "path"]
        result = deployed.predict_video(path)
        views = clips * crops
        for k in range(views):
            assert torch.equal(deployed.decode_video(path)[k], dataset[video * views + k]["frames"])
        expected = video_outputs(deployed.model, dataset, videos=[video], mode=config.stage2.eval_mode,
                                 seed=config.seed, price=videoiq_price(costs, decision_space=SPACE),
                                 device=torch.device("cpu"))
        assert torch.equal(result.actions.sum(dim=1), expected["usage"])  # frames per action, each clip
        assert torch.allclose(result.probabilities, expected["scores"].mean(dim=0, keepdim=True), atol=1e-6)
        assert result.label == manifest.class_names[int(expected["scores"].mean(dim=0).argmax())]
        assert result.frames_decoded == clips * 4 and len(result.decisions) == views

    # and the CLI, on a manifest holding one held-out video: its usage is that video's decisions
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(manifest_path)  # keeps the class-name table in the schema's metadata
    keep = pc.or_(pc.equal(table["split"], "train"), pc.equal(table["video_id"], val.loc[0, "video_id"]))
    one_manifest = tmp_path / "one.parquet"
    pq.write_table(table.filter(keep), one_manifest)
    assert evaluate_main([str(folder), "--manifest", str(one_manifest), "--root", str(root), "--workers", "0",
                          "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    result = deployed.predict_video(root / val.loc[0, "path"])
    counts = result.actions.sum(dim=(0, 1))
    assert measured["videos"] == 1
    assert measured["usage"] == pytest.approx({str(b): float(counts[k] / counts.sum()) for k, b in enumerate(SPACE)})
    assert measured["accuracy"] == float(result.label == manifest.class_names[int(val.loc[0, "label"])])
