"""Statistics of one staged tile: one band per :class:`~grouputils.core.statistic.Statistic`.

* ``weight_by='count'`` / ``'attribute'``: rows whose centroid lies in this
  tile (``staging_centroid_within_tile``) and that are not flagged
  ``staging_duplicated`` contribute 1 (count) or their attribute value at the
  pixel holding their centroid (``staging_centroid_x/y``). A pixel edge
  belongs to the pixel to its right / below, like morecantile's tile rule.
  Attribute values that are NaN are skipped.
* ``weight_by='coverage'``: the area of the union of all non-duplicate
  polygons in the staged tile (including polygons whose centroid lies in a
  neighbouring tile: staged geometries are whole), inside the pixel, divided
  by the pixel's area (:func:`~grouputils.core.raster.coverage.coverage_fraction`).
  Areas are planar in the tile matrix set's CRS (degrees for
  ``WorldCRS84Quad``); within a pixel of 8.6e-5 degrees the fraction differs
  from a ground-area fraction by less than 1e-5.

Nodata and empty pixels
-----------------------
Nodata is NaN (float32). A pixel is *data* when the dissolved union covers a
positive area of it or it holds a counted centroid; every other pixel is
NaN in every band. A data pixel keeps its values even when they are ~0. Within
data pixels, a statistic whose ``aggregate`` is ``'sum'`` (and coverage) is 0
where nothing contributes; a ``'mean'``, ``'max'`` or ``'min'`` of an
attribute has no value there and is NaN too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from grouputils.core.config import Config
from grouputils.core.errors import InputError
from grouputils.core.raster.coverage import centroid_pixels, coverage_fraction
from grouputils.core.statistic import Statistic

__all__ = ["zero_when_empty", "TileStatistics", "compute_statistics", "needed_columns"]

_NEEDED_COLUMNS: tuple[str, ...] = (
    "staging_centroid_x",
    "staging_centroid_y",
    "staging_centroid_within_tile",
    "staging_duplicated",
)


def zero_when_empty(statistic: Statistic) -> bool:
    """Whether a data pixel with no contribution holds 0 (True) or has no value (False).

    Counts, coverage and sums are 0 where nothing contributes; means, maxima and
    minima of an attribute are undefined there. The pyramid also uses this:
    for the former a nodata child pixel counts as 0.
    """
    return statistic.weight_by == "coverage" or statistic.aggregate == "sum"


def _aggregate(flat_idx: np.ndarray, weights: np.ndarray, how: str, n: int) -> np.ndarray:
    ok = ~np.isnan(weights)
    flat_idx, weights = flat_idx[ok], weights[ok]
    counts = np.bincount(flat_idx, minlength=n)
    if how == "sum":
        return np.bincount(flat_idx, weights=weights, minlength=n)
    if how == "mean":
        sums = np.bincount(flat_idx, weights=weights, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = sums / counts
        out[counts == 0] = np.nan
        return out
    out = np.full(n, -np.inf if how == "max" else np.inf)
    (np.maximum if how == "max" else np.minimum).at(out, flat_idx, weights)
    out[counts == 0] = np.nan
    return out


@dataclass(frozen=True)
class TileStatistics:
    """The bands of one tile and what went into them.

    Attributes
    ----------
    values : ndarray of float32, shape (n_statistics, size, size)
        One band per statistic, NaN where there is no data.
    n_rows : int
        Rows in the staged tile.
    n_counted : int
        Rows counted at their centroid (centroid in the tile, not duplicated).
    n_duplicated : int
        Rows flagged as duplicates (ignored).
    """

    values: np.ndarray
    n_rows: int
    n_counted: int
    n_duplicated: int


def needed_columns(config: Config) -> tuple[str, ...]:
    """The staged columns :func:`compute_statistics` reads for ``config``'s statistics.

    The staging columns it needs and the attributes of attribute-weighted
    statistics; geometry aside. Reading only these halves the reading of a
    staged tile (its input attributes are most of its columns).
    """
    attributes = [s.attribute for s in config.statistics if s.attribute is not None]
    return tuple(dict.fromkeys([*_NEEDED_COLUMNS, *attributes]))


def compute_statistics(
    frame: pd.DataFrame, bounds: Sequence[float], config: Config, path: str | Path | None = None
) -> TileStatistics:
    """Compute every configured statistic for one staged tile.

    Parameters
    ----------
    frame : geopandas.GeoDataFrame
        The staged tile's rows, geometries in the TMS CRS, with the staging
        columns and the attributes named by attribute statistics.
    bounds : sequence of float
        ``(left, bottom, right, top)`` of the tile in the TMS CRS.
    config : Config
        Supplies the statistics (band order) and ``tile_size``.
    path : str or Path, optional
        The staged file, named in errors.

    Returns
    -------
    TileStatistics
    """
    size = config.tile_size
    n = size * size
    where = Path(path) if path is not None else Path("<frame>")
    missing = [c for c in _NEEDED_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(where, f"has no staging columns {missing}; is it a staged tile?")
    dup = frame["staging_duplicated"].to_numpy(dtype=bool)
    counted = frame["staging_centroid_within_tile"].to_numpy(dtype=bool) & ~dup
    row, col = centroid_pixels(
        frame["staging_centroid_x"].to_numpy()[counted],
        frame["staging_centroid_y"].to_numpy()[counted],
        bounds,
        size,
    )
    flat = row * size + col

    # Computed whatever the statistics are: the data mask needs the covered pixels.
    coverage = coverage_fraction(np.asarray(frame.geometry.values)[~dup], bounds, size).ravel()
    data = coverage > 0
    data[flat] = True

    bands = np.full((len(config.statistics), n), np.nan, dtype="f8")
    for b, stat in enumerate(config.statistics):
        if stat.weight_by == "coverage":
            values = coverage
        else:
            if stat.weight_by == "count":
                w = np.ones(len(flat))
            else:
                if stat.attribute not in frame.columns:
                    raise InputError(
                        where, f"has no column {stat.attribute!r} needed by statistic {stat.name!r}"
                    )
                try:
                    w = frame[stat.attribute].to_numpy(dtype="f8", na_value=np.nan)[counted]
                except (TypeError, ValueError):
                    raise InputError(
                        where, f"column {stat.attribute!r} (statistic {stat.name!r}) is not numeric"
                    ) from None
            values = _aggregate(flat, w, stat.aggregate, n)
            if zero_when_empty(stat):
                values = np.where(np.isnan(values), 0.0, values)
        bands[b] = np.where(data, values, np.nan)
    return TileStatistics(
        values=bands.reshape(len(config.statistics), size, size).astype("f4"),
        n_rows=len(frame),
        n_counted=int(counted.sum()),
        n_duplicated=int(dup.sum()),
    )
