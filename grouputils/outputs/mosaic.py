"""The GeoTIFFs of one zoom level as one lazy, chunked array (xarray + Dask).

:func:`open_mosaic` lays the tiles ``geotiff/<TMS>/<z>/<x>/<y>.tif`` side by
side in the tile matrix set's CRS and returns an :class:`xarray.DataArray`
``(band, y, x)`` backed by a Dask array: nothing is read until a result is
computed, and then each chunk is read (only the tiles it overlaps) by its own
task. Band coordinates are the statistic names; nodata (NaN) stays NaN, so
reductions skip it.

From the mosaic, :func:`mosaic_totals` computes the run's totals in one pass:
unique polygons (the sum of the count band) and the covered area (coverage x
the ground area of each pixel, from :func:`pixel_area_m2`).

The chunk-size experiment
-------------------------
:func:`chunk_experiment` times that reduction at several chunk sizes and Dask
worker counts (threads), with Dask's :class:`~dask.diagnostics.Profiler`
(tasks) and :func:`grouputils.profile_resources` (CPU, memory), and returns a
tidy table; :func:`plot_chunk_experiment` draws it. Small chunks make many
tasks, each paying a fixed cost (a scheduler step, opening a GeoTIFF,
decompressing a whole internal block for a few pixels of it); large chunks
make few tasks, so workers sit idle and every chunk's temporaries are large.
:func:`make_large_mosaic` writes a bigger mosaic (copies of a run's tiles, each
re-georeferenced to a new tile position, so it is a valid tile pyramid level)
when a run's own mosaic is too small to show both effects.

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
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import psutil
import pyproj
import rasterio
from morecantile import Tile
from rasterio.errors import RasterioIOError
from rasterio.windows import Window
from tqdm.auto import tqdm

from grouputils.core.atomic import atomic_path
from grouputils.core.config import Config, Statistic
from grouputils.core.errors import ConfigError, InputError, OutputError
from grouputils.core.extras import missing_extra
from grouputils.core.rasterize import cell_areas_m2
from grouputils.core.tiles import Tiles, tile_from_path, tile_to_str

try:  # the 'mosaic' extra
    import dask
    import dask.array as da
    import xarray as xr
    from affine import Affine
except ImportError as e:
    raise missing_extra("mosaic", e) from e

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "DEFAULT_CHUNK_PX",
    "MosaicTotals",
    "open_mosaic",
    "config_from_outputs",
    "pixel_area_m2",
    "polygon_count",
    "covered_area_km2",
    "mosaic_totals",
    "chunk_experiment",
    "plot_chunk_experiment",
    "plot_task_timeline",
    "make_large_mosaic",
]

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_PX: int = 1024
"""Default chunk side in pixels (4 x 4 tiles of 256 px): see ``benchmarks/bench_mosaic.py``."""

ChunksLike = int | None | str | tuple[int, int] | Mapping[str, int | None]


# ============================================================================ sources
def config_from_outputs(dir_output: str | Path, tms: str | None = None) -> Config:
    """Rebuild the config of a run from the GeoTIFFs it wrote.

    Parameters
    ----------
    dir_output : str or Path
        A pipeline output folder (the one holding ``geotiff/``).
    tms : str, optional
        The tile matrix set id; needed only when ``geotiff/`` holds several.

    Returns
    -------
    Config
        ``dir_output`` and ``dir_input`` set to ``dir_output`` (inputs are not
        read), ``tms``, the highest zoom level on disk as ``z``,
        ``tile_size``, and the statistics (name, ``weight_by``, ``aggregate``,
        ``resampling``, unit) from the bands' metadata. Palettes and value
        ranges are not stored in GeoTIFFs and take their defaults.

    Raises
    ------
    InputError
        No ``geotiff/<TMS>/<z>/`` folder with GeoTIFFs, several TMS folders and
        no ``tms``, or a GeoTIFF without the band metadata grouputils writes.
    """
    dir_output = Path(dir_output).expanduser()
    root = dir_output / "geotiff"
    if tms is None:
        found = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
        if not found:
            raise InputError(
                root, "holds no GeoTIFF pyramid; run the pipeline (or rasterize) first"
            )
        if len(found) > 1:
            raise InputError(root, f"holds several tile matrix sets {found}; pass tms=")
        tms = found[0]
    zooms = (
        sorted(
            (int(d.name) for d in (root / tms).iterdir() if d.is_dir() and d.name.isdigit()),
            reverse=True,
        )
        if (root / tms).is_dir()
        else []
    )
    probe = Tiles(Config(dir_input=dir_output, dir_output=dir_output, tms=tms))
    first = next((p for z in zooms for p in probe.get_filenames_from_dir("geotiff", z=z)), None)
    if first is None:
        raise InputError(root / tms, "holds no GeoTIFFs; run the pipeline (or rasterize) first")
    z = tile_from_path(first).z
    try:
        with rasterio.open(first) as src:
            names = src.descriptions
            band_tags = [src.tags(b) for b in range(1, src.count + 1)]
            size = src.width
    except RasterioIOError as e:
        raise InputError(first, f"not a readable GeoTIFF ({e})") from None
    stats = []
    for name, tags in zip(names, band_tags):
        if not name or "STATISTIC_WEIGHT_BY" not in tags:
            raise InputError(
                first, "bands carry no statistic names and rules; was it written by grouputils?"
            )
        stats.append(
            Statistic(
                name=name,
                weight_by=tags["STATISTIC_WEIGHT_BY"],
                aggregate=tags.get("STATISTIC_AGGREGATE", "sum"),
                resampling=tags.get("STATISTIC_RESAMPLING", "sum"),
                unit=tags.get("UNIT", ""),
            )
        )
    return Config(
        dir_input=dir_output,
        dir_output=dir_output,
        tms=tms,
        z=z,
        tile_size=size,
        statistics=tuple(stats),
    )


def _resolve(source: Config | str | Path, z: int | None) -> tuple[Config, int]:
    if isinstance(source, Config):
        config = source
        return config, config.z if z is None else int(z)
    config = config_from_outputs(source)
    return (config, config.z) if z is None else (config.replace(z=int(z)), int(z))


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
        bands, rows, cols = (k.indices(n) for k, n in zip(key, self.shape))
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
                                f"has {src.count} bands of {src.width}x{src.height} pixels; the mosaic "
                                f"expects {self.n_bands} of {size}x{size} like its other tiles",
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

    config, z = _resolve(source, z)
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
        for t, p in zip(found, paths)
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
    if names != config.statistic_names:
        raise InputError(
            path,
            f"bands are {list(names)} but the config's statistics are {list(config.statistic_names)}",
        )
    if size != (config.tile_size, config.tile_size):
        raise InputError(path, f"is {size[0]}x{size[1]} pixels, expected {config.tile_size}")
    if dtypes != {"float32"}:
        raise InputError(path, f"has data types {sorted(dtypes)}, expected float32")


# ============================================================================ areas
def _authalic_q(lat_deg: np.ndarray, e: float) -> np.ndarray:
    """The authalic function q(phi); a zone's area per radian of longitude is a^2 (q2 - q1) / 2."""
    s = np.sin(np.radians(lat_deg))
    return (1.0 - e * e) * (s / (1.0 - e * e * s * s) + np.arctanh(e * s) / e)


