"""Tile steps as data: which tiles to look at, what each should be made from, the task, the record.

A :class:`TileStep` is one pass of the pipeline over the tiles of one kind
(``'staged'`` is finalized by staging; this module drives ``'geotiff'`` and
``'web'``). :func:`run_tile_step` looks only at the candidate tiles (marked
dirty in the :class:`~grouputils.run.state.RunState`, or whose files were damaged),
compares the fingerprint each should have with the recorded one, removes the
outputs whose inputs are gone, maps the task over the rest and records each
finished batch in one transaction, marking what depends on it.

The task functions are module-level so Parsl sends them by reference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, NotRequired, TypedDict

import numpy as np

from grouputils.core.acquisition import SPAN_COLUMNS, span_to_json, table_span
from grouputils.core.raster.tags import SUMMARY_BAND_FIELDS, band_tags, read_band_statistics
from grouputils.core.statistic import Statistic
from grouputils.core.tiles import Tile, key_tile, tile_key
from grouputils.core.webtiles import ColourRanges
from grouputils.run.state import Key, RunState, TileRow, file_entry

__all__ = [
    "ACQUIRED",
    "BAND_INFO_FIELDS",
    "Removed",
    "TileRecord",
    "TileStep",
    "run_tile_step",
    "fingerprint",
    "parent_fingerprints",
    "finalize_task",
    "rasterize_task",
    "parent_task",
    "webtile_task",
]


class TileRecord(TypedDict):
    """What a tile task returns to the main process, recorded as a :class:`.TileRow`."""

    files: list[list[Any]]  #: [path relative to the output folder, size, mtime_ns] per file
    info: dict[str, Any]  #: counts, covered area, band statistics
    seconds: float
    fingerprint: NotRequired[str]  #: a staged tile's parts fingerprint (finalize only)


class Removed(TypedDict):
    """A staged tile with no parts left: its file was removed."""

    removed: bool


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def parent_fingerprints(
    state: RunState, children: Callable[[Tile], Sequence[Tile]], keys: Sequence[Key], settings: str
) -> dict[Key, str]:
    """What each parent GeoTIFF should be made from: its recorded children's fingerprints.

    One state query for all the children of ``keys``; a parent with no recorded
    child gets no fingerprint (there is nothing to build it from).
    """
    kids = {k: [tile_key(c) for c in children(key_tile(k))] for k in keys}
    recorded = state.fingerprints("geotiff", (c for cs in kids.values() for c in cs))
    out = {}
    for k, cs in kids.items():
        fps = sorted(recorded[c] for c in cs if c in recorded)
        if fps:
            out[k] = fingerprint(fps, settings)
    return out


#: A GeoTIFF row's band statistics in ``info``: ``<statistic>_<suffix>`` -> the
#: :func:`~grouputils.core.raster.tags.read_band_statistics` key it holds.
BAND_INFO_FIELDS: dict[str, str] = {
    **SUMMARY_BAND_FIELDS,
    "stddev": "stddev",
    "valid_percent": "valid_percent",
}

#: A staged row's acquisition span in ``info``
#: (:func:`grouputils.core.acquisition.span_to_json`; absent in states made before it).
ACQUIRED = "acquired"


# ------------------------------------------------------------------ worker tasks
def _band_info(values: np.ndarray, statistics: Sequence[Statistic]) -> dict[str, float | None]:
    """``<name>_min/_max/_mean/_sum/_stddev/_valid_percent``: what the GeoTIFF's band tags hold.

    Read back from :func:`~grouputils.core.raster.tags.band_tags`, the function
    the writer tags each band with, so each value is the tag's exactly (None
    where an empty band has no tag).
    """
    out: dict[str, float | None] = {}
    for stat, band in zip(statistics, values, strict=True):
        read = read_band_statistics(band_tags(band, stat))
        for suffix, key in BAND_INFO_FIELDS.items():
            out[f"{stat.name}_{suffix}"] = read.get(key)
    return out


def _raster_record(
    rasterizer: Any, tile: Tile, values: np.ndarray, tags: dict[str, Any], t0: float
) -> TileRecord:
    from grouputils.core.rasterize import pixel_areas_m2

    config = rasterizer.config
    info: dict[str, Any] = dict(tags, **_band_info(values, config.statistics))
    band = next((i for i, s in enumerate(config.statistics) if s.weight_by == "coverage"), None)
    if band is not None and tile.z == config.z:
        info["covered_m2"] = float(
            np.nansum(values[band].astype("f8") * pixel_areas_m2(tile, rasterizer.tiles))
        )
    path = rasterizer.tiles.path("geotiff", tile)
    return {
        "files": [file_entry(config.dir_output, path)],
        "info": info,
        "seconds": time.perf_counter() - t0,
    }


def finalize_task(stager: Any, key: Key) -> TileRecord | Removed:
    """Finalize one staged tile; its record (``removed`` if it has no parts left)."""
    t0 = time.perf_counter()
    res = stager.finalize_tile(key_tile(key))
    if res["path"] is None:
        return {"removed": True}
    info = {
        "rows": res["rows"],
        "duplicates": res["duplicates"],
        "duplicates_within": res["duplicates_within"],
        ACQUIRED: span_to_json(res["span"]),
    }
    return {
        "fingerprint": res["fingerprint"],
        "files": [file_entry(stager.config.dir_output, res["path"])],
        "info": info,
        "seconds": time.perf_counter() - t0,
    }


def adopt_staged(stager: Any, key: Key, fingerprint: str) -> TileRecord | None:
    """The record of a staged tile already finalized from the expected parts, or None.

    A run killed between writing a staged tile and recording it leaves a
    complete tile (written through a temporary name) that carries the
    fingerprint of the parts it was made from; the next run records it
    instead of finalizing it again.
    """
    import pyogrio

    from grouputils.core.staging import STAGED_LAYER, duplicates_within, staged_fingerprint

    path = stager.tiles.path("staged", key_tile(key))
    if staged_fingerprint(path) != fingerprint:
        return None
    flags = ["staging_duplicated", "staging_centroid_within_tile"]
    try:  # one read: the flags and the acquisition columns (pyogrio leaves out absent ones)
        _, table = pyogrio.read_arrow(
            path, layer=STAGED_LAYER, columns=[*flags, *SPAN_COLUMNS], read_geometry=False
        )
        dup, within = (
            np.asarray(table.column(c).to_numpy(zero_copy_only=False), dtype=bool) for c in flags
        )
    except Exception:  # unreadable (or without the staging flags): finalize it again
        return None
    info = {
        "rows": table.num_rows,
        "duplicates": int(dup.sum()),
        "duplicates_within": int(duplicates_within(within, dup).sum()),
        ACQUIRED: span_to_json(table_span(table)),
    }
    return {
        "fingerprint": fingerprint,
        "files": [file_entry(stager.config.dir_output, path)],
        "info": info,
        "seconds": 0.0,
    }


def rasterize_task(rasterizer: Any, key: Key) -> TileRecord:
    """Rasterize one staged tile; its record (counts, band statistics, covered area)."""
    t0 = time.perf_counter()
    tile, values, tags = rasterizer.rasterize_vector_bands(
        rasterizer.tiles.path("staged", key_tile(key))
    )
    return _raster_record(rasterizer, tile, values, tags, t0)


def parent_task(rasterizer: Any, key: Key) -> TileRecord:
    """Build one parent GeoTIFF from its children; its record."""
    t0 = time.perf_counter()
    tile, values, tags = rasterizer.parent_geotiff_bands(key_tile(key))
    return _raster_record(rasterizer, tile, values, tags, t0)


def webtile_task(rasterizer: Any, key: Key, ranges: ColourRanges | None = None) -> TileRecord:
    """Colour one GeoTIFF into its web tiles (with the run's colour ranges); their record."""
    t0 = time.perf_counter()
    paths = rasterizer.webtile(rasterizer.tiles.path("geotiff", key_tile(key)), ranges)
    root = rasterizer.config.dir_output
    return {
        "files": [file_entry(root, p) for p in paths],
        "info": {},
        "seconds": time.perf_counter() - t0,
    }


# ------------------------------------------------------------------ the step
@dataclasses.dataclass
class TileStep:
    """One pass over the tiles of one kind.

    Attributes
    ----------
    name : str
        Name in the run report.
    kind : str
        State kind of the outputs (``'geotiff'``, ``'web'``).
    candidates : list of Key
        Tiles to look at (dirty or damaged).
    expected : callable
        ``expected(keys) -> {key: fingerprint}`` of what each candidate should
        be made from now; a key left out has no inputs any more and is removed.
    task : callable
        ``task(key) -> record`` run on a worker (a picklable partial).
    remove : callable
        ``remove(key)`` deletes the tile's files.
    downstream : callable
        ``downstream(key) -> [(kind, key), ...]`` to mark dirty when the tile changes.
    """

    name: str
    kind: str
    candidates: list[Key]
    expected: Callable[[list[Key]], dict[Key, str]]
    task: Callable[[Key], TileRecord]
    remove: Callable[[Key], None]
    downstream: Callable[[Key], list[tuple[str, Key]]]


def _mark_downstream(state: RunState, step: TileStep, key: Key) -> None:
    for kind, k in step.downstream(key):
        state.mark(kind, [k])


def run_tile_step(
    state: RunState, step: TileStep, runner: Any, damaged: set[Key]
) -> tuple[list[Key], list[tuple[bool, Any]]]:
    """Bring the candidate tiles of ``step`` up to date; return the items run and their results.

    Parameters
    ----------
    state : RunState
        Read for recorded fingerprints, written in one transaction per batch.
    step : TileStep
        What to do.
    runner : object
        Has ``map(name, func, items, batch=True, on_done=...)`` (the pipeline's runner).
    damaged : set of Key
        Candidates whose recorded files are missing or changed on disk.

    Returns
    -------
    tuple
        ``(keys run, [(ok, record or error), ...])`` in the same order.
    """
    keys = sorted(set(step.candidates))
    want = step.expected(keys)
    recorded = state.fingerprints(step.kind, keys)
    todo: list[Key] = []
    up_to_date: list[Key] = []
    with state.transaction():
        for key in keys:
            if key not in want:  # its inputs are gone
                step.remove(key)
                if key in recorded:
                    state.delete(step.kind, key)
                    _mark_downstream(state, step, key)
                up_to_date.append(key)
            elif recorded.get(key) == want[key] and key not in damaged:
                up_to_date.append(key)
            else:
                todo.append(key)
        state.clean_many(step.kind, up_to_date)

    def record(items: list[Key], results: list[tuple[bool, Any]]) -> None:
        done = [(key, rec) for key, (ok, rec) in zip(items, results, strict=True) if ok]
        with state.transaction():
            state.put_many(
                step.kind,
                ((k, TileRow(want[k], r["files"], r["info"], r["seconds"])) for k, r in done),
            )
            state.clean_many(step.kind, (k for k, _ in done))
            marks: dict[str, set[Key]] = {}
            for key, _ in done:
                for kind, k in step.downstream(key):
                    marks.setdefault(kind, set()).add(k)
            for kind, ks in marks.items():
                state.mark(kind, ks)

    results = runner.map(step.name, step.task, todo, batch=True, on_done=record) if todo else []
    return todo, results
