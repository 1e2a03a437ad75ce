"""A run's GeoTIFFs of one zoom level as one lazy, chunked xarray/Dask mosaic, and its totals.

``reader`` opens the mosaic (:func:`open_mosaic`, nothing read until computed),
``sources`` rebuilds a run's config from its GeoTIFFs
(:func:`config_from_outputs`), ``areas`` gives each pixel's ground area
(:func:`pixel_area_m2`), ``totals`` the unique polygons and covered area in one
pass (:func:`mosaic_totals`), and ``enlarge`` writes a larger mosaic from a run's
tiles (:func:`make_large_mosaic`). The chunk-size experiment of the lazy-arrays
lesson is teaching: :mod:`grouputils.teaching.lazy`.
"""

from __future__ import annotations

from grouputils.core.extras import missing_extra

try:  # the 'mosaic' extra, checked first so that the error names it
    import dask  # noqa: F401
    import xarray  # noqa: F401
except ImportError as e:
    raise missing_extra("mosaic", e) from e

from grouputils.outputs.mosaic.areas import pixel_area_m2
from grouputils.outputs.mosaic.enlarge import make_large_mosaic
from grouputils.outputs.mosaic.reader import DEFAULT_CHUNK_PX, ChunksLike, open_mosaic
from grouputils.outputs.mosaic.sources import config_from_outputs
from grouputils.outputs.mosaic.totals import (
    MosaicTotals,
    covered_area_km2,
    mosaic_totals,
    polygon_count,
)

__all__ = [
    "DEFAULT_CHUNK_PX",
    "ChunksLike",
    "MosaicTotals",
    "config_from_outputs",
    "covered_area_km2",
    "make_large_mosaic",
    "mosaic_totals",
    "open_mosaic",
    "pixel_area_m2",
    "polygon_count",
]
