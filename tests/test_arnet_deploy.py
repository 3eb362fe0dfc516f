"""AR-Net deployment (searchlab.methods.arnet.deploy) and the AR-Net part of bench/inference_savings.py,
on a tiny network and a real synthetic MP4."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from searchlab.config import DataConfig  # first: searchlab.config imports the arnet section's module
from searchlab.data.synthetic import generate_synthetic
from searchlab.methods.arnet import ARNetConfig, build_model
from searchlab.methods.arnet.deploy import (
    DeployedARNet,
    decode_video,
    load_arnet_bundle,
    stepwise_infer,
)
from searchlab.train.evaluate import eval_dataset

ROOT = Path(__file__).resolve().parents[1]
# Action indices of the tiny layout: res32, res24, res16, head16, skip1, skip2, skip4.
R32, R24, R16, HEAD, SKIP1, SKIP2, SKIP4 = range(7)
TINY = dict(resolutions=(32, 24, 16), backbones=("resnet10",) * 3, policy_input_size=16, policy_hidden=16,
            policy_width_mult=0.25)
CLASSES = ("a", "b", "c", "d")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def arnet() -> ARNetConfig:
    return ARNetConfig(**TINY)


@pytest.fixture(scope="module")
def video_set(tmp_path_factory: pytest.TempPathFactory):
    """Two 96x96 videos of 16 frames: larger than the short side 40, so decord decodes them reduced,
    as evaluation does."""
    root = tmp_path_factory.mktemp("arnet_deploy_videos")
    manifest = generate_synthetic(root, num_classes=2, train_per_class=1, val_per_class=1, num_frames=16, size=96,
                                  seed=0, workers=1, progress=False)
    return manifest, root


def data_config(**overrides) -> DataConfig:
    return DataConfig(manifest="unused.parquet", frames=8, crop_size=32, eval_short_side=40, loader_workers=0,
                      **overrides)


_MODELS: dict[ARNetConfig, torch.nn.Module] = {}


def deployed(arnet: ARNetConfig, data: DataConfig | None = None, *, bias: torch.Tensor | None = None) -> DeployedARNet:
    """The tiny network (built once per configuration; each call gets a copy), its fc set to ``bias``."""
    if arnet not in _MODELS:
        torch.manual_seed(0)
        _MODELS[arnet] = build_model(arnet, num_classes=len(CLASSES)).eval()
    model = copy.deepcopy(_MODELS[arnet])
    if bias is not None:
        with torch.no_grad():
            model.policy.fc.weight.zero_()
            model.policy.fc.bias.copy_(bias)
    return DeployedARNet(model=model, arnet=arnet, data=data or data_config(), class_names=CLASSES, card={})


def forcing(action: int) -> torch.Tensor:
    bias = torch.zeros(7)
    bias[action] = 10.0
    return bias


def one_hot(rows: list[list[int]]) -> torch.Tensor:
    return F.one_hot(torch.tensor(rows), 7).float()


def reader(frames: torch.Tensor):
    calls: list[tuple[int, list[int]]] = []

    def read(step: int, rows: torch.Tensor) -> torch.Tensor:
        calls.append((step, rows.tolist()))
        return frames[rows, step]

    return read, calls


def test_predict_is_arnet_infer(arnet):
    net = deployed(arnet)
    frames = torch.randn(2, 8, 3, 32, 32)
    probs, actions = net.predict(frames)
    logits, expected = net.model.infer(frames, mode="argmax")
    assert torch.equal(actions, expected)
    assert torch.allclose(probs, logits.softmax(dim=-1))
    assert probs.shape == (2, 4) and torch.allclose(probs.sum(dim=1), torch.ones(2))


@pytest.mark.parametrize("bias_seed", [0, 1])
def test_stepwise_infer_equals_infer_on_random_frames(arnet, bias_seed):
    net = deployed(arnet)
    torch.manual_seed(bias_seed)
    with torch.no_grad():
        net.model.policy.fc.bias.copy_(torch.randn(7) * 2)  # other decision mixes
    frames = torch.randn(3, 8, 3, 32, 32)
    logits, actions = net.model.infer(frames, mode="argmax")
    read, calls = reader(frames)
    result = stepwise_infer(net.model, read, batch=3, steps=8, mode="argmax")
    assert torch.equal(result.actions, actions) and torch.equal(result.logits, logits)
    assert result.frames_read == 24 and [step for step, _ in calls] == list(range(8))
    # "sample" mode draws the same numbers in the same order
    torch.manual_seed(7)
    logits, actions = net.model.infer(frames, mode="sample")
    torch.manual_seed(7)
    result = stepwise_infer(net.model, reader(frames)[0], batch=3, steps=8, mode="sample")
    assert torch.equal(result.actions, actions) and torch.equal(result.logits, logits)


# Every kind of slot: resolutions, head, skip-1, skip windows (their held slots say "skip" whatever
# was asked there), a window cut by the clip's end.
SCRIPT = [[R32, SKIP2, R16, HEAD, SKIP4, R32, R32, R32],
          [HEAD, R24, SKIP1, R32, SKIP2, HEAD, R16, SKIP4]]
TAKEN = [[R32, SKIP2, SKIP2, HEAD, SKIP4, SKIP4, SKIP4, SKIP4],
         [HEAD, R24, SKIP1, R32, SKIP2, SKIP2, R16, SKIP4]]


def test_stepwise_infer_replays_actions_with_the_skip_rule(arnet):
    net = deployed(arnet)
    frames = torch.randn(2, 8, 3, 32, 32)
    logits, actions = net.model.infer(frames, actions=one_hot(SCRIPT))
    assert actions.argmax(-1).tolist() == TAKEN
    result = stepwise_infer(net.model, reader(frames)[0], batch=2, steps=8, actions=one_hot(SCRIPT))
    assert torch.equal(result.actions, actions) and torch.equal(result.logits, logits)
    assert result.frames_read == 16  # the trained semantics: the LSTM reads every frame


def test_without_decoding_skipped_frames_the_held_slots_are_never_read(arnet):
    net = deployed(arnet)
    frames = torch.randn(2, 8, 3, 32, 32)
    read, calls = reader(frames)
    result = stepwise_infer(net.model, read, batch=2, steps=8, actions=one_hot(SCRIPT), decode_skipped=False)
    held = {(0, 2), (0, 5), (0, 6), (0, 7), (1, 5)}
    asked = {(row, step) for step, rows in calls for row in rows}
    assert asked == {(n, t) for n in range(2) for t in range(8)} - held
    assert result.frames_read == 16 - len(held)
    assert result.actions.argmax(-1).tolist() == TAKEN
    # Backbone frames are unchanged; the head after a window reads an LSTM that never saw the held
    # frames, so only clips without a head slot after a window must agree with infer.
    logits, _ = net.model.infer(frames, actions=one_hot(SCRIPT))
    assert torch.equal(result.logits[1], logits[1])  # its head slot comes before its window
    assert not torch.equal(result.logits[0], logits[0])  # its head slot follows a skip-2 window


def _val_video(video_set, item: int = 0):
    manifest, root = video_set
    row = manifest.split("val").table.slice(item, 1).to_pylist()[0]
    return root / row["path"], (row["width"], row["height"])


@pytest.mark.parametrize(("clips", "views"), [({"eval_clips": 1}, 1), ({"eval_clips": 2}, 2),
                                              ({"eval_clips": 2, "eval_crops": 3, "sampling": "dense", "frame_stride": 2}, 6)])
def test_decode_video_is_the_evaluation_clip(video_set, clips, views):
    manifest, root = video_set
    data = data_config(**clips)
    expected = eval_dataset(data, manifest=manifest, root=root, split="val", seed=0)
    path, size = _val_video(video_set)
    decoded = decode_video(path, data, size=size)
    assert decoded.shape == (views, 8, 3, 32, 32)
    for k in range(views):
        assert torch.equal(decoded[k], expected[k]["frames"])
    assert torch.equal(decode_video(path, data), decoded)  # the size read from the container's header


@pytest.mark.parametrize("views", [{}, {"eval_crops": 3, "sampling": "dense"}])
def test_predict_video_equals_predict_on_the_eagerly_decoded_clip(arnet, video_set, views):
    net = deployed(arnet, data_config(eval_clips=2, **views))
    path, _ = _val_video(video_set, 1)
    clips = decode_video(path, net.data)
    probs, actions = net.predict(clips)
    result = net.predict_video(path)
    assert torch.equal(result.actions, actions)
    assert torch.allclose(result.probabilities, probs.mean(dim=0, keepdim=True), atol=1e-6)
    assert result.frames_decoded == 16  # two clips of 8 distinct frames (dense: frames 0-7 and 8-15), read once for 3 crops


def test_predict_video_skips_decoding_inside_skip_windows(arnet, video_set):
    path, _ = _val_video(video_set)
    net = deployed(arnet, bias=forcing(SKIP2))  # every decision is skip-2
    clip = decode_video(path, net.data)
    probs, actions = net.predict(clip)
    assert (actions.argmax(-1) == SKIP2).all()
    lazy = net.predict_video(path, decode_skipped=False)
    exact = net.predict_video(path)
    assert lazy.frames_decoded == 4 and exact.frames_decoded == 8
    for result in (lazy, exact):
        assert torch.equal(result.actions, actions) and torch.allclose(result.probabilities, probs)
    # a mix of processed and skipped frames: the exact mode still equals predict
    net = deployed(arnet, bias=torch.tensor([2.0, 0, 0, 0, 0, 1.8, 0]))
    probs, actions = net.predict(clip)
    result = net.predict_video(path)
    assert torch.equal(result.actions, actions) and torch.allclose(result.probabilities, probs, atol=1e-6)


@pytest.mark.parametrize(
    "frames, message",
    [
        (torch.zeros(8, 3, 32, 32), "got shape (8, 3, 32, 32)"),
        (torch.zeros(1, 16, 3, 32, 32), "got shape (1, 16, 3, 32, 32)"),
        (torch.zeros(1, 8, 3, 64, 64), "got shape (1, 8, 3, 64, 64)"),
        (torch.zeros(1, 8, 3, 32, 32, dtype=torch.uint8), "dtype torch.uint8"),
        (torch.full((1, 8, 3, 32, 32), float("nan")), "NaN or infinite"),
        ([[0.0]], "got list"),
    ],
)
def test_check_input_says_what_differs(arnet, frames, message):
    with pytest.raises(ValueError, match="frames must be a float tensor \\(N, 8, 3, 32, 32\\)") as error:
        deployed(arnet).predict(frames)
    assert message in str(error.value)


def test_load_arnet_bundle_and_its_errors(arnet, tmp_path):
    net = deployed(arnet)
    torch.save(net.model.state_dict(), tmp_path / "arnet.pt")
    pretrained = arnet.model_copy(update={"policy_pretrained": "/nowhere/mobilenet.pt"})
    loaded = load_arnet_bundle(tmp_path, arnet=pretrained, data=net.data, class_names=list(CLASSES), card={"k": 1})
    frames = torch.randn(1, 8, 3, 32, 32)
    assert not loaded.model.training and loaded.class_names == CLASSES and loaded.card == {"k": 1}
    assert all(torch.equal(a, b) for a, b in zip(loaded.predict(frames), net.predict(frames)))

    other = ARNetConfig(**{**TINY, "skips": (1, 2)})
    with pytest.raises(ValueError, match=r"arnet\.pt does not load into the network.*python -m searchlab\.pick"):
        load_arnet_bundle(tmp_path, arnet=other, data=net.data, class_names=CLASSES)
    (tmp_path / "arnet.pt").write_bytes(b"\x80\x02 not a state dict")
    with pytest.raises(ValueError, match=r"arnet\.pt is not a readable weights file.*python -m searchlab\.pick"):
        load_arnet_bundle(tmp_path, arnet=arnet, data=net.data, class_names=CLASSES)
    (tmp_path / "arnet.pt").unlink()
    with pytest.raises(ValueError, match=r"arnet\.pt is missing"):
        load_arnet_bundle(tmp_path, arnet=arnet, data=net.data, class_names=CLASSES)


def _bench():
    spec = importlib.util.spec_from_file_location("inference_savings", ROOT / "bench" / "inference_savings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(bench, argv: list[str]) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench.main(argv) == 0
    return json.loads(out.getvalue())


TINY_FLAGS = ["--resolutions", "32", "24", "16", "--arnet-backbones", "resnet10", "resnet10", "resnet10",
              "--policy-size", "16", "--policy-hidden", "16", "--policy-width", "0.25", "--classes", "4",
              "--frames", "8", "--videos", "2", "--repeats", "1", "--threads", "1", "--json"]


def test_bench_arnet_forced_mix_smoke():
    bench = _bench()
    report = _run(bench, ["--method", "arnet", *TINY_FLAGS, "--mix", "res32=0.5", "res16=0.25", "skip2=0.25"])
    assert report["usage"]["res32"] == pytest.approx(0.5) and report["usage"]["skip2"] == pytest.approx(0.25)
    assert report["flops_saving"] == pytest.approx(1 - report["gflops_per_video_dynamic"] / report["gflops_per_video_full"])
    assert report["saving_ratio"] == pytest.approx(report["wall_saving"] / report["flops_saving"])
    assert 0 < report["flops_saving"] < 1
    actions = bench.arnet_forced_actions({"res32": 0.25, "skip4": 0.5, "head16": 0.25}, names=("res32", "head16", "skip4"),
                                         skips={"skip4": 4}, videos=3, frames=8, seed=0)
    assert actions.sum(dim=(0, 1)).tolist() == [6.0, 6.0, 12.0]  # one whole skip-4 window per video
    with pytest.raises(SystemExit):
        bench.parse_args(["--method", "arnet", *TINY_FLAGS, "--mix", "res99=1.0"])


def test_bench_arnet_bundle_smoke(arnet, video_set, tmp_path):
    net = deployed(arnet)
    torch.save(net.model.state_dict(), tmp_path / "arnet.pt")
    config = {"method": "arnet", "arnet": arnet.model_dump(mode="json"), "data": net.data.model_dump(mode="json")}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "classes.json").write_text(json.dumps(list(CLASSES)))
    path, _ = _val_video(video_set)
    report = _run(_bench(), ["--method", "arnet", "--bundle", str(tmp_path), "--inputs", str(path), str(path),
                             "--repeats", "1", "--threads", "1", "--json"])
    _, actions = net.predict(decode_video(path, net.data))
    usage = actions.mean(dim=(0, 1))
    assert report["videos"] == 2 and report["frames"] == 8
    assert [report["usage"][name] for name in arnet.action_names()] == pytest.approx(usage.tolist())
