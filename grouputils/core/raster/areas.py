"""Ground areas of pixels, in square metres: the one implementation the package uses.

Two cases, one function each, chosen by :func:`pixel_areas_m2` (and by the
mosaic reader, :func:`grouputils.outputs.mosaic.pixel_area_m2`):

* a longitude/latitude CRS in degrees (``WorldCRS84Quad``): a pixel is an
  ellipsoidal quadrangle between two meridians and two parallels; its area is
  exact, ``a^2/2 * dlon * (q(lat_top) - q(lat_bottom))`` with the authalic
  function ``q`` (:func:`geographic_row_areas_m2`), and depends only on the row;
* any other CRS: each pixel's four corners are projected to a Lambert
  azimuthal equal-area projection (WGS 84) centred on the grid and the area is
  the shoelace area of the projected quadrilateral (:func:`cell_areas_m2`).
  Pixels are so small that this agrees with the geodesic area to better than
  1e-6.
"""

from __future__ import annotations

import math

import numpy as np
import pyproj
from morecantile import Tile

from grouputils.core.tiles import Tiles

__all__ = ["is_lonlat_degrees", "geographic_row_areas_m2", "cell_areas_m2", "pixel_areas_m2"]


def is_lonlat_degrees(crs: pyproj.CRS) -> bool:
    """Whether ``crs`` is geographic with both axes in degrees (areas by the exact formula)."""
    return bool(crs.is_geographic) and all(ax.unit_name == "degree" for ax in crs.axis_info)


def _authalic_q(lat_deg: np.ndarray, e: float) -> np.ndarray:
    """The authalic function q(phi); a zone's area per radian of longitude is a^2 (q2 - q1) / 2."""
    s = np.sin(np.radians(lat_deg))
    return (1.0 - e * e) * (s / (1.0 - e * e * s * s) + np.arctanh(e * s) / e)


def geographic_row_areas_m2(lat_edges: np.ndarray, dlon_deg: float, crs: pyproj.CRS) -> np.ndarray:
    """Exact area of one pixel of each row of a longitude/latitude grid, in m².

    Parameters
    ----------
    lat_edges : ndarray of float, shape (rows + 1,)
        Latitudes of the row edges in degrees, top first.
    dlon_deg : float
        Width of a pixel in degrees of longitude.
    crs : pyproj.CRS
        The grid's geographic CRS; its ellipsoid is used.

    Returns
    -------
    ndarray of float64, shape (rows,)
        ``a^2 * dlon * |q(lat_top) - q(lat_bottom)| / 2`` (a sphere: ``a^2 dlon |sin - sin|``).
    """
    ell = crs.ellipsoid
    if ell is None:
        raise ValueError(f"CRS {crs.name!r} has no ellipsoid")
    a = ell.semi_major_metre
    f = 1.0 / ell.inverse_flattening if ell.inverse_flattening else 0.0
    e = math.sqrt(f * (2.0 - f))
    edges = np.asarray(lat_edges, dtype="f8")
    if e == 0.0:
        zone = np.abs(np.diff(np.sin(np.radians(edges))))
    else:
        zone = np.abs(np.diff(_authalic_q(edges, e))) / 2.0
    return a * a * math.radians(abs(dlon_deg)) * zone


def cell_areas_m2(
    gx: np.ndarray, gy: np.ndarray, crs: pyproj.CRS, centre: tuple[float, float]
) -> np.ndarray:
    """Areas in m² of the cells of a grid given by its corners.

    Parameters
    ----------
    gx, gy : ndarray, shape (rows + 1, cols + 1)
        Coordinates of the cell corners in ``crs``; row 0 is the top row.
    crs : pyproj.CRS
        The CRS of the corners (any: geographic or projected).
    centre : tuple of float
        A point near the middle of the grid, in ``crs``: the centre of the
        equal-area projection.

    Returns
    -------
    ndarray of float64, shape (rows, cols)
        The shoelace area of each cell's four corners projected to a Lambert
        azimuthal equal-area projection (WGS 84) centred on ``centre``.
    """
    to_geo = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lon_c, lat_c = to_geo.transform(*centre)
    laea = pyproj.CRS.from_proj4(f"+proj=laea +lat_0={lat_c} +lon_0={lon_c} +datum=WGS84 +units=m")
    px, py = pyproj.Transformer.from_crs(crs, laea, always_xy=True).transform(gx, gy)
    # Shoelace over the corners (top-left, top-right, bottom-right, bottom-left).
    x0, y0 = px[:-1, :-1], py[:-1, :-1]
    x1, y1 = px[:-1, 1:], py[:-1, 1:]
    x2, y2 = px[1:, 1:], py[1:, 1:]
    x3, y3 = px[1:, :-1], py[1:, :-1]
    twice = (x0 * y1 - x1 * y0) + (x1 * y2 - x2 * y1) + (x2 * y3 - x3 * y2) + (x3 * y0 - x0 * y3)
    return np.abs(twice) / 2.0


def pixel_areas_m2(tile: Tile, tiles: Tiles) -> np.ndarray:
    """Ground area of every pixel of ``tile`` in square metres.

    Parameters
    ----------
    tile : Tile
        The tile.
    tiles : Tiles
        Supplies the tile matrix set and ``tile_size``.

    Returns
    -------
    ndarray of float64, shape (size, size)
        Row 0 is the top row.

    Notes
    -----
    Exact for a longitude/latitude tile matrix set (:func:`geographic_row_areas_m2`),
    otherwise the equal-area shoelace of :func:`cell_areas_m2`; see the module docstring.
    """
    size = tiles.config.tile_size
    left, bottom, right, top = tiles.bounds(tile)
    crs = pyproj.CRS.from_wkt(tiles.tms.crs.to_wkt())
    if is_lonlat_degrees(crs):
        rows = geographic_row_areas_m2(
            np.linspace(top, bottom, size + 1), (right - left) / size, crs
        )
        return np.repeat(rows[:, None], size, axis=1)
    xs = np.linspace(left, right, size + 1)
    ys = np.linspace(top, bottom, size + 1)
    gx, gy = np.meshgrid(xs, ys)
    return cell_areas_m2(gx, gy, crs, centre=((left + right) / 2, (bottom + top) / 2))
