"""The run's totals from its mosaic in one pass: unique polygons and covered area.

Unique polygons are the sum of the count band; the covered area is coverage x
the ground area of each pixel (:func:`~grouputils.outputs.mosaic.areas.pixel_area_m2`).
"""

from __future__ import annotations

import dataclasses
import math

import dask
import xarray as xr

from grouputils.core.cores import usable_cores
from grouputils.core.errors import ConfigError
from grouputils.outputs.mosaic.areas import pixel_area_m2

__all__ = ["MosaicTotals", "covered_area_km2", "mosaic_totals", "polygon_count"]


@dataclasses.dataclass(frozen=True)
class MosaicTotals:
    """Totals of a run computed from its GeoTIFF mosaic.

    Attributes
    ----------
    unique_polygons : int
        Sum of the count band: each unique polygon is counted once, at the
        pixel holding its centroid.
    covered_area_km2 : float
        Area covered by the union of the polygons, in square kilometres.
    """

    unique_polygons: int
    covered_area_km2: float


def _band(mosaic: xr.DataArray, weight_by: str, statistic: str | None) -> xr.DataArray:
    if statistic is not None:
        if statistic not in mosaic["band"].values:
            raise ConfigError(f"no band named {statistic!r}; have {list(mosaic['band'].values)}")
        return mosaic.sel(band=statistic)
    if "weight_by" not in mosaic.coords:
        raise ConfigError("the mosaic has no weight_by coordinate; pass statistic=")
    hits = [
        str(b)
        for b, w in zip(mosaic["band"].values, mosaic["weight_by"].values, strict=True)
        if w == weight_by
    ]
    if not hits:
        raise ConfigError(f"no band with weight_by={weight_by!r}; pass statistic=")
    return mosaic.sel(band=hits[0])


def polygon_count(mosaic: xr.DataArray, statistic: str | None = None) -> xr.DataArray:
    """Lazy total of the count band: the number of unique polygons.

    Parameters
    ----------
    mosaic : xarray.DataArray
        From :func:`open_mosaic` at the staging zoom level.
    statistic : str, optional
        Band to sum; default the first band with ``weight_by='count'``.

    Returns
    -------
    xarray.DataArray
        0-d float64, lazy (call ``.compute()``); NaN pixels are skipped.
        Summed in float64, so the total is an exact integer.
    """
    return _band(mosaic, "count", statistic).astype("f8").sum()


def covered_area_km2(mosaic: xr.DataArray, statistic: str | None = None) -> xr.DataArray:
    """Lazy covered area: sum over pixels of coverage x pixel ground area, in km².

    Parameters
    ----------
    mosaic : xarray.DataArray
        From :func:`open_mosaic` at the staging zoom level.
    statistic : str, optional
        Coverage band (fraction 0..1); default the first with ``weight_by='coverage'``.

    Returns
    -------
    xarray.DataArray
        0-d float64, lazy. The pixel areas are those of :func:`pixel_area_m2`.
    """
    coverage = _band(mosaic, "coverage", statistic)
    return (coverage * pixel_area_m2(mosaic)).sum() / 1e6


def mosaic_totals(
    mosaic: xr.DataArray, *, scheduler: str = "threads", num_workers: int | None = None
) -> MosaicTotals:
    """Compute unique polygons and covered area in one pass over the mosaic.

    Parameters
    ----------
    mosaic : xarray.DataArray
        From :func:`open_mosaic`.
    scheduler : str
        Dask scheduler (``'threads'``, ``'processes'``, ``'synchronous'``).
    num_workers : int, optional
        Dask workers; default :func:`grouputils.usable_cores` (which honours
        an instructor's cap), not every core of the machine.

    Returns
    -------
    MosaicTotals
        Each chunk is read once for both totals.
    """
    count, area = dask.compute(
        polygon_count(mosaic),
        covered_area_km2(mosaic),
        scheduler=scheduler,
        num_workers=usable_cores() if num_workers is None else num_workers,
    )
    n = float(count)
    if not math.isclose(n, round(n), abs_tol=1e-6):
        raise ValueError(f"the count band sums to {n}, not a whole number of polygons")
    return MosaicTotals(unique_polygons=int(round(n)), covered_area_km2=float(area))
