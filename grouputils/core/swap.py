"""Replace a folder by another one without a moment where neither exists.

Renaming a folder over a non-empty folder is not possible, and two renames
(``final -> old``, ``new -> final``) leave a gap in which a reader (a web
server, a STAC client) finds nothing. On Linux, ``renameat2`` with
``RENAME_EXCHANGE`` swaps two paths atomically (ext4, xfs, btrfs, tmpfs, ...);
:func:`replace_folder` uses it and falls back to the two renames where the
system or file system does not offer it (macOS, NFS).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import sys
from pathlib import Path

__all__ = ["replace_folder", "exchange"]

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def exchange(a: str | Path, b: str | Path) -> bool:
    """Swap the paths ``a`` and ``b`` atomically; False where that is not supported.

    Parameters
    ----------
    a, b : str or Path
        Two existing paths on one file system.

    Returns
    -------
    bool
        True if swapped; False if the system or file system cannot (nothing changed).

    Raises
    ------
    OSError
        Any other failure of the swap.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:  # glibc before 2.28
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def replace_folder(new: str | Path, final: str | Path) -> None:
    """Put the folder ``new`` at ``final``; readers see the old or the new folder, always one.

    Parameters
    ----------
    new : str or Path
        A complete folder, a sibling of ``final``; it is gone afterwards.
    final : str or Path
        Where it goes; an earlier folder there is removed.
    """
    new, final = Path(new), Path(final)
    if not final.exists():
        os.replace(new, final)
        return
    if exchange(new, final):  # ``new`` now holds the old folder
        shutil.rmtree(new)
        return
    old = new.with_name(new.name + ".old")
    os.replace(final, old)  # a short gap: this system cannot swap atomically
    os.replace(new, final)
    shutil.rmtree(old)
