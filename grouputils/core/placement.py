"""Which tiles each staged polygon is written to, with its centroid counted once.

:func:`place_polygons` takes one batch of polygons in the TMS CRS and returns
one row per (polygon, tile) pair: the polygon intersects the tile, or the
tile holds its centroid. Before that it

* refuses a polygon that holds a pole the TMS cannot represent as a point
  (:class:`~grouputils.core.errors.InputError` naming the file and the feature);
* splits polygons that cross the antimeridian of a wrapping TMS
  (:func:`grouputils.core.antimeridian.split_at_antimeridian`), so each part lands
  in its real tiles; every row of a polygon keeps the polygon's centroid, and
  exactly one row (in the tile of the centroid) has the centroid flag;
* refuses a polygon that would touch far more tiles than its ground size
  allows (the guard against any other fan-out), naming the feature.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pyproj
import shapely

from grouputils.core.antimeridian import (
    Wrap,
    holds_pole,
    implied_tile_count,
    split_at_antimeridian,
    tms_wrap,
)
from grouputils.core.errors import InputError
from grouputils.core.tiles import Tile, Tiles, get_tms

__all__ = [
    "place_polygons",
    "assign_tiles",
    "neighbour_tile",
    "tiles_under_bounds",
    "FAN_FACTOR",
    "FAN_SLACK",
]

#: A polygon may touch at most ``FAN_FACTOR * implied + FAN_SLACK`` tiles, where
#: ``implied`` is what its ground size allows near its centroid.
FAN_FACTOR = 4.0
FAN_SLACK = 16


def _fid_list(fids: np.ndarray, bad: np.ndarray) -> str:
    shown = ", ".join(str(int(f)) for f in fids[bad][:5])
    more = int(bad.sum()) - 5
    return shown + (f" and {more} more" if more > 0 else "")


def place_polygons(
    tiles: Tiles,
    path: Path,
    fids: np.ndarray,
    local: np.ndarray,
    geoms: np.ndarray,
    wrap: Wrap,
    poles_local: np.ndarray,
    tms_to_ll: pyproj.Transformer,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows to write for a batch of polygons: (polygon, tile) pairs with their geometry.

    Parameters
    ----------
    tiles : Tiles
        Tile maths of the run.
    path : Path
        The input file (named in errors).
    fids : ndarray of int
        Feature ids (named in errors).
    local : ndarray of shapely geometries
        The polygons in a metric CRS (the input's, or a local equal-area one).
    geoms : ndarray of shapely geometries
        The same polygons in the TMS CRS.
    wrap : Wrap
        How the TMS CRS wraps (:func:`grouputils.core.antimeridian.tms_wrap`).
    poles_local : ndarray of shapely Points
        The poles the TMS cannot hold, in the CRS of ``local``.
    tms_to_ll : pyproj.Transformer
        From the TMS CRS to lon/lat (for tile sizes on the ground).

    Returns
    -------
    poly_idx, tx, ty, within : ndarray
        By row: polygon index, tile column and row, centroid flag. Sorted by
        polygon then tile; each polygon has exactly one row with the flag.
    row_geoms : ndarray of shapely geometries
        By row: the polygon; for one split at the antimeridian, the whole
        polygon moved to the row's side (reaching past 180° into the tile
        beyond, as any polygon crossing a tile edge does).
    cx, cy : ndarray of float
        By polygon: its centroid in the TMS CRS.

    Raises
    ------
    InputError
        A polygon holds a pole, or would touch far more tiles than its size allows.
    """
    if len(poles_local):
        polar = holds_pole(local, poles_local)
        if polar.any():
            raise InputError(
                path,
                f"feature(s) with fid {_fid_list(fids, polar)} enclose or touch a pole, which the "
                f"tile matrix set {tiles.config.tms} cannot hold (the polygon would cover every "
                "tile of the top or bottom row); remove them or use a polar tile matrix set; "
                "nothing of the file was staged",
            )
    pieces, shapes, parent, cx, cy, owns = split_at_antimeridian(geoms, wrap)
    _fan_guard(tiles, path, fids, local, pieces, parent, cx, cy, tms_to_ll)
    pi, tx, ty, within = assign_tiles(tiles, pieces, cx[parent], cy[parent], owns)
    poly_idx = parent[pi]
    row_geoms = shapes[pi]
    if len(pieces) > len(geoms):
        order = np.lexsort((ty, tx, poly_idx))
        poly_idx, tx, ty, within, row_geoms = (
            poly_idx[order],
            tx[order],
            ty[order],
            within[order],
            row_geoms[order],
        )
        row_pieces = pieces[pi[order]]
        # two parts of one polygon in one tile (only at very low zoom levels): one row
        same = np.flatnonzero(
            (poly_idx[1:] == poly_idx[:-1]) & (tx[1:] == tx[:-1]) & (ty[1:] == ty[:-1])
        )
        if len(same):
            row_geoms = row_geoms.copy()
            within = within.copy()
            for k in same[::-1]:
                # a tile as wide as the world: its rows hold the parts, not the shifted whole
                row_geoms[k] = shapely.union(row_pieces[k], row_pieces[k + 1])
                within[k] |= within[k + 1]
            keep = np.ones(len(poly_idx), dtype=bool)
            keep[same + 1] = False
            poly_idx, tx, ty, within, row_geoms = (
                poly_idx[keep],
                tx[keep],
                ty[keep],
                within[keep],
                row_geoms[keep],
            )
    return poly_idx, tx, ty, within, row_geoms, cx, cy


