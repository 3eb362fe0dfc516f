"""`python -m searchlab.report RUN_DIR`: the Pareto report of a sweep.

Reads RUN_DIR/trials.parquet (and baselines.parquet when present) and writes
- RUN_DIR/pareto.png: accuracy against GFLOPs of every completed trial, each labelled with its trial
  number and its p5-p95 GFLOPs as a horizontal bar; the accuracy/GFLOPs front of feasible trials
  highlighted and joined, the knee marked, front points a baseline dominates hollow, infeasible
  trials grey, the methods' baselines as labelled distinct markers;
- RUN_DIR/hypervolume.png: hypervolume of the feasible front against trials;
- RUN_DIR/report.html: self-contained (figures embedded as base64 PNG) and readable at laptop width:
  what every figure means (knee, hypervolume and its reference point, the hypervolume normalised to
  the baselines' box, p5/p95, memory, each searched parameter), counts, the figures, the front's
  configurations with their action usage, a flag where a baseline dominates one, per-class decision
  usage, and the command that exports each one as a bundle; the baselines, failed trials with
  reasons, all trials;
and prints a terminal summary. A missing run directory, an empty table, or a table searchlab did not
write (not Parquet, other columns) exits with code 2 and a message naming the file and the fix.
"""

from __future__ import annotations

import html
import json
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on clusters or in CI

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from searchlab.cli import command_parser
from searchlab.objectives import METRICS  # noqa: E402
from searchlab.pareto import (  # noqa: E402
    default_reference,
    hypervolume,
    hypervolume_history,
    knee_point,
    objective_directions,
    pareto_front,
)
from searchlab.report_html import (  # noqa: E402  (the page's pieces)
    CSS,
    all_trials_html,
    baselines_html,
    esc,
    front_html,
    glossary_html,
    grid,
    image,
    param_columns,
    per_class_html,
    rerun_html,
    export_command,
    format_usage,
)
from searchlab.report_methods import MethodStyle, MethodSummary, method_styles, methods_html, summary_text  # noqa: E402
from searchlab.report_terms import GLOSSARY, parameter_meaning  # noqa: E402
from searchlab.results import (  # noqa: E402
    ACTION_USAGE,
    PARAM_PREFIX,
    BaselinesTable,
    PointsTable,
    TrialsTable,
    decoded_json,
    with_points,
)

__all__ = ["GLOSSARY", "Report", "ReportError", "build_report", "cache_note", "comparable_baselines", "export_command",
           "format_usage", "main", "normalised_hypervolume", "parameter_meaning", "versus_baselines"]

DEFAULT_OBJECTIVES = ("accuracy", "gflops")
LABEL_ALL_TRIALS_UP_TO = 60  # more completed trials than this: only the front's points carry their number

#: Columns the report reads, per table kind; a run made before another column existed still reports.
_NEEDED = {"trials": {"trial_id", "number", "status", "error", "params", *METRICS, "metrics_extra", "feasible",
                      "method", "stage_keys", "total_s"}}


class ReportError(RuntimeError):
    """Nothing to report on: the message says what is missing and what to run first."""


@dataclass(frozen=True)
class NormalisedHypervolume:
    """Hypervolume of the front and of the baselines in the baselines' box (see GLOSSARY)."""

    front: float
    baselines: float
    accuracy_range: tuple[float, float]  # (least accurate baseline, most accurate baseline)
    gflops_range: tuple[float, float]  # (cheapest baseline, costliest baseline)


@dataclass(frozen=True)
class Report:
    html: Path
    pareto_png: Path
    hypervolume_png: Path
    counts: dict[str, int]
    front: pd.DataFrame  # the front rows shown in the report, knee flagged
    reference: tuple[float, ...]
    hypervolume: float
    normalised: NormalisedHypervolume | None = None
    methods: tuple[MethodSummary, ...] = ()  # per method, when the run's trials train several


# ---------------------------------------------------------------------------------------------
# Reading the run


