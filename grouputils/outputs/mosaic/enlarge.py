"""A larger mosaic for experiments: a run's tiles repeated on a grid, each re-georeferenced."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import rasterio
from morecantile import Tile
from tqdm.auto import tqdm

from grouputils.core.atomic import atomic_path
from grouputils.core.config import Config
from grouputils.core.errors import InputError, OutputError
from grouputils.core.raster.tags import COPY_OF_TAG, TILE_TAG
from grouputils.core.tiles import Tiles, tile_from_path, tile_to_str
from grouputils.outputs.mosaic.sources import resolve_source

__all__ = ["make_large_mosaic"]

logger = logging.getLogger(__name__)


def make_large_mosaic(
    source: Config | str | Path,
    dir_output: str | Path,
    repeat: tuple[int, int] = (2, 2),
    *,
    z: int | None = None,
    progress: bool = False,
) -> Config:
    """Write a larger mosaic: the tiles of one zoom level repeated on a grid.

    The block of tiles of ``source`` (its bounding box in tiles) is copied
    ``repeat[0]`` times southwards and ``repeat[1]`` times eastwards. Each copy
    is a byte copy of the GeoTIFF whose georeferencing and tile tag are then
    rewritten for its new tile, so the result is a valid zoom level that
    :func:`open_mosaic` (or any GIS) reads. Used to make the chunk-size
    experiment big enough when a run's own mosaic is small.

    Parameters
    ----------
    source : Config or str or Path
        A run's config or output folder.
    dir_output : str or Path
        New output folder (tiles go to ``geotiff/<TMS>/<z>/``); it must not
        be the source's folder.
    repeat : (int, int)
        Copies in rows (south) and columns (east). ``(1, 1)`` copies as is.
    z : int, optional
        Zoom level (default the source's staging zoom).
    progress : bool
        Show a progress bar.

    Returns
    -------
    Config
        The source's config with ``dir_output`` replaced; pass it to
        :func:`open_mosaic`. The mosaic is ``repeat[0] * repeat[1]`` times
        larger (in pixels, data and files).

    Raises
    ------
    OutputError
        ``dir_output`` is the source folder, or the copies would fall off the
        tile matrix.
    """
    config, z = resolve_source(source, z)
    dest = Path(dir_output).expanduser()
    if dest.resolve() == config.dir_output.resolve():
        raise OutputError(dest, "is the source folder; choose a new folder for the larger mosaic")
    ry, rx = (int(v) for v in repeat)
    if ry < 1 or rx < 1:
        raise ValueError(f"repeat must be two positive integers, got {repeat!r}")
    tiles = Tiles(config)
    paths = tiles.get_filenames_from_dir("geotiff", z=z)
    if not paths:
        raise InputError(
            config.dir_geotiff / config.tms / str(z), "holds no GeoTIFFs; run the pipeline first"
        )
    found = [tile_from_path(p) for p in paths]
    col0 = min(t.x for t in found)
    row0 = min(t.y for t in found)
    width = max(t.x for t in found) - col0 + 1
    height = max(t.y for t in found) - row0 + 1
    matrix = tiles.tms.matrix(z)
    if row0 + ry * height > matrix.matrixHeight or col0 + rx * width > matrix.matrixWidth:
        raise OutputError(
            dest,
            f"{ry} x {rx} copies of a {height} x {width}-tile block do not fit the tile matrix",
        )
    out_config = config.replace(dir_output=dest)
    out_tiles = Tiles(out_config)
    jobs = [
        (p, t, i, j)
        for i in range(ry)
        for j in range(rx)
        for p, t in zip(paths, found, strict=True)
    ]
    for path, tile, i, j in tqdm(jobs, desc="copy tiles", unit="tile", disable=not progress):
        new = Tile(tile.x + j * width, tile.y + i * height, z)
        target = out_tiles.path("geotiff", new)
        left, bottom, right, top = out_tiles.bounds(new)
        with atomic_path(target) as tmp:
            shutil.copyfile(path, tmp)
            # new georeferencing in place: the copy stays a valid GeoTIFF (tags may
            # move past the COG layout; these copies are benchmark inputs only)
            with rasterio.open(tmp, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dst:
                dst.transform = rasterio.transform.from_bounds(
                    left, bottom, right, top, dst.width, dst.height
                )
                dst.update_tags(
                    **{TILE_TAG: tile_to_str(new), COPY_OF_TAG: tile_to_str(tile)}
                )
    logger.info("wrote %d tiles (%d x %d copies of %d) to %s", len(jobs), ry, rx, len(paths), dest)
    return out_config
