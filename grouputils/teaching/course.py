"""Small helpers for the course's graders: recompute a learner's expected values from disk.

The hidden tests of the course notebooks check what a learner printed or
computed against the learner's *own* outputs (never against numbers that
change with the machine or the data set). These functions do the reading:

* :func:`unique_polygon_counts` — the polygons each input file contributes,
  counted once: rows of the finalized staged tiles whose centroid lies in
  their tile and that are not flagged as duplicates;
* :func:`parse_count_table` — read the per-file and total table that a
  learner's ``count_polygons.py`` prints;
* :func:`strip_markers` — a source notebook cell's text without nbgrader's
  ``### BEGIN/END SOLUTION`` and ``HIDDEN TESTS`` lines (the solutions'
  text, as ``scripts/make_solutions.py`` and the course tests need it).

Learners may use them too, e.g. to check their script.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pyogrio

from grouputils.core.errors import InputError
from grouputils.core.staging import STAGED_LAYER, counted_rows

__all__ = ["unique_polygon_counts", "parse_count_table", "strip_markers"]

_COLUMNS = ["staging_filename", "staging_centroid_within_tile", "staging_duplicated"]
# an integer standing on its own, optionally with thousands separators: 26,560 or 26_560
_INT = re.compile(r"(?<![\w.])(\d{1,3}(?:[,_]\d{3})+|\d+)(?![\w.])")
_NAME = re.compile(r"[^\s|:,;'\"]+\.gpkg", re.IGNORECASE)
_MARKER = re.compile(r"^[ \t]*#{3} (BEGIN|END) (SOLUTION|HIDDEN TESTS)[ \t]*(\n|$)", re.MULTILINE)


def _staged_tiles(dir_output: Path) -> list[Path]:
    """``staged/<TMS>/<z>/<x>/<y>.gpkg`` files below ``dir_output``, sorted."""
    root = dir_output / "staged"
    if not root.is_dir():
        return []
    found = []
    for p in root.glob("*/*/*/*.gpkg"):
        z, x, y = p.parent.parent.name, p.parent.name, p.stem
        if z.isdigit() and x.isdigit() and y.isdigit():
            found.append(p)
    return sorted(found)


def unique_polygon_counts(dir_output: str | Path = "group-project") -> pd.Series:
    """Unique polygons per input file, read from the finalized staged tiles.

    A polygon that crosses tile edges is written into every tile it touches,
    and a polygon seen in two overlapping scenes is kept in both files, the
    later copy flagged ``staging_duplicated``. Counting each polygon once
    therefore means counting the rows with ``staging_centroid_within_tile``
    true and ``staging_duplicated`` false.

    Parameters
    ----------
    dir_output : str or Path
        The output folder of a stager (default ``group-project``); its
        ``staged/<TMS>/<z>/<x>/<y>.gpkg`` tiles are read.

    Returns
    -------
    pandas.Series
        int64 counts indexed by input file name (``staging_filename``),
        sorted by name; a file whose rows are all edge copies or duplicates
        has 0. The total is ``.sum()``.

    Raises
    ------
    InputError
        If the folder holds no staged tiles (run ``stager.finalize()``), or a
        tile lacks the staging columns.
    """
    dir_output = Path(dir_output)
    tiles = _staged_tiles(dir_output)
    if not tiles:
        raise InputError(
            dir_output,
            "holds no staged tiles under staged/: stage the files and run stager.finalize()",
        )
    counts: dict[str, int] = {}
    for path in tiles:
        try:
            df = pyogrio.read_dataframe(
                path, layer=STAGED_LAYER, columns=_COLUMNS, read_geometry=False
            )
        except Exception as e:
            raise InputError(path, f"cannot be read as a staged tile ({e})") from e
        missing = [c for c in _COLUMNS if c not in df.columns]
        if missing:
            raise InputError(path, f"lacks staging columns {missing}")
        keep = counted_rows(df["staging_centroid_within_tile"], df["staging_duplicated"])
        per_file = pd.Series(keep, index=df["staging_filename"].to_numpy()).groupby(level=0).sum()
        for name, n in per_file.items():
            counts[str(name)] = counts.get(str(name), 0) + int(n)
    out = pd.Series(counts, dtype="int64", name="unique_polygons").sort_index()
    out.index.name = "filename"
    return out


def parse_count_table(text: str) -> tuple[dict[str, int], int]:
    """Read the table printed by ``count_polygons.py``.

    Lines that name a ``.gpkg`` file give that file's count (the last integer
    after the name); the last line whose first word is ``total`` gives the
    total. Other lines (headers, rules, blank lines) are ignored. Integers may
    use ``,`` or ``_`` as thousands separators.

    Parameters
    ----------
    text : str
        The script's standard output.

    Returns
    -------
    per_file : dict of str to int
        Count per file name, in the order printed.
    total : int
        The total.

    Raises
    ------
    ValueError
        If no ``total`` line with an integer is found.

    Examples
    --------
    >>> parse_count_table("scene01.gpkg  1,204\\nscene02.gpkg 17\\ntotal 1,221\\n")
    ({'scene01.gpkg': 1204, 'scene02.gpkg': 17}, 1221)
    """
    per_file: dict[str, int] = {}
    total: int | None = None
    for line in text.splitlines():
        stripped = line.strip().strip("|").strip()
        words = re.split(r"[\s:|,;=]+", stripped, maxsplit=1)
        if words and words[0].lower() == "total":
            numbers = _INT.findall(stripped[len(words[0]) :])
            if numbers:
                total = int(re.sub(r"[,_]", "", numbers[-1]))
            continue
        name = _NAME.search(stripped)
        if name:
            numbers = _INT.findall(stripped[name.end() :])
            if numbers:
                per_file[Path(name.group(0)).name] = int(re.sub(r"[,_]", "", numbers[-1]))
    if total is None:
        raise ValueError("no line starting with 'total' followed by an integer was printed")
    return per_file, total


def strip_markers(text: str) -> str:
    """Remove nbgrader's marker lines from a cell's text, keeping what they enclose.

    Parameters
    ----------
    text : str
        Source of a cell of a source notebook.

    Returns
    -------
    str
        The text without its ``### BEGIN SOLUTION``, ``### END SOLUTION``,
        ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` lines.

    Examples
    --------
    >>> strip_markers("### BEGIN SOLUTION\\nx = 1\\n### END SOLUTION\\nprint(x)")
    'x = 1\\nprint(x)'
    """
    return _MARKER.sub("", text)
