"""Overhead of any-precision joint training over plain full-precision training.

One any-precision joint step (forward + backward at every bit-width of B = {32, 4, 2}, one
optimizer step) against three full-precision steps of the same torchvision backbone, which do the
same number of forward/backward passes. The ratio is what the quantisers, switchable BN and the
per-bit α cost; target <= 1.25. Measurements alternate between the two so a shared machine's
load affects both alike; the figures are medians over ``--repeats`` after ``--warmup`` steps, of
wall time and of process CPU time. ``--threads`` defaults to 1: on cores shared with other jobs,
multi-threaded timings mostly measure how long the scheduler takes to wake the worker threads at
each of the many small elementwise ops, not the work they do.

    python bench/quant_overhead.py [--backbone resnet18] [--batch 8] [--size 112] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from searchlab.models.registry import create_backbone, create_teacher, list_backbones

TARGET = 1.25
BITS = (32, 4, 2)


def _anyprec_step(name: str, *, classes: int, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    net = create_backbone(name, num_classes=classes, bit_widths=BITS, alpha_init=4.0).train()
    groups = net.optimizer_param_groups(
        lr=0.01, weight_decay=5e-4, alpha_lr={4: 0.01, 2: 0.01}, alpha_wd={4: 5e-4, 2: 5e-3}
    )
    opt = torch.optim.SGD(groups, lr=0.01, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        for bits in BITS:
            F.cross_entropy(net(x, bits), y).backward()
        opt.step()

    return step


def _full_precision_steps(name: str, *, classes: int, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    net = create_teacher(name, num_classes=classes).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def steps() -> None:
        for _ in BITS:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()

    return steps


def _seconds(fn: Callable[[], None]) -> tuple[float, float]:
    """Wall and process CPU seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18", choices=list_backbones())
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, args.classes, (args.batch,))
    anyprec = _anyprec_step(args.backbone, classes=args.classes, x=x, y=y)
    full = _full_precision_steps(args.backbone, classes=args.classes, x=x, y=y)
    for _ in range(args.warmup):
        anyprec()
        full()
    t_any, t_full = [], []
    for _ in range(args.repeats):
        t_any.append(_seconds(anyprec))
        t_full.append(_seconds(full))
    any_wall, any_cpu = (statistics.median(t) for t in zip(*t_any))
    full_wall, full_cpu = (statistics.median(t) for t in zip(*t_full))
    result = {
        "backbone": args.backbone,
        "batch": args.batch,
        "size": args.size,
        "bits": list(BITS),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "anyprec_step_s": any_wall,
        "full_precision_3_steps_s": full_wall,
        "ratio": any_wall / full_wall,
        "anyprec_step_cpu_s": any_cpu,
        "full_precision_3_steps_cpu_s": full_cpu,
        "ratio_cpu": any_cpu / full_cpu,
        "target": TARGET,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{args.backbone}, batch {args.batch}, {args.size} px, {result['threads']} threads, median of "
        f"{args.repeats}: any-precision step (B={list(BITS)}) {any_wall:.3f} s wall / {any_cpu:.3f} s CPU; "
        f"3 full-precision steps {full_wall:.3f} s wall / {full_cpu:.3f} s CPU; ratio {result['ratio']:.3f} "
        f"wall, {result['ratio_cpu']:.3f} CPU (target <= {TARGET})"
    )


if __name__ == "__main__":
    main()