def _load(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The trials, the baselines and the trials' operating points (``with_points``)."""
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: no such run directory; run a sweep first (python -m searchlab.sweep FILE)")
    trials = TrialsTable.in_run(run_dir)
    if not trials.path.is_file():
        raise ReportError(f"{trials.path}: missing; is {run_dir} a sweep's run directory?")
    frame = _read_table(trials)
    if frame.empty:
        raise ReportError(f"{trials.path}: no trials yet; wait for the sweep to record some")
    baselines = BaselinesTable.in_run(run_dir)
    points = PointsTable.in_run(run_dir)
    return (frame, _read_table(baselines) if baselines.path.exists() else baselines.read(),
            with_points(frame, _read_table(points) if points.path.exists() else points.read()))


def _read_table(table: TrialsTable | BaselinesTable | PointsTable) -> pd.DataFrame:
    """A run's table; ReportError naming the file and the fix when it is not one a sweep wrote
    (every fixed column present with its type: the report reads them all)."""
    fix = ("a sweep writes it (python -m searchlab.sweep FILE): restore the file, or run the sweep again "
           "with --overwrite (cached stages are reused)")
    try:
        schema = pq.read_schema(table.path)
    except (pa.ArrowException, OSError) as error:
        raise ReportError(f"{table.path}: not a Parquet table ({error}); {fix}") from None
    needed = _NEEDED.get(table.kind, set(table.schema.names))
    missing = [field.name for field in table.schema if field.name in needed and field.name not in schema.names]
    mistyped = [f"{field.name} is {schema.field(field.name).type}, not {field.type}"
                for field in table.schema if field.name in schema.names and schema.field(field.name).type != field.type]
    if missing or mistyped:
        found = (["missing columns " + ", ".join(missing)] if missing else []) + mistyped
        raise ReportError(f"{table.path}: not a searchlab {table.kind} table ({'; '.join(found)}); {fix}")
    try:
        frame = table.read()
    except (pa.ArrowException, OSError) as error:
        raise ReportError(f"{table.path}: unreadable ({error}); {fix}") from None
    # a column added to the table after the run was made (e.g. nodes): absent, as in a row without it
    return frame.assign(**{name: None for name in table.schema.names if name not in frame.columns})


def _feasible(frame: pd.DataFrame) -> pd.Series:
    return ~frame["feasible"].eq(False).fillna(False).astype(bool)


def comparable_baselines(frame: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """The baselines measured on a shared stage that some completed trial of the same method used."""
    if baselines.empty:
        return baselines
    done = frame[frame["status"] == "completed"]
    pairs = {(method, key) for method, keys in zip(done["method"], decoded_json(done, "stage_keys"))
             for key in _flat_keys(keys)}
    mask = [(method, key) in pairs for method, key in zip(baselines["method"], baselines["key"])]
    return baselines[mask]


def _flat_keys(keys: object) -> list[str]:
    if not isinstance(keys, dict):
        return []
    return [k for value in keys.values() for k in (value if isinstance(value, list) else [value]) if isinstance(k, str)]


# ---------------------------------------------------------------------------------------------
# Figures


def _plot_pareto(points: pd.DataFrame, baselines: pd.DataFrame, knee: object | None, dominated: set[str],
                 path: Path, styles: dict[str, MethodStyle]) -> None:  # fmt: skip
    """Every completed trial's trained point coloured by its method, the curves of the front's trials
    (their other operating points, joined), the front over all points joined by one line, and each
    method's baselines in its colour with its own marker."""
    done = points[(points["status"] == "completed") & points["accuracy"].notna() & points["gflops"].notna()]
    feasible = done[_feasible(done)]
    infeasible = done.drop(feasible.index)
    front = feasible[pareto_front(feasible, DEFAULT_OBJECTIVES)].sort_values("gflops")
    trained = done["cost_bias"].fillna(0).eq(0)
    several = len(styles) > 1
    fig, ax = plt.subplots(figsize=(9.5, 5.2), dpi=110)
    # p5-p95 bars for the trials as trained and the front's points: on every point of every curve they hide the front
    spread = done[trained | done.index.isin(front.index)].dropna(subset=["gflops_p5", "gflops_p95"])
    for method, rows in spread.groupby("method"):
        low = (rows["gflops"] - rows["gflops_p5"]).clip(lower=0)
        high = (rows["gflops_p95"] - rows["gflops"]).clip(lower=0)
        ax.errorbar(rows["gflops"], rows["accuracy"], xerr=[low, high], fmt="none", ecolor=styles[method].colour,
                    alpha=0.35, lw=1, capsize=2, zorder=1)  # fmt: skip
    curve_label = "a front trial's curve (cost_bias)"
    for number in sorted(set(front["number"])):
        curve = done[done["number"] == number].sort_values("gflops")
        if len(curve) > 1:
            ax.plot(curve["gflops"], curve["accuracy"], ls="--", lw=0.9, alpha=0.7, marker=".", ms=5,
                    c=styles[curve["method"].iloc[0]].colour, zorder=2, label=curve_label)
            curve_label = "_nolegend_"
    ax.scatter(infeasible["gflops"], infeasible["accuracy"], c="0.7", s=22, label="infeasible")
    for method, rows in feasible[trained[feasible.index]].groupby("method"):
        ax.scatter(rows["gflops"], rows["accuracy"], c=styles[method].colour, s=22, alpha=0.55,
                   label=f"{method} trials" if several else "trials (as trained)")
    if not front.empty:
        ax.step(front["gflops"], front["accuracy"], where="post", c="black", lw=1.2, alpha=0.8,
                label="Pareto front" + (" (all methods)" if several else ""))
        for method, rows in front.groupby("method"):
            solid, hollow = rows[~rows["point"].isin(dominated)], rows[rows["point"].isin(dominated)]
            ax.scatter(solid["gflops"], solid["accuracy"], c=styles[method].colour, edgecolors="black", s=50,
                       lw=1, zorder=3)
            ax.scatter(hollow["gflops"], hollow["accuracy"], facecolors="white", edgecolors=styles[method].colour,
                       s=50, lw=1.5, zorder=3)
        if front["point"].isin(dominated).any():
            ax.scatter([], [], facecolors="white", edgecolors="black", s=50, lw=1.5,
                       label="front point a baseline dominates")
    if knee is not None and knee in front.index:
        ax.scatter(front.at[knee, "gflops"], front.at[knee, "accuracy"], s=180, facecolors="none",
                   edgecolors="black", lw=1.5, zorder=4, label="knee")  # fmt: skip
    # trained points carry their trial number (all of them while few), curve points only on the front: "7@2"
    labelled = done[trained] if trained.sum() <= LABEL_ALL_TRIALS_UP_TO else done[trained & done.index.isin(front.index)]
    for _, row in pd.concat([labelled, front[~front.index.isin(labelled.index)]]).iterrows():
        on_front = row.name in front.index
        ax.annotate(str(row["point"]), (row["gflops"], row["accuracy"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=8 if on_front else 7, color="black" if on_front else "0.35",
                    fontweight="bold" if on_front else "normal", zorder=5)  # fmt: skip
    # a label two baselines of a method share (measured on different shared stages) gets its stage key
    ambiguous = baselines.duplicated(subset=["method", "label"], keep=False)
    right = max([*done["gflops"], *baselines["gflops"], 0.0]) * 0.7  # labels of points beyond this go leftwards
    for i, (method, rows) in enumerate(baselines.sort_values(["method", "key", "gflops"]).groupby("method", sort=False)):
        style = styles[method]
        ax.scatter(rows["gflops"], rows["accuracy"], marker=style.marker, s=70, c=style.colour, edgecolors="black",
                   zorder=3, label=f"{method} baselines" if several else "baselines")
        for index, row in rows.iterrows():
            label = row["label"] + (f" ({row['key'][:6]})" if ambiguous[index] else "")
            leftwards = row["gflops"] > right
            ax.annotate(label, (row["gflops"], row["accuracy"]), textcoords="offset points",
                        xytext=(-6 if leftwards else 6, -10 - 10 * i), ha="right" if leftwards else "left",
                        fontsize=8, color=style.colour if several else "black")
    ax.set_xlabel("GFLOPs per video (mean; bars: p5-p95 over the held-out videos)")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy vs compute" + (", coloured by method" if several else "")
                 + " (numbers: trials; N@λ: trial N at cost_bias λ)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: never over a point
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _plot_hypervolume(history: pd.DataFrame, reference: Sequence[float], names: Sequence[str], path: Path,
                      per_method: dict[str, pd.DataFrame], styles: dict[str, MethodStyle]) -> None:  # fmt: skip
    """The whole front's hypervolume after each trial and, with several methods, each method's own."""
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=110)
    ax.step(history["number"], history["hypervolume"], where="post", c="black" if per_method else "tab:purple",
            label="all methods" if per_method else None)
    for method, curve in per_method.items():
        ax.step(curve["number"], curve["hypervolume"], where="post", c=styles[method].colour, label=method, alpha=0.8)
    ax.set_xlabel("trial number")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("hypervolume")
    ref = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, reference))
    ax.set_title(f"hypervolume of feasible trials (reference {ref})", fontsize=9)
    ax.grid(alpha=0.3)
    if per_method:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# The front and its comparison with the baselines


def _front_table(frame: pd.DataFrame, directions: dict[str, str]) -> tuple[pd.DataFrame, object | None]:
    done = frame[frame["status"] == "completed"]
    done = done[_feasible(done)].dropna(subset=list(directions))
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
                                 baselines[(baselines["method"] == row["method"]) & baselines["key"].isin(_flat_keys(keys))])
                for keys, (_, row) in zip(decoded_json(front, "stage_keys"), front.iterrows())]
    return front.assign(**{"vs baselines": verdicts, "baseline dominated": [v.startswith("dominated") for v in verdicts]})


