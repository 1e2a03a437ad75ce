"""The GeoTIFFs of one zoom level as one lazy, chunked array (xarray + Dask).

:func:`open_mosaic` lays the tiles ``geotiff/<TMS>/<z>/<x>/<y>.tif`` side by
side in the tile matrix set's CRS and returns an :class:`xarray.DataArray`
``(band, y, x)`` backed by a Dask array: nothing is read until a result is
computed, and then each chunk is read (only the tiles it overlaps) by its own
task. Band coordinates are the statistic names; nodata (NaN) stays NaN, so
reductions skip it.

Why not a VRT and ``rioxarray.open_rasterio``?
----------------------------------------------
That works too, but each chunk's task reopens the VRT, whose XML lists every
tile, so the cost per chunk grows with the number of tiles; with a shared
cached handle (rioxarray's default lock) the reads are serialised instead.
Here each task opens only the (small) tiles under its chunk, in its own
handle. Measured in one run of ``benchmarks/bench_mosaic.py --compare-vrt``
(2 shared cores; seconds for both totals, 1 / 2 worker threads): samples
mosaic (114 tiles) at 1024 px, VRT 0.52 / 0.37 s, this module 0.30 / 0.21 s;
one chunk 0.98 / 0.90 s against 0.67 / 0.54 s; a 456-tile mosaic at 1024 px
1.46 / 1.55 s (no gain from a second thread) against 1.29 / 0.77 s. At 64 px
both take ~7.8 s: there Dask's per-task overhead dominates.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import rasterio
import xarray as xr
from affine import Affine
from morecantile import Tile
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from grouputils.core.config import Config
from grouputils.core.errors import InputError
from grouputils.core.raster.geotiff import check_bands
from grouputils.core.tiles import Tiles, tile_from_path
from grouputils.outputs.mosaic.sources import resolve_source

__all__ = ["DEFAULT_CHUNK_PX", "ChunksLike", "open_mosaic"]

DEFAULT_CHUNK_PX: int = 1024
"""Default chunk side in pixels (4 x 4 tiles of 256 px): see ``benchmarks/bench_mosaic.py``."""

ChunksLike = int | None | str | tuple[int, int] | Mapping[str, int | None]


@dataclasses.dataclass(frozen=True)
class _TileMosaic:
    """An array-like ``(band, y, x)`` over tile GeoTIFFs, read window by window.

    Dask calls ``reader[band_slice, y_slice, x_slice]`` once per chunk. Each call
    opens only the tiles under the window, in its own handles, so calls from
    several threads or processes run in parallel. Pickles as plain data.
    """

    paths: tuple[tuple[int, int, str], ...]  # (mosaic tile column, mosaic tile row, file)
    n_tiles: tuple[int, int]  # tile rows, tile columns
    tile_size: int
    n_bands: int
    token: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.n_bands, self.n_tiles[0] * self.tile_size, self.n_tiles[1] * self.tile_size)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype("float32")

    @property
    def ndim(self) -> int:
        return 3

    def __dask_tokenize__(self) -> str:
        return self.token

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        bands, rows, cols = (k.indices(n) for k, n in zip(key, self.shape, strict=True))
        if any(step != 1 for _, _, step in (bands, rows, cols)):
            raise IndexError("the tile mosaic reads contiguous windows only")
        b0, b1, _ = bands
        r0, r1, _ = rows
        c0, c1, _ = cols
        out = np.full((max(0, b1 - b0), max(0, r1 - r0), max(0, c1 - c0)), np.nan, dtype="f4")
        if out.size == 0:
            return out
        lookup = self._lookup
        size = self.tile_size
        indexes = list(range(b0 + 1, b1 + 1))
        for tr in range(r0 // size, (r1 - 1) // size + 1):
            for tc in range(c0 // size, (c1 - 1) // size + 1):
                path = lookup.get((tc, tr))
                if path is None:
                    continue  # no tile here: nodata
                y0, y1 = max(r0, tr * size), min(r1, (tr + 1) * size)
                x0, x1 = max(c0, tc * size), min(c1, (tc + 1) * size)
                window = Window(x0 - tc * size, y0 - tr * size, x1 - x0, y1 - y0)
                try:
                    with rasterio.open(path) as src:
                        if (src.count, src.width, src.height) != (self.n_bands, size, size):
                            raise InputError(
                                path,
                                f"has {src.count} bands of {src.width}x{src.height} pixels; "
                                f"the mosaic expects {self.n_bands} of {size}x{size} "
                                "like its other tiles",
                            )
                        out[:, y0 - r0 : y1 - r0, x0 - c0 : x1 - c0] = src.read(
                            indexes, window=window
                        )
                except RasterioIOError as e:
                    raise InputError(path, f"not a readable GeoTIFF ({e})") from None
        return out

    @property
    def _lookup(self) -> dict[tuple[int, int], str]:
        cached = self.__dict__.get("_lookup_cache")
        if cached is None:
            cached = {(c, r): p for c, r, p in self.paths}
            object.__setattr__(self, "_lookup_cache", cached)
        return cached

    def __getstate__(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)


def _chunks(chunks: ChunksLike, shape: tuple[int, int, int]) -> tuple[int, int, int] | str:
    nb, ny, nx = shape
    if chunks is None:
        return (nb, ny, nx)
    if isinstance(chunks, str):
        if chunks != "auto":
            raise ValueError(
                f"chunks must be an int, (y, x), a dict, None or 'auto', got {chunks!r}"
            )
        return "auto"
    if isinstance(chunks, Mapping):
        unknown = set(chunks) - {"band", "y", "x"}
        if unknown:
            raise ValueError(f"chunks has unknown dimensions {sorted(unknown)}; use band, y, x")

        def side(key: str, n: int) -> int:
            v = chunks.get(key, n)
            return n if v is None or v == -1 else int(v)

        out = (side("band", nb), side("y", ny), side("x", nx))
    elif isinstance(chunks, tuple):
        if len(chunks) != 2:
            raise ValueError(f"chunks as a tuple is (y, x), got {chunks!r}")
        out = (nb, int(chunks[0]), int(chunks[1]))
    else:
        out = (nb, int(chunks), int(chunks))
    if min(out) < 1:
        raise ValueError(f"chunk sides must be positive, got {chunks!r}")
    return (min(out[0], nb), min(out[1], ny), min(out[2], nx))


def open_mosaic(
    source: Config | str | Path,
    z: int | None = None,
    chunks: ChunksLike = DEFAULT_CHUNK_PX,
) -> xr.DataArray:
    """Open the GeoTIFFs of one zoom level as one lazy, Dask-backed mosaic.

    Parameters
    ----------
    source : Config or str or Path
        The run's config, or its output folder (the one holding
        ``geotiff/<TMS>/``; the statistics are then read from the GeoTIFFs,
        see :func:`config_from_outputs`).
    z : int, optional
        Zoom level; default the config's ``z`` (13 in the course), or the
        highest zoom on disk when ``source`` is a folder.
    chunks : int, (int, int), dict, None or 'auto'
        Chunk shape in pixels. An int is the side of square chunks holding
        every band (default 1024 = 4 x 4 tiles of 256 px); ``(y, x)`` a
        rectangle; a dict may name ``band``, ``y`` and ``x`` (``-1`` or None:
        the whole dimension); ``None`` one single chunk; ``'auto'`` lets Dask
        choose (``array.chunk-size``, 128 MiB by default) in multiples of
        whole tiles.

    Returns
    -------
    xarray.DataArray
        float32, dims ``('band', 'y', 'x')``, shape ``(n_statistics, rows *
        tile_size, columns * tile_size)`` over the bounding box of the tiles
        on disk. Coordinates: ``band`` (statistic names), ``weight_by``,
        ``resampling`` and ``unit`` along ``band``, ``y`` and ``x`` (pixel
        centres in the TMS CRS, degrees for ``WorldCRS84Quad``) and
        ``spatial_ref`` (rioxarray's CRS). NaN wherever there is no data,
        including where a tile is missing; ``.rio.crs``,
        ``.rio.transform()`` and ``.rio.nodata`` (NaN) are set.
        Attributes: ``tms``, ``z``, ``tile_size``, ``n_tiles`` (present),
        ``tile_origin`` (column and row of the top-left tile), ``source``
        (the output folder, as given in the config).

    Raises
    ------
    InputError
        No GeoTIFFs at ``z``, or their bands, size or data type do not match
        the config.

    Notes
    -----
    Nothing is read when the mosaic is opened. Each chunk is read by one
    task that opens only the tiles under it; the tiles' internal blocks are
    128 px, so chunks smaller than that decompress the same block several
    times.
    """
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    config, z = resolve_source(source, z)
    tiles = Tiles(config)
    tms = tiles.tms
    paths = tiles.get_filenames_from_dir("geotiff", z=z)
    if not paths:
        raise InputError(
            config.dir_geotiff / config.tms / str(z), "holds no GeoTIFFs; run the pipeline first"
        )
    _check_tile(paths[0], config)
    matrix = tms.matrix(z)
    top_left = matrix.cornerOfOrigin != "bottomLeft"
    found = [tile_from_path(p) for p in paths]
    cols = [t.x for t in found]
    rows = [t.y for t in found]
    col0, col1 = min(cols), max(cols)
    row0, row1 = min(rows), max(rows)
    # mosaic row 0 is the northern-most (top) row of tiles whatever the matrix origin
    # absolute paths: tasks may run later, elsewhere (another working directory or process)
    placed = tuple(
        (t.x - col0, (t.y - row0) if top_left else (row1 - t.y), os.path.abspath(p))
        for t, p in zip(found, paths, strict=True)
    )
    stamp = [(p, os.stat(p).st_mtime_ns) for _, _, p in placed]
    reader = _TileMosaic(
        paths=placed,
        n_tiles=(row1 - row0 + 1, col1 - col0 + 1),
        tile_size=config.tile_size,
        n_bands=len(config.statistics),
        token=dask.base.tokenize(config.tms, z, config.tile_size, stamp),
    )
    shape = reader.shape
    spec = _chunks(chunks, shape)
    if spec == "auto":
        spec = da.core.normalize_chunks(
            ("auto", "auto", "auto"),
            shape,
            dtype=reader.dtype,
            previous_chunks=(shape[0], config.tile_size, config.tile_size),
        )
    data = da.from_array(
        reader,
        chunks=spec,
        asarray=True,
        lock=False,
        fancy=False,
        meta=np.empty((0, 0, 0), dtype="f4"),
        name=f"mosaic-z{z}-" + dask.base.tokenize(reader.token, spec),
    )
    corner = Tile(col0, row0 if top_left else row1, z)
    b = tiles.bounds(corner)
    res = (b.right - b.left) / config.tile_size
    res_y = (b.top - b.bottom) / config.tile_size
    transform = Affine(res, 0.0, b.left, 0.0, -res_y, b.top)
    x = b.left + (np.arange(shape[2]) + 0.5) * res
    y = b.top - (np.arange(shape[1]) + 0.5) * res_y
    stats = config.statistics
    arr = xr.DataArray(
        data,
        dims=("band", "y", "x"),
        coords={
            "band": [s.name for s in stats],
            "weight_by": ("band", [s.weight_by for s in stats]),
            "resampling": ("band", [s.resampling for s in stats]),
            "unit": ("band", [s.unit for s in stats]),
            "y": y,
            "x": x,
        },
        name=f"geotiff_z{z}",
        attrs={
            "tms": config.tms,
            "z": z,
            "tile_size": config.tile_size,
            "n_tiles": len(paths),
            "tile_origin": (col0, row0 if top_left else row1),
            "source": str(config.dir_output),
            "long_name": f"GeoTIFF mosaic of zoom level {z}",
        },
    )
    arr = arr.rio.write_crs(tms.rasterio_crs)
    arr = arr.rio.write_transform(transform)
    arr = arr.rio.write_nodata(np.nan, encoded=True)
    return arr


def _check_tile(path: Path, config: Config) -> None:
    try:
        with rasterio.open(path) as src:
            names, size, dtypes = tuple(src.descriptions), (src.width, src.height), set(src.dtypes)
    except RasterioIOError as e:
        raise InputError(path, f"not a readable GeoTIFF ({e})") from None
    check_bands(path, names, config)
    if size != (config.tile_size, config.tile_size):
        raise InputError(path, f"is {size[0]}x{size[1]} pixels, expected {config.tile_size}")
    if dtypes != {"float32"}:
        raise InputError(path, f"has data types {sorted(dtypes)}, expected float32")
