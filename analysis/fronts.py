"""Several runs' accuracy/GFLOPs fronts on one figure (by method, data set, or run).

Each run folder's completed feasible trials give its Pareto front (searchlab.pareto, the report's
rule); its baselines are drawn as small markers in the same colour. Colour groups runs by
``--by``: ``method`` (the trials' method), ``data`` (the sweep's data source and manifest) or
``run`` (each run its own colour). The legend names each run and its knee's trial number.

    python analysis/fronts.py runs/demo runs/demo-arnet --by method --out analysis/fronts.png
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from searchlab.pareto import knee_point, pareto_front  # noqa: E402
from searchlab.results import BaselinesTable, TrialsTable  # noqa: E402

OBJECTIVES = {"accuracy": "max", "gflops": "min"}


def run_front(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, object | None]:
    """(front sorted by GFLOPs, the run's baselines, the knee's index) of a run folder."""
    table = TrialsTable.in_run(run_dir)
    if not table.path.is_file():
        raise FileNotFoundError(f"{table.path} is missing: is {run_dir} a sweep's run folder?")
    frame = table.read()
    done = frame[(frame["status"] == "completed") & ~frame["feasible"].eq(False).fillna(False).astype(bool)]
    done = done.dropna(subset=list(OBJECTIVES))
    front = done[pareto_front(done, OBJECTIVES)].sort_values("gflops") if not done.empty else done
    knee = knee_point(done, OBJECTIVES) if not done.empty else None
    return front, BaselinesTable.in_run(run_dir).read(), knee


def group_of(run_dir: Path, front: pd.DataFrame, by: str) -> str:
    if by == "run":
        return run_dir.as_posix()
    if by == "method":
        methods = sorted(set(front["method"].dropna())) if not front.empty else []
        return "+".join(methods) or "unknown method"
    try:
        data = json.loads((run_dir / "sweep.json").read_text())["base"]["data"]
        return f"{data.get('source', '?')} ({Path(str(data['manifest'])).name})"
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown data"


def plot(run_dirs: Sequence[Path], *, by: str, out: Path) -> list[str]:
    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=110)
    colours: dict[str, str] = {}
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lines = []
    for run_dir in run_dirs:
        front, baselines, knee = run_front(run_dir)
        group = group_of(run_dir, front, by)
        colour = colours.setdefault(group, cycle[len(colours) % len(cycle)])
        label = f"{run_dir.name} [{group}]"
        if not front.empty:
            ax.step(front["gflops"], front["accuracy"], where="post", c=colour, lw=1.5)
            ax.scatter(front["gflops"], front["accuracy"], color=colour, s=30, label=label)
            if knee is not None and knee in front.index:
                ax.scatter(front.at[knee, "gflops"], front.at[knee, "accuracy"], s=140, facecolors="none",
                           edgecolors=colour, lw=1.5)
                label += f", knee trial {int(front.at[knee, 'number'])}"
        if not baselines.empty:
            ax.scatter(baselines["gflops"], baselines["accuracy"], marker="s", s=24, color=colour, alpha=0.5,
                       edgecolors="black", lw=0.5)
        lines.append(f"{label}: {len(front)} front points")
    ax.set_xlabel("GFLOPs per video (mean)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"accuracy/GFLOPs fronts by {by} (squares: baselines; circles: knees)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    plt.close(fig)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python analysis/fronts.py", description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="sweep run folders (each holds trials.parquet)")
    parser.add_argument("--by", choices=("method", "data", "run"), default="method", help="what a colour groups")
    parser.add_argument("--out", type=Path, default=Path("fronts.png"), help="PNG to write")
    args = parser.parse_args(argv)
    try:
        lines = plot(args.run_dirs, by=args.by, out=args.out)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    print(f"figure: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
