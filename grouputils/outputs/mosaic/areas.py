"""Ground area of a mosaic's pixels on the CRS's ellipsoid (for the covered area)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pyproj
import xarray as xr
from affine import Affine

from grouputils.core.raster.areas import cell_areas_m2, geographic_row_areas_m2, is_lonlat_degrees

__all__ = ["pixel_area_m2"]


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
        chunk (both from :mod:`grouputils.core.raster.areas`, as for the tiles).
        Broadcasting against the mosaic multiplies each pixel by its area.
    """
    crs = pyproj.CRS.from_user_input(mosaic.rio.crs)
    transform = mosaic.rio.transform(recalc=True)
    ny, nx = mosaic.sizes["y"], mosaic.sizes["x"]
    if is_lonlat_degrees(crs):
        edges = transform.f + np.arange(ny + 1) * transform.e  # latitude of row edges
        area = geographic_row_areas_m2(edges, transform.a, crs)
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
