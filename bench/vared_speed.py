"""VA-RED² speed: inference wall-clock next to its FLOPs, and the cost of a training step.

Three measurements, each a ratio of paths timed in one process on the same clips, in interleaved
rounds (every round times every path once, in alternating order, so load on the shared machine
affects them alike). A ratio is the median over rounds of the paired per-round ratios; seconds are
the median per path. ``os.getloadavg()`` before and after is printed beside the figures.

* ``--mode infer --artifact DIR`` (learned gates): the network of a VA-RED² stage artifact (``vared.pt`` +
  ``config.yaml``: a finetune/dynamic artifact, or a bundle of ``python -m searchlab.pick``) on the
  decoded evaluation clips of its data set (``eval_dataset`` with the artifact's data settings):
  ``dynamic`` is ``VaredNetwork.infer`` (every gated layer computes only the alternatives its gate
  weighted above zero), ``base`` the base network (``--base DIR``: the base stage's ``base.pt``; else
  the same network with every gate forced to the full alternative). The GFLOPs beside them are
  ``vared_costs``'s price of the decisions actually taken (mean per clip). Target: wall-clock saving
  (1 − time ratio) ≥ 0.7 × FLOPs saving (1 − GFLOPs ratio).
* ``--mode infer`` without ``--artifact`` (fixed decisions, random weights): every gate set to one
  decision through its β (fc2 silenced, β = +2 turns an alternative on, −2 off): ``base`` (forced to
  the full alternative), ``forced`` (forced to the cheapest, no gate), ``all_on`` and ``cheapest``
  (``infer`` with every alternative on / only the cheapest one), ``mixed`` (the training forward).
* ``--mode train``: one SGD step (forward, backward, step; ``stages.vared_step``) on a batch of
  random clips: ``base`` (the network with one option per dimension: no gate), ``dynamic`` (the mixed
  path, cross-entropy only: stage a), ``finetune`` (the mixed path plus λ_e·L_e: stage b), for each
  ``--train-nets`` entry. Target: dynamic / base ≤ 1.5 (the alternatives share the full conv).

Where the time goes (measured, to explain a missed target): ``--breakdown N`` (infer modes) times N
more interleaved passes per path with timing wrappers around the VA-RED² pieces and splits each pass
into the gated layers' convolutions, gates, cheap ops, the rest of the gated layers (grouping,
slicing, concatenating, mixing) and everything outside them; ``--profile N`` prints, per path, the N
aten ops with the most self CPU time over one pass.

    .venv/bin/python bench/vared_speed.py --artifact runs/demo-vared/trials/ID/finetune \\
        --manifest runs/data/synthetic/manifest.parquet [--base runs/cache/base/KEY] [--threads 1]
    .venv/bin/python bench/vared_speed.py [--backbone r2plus1d_18 --frames 8 --size 112 --clips 2]
    .venv/bin/python bench/vared_speed.py --mode train [--train-nets resnet10:8:56,r2plus1d_18:8:112 --batch 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from searchlab.methods.vared.costs import vared_costs
from searchlab.methods.vared.network import GateDecisions, VaredNetwork

TARGET_SAVING_RATIO = 0.7  # wall-clock saving >= 0.7 x FLOPs saving
TARGET_TRAIN_RATIO = 1.5  # dynamic training step <= 1.5 x the base network's


# -- timing (pure logic, tested in tests/test_bench_vared_speed.py) ----------------------------------
def round_orders(names: Sequence[str], rounds: int) -> list[list[str]]:
    """The order of the paths in each round: as given, then reversed, alternately."""
    return [list(names) if r % 2 == 0 else list(reversed(names)) for r in range(rounds)]


def interleaved(paths: Mapping[str, Callable[[], object]], *, rounds: int,
                sync: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Seconds of every path in every round, after one untimed warm-up call of each."""
    for run in paths.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in paths}
    for order in round_orders(list(paths), rounds):
        for name in order:
            sync()
            start = time.perf_counter()
            paths[name]()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(times: Mapping[str, Sequence[float]], name: str, reference: str) -> float:
    """Median over rounds of times[name] / times[reference] (each round's pair shared its load)."""
    return statistics.median(a / b for a, b in zip(times[name], times[reference], strict=True))


