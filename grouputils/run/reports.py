"""End-of-run reports computed from the run state (no output is re-opened).

:func:`run_totals` gives the figures of ``run-summary.json``;
:func:`raster_summary` the table of ``rasterization-summary.csv`` (the same
columns and values as :meth:`grouputils.core.rasterize.RasterTiler.summary`, which
reads them back from the GeoTIFFs' tags).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from grouputils.core.config import Config
from grouputils.core.raster.tags import SUMMARY_BAND_FIELDS, SUMMARY_FIELDS
from grouputils.run.state import RunState

__all__ = ["run_totals", "raster_summary"]

#: Summary fields of a GeoTIFF row (the ``GROUPUTILS_*`` tags) and band columns, in column order.
BAND_FIELDS = tuple(SUMMARY_BAND_FIELDS)


def run_totals(state: RunState, config: Config) -> dict[str, Any]:
    """Polygons, duplicates, covered area and tiles per zoom level of the recorded run.

    Parameters
    ----------
    state : RunState
        The run's state.
    config : Config
        Its settings (zoom level, statistics).

    Returns
    -------
    dict
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
    """One row per recorded GeoTIFF, as :meth:`~grouputils.core.rasterize.RasterTiler.summary` gives it.

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
    rows = []
    for (z, x, y), row in state.rows("geotiff").items():
        rec: dict[str, Any] = {
            "tile": tile_to_str(Tile(x, y, z)),
            "z": z,
            "x": x,
            "y": y,
            "path": row.files[0][0],
        }
        for key in SUMMARY_FIELDS:
            rec[key] = row.info.get(key)
        for col in band_cols:
            v = row.info.get(col)
            rec[col] = float("nan") if v is None else v
        rows.append(rec)
    frame = pd.DataFrame(rows, columns=["tile", "z", "x", "y", "path", *SUMMARY_FIELDS, *band_cols])
    if len(frame):
        frame = frame.sort_values(["z", "x", "y"], ascending=[False, True, True], ignore_index=True)
        for key in SUMMARY_FIELDS[1:]:
            frame[key] = frame[key].astype("Int64")
    return frame