def _fan_guard(tiles, path, fids, local, pieces, parent, cx, cy, tms_to_ll) -> None:
    """Refuse polygons whose tile candidates far exceed what their ground size allows."""
    b = shapely.bounds(pieces)
    c0, r_a = tiles.tile_indices(b[:, 0], b[:, 3])
    c1, r_b = tiles.tile_indices(b[:, 2], b[:, 1])
    per_piece = (np.abs(c1 - c0) + 1) * (np.abs(r_b - r_a) + 1)
    n = len(cx)
    candidates = np.bincount(parent, weights=per_piece, minlength=n)
    suspect = np.flatnonzero(candidates > FAN_SLACK)  # small polygons are never checked
    if len(suspect) == 0:
        return
    lb = shapely.bounds(local[suspect])
    extent = np.hypot(lb[:, 2] - lb[:, 0], lb[:, 3] - lb[:, 1])
    ccol, crow = tiles.tile_indices(cx[suspect], cy[suspect])
    boxes = tiles.tile_boxes(ccol, crow)
    west, south = tms_to_ll.transform(boxes[:, 0], boxes[:, 1], errcheck=False)
    east, north = tms_to_ll.transform(boxes[:, 2], boxes[:, 3], errcheck=False)
    _, lat = tms_to_ll.transform(cx[suspect], cy[suspect], errcheck=False)
    ll = np.column_stack([west, south, east, north])
    implied = implied_tile_count(extent, ll, np.asarray(lat))
    too_many = candidates[suspect] > FAN_FACTOR * implied + FAN_SLACK
    if too_many.any():
        bad = np.zeros(n, dtype=bool)
        bad[suspect[too_many]] = True
        k = suspect[too_many][0]
        j = np.flatnonzero(too_many)[0]
        raise InputError(
            path,
            f"feature(s) with fid {_fid_list(fids, bad)} would touch far more tiles than their "
            f"size allows (fid {int(fids[k])}: {int(candidates[k])} tiles at z={tiles.config.z} "
            f"for a polygon {extent[j]:.0f} m across, at most about {implied[j]:.0f} expected); "
            "check their coordinates and CRS; nothing of the file was staged",
        )


