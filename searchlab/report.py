"""`python -m searchlab.report RUN_DIR`: the Pareto report of a sweep.

Reads RUN_DIR/trials.parquet (and baselines.parquet when present) and writes
- RUN_DIR/pareto.png: accuracy against GFLOPs of every completed trial; the accuracy/GFLOPs front
  of feasible trials highlighted and joined, the knee marked, infeasible trials grey, the
  methods' baselines as labelled distinct markers;
- RUN_DIR/hypervolume.png: hypervolume of the feasible front against trials;
- RUN_DIR/report.html: self-contained (figures embedded as base64 PNG): counts, the figures, the
  front's configurations with their action usage, the baselines, failed trials with reasons, all
  trials;
and prints a terminal summary. A missing run directory, an empty table, or a table searchlab did not
write (not Parquet, other columns) exits with code 2 and a message naming the file and the fix.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on clusters or in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from searchlab.objectives import METRICS  # noqa: E402
from searchlab.pareto import (  # noqa: E402
    default_reference,
    hypervolume_history,
    knee_point,
    objective_directions,
    pareto_front,
)
from searchlab.results import ACTION_USAGE, PARAM_PREFIX, BaselinesTable, TrialsTable, decoded_json  # noqa: E402

DEFAULT_OBJECTIVES = ("accuracy", "gflops")


class ReportError(RuntimeError):
    """Nothing to report on: the message says what is missing and what to run first."""


@dataclass(frozen=True)
class Report:
    html: Path
    pareto_png: Path
    hypervolume_png: Path
    counts: dict[str, int]
    front: pd.DataFrame  # the front rows shown in the report, knee flagged
    reference: tuple[float, ...]
    hypervolume: float


def format_usage(usage: object) -> str:
    """{"32": .5, "4": .3, "0": .2} -> "32b 50% · 4b 30% · skip 20%" (labels kept as given otherwise)."""
    if not isinstance(usage, dict) or not usage:
        return ""
    items = list(usage.items())
    if all(str(label).isdigit() for label, _ in items):
        items.sort(key=lambda item: -int(item[0]))  # widest precision first, skip last
    parts = []
    for label, share in items:
        name = ("skip" if int(label) == 0 else f"{label}b") if str(label).isdigit() else str(label)
        parts.append(f"{name} {100 * float(share):.0f}%")
    return " · ".join(parts)


def _load(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: no such run directory; run a sweep first (python -m searchlab.sweep FILE)")
    trials = TrialsTable.in_run(run_dir)
    if not trials.path.is_file():
        raise ReportError(f"{trials.path}: missing; is {run_dir} a sweep's run directory?")
    frame = _read_table(trials)
    if frame.empty:
        raise ReportError(f"{trials.path}: no trials yet; wait for the sweep to record some")
    baselines = BaselinesTable.in_run(run_dir)
    return frame, _read_table(baselines) if baselines.path.exists() else baselines.read()


def _read_table(table: TrialsTable | BaselinesTable) -> pd.DataFrame:
    """A run's table; ReportError naming the file and the fix when it is not one a sweep wrote
    (every fixed column present with its type: the report reads them all)."""
    fix = ("a sweep writes it (python -m searchlab.sweep FILE): restore the file, or run the sweep again "
           "with --overwrite (cached stages are reused)")
    try:
        schema = pq.read_schema(table.path)
    except (pa.ArrowException, OSError) as error:
        raise ReportError(f"{table.path}: not a Parquet table ({error}); {fix}") from None
    missing = [field.name for field in table.schema if field.name not in schema.names]
    mistyped = [f"{field.name} is {schema.field(field.name).type}, not {field.type}"
                for field in table.schema if field.name in schema.names and schema.field(field.name).type != field.type]
    if missing or mistyped:
        found = (["missing columns " + ", ".join(missing)] if missing else []) + mistyped
        raise ReportError(f"{table.path}: not a searchlab {table.kind} table ({'; '.join(found)}); {fix}")
    try:
        return table.read()
    except (pa.ArrowException, OSError) as error:
        raise ReportError(f"{table.path}: unreadable ({error}); {fix}") from None


def _plot_pareto(frame: pd.DataFrame, baselines: pd.DataFrame, knee: object | None, path: Path) -> None:
    done = frame[(frame["status"] == "completed") & frame["accuracy"].notna() & frame["gflops"].notna()]
    feasible = done[~done["feasible"].eq(False).fillna(False).astype(bool)]
    infeasible = done.drop(feasible.index)
    front = feasible[pareto_front(feasible, DEFAULT_OBJECTIVES)].sort_values("gflops")
    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    ax.scatter(infeasible["gflops"], infeasible["accuracy"], c="0.75", s=22, label="infeasible")
    ax.scatter(feasible["gflops"], feasible["accuracy"], c="tab:blue", s=22, alpha=0.6, label="trials")
    if not front.empty:
        ax.step(front["gflops"], front["accuracy"], where="post", c="tab:red", lw=1.5)
        ax.scatter(front["gflops"], front["accuracy"], c="tab:red", s=46, zorder=3, label="Pareto front")
    if knee is not None and knee in front.index:
        ax.scatter(front.at[knee, "gflops"], front.at[knee, "accuracy"], s=180, facecolors="none",
                   edgecolors="black", lw=1.5, zorder=4, label="knee")  # fmt: skip
    markers = ["s", "^", "D", "v", "P", "X", "*"]
    several_keys = baselines["key"].nunique() > 1
    for i, (_, row) in enumerate(baselines.sort_values(["key", "gflops"]).iterrows()):
        label = row["label"] + (f" ({row['key'][:6]})" if several_keys else "")
        ax.scatter(row["gflops"], row["accuracy"], marker=markers[i % len(markers)], s=70, c="tab:green",
                   edgecolors="black", zorder=3, label=label)  # fmt: skip
        ax.annotate(label, (row["gflops"], row["accuracy"]), textcoords="offset points", xytext=(6, -10), fontsize=8)
    ax.set_xlabel("GFLOPs per video")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy vs compute")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _plot_hypervolume(history: pd.DataFrame, reference: Sequence[float], names: Sequence[str], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    ax.step(history["number"], history["hypervolume"], where="post", c="tab:purple")
    ax.set_xlabel("trial number")
    ax.set_ylabel("hypervolume")
    ref = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, reference))
    ax.set_title(f"hypervolume of feasible trials (reference {ref})", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _front_table(frame: pd.DataFrame, directions: dict[str, str]) -> tuple[pd.DataFrame, object | None]:
    done = frame[frame["status"] == "completed"]
    done = done[~done["feasible"].eq(False).fillna(False).astype(bool)].dropna(subset=list(directions))
    if done.empty:
        return done.assign(knee=pd.Series(dtype=bool)), None
    front = done[pareto_front(done, directions)].copy()
    knee = knee_point(done, directions)
    front["knee"] = front.index == knee
    front["action usage"] = [format_usage((extra or {}).get(ACTION_USAGE)) for extra in decoded_json(front, "metrics_extra")]
    return front.sort_values(list(directions)[::-1], kind="stable"), knee  # cheapest first for (accuracy, gflops)


def versus_baselines(accuracy: float, gflops: float, baselines: pd.DataFrame) -> str:
    """How a configuration compares with its method's baselines on its own shared stages.

    A step comparison, no interpolation: dominated by a baseline, or the accuracy gained over the
    best baseline that costs no more (or, when every baseline costs more, that it is cheaper).
    """
    if baselines.empty:
        return ""
    dominating = baselines[(baselines["accuracy"] >= accuracy) & (baselines["gflops"] <= gflops)
                           & ((baselines["accuracy"] > accuracy) | (baselines["gflops"] < gflops))]
    if not dominating.empty:
        return "dominated by " + ", ".join(dominating.sort_values("gflops", ascending=False)["label"])
    cheaper = baselines[baselines["gflops"] <= gflops]
    if cheaper.empty:
        cheapest = baselines.loc[baselines["gflops"].idxmin()]
        return (f"not dominated: fewer GFLOPs than every baseline (cheapest: {cheapest['label']}, "
                f"{cheapest['gflops']:.3g})")
    best = cheaper.loc[cheaper["accuracy"].idxmax()]
    return (f"not dominated: {100 * (accuracy - best['accuracy']):+.1f} pts over {best['label']} "
            f"({best['gflops']:.3g} GFLOPs), the best baseline costing no more")


def _with_baseline_comparison(front: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    if front.empty or {"accuracy", "gflops"} - set(front.columns):
        return front
    verdicts = [versus_baselines(row["accuracy"], row["gflops"],
                                 baselines[(baselines["method"] == row["method"]) & baselines["key"].isin(keys.values())])
                for keys, (_, row) in zip(decoded_json(front, "stage_keys"), front.iterrows())]
    return front.assign(**{"vs baselines": verdicts})


def _front_columns(front: pd.DataFrame, directions: dict[str, str]) -> list[str]:
    metrics = list(directions) + [m for m in METRICS if m not in directions and front[m].notna().any()]
    params = [c for c in front.columns if c.startswith(PARAM_PREFIX) and front[c].notna().any()]
    verdict = ["vs baselines"] if "vs baselines" in front.columns else []
    return ["number", "trial_id", "method", "knee", *metrics, "action usage", *verdict, *params]


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p><em>none</em></p>"
    frame = frame.copy()
    for column in frame.columns[frame.dtypes == object]:
        frame[column] = frame[column].map(lambda v: "" if v is None else v)
    return frame.to_html(index=False, escape=True, na_rep="", float_format=lambda v: f"{v:.4g}", border=0)


def build_report(run_dir: str | Path, *, objectives: Sequence[str] = DEFAULT_OBJECTIVES,
                 reference: Sequence[float] | None = None) -> Report:  # fmt: skip
    """Write the figures and report.html into `run_dir`; raises ReportError when there is nothing to show."""
    run_dir = Path(run_dir)
    frame, baselines = _load(run_dir)
    directions = objective_directions(list(objectives))
    counts = {status: int((frame["status"] == status).sum()) for status in ("completed", "failed", "running", "pruned")}
    counts["total"] = len(frame)
    completed = frame[frame["status"] == "completed"].dropna(subset=list(directions))
    counts["infeasible"] = int(completed["feasible"].eq(False).sum())
    front, knee = _front_table(frame, directions)
    front = _with_baseline_comparison(front, baselines)
    counts["front"] = len(front)

    if reference is None and not completed.empty:
        reference = default_reference(completed[list(directions)].to_numpy(dtype=float), list(directions.values()))
    if reference is not None and len(reference) != len(directions):
        raise ReportError(f"reference has {len(reference)} values for {len(directions)} objectives {list(directions)}")
    history = (
        hypervolume_history(frame, directions, reference)
        if reference is not None
        else pd.DataFrame({"number": frame["number"], "hypervolume": 0.0})
    )
    reference = tuple(float(v) for v in reference) if reference is not None else tuple(np.nan for _ in directions)

    pareto_png, hv_png = run_dir / "pareto.png", run_dir / "hypervolume.png"
    _plot_pareto(frame, baselines, knee if list(directions) == list(DEFAULT_OBJECTIVES) else None, _tmp(pareto_png))
    _plot_hypervolume(history, reference, list(directions), _tmp(hv_png))
    _tmp(pareto_png).replace(pareto_png)
    _tmp(hv_png).replace(hv_png)

    failed = frame[frame["status"].isin(["failed", "pruned"])][["number", "trial_id", "status", "error"]]
    every = frame[["number", "trial_id", "method", "status", *METRICS, "feasible", "total_s"]]
    shown_front = front[_front_columns(front, directions)] if not front.empty else front
    objective_text = ", ".join(f"{n} ({d})" for n, d in directions.items())
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>searchlab report: {html.escape(run_dir.name)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin-bottom: 1.5em; }}
th, td {{ padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; text-align: right; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>searchlab report: {html.escape(run_dir.name)}</h1>
<p>run {html.escape(run_dir.resolve().name)} · generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}</p>
<h2>Trials</h2>
{_table(pd.DataFrame([counts]))}
<p>Objectives: {html.escape(objective_text)}. Hypervolume {history["hypervolume"].iloc[-1]:.6g} against reference
{html.escape(", ".join(f"{v:.4g}" for v in reference))}.</p>
{_cache_note(run_dir)}
<h2>Accuracy vs GFLOPs</h2>
{_image(pareto_png)}
<h2>Hypervolume</h2>
{_image(hv_png)}
<h2>Pareto front ({len(front)} configurations)</h2>
{_table(shown_front)}
<h2>Uniform-precision baselines</h2>
{_table(baselines)}
<h2>Failed and pruned trials</h2>
{_table(failed)}
<h2>All trials</h2>
{_table(every)}
</body></html>
"""
    html_path = run_dir / "report.html"
    _tmp(html_path).write_text(page)
    _tmp(html_path).replace(html_path)
    return Report(html_path, pareto_png, hv_png, counts, shown_front, reference, float(history["hypervolume"].iloc[-1]))