def normalised_hypervolume(front: pd.DataFrame, baselines: pd.DataFrame) -> NormalisedHypervolume | None:
    """Hypervolume of (accuracy, GFLOPs) points in the baselines' box, the baselines' own beside it.

    Accuracy a -> (a - a_min) / (a_max - a_min), GFLOPs g -> (g_max - g) / (g_max - g_min) over the
    baselines, reference (0, 0): the box spanned by the baselines has area 1. Where the baselines do not
    span an objective (a single baseline, or a tie) the box runs from 0 to their accuracy a, or from
    twice their GFLOPs g down to g. None without baselines.
    """
    if baselines.empty:
        return None
    acc, gfl = baselines["accuracy"].to_numpy(float), baselines["gflops"].to_numpy(float)
    a_low, a_high = float(acc.min()), float(acc.max())
    g_low, g_high = float(gfl.min()), float(gfl.max())
    a_span = a_high - a_low if a_high > a_low else (abs(a_high) or 1.0)
    g_span = g_high - g_low if g_high > g_low else (abs(g_high) or 1.0)

    def volume(points: pd.DataFrame) -> float:
        scaled = np.column_stack([(points["accuracy"].to_numpy(float) - (a_high - a_span)) / a_span,
                                  ((g_low + g_span) - points["gflops"].to_numpy(float)) / g_span])
        return hypervolume(scaled, (0.0, 0.0), ("max", "max"))

    return NormalisedHypervolume(front=volume(front) if not front.empty else 0.0, baselines=volume(baselines),
                                 accuracy_range=(a_low, a_high), gflops_range=(g_low, g_high))