def assign_tiles(
    tiles: Tiles,
    geoms: np.ndarray,
    cx: np.ndarray | None = None,
    cy: np.ndarray | None = None,
    owns: np.ndarray | None = None,
    z: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every (geometry, tile) pair where the geometry intersects the tile or holds its centroid.

    This is the one polygon -> tile assignment of grouputils: staging uses it
    with centroids, the sample data's summary without.

    Parameters
    ----------
    tiles : Tiles
        Tile maths of the run.
    geoms : ndarray of shapely geometries
        Polygons (or parts of polygons) in the TMS CRS.
    cx, cy : ndarray of float, optional
        Centroid of the polygon each geometry belongs to. Without them only
        intersected tiles are returned and no row has the centroid flag.
    owns : ndarray of bool, optional
        Which geometries the centroid is counted with (default: all; a
        polygon split at the antimeridian has one owning part).
    z : int, optional
        Zoom level; default the staging level (``tiles.config.z``).

    Returns
    -------
    tuple of ndarray
        Geometry indices, tile columns, tile rows and the centroid-within
        flag, sorted by geometry then tile.
    """
    geoms = np.asarray(geoms, dtype=object)
    owns = np.ones(len(geoms), dtype=bool) if owns is None else np.asarray(owns, dtype=bool)
    if cx is None or cy is None:
        owns = np.zeros(len(geoms), dtype=bool)
        cx = cy = np.full(len(geoms), np.nan)
    b = shapely.bounds(geoms)
    c0, r_a = tiles.tile_indices(b[:, 0], b[:, 3], z)  # left, top
    c1, r_b = tiles.tile_indices(b[:, 2], b[:, 1], z)  # right, bottom
    rmin, rmax = np.minimum(r_a, r_b), np.maximum(r_a, r_b)
    ccx, ccy = tiles.tile_indices(cx, cy, z)
    ncol = c1 - c0 + 1
    nrow = rmax - rmin + 1
    single = (ncol == 1) & (nrow == 1)
    idx = [np.flatnonzero(single)]
    txs = [c0[single]]
    tys = [rmin[single]]
    multi = np.flatnonzero(~single)
    if len(multi):
        counts = ncol[multi] * nrow[multi]
        pi = np.repeat(multi, counts)
        start = np.repeat(np.cumsum(counts) - counts, counts)
        k = np.arange(len(pi)) - start
        nc = ncol[pi]
        cx_ = c0[pi] + k % nc
        ry_ = rmin[pi] + k // nc
        boxes = tiles.tile_boxes(cx_, ry_, z)
        hit = shapely.intersects(
            geoms[pi], shapely.box(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3])
        )
        # the centroid's tile is kept even if the geometry does not touch it
        # (a concave polygon); the centroid always lies in the owning part's bounds
        hit |= owns[pi] & (cx_ == ccx[pi]) & (ry_ == ccy[pi])
        idx.append(pi[hit])
        txs.append(cx_[hit])
        tys.append(ry_[hit])
    pi = np.concatenate(idx)
    tx = np.concatenate(txs)
    ty = np.concatenate(tys)
    order = np.lexsort((ty, tx, pi))
    pi, tx, ty = pi[order], tx[order], ty[order]
    within = owns[pi] & (tx == ccx[pi]) & (ty == ccy[pi])
    return pi, tx, ty, within


# ----------------------------------------------------- neighbours across 180°
@functools.lru_cache(maxsize=32)
def _wrap_of(tms_id: str, z: int) -> tuple[int, float] | None:
    """(matrix width, period) if the TMS's matrix at ``z`` spans exactly one turn, else None."""
    tms = get_tms(tms_id)
    wrap = tms_wrap(pyproj.CRS.from_user_input(tms.crs.srs))
    if wrap.period is None:
        return None
    bbox = tms.xy_bbox
    if abs((bbox.right - bbox.left) - wrap.period) > 1e-9 * wrap.period:
        return None
    return int(tms.matrix(z).matrixWidth), float(wrap.period)


def neighbour_tile(tiles: Tiles, tile: Tile, dx: int, dy: int) -> Tile | None:
    """The tile ``(dx, dy)`` away, wrapping across the antimeridian where the TMS does.

    Returns None off the matrix (above the first row, or left of the first
    column of a TMS that does not wrap) and for the tile itself.
    """
    x, y = tile.x + dx, tile.y + dy
    w = _wrap_of(tiles.config.tms, tile.z)
    if w is not None:
        x %= w[0]
    if x < 0 or y < 0 or (x, y) == (tile.x, tile.y):
        return None
    return Tile(x, y, tile.z)


def tiles_under_bounds(tiles: Tiles, tile: Tile, bounds: np.ndarray) -> dict[Tile, float]:
    """Tiles that the bounding boxes reach into, other than ``tile``, with the x shift to apply.

    Parameters
    ----------
    tiles : Tiles
        Tile maths of the run.
    tile : Tile
        The tile being finalized.
    bounds : ndarray, shape (n, 4)
        Bounds of the polygons of ``tile`` that cross its edges.

    Returns
    -------
    dict
        Tile -> shift to add to x of that tile's geometries to compare them
        with ``tile``'s (0, or one turn for a tile across the antimeridian,
        whose rows hold their polygons on the other side of 180°).
    """
    out: dict[Tile, float] = {}
    c0, r0 = tiles.tile_indices(bounds[:, 0], bounds[:, 3])
    c1, r1 = tiles.tile_indices(bounds[:, 2], bounds[:, 1])
    ranges = [(c0, c1, 0.0)]
    w = _wrap_of(tiles.config.tms, tile.z)
    if w is not None:
        width, period = w
        left, right = (
            tiles.bounds(Tile(0, 0, tile.z)).left,
            tiles.bounds(Tile(width - 1, 0, tile.z)).right,
        )
        over = bounds[:, 2] > right  # reaching past the right end: tiles at the left end
        under = bounds[:, 0] < left
        if over.any():
            a, _ = tiles.tile_indices(np.full(len(bounds), left), bounds[:, 3])
            b, _ = tiles.tile_indices(bounds[:, 2] - period, bounds[:, 3])
            ranges.append((np.where(over, a, 1), np.where(over, b, 0), period))
        if under.any():
            a, _ = tiles.tile_indices(bounds[:, 0] + period, bounds[:, 3])
            b, _ = tiles.tile_indices(np.full(len(bounds), right - 1e-9 * period), bounds[:, 3])
            ranges.append((np.where(under, a, 1), np.where(under, b, 0), -period))
    for lo, hi, shift in ranges:
        for i in range(len(bounds)):
            for x in range(
                int(lo[i]), int(hi[i]) + 1
            ):  # lo > hi: nothing (a row not reaching across)
                for y in range(min(r0[i], r1[i]), max(r0[i], r1[i]) + 1):
                    t = Tile(int(x), int(y), tile.z)
                    if t != tile:
                        out.setdefault(t, shift)
    return out
