"""The HTML pieces of searchlab's report: tables that fit a laptop-width page, cells, the glossary.

Every helper returns HTML with its text escaped; ``searchlab.report.build_report`` puts them
together. Columns are numbers (right-aligned, one line), text (left-aligned, wrapped) or commands.
"""

from __future__ import annotations

import base64
import html
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from searchlab.report_terms import GLOSSARY, parameter_meaning
from searchlab.results import ACTION_USAGE, PARAM_PREFIX, decoded_json

if TYPE_CHECKING:
    from searchlab.report import NormalisedHypervolume

USAGE_PER_CLASS = "usage_per_class"  # metrics_extra key: {class name: {action label: fraction of frames}}


def format_usage(usage: object) -> str:
    """{"32": .5, "4": .3, "0": .2} -> "32b 50% · 4b 30% · skip 20%" (labels kept as given otherwise)."""
    if not isinstance(usage, dict) or not usage:
        return ""
    return " · ".join(f"{name} {100 * float(share):.0f}%" for name, share in _usage_items(usage))


def _usage_items(usage: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(display name, share) of each action, widest precision first and skip last for bit-widths."""
    items = list(usage.items())
    if all(str(label).isdigit() for label, _ in items):
        items.sort(key=lambda item: -int(item[0]))
    return [(("skip" if int(label) == 0 else f"{label}b") if str(label).isdigit() else str(label), float(share))
            for label, share in items]


def usage_html(usage_text: str) -> str:
    """format_usage's text with each action kept whole ("skip2 15%" never split across lines)."""
    return " · ".join(f'<span class="kv">{esc(part)}</span>' for part in usage_text.split(" · ") if part)


def export_command(run_arg: str, number: int, cost_bias: float = 0.0) -> str:
    """The command that exports trial ``number``'s point at ``cost_bias`` (0: as trained) as a bundle."""
    if cost_bias == 0:
        return f"python -m searchlab.pick {shlex.quote(run_arg)} --trial {number} --out bundle-trial-{number}"
    return (f"python -m searchlab.pick {shlex.quote(run_arg)} --trial {number} --cost-bias {cost_bias:g} "
            f"--out bundle-trial-{number}-cost-bias-{cost_bias:g}")


def command_html(command: str) -> str:
    """A command's HTML, its text unchanged: a line may break at the hyphens of a long path, but an option
    ("--trial") is kept whole, since "--" at a line's end and "trial" on the next reads as two words."""
    return " ".join(f'<span class="kv">{esc(word)}</span>' if word.startswith("-") else esc(word)
                    for word in command.split(" "))


# ---------------------------------------------------------------------------------------------
# HTML


def image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: object, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)) or value is pd.NA:
        return ""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return f"{float(value):.{digits}g}"  # type: ignore[arg-type]


def grid(headers: Sequence[str], rows: Sequence[Sequence[str]], *, row_classes: Sequence[str] = (),
          cls: str = "", kinds: str = "") -> str:  # fmt: skip
    """An HTML table from already-escaped cell HTML; ``kinds`` has a letter per column: n (a number or a
    short label: right-aligned, kept on one line), t (text: left-aligned, wrapped), c (a command)."""
    if not rows:
        return "<p><em>none</em></p>"
    kinds = kinds.ljust(len(headers), "n")
    head = "".join(f'<th class="{k}">{esc(h)}</th>' for h, k in zip(headers, kinds))
    body = []
    for i, row in enumerate(rows):
        css = f' class="{row_classes[i]}"' if i < len(row_classes) and row_classes[i] else ""
        body.append(f"<tr{css}>" + "".join(f'<td class="{k}">{cell}</td>' for cell, k in zip(row, kinds)) + "</tr>")
    table = f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    return f'<div class="fit">{table}</div>'


def param_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(PARAM_PREFIX) and frame[c].notna().any()]


def _short_key(key: str, all_keys: Sequence[str]) -> str:
    """The shortest dotted tail of ``key`` that no other key shares (stage2.w1 -> w1)."""
    parts = key.split(".")
    for n in range(1, len(parts) + 1):
        tail = ".".join(parts[-n:])
        if sum(1 for other in all_keys if other == tail or other.endswith("." + tail)) == 1:
            return tail
    return key


def _params_cell(row: pd.Series, columns: Sequence[str]) -> str:
    keys = [c.removeprefix(PARAM_PREFIX) for c in columns]
    lines = []
    for column, key in zip(columns, keys):
        value = row[column]
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f'<span class="param" title="{esc(key)}">{esc(_short_key(key, keys))}&nbsp;= {esc(shown)}</span>')
    return "<br>".join(lines)


def _gflops_cell(row: pd.Series) -> str:
    spread = ""
    if pd.notna(row.get("gflops_p5")) and pd.notna(row.get("gflops_p95")):
        spread = f' <span class="dim">({_num(row["gflops_p5"])}–{_num(row["gflops_p95"])})</span>'
    return _num(row["gflops"]) + spread