def pixel_area_m2(mosaic: xr.DataArray) -> xr.DataArray:
    """Ground area of the mosaic's pixels on the CRS's ellipsoid, in square metres.

    Parameters
    ----------
    mosaic : xarray.DataArray
        From :func:`open_mosaic` (any array with ``.rio`` CRS and transform).

    Returns
    -------
    xarray.DataArray
        float64. For a geographic CRS (``WorldCRS84Quad``) a pixel's area
        depends only on its row: dims ``('y',)``, computed exactly as the
        area of the ellipsoidal quadrangle between the pixel's meridians and
        parallels, ``a^2/2 * dlon * (q(lat_top) - q(lat_bottom))`` with the
        authalic function ``q``. For a projected CRS: dims ``('y', 'x')``, a
        lazy Dask array chunked like the mosaic, each pixel's four corners
        projected to a Lambert azimuthal equal-area projection centred on its
        chunk (the method of :func:`grouputils.core.rasterize.pixel_areas_m2`).
        Broadcasting against the mosaic multiplies each pixel by its area.
    """
    crs = pyproj.CRS.from_user_input(mosaic.rio.crs)
    transform = mosaic.rio.transform(recalc=True)
    ny, nx = mosaic.sizes["y"], mosaic.sizes["x"]
    if crs.is_geographic and all(ax.unit_name == "degree" for ax in crs.axis_info):
        ell = crs.ellipsoid
        a = ell.semi_major_metre
        f = 1.0 / ell.inverse_flattening if ell.inverse_flattening else 0.0
        e = math.sqrt(f * (2.0 - f))
        edges = transform.f + np.arange(ny + 1) * transform.e  # latitude of row edges
        dlon = math.radians(abs(transform.a))
        if e == 0.0:
            zone = np.abs(np.diff(np.sin(np.radians(edges))))
        else:
            zone = np.abs(np.diff(_authalic_q(edges, e))) / 2.0
        area = a * a * dlon * zone
        return xr.DataArray(
            area,
            dims=("y",),
            coords={"y": mosaic["y"].values},
            name="pixel_area_m2",
            attrs={"units": "m2"},
        )
    ychunks = mosaic.chunksizes.get("y", (ny,)) if mosaic.chunks else (ny,)
    xchunks = mosaic.chunksizes.get("x", (nx,)) if mosaic.chunks else (nx,)
    template = da.zeros((ny, nx), chunks=(ychunks, xchunks), dtype="u1")
    areas = da.map_blocks(
        _projected_block_areas,
        template,
        dtype="f8",
        transform=tuple(transform)[:6],
        wkt=crs.to_wkt(),
    )
    return xr.DataArray(
        areas,
        dims=("y", "x"),
        coords={"y": mosaic["y"].values, "x": mosaic["x"].values},
        name="pixel_area_m2",
        attrs={"units": "m2"},
    )


