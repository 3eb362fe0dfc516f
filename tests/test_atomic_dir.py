import os
import stat
from pathlib import Path

import pytest

from searchlab.atomic_dir import current_umask, staged_directory, write_text_atomic


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


@pytest.fixture(params=[0o022, 0o027, 0o077])
def umask(request: pytest.FixtureRequest) -> int:
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def test_current_umask_reads_it_without_changing_it(umask: int):
    assert current_umask() == umask
    assert current_umask() == umask


def test_the_published_folder_has_the_default_mode_not_mkdtemps(tmp_path: Path, umask: int):
    target = tmp_path / "bundle"
    with staged_directory(target) as staging:
        (staging / "file.txt").write_text("x")
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~umask
    plain = tmp_path / "plain"
    plain.mkdir()  # what the user gets from any other program
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_write_text_atomic_replaces_whole_and_leaves_no_temp(tmp_path: Path, umask: int):
    path = tmp_path / "sub" / "note.json"
    write_text_atomic(path, "old")
    write_text_atomic(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["note.json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
