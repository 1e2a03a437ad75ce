"""Node-local scratch: write each output on local disk, then move it to the shared folder.

On a cluster the output folder is on a shared (network) file system where
many small writes are slow and SQLite (GeoPackage) writes are lock-sensitive.
With ``Config.scratch_dir`` set (e.g. ``"$TMPDIR"`` or ``"/tmp"``; variables
are expanded on the worker, so each node uses its own), every output is
written to a private file under ``<scratch_dir>/grouputils-scratch/`` and then
*published*: copied in one sequential stream to a temporary name beside the
target on the shared file system, and renamed into place. Readers of the
shared folder therefore still see either the old or the new complete file.

A killed task leaves no half-written file under a real name on either side:
the shared side holds at most a ``.*.tmp`` file (removed by the pipeline's
clean-up of orphans, and never listed as a tile), and the local side a file
named after the dead process, which the next scratch write on that node
deletes (:func:`clean_scratch`).

With ``scratch_dir`` unset, :func:`output_path` is exactly
:func:`grouputils.core.atomic.atomic_path`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from grouputils.core.atomic import atomic_path, temporary_name
from grouputils.core.errors import ConfigError

__all__ = [
    "output_path",
    "local_input",
    "resolve_scratch",
    "clean_scratch",
    "publish",
    "SCRATCH_SUBDIR",
]

SCRATCH_SUBDIR = "grouputils-scratch"


def resolve_scratch(scratch_dir: str | os.PathLike[str]) -> Path:
    """The folder for this process's scratch files, created if needed.

    Parameters
    ----------
    scratch_dir : str or path-like
        The setting, with ``$VARIABLES`` and ``~`` expanded here (on the node).

    Returns
    -------
    Path
        ``<scratch_dir>/grouputils-scratch``.

    Raises
    ------
    ConfigError
        A variable in the setting is unset on this node, or the folder cannot be made.
    """
    text = os.path.expanduser(os.path.expandvars(os.fspath(scratch_dir)))
    if "$" in text:
        raise ConfigError(
            f"scratch_dir {os.fspath(scratch_dir)!r}: a variable in it is not set on this node"
        )
    root = Path(text) / SCRATCH_SUBDIR
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"scratch_dir {text!r} cannot be used: {e.strerror or e}") from e
    return root


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_scratch(root: Path) -> int:
    """Delete scratch files of processes that no longer run on this node; return how many."""
    removed = 0
    me = os.getpid()
    for f in root.iterdir():
        pid_text = f.name.split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == me or _pid_alive(int(pid_text)):
            continue
        if f.is_dir():
            shutil.rmtree(f, ignore_errors=True)
        else:
            f.unlink(missing_ok=True)
        removed += 1
    return removed


def publish(local: Path, path: Path) -> Path:
    """Copy ``local`` to a temporary sibling of ``path``, then rename it to ``path``.

    The copy is one sequential stream (``shutil.copyfile``) followed by one
    rename on the target file system; if anything fails the temporary file is
    removed and ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        shutil.copyfile(local, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return path


@contextlib.contextmanager
def output_path(
    path: str | Path, scratch_dir: str | os.PathLike[str] | None = None
) -> Iterator[Path]:
    """Yield a path to write an output to; it becomes ``path`` atomically if the block succeeds.

    Parameters
    ----------
    path : str or Path
        The output's final place (on the shared file system).
    scratch_dir : str or path-like, optional
        Node-local folder to write in first (see the module docstring). None:
        write beside ``path`` and rename (:func:`grouputils.core.atomic.atomic_path`).

    Yields
    ------
    Path
        Where to write; it keeps ``path``'s suffix, so drivers chosen by
        extension still work.
    """
    path = Path(path)
    if scratch_dir is None:
        with atomic_path(path) as tmp:
            yield tmp
        return
    root = resolve_scratch(scratch_dir)
    clean_scratch(root)
    local = root / f"{os.getpid()}-{uuid.uuid4().hex[:10]}-{path.name}"
    try:
        yield local
        publish(local, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            local.unlink()


@contextlib.contextmanager
def local_input(path: str | Path, scratch_dir: str | os.PathLike[str] | None) -> Iterator[Path]:
    """Yield a node-local copy of an input file (``path`` itself without ``scratch_dir``).

    The copy is read in one sequential stream and deleted after the block.
    """
    path = Path(path)
    if scratch_dir is None:
        yield path
        return
    root = resolve_scratch(scratch_dir)
    clean_scratch(root)
    local = root / f"{os.getpid()}-{uuid.uuid4().hex[:10]}-{path.name}"
    try:
        shutil.copyfile(path, local)
        yield local
    finally:
        with contextlib.suppress(FileNotFoundError):
            local.unlink()
