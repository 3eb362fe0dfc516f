from pathlib import Path

import pytest

from searchlab.atomic_dir import staged_directory


def test_a_finished_folder_replaces_the_old_one_whole(tmp_path: Path):
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with staged_directory(target) as staging:
        (staging / "new.txt").write_text("new")
        assert (target / "old.txt").is_file()  # readers still see the old folder meanwhile
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no temp folders left


def test_a_failed_write_leaves_the_old_folder_and_no_temp(tmp_path: Path):
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_directory(target) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("disk full")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