def _projected_block_areas(
    block: np.ndarray, transform: tuple[float, ...], wkt: str, block_info: dict | None = None
) -> np.ndarray:
    (r0, r1), (c0, c1) = block_info[0]["array-location"]
    t = Affine(*transform)
    cols, rows = np.meshgrid(np.arange(c0, c1 + 1), np.arange(r0, r1 + 1))
    gx, gy = t * (cols.astype("f8"), rows.astype("f8"))
    return cell_areas_m2(
        gx, gy, pyproj.CRS.from_wkt(wkt), centre=(float(gx.mean()), float(gy.mean()))
    )


# ============================================================================ totals
@dataclasses.dataclass(frozen=True)
class MosaicTotals:
    """Totals of a run computed from its GeoTIFF mosaic.

    Attributes
    ----------
    unique_polygons : int
        Sum of the count band: each unique polygon is counted once, at the
        pixel holding its centroid.
    covered_area_km2 : float
        Area covered by the union of the polygons, in square kilometres.
    """

    unique_polygons: int
    covered_area_km2: float


def _band(mosaic: xr.DataArray, weight_by: str, statistic: str | None) -> xr.DataArray:
    if statistic is not None:
        if statistic not in mosaic["band"].values:
            raise ConfigError(f"no band named {statistic!r}; have {list(mosaic['band'].values)}")
        return mosaic.sel(band=statistic)
    if "weight_by" not in mosaic.coords:
        raise ConfigError("the mosaic has no weight_by coordinate; pass statistic=")
    hits = [
        str(b) for b, w in zip(mosaic["band"].values, mosaic["weight_by"].values) if w == weight_by
    ]
    if not hits:
        raise ConfigError(f"no band with weight_by={weight_by!r}; pass statistic=")
    return mosaic.sel(band=hits[0])


def polygon_count(mosaic: xr.DataArray, statistic: str | None = None) -> xr.DataArray:
    """Lazy total of the count band: the number of unique polygons.

    Parameters
    ----------
    mosaic : xarray.DataArray
        From :func:`open_mosaic` at the staging zoom level.
    statistic : str, optional
        Band to sum; default the first band with ``weight_by='count'``.

    Returns
    -------
    xarray.DataArray
        0-d float64, lazy (call ``.compute()``); NaN pixels are skipped.
        Summed in float64, so the total is an exact integer.
    """
    return _band(mosaic, "count", statistic).astype("f8").sum()


