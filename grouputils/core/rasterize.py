"""Rasterize staged tiles into GeoTIFFs, build the pyramid, and summarise it.

The facade of :mod:`grouputils.core.raster` (one job per module there; see its
docstring): every name this module has always offered, re-exported from
where it now lives. Objects keep their home module, so they pickle by
reference to it.
"""

from __future__ import annotations

from grouputils.core.raster.areas import cell_areas_m2, pixel_areas_m2
from grouputils.core.raster.coverage import centroid_pixels, coverage_fraction, disjoint_parts
from grouputils.core.raster.geotiff import NODATA, read_geotiff, write_geotiff
from grouputils.core.raster.pyramid import resample_children
from grouputils.core.raster.rasterizer import RasterTiler, initialize_rasterizer
from grouputils.core.raster.statistics import TileStatistics, compute_statistics, zero_when_empty
from grouputils.core.raster.summary import covered_area_m2

__all__ = [
    "NODATA",
    "RasterTiler",
    "initialize_rasterizer",
    "coverage_fraction",
    "disjoint_parts",
    "centroid_pixels",
    "compute_statistics",
    "write_geotiff",
    "read_geotiff",
    "resample_children",
    "pixel_areas_m2",
    "cell_areas_m2",
    "covered_area_m2",
    "zero_when_empty",
    "TileStatistics",
]
