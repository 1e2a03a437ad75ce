"""Summaries read back from the GeoTIFFs on disk: the raster summary table and the covered area.

Each GeoTIFF carries its own summary row as tags (:mod:`grouputils.core.raster.tags`),
written atomically with the raster, so the table has exactly one row per
GeoTIFF whatever order and processes wrote them in. (The pipeline builds the
same table from its run state instead: :func:`grouputils.run.reports.raster_summary`.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import rasterio
from rasterio.errors import RasterioIOError

from grouputils.core.config import Config
from grouputils.core.errors import InputError
from grouputils.core.raster.areas import pixel_areas_m2
from grouputils.core.raster.geotiff import read_geotiff
from grouputils.core.raster.tags import (
    SUMMARY_BAND_FIELDS,
    SUMMARY_FIELDS,
    read_band_statistics,
    read_summary,
)
from grouputils.core.tiles import Tiles, tile_from_path, tile_to_str

__all__ = ["geotiff_summary", "covered_area_m2"]


def geotiff_summary(config: Config) -> pd.DataFrame:
    """One row per GeoTIFF on disk, from the tags each GeoTIFF carries.

    Parameters
    ----------
    config : Config
        The run's config (folders, statistics).

    Returns
    -------
    pandas.DataFrame
        Columns ``tile, z, x, y, path, kind, n_rows, n_counted,
        n_duplicated, n_children, n_data_pixels`` then, per statistic,
        ``<name>_min``, ``<name>_max``, ``<name>_mean``, ``<name>_sum``
        (over data pixels). Sorted by z (highest first), x, y.

    Raises
    ------
    InputError
        A GeoTIFF cannot be read.
    """
    rows = []
    base = config.dir_output
    for path in Tiles(config).get_filenames_from_dir("geotiff"):
        tile = tile_from_path(path)
        try:
            with rasterio.open(path) as src:
                tags = src.tags()
                band_tags = [src.tags(b) for b in range(1, src.count + 1)]
                names = src.descriptions
        except RasterioIOError as e:
            raise InputError(path, f"not a readable GeoTIFF ({e})") from None
        row: dict[str, Any] = {
            "tile": tile_to_str(tile),
            "z": tile.z,
            "x": tile.x,
            "y": tile.y,
            "path": path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path),
        }
        row.update(read_summary(tags))
        for name, bt in zip(names, band_tags, strict=True):
            stats = read_band_statistics(bt)
            for short, key in SUMMARY_BAND_FIELDS.items():
                row[f"{name}_{short}"] = stats.get(key, np.nan)
        rows.append(row)
    columns = ["tile", "z", "x", "y", "path", *SUMMARY_FIELDS] + [
        f"{name}_{short}" for name in config.statistic_names for short in SUMMARY_BAND_FIELDS
    ]
    frame = pd.DataFrame(rows, columns=list(dict.fromkeys(columns + [k for r in rows for k in r])))
    if len(frame):
        frame = frame.sort_values(["z", "x", "y"], ascending=[False, True, True], ignore_index=True)
        for key in SUMMARY_FIELDS[1:]:
            frame[key] = frame[key].astype("Int64")
    return frame


def covered_area_m2(config: Config) -> float:
    """Area covered by the polygons, from the coverage band of the top-zoom GeoTIFFs.

    Parameters
    ----------
    config : Config
        The run's config; its first ``weight_by='coverage'`` statistic is used.

    Returns
    -------
    float
        Sum over the z = ``config.z`` GeoTIFFs on disk of coverage x pixel area,
        in square metres (each polygon counted once: the union's area). NaN if
        no statistic measures coverage; 0.0 if there are no GeoTIFFs.
    """
    band = next((i for i, s in enumerate(config.statistics) if s.weight_by == "coverage"), None)
    if band is None:
        return float("nan")
    tiles = Tiles(config)
    total = 0.0
    for path in tiles.get_filenames_from_dir("geotiff", z=config.z):
        values = read_geotiff(path, config)[band].astype("f8")
        total += float(np.nansum(values * pixel_areas_m2(tile_from_path(path), tiles)))
    return total
