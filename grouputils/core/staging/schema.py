"""What a staged tile holds: its layer, its ``staging_*`` columns, and the count rule.

The names here are shared by staging (which writes them), the rasterizer, the
run and the course helpers (which read them), so each is spelled once.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "STAGED_LAYER",
    "STAGING_COLUMNS",
    "GPKG_VERSION",
    "STAGING_SETTINGS",
    "FINALIZE_SETTINGS",
    "counted_rows",
    "duplicates_within",
]

#: Layer name of a staged tile's GeoPackage.
STAGED_LAYER = "staged"
#: The columns staging adds to every row.
STAGING_COLUMNS = (
    "staging_centroid_x",
    "staging_centroid_y",
    "staging_area",
    "staging_id",
    "staging_filename",
    "staging_tile",
    "staging_centroid_within_tile",
    "staging_duplicated",
)
#: GeoPackage version of staged tiles: 1.2 is what GDAL 3.6 (QGIS LTR) writes
#: itself and opens without a version warning (newer GDAL defaults to 1.4).
GPKG_VERSION = "1.2"
#: Settings that change what staging writes (``chunk_size`` does not, by design).
STAGING_SETTINGS = ("tms", "z", "input_layer", "default_crs", "simplify_tolerance")
#: Settings that change what finalizing writes.
FINALIZE_SETTINGS = STAGING_SETTINGS + ("dedup_overlap",)

#: Layer metadata keys of a staged tile: the parts fingerprint and the tile.
META_KEY = "grouputils_parts"
TILE_META_KEY = "grouputils_tile"
# hidden columns of staging parts, dropped from staged tiles
SOURCE = "_source"  # the input's key (sort key and dedup rank)
FID = "_fid"  # the feature id in the input (sort key)
GTYPE = "_gtype"  # shapely geometry type id (the GeoPackage's declared geometry type)
TILE_X = "_tile_x"  # tile column and row (parts are split by tile)
TILE_Y = "_tile_y"


def counted_rows(within: npt.ArrayLike, duplicated: npt.ArrayLike) -> np.ndarray:
    """The rows that count a polygon once: centroid in the tile and not a re-detection.

    A polygon crossing tile edges is written to every tile it touches, but only
    the row in the tile holding its centroid has ``staging_centroid_within_tile``;
    a polygon detected again in an overlapping scene has ``staging_duplicated``
    on its later copies. Counting the rows where the first is true and the
    second false counts every ground polygon exactly once.

    Parameters
    ----------
    within : array_like of bool
        ``staging_centroid_within_tile`` by row.
    duplicated : array_like of bool
        ``staging_duplicated`` by row.

    Returns
    -------
    ndarray of bool
        By row: counted.
    """
    return np.asarray(within, dtype=bool) & ~np.asarray(duplicated, dtype=bool)


def duplicates_within(within: npt.ArrayLike, duplicated: npt.ArrayLike) -> np.ndarray:
    """The rows :func:`counted_rows` leaves out as re-detections: centroid in the tile, flagged.

    Over all tiles, their number is the number of duplicate detections
    flagged (each ground polygon's later copies counted once each).
    """
    return np.asarray(within, dtype=bool) & np.asarray(duplicated, dtype=bool)
