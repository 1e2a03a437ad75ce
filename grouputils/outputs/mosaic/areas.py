"""Ground area of a mosaic's pixels on the CRS's ellipsoid (for the covered area)."""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pyproj
import xarray as xr
from affine import Affine

from grouputils.core.errors import ConfigError
from grouputils.core.rasterize import cell_areas_m2

__all__ = ["pixel_area_m2"]


def _authalic_q(lat_deg: np.ndarray, e: float) -> np.ndarray:
    """The authalic function q(phi); a zone's area per radian of longitude is a^2 (q2 - q1) / 2."""
    s = np.sin(np.radians(lat_deg))
    return (1.0 - e * e) * (s / (1.0 - e * e * s * s) + np.arctanh(e * s) / e)


def pixel_area_m2(mosaic: xr.DataArray) -> xr.DataArray:
    """Ground area of the mosaic's pixels on the CRS's ellipsoid, in square metres.

    Parameters
    ----------
    mosaic : xarray.DataArray
        From :func:`open_mosaic` (any array with ``.rio`` CRS and transform).

    Returns
    -------
    xarray.DataArray
        float64. For a geographic CRS (``WorldCRS84Quad``) a pixel's area
        depends only on its row: dims ``('y',)``, computed exactly as the
        area of the ellipsoidal quadrangle between the pixel's meridians and
        parallels, ``a^2/2 * dlon * (q(lat_top) - q(lat_bottom))`` with the
        authalic function ``q``. For a projected CRS: dims ``('y', 'x')``, a
        lazy Dask array chunked like the mosaic, each pixel's four corners
        projected to a Lambert azimuthal equal-area projection centred on its
        chunk (the method of :func:`grouputils.core.rasterize.pixel_areas_m2`).
        Broadcasting against the mosaic multiplies each pixel by its area.
    """
    crs = pyproj.CRS.from_user_input(mosaic.rio.crs)
    transform = mosaic.rio.transform(recalc=True)
    ny, nx = mosaic.sizes["y"], mosaic.sizes["x"]
    if crs.is_geographic and all(ax.unit_name == "degree" for ax in crs.axis_info):
        ell = crs.ellipsoid
        if ell is None:
            raise ConfigError(f"the mosaic's CRS {crs.name!r} has no ellipsoid")
        a = ell.semi_major_metre
        f = 1.0 / ell.inverse_flattening if ell.inverse_flattening else 0.0
        e = math.sqrt(f * (2.0 - f))
        edges = transform.f + np.arange(ny + 1) * transform.e  # latitude of row edges
        dlon = math.radians(abs(transform.a))
        if e == 0.0:
            zone = np.abs(np.diff(np.sin(np.radians(edges))))
        else:
            zone = np.abs(np.diff(_authalic_q(edges, e))) / 2.0
        area = a * a * dlon * zone
        return xr.DataArray(
            area,
            dims=("y",),
            coords={"y": mosaic["y"].values},
            name="pixel_area_m2",
            attrs={"units": "m2"},
        )
    ychunks = mosaic.chunksizes.get("y", (ny,)) if mosaic.chunks else (ny,)
    xchunks = mosaic.chunksizes.get("x", (nx,)) if mosaic.chunks else (nx,)
    template = da.zeros((ny, nx), chunks=(ychunks, xchunks), dtype="u1")
    areas = da.map_blocks(
        _projected_block_areas,
        template,
        dtype="f8",
        transform=tuple(transform)[:6],
        wkt=crs.to_wkt(),
    )
    return xr.DataArray(
        areas,
        dims=("y", "x"),
        coords={"y": mosaic["y"].values, "x": mosaic["x"].values},
        name="pixel_area_m2",
        attrs={"units": "m2"},
    )


def _projected_block_areas(
    block: np.ndarray, transform: tuple[float, ...], wkt: str, block_info: dict | None = None
) -> np.ndarray:
    """Ground areas of one block's pixels (``dask.array.map_blocks`` passes ``block_info``)."""
    if block_info is None:
        raise ValueError("_projected_block_areas runs under dask.array.map_blocks only")
    (r0, r1), (c0, c1) = block_info[0]["array-location"]
    t = Affine(*transform)
    cols, rows = np.meshgrid(np.arange(c0, c1 + 1), np.arange(r0, r1 + 1))
    cx, ry = cols.astype("f8"), rows.astype("f8")
    gx = cx * t.a + ry * t.b + t.c  # the pixel corners: t @ (cols, rows), as arrays
    gy = cx * t.d + ry * t.e + t.f
    return cell_areas_m2(
        gx, gy, pyproj.CRS.from_wkt(wkt), centre=(float(gx.mean()), float(gy.mean()))
    )
