"""Wall-clock of VideoIQ's inference path under a fixed decision mix, next to its FLOPs ratio.

Forces the decisions with a fixed action tensor (so the timing measures the backbone part, not
the policy), times ``VideoIQ.infer`` against uniform full precision on the same clips, and prints
the ratio beside the FLOPs ratio that ``searchlab.flops`` predicts for the same decisions.

On CPU the quantised kernels are simulated (quantise-dequantise in float), so a 2- or 4-bit frame
costs at least as much time as a 32-bit one here: only skipping saves wall-clock time. Real low-bit
savings need integer kernels on the deployment hardware.

    .venv/bin/python bench/inference_savings.py [--backbone resnet18 --frames 16 --size 112
        --videos 4 --mix 0=0.3 2=0.3 32=0.4 --repeats 3 --threads 2 --json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Sequence

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
    parser.add_argument("--backbone", default="resnet18", help=f"one of {list_backbones()}")
    parser.add_argument("--bits", type=int, nargs="+", default=[32, 4, 2], help="backbone bit-widths B")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112, help="frame side in px")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--mix", nargs="+", default=["0=0.3", "2=0.3", "32=0.4"], help="BITS=FRACTION, 0 = skip")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
