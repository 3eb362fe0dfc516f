"""One Parquet schema for every video data set searchlab reads.

Every source (synthetic, ActivityNet, FCVID, Mini-Sports1M, Mini-Kinetics, Kinetics) is turned into
the same table by `searchlab.data.prepare`, so the clip loader, the metrics and the sweep never care
where a video came from. Validation runs on read and before every write and reports every problem
at once, because a manifest is usually fixed by re-running a preparation step and a one-error-at-
a-time loop over a 200k-row table wastes hours.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from searchlab.atomic_dir import give_default_mode

__all__ = [
    "MANIFEST_SCHEMA",
    "SPLITS",
    "Manifest",
    "ManifestError",
    "build_manifest",
    "read_manifest",
    "validate_manifest",
    "write_manifest",
]

SPLITS: tuple[str, ...] = ("train", "val", "test")

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("label", pa.int32(), nullable=False),
        pa.field("labels", pa.list_(pa.int32()), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("num_frames", pa.int32(), nullable=False),
        pa.field("fps", pa.float32(), nullable=False),
        pa.field("duration", pa.float32(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
    ]
)

_CLASS_NAMES_KEY = b"class_names"
_DATASET_KEY = b"dataset"
# How many offending values one problem line shows; the line always says how many there are.
_MAX_EXAMPLES = 10


class ManifestError(ValueError):
    """A manifest that cannot be used; `problems` lists every problem found, not just the first."""

    def __init__(self, problems: Sequence[str], *, source: str) -> None:
        self.problems = tuple(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"{source}: {len(self.problems)} problem(s) in the manifest:\n{lines}\n"
            "Fix the list/annotation files and re-run `python -m searchlab.data.prepare`."
        )


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: the table (MANIFEST_SCHEMA) plus its class-name table."""

    table: pa.Table
    class_names: tuple[str, ...]
    dataset: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def multi_label(self) -> bool:
        """True when any video carries more than one class (untrimmed sets, scored with mAP)."""
        if self.table.num_rows == 0:
            return False
        return pc.max(pc.list_value_length(self.table["labels"])).as_py() > 1

    def __len__(self) -> int:
        return self.table.num_rows

    def split(self, name: str) -> Manifest:
        """The rows of one split, in manifest order (row i of the result is dataset index i)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        rows = self.table.filter(pc.equal(self.table["split"], name))
        return Manifest(table=rows, class_names=self.class_names, dataset=self.dataset)

    def rows(self) -> list[dict[str, Any]]:
        """The table as a list of plain dicts (one per video)."""
        return self.table.to_pylist()


def build_manifest(
    rows: Iterable[Mapping[str, Any]], *, class_names: Sequence[str], dataset: str
) -> Manifest:
    """Build and validate a manifest from row dicts; `labels` defaults to `[label]` when absent."""
    records = []
    for row in rows:
        record = dict(row)
        if "labels" not in record and "label" in record:
            record["labels"] = [record["label"]]
        records.append(record)
    columns = {name: [r.get(name) for r in records] for name in MANIFEST_SCHEMA.names}
    try:
        table = pa.Table.from_pydict(columns, schema=MANIFEST_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise ManifestError([f"rows do not fit the manifest schema: {err}"], source=dataset) from err
    manifest = Manifest(table=table, class_names=tuple(class_names), dataset=dataset)
    validate_manifest(manifest)
    return manifest


def _examples(values: Sequence[Any]) -> str:
    shown = ", ".join(repr(v) for v in values[:_MAX_EXAMPLES])
    more = len(values) - _MAX_EXAMPLES
    return shown + (f" ... and {more} more" if more > 0 else "")


def _path_problem(path: str, root: Path | None) -> str | None:
    if not path:
        return "empty"
    if posixpath.isabs(path) or os.path.isabs(path) or "\\" in path:
        return "absolute or not a POSIX relative path"
    normal = posixpath.normpath(path)
    if normal == ".." or normal.startswith("../"):
        return "leaves the data root ('..')"
    if root is not None:
        resolved = (root / path).resolve()
        if not resolved.is_relative_to(root.resolve()):
            return "resolves (through a link) outside the data root"
    return None


def _check_rows(manifest: Manifest, root: Path | None) -> list[str]:
    table = manifest.table
    problems: list[str] = []
    for name in MANIFEST_SCHEMA.names:
        nulls = table[name].null_count
        if nulls:
            problems.append(f"column {name!r} has {nulls} null value(s)")
    if problems:
        return problems
    ids = table["video_id"].to_pylist()
    duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
    if duplicates:
        problems.append(f"{len(duplicates)} duplicate video_id(s): {_examples(duplicates)}")
    n = manifest.num_classes
    labels = table["label"].to_pylist()
    bad_label = [(i, v) for i, v in zip(ids, labels) if not 0 <= v < n]
    if bad_label:
        problems.append(
            f"{len(bad_label)} label(s) outside [0, {n}) (the class table has {n} names): "
            + _examples(bad_label)
        )
    label_lists = table["labels"].to_pylist()
    bad_labels = [(i, v) for i, v in zip(ids, label_lists) if not v or any(x is None or not 0 <= x < n for x in v)]
    if bad_labels:
        problems.append(
            f"{len(bad_labels)} 'labels' list(s) empty or outside [0, {n}): " + _examples(bad_labels)
        )
    not_member = [i for i, v, vs in zip(ids, labels, label_lists) if vs and v not in vs]
    if not_member:
        problems.append(f"{len(not_member)} row(s) whose 'label' is not in 'labels': {_examples(not_member)}")
    splits = table["split"].to_pylist()
    bad_split = sorted({s for s in splits if s not in SPLITS})
    if bad_split:
        problems.append(f"unknown split name(s) {_examples(bad_split)}; use {', '.join(SPLITS)}")
    for column, minimum in (("num_frames", 1), ("width", 1), ("height", 1)):
        bad = [i for i, v in zip(ids, table[column].to_pylist()) if v < minimum]
        if bad:
            problems.append(f"{len(bad)} row(s) with {column} < {minimum}: {_examples(bad)}")
    for column in ("fps", "duration"):
        bad = [i for i, v in zip(ids, table[column].to_pylist()) if not v > 0]
        if bad:
            problems.append(f"{len(bad)} row(s) with {column} <= 0 or NaN: {_examples(bad)}")
    bad_paths = [
        (p, why) for p in table["path"].to_pylist() if (why := _path_problem(p, root)) is not None
    ]
    if bad_paths:
        problems.append(
            f"{len(bad_paths)} path(s) not inside the data root (paths must be relative, "
            f"without '..'): {_examples(bad_paths)}"
        )
    return problems


def validate_manifest(manifest: Manifest, *, data_root: str | os.PathLike[str] | None = None) -> None:
    """Raise ManifestError listing every problem: no rows, schema, labels, ids, splits, sizes, paths.

    With `data_root`, paths are also resolved (following links) to check they stay inside it; file
    existence is not checked here because missing files are the clip loader's business.
    """
    problems: list[str] = []
    if not manifest.dataset:
        problems.append("the dataset name is empty")
    if not manifest.class_names:
        problems.append("the class-name table is empty")
    repeated = sorted(c for c, k in Counter(manifest.class_names).items() if k > 1)
    if repeated:
        problems.append(f"repeated class name(s): {_examples(repeated)}")
    missing = [n for n in MANIFEST_SCHEMA.names if n not in manifest.table.column_names]
    if missing:
        problems.append(f"missing column(s): {', '.join(missing)}")
    wrong = [
        f"{f.name} is {manifest.table.schema.field(f.name).type}, expected {f.type}"
        for f in MANIFEST_SCHEMA
        if f.name in manifest.table.column_names and manifest.table.schema.field(f.name).type != f.type
    ]
    if wrong:
        problems.append("wrong column type(s): " + "; ".join(wrong))
    if manifest.table.num_rows == 0:
        problems.append("no rows: the manifest lists no video")
    elif not missing and not wrong and manifest.class_names:
        root = Path(data_root) if data_root is not None else None
        problems.extend(_check_rows(manifest, root))
    if problems:
        raise ManifestError(problems, source=manifest.dataset or "manifest")


def _conform(table: pa.Table) -> tuple[pa.Table, list[str]]:
    """Cast columns that hold the right kind of value in another width (e.g. int64 -> int32)."""
    problems = []
    columns = {}
    for field in MANIFEST_SCHEMA:
        if field.name not in table.column_names:
            continue
        column = table[field.name]
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                problems.append(f"column {field.name!r} is {column.type}, expected {field.type}")
        columns[field.name] = column
    if problems or len(columns) < len(MANIFEST_SCHEMA):
        return (pa.table(columns) if columns else table), problems
    return pa.Table.from_arrays(list(columns.values()), schema=MANIFEST_SCHEMA), problems


def read_manifest(path: str | os.PathLike[str], *, data_root: str | os.PathLike[str] | None = None) -> Manifest:
    """Read and validate a manifest written by `write_manifest` (or by any tool using the schema)."""
    source = str(path)
    try:
        table = pq.read_table(path)
    except FileNotFoundError as err:
        raise ManifestError(
            ["no such file; create it with `python -m searchlab.data.prepare ...`"], source=source
        ) from err
    except (pa.ArrowInvalid, OSError) as err:
        raise ManifestError([f"not a readable Parquet file ({err})"], source=source) from err
    metadata = table.schema.metadata or {}
    problems: list[str] = []
    class_names: tuple[str, ...] = ()
    if _CLASS_NAMES_KEY not in metadata:
        problems.append("schema metadata has no 'class_names' (the class-name table)")
    else:
        try:
            decoded = json.loads(metadata[_CLASS_NAMES_KEY])
        except json.JSONDecodeError:
            decoded = None
        if isinstance(decoded, list) and all(isinstance(c, str) for c in decoded):
            class_names = tuple(decoded)
        else:
            problems.append("schema metadata 'class_names' is not a JSON list of strings")
    dataset = metadata.get(_DATASET_KEY, b"").decode("utf-8")
    if not dataset:
        problems.append("schema metadata has no 'dataset' name")
    table, cast_problems = _conform(table)
    problems.extend(cast_problems)
    manifest = Manifest(table=table, class_names=class_names, dataset=dataset or source)
    try:
        validate_manifest(manifest, data_root=data_root)
    except ManifestError as err:
        # An absent or unreadable class table is already reported above; do not report it twice.
        reported_classes = bool(problems) and "class_names" in " ".join(problems)
        problems.extend(
            p for p in err.problems if not (reported_classes and "class-name table is empty" in p)
        )
    if problems:
        raise ManifestError(problems, source=source)
    return manifest


def write_manifest(manifest: Manifest, path: str | os.PathLike[str]) -> Path:
    """Validate, then write atomically (temp file in the same folder + os.replace)."""
    validate_manifest(manifest)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        _CLASS_NAMES_KEY: json.dumps(list(manifest.class_names)).encode("utf-8"),
        _DATASET_KEY: manifest.dataset.encode("utf-8"),
    }
    table = manifest.table.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA.with_metadata(metadata))
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        give_default_mode(tmp)  # mkstemp made it 0600: data files get the user's usual mode
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
