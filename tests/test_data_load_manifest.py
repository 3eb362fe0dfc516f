"""Loading a stage's manifest: a manifest the stages cannot use is a ManifestError at load time."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from searchlab.config import DataConfig
from searchlab.data.manifest import ManifestError, build_manifest, write_manifest
from searchlab.train.loader import load_manifest


def _write(path: Path, splits: list[str]) -> Path:
    rows = [{"video_id": f"v{i}", "path": f"v{i}.mp4", "label": 0, "split": split, "num_frames": 8, "fps": 8.0,
             "duration": 1.0, "width": 32, "height": 32} for i, split in enumerate(splits)]
    return write_manifest(build_manifest(rows, class_names=["a"], dataset="toy"), path)


def test_train_and_val_rows_load(tmp_path: Path) -> None:
    manifest, root = load_manifest(DataConfig(manifest=str(_write(tmp_path / "m.parquet", ["train", "val"]))))
    assert len(manifest) == 2 and root == tmp_path


@pytest.mark.parametrize(
    ("splits", "expected"),
    [
        (["train", "train"], "no rows of split 'val' (rows per split: train 2)"),
        (["val", "test"], "no rows of split 'train' (rows per split: val 1, test 1)"),
        (["test"], "no rows of split 'train' or 'val' (rows per split: test 1)"),
    ],
)
def test_a_missing_stage_split_is_a_manifest_error(tmp_path: Path, splits: list[str], expected: str) -> None:
    path = _write(tmp_path / "m.parquet", splits)
    with pytest.raises(ManifestError) as info:
        load_manifest(DataConfig(manifest=str(path)))
    text = str(info.value)
    assert text.startswith(f"{path}: 1 problem(s)") and expected in text
    assert "train on 'train' and evaluate on 'val'" in text and "validation list" in text


def test_a_manifest_without_rows_is_a_manifest_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.parquet", ["train", "val"])
    pq.write_table(pq.read_table(path).slice(0, 0), path)
    with pytest.raises(ManifestError, match="no rows: the manifest lists no video"):
        load_manifest(DataConfig(manifest=str(path)))
