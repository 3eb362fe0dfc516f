"""Write a folder so that readers see the complete old one or the complete new one, never half.

Temp folders and files from `tempfile` are private (0700 / 0600) by design; anything renamed into
place from one gets the mode a plain ``mkdir`` / ``open`` would have given instead (`give_default_mode`),
so runs, caches and bundles are readable by whoever the user's umask lets read them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows.

    Linux reports it in /proc/self/status. Elsewhere the only way is to set a value and set the old
    one back; the value set meanwhile is the most private one, so a file another thread creates in
    that instant is too private rather than too open.
    """
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def give_default_mode(path: str | os.PathLike[str]) -> None:
    """Set ``path``'s permission bits to what ``mkdir`` (folders) or ``open`` (files) gives by default."""
    path = Path(path)
    full = 0o777 if stat.S_ISDIR(path.stat().st_mode) else 0o666
    path.chmod(full & ~current_umask())


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write a text file through a temp file and a rename: readers see the old text or the new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: two writers never share one
    tmp.write_text(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def staged_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temp folder next to ``target``; on success it replaces ``target``.

    A previous ``target`` is renamed aside and deleted after the swap (for the instant between the
    two renames ``target`` is absent). On an exception the temp folder is removed and ``target``
    is left as it was. The new ``target`` has the default folder mode (see the module docstring).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        yield staging
        give_default_mode(staging)  # after the body: a copytree into it copies its source's mode too
        if target.exists():
            aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
            os.replace(target, aside / "previous")
            os.replace(staging, target)
            shutil.rmtree(aside)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
