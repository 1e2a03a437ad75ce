"""Checks on input files before and after staging reads them.

Three promises, each cheap next to staging itself:

* :func:`check_integrity` — a GeoPackage (an SQLite file) passes SQLite's
  ``PRAGMA quick_check``, run on a read-only connection (``mode=ro`` URI), so
  a file with damaged pages is refused *before* anything is written. GDAL's
  Arrow reader can otherwise stop early at a damaged page without raising,
  and staging would write part of the file.
* :func:`check_feature_count` — the number of features read equals the count
  the layer declares, which also catches damage that ``quick_check`` cannot
  see (formats other than GeoPackage, damage inside a record).
* :func:`skipped_vector_files` — vector files of other formats in the input
  folder, which staging does not read, are named so they can be warned about
  instead of being skipped silently.
"""

from __future__ import annotations

import sqlite3
import warnings
from collections.abc import Iterable
from pathlib import Path

from grouputils.core.errors import InputError, SkippedInputWarning

__all__ = [
    "SkippedInputWarning",
    "check_integrity",
    "check_feature_count",
    "skipped_vector_files",
    "warn_skipped_vector_files",
    "VECTOR_EXTENSIONS",
]

_SQLITE_MAGIC = b"SQLite format 3\x00"

# Extensions GDAL reads as vector data and that are unambiguous (``.json``,
# ``.csv`` and ``.parquet`` are left out: they are as often tables or notes).
VECTOR_EXTENSIONS = (
    ".gpkg",
    ".shp",
    ".geojson",
    ".geojsonl",
    ".geojsons",
    ".fgb",
    ".gml",
    ".kml",
    ".kmz",
    ".gpx",
    ".sqlite",
    ".tab",
    ".mif",
)


def check_integrity(path: str | Path) -> None:
    """Refuse an SQLite-based input (GeoPackage) whose pages are damaged.

    Files that are not SQLite databases are left to GDAL. The check opens
    the file read-only through an SQLite URI (never writes, not even a
    journal) and runs ``PRAGMA quick_check``: every page and record format is
    checked, without the index cross-checks of ``integrity_check``.

    Parameters
    ----------
    path : str or Path
        The input file.

    Raises
    ------
    InputError
        SQLite reports the database as damaged or cannot read it.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as e:
        raise InputError(path, f"cannot be read ({e.strerror or e})") from e
    if head != _SQLITE_MAGIC:
        return
    try:
        rows = _quick_check(f"{path.resolve().as_uri()}?mode=ro")
    except sqlite3.OperationalError as e:
        if "malformed" in str(e) or "not a database" in str(e):
            raise InputError(
                path, f"is damaged: SQLite reports '{e}'; nothing of it was staged"
            ) from e
        # e.g. a WAL-mode file in a read-only folder (its -shm cannot be made):
        # read it as immutable, which needs no lock and no side file
        try:
            rows = _quick_check(f"{path.resolve().as_uri()}?mode=ro&immutable=1")
        except sqlite3.Error as e2:
            raise InputError(path, f"cannot be checked by SQLite ({e2})") from e2
    except sqlite3.Error as e:
        raise InputError(path, f"is damaged: SQLite reports '{e}'; nothing of it was staged") from e
    problems = [str(r[0]) for r in rows]
    if problems != ["ok"]:
        shown = "; ".join(problems[:3]) + (" ..." if len(problems) > 3 else "")
        raise InputError(
            path, f"is damaged: SQLite quick_check reports {shown}; nothing of it was staged"
        )


def _quick_check(uri: str) -> list[tuple]:
    con = sqlite3.connect(uri, uri=True)
    try:
        return con.execute("PRAGMA quick_check(20)").fetchall()
    finally:
        con.close()


def check_feature_count(path: str | Path, layer: str, declared: int | None, read: int) -> None:
    """Refuse an input of which fewer (or more) features were read than its layer declares.

    Parameters
    ----------
    path : str or Path
        The input file.
    layer : str
        The layer read.
    declared : int or None
        Feature count from ``pyogrio.read_info`` (None or negative: unknown,
        nothing to compare).
    read : int
        Features actually read.

    Raises
    ------
    InputError
        The counts differ.
    """
    if declared is None or declared < 0 or declared == read:
        return
    raise InputError(
        path,
        f"layer {layer!r} declares {declared} features but {read} could be read "
        "(the file is damaged or was being written); nothing of it was staged",
    )


def skipped_vector_files(files: Iterable[Path], input_ext: str) -> list[Path]:
    """The vector files among ``files`` that do not end in ``input_ext``.

    Parameters
    ----------
    files : iterable of Path
        Candidate files (e.g. everything under the input folder).
    input_ext : str
        The extension staged (``Config.input_ext``), case-insensitive.

    Returns
    -------
    list of Path
        Files with a vector extension from :data:`VECTOR_EXTENSIONS` other
        than ``input_ext``, in the order given. Shapefile side files (``.dbf``,
        ``.shx``...) are not listed: only the ``.shp`` is.
    """
    ext = input_ext.lower()
    return [
        p
        for p in files
        if p.suffix.lower() in VECTOR_EXTENSIONS and not p.name.lower().endswith(ext)
    ]


def warn_skipped_vector_files(root: Path, files: Iterable[Path], input_ext: str) -> list[Path]:
    """Warn (:class:`SkippedInputWarning`) about vector files staging will not read.

    Parameters
    ----------
    root : Path
        The input folder (file names are shown relative to it).
    files : iterable of Path
        Every file under ``root``.
    input_ext : str
        The extension staged.

    Returns
    -------
    list of Path
        The skipped files (empty: no warning).
    """
    skipped = skipped_vector_files(files, input_ext)
    if skipped:
        names = [
            p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p) for p in skipped
        ]
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        exts = sorted({p.suffix.lower() for p in skipped})
        warnings.warn(
            f"{root}: {len(skipped)} vector file(s) not staged because they do not end in "
            f"{input_ext!r}: {shown}. Only one format is staged per run: convert them to "
            f"GeoPackage (ogr2ogr -f GPKG out.gpkg in{exts[0]}) or set input_ext = {exts[0]!r} "
            "in the settings.",
            SkippedInputWarning,
            stacklevel=3,
        )
    return skipped