def covered_area_km2(mosaic: xr.DataArray, statistic: str | None = None) -> xr.DataArray:
    """Lazy covered area: sum over pixels of coverage x pixel ground area, in km².

    Parameters
    ----------
    mosaic : xarray.DataArray
        From :func:`open_mosaic` at the staging zoom level.
    statistic : str, optional
        Coverage band (fraction 0..1); default the first with ``weight_by='coverage'``.

    Returns
    -------
    xarray.DataArray
        0-d float64, lazy. The pixel areas are those of :func:`pixel_area_m2`.
    """
    coverage = _band(mosaic, "coverage", statistic)
    return (coverage * pixel_area_m2(mosaic)).sum() / 1e6


def mosaic_totals(
    mosaic: xr.DataArray, *, scheduler: str = "threads", num_workers: int | None = None
) -> MosaicTotals:
    """Compute unique polygons and covered area in one pass over the mosaic.

    Parameters
    ----------
    mosaic : xarray.DataArray
        From :func:`open_mosaic`.
    scheduler : str
        Dask scheduler (``'threads'``, ``'processes'``, ``'synchronous'``).
    num_workers : int, optional
        Dask workers; default :func:`grouputils.usable_cores` (which honours
        an instructor's cap), not every core of the machine.

    Returns
    -------
    MosaicTotals
        Each chunk is read once for both totals.
    """
    from grouputils.run.parallel import usable_cores

    count, area = dask.compute(
        polygon_count(mosaic),
        covered_area_km2(mosaic),
        scheduler=scheduler,
        num_workers=usable_cores() if num_workers is None else num_workers,
    )
    n = float(count)
    if not math.isclose(n, round(n), abs_tol=1e-6):
        raise ValueError(f"the count band sums to {n}, not a whole number of polygons")
    return MosaicTotals(unique_polygons=int(round(n)), covered_area_km2=float(area))