def _run_argument(run_dir: Path) -> tuple[str, str]:
    """How the report's commands name the run (never an absolute path) and a note on where to run them."""
    if not run_dir.is_absolute():
        return run_dir.as_posix(), "from the folder you ran the report in"
    try:
        return run_dir.resolve().relative_to(Path.cwd().resolve()).as_posix(), "from the folder you ran the report in"
    except ValueError:
        return run_dir.resolve().name, "from the folder that holds the run (its storage)"


def build_report(run_dir: str | Path, *, objectives: Sequence[str] = DEFAULT_OBJECTIVES,
                 reference: Sequence[float] | None = None) -> Report:  # fmt: skip
    """Write the figures and report.html into `run_dir`; raises ReportError when there is nothing to show."""
    run_dir = Path(run_dir)
    frame, baselines, points = _load(run_dir)
    directions = objective_directions(list(objectives))
    counts = {status: int((frame["status"] == status).sum()) for status in ("completed", "failed", "running", "pruned",
                                                                           "stopped")}
    counts["total"] = len(frame)
    completed = points[points["status"] == "completed"].dropna(subset=list(directions))
    counts["points"] = len(completed)  # every completed trial's operating points (its curve)
    counts["infeasible"] = int(completed["feasible"].eq(False).sum())
    front, knee = _front_table(points, directions)
    front = _with_baseline_comparison(front, baselines)
    counts["front"] = len(front)
    dominated = set(front.loc[front.get("baseline dominated", pd.Series(False, index=front.index)).astype(bool),
                              "point"]) if not front.empty else set()  # fmt: skip

    if reference is None and not completed.empty:
        reference = default_reference(completed[list(directions)].to_numpy(dtype=float), list(directions.values()))
    if reference is not None and len(reference) != len(directions):
        raise ReportError(f"reference has {len(reference)} values for {len(directions)} objectives {list(directions)}")
    history = (
        _per_trial(hypervolume_history(points, directions, reference))
        if reference is not None
        else pd.DataFrame({"number": frame["number"], "hypervolume": 0.0})
    )
    reference = tuple(float(v) for v in reference) if reference is not None else tuple(np.nan for _ in directions)
    two_d = list(directions) == list(DEFAULT_OBJECTIVES)
    normalised = normalised_hypervolume(front, comparable_baselines(frame, baselines)) if two_d else None
    styles = method_styles([*frame["method"].dropna(), *baselines["method"].dropna()])
    summaries, curves = _method_summaries(points, baselines, directions, reference, front=front) if len(styles) > 1 \
        else ([], {})

    pareto_png, hv_png = run_dir / "pareto.png", run_dir / "hypervolume.png"
    _plot_pareto(points, baselines, knee if two_d else None, dominated, _tmp(pareto_png), styles)
    _plot_hypervolume(history, reference, list(directions), _tmp(hv_png), curves, styles)
    _tmp(pareto_png).replace(pareto_png)
    _tmp(hv_png).replace(hv_png)

    run_arg, where = _run_argument(run_dir)
    failed = frame[frame["status"].isin(["failed", "pruned", "stopped"])]
    failed_rows = [[f"<b>{int(r['number'])}</b>", f'<span class="id">{esc(r["trial_id"])}</span>', esc(r["status"]),
                    esc(r["error"])]
                   for _, r in failed.iterrows()]
    objective_text = ", ".join(f"{n} ({d})" for n, d in directions.items())
    hv_text = (f"Hypervolume {history['hypervolume'].iloc[-1]:.6g} against the reference point "
               f"({', '.join(f'{n} {v:.4g}' for n, v in zip(directions, reference))})")
    if normalised is not None:
        hv_text += (f"; normalised to the baselines' box (accuracy {normalised.accuracy_range[0]:.4g}–"
                    f"{normalised.accuracy_range[1]:.4g}, GFLOPs {normalised.gflops_range[0]:.4g}–"
                    f"{normalised.gflops_range[1]:.4g}): front {normalised.front:.3f}, baselines "
                    f"{normalised.baselines:.3f}")
    shown_front = front[_front_columns(front, directions)] if not front.empty else front
    knee_text = ""
    if knee is not None and not front.empty and two_d:
        k = front.loc[knee]
        knee_text = (f"<p>Knee: {_point_name(k)}, accuracy {k['accuracy']:.4g} at {k['gflops']:.4g} GFLOPs. "
                     f"Export it: <code>{esc(f'python -m searchlab.pick {shlex.quote(run_arg)} --knee --out bundle')}"
                     "</code></p>")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>searchlab report: {esc(run_dir.resolve().name)}</title>
