"""Polygons at the antimeridian and the poles, and a guard on tile fans.

A tile matrix set whose CRS is longitude/latitude (``WorldCRS84Quad``) or
Mercator (``WebMercatorQuad``) *wraps*: its x axis ends at the antimeridian
and starts again on the other side. A 20 m polygon that straddles 180°,
reprojected vertex by vertex, gets x coordinates near both ends of the axis
and, taken at face value, covers every tile column of its row. And a polygon
around a pole covers every longitude, which such a CRS stretches into a whole
row of tiles.

This module

* finds the TMS's wrap (:func:`tms_wrap`, by transforming points on both
  sides of the antimeridian and at the poles, so it holds for any TMS);
* makes lon/lat inputs continuous across 180° before they are projected
  (:func:`unwrap_longitudes`);
* splits geometries that cross the antimeridian *after* reprojection
  (:func:`split_at_antimeridian`) into the part east of the TMS's left edge
  and the part west of its right edge, and gives each polygon one centroid
  (of the continuous geometry, wrapped back) that lies in exactly one part;
* finds polygons that hold a pole (:func:`holds_pole`), which a wrapping TMS
  cannot hold without covering a whole row of tiles;
* estimates how many tiles a polygon of a given ground size can touch
  (:func:`implied_tile_count`), so staging can refuse one that would touch
  far more.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pyproj
import shapely

from grouputils.core.polygons import polygonal_part

__all__ = [
    "Wrap",
    "tms_wrap",
    "unwrap_longitudes",
    "split_at_antimeridian",
    "holds_pole",
    "pole_points",
    "implied_tile_count",
]

_GEOD = pyproj.Geod(ellps="WGS84")


@dataclasses.dataclass(frozen=True)
class Wrap:
    """How a TMS's CRS wraps around the globe.

    Attributes
    ----------
    period : float or None
        Length of the x axis around the globe (360 for degrees), or None if
        the CRS does not wrap (a polar or local projection).
    left, right : float
        x of the antimeridian on the left and right edge of the axis.
    poles_singular : tuple of (bool, bool)
        For the North and the South Pole: True if the pole is a line (or
        infinitely far) in the CRS, so a polygon holding it would cover every
        tile column of the first or last row.
    """

    period: float | None
    left: float
    right: float
    poles_singular: tuple[bool, bool]


def tms_wrap(tms_crs: pyproj.CRS) -> Wrap:
    """Find whether, and where, the CRS of a tile matrix set wraps.

    Parameters
    ----------
    tms_crs : pyproj.CRS
        The TMS's CRS.

    Returns
    -------
    Wrap
    """
    to = pyproj.Transformer.from_crs("EPSG:4326", tms_crs, always_xy=True)
    eps = 1e-7
    (xl, xr), _ = to.transform([-180 + eps, 180 - eps], [0.0, 0.0], errcheck=False)
    wraps = bool(np.isfinite(xl) and np.isfinite(xr) and xr - xl > 0)
    # the x axis is one turn long if moving the two points by eps closes the gap
    period = None
    if wraps:
        (xa, xb), _ = to.transform([-90.0, 90.0], [0.0, 0.0], errcheck=False)
        turn = (xb - xa) * 2
        if abs((xr - xl) - turn) <= 1e-6 * abs(turn):
            period = float(turn)
        else:
            wraps = False
    px, py = to.transform([0.0, 90.0, 0.0, 90.0], [90.0, 90.0, -90.0, -90.0], errcheck=False)
    px, py = np.asarray(px), np.asarray(py)
    def singular_at(k: int) -> bool:  # the two points of one pole are not one point
        finite = np.all(np.isfinite(px[k : k + 2]) & np.isfinite(py[k : k + 2]))
        return bool(
            not finite or not np.allclose(px[k], px[k + 1]) or not np.allclose(py[k], py[k + 1])
        )

    singular = (singular_at(0), singular_at(2))
    if period is None:
        return Wrap(None, float("nan"), float("nan"), singular)
    left = (
        float(xl) - (float(xl) - float(xr) + period) / 2
    )  # the true edge, between the two eps points
    return Wrap(period, left, left + period, singular)


def unwrap_longitudes(geoms: np.ndarray, period: float = 360.0) -> tuple[np.ndarray, np.ndarray]:
    """Make lon/lat geometries that jump across the antimeridian continuous.

    A geometry whose x extent exceeds half a turn is taken to cross the
    antimeridian (no IWP polygon, nor any polygon a tile pyramid is for, is
    half the globe wide): its negative longitudes are moved one turn east.

    Parameters
    ----------
    geoms : ndarray of shapely geometries
        In a geographic CRS (degrees).
    period : float
        One turn, in the CRS's units.

    Returns
    -------
    geoms : ndarray
        With crossing geometries made continuous (x up to 180 + their width).
    crossing : ndarray of bool
        Which geometries were changed.
    """
    geoms = np.asarray(geoms, dtype=object)
    b = shapely.bounds(geoms)
    crossing = (b[:, 2] - b[:, 0]) > period / 2
    if crossing.any():
        mid = (b[crossing, 0] + b[crossing, 2]) / 2
        out = geoms.copy()
        out[crossing] = [
            shapely.transform(g, functools.partial(_unwrap_coords, mid=m, period=period))
            for g, m in zip(geoms[crossing], mid, strict=True)
        ]
        geoms = out
    return geoms, crossing


def _unwrap_coords(c: np.ndarray, mid: float, period: float) -> np.ndarray:
    """Coordinates west of ``mid`` moved one turn east."""
    return np.column_stack([np.where(c[:, 0] < mid, c[:, 0] + period, c[:, 0]), c[:, 1]])


def split_at_antimeridian(
    geoms: np.ndarray, wrap: Wrap
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split polygons that cross the TMS's antimeridian, and give each one centroid.

    Parameters
    ----------
    geoms : ndarray of shapely geometries
        Polygons in the TMS CRS, as reprojection left them (x within the axis).
    wrap : Wrap
        From :func:`tms_wrap`.

    Returns
    -------
    pieces : ndarray of shapely geometries
        One piece per polygon that does not cross, in input order, then the
        second piece of every polygon that does (the first piece replaces the
        polygon in place). What decides the tiles a polygon is written to.
    shapes : ndarray of shapely geometries
        By piece: the geometry to *write*: the whole polygon, continuous
        across the antimeridian and moved to the piece's side (so it reaches
        past the axis's end by the width of the other part, as a polygon
        crossing any other tile edge reaches into the next tile). Each tile
        thus holds the polygon whole: duplicate flags compare whole polygons
        on both sides, and rasterizing clips it to the tile.
    parent : ndarray of int
        The polygon each piece belongs to.
    cx, cy : ndarray of float
        Centroid of each *polygon* (of the continuous geometry, wrapped back
        into the axis), by polygon.
    owns : ndarray of bool
        By piece: True for the one piece of each polygon its centroid is
        counted with (the piece on the centroid's side of the antimeridian).
    """
    geoms = np.asarray(geoms, dtype=object)
    n = len(geoms)
    cent = shapely.centroid(geoms)
    cx, cy = shapely.get_x(cent), shapely.get_y(cent)
    parent = np.arange(n)
    owns = np.ones(n, dtype=bool)
    if wrap.period is None or n == 0:
        return geoms, geoms, parent, cx, cy, owns
    cont, crossing = unwrap_longitudes(geoms, wrap.period)
    idx = np.flatnonzero(crossing)
    if len(idx) == 0:
        return geoms, geoms, parent, cx, cy, owns
    cont = cont[idx]
    c = shapely.centroid(cont)
    ccx = shapely.get_x(c)
    cx, cy = cx.copy(), cy.copy()
    cx[idx] = np.where(ccx >= wrap.right, ccx - wrap.period, ccx)
    cy[idx] = shapely.get_y(c)
    b = shapely.bounds(cont)
    ylo, yhi = np.nanmin(b[:, 1]) - 1, np.nanmax(b[:, 3]) + 1
    west = shapely.intersection(cont, shapely.box(wrap.left, ylo, wrap.right, yhi))
    east = shapely.intersection(cont, shapely.box(wrap.right, ylo, wrap.right + wrap.period, yhi))
    east = shapely.transform(east, lambda xy: xy - np.array([wrap.period, 0.0]))
    west = np.array([polygonal_part(g) for g in west], dtype=object)
    east = np.array([polygonal_part(g) for g in east], dtype=object)
    has_w = np.array([g is not None for g in west], dtype=bool)
    has_e = np.array([g is not None for g in east], dtype=bool)
    on_west = ccx < wrap.right  # the side of the antimeridian the centroid is on
    pieces = geoms.copy()
    # a polygon that only touches the antimeridian keeps its one real piece, which owns the centroid
    pieces[idx] = np.where(has_w, west, np.where(has_e, east, geoms[idx]))
    both = has_w & has_e
    owns[idx] = ~both | on_west
    shifted = shapely.transform(cont, lambda xy: xy - np.array([wrap.period, 0.0]))
    shapes = geoms.copy()
    shapes[idx] = np.where(has_w, cont, np.where(has_e, shifted, geoms[idx]))
    pieces = np.concatenate([pieces, east[both]])
    shapes = np.concatenate([shapes, shifted[both]])
    parent = np.concatenate([parent, idx[both]])
    owns = np.concatenate([owns, ~on_west[both]])
    return pieces, shapes, parent, cx, cy, owns


