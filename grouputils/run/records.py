"""The STAC catalogue's records from the run state: what the tile tasks recorded, no file opened.

:func:`catalog_records` gives one :class:`~grouputils.outputs.catalog.ItemRecord`
per recorded GeoTIFF for :func:`~grouputils.outputs.catalog.write_stac_catalog`:

* band statistics and kind from the GeoTIFF row's ``info``
  (:func:`grouputils.run.steps._raster_record` records the values the tile's
  band tags hold, read back from the tagging function itself);
* rules and unit from the config: a GeoTIFF is made again whenever they
  change (they are part of its fingerprint), so an up-to-date tile carries
  the config's;
* the acquisition span from the staged rows (recorded by the finalize task
  from the rows it held), spread up the pyramid
  (:func:`grouputils.outputs.acquisition.spread_spans`).

Fallback: a GeoTIFF row still dirty after the tile steps (its task failed, so
the file may predate the config) is described from its file; a row recorded
by an earlier version (no ``<statistic>_stddev``/``_valid_percent``, or a
staged row without ``acquired``) is read from its file once and the missing
fields are recorded, so the next publish reads nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from grouputils.core.acquisition import Span, span_from_json, span_to_json, staged_span
from grouputils.core.config import Config
from grouputils.core.raster.tags import statistic_rules
from grouputils.core.statistic import Statistic
from grouputils.core.tiles import Tile, Tiles, tile_key
from grouputils.outputs.acquisition import spread_spans
from grouputils.outputs.catalog import BandRecord, ItemRecord
from grouputils.outputs.catalog_items import read_item_record
from grouputils.run.state import Key, RunState
from grouputils.run.steps import ACQUIRED, BAND_INFO_FIELDS

__all__ = ["catalog_records", "staged_spans"]

log = logging.getLogger("grouputils.run.pipeline")

#: ``(info suffix, read_band_statistics key)`` of a band, in the order they are queried.
_SUFFIXES = tuple(BAND_INFO_FIELDS.items())
#: Always tagged (also on an empty band): a row without it was recorded before it was.
_ALWAYS = [s for s, _ in _SUFFIXES].index("valid_percent")


def _complete(state: RunState, kind: str, updates: Mapping[Key, dict[str, Any]]) -> None:
    """Add fields to the ``info`` of recorded tiles (what a state of an earlier version lacks)."""
    if not updates:
        return
    rows = state.rows(kind)  # once, for the rows of a state made before these fields
    with state.transaction():
        state.put_many(
            kind,
            (
                (k, dataclasses.replace(rows[k], info={**rows[k].info, **u}))
                for k, u in updates.items()
                if k in rows
            ),
        )


def staged_spans(state: RunState, config: Config) -> dict[Tile, Span | None]:
    """Acquisition span of every recorded staged tile (None: undated), from the state.

    Parameters
    ----------
    state : RunState
        The run's state; a staged row recorded before spans were is read from
        its staged tile once, and its span recorded.
    config : Config
        The run's config (its output folder).

    Returns
    -------
    dict
        Tile -> (earliest, latest), or None for a tile whose polygons carry no date.
    """
    spans: dict[Tile, Span | None] = {}
    read: dict[Key, dict[str, Any]] = {}
    for rows in state.info_columns("staged", [ACQUIRED]):
        for z, x, y, rel, acquired in rows:
            if acquired is None:
                span = staged_span(config.dir_output / rel)
                read[(z, x, y)] = {ACQUIRED: span_to_json(span)}
            else:  # the JSON text of the recorded list
                span = span_from_json(json.loads(acquired))
            spans[Tile(x, y, z)] = span
    if read:
        log.info("acquisition spans of %d staged tiles read from disk and recorded", len(read))
    _complete(state, "staged", read)
    return spans


def _bands(
    stats: Sequence[Statistic], rules: Sequence[dict[str, str]], values: Sequence[Any]
) -> tuple[BandRecord, ...] | None:
    """The band records of one GeoTIFF row's info values, or None if a band's are incomplete."""
    n = len(_SUFFIXES)
    per_band = [values[i * n : (i + 1) * n] for i in range(len(stats))]
    if any(vs[_ALWAYS] is None for vs in per_band):
        return None
    return tuple(
        BandRecord(
            name=s.name,
            statistics={key: v for (_, key), v in zip(_SUFFIXES, vs, strict=True) if v is not None},
            rules=r,
            unit=s.unit,
        )
        for s, r, vs in zip(stats, rules, per_band, strict=True)
    )


def catalog_records(state: RunState, config: Config) -> list[ItemRecord]:
    """One catalogue record per recorded GeoTIFF, from the run state (see the module docstring).

    Parameters
    ----------
    state : RunState
        The run's state, after the tile steps.
    config : Config
        The run's config.

    Returns
    -------
    list of ItemRecord
        In the state's order (z highest first, x, y); a tile with no dated
        polygon below it has ``span`` None.
    """
    stats = config.statistics
    rules = [statistic_rules(s) for s in stats]
    fields = ["kind", *(f"{s.name}_{suffix}" for s in stats for suffix, _ in _SUFFIXES)]
    dirty = set(state.dirty("geotiff"))
    rows: list[tuple[Tile, str, str | None, tuple[BandRecord, ...] | None]] = []
    for chunk in state.info_columns("geotiff", fields):
        for z, x, y, rel, kind, *values in chunk:
            fresh = (z, x, y) not in dirty and kind is not None
            rows.append((Tile(x, y, z), rel, kind, _bands(stats, rules, values) if fresh else None))
    spans = spread_spans(Tiles(config), staged_spans(state, config), (r[0] for r in rows))
    out: list[ItemRecord] = []
    completed: dict[Key, dict[str, Any]] = {}
    for tile, rel, kind, bands in rows:
        if bands is not None and kind is not None:
            out.append(ItemRecord(tile, kind, bands, spans.get(tile)))
            continue
        rec, _ = read_item_record(config, config.dir_output / rel, spans.get(tile))
        out.append(rec)
        if tile_key(tile) not in dirty:
            completed[tile_key(tile)] = {
                f"{b.name}_{suffix}": b.statistics.get(key)
                for b in rec.bands
                for suffix, key in _SUFFIXES
            }
    if completed:
        log.info("band statistics of %d GeoTIFFs read from disk and recorded", len(completed))
    _complete(state, "geotiff", completed)
    return out
