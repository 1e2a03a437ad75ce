"""Errors and warnings raised by grouputils.

Every error that comes from bad input names the file and the problem, so a
learner or researcher can fix the input without reading a traceback.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "GroupUtilsError",
    "ConfigError",
    "InputError",
    "OutputError",
    "NotFinalizedError",
    "GroupUtilsWarning",
    "RepairWarning",
    "MissingCRSWarning",
    "SkippedInputWarning",
]


class GroupUtilsError(Exception):
    """Base class of every error grouputils raises on purpose."""


class ConfigError(GroupUtilsError, ValueError):
    """A configuration value is invalid (unknown TMS, negative zoom, ...)."""


class InputError(GroupUtilsError, ValueError):
    """An input file cannot be used.

    Parameters
    ----------
    path : str or Path
        The offending file.
    problem : str
        What is wrong with it, in words a learner understands.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class OutputError(GroupUtilsError, OSError):
    """An output folder or file cannot be written."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class NotFinalizedError(InputError):
    """A staged tile has not been through :meth:`TileStager.finalize` since its inputs changed."""


class GroupUtilsWarning(UserWarning):
    """Base class of grouputils warnings."""


class RepairWarning(GroupUtilsWarning):
    """Input was repaired or partly dropped (invalid or non-polygon geometries)."""


class MissingCRSWarning(GroupUtilsWarning):
    """An input file had no CRS; the configured default was assumed."""


class SkippedInputWarning(GroupUtilsWarning):
    """Vector files in the input folder do not match ``input_ext`` and are not staged."""
