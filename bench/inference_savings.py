"""Wall-clock of VideoIQ's inference path under a fixed decision mix, next to its FLOPs ratio.

Forces the decisions with a fixed action tensor (so the timing measures the backbone part, not
the policy), times ``VideoIQ.infer`` against uniform full precision on the same clips, and prints
the ratio beside the FLOPs ratio that ``searchlab.flops`` predicts for the same decisions.

On CPU the quantised kernels are simulated (quantise-dequantise in float), so a 2- or 4-bit frame
costs at least as much time as a 32-bit one here: only skipping saves wall-clock time. Real low-bit
savings need integer kernels on the deployment hardware.

    .venv/bin/python bench/inference_savings.py [--backbone resnet18 --frames 16 --size 112
        --videos 4 --mix 0=0.3 2=0.3 32=0.4 --repeats 3 --threads 2 --json]

``--method arnet`` (METHODS.md §2): wall-clock of ``ARNet.infer`` (policy on every frame, then each
backbone on the frames that chose its resolution) under a decision mix, against the same frames all
through the top-resolution backbone alone (the uniform TSN baseline), next to the FLOPs saving that
``arnet_costs`` counts for the decisions taken. Decisions come from ``--mix NAME=FRACTION ...`` over
the action names (res<r>, head<p>, skip<k>; skip windows are laid out whole, so the realised mix is
printed) for a freshly built network, or from the policy of an exported bundle (``--bundle DIR``) on
random clips or on ``--inputs VIDEO ...`` decoded as evaluation does. Target: wall-clock saving
>= 0.8 x FLOPs saving.

    .venv/bin/python bench/inference_savings.py --method arnet [--resolutions 112 84 56
        --arnet-backbones resnet50 resnet34 resnet18 --policy-size 42 --frames 16 --videos 4
        --mix res112=0.2 res84=0.2 res56=0.2 head42=0.1 skip1=0.1 skip2=0.1 skip4=0.1]
    .venv/bin/python bench/inference_savings.py --method arnet --bundle DIR [--inputs a.mp4 b.mp4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Callable, Sequence

import numpy as np
import torch

from searchlab import flops
from searchlab.models import PolicyNetwork, VideoIQ, create_backbone, list_backbones

NOTE = (
    "CPU: quantised kernels are simulated (quantise-dequantise in float), so a 2/4-bit frame costs more "
    "time than a 32-bit one here and only skipping saves wall-clock time; the FLOPs ratio is what "
    "low-bit integer kernels would save."
)


def parse_mix(items: Sequence[str]) -> dict[int, float]:
    """``["0=0.3", "2=0.3", "32=0.4"]`` -> {0: 0.3, 2: 0.3, 32: 0.4}; fractions must sum to 1."""
    mix: dict[int, float] = {}
    for item in items:
        bits, sep, fraction = item.partition("=")
        try:
            mix[int(bits)] = float(fraction)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--mix entry {item!r} is not BITS=FRACTION, e.g. 0=0.3") from None
        if not sep:
            raise argparse.ArgumentTypeError(f"--mix entry {item!r} is not BITS=FRACTION, e.g. 0=0.3")
    return mix


def forced_actions(
    mix: dict[int, float], *, decision_space: tuple[int, ...], videos: int, frames: int, seed: int
) -> torch.Tensor:
    """One-hot actions (videos, frames, |Ω|): every video gets the mix's frame counts, shuffled."""
    exact = {bits: fraction * frames for bits, fraction in mix.items()}
    counts = {bits: int(value) for bits, value in exact.items()}
    # Largest remainder: hand the frames lost to rounding down to the largest fractional parts.
    for bits in sorted(exact, key=lambda b: exact[b] - counts[b], reverse=True)[: frames - sum(counts.values())]:
        counts[bits] += 1
    row = [decision_space.index(bits) for bits, count in counts.items() for _ in range(count)]
    generator = torch.Generator().manual_seed(seed)
    indices = torch.stack([torch.tensor(row)[torch.randperm(frames, generator=generator)] for _ in range(videos)])
    return torch.nn.functional.one_hot(indices, len(decision_space)).float()