def front_html(front: pd.DataFrame, run_arg: str) -> str:
    if front.empty:
        return "<p><em>none</em></p>"
    params = param_columns(front)
    headers = ["point", "method", "accuracy", "GFLOPs mean (p5–p95)", "memory MiB", "skip", "action usage",
               "vs baselines", "parameters", "export as a bundle"]
    rows, classes = [], []
    for _, row in front.iterrows():
        number, cost_bias = int(row["number"]), _cost_bias(row)
        flag = bool(row.get("baseline dominated", False))
        verdict = esc(row.get("vs baselines", ""))
        rows.append([
            f"<b>{esc(row.get('point', number))}</b>{' <span class=knee>knee</span>' if row['knee'] else ''}"
            f'<br><span class="dim id">{esc(row["trial_id"])}</span>'
            + (f'<br><span class="dim">cost_bias {cost_bias:g}</span>' if cost_bias else ""),
            esc(row["method"]),
            _num(row["accuracy"]),
            _gflops_cell(row),
            _num(row["memory_mb"]),
            f"{100 * row['skip_fraction']:.0f}%" if pd.notna(row["skip_fraction"]) else "",
            "<br>".join(f'<span class="kv">{esc(part)}</span>' for part in str(row["action usage"]).split(" · ")),
            (f'<span class="flag">⚠ {verdict}</span>' if flag else verdict),
            _params_cell(row, params),
            f"<code>{command_html(export_command(run_arg, number, cost_bias))}</code>",
        ])
        classes.append("dominated" if flag else "")
    return grid(headers, rows, row_classes=classes, cls="front", kinds="nnnnnnttcc")


def _cost_bias(row: pd.Series) -> float:
    """The operating point of a front row (0: the trial as trained, also for a run made before curves)."""
    value = row.get("cost_bias", 0.0)
    return float(value) if pd.notna(value) else 0.0


def per_class_html(front: pd.DataFrame) -> str:
    blocks = []
    for (_, row), extra in zip(front.iterrows(), decoded_json(front, "metrics_extra")):
        per_class = (extra or {}).get(USAGE_PER_CLASS) or {}
        if not per_class:
            continue
        actions = [name for name, _ in _usage_items(next(iter(per_class.values())))]
        rows = [[esc(name), *(f"{100 * share:.0f}%" for _, share in _usage_items(usage))]
                for name, usage in per_class.items()]
        overall = _usage_items((extra or {}).get(ACTION_USAGE) or {})
        if overall:
            rows.append(["<b>all classes</b>", *(f"<b>{100 * share:.0f}%</b>" for _, share in overall)])
        knee = " (knee)" if row["knee"] else ""
        name = f"point {row['point']}" if _cost_bias(row) else f"trial {int(row['number'])}"
        blocks.append(f"<details{' open' if row['knee'] else ''}><summary>{esc(name)}{knee}: {esc(row['action usage'])}</summary>"
                      f"{grid(['class', *actions], rows, cls='narrow', kinds='t')}</details>")
    if not blocks:
        return "<p><em>the trials recorded no per-class usage</em></p>"
    return ("<p>Share of each class's held-out frames that took each action: which classes the policy "
            "processes cheaply and which it looks at closely.</p>" + "".join(blocks))


def glossary_html(params: Sequence[str], normalised: NormalisedHypervolume | None) -> str:
    items = [f"<dt>{esc(term)}</dt><dd>{esc(text)}</dd>" for term, text in GLOSSARY.items()]
    if normalised is None:
        items.append("<dt>normalised hypervolume</dt><dd>not computed: the run has no baselines yet.</dd>")
    searched = [f"<dt><code>{esc(key)}</code></dt><dd>{esc(parameter_meaning(key) or 'see docs/configuration.md')}</dd>"
                for key in params]
    parts = [f'<dl class="terms">{"".join(items)}</dl>']
    if searched:
        parts.append(f'<h3>Searched parameters</h3><dl class="terms">{"".join(searched)}</dl>')
    return "".join(parts)


def baselines_html(baselines: pd.DataFrame) -> str:
    rows = [[esc(r["method"]), f'<span title="{esc(r["key"])}">{esc(str(r["key"])[:10])}…</span>', esc(r["label"]),
             _num(r["accuracy"]), _num(r["gflops"]), _num(r["memory_mb"])]
            for _, r in baselines.sort_values(["method", "key", "gflops"]).iterrows()]
    return grid(["method", "stage key", "baseline", "accuracy", "GFLOPs", "memory MiB"], rows, cls="narrow",
                 kinds="nnt")


