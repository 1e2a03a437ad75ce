"""Finalizing staged tiles (staging's *reduce* step) and the staging summary.

:func:`finalize_tile` gathers the committed parts of one tile, sorts rows
deterministically (by input, then feature id), flags duplicates across input
files (:mod:`grouputils.core.dedup`), looking into neighbouring tiles where
polygons cross, and writes ``staged/<TMS>/<z>/<x>/<y>.gpkg`` with the parts
fingerprint in its layer metadata. :func:`tiles_to_finalize` says which tiles
need it, from the manifests and the staged files' fingerprints.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from grouputils.core.acquisition import table_span
from grouputils.core.dedup import duplicate_flags
from grouputils.core.placement import tiles_under_bounds
from grouputils.core.scratch import output_path
from grouputils.core.staging.io import staged_fingerprint, tms_crs, write_gpkg
from grouputils.core.staging.parts import PartsStore, read_part
from grouputils.core.staging.schema import (
    FID,
    GTYPE,
    META_KEY,
    SOURCE,
    TILE_META_KEY,
    duplicates_within,
)
from grouputils.core.tiles import Tile, tile_to_str

__all__ = ["finalize_tile", "tiles_to_finalize", "staging_summary", "SUMMARY_COLUMNS"]

#: Columns of the staging summary CSV.
SUMMARY_COLUMNS = ["filename", "source", "tile", "x", "y", "z", "rows", "centroids"]


def _xy(t: Tile) -> tuple[int, int]:
    return (t.x, t.y)


def rank_sources(col: pa.ChunkedArray) -> tuple[list[str], np.ndarray]:
    """Distinct sources in sorted order and each row's rank among them."""
    enc = col.combine_chunks().dictionary_encode()
    sources = enc.dictionary.to_pylist()
    order = np.argsort(np.array(sources, dtype=object))
    rank_of = np.empty(len(sources), dtype="i8")
    rank_of[order] = np.arange(len(sources))
    return sorted(sources), rank_of[enc.indices.to_numpy()]


def tiles_to_finalize(parts: PartsStore) -> list[Tile]:
    """Tiles whose staged file is missing or older than their committed parts.

    Staged tiles that no longer have any parts are included too: finalizing
    them deletes them.
    """
    tiles = parts.tiles
    expected = parts.expected_fingerprints()
    todo = [t for t, fp in expected.items() if staged_fingerprint(tiles.path("staged", t)) != fp]
    for tile in tiles.tiles_in("staged", z=parts.config.z):
        if tile not in expected:
            todo.append(tile)
    return sorted(set(todo), key=_xy)


def finalize_tile(parts: PartsStore, tile: Tile) -> dict[str, Any]:
    """Reduce one tile: merge its parts, flag duplicates, write the staged file.

    Parameters
    ----------
    parts : PartsStore
        The output folder's parts and manifests.
    tile : Tile
        A tile at the staging zoom level.

    Returns
    -------
    dict
        ``tile``, ``rows``, ``duplicates``, ``path`` (None if the tile had no
        parts left and its staged file was removed), ``fingerprint`` (recorded
        in the file), ``duplicates_within`` (flagged rows whose centroid
        lies in the tile) and ``span``, the acquisition span of its rows
        (:func:`grouputils.core.acquisition.table_span`, None if undated), from
        the rows in memory: what reading the staged file back would give.
    """
    config = parts.config
    dest = parts.tiles.path("staged", tile)
    # each input's manifest read, and each folder listed, once for this tile
    tokens: dict[str, str | None] = {}
    listed: dict[Tile, list[str]] = {}

    def lookup(t: Tile) -> list[str]:
        if t not in listed:
            listed[t] = parts.committed_for_tile(t, tokens)
        return listed[t]

    names = lookup(tile)
    if not names:
        dest.unlink(missing_ok=True)
        return {
            "tile": tile,
            "rows": 0,
            "duplicates": 0,
            "path": None,
            "fingerprint": None,
            "duplicates_within": 0,
            "span": None,
        }
    d = parts.tile_dir(tile)
    table = pa.concat_tables([read_part(d / n) for n in names], promote_options="permissive")
    fid = table.column(FID).to_numpy()
    if _n_sources(names) > 1:
        order = np.lexsort((fid, rank_sources(table.column(SOURCE))[1]))
    else:  # one input's parts: no sources to rank
        order = np.argsort(fid, kind="stable")
    if np.any(order[1:] < order[:-1]):  # most tiles' rows are in order already
        table = table.take(pa.array(order))
    neighbourhood = parts.neighbourhood(tile, lookup)
    flags = _duplicate_flags(parts, tile, table, neighbourhood, lookup)
    idx = table.schema.get_field_index("staging_duplicated")
    table = table.set_column(idx, "staging_duplicated", pa.array(flags))
    tids = table.column(GTYPE).to_numpy()
    table = table.drop_columns([SOURCE, FID, GTYPE])
    fingerprint = parts.fingerprint(neighbourhood)
    with output_path(dest, config.scratch_dir) as tmp:
        meta = {META_KEY: fingerprint, TILE_META_KEY: tile_to_str(tile)}
        write_gpkg(table, tmp, tms_crs(parts.tiles), meta, tids)
    within = table.column("staging_centroid_within_tile").to_numpy(zero_copy_only=False)
    return {
        "tile": tile,
        "rows": table.num_rows,
        "duplicates": int(flags.sum()),
        "path": dest,
        "fingerprint": fingerprint,
        "duplicates_within": int(duplicates_within(within, flags).sum()),
        "span": table_span(table),
    }


