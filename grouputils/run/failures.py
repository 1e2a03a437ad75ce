"""A failed item's error with its traceback, made where it failed and carried back.

A task that fails on a Parsl worker comes back to the main process as a value,
so the traceback has to be formatted on the worker: :meth:`Failure.from_exception`
does that. The run log gets the whole traceback; the run summary gets
:meth:`Failure.first_frames`, the innermost frames with paths shortened to the
package (``grouputils/core/staging/stager.py:189 in stage``), so the summary holds no
absolute paths of the machine.
"""

from __future__ import annotations

import dataclasses
import traceback
from pathlib import Path

__all__ = ["Failure"]

#: The folder that holds the ``grouputils`` package (``grouputils/run/failures.py`` -> its grandparent).
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def _short(filename: str) -> str:
    """A frame's file without the machine's folders."""
    path = Path(filename)
    parts = path.parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return Path(*parts[parts.index(marker) + 1 :]).as_posix()
    try:
        return path.resolve().relative_to(_PACKAGE_ROOT).as_posix()
    except (ValueError, OSError):
        return path.name


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why one item failed.

    Attributes
    ----------
    error : str
        ``"ErrorType: message"``.
    traceback : str
        The full formatted traceback (empty when none was available).
    frames : tuple of str
        Every frame as ``"<file>:<line> in <function>"``, outermost first,
        with shortened file names.
    """

    error: str
    traceback: str
    frames: tuple[str, ...] = ()

    @classmethod
    def from_exception(cls, exc: BaseException) -> Failure:
        """The failure of ``exc``, with its traceback (call where it was caught)."""
        te = traceback.TracebackException.from_exception(exc)
        frames = tuple(f"{_short(f.filename)}:{f.lineno} in {f.name}" for f in te.stack)
        return cls(f"{type(exc).__name__}: {exc}", "".join(te.format()), frames)

    def first_frames(self, n: int) -> str:
        """The error and the ``n`` innermost frames, one per line (for the summary)."""
        shown = self.frames[-n:] if n > 0 else ()
        return "\n".join([*shown, self.error])

    def __str__(self) -> str:
        return self.error
