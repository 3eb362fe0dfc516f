"""Manifest schema: round trip, atomic writes, and validation that reports every problem at once."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from searchlab.data.manifest import (
    MANIFEST_SCHEMA,
    Manifest,
    ManifestError,
    build_manifest,
    read_manifest,
    validate_manifest,
    write_manifest,
)


def _row(video_id: str, **changes: object) -> dict:
    row = {"video_id": video_id, "path": f"videos/{video_id}.mp4", "label": 0, "split": "train",
           "num_frames": 16, "fps": 8.0, "duration": 2.0, "width": 32, "height": 32}
    row.update(changes)
    return row


def _manifest(rows: list[dict] | None = None) -> Manifest:
    rows = rows or [_row("a"), _row("b", label=2, labels=[2, 1], split="val"), _row("c", label=1, split="test")]
    return build_manifest(rows, class_names=["run", "jump", "swim"], dataset="toy")


def test_round_trip_keeps_table_classes_and_dataset(tmp_path: Path) -> None:
    manifest = _manifest()
    path = write_manifest(manifest, tmp_path / "sub" / "m.parquet")
    again = read_manifest(path, data_root=tmp_path)
    assert again.table.equals(manifest.table)
    assert again.table.schema.remove_metadata() == MANIFEST_SCHEMA
    assert again.class_names == ("run", "jump", "swim") and again.dataset == "toy"
    assert again.num_classes == 3 and again.multi_label
    assert again.split("val").table["video_id"].to_pylist() == ["b"]
    assert again.table["labels"].to_pylist() == [[0], [2, 1], [1]]
    assert sorted(os.listdir(tmp_path / "sub")) == ["m.parquet"]  # no temp file left behind


def test_trimmed_manifest_is_not_multi_label() -> None:
    assert not _manifest([_row("a"), _row("b", label=1)]).multi_label


def test_overwrite_replaces_the_file(tmp_path: Path) -> None:
    write_manifest(_manifest(), tmp_path / "m.parquet")
    write_manifest(_manifest([_row("z")]), tmp_path / "m.parquet")
    assert read_manifest(tmp_path / "m.parquet").table["video_id"].to_pylist() == ["z"]


def test_validation_reports_every_problem_at_once() -> None:
    rows = [
        _row("a"),
        _row("a", path="../outside.mp4"),
        _row("b", label=7),
        _row("c", labels=[0, 9]),
        _row("d", split="holdout", path="/abs/d.mp4"),
        _row("e", num_frames=0, fps=0.0),
    ]
    with pytest.raises(ManifestError) as info:
        build_manifest(rows, class_names=["x", "y"], dataset="toy")
    text = str(info.value)
    for expected in ("duplicate video_id", "'a'", "outside [0, 2)", "('b', 7)", "('c', [0, 9])",
                     "unknown split", "'holdout'", "num_frames < 1", "fps <= 0",
                     "../outside.mp4", "/abs/d.mp4", "re-run"):
        assert expected in text, expected
    assert len(info.value.problems) >= 7


def test_path_escaping_through_a_link_is_caught_with_data_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    manifest = _manifest([_row("a", path="link/a.mp4")])
    validate_manifest(manifest)  # fine without a root to resolve against
    with pytest.raises(ManifestError, match="through a link"):
        validate_manifest(manifest, data_root=root)


def test_read_reports_missing_columns_and_metadata_together(tmp_path: Path) -> None:
    table = pq.read_table(write_manifest(_manifest(), tmp_path / "m.parquet"))
    pq.write_table(table.drop_columns(["fps", "labels"]).replace_schema_metadata({}), tmp_path / "bad.parquet")
    with pytest.raises(ManifestError) as info:
        read_manifest(tmp_path / "bad.parquet")
    text = str(info.value)
    assert "missing column(s): labels, fps" in text
    assert "no 'class_names'" in text and "no 'dataset'" in text


def test_read_casts_compatible_types_and_rejects_wrong_ones(tmp_path: Path) -> None:
    table = pq.read_table(write_manifest(_manifest(), tmp_path / "m.parquet"))
    metadata = table.schema.metadata
    widened = table.set_column(2, "label", table["label"].cast(pa.int64())).replace_schema_metadata(metadata)
    pq.write_table(widened, tmp_path / "wide.parquet")
    assert read_manifest(tmp_path / "wide.parquet").table["label"].type == pa.int32()
    texts = pa.array(["zero", "two", "one"])
    wrong = table.set_column(2, "label", texts).replace_schema_metadata(metadata)
    pq.write_table(wrong, tmp_path / "wrong.parquet")
    with pytest.raises(ManifestError, match="'label' is string, expected int32"):
        read_manifest(tmp_path / "wrong.parquet")


def test_unreadable_inputs_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="searchlab.data.prepare"):
        read_manifest(tmp_path / "none.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ManifestError, match="not a readable Parquet file"):
        read_manifest(tmp_path / "junk.parquet")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        _manifest().split("dev")


def test_empty_or_repeated_class_table_is_an_error() -> None:
    with pytest.raises(ManifestError, match="repeated class name"):
        build_manifest([_row("a")], class_names=["x", "x"], dataset="toy")
    with pytest.raises(ManifestError, match="class-name table is empty"):
        build_manifest([_row("a")], class_names=[], dataset="toy")


def test_a_manifest_without_rows_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no rows: the manifest lists no video"):
        build_manifest([], class_names=["x"], dataset="toy")
    table = pq.read_table(write_manifest(_manifest(), tmp_path / "m.parquet"))
    pq.write_table(table.slice(0, 0), tmp_path / "empty.parquet")  # schema and class table, no rows
    with pytest.raises(ManifestError) as info:
        read_manifest(tmp_path / "empty.parquet")
    assert info.value.problems == ("no rows: the manifest lists no video",)
    assert "re-run `python -m searchlab.data.prepare`" in str(info.value)