def time_infer(
    model: VideoIQ, clips: torch.Tensor, configurations: dict[str, torch.Tensor], *, repeats: int
) -> dict[str, float]:
    """Median seconds of ``model.infer`` per forced-action configuration.

    Runs are interleaved (one of each configuration per round, after one warm-up round) so that
    load from other processes on a shared machine hits every configuration alike.
    """
    seconds: dict[str, list[float]] = {name: [] for name in configurations}
    for round_index in range(repeats + 1):
        for name, actions in configurations.items():
            start = time.perf_counter()
            model.infer(clips, actions=actions)
            if round_index:
                seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", choices=("videoiq", "arnet"), default="videoiq")
    parser.add_argument("--backbone", default="resnet18", help=f"one of {list_backbones()}")
    parser.add_argument("--bits", type=int, nargs="+", default=[32, 4, 2], help="backbone bit-widths B")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112, help="frame side in px")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--mix", nargs="+", default=None,
                        help="VideoIQ: BITS=FRACTION, 0 = skip (default 0=0.3 2=0.3 32=0.4); AR-Net: "
                             "ACTION=FRACTION over the action names (default: every action alike)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    arnet = parser.add_argument_group("AR-Net (--method arnet)")
    arnet.add_argument("--resolutions", type=int, nargs="+", default=[224, 168, 112], help="descending")
    arnet.add_argument("--arnet-backbones", nargs="+", default=["resnet50", "resnet34", "resnet18"],
                       help="one per resolution")
    arnet.add_argument("--policy-size", type=int, default=84, help="the policy's input side (and the head action's name)")
    arnet.add_argument("--policy-hidden", type=int, default=512)
    arnet.add_argument("--policy-width", type=float, default=1.0, help="MobileNetV2 width multiplier")
    arnet.add_argument("--skips", type=int, nargs="*", default=[1, 2, 4])
    arnet.add_argument("--no-head", action="store_true", help="no head action (use_84: false)")
    arnet.add_argument("--bundle", help="an AR-Net bundle folder (config.yaml with arnet: and data:, arnet.pt, "
                                        "classes.json): decisions from its policy")
    arnet.add_argument("--inputs", nargs="+", default=None, help="video files for --bundle (default: random clips)")
    args = parser.parse_args(argv)
    if args.method == "arnet":
        return _check_arnet_args(parser, args)
    if args.bundle or args.inputs:
        parser.error("--bundle and --inputs are for --method arnet")
    if args.mix is None:
        args.mix = ["0=0.3", "2=0.3", "32=0.4"]
    try:
        args.mix = parse_mix(args.mix)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    problems = []
    if args.backbone not in list_backbones():
        problems.append(f"--backbone {args.backbone!r} is not registered; choose one of {list_backbones()}")
    for flag in ("frames", "size", "videos", "classes", "repeats", "threads"):
        if getattr(args, flag) < 1:
            problems.append(f"--{flag} must be >= 1")
    unknown = sorted(set(args.mix) - set(args.bits) - {0})
    if unknown:
        problems.append(f"--mix names bit-widths {unknown} outside --bits {args.bits} and 0 (skip)")
    if any(f < 0 for f in args.mix.values()) or abs(sum(args.mix.values()) - 1.0) > 1e-6:
        problems.append(f"--mix fractions must be >= 0 and sum to 1, got {sum(args.mix.values()):.3f}")
    if problems:
        parser.error("; ".join(problems))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.method == "arnet":
        return arnet_main(args)
    decision_space = (*sorted(set(args.bits), reverse=True), 0)
    model = VideoIQ(
        backbone=create_backbone(args.backbone, num_classes=args.classes, bit_widths=args.bits, alpha_init=4.0),
        policy=PolicyNetwork(num_actions=len(decision_space)),
        decision_space=decision_space,
    ).eval()
    clips = torch.randn(args.videos, args.frames, 3, args.size, args.size)
    mixed = forced_actions(
        args.mix, decision_space=decision_space, videos=args.videos, frames=args.frames, seed=args.seed
    )

    def uniform_at(bits: int) -> torch.Tensor:
        return forced_actions(
            {bits: 1.0}, decision_space=decision_space, videos=args.videos, frames=args.frames, seed=0
        )

    uniform = uniform_at(max(args.bits))

    configurations = {"mixed": mixed, **{str(bits): uniform_at(bits) for bits in decision_space if bits}}
    seconds = time_infer(model, clips, configurations, repeats=args.repeats)
    seconds_mixed, seconds_uniform = seconds.pop("mixed"), seconds[str(max(args.bits))]

    table = flops.action_cost_table(
        args.backbone, decision_space=decision_space, size=args.size, num_classes=args.classes
    )
    policy_per_frame = flops.policy_gflops_per_frame(model.policy, size=args.size)
    space = np.array(decision_space)

    def gflops(actions: torch.Tensor, policy: float) -> float:
        bits = space[actions.argmax(-1).numpy()]
        return float(flops.video_gflops(bits, cost_table=table, policy_gflops_per_frame=policy).mean())

    report = {
        "backbone": args.backbone,
        "frames": args.frames,
        "size": args.size,
        "videos": args.videos,
        "threads": args.threads,
        "mix": {str(bits): fraction for bits, fraction in args.mix.items()},
        "processed_fraction": float(mixed[..., decision_space.index(0)].eq(0).float().mean()),
        "seconds_per_frame_by_bits": {b: t / (args.videos * args.frames) for b, t in seconds.items()},
        "seconds_uniform": seconds_uniform,
        "seconds_mixed": seconds_mixed,
        "time_ratio": seconds_mixed / seconds_uniform,
        "gflops_per_video_uniform": gflops(uniform, 0.0),
        "gflops_per_video_mixed": gflops(mixed, 0.0),
        "flops_ratio": gflops(mixed, 0.0) / gflops(uniform, 0.0),
        "policy_gflops_per_frame": policy_per_frame,
        "flops_ratio_with_policy": gflops(mixed, policy_per_frame) / gflops(uniform, 0.0),
        "note": NOTE,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.backbone}, {args.videos} videos x {args.frames} frames x {args.size} px, {args.threads} threads")
    print(f"decision mix {report['mix']} (forced; the policy is not timed)")
    uniform_gflops = report["gflops_per_video_uniform"]
    print(f"uniform {max(args.bits)}-bit: {seconds_uniform:.3f} s, {uniform_gflops:.3f} GFLOPs/video")
    print(f"mixed:           {seconds_mixed:.3f} s, {report['gflops_per_video_mixed']:.3f} GFLOPs/video")
    per_frame = ", ".join(f"{b}-bit {1e3 * t:.1f}" for b, t in report["seconds_per_frame_by_bits"].items())
    print(f"ms per frame when every frame runs at one precision: {per_frame}")
    print(f"time ratio {report['time_ratio']:.3f}  (processed fraction {report['processed_fraction']:.2f})")
    print(f"FLOPs ratio {report['flops_ratio']:.3f}  (with the policy's {policy_per_frame:.4f} GFLOPs/frame: "
          f"{report['flops_ratio_with_policy']:.3f})")
    print(NOTE)
    return 0


