"""What searchlab's report says its terms mean, and one line on each searched configuration key.

``GLOSSARY`` holds the report's definitions (knee, hypervolume and its reference point, the
hypervolume normalised to the baselines' box, p5/p95, memory, ...). ``parameter_meaning(key)`` gives
a dotted configuration key's line: its pydantic field description, else its row in
docs/configuration.md when the source tree is there.
"""

from __future__ import annotations

import typing
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["GLOSSARY", "parameter_meaning"]

#: What the report's terms mean; the report prints these lines.
GLOSSARY: dict[str, str] = {
    "trial N": "the trial's number in the sweep (0, 1, ... in the order trials started), beside its id ID: "
               "trials.parquet's number and trial_id, Tune's folder and TensorBoard run tune/trial-N-ID (the "
               "figures it reported), optuna-dashboard's trial N (user attributes searchlab_number, "
               "searchlab_trial_id), the trial's folders trials/ID and ray-train/trial-N-ID/<stage> (training "
               "curves: TensorBoard run ray-train/trial-N-ID/<stage>/tensorboard), the sweep's output lines "
               "[trial N ID], and a bundle's card (source.number, source.trial_id).",
    "curve, N@λ": "a completed trial's trained network measured again, without retraining, at each value λ "
                  "of search.curve of its inference-time knob inference.cost_bias: λ times each decision's "
                  "relative cost is subtracted from the policy's logits (VideoIQ, AR-Net) or from the gates' "
                  "pre-activations (VA-RED²) before deciding. Point N@λ is trial N at λ (N alone: as trained, "
                  "λ = 0); points.parquet holds them all, `pick --trial N --cost-bias λ` exports one, and its "
                  "bundle applies λ. The dashed lines in the figure join the points of each front trial's curve.",
    "Pareto front": "the feasible operating points of completed trials (each trial as trained and along its "
                    "curve) that no other such point beats on every objective (more accurate and no more "
                    "GFLOPs, or fewer GFLOPs and no less accurate).",
    "knee": "the front point farthest beyond the straight line joining the front's two extremes (most "
            "accurate, cheapest) with both objectives scaled to [0, 1] over the front: where giving up a "
            "little accuracy stops buying much compute.",
    "hypervolume": "the area of the accuracy/GFLOPs plane that the front dominates, bounded by the reference "
                   "point (a point worse than every trial: by default 10% of each objective's range beyond "
                   "the worst trial). It grows whenever a trial extends the front; it depends on the reference "
                   "point, so compare it only between reports with the same reference.",
    "normalised hypervolume": "the same area measured in the baselines' box: accuracy scaled so the least "
                              "accurate baseline is 0 and the most accurate 1, GFLOPs so the costliest baseline "
                              "is 0 and the cheapest 1, the reference point at (0, 0). The baselines' own front "
                              "gets the figure beside it: the search beats the baselines' trade-off where its "
                              "figure is larger; above 1 means points beyond the box (cheaper than the cheapest "
                              "or more accurate than the best baseline).",
    "accuracy": "held-out accuracy of the trial's published networks on the decoded held-out videos: mAP for "
                "multi-label data sets, top-1 otherwise (0..1).",
    "GFLOPs": "mean GFLOPs per video (multiply-accumulates, fvcore's convention) from the decisions the policy "
              "actually took on each held-out video, the policy's own cost included; quantised layers cost "
              "bits_w x bits_a / 64 of full precision.",
    "p5-p95": "the 5th and 95th percentiles of GFLOPs per video over the held-out videos: the cost depends on "
              "the input, so 90% of the videos cost between the two (the bars in the figure).",
    "memory": "MiB of parameters stored for inference (parameter count x stored bits / 8, one copy at the "
              "widest precision plus the per-precision BatchNorm and clip values, policy included).",
    "action usage": "share of all held-out frames that took each action (32b/4b/2b: the precision run on the "
                    "frame; skip: the frame was not processed; AR-Net: resolution, head or skip).",
    "per method": "in a run whose trials train several methods (a cross-method sweep): each method's own front "
                  "(its feasible completed trials that no trial of the same method beats) against its own "
                  "baselines, and its hypervolume against the whole front's reference point; in the figure every "
                  "point has its method's colour and each method's baselines its own marker.",
    "vs baselines": "the step comparison with the method's reference points on the same shared stages "
                    "(no interpolation); a flagged row is dominated by a baseline: the baseline is at least as "
                    "accurate for no more GFLOPs.",
}




@lru_cache(maxsize=1)
def _docs_rows() -> dict[tuple[str, str], str]:
    """(section, key) -> meaning, from docs/configuration.md's tables when the source tree has it."""
    docs = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
    rows: dict[tuple[str, str], str] = {}
    if not docs.is_file():
        return rows
    section = ""
    for line in docs.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            names = [part.strip("`:") for part in line.split() if part.startswith("`base")]
            section = names[0].removeprefix("base").lstrip(".") if names else section
        elif line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if len(cells) >= 3:
                for key in cells[0].split(","):
                    key = key.strip().strip("`")
                    rows.setdefault((section, key), cells[-1].replace("`", ""))
                    rows.setdefault(("*", key), cells[-1].replace("`", ""))  # any section: the last resort
    return rows


def parameter_meaning(key: str) -> str:
    """One line on a dotted configuration key: its field description, else its docs/configuration.md row."""
    from pydantic import BaseModel

    from searchlab.config import TrialConfig

    model: Any = TrialConfig
    parts = key.split(".")
    description = None
    for i, part in enumerate(parts):
        field = getattr(model, "model_fields", {}).get(part) if model is not None else None
        if field is None:
            break
        description = field.description if i == len(parts) - 1 else None
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    if description:
        return description
    rows = _docs_rows()
    for depth in range(len(parts) - 1, -1, -1):  # stage2.temperature.rate: section stage2.temperature, else stage2
        found = rows.get((".".join(parts[:depth]), ".".join(parts[depth:])))
        if found:
            return found
    return rows.get(("*", parts[-1]), "")
