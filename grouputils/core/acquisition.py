"""When a polygon was acquired, and the acquisition span of the rows of one staged tile.

The per-row rule (first that applies):

1. the detection pipeline's attributes ``Date`` (``YYYYMMDD``) and, if
   present, ``Time`` (``hhmmss``, UTC), which every Permafrost Discovery
   Gateway file and the shipped samples carry;
2. a ``YYYYMMDD`` date in the name of the input file the polygon was staged
   from (``staging_filename``, e.g. ``scene03_WV03_20150814.gpkg``), at 00:00 UTC.

:func:`table_span` applies it to an Arrow table of a tile's rows: the
finalize step (:func:`grouputils.core.staging.finalize.finalize_tile`) calls
it on the rows it holds in memory, and :func:`staged_span` on a staged tile
read back from disk, so both give the same span. The STAC catalogue
(:mod:`grouputils.outputs.catalog`) dates its items with these spans.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyogrio

__all__ = [
    "DATE_ATTRIBUTE",
    "TIME_ATTRIBUTE",
    "FILENAME_ATTRIBUTE",
    "SPAN_COLUMNS",
    "Span",
    "parse_acquisition",
    "table_span",
    "staged_span",
    "merge_spans",
    "span_to_json",
    "span_from_json",
]

DATE_ATTRIBUTE = "Date"
"""Input attribute holding a polygon's acquisition date, ``YYYYMMDD``."""
TIME_ATTRIBUTE = "Time"
"""Input attribute holding a polygon's acquisition time of day, ``hhmmss`` (UTC)."""
FILENAME_ATTRIBUTE = "staging_filename"
"""Staging column holding the name of the input file a row was staged from."""

#: The columns :func:`table_span` looks at (a table may lack any of them).
SPAN_COLUMNS = (DATE_ATTRIBUTE, TIME_ATTRIBUTE, FILENAME_ATTRIBUTE)

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


def table_span(table: pa.Table) -> Span | None:
    """Acquisition span of the rows of a table (None: no row carries a date).

    Parameters
    ----------
    table : pyarrow.Table
        Rows of one tile; only its ``Date``, ``Time`` and ``staging_filename``
        columns are looked at (any of them may be absent).

    Returns
    -------
    tuple of datetime.datetime or None
        ``(earliest, latest)`` by :func:`parse_acquisition`, over the distinct
        ``(Date, Time, staging_filename)`` combinations of the rows.
    """
    present = [c for c in SPAN_COLUMNS if c in table.column_names]
    if not present or table.num_rows == 0:
        return None
    times = []
    for values in _distinct_rows(table, present):
        name = values.get(FILENAME_ATTRIBUTE)
        when = parse_acquisition(
            values.get(DATE_ATTRIBUTE),
            values.get(TIME_ATTRIBUTE),
            str(name) if name is not None else None,
        )
        if when is not None:
            times.append(when)
    return (min(times), max(times)) if times else None


def _distinct_rows(table: pa.Table, columns: Sequence[str]) -> list[dict[str, object]]:
    """The distinct combinations of ``columns``' values (None for null), as dicts.

    Each column is dictionary-encoded and the combinations are found with
    NumPy. Arrow's ``group_by`` gives the same set, but its first call in a
    process imports ``pyarrow.acero`` and ``pyarrow.dataset`` (about 20 ms, a
    sixth of finalizing the real file in a fresh worker).
    """
    codes, dictionaries = [], []
    for name in columns:
        enc = pc.dictionary_encode(table.column(name).combine_chunks())
        values = [*enc.dictionary.to_pylist(), None]
        codes.append(pc.fill_null(enc.indices, len(values) - 1).to_numpy().astype(np.int64))
        dictionaries.append(values)
    if not codes or len(codes[0]) == 0:
        return []
    combos = np.unique(np.stack(codes, axis=1), axis=0)
    return [
        {name: values[int(i)] for name, values, i in zip(columns, dictionaries, row, strict=True)}
        for row in combos
    ]


def staged_span(path: Path) -> Span | None:
    """Acquisition span of the polygons of a staged tile on disk (None: no dates).

    One read of the three columns :func:`table_span` looks at, no geometry.
    """
    # columns the tile lacks are left out by pyogrio
    _, table = pyogrio.read_arrow(path, columns=list(SPAN_COLUMNS), read_geometry=False)
    return table_span(table)


def merge_spans(a: Span | None, b: Span) -> Span:
    """The span covering both (``a`` may be None)."""
    return b if a is None else (min(a[0], b[0]), max(a[1], b[1]))


def span_to_json(span: Span | None) -> list[str]:
    """A span as recorded in the run state: ``[earliest, latest]`` in ISO 8601, ``[]`` if none.

    ``[]`` (not ``null``) for an undated tile, so a state row that records
    "no date" differs from one recorded before spans were (no field at all).
    """
    return [] if span is None else [span[0].isoformat(), span[1].isoformat()]


def span_from_json(value: Sequence[str]) -> Span | None:
    """The span :func:`span_to_json` recorded (None for ``[]``)."""
    if not value:
        return None
    first, last = (dt.datetime.fromisoformat(v).astimezone(dt.UTC) for v in value)
    return first, last