def cache_note(run_dir: Path) -> str:
    """What VideoIQ's stage-2 backbone-output cache fixes, read from the sweep's snapshot (RUN_DIR/sweep.json);
    empty for a method that trains on decoded clips."""
    snapshot = run_dir / "sweep.json"
    if not snapshot.is_file():
        return ""
    try:
        base = json.loads(snapshot.read_text())["base"]
        if base.get("method", "videoiq") != "videoiq":
            return ""
        views = int(base["stage2"]["cached_views"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise ReportError(
            f"{snapshot}: not the sweep snapshot a sweep writes ({type(error).__name__}: {error}); restore it, or "
            "move it aside to report without the stage-2 cache note"
        ) from None
    return (f"Stage 2 trains on the frozen backbone's cached outputs: {views} fixed augmentation view(s) per "
            f"training clip (TSN offsets, crop and flip drawn once; epoch e uses view e mod {views}), the "
            "centre view for evaluation.")


def _cache_note(run_dir: Path) -> str:
    note = cache_note(run_dir)
    return f"<p>{html.escape(note)}</p>" if note else ""


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _summary(report: Report) -> str:
    counts = report.counts
    lines = [
        f"trials: {counts['total']} ({counts['completed']} completed, {counts['failed']} failed, "
        f"{counts['pruned']} pruned, {counts['running']} running; {counts['infeasible']} infeasible)",
        f"hypervolume: {report.hypervolume:.6g} (reference {', '.join(f'{v:.4g}' for v in report.reference)})",
        f"Pareto front: {counts['front']} configurations",
    ]
    if not report.front.empty:
        columns = [c for c in report.front.columns if not c.startswith(PARAM_PREFIX)]
        lines.append(report.front[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    note = cache_note(report.html.parent)
    lines += [note] if note else []
    lines += [f"report: {report.html}", f"figures: {report.pareto_png}, {report.hypervolume_png}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m searchlab.report", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a sweep's run directory (holds trials.parquet)")
    parser.add_argument("--objectives", nargs="+", default=list(DEFAULT_OBJECTIVES), choices=list(METRICS),
                        help="metrics of the front and hypervolume (directions from searchlab.objectives)")  # fmt: skip
    parser.add_argument("--reference", nargs="+", type=float, default=None,
                        help="hypervolume reference point, one value per objective (default: 10%% beyond the worst)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        report = build_report(args.run_dir, objectives=args.objectives, reference=args.reference)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(_summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
