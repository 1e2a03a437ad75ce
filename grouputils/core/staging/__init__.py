"""Staging: cut input GeoPackages of polygons into tiles of a tile matrix set.

Staging is a *map* step followed by a *reduce* step:

``TileStager.stage(path)`` (map, one input file, any worker)
    refuses a damaged file whole (:mod:`grouputils.core.input_checks`: SQLite
    ``quick_check``, then features read against the layer's count), reads the
    file in chunks (pyogrio, Arrow), assigns the default CRS if the
    file has none (with a warning), repairs invalid polygons, keeps the
    polygonal part of GeometryCollections and drops non-polygons (counted,
    with a warning; :mod:`grouputils.core.polygons`), simplifies in a local
    equal-area projection, computes the ``staging_*`` properties, splits
    polygons at the antimeridian and refuses ones around a pole or fanning out
    over far too many tiles (:mod:`grouputils.core.placement`), assigns every polygon to
    every tile its geometry intersects (and to its centroid's tile), and writes
    one *part* per (input file, tile, chunk) under ``staging-parts/``. Nothing is
    ever appended: every part has its own name, written to a temporary file
    and renamed. Last, a small per-file manifest is renamed into place; it is
    what makes the new parts count ("commit"). Parts of an earlier staging of
    the same file are deleted only after that. A run killed at any point
    therefore leaves either the old or the new staging of the file, never a
    mix, and re-staging a file replaces its rows instead of duplicating them.

``TileStager.finalize()`` (reduce, one tile at a time, any worker)
    gathers the committed parts of a tile, flags duplicates across input files
    (:mod:`grouputils.core.dedup`), sorts rows deterministically and writes the
    final ``staged/<TMS>/<z>/<x>/<y>.gpkg``. The tile records a fingerprint of
    the parts it was made from; the rasterizer refuses a tile whose parts have
    changed since (:class:`~grouputils.core.errors.NotFinalizedError`).

Because every file is written by exactly one task and renamed into place,
this holds for many processes on one machine and for many hosts writing to
one shared file system, with no locks.

Modules, one job each:

:mod:`~grouputils.core.staging.schema`
    the staged layer, its ``staging_*`` columns and the count rule
    (:func:`counted_rows`);
:mod:`~grouputils.core.staging.io`
    reading inputs, writing and reading staged GeoPackages;
:mod:`~grouputils.core.staging.geometry`
    from Arrow batches of an input to tile-tagged rows;
:mod:`~grouputils.core.staging.parts`
    the parts-and-manifests protocol and the tiles' fingerprints;
:mod:`~grouputils.core.staging.finalize`
    the reduce step and the staging summary;
:mod:`~grouputils.core.staging.stager`
    :class:`TileStager`, :class:`StageResult`, :func:`initialize_stager`.
"""

from __future__ import annotations

from grouputils.core.staging.io import read_staged_tile, staged_fingerprint
from grouputils.core.staging.schema import (
    FINALIZE_SETTINGS,
    GPKG_VERSION,
    STAGED_LAYER,
    STAGING_COLUMNS,
    STAGING_SETTINGS,
    counted_rows,
    duplicates_within,
)
from grouputils.core.staging.stager import StageResult, TileStager, initialize_stager

__all__ = [
    "initialize_stager",
    "TileStager",
    "StageResult",
    "read_staged_tile",
    "staged_fingerprint",
    "counted_rows",
    "duplicates_within",
    "STAGING_COLUMNS",
    "STAGED_LAYER",
    "STAGING_SETTINGS",
    "FINALIZE_SETTINGS",
    "GPKG_VERSION",
]