def savings(time_ratio: float, flops_ratio: float) -> dict[str, float]:
    """Wall-clock and FLOPs savings (1 − ratio), and the first over the second."""
    wall, flops = 1.0 - time_ratio, 1.0 - flops_ratio
    return {"wall_saving": wall, "flops_saving": flops,
            "saving_ratio": wall / flops if flops > 0 else float("nan")}


# -- shared helpers ------------------------------------------------------------------------------------
def load() -> tuple[float, float, float]:
    return tuple(round(x, 2) for x in os.getloadavg())  # type: ignore[return-value]


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def syncer(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def profile_table(run: Callable[[], object], *, rows: int) -> str:
    """The ``rows`` aten ops with the most self CPU time over one call of ``run``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


class Breakdown:
    """Where a forward's time goes, by timing wrappers around the VA-RED² pieces (``with`` block):
    ``gate`` (``Gate.forward``), ``conv`` (a gated layer's convolution: ``DynamicConv._conv``, or the
    plain conv a layer forced to the full alternative runs), ``cheap`` (``DepthwiseMap.forward``: Φ^c
    and Φ^t), ``gated`` (all of ``DynamicConv.forward``); the rest of a gated layer (grouping the
    samples by decision, slicing, concatenating, filling frames, mixing) is gated − gate − conv − cheap."""

    PARTS = ("gated", "gate", "conv", "cheap")

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(self.PARTS, 0.0)
        self._patches: list[Any] = []

    def _timed(self, owner: type, attribute: str, part: str) -> None:
        from unittest import mock

        original = getattr(owner, attribute)
        seconds = self.seconds

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[part] += time.perf_counter() - start

        self._patches.append(mock.patch.object(owner, attribute, timed))

    def __enter__(self) -> Breakdown:
        from searchlab.methods.vared.cheap_ops import DepthwiseMap
        from searchlab.methods.vared.dynamic_conv import DynamicConv
        from searchlab.methods.vared.gate import Gate

        self._timed(DynamicConv, "forward", "gated")
        self._timed(DynamicConv, "_conv", "conv")
        self._timed(Gate, "forward", "gate")
        self._timed(DepthwiseMap, "forward", "cheap")
        for patch in self._patches:
            patch.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for patch in reversed(self._patches):
            patch.stop()
        self._patches.clear()


def breakdown(paths: Mapping[str, Callable[[], object]], *, rounds: int, sync: Callable[[], None]) -> dict[str, dict[str, float]]:
    """Per path, the median over ``rounds`` interleaved passes of the seconds in each part
    (``Breakdown``) and ``total``; ``conv`` of a plain layer (forced to full, no gate, or the base
    network) is its whole ``gated`` time; ``layer_rest`` and ``outside`` (stem, pooling, ungated convs,
    BatchNorms outside the gated convs, fc) are derived."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
    for order in round_orders(list(paths), rounds):
        for name in order:
            with Breakdown() as parts:
                sync()
                start = time.perf_counter()
                paths[name]()
                sync()
                total = time.perf_counter() - start
            seconds = dict(parts.seconds, total=total)
            if seconds["conv"] == 0.0 and seconds["gate"] == 0.0:
                seconds["conv"] = seconds["gated"]
            samples[name].append(seconds)
    result = {}
    for name, rows in samples.items():
        median = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        median["layer_rest"] = median["gated"] - median["gate"] - median["conv"] - median["cheap"]
        median["outside"] = median["total"] - median["gated"]
        result[name] = median
    return result


def usage_shares(decisions: GateDecisions, names: Sequence[str]) -> dict[str, float]:
    """Share of (clip, gated layer) pairs whose largest computed alternative was each one."""
    from searchlab.methods.vared.evaluate import computed_alternatives

    counts = computed_alternatives(decisions).sum(dim=0)
    total = float(counts.sum()) or 1.0
    return {name: float(c) / total for name, c in zip(names, counts)}


# -- inference with fixed decisions ------------------------------------------------------------------
def set_decision(network: VaredNetwork, *, temporal: Sequence[bool], channel: Sequence[bool]) -> None:
    """Every gate outputs (about 0.96 where on, 0 where off) whatever the clip."""
    s_t, s_c = network.options
    signs = ([2.0 if on else -2.0 for on in temporal] if s_t > 1 else []) + \
            ([2.0 if on else -2.0 for on in channel] if s_c > 1 else [])
    with torch.no_grad():
        for _, layer in network.gated_layers():
            layer.gate.fc2.weight.zero_()
            layer.gate.beta.copy_(torch.tensor(signs))


def fixed_decisions(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(0)
    network = VaredNetwork(backbone=args.backbone, num_classes=400, frames=args.frames, size=args.size,
                           temporal_options=args.options, channel_options=args.options)
    costs = vared_costs(network)
    network = network.to(device).eval()
    clips = torch.randn(args.clips, args.frames, 3, args.size, args.size, device=device)
    s = args.options
    decisions = {"all_on": [True] * s, "cheapest": [False] * (s - 1) + [True]}

    def forced(alternative: tuple[int, int]) -> Callable[[], object]:
        def run() -> object:
            with network.force(alternative):
                return network(clips)
        return run

    def gated(name: str) -> Callable[[], object]:
        def run() -> object:
            set_decision(network, temporal=decisions[name], channel=decisions[name])
            return network.infer(clips)
        return run

    paths = {"base": forced((0, 0)), "forced": forced((s - 1, s - 1)), "all_on": gated("all_on"),
             "cheapest": gated("cheapest"), "mixed": lambda: network(clips)}
    gflops = {"base": costs.base_gflops(), "forced": costs.forced_gflops(s - 1, s - 1), "mixed": float("nan")}
    with torch.no_grad():
        for name in decisions:
            gflops[name] = float(costs.clip_gflops(paths[name]()[1]).mean())
        before = load()
        times = interleaved(paths, rounds=args.repeats, sync=syncer(device))
        after = load()
        parts = breakdown(paths, rounds=args.breakdown, sync=syncer(device)) if args.breakdown else {}
        profiles = {name: profile_table(paths[name], rows=args.profile) for name in paths} if args.profile else {}
    rows = {name: {"seconds": statistics.median(times[name]), "gflops": gflops[name],
                   "time_ratio": paired_ratio(times, name, "base"), "gflops_ratio": gflops[name] / gflops["base"]}
            for name in paths}
    for name in ("forced", "all_on", "cheapest"):
        rows[name].update(savings(rows[name]["time_ratio"], rows[name]["gflops_ratio"]))
    return {"mode": "infer-fixed", "backbone": args.backbone, "frames": args.frames, "size": args.size,
            "clips": args.clips, "options": s, "rows": rows, "load_before": before, "load_after": after,
            "breakdown": parts, "profiles": profiles}


# -- inference with the learned gates of an artifact -------------------------------------------------
def read_artifact_config(folder: Path) -> dict[str, Any]:
    import yaml

    path = folder / "config.yaml"
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing: --artifact needs a VA-RED² stage artifact or bundle folder")
    config = yaml.safe_load(path.read_text())
    if config.get("method") != "vared" or "data" not in config or "vared" not in config:
        raise SystemExit(f"error: {path} is not a VA-RED² artifact's configuration (method {config.get('method')!r})")
    return config


def eval_clips(config: Mapping[str, Any], *, manifest: str, root: str | None, split: str, videos: int) -> tuple[Any, Any, torch.Tensor]:
    """(DataConfig, Manifest, the first ``videos`` videos' evaluation views (N, T, 3, S, S))."""
    from searchlab.config import DataConfig
    from searchlab.data.manifest import read_manifest
    from searchlab.train.evaluate import eval_dataset

    data = DataConfig.model_validate({**config["data"], "manifest": manifest})
    data_root = Path(root) if root else Path(manifest).parent
    table = read_manifest(manifest, data_root=data_root)
    dataset = eval_dataset(data, manifest=table, root=data_root, split=split, seed=int(config.get("seed", 0)))
    count = len(dataset) // dataset.views_per_video if videos <= 0 else min(videos, len(dataset) // dataset.views_per_video)
    frames = torch.stack([dataset[i]["frames"] for i in range(count * dataset.views_per_video)])
    return data, table, frames


def learned_gates(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from searchlab.methods.vared.build import load_network
    from searchlab.methods.vared.config import VaredConfig

    folder = Path(args.artifact)
    config = read_artifact_config(folder)
    manifest = args.manifest or config["data"]["manifest"]
    if not Path(manifest).is_file():
        raise SystemExit(f"error: manifest {manifest} not found; pass --manifest (a stage artifact records it "
                         "relative to the data root)")
    vared = VaredConfig.model_validate(config["vared"])
    data, table, frames = eval_clips(config, manifest=manifest, root=args.root, split=args.split, videos=args.videos)
    shape = {"num_classes": table.num_classes, "frames": data.frames, "size": data.crop_size, "device": device}
    network = load_network(folder, config=vared, **shape).eval()
    costs = vared_costs(network)
    if args.base:
        base_config = read_artifact_config(Path(args.base))
        base_vared = VaredConfig.model_validate(base_config["vared"])
        base = load_network(args.base, config=base_vared, gates=False, **shape).eval()
        base_gflops, base_label = vared_costs(base).base_gflops(), f"{args.base}/base.pt"
    else:
        base, base_gflops, base_label = None, costs.base_gflops(), "the same network, every gate forced to full"
    frames = frames.to(device)
    batches = list(frames.split(args.batch))

    def dynamic() -> list[GateDecisions]:
        return [network.infer(batch)[1] for batch in batches]

    def forced_full() -> object:
        with network.force((0, 0)):
            return [network(batch) for batch in batches]

    paths: dict[str, Callable[[], object]] = {
        "base": (lambda: [base(batch) for batch in batches]) if base is not None else forced_full, "dynamic": dynamic}
    with torch.no_grad():
        taken = dynamic()
        clip_gflops = torch.cat([torch.from_numpy(costs.clip_gflops(d)) for d in taken])
        decisions = GateDecisions(temporal=torch.cat([d.temporal for d in taken]).cpu(),
                                  channel=torch.cat([d.channel for d in taken]).cpu())
        before = load()
        times = interleaved(paths, rounds=args.repeats, sync=syncer(device))
        after = load()
        parts = breakdown(paths, rounds=args.breakdown, sync=syncer(device)) if args.breakdown else {}
        profiles = {name: profile_table(paths[name], rows=args.profile) for name in paths} if args.profile else {}
    dynamic_gflops = float(clip_gflops.mean())
    time_ratio, flops_ratio = paired_ratio(times, "dynamic", "base"), dynamic_gflops / base_gflops
    result = savings(time_ratio, flops_ratio)
    return {"mode": "infer-artifact", "artifact": str(folder), "stage": config.get("stage"), "base": base_label,
            "backbone": vared.backbone, "frames": data.frames, "size": data.crop_size, "split": args.split,
            "clips": len(frames), "batch": args.batch, "lambda_e": vared.lambda_e,
            "seconds": {name: statistics.median(t) for name, t in times.items()},
            "per_clip_ms": {name: 1000 * statistics.median(t) / len(frames) for name, t in times.items()},
            "gflops": {"base": base_gflops, "dynamic": dynamic_gflops,
                       "dynamic_p5": float(clip_gflops.quantile(0.05)), "dynamic_p95": float(clip_gflops.quantile(0.95))},
            "usage": usage_shares(decisions, vared.alternative_names()),
            "time_ratio": time_ratio, "gflops_ratio": flops_ratio, **result,
            "target": TARGET_SAVING_RATIO, "met": bool(result["saving_ratio"] >= TARGET_SAVING_RATIO),
            "rounds": {name: [round(x, 4) for x in t] for name, t in times.items()},
            "load_before": before, "load_after": after, "breakdown": parts, "profiles": profiles}


# -- the training step -------------------------------------------------------------------------------
def parse_nets(text: str) -> list[tuple[str, int, int]]:
    """"backbone:frames:size,..." -> [(backbone, frames, size), ...]."""
    nets = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        parts = item.split(":")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise argparse.ArgumentTypeError(f"{item!r} is not backbone:frames:size (e.g. resnet10:8:56)")
        nets.append((parts[0], int(parts[1]), int(parts[2])))
    if not nets:
        raise argparse.ArgumentTypeError("no network given")
    return nets


def training_step(args: argparse.Namespace, device: torch.device, backbone: str, frames: int, size: int) -> dict[str, Any]:
    from searchlab.methods.vared.config import VaredConfig
    from searchlab.methods.vared.stages import vared_step

    config = VaredConfig(backbone=backbone, temporal_options=args.options, channel_options=args.options,
                         lambda_e=args.lambda_e)
    torch.manual_seed(0)
    dynamic = VaredNetwork(backbone=backbone, num_classes=args.classes, frames=frames, size=size,
                           temporal_options=args.options, channel_options=args.options)
    base = VaredNetwork(backbone=backbone, num_classes=args.classes, frames=frames, size=size,
                        temporal_options=1, channel_options=1)
    base.load_state_dict(dynamic.state_dict(), strict=False)  # the same backbone weights
    fractions = vared_costs(dynamic).layer_fractions().to(device)
    clips = torch.randn(args.batch, frames, 3, size, size, device=device)
    labels = torch.randint(0, args.classes, (args.batch,), device=device)

    def step(network: VaredNetwork, lambda_e: float) -> Callable[[], object]:
        network = network.to(device).train()
        # lr 0 keeps the weights (and so the gates' weights) as they are from round to round; the step
        # still runs the whole update (momentum, weight decay, Nesterov)
        optimizer = torch.optim.SGD(network.parameters(), lr=0.0, momentum=config.momentum, nesterov=config.nesterov,
                                    weight_decay=config.weight_decay)
        return lambda: vared_step(model=network, network=network, optimizer=optimizer, frames=clips, labels=labels,
                                  lambda_e=lambda_e, layer_fractions=fractions, config=config)

    paths = {"base": step(base, 0.0), "dynamic": step(dynamic, 0.0), "finetune": step(dynamic, args.lambda_e)}
    before = load()
    times = interleaved(paths, rounds=args.repeats, sync=syncer(device))
    after = load()
    profiles = {name: profile_table(paths[name], rows=args.profile) for name in paths} if args.profile else {}
    ratios = {name: paired_ratio(times, name, "base") for name in ("dynamic", "finetune")}
    return {"mode": "train", "backbone": backbone, "frames": frames, "size": size, "batch": args.batch,
            "options": args.options, "lambda_e": args.lambda_e,
            "seconds": {name: statistics.median(t) for name, t in times.items()}, "ratio": ratios,
            "target": TARGET_TRAIN_RATIO, "met": {name: bool(r <= TARGET_TRAIN_RATIO) for name, r in ratios.items()},
            "rounds": {name: [round(x, 4) for x in t] for name, t in times.items()},
            "load_before": before, "load_after": after, "profiles": profiles}


# -- printing --------------------------------------------------------------------------------------
def print_report(report: Mapping[str, Any]) -> None:
    head = f"threads {report['threads']}, {report['device']}, load {report['load_before']} -> {report['load_after']}"
    mode = report["mode"]
    if mode == "infer-fixed":
        print(f"fixed decisions: {report['backbone']}, {report['clips']} clips of {report['frames']} x "
              f"{report['size']}px, S={report['options']}; {head}")
        print(f"{'path':>9} {'s/batch':>9} {'time/base':>10} {'GFLOPs/clip':>12} {'GFLOPs/base':>12} {'saving ratio':>13}")
        for name, row in report["rows"].items():
            print(f"{name:>9} {row['seconds']:>9.3f} {row['time_ratio']:>10.3f} {row['gflops']:>12.3f} "
                  f"{row['gflops_ratio']:>12.3f} {row.get('saving_ratio', float('nan')):>13.2f}")
    elif mode == "infer-artifact":
        print(f"learned gates: {report['artifact']} ({report['stage']}, λ_e {report['lambda_e']}), "
              f"{report['backbone']} {report['frames']} x {report['size']}px, {report['clips']} {report['split']} clips "
              f"in batches of {report['batch']}; base: {report['base']}; {head}")
        print("usage: " + ", ".join(f"{k} {v:.1%}" for k, v in report["usage"].items()))
        g = report["gflops"]
        print(f"{'path':>8} {'s/pass':>8} {'ms/clip':>8} {'GFLOPs/clip':>12}")
        for name in ("base", "dynamic"):
            print(f"{name:>8} {report['seconds'][name]:>8.3f} {report['per_clip_ms'][name]:>8.2f} {g[name]:>12.4f}")
        print(f"dynamic GFLOPs/clip p5 {g['dynamic_p5']:.4f}, p95 {g['dynamic_p95']:.4f}")
        print(f"time ratio {report['time_ratio']:.3f}, GFLOPs ratio {report['gflops_ratio']:.3f}: wall-clock saving "
              f"{report['wall_saving']:.3f}, FLOPs saving {report['flops_saving']:.3f}, ratio {report['saving_ratio']:.2f} "
              f"(target >= {report['target']}): {'MET' if report['met'] else 'MISSED'}")
    else:
        print(f"training step: {report['backbone']} {report['frames']} x {report['size']}px, batch {report['batch']}, "
              f"S={report['options']}, λ_e {report['lambda_e']}; {head}")
        for name in ("base", "dynamic", "finetune"):
            ratio = f"  x{report['ratio'][name]:.3f} of base ({'MET' if report['met'][name] else 'MISSED'}, " \
                    f"target <= {report['target']})" if name in report["ratio"] else ""
            print(f"{name:>9} {report['seconds'][name]:>8.3f} s/step{ratio}")
    if report.get("breakdown"):
        keys = ("total", "outside", "gated", "conv", "gate", "cheap", "layer_rest")
        print(f"breakdown, ms per pass (median of {report['breakdown_rounds']} passes under timing wrappers): "
              "outside = not in a gated layer; gated = in gated layers = conv + gate + cheap + layer_rest")
        print(f"{'path':>9} " + " ".join(f"{key:>10}" for key in keys))
        for name, parts in report["breakdown"].items():
            print(f"{name:>9} " + " ".join(f"{1000 * parts[key]:>10.1f}" for key in keys))
    for name, table in report.get("profiles", {}).items():
        print(f"\nprofile of {name}:\n{table}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("infer", "train"), default="infer")
    parser.add_argument("--artifact", help="VA-RED² stage artifact or bundle folder (vared.pt + config.yaml): learned gates")
    parser.add_argument("--base", help="base stage artifact folder (base.pt + config.yaml); default: forced to full")
    parser.add_argument("--manifest", help="manifest of the artifact's data set (default: its config's data.manifest)")
    parser.add_argument("--root", help="data root of the manifest's paths (default: its folder)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--videos", type=int, default=0, help="first N videos of the split (0: all)")
    parser.add_argument("--batch", type=int, default=None,
                        help="clips per batch (artifact: default 1, one view per video as evaluation runs; train: default 4)")
    parser.add_argument("--backbone", default="r2plus1d_18", help="fixed decisions: backbone")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--clips", type=int, default=2, help="fixed decisions: clips per batch")
    parser.add_argument("--options", type=int, default=2, help="S on both dimensions (fixed decisions, train)")
    parser.add_argument("--train-nets", type=parse_nets, default=parse_nets("resnet10:8:56,r2plus1d_18:8:112"),
                        help="train: backbone:frames:size,...")
    parser.add_argument("--classes", type=int, default=400, help="train: classes of the random labels")
    parser.add_argument("--lambda-e", type=float, default=0.8, help="train: λ_e of the finetune step")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--breakdown", type=int, default=0,
                        help="infer: also time N passes per path split into conv / gate / cheap ops / rest / outside")
    parser.add_argument("--profile", type=int, default=0, help="print the N ops with most self CPU time per path")
    parser.add_argument("--json", help="also write the report(s) as JSON to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    common = {"threads": args.threads, "device": machine(device), "torch": torch.__version__,
              "breakdown_rounds": args.breakdown}
    if args.mode == "train":
        args.batch = args.batch or 4
        measurements = [lambda net=net: training_step(args, device, *net) for net in args.train_nets]
    elif args.artifact:
        args.batch = args.batch or 1
        measurements = [lambda: learned_gates(args, device)]
    else:
        measurements = [lambda: fixed_decisions(args, device)]
    reports = []
    for i, measure in enumerate(measurements):  # each printed as soon as it is measured
        reports.append({**measure(), **common})
        if i:
            print()
        print_report(reports[-1])
        sys.stdout.flush()
    if args.json:
        Path(args.json).write_text(json.dumps(reports if len(reports) > 1 else reports[0], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
