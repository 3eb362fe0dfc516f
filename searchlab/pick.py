"""`python -m searchlab.pick RUN_DIR (--max-gflops X | --min-accuracy Y | --knee | --trial N [--cost-bias λ]) --out DIR`.

Chooses one operating point from a sweep's completed, feasible trials and their curves (the first
three among the accuracy/GFLOPs front of every point; ``--trial N`` the trial numbered N, as the
report and optuna-dashboard number it, as trained or, with ``--cost-bias``, at that point of its curve)
and exports a bundle that `searchlab.deploy.load(DIR)` runs: the resolved configuration, the
weights its method declares (`Method.bundle.files`), the class names and a card (JSON and Markdown)
with accuracy, GFLOPs mean/p5/p95, memory, action usage, the input contract (frames, sampling, short
side, crop, normalisation, channel order, dtype), how the configuration was chosen, the data set and
the evaluation size, and a snippet that runs it.
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
from searchlab.cli import command_parser
from searchlab.curve import COST_BIAS
from searchlab.methods import get_method
from searchlab.pareto import knee_point, pareto_front
from searchlab.results import PointsTable, TrialsTable, decoded_json, with_points
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
    """The feasible operating points of completed trials (``with_points``: each trial as trained and its
    curve) whose objectives are finite numbers, and their decoded details."""
    table = TrialsTable.in_run(run_dir)
    if not table.path.is_file():
        raise PickError(f"{table.path} does not exist: run a sweep first (python -m searchlab.sweep FILE)")
    frame = with_points(table.read(), PointsTable.in_run(run_dir).read())
    frame = frame[(frame["status"] == "completed") & (frame["feasible"].fillna(True).astype(bool))]
    frame = frame[np.isfinite(frame[list(OBJECTIVES)].to_numpy(dtype=float)).all(axis=1)]
    if frame.empty:
        raise PickError(f"{run_dir} has no completed feasible trial yet")
    frame = frame.assign(details=decoded_json(frame, "metrics_extra"), params_decoded=decoded_json(frame, "params"))
    return frame


def trial_row(frame: pd.DataFrame, number: int, *, run_dir: Path, cost_bias: float = 0.0) -> pd.Series:
    """The completed, feasible trial numbered ``number`` at the point ``cost_bias`` of its curve (0: as
    trained); PickError says why another one cannot be exported."""
    rows = frame[frame["number"] == number]
    point = rows[rows["cost_bias"] == cost_bias]
    if not point.empty:
        return point.iloc[0]
    if not rows.empty:
        known = ", ".join(f"{b:g}" for b in sorted(rows["cost_bias"]))
        raise PickError(f"trial {number} has no feasible point at cost_bias {cost_bias:g}; its feasible points: "
                        f"cost_bias {known} (the report's front table and points.parquet list them)")
    every = TrialsTable.in_run(run_dir).read()
    found = every[every["number"] == number]
    if found.empty:
        numbers = sorted(int(n) for n in every["number"])
        raise PickError(f"{run_dir} has no trial {number}; its trials are numbered {_ranges(numbers)}")
    row = found.iloc[0]
    if row["status"] != "completed":
        reason = f" ({row['error']})" if isinstance(row["error"], str) and row["error"] else ""
        raise PickError(f"trial {number} is {row['status']}{reason}: only a completed trial can be exported")
    if row["feasible"] is not None and not pd.isna(row["feasible"]) and not bool(row["feasible"]):
        raise PickError(f"trial {number} is infeasible (violates the sweep's constraints: {row['violations']}); "
                        "pick a feasible trial")
    raise PickError(f"trial {number} has no finite accuracy and GFLOPs; pick another trial")


def _ranges(numbers: list[int]) -> str:
    if not numbers:
        return "(none)"
    return f"{numbers[0]}..{numbers[-1]}" if numbers == list(range(numbers[0], numbers[-1] + 1)) else str(numbers)


def point_name(row: pd.Series) -> str:
    """"trial 7" (as trained) or "trial 7 at cost_bias 2" (a point of its curve)."""
    return f"trial {int(row['number'])}" + (f" at cost_bias {row['cost_bias']:g}" if row["cost_bias"] else "")


def choose(frame: pd.DataFrame, *, max_gflops: float | None, min_accuracy: float | None, knee: bool) -> pd.Series:
    """The point the request asks for, chosen among the Pareto front of every point (ties: the earlier
    trial, then its smaller cost_bias)."""
    front = frame[pareto_front(frame, OBJECTIVES)]
    if knee:
        return front.loc[knee_point(front, OBJECTIVES)]
    if max_gflops is not None:
        within = front[front["gflops"] <= max_gflops]
        if within.empty:
            cheapest = front.sort_values(["gflops", "number", "cost_bias"]).iloc[0]
            raise PickError(f"nothing runs within {max_gflops:g} GFLOPs; the cheapest, {point_name(cheapest)}, needs {cheapest['gflops']:.3g} GFLOPs "
                            f"(accuracy {cheapest['accuracy']:.4g})")
        return within.sort_values(["accuracy", "number", "cost_bias"], ascending=[False, True, True]).iloc[0]
    assert min_accuracy is not None
    good = front[front["accuracy"] >= min_accuracy]
    if good.empty:
        best = front.sort_values(["accuracy", "number", "cost_bias"], ascending=[False, True, True]).iloc[0]
        raise PickError(f"nothing reaches accuracy {min_accuracy:g}; the best, {point_name(best)}, reaches "
                        f"{best['accuracy']:.4g} at {best['gflops']:.3g} GFLOPs")
    return good.sort_values(["gflops", "number", "cost_bias"]).iloc[0]


def selection_of(frame: pd.DataFrame, row: pd.Series, *, rule: str, run_dir: Path) -> dict[str, Any]:
    """How the configuration was chosen: the rule, among which trials, and where it stands on the front."""
    front = frame[pareto_front(frame, OBJECTIVES)]
    every = TrialsTable.in_run(run_dir).read()
    search: dict[str, Any] = {}
    try:
        sweep = read_sweep_snapshot(run_dir)
        search = {"sampler": sweep.search.sampler, "trials_planned": sweep.search.trials,
                  "objectives": dict(sweep.search.objectives), "constraints": list(sweep.search.constraints),
                  "searched": sorted(sweep.space)}
    except Exception:  # noqa: BLE001 (a run made before snapshots: the card says less)
        pass
    return {
        "rule": rule,
        "on_front": bool(row["point"] in set(front["point"])),
        "knee": bool(not front.empty and front.loc[knee_point(front, OBJECTIVES), "point"] == row["point"]),
        "front_numbers": sorted({int(n) for n in front["number"]}),
        "front_points": list(front.sort_values(["number", "cost_bias"])["point"]),
        "trials": len(every),
        "completed_feasible": int(frame["number"].nunique()),
        "points_feasible": len(frame),
        **search,
    }


def _split_size(manifest: str | Path, split: str) -> int | None:
    """Videos of ``split`` in the manifest; None where it cannot be read (moved, or another machine's)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        return int(pc.sum(pc.equal(pq.read_table(manifest, columns=["split"])["split"], split)).as_py() or 0)
    except Exception:  # noqa: BLE001 (the card then says the split, not its size)
        return None


def data_of(config: dict[str, Any], row: pd.Series, *, manifest: str | Path | None = None) -> dict[str, Any]:
    """The data set the trial was trained and evaluated on, and how many videos its figures cover."""
    details = row["details"] or {}
    data = config["data"]
    videos = details.get("eval_videos")
    if videos is None and manifest is not None:
        videos = _split_size(manifest, "val")
    return {
        "source": data.get("source"),
        "manifest": Path(str(data["manifest"])).name,
        "classes": len(details.get("class_names") or []),
        "evaluation_split": "val",
        "evaluation_videos": videos,
        "clips_per_video": data.get("eval_clips", 1),
        "crops_per_clip": data.get("eval_crops", 1),
        "metric": "mAP" if "map" in details else "top-1",
    }


def input_contract(config: dict[str, Any]) -> dict[str, Any]:
    """What ``predict`` takes, and what ``predict_video`` does to a video file to make it."""
    from searchlab.data.video import IMAGENET_MEAN, IMAGENET_STD

    data = config["data"]
    frames, crop = int(data["frames"]), int(data["crop_size"])
    clips, crops = data.get("eval_clips", 1), data.get("eval_crops", 1)
    if data.get("sampling", "tsn") == "dense":
        sampling = (f"dense: {frames} consecutive frames every {data['frame_stride']} frames, at evenly spaced "
                    "starts (the centre one for one clip)")
    else:
        sampling = f"TSN: the video split into {frames} equal segments, the centre frame of each"
    return {
        "shape": f"(N, {frames}, 3, {crop}, {crop})",
        "frames": frames,
        "sampling": f"{sampling} ({clips} clip(s) x {crops} crop(s) per video, probabilities averaged)",
        "short_side": int(data["eval_short_side"]),
        "crop": (f"centre {crop}x{crop}" if crops == 1
                 else f"{crop}x{crop} left/centre/right (top/centre/bottom for portrait videos)"),
        "channel_order": "RGB",
        "dtype": "float32",
        "value_range": "pixels / 255, then normalised per channel",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }


def card_of(row: pd.Series, *, run_dir: Path, config: dict[str, Any] | None = None,
            selection: dict[str, Any] | None = None, manifest: str | Path | None = None) -> dict[str, Any]:  # fmt: skip
    details = row["details"] or {}
    card: dict[str, Any] = {
        # the run by its folder's name: a path would name the machine that exported the bundle
        "source": {"run": run_dir.resolve().name, "trial_id": row["trial_id"], "number": int(row["number"]),
                   "cost_bias": float(row["cost_bias"])},
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
    if config is not None:
        card["input"] = input_contract(config)
        card["data"] = data_of(config, row, manifest=manifest)
    if selection is not None:
        card["selection"] = selection
    return card


def _selection_text(card: dict[str, Any]) -> str:
    sel = card.get("selection")
    if not sel:
        return ""
    where = "the knee of the front" if sel["knee"] else "on the front" if sel["on_front"] else "not on the front"
    cost_bias = card["source"].get("cost_bias", 0.0)
    point = (f"trial {card['source']['number']}" if not cost_bias
             else f"trial {card['source']['number']} at cost_bias {cost_bias:g}")
    front = sel.get("front_points", sel["front_numbers"])
    among = f"{sel['completed_feasible']} completed feasible trials"
    if sel.get("points_feasible", 0) > sel["completed_feasible"]:
        among = f"{sel['points_feasible']} feasible operating points (their curves) of {sel['completed_feasible']} trials"
    sampler = f" by the {sel['sampler']} sampler" if sel.get("sampler") else ""
    searched = f" over {', '.join(sel['searched'])}" if sel.get("searched") else ""
    objectives = ", ".join(f"{k} ({v})" for k, v in sel.get("objectives", {}).items())
    return (f"Chosen with `{sel['rule']}` among {among} of {sel['trials']}{sampler}{searched}; "
            f"objectives {objectives or 'accuracy (max), gflops (min)'}; {point} is {where} (front: "
            f"{', '.join(str(p) for p in front)}).")


#: Lines card.md's snippet adds for a method whose deployed model names its decisions (e.g. VideoIQ's
#: predict_video returns the label and per-frame decisions as text).
SNIPPET_EXTRA = {
    "videoiq": [
        "print(result.label)  # the same class, from predict_video's result",
        "for frame, decision in enumerate(result.decisions[0]):  # first clip: a decision per sampled frame",
        '    print(frame, decision)  # "32b", "4b", "2b" or "skip"',
        "prediction = model.predict(model.decode_video(\"video.mp4\"))  # preprocessed clips -> the same",
        "print(prediction.labels, prediction.decisions)",
    ],
}


def usage_text(usage: dict[str, float]) -> str:
    """{"32": .5, "0": .5} -> "32b 50%, skip 50%": widest precision first, skip last; other labels as given."""
    items = list(usage.items())
    if all(str(label).isdigit() for label, _ in items):
        items.sort(key=lambda item: -int(item[0]))
    names = [("skip" if int(k) == 0 else f"{k}b") if str(k).isdigit() else str(k) for k, _ in items]
    return ", ".join(f"{name} {share:.0%}" for name, (_, share) in zip(names, items))


def card_markdown(card: dict[str, Any], config: dict[str, Any]) -> str:
    usage = usage_text(card["action_usage"])
    method = get_method(config["method"])
    contract = card.get("input") or input_contract(config)
    data = card.get("data") or {}
    videos = data.get("evaluation_videos")
    evaluation = (f"{videos} videos of split {data.get('evaluation_split', 'val')!r}" if videos is not None
                  else f"the {data.get('evaluation_split', 'val')!r} split")
    selection = _selection_text(card)
    return "\n".join([
        f"# searchlab bundle: trial {card['source']['number']} of run {card['source']['run']}",
        "",
        f"{method.name}: {method.description}. Trial {card['source']['number']} (id {card['source']['trial_id']}).",
        *([f"Operating point: `inference.cost_bias` {card['source']['cost_bias']:g} (config.yaml), a point of the "
           "trial's curve: the trained network, each decision's relative cost times this value subtracted "
           "before deciding; no retraining.", ""] if card["source"].get("cost_bias") else []),
        *([selection, ""] if selection else [""]),
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
        *([f"| data set | {data.get('source')} ({data.get('manifest')}, {data.get('classes')} classes) |",
           f"| evaluated on | {evaluation}, {data.get('clips_per_video', 1)} clip(s) x "
           f"{data.get('crops_per_clip', 1)} crop(s) per video |"] if data else []),
        "",
        "## Input contract",
        "",
        f"`predict(frames)` takes a float tensor {contract['shape']} ({contract['dtype']}, {contract['channel_order']}):",
        f"- frames: T = {contract['frames']}, sampled {contract['sampling']};",
        f"- resize: short side to {contract['short_side']} px, then a {contract['crop']} crop;",
        f"- values: {contract['value_range']} with mean {contract['mean']} and std {contract['std']} (ImageNet).",
        "",
        "`predict_video(path)` decodes a video file and does all of this itself, as the evaluation did.",
        "",
        "## Run it",
        "",
        "```python",
        "from searchlab.deploy import load",
        "",
        'model = load("BUNDLE_DIR")  # this folder',
        'result = model.predict_video("video.mp4")  # decoded and sampled as the evaluation did',
        "print(model.class_names[int(result.probabilities.argmax())], float(result.probabilities.max()))",
        "print(result.actions.argmax(-1))  # per clip and sampled frame: the index of its decision",
        *SNIPPET_EXTRA.get(method.name, []),
        "```",
        "",
        "Check the card's figures again from the videos:",
        "`python -m searchlab.evaluate BUNDLE_DIR --manifest MANIFEST`.",
        "",
        "GFLOPs are counted from the decisions the policy took on the held-out split, policy included;",
        "accuracy is measured on the held-out split.",
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


def export_bundle(row: pd.Series, *, run_dir: Path, out: Path, selection: dict[str, Any] | None = None) -> Path:
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
    sweep = read_sweep_snapshot(run_dir)
    base = sweep.base
    config = sweep.trial_config(row["params_decoded"] or {}).with_overrides(
        {COST_BIAS: float(row["cost_bias"])}).model_dump(mode="json")  # the point's operating point
    card = card_of(row, run_dir=run_dir, config=config, selection=selection, manifest=base.data.manifest)
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
    parser = command_parser("searchlab.pick", description=(
        "Choose one configuration of a sweep (a front point by budget, accuracy or the knee, or any "
        "completed trial) and export it as a deployable bundle that searchlab.deploy.load runs."),
        examples=["python -m searchlab.pick runs/demo --knee --out runs/bundle",
                  "python -m searchlab.pick runs/demo --max-gflops 0.1 --out runs/bundle-small",
                  "python -m searchlab.pick runs/demo --trial 3 --cost-bias 2 --out runs/bundle-3-cheaper"])
    parser.add_argument("run_dir", type=Path, help="a sweep's run directory (holds trials.parquet)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--max-gflops", type=float, help="most accurate front point within this GFLOPs budget")
    which.add_argument("--min-accuracy", type=float, help="cheapest front point with at least this accuracy")
    which.add_argument("--knee", action="store_true", help="the knee of the accuracy/GFLOPs front")
    which.add_argument("--trial", type=int, metavar="N",
                       help="the completed feasible trial numbered N (the report's and optuna-dashboard's numbers)")
    parser.add_argument("--cost-bias", type=float, default=0.0, metavar="λ",
                        help="with --trial: the point of the trial's curve at this inference.cost_bias (0: as trained)")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    args = parser.parse_args(argv)
    if args.cost_bias != 0 and args.trial is None:
        parser.error("--cost-bias chooses a point of one trial's curve: give --trial N with it")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        frame = candidates(args.run_dir)
        if args.trial is not None:
            row = trial_row(frame, args.trial, run_dir=args.run_dir, cost_bias=args.cost_bias)
            rule = f"--trial {args.trial}" + (f" --cost-bias {args.cost_bias:g}" if args.cost_bias else "")
        else:
            row = choose(frame, max_gflops=args.max_gflops, min_accuracy=args.min_accuracy, knee=args.knee)
            rule = ("--knee" if args.knee else f"--max-gflops {args.max_gflops:g}" if args.max_gflops is not None
                    else f"--min-accuracy {args.min_accuracy:g}")
        selection = selection_of(frame, row, rule=rule, run_dir=args.run_dir)
        out = export_bundle(row, run_dir=args.run_dir, out=args.out, selection=selection)
    except PickError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    card = json.loads((out / "card.json").read_text())
    at = f" at cost_bias {card['source']['cost_bias']:g}" if card["source"]["cost_bias"] else ""
    print(f"picked trial {card['source']['number']}{at}: accuracy {card['accuracy']:.4f}, "
          f"{card['gflops_mean']:.3f} GFLOPs (p95 {card['gflops_p95']:.3f}), {card['memory_mb']:.2f} MiB")
    print(f"bundle: {out} (load with searchlab.deploy.load('{out}'))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
