"""`python -m searchlab.pick RUN_DIR (--max-gflops X | --min-accuracy Y | --knee) --out DIR`.

Chooses one configuration from a sweep's completed, feasible trials and exports a bundle that
`searchlab.deploy.load(DIR)` runs: the resolved configuration, the weights its method declares
(`Method.bundle.files`), the class names and a card (JSON and Markdown) with accuracy, GFLOPs
mean/p5/p95, memory and action usage.
The bundle names no absolute path (the run by its name, data paths relative to the data root), and
carries a marker (.searchlab-bundle): --out replaces only a folder with that marker, or an empty one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from searchlab.atomic_dir import staged_directory
from searchlab.methods import get_method
from searchlab.pareto import knee_point, pareto_front
from searchlab.results import TrialsTable, decoded_json
from searchlab.run_dir import (
    BUNDLE_MARKER,
    has_marker,
    portable_config_yaml,
    read_sweep_snapshot,
    resolve_in,
    write_marker,
)

OBJECTIVES = {"accuracy": "max", "gflops": "min"}


class PickError(RuntimeError):
    """Nothing satisfies the request; the message says what the run has instead."""


def candidates(run_dir: Path) -> pd.DataFrame:
    """Completed, feasible trials whose objectives are finite numbers, and their decoded details."""
    table = TrialsTable.in_run(run_dir)
    if not table.path.is_file():
        raise PickError(f"{table.path} does not exist: run a sweep first (python -m searchlab.sweep FILE)")
    frame = table.read()
    frame = frame[(frame["status"] == "completed") & (frame["feasible"].fillna(True).astype(bool))]
    frame = frame[np.isfinite(frame[list(OBJECTIVES)].to_numpy(dtype=float)).all(axis=1)]
    if frame.empty:
        raise PickError(f"{run_dir} has no completed feasible trial yet")
    frame = frame.assign(details=decoded_json(frame, "metrics_extra"), params_decoded=decoded_json(frame, "params"))
    return frame


def choose(frame: pd.DataFrame, *, max_gflops: float | None, min_accuracy: float | None, knee: bool) -> pd.Series:
    """The trial the request asks for, chosen among the Pareto front (ties: the earlier trial)."""
    front = frame[pareto_front(frame, OBJECTIVES)]
    if knee:
        return front.loc[knee_point(front, OBJECTIVES)]
    if max_gflops is not None:
        within = front[front["gflops"] <= max_gflops]
        if within.empty:
            cheapest = front.sort_values(["gflops", "number"]).iloc[0]
            raise PickError(f"no trial runs within {max_gflops:g} GFLOPs; the cheapest, trial "
                            f"{int(cheapest['number'])}, needs {cheapest['gflops']:.3g} GFLOPs "
                            f"(accuracy {cheapest['accuracy']:.4g})")
        return within.sort_values(["accuracy", "number"], ascending=[False, True]).iloc[0]
    assert min_accuracy is not None
    good = front[front["accuracy"] >= min_accuracy]
    if good.empty:
        best = front.sort_values(["accuracy", "number"], ascending=[False, True]).iloc[0]
        raise PickError(f"no trial reaches accuracy {min_accuracy:g}; the best, trial {int(best['number'])}, reaches "
                        f"{best['accuracy']:.4g} at {best['gflops']:.3g} GFLOPs")
    return good.sort_values(["gflops", "number"]).iloc[0]


def card_of(row: pd.Series, *, run_dir: Path) -> dict[str, Any]:
    details = row["details"] or {}
    return {
        # the run by its folder's name: a path would name the machine that exported the bundle
        "source": {"run": run_dir.resolve().name, "trial_id": row["trial_id"], "number": int(row["number"])},
        "method": row["method"],
        "accuracy": float(row["accuracy"]),
        "accuracy_metric": "mAP" if "map" in details else "top-1",
        "gflops_mean": float(row["gflops"]),
        "gflops_p5": float(row["gflops_p5"]),
        "gflops_p95": float(row["gflops_p95"]),
        "memory_mb": float(row["memory_mb"]),
        "skip_fraction": float(row["skip_fraction"]),
        "action_usage": details.get("action_usage", {}),
        "params": row["params_decoded"] or {},
    }


def card_markdown(card: dict[str, Any], config: dict[str, Any]) -> str:
    usage = ", ".join(f"{action}: {share:.0%}" for action, share in card["action_usage"].items())
    method = get_method(config["method"])
    return "\n".join([
        f"# searchlab bundle: trial {card['source']['number']} of run {card['source']['run']}",
        "",
        "| | |",
        "|---|---|",
        f"| accuracy ({card['accuracy_metric']}) | {card['accuracy']:.4f} |",
        f"| GFLOPs per video, mean | {card['gflops_mean']:.3f} |",
        f"| GFLOPs per video, p5 / p95 | {card['gflops_p5']:.3f} / {card['gflops_p95']:.3f} |",
        f"| memory (MiB of stored parameters) | {card['memory_mb']:.2f} |",
        f"| frames skipped | {card['skip_fraction']:.1%} |",
        f"| action usage | {usage} |",
        f"| method | {method.name}: {method.description} |",
        *(f"| {name} | {value} |" for name, value in method.bundle.card_rows(config)),
        f"| frames x size | {config['data']['frames']} x {config['data']['crop_size']} px |",
        "",
        "GFLOPs are counted from the decisions the policy took on the held-out split, policy included;",
        "accuracy is measured on the held-out split. Load with `searchlab.deploy.load(DIR)`.",
        "",
    ])


def check_out(out: Path) -> None:
    """Refuse an --out that holds anything but a bundle of ours, so a mistyped --out never deletes data."""
    if not (out.exists() or out.is_symlink()) or has_marker(out, BUNDLE_MARKER):
        return
    if out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
        return
    what = "a symbolic link" if out.is_symlink() else "a non-empty folder" if out.is_dir() else "a file"
    raise PickError(f"{out} is {what} but not a searchlab bundle (no {BUNDLE_MARKER} marker), so it will not be "
                    "replaced; choose another --out, or move it away yourself")


def export_bundle(row: pd.Series, *, run_dir: Path, out: Path) -> Path:
    """Write the bundle into `out` atomically (a temp folder renamed into place).

    `out` may be absent, an empty folder or a bundle `pick` wrote (replaced); anything else is
    refused (`check_out`).
    """
    check_out(out)
    method = get_method(row["method"])
    artifacts = (row["details"] or {}).get("artifacts") or {}
    stages = {stage for stage, _ in method.bundle.files.values()}
    if not stages <= set(artifacts):
        raise PickError(f"trial {row['trial_id']} did not record its artifact folders; re-run the sweep")
    # relative to the run folder (absolute in runs made before artifacts were portable)
    sources = {name: resolve_in(run_dir, artifacts[stage]) / file for name, (stage, file) in method.bundle.files.items()}
    missing = [f"{method.stage(stage).description} ({stage}) {sources[name]}"
               for name, (stage, _) in method.bundle.files.items() if not sources[name].is_file()]
    if missing:
        raise PickError(f"trial {row['trial_id']}: missing {', '.join(missing)}; re-run the trial (--resume) "
                        "or pick another one")
    class_names = (row["details"] or {}).get("class_names")
    if class_names is None:
        raise PickError(f"trial {row['trial_id']} did not record its class names; re-run the sweep")
    # the trial's configuration is the sweep's base with the trial's parameters, as the trial had it
    config = read_sweep_snapshot(run_dir).base.with_overrides(row["params_decoded"] or {}).model_dump(mode="json")
    card = card_of(row, run_dir=run_dir)
    with staged_directory(out) as staging:
        # copyfile, not copy2: the bundle's files get the default mode, not the (maybe private) source's
        for name, source in sources.items():
            shutil.copyfile(source, staging / name)
        # written again rather than copied: a run made before artifacts were portable has absolute paths
        (staging / "config.yaml").write_text(portable_config_yaml(config))
        (staging / "classes.json").write_text(json.dumps(list(class_names)))
        (staging / "card.json").write_text(json.dumps(card, indent=2))
        (staging / "card.md").write_text(card_markdown(card, config))
        write_marker(staging, BUNDLE_MARKER, run=card["source"]["run"], trial_id=card["source"]["trial_id"])
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m searchlab.pick", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--max-gflops", type=float, help="most accurate front point within this GFLOPs budget")
    which.add_argument("--min-accuracy", type=float, help="cheapest front point with at least this accuracy")
    which.add_argument("--knee", action="store_true", help="the knee of the accuracy/GFLOPs front")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        frame = candidates(args.run_dir)
        row = choose(frame, max_gflops=args.max_gflops, min_accuracy=args.min_accuracy, knee=args.knee)
        out = export_bundle(row, run_dir=args.run_dir, out=args.out)
    except PickError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    card = json.loads((out / "card.json").read_text())
    print(f"picked trial {card['source']['number']}: accuracy {card['accuracy']:.4f}, "
          f"{card['gflops_mean']:.3f} GFLOPs (p95 {card['gflops_p95']:.3f}), {card['memory_mb']:.2f} MiB")
    print(f"bundle: {out} (load with searchlab.deploy.load('{out}'))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