# --------------------------------------------------------------------------------------- AR-Net

#: What AR-Net's part measures against: wall-clock saving / FLOPs saving.
ARNET_TARGET = 0.8


def _check_arnet_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    problems = []
    for flag in ("frames", "videos", "classes", "repeats", "threads"):
        if getattr(args, flag) < 1:
            problems.append(f"--{flag} must be >= 1")
    if args.inputs and not args.bundle:
        problems.append("--inputs needs --bundle (a fresh network's policy decides nothing worth timing)")
    if args.bundle and args.mix:
        problems.append("--bundle takes the decisions from its policy; drop --mix")
    if not args.bundle:
        from pydantic import ValidationError

        from searchlab.methods.arnet.config import ARNetConfig

        try:
            args.arnet = ARNetConfig(resolutions=tuple(args.resolutions), backbones=tuple(args.arnet_backbones),
                                     skips=tuple(args.skips), use_84=not args.no_head,
                                     policy_input_size=args.policy_size, policy_hidden=args.policy_hidden,
                                     policy_width_mult=args.policy_width)
        except ValidationError as error:
            parser.error("the AR-Net flags describe no valid arnet section: "
                         + "; ".join(e["msg"] for e in error.errors()))
        names = args.arnet.action_names()
        try:
            args.mix = parse_action_mix(args.mix, names) if args.mix else {name: 1 / len(names) for name in names}
        except argparse.ArgumentTypeError as error:
            problems.append(str(error))
    if problems:
        parser.error("; ".join(problems))
    return args