# ============================================================================ experiment
def chunk_experiment(
    source: Config | str | Path | xr.DataArray,
    chunk_sizes: Sequence[int | None] = (64, 128, 256, 512, 1024, 2048, None),
    workers: Sequence[int] | None = None,
    *,
    z: int | None = None,
    repeats: int = 1,
    interval: float = 0.05,
    warm_up: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """Time :func:`mosaic_totals` at several chunk sizes and worker counts.

    Every (chunk size, workers) pair reopens the mosaic with that chunk size
    and computes both totals with Dask's threaded scheduler, under Dask's
    :class:`~dask.diagnostics.Profiler` (one record per task) and
    :func:`grouputils.profile_resources` (CPU and memory of this process).

    Parameters
    ----------
    source : Config, str, Path or xarray.DataArray
        What :func:`open_mosaic` accepts, or an opened mosaic (it is rechunked
        by reopening its files, so its own chunks do not matter).
    chunk_sizes : sequence of int or None
        Square chunk sides in pixels; ``None`` is one chunk (the whole mosaic).
    workers : sequence of int, optional
        Dask worker threads (``num_workers``); default 1 and
        :func:`grouputils.usable_cores`.
    z : int, optional
        Zoom level (see :func:`open_mosaic`).
    repeats : int
        Timed runs per pair; the order of the pairs is shuffled with a fixed
        seed on every repeat, so slow drifts of a shared machine do not line up
        with one chunk size.
    interval : float
        Sampling interval of the resource profile in seconds.
    warm_up : bool
        Compute once, untimed, first: the first read of each file pays the
        disk, later ones the page cache.
    progress : bool
        Show a progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per timed run, sorted by ``workers``, ``chunk_px``, ``repeat``:
        ``chunk_px`` (chunk side; the larger side of the mosaic for one
        chunk), ``chunk_label`` (``'256'``, ... or ``'one chunk'``),
        ``chunk_mb`` (MB of one full chunk, all bands, float32),
        ``n_chunks``, ``workers``, ``repeat``, ``seconds`` (wall time of the
        compute), ``n_tasks`` (Dask tasks run), ``task_s`` (time summed over
        tasks), ``overhead_s`` (``seconds * workers - task_s``: worker time
        not spent in a task, i.e. idle or scheduling), ``cpu_cores`` (mean
        cores busy), ``peak_rss_mb`` (peak resident memory of this process),
        ``extra_rss_mb`` (that peak minus the memory just before the run: what
        the computation itself needed),
        ``unique_polygons``, ``covered_area_km2`` (identical in every row:
        chunking never changes the answer).
    """
    from dask.diagnostics import Profiler

    from grouputils.teaching.profiling import profile_resources

    if isinstance(source, xr.DataArray):
        z = int(source.attrs["z"]) if z is None else z
        source = Path(source.attrs["source"])
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    if workers is None:
        from grouputils.run.parallel import usable_cores

        workers = sorted({1, usable_cores()})
    workers = [int(w) for w in workers]
    if not workers or min(workers) < 1:
        raise ValueError(f"workers must be positive integers, got {workers}")
    pairs = [(c, w) for c in chunk_sizes for w in workers]
    if warm_up:
        mosaic_totals(open_mosaic(source, z, chunks=DEFAULT_CHUNK_PX), num_workers=max(workers))
    rng = np.random.default_rng(0)
    rows = []
    bar = tqdm(total=len(pairs) * repeats, desc="chunk experiment", disable=not progress)
    for rep in range(repeats):
        for k in rng.permutation(len(pairs)):
            chunk, w = pairs[k]
            mosaic = open_mosaic(source, z, chunks=chunk)
            data = mosaic.data
            _, ny, nx = mosaic.shape
            side = max(ny, nx) if chunk is None else int(chunk)
            n_chunks = int(np.prod(data.numblocks))
            chunk_mb = float(np.prod([c[0] for c in data.chunks])) * 4 / 1e6
            count, area = polygon_count(mosaic), covered_area_km2(mosaic)
            rss_before = psutil.Process().memory_info().rss
            with Profiler() as tasks, profile_resources(interval) as res:
                t0 = time.perf_counter()
                n, a = dask.compute(count, area, scheduler="threads", num_workers=w)
                seconds = time.perf_counter() - t0
            task_s = float(sum(r.end_time - r.start_time for r in tasks.results))
            rows.append(
                {
                    "chunk_px": side,
                    "chunk_label": "one chunk" if chunk is None else str(int(chunk)),
                    "chunk_mb": chunk_mb,
                    "n_chunks": n_chunks,
                    "workers": w,
                    "repeat": rep,
                    "seconds": seconds,
                    "n_tasks": len(tasks.results),
                    "task_s": task_s,
                    "overhead_s": max(0.0, seconds * w - task_s),
                    "cpu_cores": res.summary()["mean_cpu_cores"],
                    "peak_rss_mb": res.peak_rss_bytes / 1e6,
                    "extra_rss_mb": max(0.0, (res.peak_rss_bytes - rss_before) / 1e6),
                    "unique_polygons": int(round(float(n))),
                    "covered_area_km2": float(a),
                }
            )
            logger.debug(
                "chunks %s, %d workers: %.3f s, %d tasks",
                rows[-1]["chunk_label"],
                w,
                seconds,
                len(tasks.results),
            )
            bar.update()
    bar.close()
    table = pd.DataFrame(rows)
    return table.sort_values(["workers", "chunk_px", "repeat"], ignore_index=True)


def plot_chunk_experiment(table: pd.DataFrame, ax: Axes | Sequence[Axes] | None = None) -> Any:
    """Draw a :func:`chunk_experiment` table: time, tasks and memory against chunk size.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`chunk_experiment` (several repeats are shown as their median).
    ax : Axes or sequence of 2 Axes, optional
        Where to draw; default a new figure with two panels side by side.

    Returns
    -------
    numpy.ndarray of Axes
        Left: wall time (s) per worker count, with the number of tasks written
        above the points; right: peak memory above the memory before the run
        (MB). Chunk side on a log axis.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    else:
        axes = np.atleast_1d(ax)
        if len(axes) != 2:
            raise ValueError("plot_chunk_experiment draws on two Axes")
    med = table.groupby(["workers", "chunk_px"], as_index=False).agg(
        seconds=("seconds", "median"),
        extra_rss_mb=("extra_rss_mb", "median"),
        n_tasks=("n_tasks", "median"),
        chunk_label=("chunk_label", "first"),
    )
    for w, part in med.groupby("workers"):
        label = f"{w} worker" + ("s" if w != 1 else "")
        axes[0].plot(part["chunk_px"], part["seconds"], marker="o", label=label)
        axes[1].plot(part["chunk_px"], part["extra_rss_mb"], marker="o", label=label)
    first = med[med["workers"] == med["workers"].min()]
    for _, r in first.iterrows():
        axes[0].annotate(
            f"{int(r['n_tasks'])} tasks",
            (r["chunk_px"], r["seconds"]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=7,
        )
    ticks = sorted(med["chunk_px"].unique())
    labels = [med.loc[med["chunk_px"] == t, "chunk_label"].iloc[0] for t in ticks]
    for a, ylabel in zip(axes, ("reduction time (s)", "memory used by the run (MB)")):
        a.set_xscale("log", base=2)
        a.set_xticks(ticks, labels, rotation=30)
        a.minorticks_off()
        a.set_xlabel("chunk side (pixels)")
        a.set_ylabel(ylabel)
        a.set_ylim(bottom=0, top=a.get_ylim()[1] * 1.12)  # room for the task counts
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    axes[0].set_title("Time of one reduction", loc="left", fontsize=10)
    axes[1].set_title("Memory", loc="left", fontsize=10)
    return axes


def plot_task_timeline(results: Sequence[Any], ax: Axes | None = None) -> Axes:
    """Draw the tasks of one Dask computation as bars per worker thread over time.

    Parameters
    ----------
    results : sequence of dask.diagnostics.profile.TaskData
        ``Profiler().results`` after a computation.
    ax : Axes, optional
        Where to draw; default a new figure.

    Returns
    -------
    Axes
        One row per worker thread; each task is a bar from its start to its
        end (seconds since the first task started), coloured by what it
        does: read a chunk from the GeoTIFFs, select / multiply / rechunk,
        or reduce (partial and final sums). Gaps are time a worker spent
        outside tasks: waiting, or scheduling the next one.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(9, 2.5), layout="constrained")
    if not results:
        ax.set_title("no tasks recorded", loc="left", fontsize=10)
        return ax

    t0 = min(r.start_time for r in results)
    workers = sorted({r.worker_id for r in results})
    row = {w: i for i, w in enumerate(workers)}

    def kind(key: Any) -> str:
        name = str(key[0] if isinstance(key, tuple) else key)
        if name.startswith("mosaic-"):
            return "read a chunk"
        if "sum" in name or "finalize" in name:
            return "reduce"
        return "select, multiply, rechunk"

    kinds = ["read a chunk", "select, multiply, rechunk", "reduce"]
    colours = ("tab:blue", "tab:orange", "tab:green")
    for name, colour in zip(kinds, colours):
        mine = [r for r in results if kind(r.key) == name]
        label: str | None = name
        for w in workers:
            bars = [
                (r.start_time - t0, max(r.end_time - r.start_time, 1e-5))
                for r in mine
                if r.worker_id == w
            ]
            if bars:
                ax.broken_barh(bars, (row[w] - 0.4, 0.8), color=colour, label=label)
                label = None
    ax.set_yticks(range(len(workers)), [f"thread {i + 1}" for i in range(len(workers))])
    ax.set_xlabel("seconds")
    ax.set_title(
        f"{len(results)} tasks on {len(workers)} worker thread(s)", loc="left", fontsize=10
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


# ============================================================================ larger data
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
    config, z = _resolve(source, z)
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
    jobs = [(p, t, i, j) for i in range(ry) for j in range(rx) for p, t in zip(paths, found)]
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
                    GROUPUTILS_TILE=tile_to_str(new), GROUPUTILS_COPY_OF=tile_to_str(tile)
                )
    logger.info("wrote %d tiles (%d x %d copies of %d) to %s", len(jobs), ry, rx, len(paths), dest)
    return out_config
