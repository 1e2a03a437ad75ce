"""Where the course's input data is: the shipped samples or an instructor's shared folder."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from grouputils.core.errors import InputError

__all__ = ["DATA_ENV", "sample_dir", "sample_files"]

DATA_ENV = "GROUPUTILS_DATA"
"""Environment variable naming a shared data folder that replaces the shipped samples."""


def sample_dir() -> Path:
    """Folder of the sample GeoPackages.

    Returns the folder named by the environment variable ``GROUPUTILS_DATA``
    when it is set (an instructor's shared copy of the course-scale data),
    otherwise the samples shipped inside the package (``data-samples/`` in a
    clone, ``grouputils/data_samples/`` in an installed wheel).

    Returns
    -------
    Path
        An existing folder.

    Raises
    ------
    InputError
        If ``GROUPUTILS_DATA`` names a folder that does not exist, or the
        shipped samples cannot be found as files on disk.
    """
    shared = os.environ.get(DATA_ENV)
    if shared:
        path = Path(shared).expanduser()
        if not path.is_dir():
            raise InputError(path, f"the folder named by {DATA_ENV} does not exist")
        return path
    try:
        resource = importlib.resources.files("grouputils.data_samples")
    except ModuleNotFoundError:
        raise InputError(
            "grouputils.data_samples", "the shipped samples are not installed; reinstall grouputils"
        ) from None
    path = Path(str(resource))
    if not path.is_dir():
        raise InputError(path, "the shipped samples are not a folder on disk (zipped install?)")
    return path


def sample_files(directory: str | Path | None = None) -> list[Path]:
    """The GeoPackages of a sample folder, sorted by name.

    Parameters
    ----------
    directory : str or Path, optional
        Folder to list; default :func:`sample_dir`.

    Returns
    -------
    list of Path
        ``*.gpkg`` files (temporary files starting with ``.`` are skipped).

    Raises
    ------
    InputError
        If the folder does not exist or holds no GeoPackage.
    """
    folder = sample_dir() if directory is None else Path(directory).expanduser()
    if not folder.is_dir():
        raise InputError(folder, "sample folder does not exist")
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() == ".gpkg" and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    if not files:
        raise InputError(
            folder, "holds no GeoPackage (.gpkg); make some with `grouputils sample DIR`"
        )
    return files