def parse_action_mix(items: Sequence[str], names: Sequence[str]) -> dict[str, float]:
    """``["res112=0.3", "skip2=0.2", ...]`` -> fractions per action name; unnamed actions get 0."""
    mix = dict.fromkeys(names, 0.0)
    for item in items:
        name, sep, fraction = item.partition("=")
        if not sep or name not in mix:
            raise argparse.ArgumentTypeError(f"--mix entry {item!r} is not ACTION=FRACTION with ACTION one of {list(names)}")
        try:
            mix[name] = float(fraction)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--mix entry {item!r}: {fraction!r} is not a number") from None
    if any(f < 0 for f in mix.values()) or abs(sum(mix.values()) - 1.0) > 1e-6:
        raise argparse.ArgumentTypeError(f"--mix fractions must be >= 0 and sum to 1, got {sum(mix.values()):.3f}")
    return mix


def arnet_forced_actions(
    mix: dict[str, float], *, names: Sequence[str], skips: dict[str, int], videos: int, frames: int, seed: int
) -> torch.Tensor:
    """One-hot actions (videos, frames, |A|) that follow AR-Net's skip rule: each video gets the mix's
    slot counts (largest remainder; a skip-k action's slots rounded to whole windows of k), laid out
    as shuffled tokens (one slot per frame action, k slots per skip-k window; the last may be cut)."""
    exact = {name: fraction * frames for name, fraction in mix.items()}
    counts = {name: int(value) for name, value in exact.items()}
    for name in sorted(exact, key=lambda n: exact[n] - counts[n], reverse=True)[: frames - sum(counts.values())]:
        counts[name] += 1
    tokens: list[tuple[int, int]] = []  # (action index, slots)
    for name, count in counts.items():
        k = skips.get(name, 1)
        tokens += [(names.index(name), k)] * int(count / k + 0.5)  # whole windows, half up
    # Slots that whole windows leave over go to the most used frame action.
    filler = names.index(max((n for n in names if n not in skips), key=lambda n: mix[n], default=names[0]))
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(videos):
        order = torch.randperm(len(tokens), generator=generator).tolist()
        row = [index for position in order for index in [tokens[position][0]] * tokens[position][1]]
        rows.append((row + [filler] * frames)[:frames])
    return torch.nn.functional.one_hot(torch.tensor(rows), len(names)).float()


def _time_rounds(runs: dict[str, Callable[[], object]], *, repeats: int) -> dict[str, list[float]]:
    """Seconds of each run per round; interleaved rounds after one warm-up round (as ``time_infer``)."""
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for round_index in range(repeats + 1):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if round_index:
                seconds[name].append(time.perf_counter() - start)
    return seconds


def _read_bundle(folder: str) -> tuple[object, object, list[str], dict]:
    """(ARNetConfig, DataConfig, class names, card) of a bundle folder, read from its files."""
    from pathlib import Path

    import yaml

    from searchlab.config import DataConfig
    from searchlab.methods.arnet.config import ARNetConfig

    root = Path(folder)
    config = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8"))
    if not isinstance(config, dict) or "arnet" not in config or "data" not in config:
        raise SystemExit(f"{root / 'config.yaml'} has no arnet: and data: sections; is {root} an AR-Net bundle?")
    classes = json.loads((root / "classes.json").read_text(encoding="utf-8"))
    card_path = root / "card.json"
    card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else {}
    return ARNetConfig.model_validate(config["arnet"]), DataConfig.model_validate(config["data"]), classes, card


