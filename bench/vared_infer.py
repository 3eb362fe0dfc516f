"""Wall-clock of VA-RED²'s inference path under fixed gate decisions, next to its FLOPs.

Builds a ``VaredNetwork`` (random weights), sets every gate to one decision by its β (fc2 silenced,
β = +2 turns an alternative on, −2 off), and times on the same clips:

* ``base``: the network with every gate forced to the full alternative (the plain backbone);
* ``all_on``: ``infer`` with every alternative on (the full conv plus every cheap op and the mixing);
* ``cheapest``: ``infer`` with only the cheapest alternative on in each dimension;
* ``forced``: every gate forced to the cheapest alternative (no gate runs);
* ``mixed``: the training forward (``forward``), for reference,

each with the GFLOPs per clip that ``vared_costs`` counts for it, and the wall-clock ratio to base
(timed first and last, the faster of the two: the first timed path pays for warming up).

    .venv/bin/python bench/vared_infer.py [--backbone r2plus1d_18 --frames 8 --size 112 --clips 2
        --repeats 3 --threads 2 --device cpu --json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable, Sequence

import torch

from searchlab.methods.vared.costs import vared_costs
from searchlab.methods.vared.network import VaredNetwork


def set_decision(network: VaredNetwork, *, temporal: Sequence[bool], channel: Sequence[bool]) -> None:
    """Every gate outputs (about 0.96 where on, 0 where off) whatever the clip."""
    s_t, s_c = network.options
    signs = ([2.0 if on else -2.0 for on in temporal] if s_t > 1 else []) + \
            ([2.0 if on else -2.0 for on in channel] if s_c > 1 else [])
    with torch.no_grad():
        for _, layer in network.gated_layers():
            layer.gate.fc2.weight.zero_()
            layer.gate.beta.copy_(torch.tensor(signs))


def seconds(run: Callable[[], object], *, repeats: int, device: torch.device) -> float:
    """Median wall-clock of ``run`` after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="r2plus1d_18")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--options", type=int, default=2, help="S on both dimensions")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    network = VaredNetwork(backbone=args.backbone, num_classes=400, frames=args.frames, size=args.size,
                           temporal_options=args.options, channel_options=args.options)
    costs = vared_costs(network)
    network = network.to(device).eval()
    clips = torch.randn(args.clips, args.frames, 3, args.size, args.size, device=device)
    s = args.options
    cheapest = [False] * (s - 1) + [True]
    rows: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        with network.force((0, 0)):
            rows["base"] = {"seconds": seconds(lambda: network(clips), repeats=args.repeats, device=device),
                            "gflops": costs.base_gflops()}
        with network.force((s - 1, s - 1)):
            rows["forced"] = {"seconds": seconds(lambda: network(clips), repeats=args.repeats, device=device),
                              "gflops": costs.forced_gflops(s - 1, s - 1)}
        for name, decision in (("all_on", [True] * s), ("cheapest", cheapest)):
            set_decision(network, temporal=decision, channel=decision)
            rows[name] = {"seconds": seconds(lambda: network.infer(clips), repeats=args.repeats, device=device),
                          "gflops": float(costs.clip_gflops(network.infer(clips)[1]).mean())}
        rows["mixed"] = {"seconds": seconds(lambda: network(clips), repeats=args.repeats, device=device),
                         "gflops": float("nan")}
        with network.force((0, 0)):  # base again, last: the first timed path paid for warming up
            rows["base"]["seconds"] = min(rows["base"]["seconds"],
                                          seconds(lambda: network(clips), repeats=args.repeats, device=device))
    for row in rows.values():
        row["time_ratio"] = row["seconds"] / rows["base"]["seconds"]
        row["gflops_ratio"] = row["gflops"] / rows["base"]["gflops"]
    report = {"backbone": args.backbone, "frames": args.frames, "size": args.size, "clips": args.clips,
              "options": s, "device": args.device if device.type == "cuda" else platform.processor() or "cpu",
              "threads": args.threads, "rows": rows}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.backbone}, {args.clips} clips of {args.frames} x {args.size}px, S={s}, {args.device}")
    print(f"{'path':>9} {'s/batch':>9} {'time/base':>10} {'GFLOPs/clip':>12} {'GFLOPs/base':>12}")
    for name, row in rows.items():
        print(f"{name:>9} {row['seconds']:>9.3f} {row['time_ratio']:>10.2f} {row['gflops']:>12.2f} "
              f"{row['gflops_ratio']:>12.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
