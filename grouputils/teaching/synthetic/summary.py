"""Per-file size, extent and tile coverage of a folder of IWP GeoPackages.

What ``grouputils summary`` prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import shapely

from grouputils.core.errors import InputError
from grouputils.core.placement import assign_tiles
from grouputils.teaching.synthetic.locate import sample_files

if TYPE_CHECKING:
    from grouputils.core.tiles import Tiles

__all__ = ["summarize"]


def _tiles_touched(geoms_lonlat: np.ndarray, tiles: Tiles, z: int) -> set[tuple[int, int]]:
    """Tiles ``(column, row)`` at zoom ``z`` that at least one polygon intersects."""
    _, cols, rows, _ = assign_tiles(tiles, geoms_lonlat, z=z)
    return set(zip(cols.tolist(), rows.tolist(), strict=True))


def summarize(
    directory: str | Path | None = None, *, tms: str = "WorldCRS84Quad", z: int = 13
) -> pd.DataFrame:
    """Per-file size, extent and tile coverage of a folder of IWP GeoPackages.

    Parameters
    ----------
    directory : str or Path, optional
        Folder of ``*.gpkg`` files; default
        :func:`~grouputils.teaching.synthetic.locate.sample_dir`.
    tms : str
        Tile matrix set whose tiles are counted. Default ``'WorldCRS84Quad'``.
    z : int
        Zoom level of the tiles counted. Default 13.

    Returns
    -------
    pandas.DataFrame
        One row per file, sorted by name, then a row ``file='total'``.
        Columns: ``file`` (str), ``features`` (int), ``mb`` (size on disk,
        10^6 bytes), ``west``, ``south``, ``east``, ``north`` (bounds in the
        TMS CRS, degrees for WorldCRS84Quad), ``tiles`` (number of tiles the
        polygons intersect; the total counts distinct tiles over all files).

    Notes
    -----
    Reads every geometry and reprojects it, so a course-scale folder takes
    a minute or so.
    """
    import pyogrio
    import pyproj

    from grouputils.core.config import Config
    from grouputils.core.tiles import Tiles

    paths = sample_files(directory)
    tiles = Tiles(Config(dir_input=paths[0].parent, tms=tms, z=z))
    crs = pyproj.CRS.from_user_input(tiles.tms.crs.srs)  # the TMS's own CRS (CRS84: lon, lat)
    rows = []
    everything: set[tuple[int, int]] = set()
    for path in paths:
        try:
            frame = pyogrio.read_dataframe(path, columns=[], use_arrow=True)
        except Exception as e:  # pyogrio raises several error types
            raise InputError(path, f"cannot be read as a GeoPackage layer ({e})") from e
        if frame.crs is None:
            raise InputError(path, "has no CRS")
        geoms = frame.to_crs(crs).geometry.to_numpy()
        touched = _tiles_touched(geoms, tiles, z) if len(geoms) else set()
        everything |= touched
        b = shapely.total_bounds(geoms) if len(geoms) else np.full(4, np.nan)
        rows.append(
            {
                "file": path.name,
                "features": len(frame),
                "mb": path.stat().st_size / 1e6,
                "west": b[0],
                "south": b[1],
                "east": b[2],
                "north": b[3],
                "tiles": len(touched),
            }
        )
    table = pd.DataFrame(rows)
    total = {
        "file": "total",
        "features": int(table["features"].sum()),
        "mb": float(table["mb"].sum()),
        "west": table["west"].min(),
        "south": table["south"].min(),
        "east": table["east"].max(),
        "north": table["north"].max(),
        "tiles": len(everything),
    }
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)
