"""When the polygons of a tile were acquired, read from the staged tiles.

The STAC catalogue (:mod:`grouputils.outputs.catalog`) gives each tile the
time span of the satellite scenes its polygons were detected in, never the
time a file was written, so two identical runs give identical catalogues.

Where a time comes from, per polygon, first that applies:

1. the detection pipeline's attributes ``Date`` (``YYYYMMDD``) and, if
   present, ``Time`` (``hhmmss``, UTC), which every Permafrost Discovery
   Gateway file and the shipped samples carry;
2. a ``YYYYMMDD`` date in the name of the input file the polygon was staged
   from (``staging_filename``, e.g. ``scene03_WV03_20150814.gpkg``), at 00:00 UTC.

A parent tile spans the times of the highest-zoom tiles below it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pyogrio
from morecantile import Tile

from grouputils.core.tiles import Tiles, tile_from_path

__all__ = ["DATE_ATTRIBUTE", "TIME_ATTRIBUTE", "Span", "acquisition_spans", "parse_acquisition"]

DATE_ATTRIBUTE = "Date"
"""Input attribute holding a polygon's acquisition date, ``YYYYMMDD``."""
TIME_ATTRIBUTE = "Time"
"""Input attribute holding a polygon's acquisition time of day, ``hhmmss`` (UTC)."""
_FILENAME = "staging_filename"
_DATE_IN_NAME = re.compile(r"(?<!\d)((?:19|20)\d{6})(?!\d)")

Span = tuple[dt.datetime, dt.datetime]
"""Earliest and latest acquisition (timezone-aware, UTC)."""


def _date(value: object) -> dt.datetime | None:
    text = str(value).strip()
    if text.endswith(".0"):  # an integer attribute read as a float
        text = text[:-2]
    if not re.fullmatch(r"\d{8}", text):
        return None
    try:
        return dt.datetime.strptime(text, "%Y%m%d").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _time_of_day(value: object) -> dt.timedelta:
    text = str(value).strip()
    if text.endswith(".0"):
        text = text[:-2]
    if not re.fullmatch(r"\d{1,6}", text):
        return dt.timedelta(0)
    text = text.zfill(6)
    h, m, s = int(text[:2]), int(text[2:4]), int(text[4:])
    if h > 23 or m > 59 or s > 59:
        return dt.timedelta(0)
    return dt.timedelta(hours=h, minutes=m, seconds=s)


def parse_acquisition(
    date: object = None, time: object = None, filename: str | None = None
) -> dt.datetime | None:
    """One polygon's acquisition time from its attributes or its file's name.

    Parameters
    ----------
    date : object, optional
        The ``Date`` attribute (``YYYYMMDD``, string or number).
    time : object, optional
        The ``Time`` attribute (``hhmmss``); ignored without a valid ``date``.
    filename : str, optional
        Name of the input file, searched for a ``YYYYMMDD`` date when ``date``
        is missing or invalid.

    Returns
    -------
    datetime.datetime or None
        UTC; None when neither gives a date.

    Examples
    --------
    >>> parse_acquisition("20190903", "224124")
    datetime.datetime(2019, 9, 3, 22, 41, 24, tzinfo=datetime.timezone.utc)
    >>> parse_acquisition(filename="scene03_WV03_20150814.gpkg")
    datetime.datetime(2015, 8, 14, 0, 0, tzinfo=datetime.timezone.utc)
    """
    day = _date(date) if date is not None else None
    if day is not None:
        return day + (_time_of_day(time) if time is not None else dt.timedelta(0))
    if filename:
        for match in _DATE_IN_NAME.findall(filename):
            found = _date(match)
            if found is not None:
                return found
    return None


def _tile_span(path: Path) -> Span | None:
    """Acquisition span of the polygons in one staged tile (None: no dates)."""
    # columns the tile lacks are left out by pyogrio; one read of three columns, no geometry
    _, table = pyogrio.read_arrow(
        path, columns=[DATE_ATTRIBUTE, TIME_ATTRIBUTE, _FILENAME], read_geometry=False
    )
    if not table.column_names:
        return None
    times = []
    for values in table.group_by(table.column_names).aggregate([]).to_pylist():
        when = parse_acquisition(
            values.get(DATE_ATTRIBUTE),
            values.get(TIME_ATTRIBUTE),
            str(values[_FILENAME]) if values.get(_FILENAME) is not None else None,
        )
        if when is not None:
            times.append(when)
    return (min(times), max(times)) if times else None


def _merge(a: Span | None, b: Span) -> Span:
    return b if a is None else (min(a[0], b[0]), max(a[1], b[1]))


def acquisition_spans(tiles: Tiles, wanted: Iterable[Tile]) -> Mapping[Tile, Span]:
    """Acquisition span of each wanted tile, from the staged tiles below it.

    Parameters
    ----------
    tiles : Tiles
        The run's tile paths and tile matrix set.
    wanted : iterable of Tile
        Tiles of any zoom level up to the run's ``z``.

    Returns
    -------
    Mapping
        Tile -> (earliest, latest); tiles without a dated polygon below them
        (or without staged tiles) are left out.
    """
    wanted = set(wanted)
    z = tiles.config.z
    spans: dict[Tile, Span] = {}
    for path in tiles.get_filenames_from_dir("staged"):
        leaf = tile_from_path(path)
        if leaf.z != z:
            continue
        span = _tile_span(path)
        if span is None:
            continue
        for zoom in sorted({t.z for t in wanted}):
            ancestors = [leaf] if zoom == z else tiles.tms.parent(leaf, zoom=zoom)
            for parent in ancestors:
                if parent in wanted:
                    spans[parent] = _merge(spans.get(parent), span)
    return spans