def pole_points(crs: pyproj.CRS, which: tuple[bool, bool] = (True, True)) -> np.ndarray:
    """The North and South Pole in ``crs`` as shapely points.

    Parameters
    ----------
    crs : pyproj.CRS
        The CRS the points are wanted in.
    which : tuple of (bool, bool)
        Include the North, the South Pole (e.g. ``Wrap.poles_singular``).

    Returns
    -------
    ndarray of shapely Points
        Only the poles asked for that are finite in ``crs``.
    """
    to = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    x, y = to.transform([0.0, 0.0], [90.0, -90.0], errcheck=False)
    pts = [
        shapely.Point(a, b)
        for a, b, w in zip(np.atleast_1d(x), np.atleast_1d(y), which, strict=True)
        if w and np.isfinite(a) and np.isfinite(b)
    ]
    return np.array(pts, dtype=object)


def holds_pole(geoms: np.ndarray, poles: np.ndarray) -> np.ndarray:
    """Which geometries hold or touch a pole (``poles`` from :func:`pole_points`, same CRS)."""
    out = np.zeros(len(geoms), dtype=bool)
    for p in poles:
        out |= shapely.intersects(geoms, p)
    return out


def implied_tile_count(
    extent_m: np.ndarray, tile_boxes_ll: np.ndarray, lat: np.ndarray
) -> np.ndarray:
    """How many tiles a polygon of a given ground size can touch, at most, near its centroid.

    Parameters
    ----------
    extent_m : ndarray of float
        Ground size of each polygon: the diagonal of its bounding box in a
        metric CRS, in metres.
    tile_boxes_ll : ndarray, shape (n, 4)
        Bounds (west, south, east, north) of the tile holding each polygon's
        centroid, in degrees.
    lat : ndarray of float
        Latitude of each centroid.

    Returns
    -------
    ndarray of float
        ``(extent / tile width + 2) * (extent / tile height + 2)``, with the
        tile's ground width measured along the centroid's latitude on the
        WGS84 ellipsoid. Infinite where the tile has no width (at a pole).
    """
    w, s, e, n = (tile_boxes_ll[:, k] for k in range(4))
    lat = np.clip(lat, s, n)
    _, _, width = _GEOD.inv(w, lat, e, lat)
    mid = (w + e) / 2
    _, _, height = _GEOD.inv(mid, s, mid, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        cols = np.where(width > 0, extent_m / width, np.inf) + 2
        rows = np.where(height > 0, extent_m / height, np.inf) + 2
    return cols * rows