def _n_sources(neighbourhood: Sequence[str]) -> int:
    # part names are "<dx>,<dy>/<safe key>.<token>.<chunk>.arrow" or "<safe key>...."
    return len({name.rsplit("/", 1)[-1].split(".", 1)[0] for name in neighbourhood})


def _duplicate_flags(
    parts: PartsStore,
    tile: Tile,
    table: pa.Table,
    neighbourhood: Sequence[str],
    lookup: Callable[[Tile], list[str]],
) -> np.ndarray:
    """Duplicate flags of a tile's rows, looking into neighbouring tiles where polygons cross.

    A polygon crossing into a neighbouring tile is compared with the polygons
    there too, so every row of one polygon, in every tile it is written to,
    gets the same flag.
    """
    n = table.num_rows
    if _n_sources(neighbourhood) < 2:
        return np.zeros(n, dtype=bool)  # one input file around: nothing to flag
    geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    sources = table.column(SOURCE).to_pylist()
    tb = parts.tiles.bounds(tile)
    b = shapely.bounds(geoms)
    crossing = np.flatnonzero(
        (b[:, 0] < tb.left) | (b[:, 2] > tb.right) | (b[:, 1] < tb.bottom) | (b[:, 3] > tb.top)
    )
    extra_geoms: list[np.ndarray] = []
    extra_sources: list[str] = []
    if len(crossing):
        own_ids = pc.unique(table.column("staging_id"))
        g, src = _crossing_neighbours(parts, tile, geoms[crossing], b[crossing], own_ids, lookup)
        extra_geoms, extra_sources = g, src
    all_geoms = np.concatenate([geoms, *extra_geoms]) if extra_geoms else geoms
    _, rank = rank_sources(pa.chunked_array([pa.array(sources + extra_sources, type=pa.string())]))
    if len(set(rank.tolist())) < 2:
        return np.zeros(n, dtype=bool)
    return duplicate_flags(all_geoms, rank, parts.config.dedup_overlap)[:n]


def _crossing_neighbours(
    parts: PartsStore,
    tile: Tile,
    crossing: np.ndarray,
    bounds: np.ndarray,
    own_ids: pa.Array,
    lookup: Callable[[Tile], list[str]],
) -> tuple[list[np.ndarray], list[str]]:
    """Polygons of neighbouring tiles that intersect this tile's crossing polygons.

    Neighbours across the antimeridian hold their rows on the other side of
    180°: those are shifted by the TMS's width.
    """
    wanted = tiles_under_bounds(parts.tiles, tile, bounds)
    tree = shapely.STRtree(crossing)
    extra_geoms: list[np.ndarray] = []
    extra_sources: list[str] = []
    for nb in sorted(wanted, key=_xy):
        d = parts.tile_dir(nb)
        shift = wanted[nb]
        for name in lookup(nb):
            part = read_part(d / name, columns=["geometry", "staging_id", SOURCE])
            # a hash lookup in Arrow: np.isin over Python strings was 40 % of this loop
            keep = ~pc.is_in(part.column("staging_id"), value_set=own_ids).to_numpy(
                zero_copy_only=False
            )
            if not keep.any():
                continue
            g = shapely.from_wkb(part.column("geometry").to_numpy(zero_copy_only=False))[keep]
            if shift:
                g = shapely.transform(g, functools.partial(_shift_x, by=shift))
            hit = np.unique(tree.query(g, predicate="intersects")[0])
            if len(hit):
                extra_geoms.append(g[hit])
                src = np.asarray(part.column(SOURCE).to_pylist(), dtype=object)[keep][hit]
                extra_sources.extend(src.tolist())
    return extra_geoms, extra_sources


def _shift_x(xy: np.ndarray, by: float) -> np.ndarray:
    return xy + np.array([by, 0.0])


def staging_summary(parts: PartsStore) -> pd.DataFrame:
    """The staging summary: one row per input file and tile, from the manifests.

    Columns: ``filename``, ``source``, ``tile``, ``x``, ``y``, ``z``, ``rows``
    (polygons written to the tile, including copies of polygons that cross
    tile edges) and ``centroids`` (polygons whose centroid lies in the tile).
    """
    recs = []
    for m in parts.manifests():
        for tile, entry in parts.tiles_of(m).items():
            recs.append(
                {
                    "filename": m["filename"],
                    "source": m["source"],
                    "tile": tile_to_str(tile),
                    "x": tile.x,
                    "y": tile.y,
                    "z": tile.z,
                    "rows": entry["rows"],
                    "centroids": entry["centroids"],
                }
            )
    df = pd.DataFrame(recs, columns=SUMMARY_COLUMNS)
    return df.sort_values(["source", "x", "y"], kind="stable").reset_index(drop=True)