@torch.no_grad()
def arnet_main(args: argparse.Namespace) -> int:
    from searchlab.methods.arnet.build import build_model
    from searchlab.methods.arnet.costs import arnet_costs
    from searchlab.methods.arnet.model import resize_frames

    if args.bundle:
        from searchlab.methods.arnet.deploy import decode_video, load_arnet_bundle

        config, data, classes, card = _read_bundle(args.bundle)
        deployed = load_arnet_bundle(args.bundle, arnet=config, data=data, class_names=classes, card=card)
        model, frames, size = deployed.model, data.frames, data.crop_size
        if args.inputs:
            clips = torch.cat([decode_video(path, data) for path in args.inputs])
        else:
            clips = torch.randn(args.videos, frames, 3, size, size)
        _, actions = model.infer(clips, mode=config.eval_mode)
        source = f"bundle {args.bundle}, {'given' if args.inputs else 'random'} clips"

        def dynamic() -> object:
            return model.infer(clips, mode=config.eval_mode)
    else:
        config, frames = args.arnet, args.frames
        model = build_model(config, num_classes=args.classes).eval()
        size = config.resolutions[0]
        clips = torch.randn(args.videos, frames, 3, size, size)
        names = config.action_names()
        skips = {f"skip{k}": k for k in config.skips}
        forced = arnet_forced_actions(args.mix, names=names, skips=skips, videos=args.videos, frames=frames,
                                      seed=args.seed)
        _, actions = model.infer(clips, actions=forced)  # the actions taken (the skip rule applied)
        source = "forced mix"

        def dynamic() -> object:
            return model.infer(clips, actions=forced)

    names = config.action_names()
    flat = clips.flatten(0, 1)
    top = model.backbones[0]
    runs: dict[str, Callable[[], object]] = {"dynamic": dynamic, "full": lambda: top(flat)}
    for index, resolution in enumerate(config.resolutions[1:], start=1):
        runs[f"res{resolution}"] = (lambda net, r: lambda: net(resize_frames(flat, r, mode=model.resize_mode)))(
            model.backbones[index], resolution)
    runs["policy"] = lambda: model.decide(clips, mode="argmax")
    rounds = _time_rounds(runs, repeats=args.repeats)
    seconds = {name: statistics.median(values) for name, values in rounds.items()}
    # max/min over the rounds: far above 1 means other processes competed for the cores
    spread = {name: max(values) / min(values) for name, values in rounds.items()}

    costs = arnet_costs(model)
    flops_dynamic = float(costs.video_gflops(actions).mean())
    flops_full = frames * costs.action_gflops[0]
    usage = actions.mean(dim=(0, 1))
    wall_saving = 1 - seconds["dynamic"] / seconds["full"]
    flops_saving = 1 - flops_dynamic / flops_full
    ratio = wall_saving / flops_saving if flops_saving else float("nan")
    n_frames = clips.shape[0] * frames
    report = {
        "method": "arnet",
        "source": source,
        "resolutions": list(config.resolutions),
        "backbones": list(config.backbones),
        "policy_input_size": config.policy_input_size,
        "frames": frames,
        "videos": int(clips.shape[0]),
        "threads": args.threads,
        "repeats": args.repeats,
        "usage": {name: float(usage[k]) for k, name in enumerate(names)},
        "seconds_full": seconds["full"],
        "seconds_dynamic": seconds["dynamic"],
        "ms_per_frame": {name: 1e3 * t / n_frames for name, t in seconds.items()},
        "round_spread": spread,
        "gflops_per_video_full": flops_full,
        "gflops_per_video_dynamic": flops_dynamic,
        "gflops_per_video_dynamic_paper": float(costs.paper_video_gflops(actions).mean()),
        "policy_gflops_per_frame": costs.policy_gflops_per_frame,
        "action_gflops": dict(zip(names, costs.action_gflops)),
        "wall_saving": wall_saving,
        "flops_saving": flops_saving,
        "saving_ratio": ratio,
        "target": ARNET_TARGET,
        "meets_target": bool(ratio >= ARNET_TARGET),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    nets = ", ".join(f"{b}@{r}" for b, r in zip(config.backbones, config.resolutions))
    print(f"AR-Net {nets}, policy @{config.policy_input_size}; {report['videos']} videos x {frames} frames, "
          f"{args.threads} threads, median of {args.repeats}")
    print(f"decisions: {source}; usage " + ", ".join(f"{n} {u:.2f}" for n, u in report["usage"].items()))
    print(f"full (top backbone on every frame): {seconds['full']:.3f} s, {flops_full:.3f} GFLOPs/video")
    print(f"dynamic (ARNet.infer):              {seconds['dynamic']:.3f} s, {flops_dynamic:.3f} GFLOPs/video "
          f"(paper formula {report['gflops_per_video_dynamic_paper']:.3f}; policy {costs.policy_gflops_per_frame:.4f}/frame)")
    print("ms per frame: " + ", ".join(f"{n} {t:.2f}" for n, t in report["ms_per_frame"].items()))
    print("max/min over rounds: " + ", ".join(f"{n} {r:.2f}" for n, r in spread.items()))
    print(f"wall-clock saving {wall_saving:.3f}, FLOPs saving {flops_saving:.3f}, ratio {ratio:.3f} "
          f"(target >= {ARNET_TARGET}: {'met' if report['meets_target'] else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
