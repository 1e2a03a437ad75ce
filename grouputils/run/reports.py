"""End-of-run reports computed from the run state (no output is re-opened).

:func:`run_totals` gives the figures of ``run-summary.json``;
:func:`raster_summary` the table of ``rasterization-summary.csv`` (the same
columns and values as :meth:`grouputils.core.rasterize.RasterTiler.summary`, which
reads them back from the GeoTIFFs' tags).
"""

from __future__ import annotations

from typing import Any, TypedDict

import pandas as pd

from grouputils.core.config import Config
from grouputils.core.raster.tags import SUMMARY_BAND_FIELDS, SUMMARY_FIELDS
from grouputils.run.state import RunState

__all__ = ["RunSummary", "RunTotals", "run_totals", "raster_summary"]

#: Summary fields of a GeoTIFF row (the ``GROUPUTILS_*`` tags) and band columns, in column order.
BAND_FIELDS = tuple(SUMMARY_BAND_FIELDS)


class RunTotals(TypedDict):
    """The figures of a recorded run (see :func:`run_totals`)."""

    input_files: int
    polygons_read: int
    unique_polygons: int
    duplicates_flagged: int
    polygons_repaired: int
    polygons_dropped: int
    covered_area_km2: float
    staged_tiles: int
    geotiff_tiles_per_zoom: dict[int, int]


class RunSummary(RunTotals):
    """``run-summary.json``: the totals, then how the run went."""

    executor: str
    workers: int
    blocks: int
    executor_startup_s: float
    wall_s: float
    steps: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    stac_catalog: str | None


def run_totals(state: RunState, config: Config) -> RunTotals:
    """Polygons, duplicates, covered area and tiles per zoom level of the recorded run.

    Parameters
    ----------
    state : RunState
        The run's state.
    config : Config
        Its settings (zoom level, statistics).

    Returns
    -------
    RunTotals
        ``input_files``, ``polygons_read``, ``unique_polygons``,
        ``duplicates_flagged`` (duplicates counted at their centroid's tile),
        ``polygons_repaired``, ``polygons_dropped``, ``covered_area_km2``
        (NaN without a coverage statistic), ``staged_tiles`` and
        ``geotiff_tiles_per_zoom``.
    """
    inputs = state.input_totals()
    has_coverage = any(s.weight_by == "coverage" for s in config.statistics)
    per_zoom = state.zooms("geotiff")
    return {
        "input_files": inputs["files"],
        "polygons_read": inputs["read"],
        "unique_polygons": int(state.info_total("geotiff", "n_counted", z=config.z)),
        "duplicates_flagged": int(state.info_total("staged", "duplicates_within")),
        "polygons_repaired": inputs["repaired"],
        "polygons_dropped": inputs["dropped"],
        "covered_area_km2": state.info_total("geotiff", "covered_m2", z=config.z) / 1e6
        if has_coverage
        else float("nan"),
        "staged_tiles": state.count("staged"),
        "geotiff_tiles_per_zoom": {z: per_zoom.get(z, 0) for z in range(config.z, -1, -1)},
    }


def raster_summary(state: RunState, config: Config) -> pd.DataFrame:
    """One row per recorded GeoTIFF, as :meth:`.RasterTiler.summary` gives it.

    Parameters
    ----------
    state : RunState
        The run's state.
    config : Config
        Its settings (statistic names).

    Returns
    -------
    pandas.DataFrame
        Columns ``tile, z, x, y, path, kind, n_rows, n_counted, n_duplicated,
        n_children, n_data_pixels`` then ``<statistic>_min/_max/_mean/_sum``;
        sorted by z (highest first), x, y.
    """
    from grouputils.core.tiles import Tile, tile_to_str

    band_cols = [f"{n}_{b}" for n in config.statistic_names for b in BAND_FIELDS]
    columns = ["z", "x", "y", "path", *SUMMARY_FIELDS, *band_cols]
    chunks = []
    for rows in state.info_columns("geotiff", [*SUMMARY_FIELDS, *band_cols]):
        chunk = pd.DataFrame.from_records(rows, columns=columns)
        chunk.insert(
            0,
            "tile",
            [tile_to_str(Tile(x, y, z)) for z, x, y in zip(chunk.z, chunk.x, chunk.y, strict=True)],
        )
        chunks.append(chunk)
    if not chunks:
        return pd.DataFrame(columns=["tile", *columns])
    frame = pd.concat(chunks, ignore_index=True)
    for key in SUMMARY_FIELDS[1:]:
        frame[key] = frame[key].astype("Int64")
    for col in band_cols:  # a statistic without data pixels is NaN
        frame[col] = frame[col].astype("float64")
    return frame