def all_trials_html(frame: pd.DataFrame) -> str:
    params = param_columns(frame)
    rows = [[f"<b>{int(r['number'])}</b>", f'<span class="id">{esc(r["trial_id"])}</span>', esc(r["method"]),
             esc(r["status"]), _num(r["accuracy"]), _gflops_cell(r) if pd.notna(r["gflops"]) else "",
             _num(r["memory_mb"]), f"{100 * r['skip_fraction']:.0f}%" if pd.notna(r["skip_fraction"]) else "",
             "" if r["feasible"] is None or pd.isna(r["feasible"]) else ("yes" if r["feasible"] else "no"),
             _num(r["total_s"], 3), _params_cell(r, params)]
            for _, r in frame.iterrows()]
    return grid(["trial", "id", "method", "status", "accuracy", "GFLOPs mean (p5–p95)", "memory MiB", "skip",
                  "feasible", "seconds", "parameters"], rows, kinds="nnnnnnnnnnt")


CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; padding: 0 1.5em; max-width: 1250px; color: #222;
       line-height: 1.4; }
table { border-collapse: collapse; font-size: 0.82em; margin-bottom: 1.2em; width: 100%; }
table.narrow, table.counts { width: auto; }
th, td { padding: 0.25em 0.5em; border-bottom: 1px solid #ddd; vertical-align: top; }
th { background: #f3f3f3; }
.n { text-align: right; white-space: nowrap; }
/* min-width: a long parameter or reason takes the spare width, not a neighbour's (words cut letter by letter) */
.t { text-align: left; overflow-wrap: anywhere; min-width: 7em; }
.c { text-align: left; min-width: 14em; }
/* break a command between its arguments; inside one ("--trial") only when it alone is wider than the column */
td.c code { font-size: 0.9em; overflow-wrap: break-word; }
th.t, th.c { text-align: left; overflow-wrap: normal; }
.kv { white-space: nowrap; } .dim { color: #777; } .id { font-family: monospace; font-size: 0.9em; }
/* a parameter wraps after its "=" and the commas of its value, continuation lines indented under its
   name; the cap keeps one long value (a nested mapping) from widening its column past the page */
.param { display: inline-block; max-width: 24em; padding-left: 1em; text-indent: -1em; overflow-wrap: anywhere; }
/* the last resort: a table still wider than the page scrolls inside its own box, the page keeps its width */
div.fit { overflow-x: auto; }
.knee { background: #222; color: #fff; border-radius: 3px; padding: 0 0.3em; font-size: 0.85em; }
tr.dominated td { background: #fff4e5; } .flag { color: #a35200; font-weight: bold; }
img { max-width: 100%; height: auto; }
dl.terms { display: grid; grid-template-columns: max-content 1fr; gap: 0.3em 1em; font-size: 0.9em; }
dl.terms dt { font-weight: bold; } dl.terms dd { margin: 0; }
details { margin: 0.3em 0; } summary { cursor: pointer; }
"""


def _mean_std(entry: Mapping[str, Any], name: str) -> str:
    mean, std = entry.get(f"{name}_mean"), entry.get(f"{name}_std")
    if mean is None or not np.isfinite(mean):
        return ""
    return f"{_num(mean)} ± {_num(std, 2)}"


def rerun_html(summary: Mapping[str, Any]) -> str:
    """The front re-run with seeds (RUN_DIR/rerun/summary.json, `searchlab.rerun`): per configuration the
    mean ± std over its seeds, the search's own figures, each seed's, and the front rebuilt on the means."""
    rows, classes = [], []
    for entry in summary.get("configurations", []):
        search = entry.get("search", {})
        seeds = "<br>".join(
            f'<span class="kv">seed {esc(s["seed"])}: '
            + (f"{_num(s['accuracy'])} / {_num(s['gflops'])}" if s["status"] == "completed" else esc(s.get("error")))
            + "</span>" for s in entry.get("per_seed", []))
        on_front = entry.get("on_front")
        rows.append([
            f"<b>{esc(entry.get('point', entry['number']))}</b><br><span class=\"dim id\">{esc(entry['trial_id'])}</span>",
            esc(entry.get("method")),
            f"{esc(entry.get('completed'))}/{esc(len(entry.get('seeds', [])))}",
            _mean_std(entry, "accuracy"), _mean_std(entry, "gflops"), _mean_std(entry, "gflops_p95"),
            _mean_std(entry, "memory_mb"),
            "yes" if on_front else "no" if on_front is False else "",
            f"{_num(search.get('accuracy'))} / {_num(search.get('gflops'))}",
            seeds,
            "<br>".join(f'<span class="param">{esc(k)}&nbsp;= {esc(v)}</span>' for k, v in entry.get("params", {}).items()),
        ])
        classes.append("" if on_front else "dominated")
    table = grid(["point", "method", "seeds ok", "accuracy", "GFLOPs", "p95 GFLOPs", "memory MiB", "front on means",
                  "search acc. / GFLOPs", "each seed (acc. / GFLOPs)", "parameters"], rows, row_classes=classes,
                 cls="front", kinds="nnnnnnnnntt")
    note = (f"<p>{esc(summary.get('seeds'))} new seeds per configuration, evaluated on {esc(summary.get('evaluation'))}; "
            f"mean ± sample std over the completed seeds. {esc(summary.get('shared_note'))}</p>")
    return note + table