<style>{CSS}</style></head><body>
<h1>searchlab report: {esc(run_dir.resolve().name)}</h1>
<p>run {esc(run_dir.resolve().name)} · generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}</p>
<h2>Trials</h2>
{grid(list(counts), [[str(v) for v in counts.values()]], cls="counts")}
<p>Objectives: {esc(objective_text)}. {esc(hv_text)}.</p>
{knee_text}
{_cache_note(run_dir)}
<h2>Accuracy vs GFLOPs</h2>
{image(pareto_png, "accuracy against GFLOPs per video of every completed trial, front and baselines")}
<h2>Pareto front ({len(front)} points)</h2>
<p>Cheapest first. The commands run {esc(where)}; <code>--out</code> names the bundle folder to write.</p>
{front_html(front, run_arg)}
{_rerun_section(run_dir)}
{_methods_section(summaries, history, styles)}
<h2>Decision usage per class</h2>
{per_class_html(front) if not front.empty else "<p><em>no front yet</em></p>"}
<h2>Hypervolume</h2>
{image(hv_png, "hypervolume of the feasible front after each trial")}
<h2>Baselines</h2>
{baselines_html(baselines)}
<h2>Failed, pruned and stopped trials</h2>
{grid(["trial", "id", "status", "reason"], failed_rows, kinds="nnnt")}
<h2>All trials</h2>
{all_trials_html(frame)}
<h2>What the figures mean</h2>
{glossary_html([c.removeprefix(PARAM_PREFIX) for c in param_columns(frame)], normalised)}
</body></html>
"""
    html_path = run_dir / "report.html"
    _tmp(html_path).write_text(page, encoding="utf-8")
    _tmp(html_path).replace(html_path)
    return Report(html_path, pareto_png, hv_png, counts, shown_front, reference, float(history["hypervolume"].iloc[-1]),
                  normalised, tuple(summaries))


def _per_trial(history: pd.DataFrame) -> pd.DataFrame:
    """One hypervolume per trial (its last point's): a trial's curve adds its points at once."""
    return history.groupby("number", as_index=False, sort=True).last()


def _point_name(row: pd.Series) -> str:
    return f"trial {int(row['number'])}" if not row.get("cost_bias") else \
        f"trial {int(row['number'])} at cost_bias {row['cost_bias']:g} (point {row['point']})"


def _method_summaries(frame: pd.DataFrame, baselines: pd.DataFrame, directions: dict[str, str],
                      reference: Sequence[float], *, front: pd.DataFrame,
                      ) -> tuple[list[MethodSummary], dict[str, pd.DataFrame]]:  # fmt: skip
    """Each method's own front against its own baselines, its hypervolume against the whole front's
    reference point, and its hypervolume curve (for a run whose trials train several methods)."""
    summaries, curves = [], {}
    two_d = list(directions) == list(DEFAULT_OBJECTIVES)
    whole = set(front["point"]) if not front.empty else set()
    for method in sorted(frame["method"].dropna().unique()):
        own = frame[frame["method"] == method]
        own_baselines = baselines[baselines["method"] == method]
        own_front, _ = _front_table(own, directions)
        own_front = _with_baseline_comparison(own_front, own_baselines)
        curves[method] = _per_trial(hypervolume_history(own, directions, reference))
        completed = own[(own["status"] == "completed") & _feasible(own)].dropna(subset=list(directions))
        summaries.append(MethodSummary(
            method=method, completed=completed["number"].nunique(), front=own_front,
            on_whole_front=tuple(point for point in own["point"] if point in whole),
            hypervolume=float(curves[method]["hypervolume"].iloc[-1]),
            normalised=normalised_hypervolume(own_front, comparable_baselines(own, own_baselines)) if two_d else None,
            baselines=len(comparable_baselines(own, own_baselines))))
    return summaries, curves


def _methods_section(summaries: list[MethodSummary], history: pd.DataFrame, styles: dict[str, MethodStyle]) -> str:
    if not summaries:
        return ""
    return ("<h2>Per method: best trade-offs against its own baselines</h2>"
            + methods_html(summaries, whole_hypervolume=float(history["hypervolume"].iloc[-1]), styles=styles))


def _rerun_section(run_dir: Path) -> str:
    """The front re-run with seeds beside the search's front, when RUN_DIR/rerun holds one."""
    from searchlab.rerun import read_rerun

    summary = read_rerun(run_dir)
    if summary is None:
        return ""
    return f"<h2>Front re-run with seeds ({len(summary.get('configurations', []))} configurations)</h2>\n" + \
        rerun_html(summary)


def _front_columns(front: pd.DataFrame, directions: dict[str, str]) -> list[str]:
    metrics = list(directions) + [m for m in METRICS if m not in directions and front[m].notna().any()]
    params = param_columns(front)
    verdict = ["vs baselines"] if "vs baselines" in front.columns else []
    return ["point", "number", "cost_bias", "trial_id", "method", "knee", *metrics, "action usage", *verdict, *params]


def cache_note(run_dir: Path) -> str:
    """What VideoIQ's stage-2 backbone-output cache fixes, read from the sweep's snapshot (RUN_DIR/sweep.json);
    empty for a method that trains on decoded clips."""
    snapshot = run_dir / "sweep.json"
    if not snapshot.is_file():
        return ""
    try:
        tree = json.loads(snapshot.read_text())
        methods = tree.get("methods") or {}
        if methods:  # a cross-method sweep: VideoIQ's sections, when it is among the methods, are its own
            if "videoiq" not in methods:
                return ""
            from searchlab.config import Stage2Config

            views = Stage2Config.model_validate(methods["videoiq"].get("stage2") or {}).cached_views
        else:
            base = tree["base"]
            if base.get("method", "videoiq") != "videoiq":
                return ""
            views = int(base["stage2"]["cached_views"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise ReportError(
            f"{snapshot}: not the sweep snapshot a sweep writes ({type(error).__name__}: {error}); restore it, or "
            "move it aside to report without the stage-2 cache note"
        ) from None
    subject = "VideoIQ's stage 2" if methods else "Stage 2"
    return (f"{subject} trains on the frozen backbone's cached outputs: {views} fixed augmentation view(s) per "
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
        f"{counts['pruned']} pruned, {counts['stopped']} stopped early, {counts['running']} running; "
        f"{counts['infeasible']} infeasible)",
        f"hypervolume: {report.hypervolume:.6g} (reference {', '.join(f'{v:.4g}' for v in report.reference)})",
    ]
    if counts["points"] > counts["completed"]:
        lines.insert(1, f"operating points: {counts['points']} (the completed trials as trained and along their curves, "
                        "search.curve)")
    if report.normalised is not None:
        n = report.normalised
        lines.append(f"normalised hypervolume (baselines' box): front {n.front:.3f}, baselines {n.baselines:.3f}")
    lines.append(f"Pareto front: {counts['front']} points" + (" over every method" if report.methods else ""))
    if not report.front.empty:
        columns = [c for c in report.front.columns if not c.startswith(PARAM_PREFIX)]
        lines.append(report.front[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        run_arg, _ = _run_argument(report.html.parent)
        lines.append(f"export a front point: python -m searchlab.pick {shlex.quote(run_arg)} --trial N "
                     "[--cost-bias λ] --out DIR")
    for summary in report.methods:
        lines.append(summary_text(summary, whole_hypervolume=report.hypervolume))
        if not summary.front.empty:
            columns = [c for c in ("point", "accuracy", "gflops", "action usage", "vs baselines") if c in summary.front]
            shown = summary.front[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}")
            lines.append("\n".join("  " + line for line in shown.splitlines()))
    from searchlab.rerun import MARKDOWN, RERUN_DIR_NAME, read_rerun

    if read_rerun(report.html.parent) is not None:
        lines.append(f"front re-run with seeds: {report.html.parent / RERUN_DIR_NAME / MARKDOWN} (in the report too)")
    note = cache_note(report.html.parent)
    lines += [note] if note else []
    lines += [f"report: {report.html}", f"figures: {report.pareto_png}, {report.hypervolume_png}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser("searchlab.report", description=(
        "Write a sweep's report (report.html, pareto.png, hypervolume.png in the run folder) and print its "
        "Pareto front against the method's baselines."),
        examples=["python -m searchlab.report runs/demo",
                  "python -m searchlab.report runs/demo --reference 0.5 1.0"])
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
