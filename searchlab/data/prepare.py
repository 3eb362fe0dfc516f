"""`python -m searchlab.data.prepare SOURCE ...`: turn a data set's own files into a manifest.

Every source goes through one pipeline: a small adapter turns the annotation or list files into
candidates (id, split, labels, where the video should be), the videos are located under --videos,
probed with decord in parallel (frames, fps, size; a first frame is decoded so unreadable files are
caught here rather than in week two of a sweep), and the manifest is written with a bad-videos
report (CSV next to it: video_id, path, reason) for everything left out. The CLI then prints what it
kept and what it skipped, by reason. With --ray the probing runs in Ray tasks over a cluster's nodes
instead of local processes (`searchlab.ray_probe`, which alone imports Ray; the Ray Job entry is
jobs/prepare.py): same manifest, plus one line per node saying how many videos it probed.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import posixpath
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import decord
from tqdm import tqdm

from searchlab.atomic_dir import give_default_mode
from searchlab.data.manifest import Manifest, ManifestError, build_manifest, write_manifest
from searchlab.data.synthetic import MANIFEST_NAME, SyntheticConfig, generate_synthetic, worker_context
from searchlab.cli import command_parser

__all__ = [
    "VIDEO_EXTENSIONS",
    "Candidate",
    "PrepareError",
    "PrepareResult",
    "activitynet_candidates",
    "kinetics_candidates",
    "list_candidates",
    "main",
    "minikinetics_candidates",
    "mit_candidates",
    "parse_args",
    "prepare_manifest",
    "read_list_file",
    "read_mit_categories",
]

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv", ".mpg", ".mpeg")
_SPLIT_NAMES = {
    "train": "train", "training": "train", "val": "val", "valid": "val", "validate": "val",
    "validation": "val", "test": "test", "testing": "test",
}
_KEY_COLUMNS = ("path", "video_path", "video_id", "video", "id", "youtube_id", "key")
_DEFAULT_CLASSES = {"fcvid": 239, "minisports": 487}
# Moments in Time's release keeps each split's videos in its own folder, which its CSV paths omit.
_MIT_FOLDERS = {"train": "training", "val": "validation"}
# How many problem lines one error shows; it always says how many there are.
_MAX_LISTED = 20


class PrepareError(ValueError):
    """Input files that cannot be turned into a manifest; lists every problem found."""


def _problems(title: str, problems: Sequence[str]) -> PrepareError:
    shown = "\n  - ".join(problems[:_MAX_LISTED])
    more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    return PrepareError(f"{len(problems)} problem(s) in {title}:\n  - {shown}{more}")


@dataclass(frozen=True)
class Candidate:
    """One video an annotation file promises: where to look for it and what it shows."""

    video_id: str
    split: str
    labels: tuple[int, ...]  # labels[0] is the primary class
    stems: tuple[str, ...] = ()  # file names without extension to look for under the root
    rel_path: str | None = None  # or an explicit path relative to the root


@dataclass
class PrepareResult:
    manifest: Manifest | None
    manifest_path: Path
    report_path: Path
    skipped: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    probed_on: Counter = field(default_factory=Counter)  # node id -> videos probed there (--ray only)

    def summary(self) -> str:
        kept = len(self.manifest) if self.manifest is not None else 0
        lines = [f"kept {kept} video(s)"]
        if self.manifest is not None:
            per_split = Counter(self.manifest.table["split"].to_pylist())
            lines[0] += " (" + ", ".join(f"{s} {n}" for s, n in sorted(per_split.items())) + ")"
            lines.append(f"manifest: {self.manifest_path} ({self.manifest.num_classes} classes)")
        total = sum(self.skipped.values())
        if total:
            reasons = ", ".join(f"{reason} {n}" for reason, n in self.skipped.most_common())
            lines.append(f"skipped {total}: {reasons}; details in {self.report_path}")
        else:
            lines.append("skipped 0")
        lines.extend(f"probed {n} video(s) on node {node}" for node, n in sorted(self.probed_on.items()))
        lines.extend(self.notes)
        return "\n".join(lines)


# ----------------------------------------------------------------------------- list files
def read_list_file(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Rows of a CSV (with or without header) or whitespace TXT list file, as dicts.

    Headed CSV rows keep their column names. Header-less rows become {"key": first field,
    "label": last field} (and "num_frames" for the 3-column `path num_frames label` frame lists
    of the official codes). Every row also gets "line", its line number in the file, so problems
    can name it. Blank lines and lines starting with '#' are ignored.
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as err:
        raise PrepareError(f"{source}: cannot read the list file ({err.strerror})") from err
    except UnicodeDecodeError as err:
        raise PrepareError(f"{source}: not a UTF-8 text list file (byte {err.start}: {err.reason})") from err
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1)
                if line.strip() and not line.lstrip().startswith("#")]
    if not numbered:
        raise PrepareError(f"{source}: the list file has no entries")
    numbers = [n for n, _ in numbered]
    lines = [line for _, line in numbered]
    if source.suffix.lower() == ".csv":
        rows = list(csv.reader(lines))
        header = [h.strip().lower() for h in rows[0]]
        if "label" in header or any(k in header for k in _KEY_COLUMNS):
            return [{**dict(zip(header, (v.strip() for v in row))), "line": str(number)}
                    for number, row in zip(numbers[1:], rows[1:])]
    else:
        rows = [line.split() for line in lines]
    parsed = []
    for number, fields in zip(numbers, rows):
        fields = [f.strip() for f in fields]
        entry = {"key": fields[0], "label": fields[-1] if len(fields) > 1 else "", "line": str(number)}
        if len(fields) == 3:
            entry["num_frames"] = fields[1]
        parsed.append(entry)
    return parsed


def read_class_names(path: str | os.PathLike[str]) -> list[str]:
    """Class table: one name per line, or `INDEX NAME` lines (0-based indices)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise PrepareError(f"{path}: cannot read the class file ({err.strerror})") from err
    except UnicodeDecodeError as err:
        raise PrepareError(f"{path}: not a UTF-8 text class file (byte {err.start}: {err.reason})") from err
    names: dict[int, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        first, _, rest = line.strip().partition(" ")
        if first.isdigit() and rest.strip():
            names[int(first)] = rest.strip()
        else:
            names[len(names)] = line.strip()
    if not names:
        raise PrepareError(f"{path}: the class file has no names")
    if sorted(names) != list(range(len(names))):
        raise PrepareError(f"{path}: class indices must be 0..N-1 without gaps")
    return [names[i] for i in range(len(names))]


def _resolve_labels(raw: str, class_index: dict[str, int] | None, num_classes: int) -> list[int] | str:
    """Labels from a label field ("3", "archery", "3;17"), or the problem as a string."""
    parts = [p.strip() for p in raw.replace(",", ";").split(";") if p.strip()]
    if not parts:
        return "no label"
    out = []
    for part in parts:
        if class_index is not None and part in class_index:
            out.append(class_index[part])
        elif part.isascii() and part.isdigit() and int(part) < num_classes:
            out.append(int(part))
        elif class_index is None:
            return (f"label {part!r} is not a class index in [0, {num_classes}) (--num-classes); "
                    "to label with class names, pass them in a --classes file")
        else:
            return f"label {part!r} is neither a class index in [0, {num_classes}) nor a name in the --classes file"
    return list(dict.fromkeys(out))


def list_candidates(
    lists: dict[str, Sequence[str | os.PathLike[str]]],
    *,
    class_names: Sequence[str] | None,
    num_classes: int,
) -> tuple[list[Candidate], list[str]]:
    """Candidates from `id_or_path label` lists per split (FCVID, Mini-Sports1M).

    Labels are class indices in [0, num_classes), or, with `class_names`, indices into it or its
    names. Anything else is a problem naming the file and line, never a new class: a typo or a
    shifted column must not quietly add classes.
    """
    rows_by_split = {split: [(Path(p), r) for p in paths for r in read_list_file(p)] for split, paths in lists.items()}
    if class_names is None:
        names = [f"class_{i:03d}" for i in range(num_classes)]
        class_index = None
    else:
        names = list(class_names)
        class_index = {name: i for i, name in enumerate(names)}
    problems, candidates = [], []
    for split, rows in rows_by_split.items():
        for source, row in rows:
            key = next((row[k] for k in _KEY_COLUMNS if row.get(k)), "")
            where = f"{source}:{row['line']}"
            labels = _resolve_labels(row.get("label", row.get("labels", "")), class_index, len(names))
            if not key:
                problems.append(f"{where}: no video id or path")
            elif isinstance(labels, str):
                problems.append(f"{where} ({key}): {labels}")
            else:
                rel = key if ("/" in key or Path(key).suffix.lower() in VIDEO_EXTENSIONS) else None
                stem = Path(key).stem if rel else key
                candidates.append(Candidate(stem, split, tuple(labels), stems=(stem,), rel_path=rel))
    if problems:
        raise _problems("the list files (fix or remove these lines)", problems)
    return candidates, names


# ----------------------------------------------------------------------------- sources
def _json_kind(value: Any) -> str:
    """What a JSON value is, in JSON's words, with a short excerpt."""
    if value is None:
        return "null"
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    excerpt = json.dumps(value)
    return f"{kinds[type(value)]} ({excerpt[:40]}{'...' if len(excerpt) > 40 else ''})"


def _is_seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _activitynet_database(annotations: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The 'database' object of an ActivityNet v1.3 file, with every malformed entry reported at once."""
    try:
        data = json.loads(Path(annotations).read_text(encoding="utf-8"))
    except OSError as err:
        raise PrepareError(f"{annotations}: cannot read the annotation file ({err.strerror})") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PrepareError(f"{annotations}: not a JSON file ({err})") from err
    if not isinstance(data, dict) or "database" not in data:
        raise PrepareError(f"{annotations}: not an ActivityNet v1.3 annotation file (need a JSON object with 'database')")
    database = data["database"]
    if not isinstance(database, dict):
        raise PrepareError(
            f'{annotations}: "database" is {_json_kind(database)}; ActivityNet v1.3 has an object there '
            'that maps each video id to {"subset": ..., "annotations": [...]}'
        )
    problems = []
    for video_id, video in database.items():
        where = f"database[{json.dumps(video_id)}]"
        if not isinstance(video, dict):
            problems.append(f'{where} is {_json_kind(video)}; expected an object with "subset" and "annotations"')
            continue
        entries = video.get("annotations", [])
        if not isinstance(entries, list):
            problems.append(f'{where}["annotations"] is {_json_kind(entries)}; expected a list of '
                            '{"label": NAME, "segment": [START, END]} objects')
            continue
        for i, entry in enumerate(entries):
            at = f'{where}["annotations"][{i}]'
            if not isinstance(entry, dict):
                problems.append(f'{at} is {_json_kind(entry)}; expected an object with "label" and "segment"')
                continue
            if "label" not in entry:
                problems.append(f'{at} has no "label"; expected a class name (a string)')
            elif not isinstance(entry["label"], str) or not entry["label"]:
                problems.append(f'{at}["label"] is {_json_kind(entry["label"])}; expected a class name (a string)')
            segment = entry.get("segment", [0.0, 0.0])
            if not (isinstance(segment, list) and len(segment) == 2 and all(_is_seconds(t) for t in segment)):
                problems.append(f'{at}["segment"] is {_json_kind(segment)}; expected [START, END] in seconds')
    if problems:
        raise _problems(f"{annotations} (fix these entries or remove them)", problems)
    return database


def activitynet_candidates(annotations: str | os.PathLike[str]) -> tuple[list[Candidate], list[str], list[str]]:
    """ActivityNet v1.3 JSON: database -> id -> subset, annotations[].label -> candidates.

    Primary label: the class with the most annotated time. The testing subset has no labels and is
    left out (said in the notes).
    """
    database = _activitynet_database(annotations)
    names = sorted(
        {a["label"] for v in database.values() if v.get("subset") in ("training", "validation")
         for a in v.get("annotations", [])}
    )
    index = {n: i for i, n in enumerate(names)}
    candidates, notes, unlabelled, testing = [], [], 0, 0
    for video_id, video in sorted(database.items()):
        subset = video.get("subset")
        if subset == "testing":
            testing += 1
            continue
        if subset not in ("training", "validation"):
            notes.append(f"{video_id}: unknown subset {subset!r}, left out")
            continue
        seconds: Counter = Counter()
        for a in video.get("annotations", []):
            start, end = a.get("segment", (0.0, 0.0))
            seconds[index[a["label"]]] += max(float(end) - float(start), 0.0)
        if not seconds:
            unlabelled += 1
            continue
        primary = min(seconds, key=lambda c: (-seconds[c], c))
        labels = (primary, *sorted(c for c in seconds if c != primary))
        split = _SPLIT_NAMES[subset]
        candidates.append(Candidate(video_id, split, labels, stems=(f"v_{video_id}", video_id)))
    if testing:
        notes.append(f"left out the testing subset: {testing} video(s) (its labels are not public)")
    if unlabelled:
        notes.append(f"left out {unlabelled} training/validation video(s) without annotations")
    return candidates, names, notes


def _kinetics_rows(csv_paths: Sequence[str | os.PathLike[str]]) -> list[dict[str, str]]:
    """The rows of the Kinetics CSVs, every missing column and non-numeric time reported at once."""
    rows, problems = [], []
    for path in csv_paths:
        for row in read_list_file(path):
            missing = [c for c in ("youtube_id", "time_start", "time_end") if c not in row]
            if missing:
                problems.append(f"{path}: no column(s) {', '.join(missing)} (need label,youtube_id,"
                                "time_start,time_end,split)")
                break
            problems.extend(
                f"{path}:{row['line']}: {column} {row[column]!r} is not a number of seconds"
                for column in ("time_start", "time_end") if not _is_number(row[column])
            )
            rows.append(row)
    if problems:
        raise _problems("the Kinetics CSVs (fix or remove these rows)", problems)
    return rows


def _clip_stem(row: dict[str, str]) -> str:
    start, end = int(float(row["time_start"])), int(float(row["time_end"]))
    return f"{row['youtube_id']}_{start:06d}_{end:06d}"


def kinetics_candidates(csv_paths: Sequence[str | os.PathLike[str]]) -> tuple[list[Candidate], list[str], list[str]]:
    """Kinetics CSVs (label,youtube_id,time_start,time_end,split); rows without a label are left out."""
    rows = _kinetics_rows(csv_paths)
    names = sorted({r["label"] for r in rows if r.get("label")})
    index = {n: i for i, n in enumerate(names)}
    candidates, unlabelled, bad_split = [], 0, Counter()
    for row in rows:
        split = _SPLIT_NAMES.get(row.get("split", "").lower())
        if not row.get("label"):
            unlabelled += 1
        elif split is None:
            bad_split[row.get("split", "")] += 1
        else:
            stem = _clip_stem(row)
            candidates.append(Candidate(stem, split, (index[row["label"]],), stems=(stem,)))
    notes = []
    if unlabelled:
        notes.append(f"left out {unlabelled} row(s) without a label (e.g. the test split)")
    if bad_split:
        notes.append(f"left out rows with unknown split names: {dict(bad_split)}")
    return candidates, names, notes


def minikinetics_candidates(
    csv_paths: Sequence[str | os.PathLike[str]], split_ids: dict[str, str | os.PathLike[str]]
) -> tuple[list[Candidate], list[str], list[str]]:
    """Mini-Kinetics: the ids of its split files, labelled from the Kinetics CSVs (200 classes)."""
    by_id: dict[str, dict[str, str]] = {}
    for row in _kinetics_rows(csv_paths):
        if row.get("label"):
            by_id.setdefault(row["youtube_id"], row)
            by_id.setdefault(_clip_stem(row), row)
    chosen: list[tuple[str, dict[str, str]]] = []
    unknown: list[str] = []
    for split, path in split_ids.items():
        for entry in read_list_file(path):
            key = Path(entry.get("key") or entry.get("youtube_id", "")).stem
            if key in by_id:
                chosen.append((split, by_id[key]))
            else:
                unknown.append(key)
    names = sorted({row["label"] for _, row in chosen})
    index = {n: i for i, n in enumerate(names)}
    candidates = [Candidate(_clip_stem(r), s, (index[r["label"]],), stems=(_clip_stem(r),)) for s, r in chosen]
    notes = []
    if unknown:
        notes.append(
            f"left out {len(unknown)} id(s) of the split files not found in the Kinetics CSVs "
            f"(e.g. {', '.join(unknown[:5])})"
        )
    return candidates, names, notes


def read_mit_categories(path: str | os.PathLike[str]) -> list[str]:
    """Moments in Time's moments_categories.txt: `NAME,INDEX` lines (0-based, no gaps) -> names by index."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise PrepareError(f"{path}: cannot read the categories file ({err.strerror})") from err
    except UnicodeDecodeError as err:
        raise PrepareError(f"{path}: not a UTF-8 text categories file (byte {err.start}: {err.reason})") from err
    names: dict[int, str] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, _, index = (part.strip() for part in line.rpartition(","))
        if not name or not index.isdigit():
            problems.append(f"{path}:{number}: {line.strip()!r} is not `NAME,INDEX`")
        elif int(index) in names:
            problems.append(f"{path}:{number}: index {index} is given twice ({names[int(index)]!r} and {name!r})")
        else:
            names[int(index)] = name
    if problems:
        raise _problems("the categories file (fix these lines)", problems)
    if not names:
        raise PrepareError(f"{path}: the categories file has no classes")
    if sorted(names) != list(range(len(names))):
        raise PrepareError(f"{path}: class indices must be 0..N-1 without gaps")
    return [names[i] for i in range(len(names))]


def _mit_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank row of a Moments in Time CSV (it has no header)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise PrepareError(f"{path}: cannot read the list file ({err.strerror})") from err
    except UnicodeDecodeError as err:
        raise PrepareError(f"{path}: not a UTF-8 text list file (byte {err.start}: {err.reason})") from err
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not numbered:
        raise PrepareError(f"{path}: the list file has no entries")
    return [(n, [f.strip() for f in fields]) for (n, _), fields in zip(numbered, csv.reader(line for _, line in numbered))]


def mit_candidates(
    lists: dict[str, str | os.PathLike[str]],
    *,
    class_names: Sequence[str],
    folders: dict[str, str],
) -> list[Candidate]:
    """Moments in Time: rows `FILENAME,LABEL[,AGREE,DISAGREE]` of each split's CSV (trainingSet.csv,
    validationSet.csv), FILENAME (e.g. `blocking/getty-karate-video-id635808620_4.mp4`) relative to the
    split's video folder `folders[split]`; LABEL a name from the categories file.

    The id is the video's path under --videos without its extension (`training/blocking/getty-...`):
    the split and class folders keep ids unique where file names are not. Every bad row is reported
    at once, naming its file and line.
    """
    index = {name: i for i, name in enumerate(class_names)}
    candidates, problems = [], []
    for split, path in lists.items():
        for number, fields in _mit_rows(Path(path)):
            where = f"{path}:{number}"
            filename = fields[0]
            label = fields[1] if len(fields) > 1 else ""
            if len(fields) < 2 or not filename:
                problems.append(f"{where}: need `FILENAME,LABEL,...`, got {','.join(fields)!r}")
            elif filename.startswith("/") or ".." in filename.split("/"):
                problems.append(f"{where}: {filename!r} must be a path inside the split's folder (no leading / or ..)")
            elif label not in index:
                problems.append(f"{where} ({filename}): label {label!r} is not in the categories file")
            else:
                rel = posixpath.join(folders[split], filename) if folders[split] else filename
                candidates.append(Candidate(posixpath.splitext(rel)[0], split, (index[label],), rel_path=rel))
    if problems:
        raise _problems("the Moments in Time CSVs (fix or remove these rows)", problems)
    return candidates


# ----------------------------------------------------------------------------- pipeline
def _index_videos(root: Path) -> dict[str, str]:
    """stem -> path relative to root, for every video file under root (first in sorted order wins)."""
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder, name)
            if path.suffix.lower() in VIDEO_EXTENSIONS:
                found.setdefault(path.stem, path.relative_to(root).as_posix())
    return found


def probe_video(path: str) -> tuple[dict[str, Any] | None, str | None]:
    """(num_frames, fps, duration, width, height) of a video by opening it with decord and decoding
    its first frame, or (None, reason). Runs in worker processes."""
    try:
        if os.path.getsize(path) == 0:
            return None, "empty file (0 bytes)"
    except OSError as err:
        return None, f"unreadable ({err.strerror})"
    try:
        reader = decord.VideoReader(path, num_threads=1)
        frames = len(reader)
        fps = float(reader.get_avg_fps())
        if frames < 1:
            return None, "no frames"
        height, width = reader[0].shape[:2]
    except (decord.DECORDError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return None, f"unreadable ({first[:160]})"
    if not math.isfinite(fps) or fps <= 0:
        return None, "no frame rate"
    info = {"num_frames": frames, "fps": fps, "duration": frames / fps, "width": width, "height": height}
    return info, None


def _probe_all(paths: list[str], workers: int, progress: bool) -> list[tuple[dict[str, Any] | None, str | None]]:
    """Probe in this machine's processes (the Ray path is `searchlab.ray_probe.probe_on_ray`)."""
    bar = dict(total=len(paths), desc="probing videos", unit="video", disable=not progress)
    if workers <= 1 or len(paths) <= 1:
        return [probe_video(p) for p in tqdm(paths, **bar)]
    with ProcessPoolExecutor(max_workers=workers, mp_context=worker_context()) as pool:
        chunk = max(1, min(64, len(paths) // (workers * 8)))
        return list(tqdm(pool.map(probe_video, paths, chunksize=chunk), **bar))


def _write_report(path: Path, rows: list[tuple[str, str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video_id", "path", "reason"])
        writer.writerows(rows)
    give_default_mode(tmp)  # mkstemp made it 0600: data files get the user's usual mode
    os.replace(tmp, path)


def report_path_for(manifest_path: str | os.PathLike[str]) -> Path:
    """Where the bad-videos report of a manifest goes: M.parquet -> M.bad_videos.csv."""
    path = Path(manifest_path)
    return path.with_name(path.name.removesuffix(".parquet") + ".bad_videos.csv")


def prepare_manifest(
    candidates: Iterable[Candidate],
    *,
    class_names: Sequence[str],
    dataset: str,
    videos: str | os.PathLike[str],
    out: str | os.PathLike[str],
    workers: int = 1,
    progress: bool = True,
    notes: Sequence[str] = (),
    ray_address: str | None = None,
) -> PrepareResult:
    """Locate, probe, and write the manifest (paths relative to `videos`) and the bad-videos report.

    With `ray_address` ('auto' or a head's address) the probing runs in Ray tasks over that cluster's
    nodes (`workers` is then unused) and `result.probed_on` says how many videos each node probed.
    """
    root = Path(videos)
    if not root.is_dir():
        raise PrepareError(f"--videos {root}: not a folder; point it at the folder holding the videos")
    if Path(out).is_dir():
        raise PrepareError(f"--out {out}: is a folder; give the manifest file to write, e.g. {Path(out) / 'manifest.parquet'}")
    index = _index_videos(root)
    result = PrepareResult(None, Path(out), report_path_for(out), notes=list(notes))
    bad: list[tuple[str, str, str]] = []
    located: list[tuple[Candidate, str]] = []
    seen: set[str] = set()
    for cand in candidates:
        if cand.video_id in seen:
            bad.append((cand.video_id, cand.rel_path or "", "duplicate id (kept the first)"))
            continue
        seen.add(cand.video_id)
        rel = cand.rel_path if cand.rel_path and (root / cand.rel_path).is_file() else None
        rel = rel or next((index[s] for s in cand.stems if s in index), None)
        if rel is None:
            wanted = cand.rel_path or " or ".join(f"{s}.<ext>" for s in cand.stems)
            bad.append((cand.video_id, wanted, "missing (no such file under --videos)"))
        else:
            located.append((cand, rel))
    paths = [str(root / rel) for _, rel in located]
    if ray_address is None:
        probes = _probe_all(paths, workers, progress)
    else:
        from searchlab.ray_probe import probe_on_ray  # the launch layer: imports Ray

        probes, result.probed_on = probe_on_ray(paths, root=str(root), address=ray_address, progress=progress)
    rows = []
    for (cand, rel), (info, reason) in zip(located, probes):
        if info is None:
            bad.append((cand.video_id, rel, reason or "unreadable"))
            continue
        rows.append({"video_id": cand.video_id, "path": rel, "label": cand.labels[0],
                     "labels": sorted(cand.labels), "split": cand.split, **info})
    result.skipped = Counter(reason.split(" (")[0] for _, _, reason in bad)
    _write_report(result.report_path, bad)
    if not rows:
        raise PrepareError(
            f"no usable video: {result.summary()}\nCheck that --videos points at the video folder."
        )
    try:
        result.manifest = build_manifest(rows, class_names=class_names, dataset=dataset)
    except ManifestError as err:
        raise PrepareError(str(err)) from err
    write_manifest(result.manifest, result.manifest_path)
    result.notes.append(f"paths are relative to {root} (pass it as data_root)")
    return result


# ----------------------------------------------------------------------------- CLI
def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return number


def _add_common(parser: argparse.ArgumentParser, *, out_help: str) -> None:
    parser.add_argument("--videos", required=True, type=Path, help="folder holding the videos (searched recursively); manifest paths are relative to it")
    parser.add_argument("--out", required=True, type=Path, help=out_help)
    parser.add_argument("--workers", type=_positive, default=max(1, (os.cpu_count() or 1)), help="probe processes (default: CPU count)")
    parser.add_argument("--ray", metavar="ADDRESS", help="probe in Ray tasks spread over the nodes of the cluster at ADDRESS "
                        "(HOST:PORT, or auto: RAY_ADDRESS or the Ray started on this machine) instead of --workers "
                        "local processes; every node must see --videos at the same path")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _build_parser() -> argparse.ArgumentParser:
    parser = command_parser("searchlab.data.prepare", description=(
        "Turn a data set's own files into a manifest (Parquet): probe every video with decord, keep the "
        "readable ones, list the others in <manifest>.bad_videos.csv. `SOURCE --help` shows its options."),
        examples=["python -m searchlab.data.prepare synthetic --out runs/data/synthetic",
                  "python -m searchlab.data.prepare activitynet --annotations activity_net.v1-3.min.json "
                  "--videos data/activitynet/videos --out data/activitynet/manifest.parquet"])
    sub = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    defaults = SyntheticConfig()
    syn = sub.add_parser("synthetic", help="generate the synthetic set (real H.264 MP4s + manifest)",
                         description="Generate the synthetic video set (docs/synthetic_data.md).")
    syn.add_argument("--out", required=True, type=Path, help="output folder (DIR/manifest.parquet, DIR/videos/...)")
    syn.add_argument("--classes", type=int, default=defaults.num_classes, help="number of classes (default %(default)s)")
    syn.add_argument("--train-per-class", type=int, default=defaults.train_per_class, help="training videos per class (default %(default)s)")
    syn.add_argument("--val-per-class", type=int, default=defaults.val_per_class, help="validation videos per class (default %(default)s)")
    syn.add_argument("--frames", type=int, default=defaults.num_frames, help="frames per video (default %(default)s)")
    syn.add_argument("--fps", type=float, default=defaults.fps, help="frame rate (default %(default)s)")
    syn.add_argument("--size", type=int, default=defaults.size, help="frame width = height in pixels, even (default %(default)s)")
    syn.add_argument("--seed", type=int, default=defaults.seed, help="random seed; same seed, same files (default %(default)s)")
    syn.add_argument("--fine-fraction", type=float, default=defaults.fine_fraction, help="share of classes that differ only in fine texture (default %(default)s)")
    syn.add_argument("--fine-contrast", type=float, default=defaults.fine_contrast, help="stripe contrast of the fine classes: lower is harder for low precision (default %(default)s)")
    syn.add_argument("--multi-label", action="store_true", help="untrimmed variant: two classes per video in separate windows")
    syn.add_argument("--workers", type=_positive, default=None, help="writer processes (default: CPU count)")
    syn.add_argument("--force", action="store_true", help="regenerate even if DIR holds a set made with the same knobs")
    syn.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    anet = sub.add_parser("activitynet", help="ActivityNet v1.3 from activity_net.v1-3.min.json",
                          description="ActivityNet v1.3: training -> train, validation -> val; testing has no labels and is left out.")
    anet.add_argument("--annotations", required=True, type=Path, help="activity_net.v1-3.min.json")
    _add_common(anet, out_help="manifest file to write (e.g. anet.parquet)")

    for name, title in (("fcvid", "FCVID"), ("minisports", "Mini-Sports1M")):
        lst = sub.add_parser(name, help=f"{title} from list files",
                             description=f"{title} from list files: lines `ID_OR_PATH LABEL` (whitespace TXT or CSV; "
                             "also `PATH NUM_FRAMES LABEL`). LABEL is a class index in [0, --num-classes), or, with --classes, an index or a name from that file; several labels: 3;17.")
        lst.add_argument("--train", nargs="+", type=Path, default=[], help="training list file(s)")
        lst.add_argument("--val", nargs="+", type=Path, default=[], help="validation/testing list file(s) (labelled)")
        lst.add_argument("--classes", type=Path, help="class-name file: one name per line, or `INDEX NAME` lines")
        lst.add_argument("--num-classes", type=_positive, default=_DEFAULT_CLASSES[name], help="number of classes when there is no --classes file; labels must be indices below it (default %(default)s)")
        _add_common(lst, out_help="manifest file to write")

    kin = sub.add_parser("kinetics", help="Kinetics from its CSV files",
                         description="Kinetics CSVs with columns label,youtube_id,time_start,time_end,split; "
                         "videos named <youtube_id>_<start:06d>_<end:06d>.<ext>. Rows without a label are left out.")
    kin.add_argument("--csv", required=True, nargs="+", type=Path, help="train.csv, validate.csv, ...")
    _add_common(kin, out_help="manifest file to write")

    mini = sub.add_parser("minikinetics", help="Mini-Kinetics (200 classes) from its split files + Kinetics CSVs",
                          description="Mini-Kinetics: the ids listed in the split files, labels taken from the Kinetics-400 CSVs.")
    mini.add_argument("--kinetics-csv", required=True, nargs="+", type=Path, help="Kinetics-400 train/validate CSVs")
    mini.add_argument("--train-ids", required=True, type=Path, help="file of YouTube ids (or clip names) of the training split")
    mini.add_argument("--val-ids", required=True, type=Path, help="file of YouTube ids (or clip names) of the validation split")
    _add_common(mini, out_help="manifest file to write")

    mit = sub.add_parser("mit", help="Moments in Time from trainingSet.csv / validationSet.csv",
                         description="Moments in Time: CSV rows `FILENAME,LABEL,AGREE,DISAGREE` (no header), FILENAME "
                         "relative to the split's video folder (the release's layout: --videos/training/FILENAME, "
                         "--videos/validation/FILENAME); classes and their order from moments_categories.txt "
                         "(`NAME,INDEX` lines).")
    mit.add_argument("--train-csv", type=Path, help="trainingSet.csv")
    mit.add_argument("--val-csv", type=Path, help="validationSet.csv")
    mit.add_argument("--categories", required=True, type=Path, help="moments_categories.txt")
    mit.add_argument("--train-folder", default=_MIT_FOLDERS["train"], help="folder under --videos holding the training videos; '' for --videos itself (default %(default)s)")
    mit.add_argument("--val-folder", default=_MIT_FOLDERS["val"], help="folder under --videos holding the validation videos; '' for --videos itself (default %(default)s)")
    _add_common(mit, out_help="manifest file to write")
    return parser


def _run(args: argparse.Namespace) -> str:
    progress = not args.no_progress
    if args.source == "synthetic":
        manifest = generate_synthetic(
            args.out, num_classes=args.classes, train_per_class=args.train_per_class,
            val_per_class=args.val_per_class, num_frames=args.frames, fps=args.fps, size=args.size,
            seed=args.seed, multi_label=args.multi_label, fine_fraction=args.fine_fraction, fine_contrast=args.fine_contrast,
            workers=args.workers, progress=progress, force=args.force,
        )
        return f"synthetic set: {len(manifest)} videos, {manifest.num_classes} classes, manifest {args.out / MANIFEST_NAME}"
    notes: list[str] = []
    if args.source == "activitynet":
        candidates, names, notes = activitynet_candidates(args.annotations)
    elif args.source in ("fcvid", "minisports"):
        if not args.train and not args.val:
            raise PrepareError("give at least one of --train LIST or --val LIST")
        class_names = read_class_names(args.classes) if args.classes else None
        candidates, names = list_candidates(
            {"train": args.train, "val": args.val}, class_names=class_names, num_classes=args.num_classes
        )
    elif args.source == "kinetics":
        candidates, names, notes = kinetics_candidates(args.csv)
    elif args.source == "mit":
        lists = {split: path for split, path in (("train", args.train_csv), ("val", args.val_csv)) if path}
        if not lists:
            raise PrepareError("give at least one of --train-csv trainingSet.csv or --val-csv validationSet.csv")
        names = read_mit_categories(args.categories)
        candidates = mit_candidates(lists, class_names=names,
                                    folders={"train": args.train_folder.strip("/"), "val": args.val_folder.strip("/")})
    else:
        candidates, names, notes = minikinetics_candidates(
            args.kinetics_csv, {"train": args.train_ids, "val": args.val_ids}
        )
    result = prepare_manifest(
        candidates, class_names=names, dataset=args.source, videos=args.videos, out=args.out,
        workers=args.workers, progress=progress, notes=notes, ray_address=args.ray,
    )
    return result.summary()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The CLI's arguments (also read by the Ray Job entry, jobs/prepare.py, before it runs `main`)."""
    return _build_parser().parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exit code 2 on bad input, with every problem found printed."""
    args = parse_args(argv)
    try:
        print(_run(args))
    except (PrepareError, ManifestError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
