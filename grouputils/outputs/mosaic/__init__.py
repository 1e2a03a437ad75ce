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

import importlib
from typing import Any

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

# The lazy-arrays notebook (course/source/lazy-arrays) imports the chunk experiment from
# here. It is teaching code (it profiles with grouputils.teaching.profiling), so it lives
# in grouputils.teaching.lazy; these names resolve there on first use only, so importing
# this package never loads the teaching layer. Drop this once the notebook imports
# them from grouputils.teaching.lazy.
_COURSE_NAMES = frozenset({"chunk_experiment", "plot_chunk_experiment", "plot_task_timeline"})


def __getattr__(name: str) -> Any:
    """Resolve the chunk experiment's names, which the course imports from here (PEP 562)."""
    if name in _COURSE_NAMES:
        return getattr(importlib.import_module("grouputils.teaching.lazy"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
