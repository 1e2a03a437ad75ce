"""Write files so that a killed run never leaves a half-written one.

Every output is written under a temporary name in the same folder and then
renamed into place with :func:`os.replace`, which is atomic on POSIX file
systems (including NFS and Lustre for a rename within one folder). Readers
therefore see either the old complete file or the new complete file.
Temporary names start with ``.`` and end in ``.tmp``, so tile listings skip them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path",
    "write_text_atomic",
    "write_json_atomic",
    "temporary_name",
    "remove_temporaries",
]


def temporary_name(path: Path) -> Path:
    """A unique temporary sibling of ``path`` (same folder, same file system)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{path.suffix}")


#: What :func:`temporary_name` makes: ``.<name>.<pid>-<8 hex>.tmp<suffix>``.
_TEMPORARY = re.compile(r"^\..+\.\d+-[0-9a-f]{8}\.tmp(\.[^.]*)?$")


def remove_temporaries(folder: Path) -> int:
    """Delete the temporary files a killed writer left under ``folder``; return how many.

    Only names made by :func:`temporary_name` are removed (a process killed between
    writing and renaming, e.g. a worker stopped by Ctrl-C, leaves one). Call it only
    while no other process writes into ``folder`` (the pipeline holds its run lock).
    """
    removed = 0
    if folder.is_dir():
        for f in folder.rglob(".*.tmp*"):
            if f.is_file() and _TEMPORARY.match(f.name):
                f.unlink(missing_ok=True)
                removed += 1
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path; rename it to ``path`` if the block succeeds.

    The parent folder is created. If the block raises, the temporary file is
    removed and ``path`` is left as it was.

    Examples
    --------
    >>> with atomic_path(out) as tmp:           # doctest: +SKIP
    ...     frame.to_file(tmp)
    """
    path = Path(path)
    if not path.parent.is_dir():  # a stat: mkdir of an existing folder takes its lock
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented, key-sorted JSON to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
