"""Rasterize staged tiles into GeoTIFFs, build the pyramid, and summarise it.

One staged tile (``staged/<TMS>/<z>/<x>/<y>.gpkg``) becomes one GeoTIFF
(``geotiff/<TMS>/<z>/<x>/<y>.tif``) with one float32 band per
:class:`~grouputils.core.config.Statistic`. Parents up to zoom 0 are made from their
four children. Every step is a pure function of (config, path or tile), so a
plain loop, a process pool or Parsl can map it over tiles.

Statistics
----------
Each statistic is declared in the config (no code): ``weight_by`` says what a
polygon contributes, ``aggregate`` how contributions meet in a pixel,
``resampling`` how four child pixels become one parent pixel.

* ``weight_by='count'`` / ``'attribute'``: rows whose centroid lies in this
  tile (``staging_centroid_within_tile``) and that are not flagged
  ``staging_duplicated`` contribute 1 (count) or their attribute value at the
  pixel holding their centroid (``staging_centroid_x/y``). A pixel edge
  belongs to the pixel to its right / below, like morecantile's tile rule.
  Attribute values that are NaN are skipped.
* ``weight_by='coverage'``: the area of the union of all non-duplicate
  polygons in the staged tile (including polygons whose centroid lies in a
  neighbouring tile: staged geometries are whole), inside the pixel, divided
  by the pixel's area. Overlapping polygons are dissolved first, so the value
  is always in [0, 1]. Areas are planar in the tile matrix set's CRS (degrees
  for ``WorldCRS84Quad``); within a pixel of 8.6e-5 degrees the fraction
  differs from a ground-area fraction by less than 1e-5.

How coverage is computed, and why
---------------------------------
Measured on the four busy real tiles of the Prudhoe Bay file (3,173-3,983
polygons each) against an exact reference (shapely intersection of the
dissolved union with all 65,536 pixel boxes), on this 2-core machine shared
with other jobs (``benchmarks/bench_rasterize.py --compare-coverage``):

====================================  ==============  ============  ===========  =======
method                                mean abs error  max error     tile area    ms/tile
====================================  ==============  ============  ===========  =======
8x supersampled ``rasterize``         0.0038-0.0050   0.088-0.11    <= 0.033 %   95-220
16x supersampled ``rasterize``        0.0012-0.0016   0.038-0.052   <= 0.013 %   130-340
exactextract on ``union_all``         < 5e-9          < 7e-8        < 1e-7 %     270-610
exactextract on dissolved overlaps    < 5e-9          < 8e-8        < 1e-7 %     55-130
====================================  ==============  ============  ===========  =======

(The bars: mean <= 0.002, max <= 0.05, tile area within 0.2 %.) Supersampling
by 16 meets the mean bar but not reliably the max bar (one real tile reaches
0.052), and it needs a second ``all_touched`` pass (~90 ms) to know which
pixels a polygon touches; 32x would cost four times more. ``exactextract``
returns exact cell fractions (the residual ~1e-8 is its float32 output), but
``shapely.union_all`` of 4,000 polygons costs ~270 ms. Only a quarter of the
polygons intersect another, so :func:`disjoint_parts` dissolves each group of
intersecting polygons on its own (~25 ms); the resulting polygons have
disjoint interiors, so their coverages add up to the union's. They go to
exactextract as ONE multipolygon passed as WKB (~25 ms; fed as 3,400 separate
GeoJSON features exactextract takes ~550 ms). Exact, overlap-safe and the
fastest: this is the method used. A pixel's coverage is exactly 0 when the
union does not cover any of its area, which also gives the data mask.

Nodata and empty pixels
-----------------------
Nodata is NaN (float32). A pixel is *data* when the dissolved union covers a
positive area of it or it holds a counted centroid; every other pixel is
NaN in every band. A data pixel keeps its values even when they are ~0. Within
data pixels, a statistic whose ``aggregate`` is ``'sum'`` (and coverage) is 0
where nothing contributes; a ``'mean'``, ``'max'`` or ``'min'`` of an
attribute has no value there and is NaN too.

Pyramid
-------
A parent pixel is made from the 2x2 child pixels it covers. ``resampling='sum'``
adds them, ``'mean'`` averages them; for statistics that are 0 when empty
(counts, coverage, sums) a nodata child pixel and a missing child tile count
as 0 (so coverage stays an area fraction and counts are conserved at every
level); for the others (means, maxima, minima of attributes) the mean or sum
is over the child pixels that have a value. A parent pixel is nodata only
where all four child pixels are.

Summary
-------
Each GeoTIFF carries its own summary row as GeoTIFF metadata tags (and GDAL's
per-band ``STATISTICS_*`` tags), written atomically with the raster. A single
call, :meth:`RasterTiler.write_summary`, reads the tags of the GeoTIFFs on
disk and writes ``raster_summary.csv`` atomically: no process ever appends to
a shared file, re-running a tile replaces its row, and the CSV has exactly
one row per GeoTIFF.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyproj
import rasterio
import shapely
from exactextract import Feature, exact_extract
from exactextract.feature import FeatureSource
from exactextract.raster import NumPyRasterSource
from morecantile import Tile
from rasterio.errors import RasterioIOError
from rasterio.transform import from_bounds
from tqdm.auto import tqdm

from grouputils.core.atomic import write_text_atomic
from grouputils.core.config import Config, Statistic
from grouputils.core.errors import InputError
from grouputils.core.scratch import output_path
from grouputils.core.staging import read_staged_tile
from grouputils.core.tiles import Tiles, tile_from_path, tile_to_str, unique_tiles

__all__ = [
    "NODATA",
    "RasterTiler",
    "initialize_rasterizer",
    "coverage_fraction",
    "disjoint_parts",
    "centroid_pixels",
    "compute_statistics",
    "write_geotiff",
    "read_geotiff",
    "resample_children",
    "pixel_areas_m2",
    "cell_areas_m2",
    "covered_area_m2",
    "zero_when_empty",
    "TileStatistics",
]

logger = logging.getLogger(__name__)

NODATA: float = float("nan")
"""Nodata value of every band: NaN (float32)."""

_NEEDED_COLUMNS: tuple[str, ...] = (
    "staging_centroid_x",
    "staging_centroid_y",
    "staging_centroid_within_tile",
    "staging_duplicated",
)
_TAG_PREFIX = "GROUPUTILS_"
_BAND_SUMMARY = {
    "min": "STATISTICS_MINIMUM",
    "max": "STATISTICS_MAXIMUM",
    "mean": "STATISTICS_MEAN",
    "sum": "STATISTICS_SUM",
}
_SUMMARY_FIELDS = ("kind", "n_rows", "n_counted", "n_duplicated", "n_children", "n_data_pixels")


# --------------------------------------------------------------------------- geometry
def _components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected-component label (smallest member index) of ``n`` nodes joined by edges ``i``-``j``."""
    label = np.arange(n)
    while True:
        low = np.minimum(label[i], label[j])
        new = label.copy()
        np.minimum.at(new, i, low)
        np.minimum.at(new, j, low)
        new = new[new]  # pointer jumping: converges in O(log n) rounds
        if np.array_equal(new, label):
            return label
        label = new


def _union(geoms: np.ndarray) -> shapely.Geometry:
    try:
        return shapely.union_all(geoms)
    except shapely.errors.GEOSException:  # invalid input: repair, then dissolve
        return shapely.union_all(shapely.make_valid(geoms))


def disjoint_parts(geoms: np.ndarray) -> np.ndarray:
    """Polygons with pairwise disjoint interiors whose union is the union of ``geoms``.

    Polygons that intersect no other polygon are passed through; each group of
    polygons connected by intersections is dissolved on its own (pairs in one
    vectorized ``shapely.union`` call, larger groups with ``union_all``). On a
    real tile (4,000 polygons, 550 intersecting pairs) this takes ~25 ms where
    ``union_all`` of everything takes ~270 ms.

    Parameters
    ----------
    geoms : ndarray of shapely geometries
        Polygons or multipolygons (missing and empty ones are ignored).

    Returns
    -------
    ndarray of shapely.Polygon
        Single-part polygons of positive area.
    """
    geoms = np.asarray(geoms, dtype=object)
    if len(geoms):
        geoms = geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]
    if len(geoms) == 0:
        return np.empty(0, dtype=object)
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():  # staging repairs polygons; this guards hand-made input
        geoms = geoms.copy()
        geoms[invalid] = shapely.make_valid(geoms[invalid])
    i, j = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    keep = i < j
    i, j = i[keep], j[keep]
    label = _components(len(geoms), i, j)
    group_size = np.bincount(label, minlength=len(geoms))[label]
    pieces = [geoms[group_size == 1]]
    pair = group_size[i] == 2  # the only edge of a two-member group
    if pair.any():
        try:
            pieces.append(shapely.union(geoms[i[pair]], geoms[j[pair]]))
        except shapely.errors.GEOSException:
            pieces.append(
                np.array([_union(geoms[[a, b]]) for a, b in zip(i[pair], j[pair])], dtype=object)
            )
    members = np.flatnonzero(group_size >= 3)
    if len(members):
        members = members[np.argsort(label[members], kind="stable")]
        starts = np.flatnonzero(np.r_[True, np.diff(label[members]) != 0])
        ends = np.r_[starts[1:], len(members)]
        pieces.append(
            np.array([_union(geoms[members[a:b]]) for a, b in zip(starts, ends)], dtype=object)
        )
    # twice: a repaired geometry can be a collection holding a multipolygon
    parts = shapely.get_parts(shapely.get_parts(np.concatenate(pieces)))
    keep = (shapely.get_type_id(parts) == 3) & (shapely.area(parts) > 0)
    return parts[keep]


def coverage_fraction(geoms: np.ndarray, bounds: Sequence[float], size: int) -> np.ndarray:
    """Fraction of each pixel's area covered by the union of ``geoms`` (exact).

    Parameters
    ----------
    geoms : ndarray of shapely geometries
        Polygons in the raster's CRS; they may overlap and extend beyond it.
    bounds : sequence of float
        ``(left, bottom, right, top)`` of the raster in the same CRS.
    size : int
        Width and height of the raster in pixels.

    Returns
    -------
    ndarray of float64, shape (size, size)
        Values in [0, 1]; row 0 is the top (north) row. Exactly 0 where the
        union covers no area of the pixel.

    Notes
    -----
    Overlaps are dissolved by :func:`disjoint_parts`; the parts go to
    ``exactextract`` as one multipolygon (WKB), whose ``coverage`` operation
    returns the exact covered fraction of every cell the polygon touches.
    """
    out = np.zeros(size * size, dtype="f8")
    parts = disjoint_parts(geoms)
    if len(parts) == 0:
        return out.reshape(size, size)
    left, bottom, right, top = (float(v) for v in bounds)
    raster = NumPyRasterSource(np.zeros((size, size), dtype="f4"), left, bottom, right, top)
    wkb = shapely.to_wkb(shapely.multipolygons(parts))
    (result,) = exact_extract(
        raster, _WKBFeatureSource([wkb]), ["cell_id", "coverage"], output="geojson"
    )
    cells = np.asarray(result["properties"]["cell_id"], dtype="i8")
    frac = np.asarray(result["properties"]["coverage"], dtype="f8")
    np.add.at(out, cells, frac)
    return np.clip(out, 0.0, 1.0).reshape(size, size)


class _WKBFeature(Feature):
    """An exactextract feature holding only a WKB geometry (no GeoJSON round trip)."""

    def __init__(self, wkb: bytes | None = None) -> None:
        Feature.__init__(self)
        self.wkb = wkb
        self.properties: dict[str, Any] = {}

    def geometry(self) -> bytes | None:
        return self.wkb

    def set_geometry(self, wkb: bytes | None) -> None:
        self.wkb = wkb

    def set_geometry_format(self) -> str:
        return "wkb"

    def get(self, name: str) -> Any:
        return self.properties[name]

    def set(self, name: str, value: Any) -> None:
        self.properties[name] = value

    def fields(self) -> list[str]:
        return list(self.properties)


class _WKBFeatureSource(FeatureSource):
    """exactextract features from a list of WKB geometries."""

    def __init__(self, wkbs: list[bytes]) -> None:
        super().__init__()
        self.wkbs = wkbs

    def count(self) -> int:
        return len(self.wkbs)

    def __iter__(self):
        for w in self.wkbs:
            yield _WKBFeature(w)

    def srs_wkt(self) -> None:
        return None


def centroid_pixels(
    x: np.ndarray, y: np.ndarray, bounds: Sequence[float], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of the pixel holding each point.

    Parameters
    ----------
    x, y : ndarray of float
        Coordinates in the raster's CRS.
    bounds : sequence of float
        ``(left, bottom, right, top)`` of the raster.
    size : int
        Width and height in pixels.

    Returns
    -------
    tuple of ndarray of int64
        Rows (0 = top) and columns, clipped to ``[0, size - 1]`` (a point on
        the tile's right or bottom edge, or off by rounding, stays in the tile).
    """
    left, bottom, right, top = (float(v) for v in bounds)
    col = np.floor((np.asarray(x, dtype="f8") - left) / (right - left) * size)
    row = np.floor((top - np.asarray(y, dtype="f8")) / (top - bottom) * size)
    col = np.clip(np.nan_to_num(col, nan=0.0), 0, size - 1).astype("i8")
    row = np.clip(np.nan_to_num(row, nan=0.0), 0, size - 1).astype("i8")
    return row, col


def pixel_areas_m2(tile: Tile, tiles: Tiles) -> np.ndarray:
    """Ground area of every pixel of ``tile`` in square metres.

    Parameters
    ----------
    tile : Tile
        The tile.
    tiles : Tiles
        Supplies the tile matrix set and ``tile_size``.

    Returns
    -------
    ndarray of float64, shape (size, size)
        Row 0 is the top row.

    Notes
    -----
    The ``(size + 1) ** 2`` pixel corners are projected to a Lambert
    azimuthal equal-area projection centred on the tile (WGS 84 ellipsoid)
    and each pixel's area is the shoelace area of its four projected corners.
    Pixels are so small that this agrees with the geodesic area to better
    than 1e-6; it works for any tile matrix set CRS.
    """
    size = tiles.config.tile_size
    left, bottom, right, top = tiles.bounds(tile)
    xs = np.linspace(left, right, size + 1)
    ys = np.linspace(top, bottom, size + 1)
    gx, gy = np.meshgrid(xs, ys)
    crs = pyproj.CRS.from_wkt(tiles.tms.crs.to_wkt())
    return cell_areas_m2(gx, gy, crs, centre=((left + right) / 2, (bottom + top) / 2))


def cell_areas_m2(
    gx: np.ndarray, gy: np.ndarray, crs: pyproj.CRS, centre: tuple[float, float]
) -> np.ndarray:
    """Areas in m² of the cells of a grid given by its corners.

    Parameters
    ----------
    gx, gy : ndarray, shape (rows + 1, cols + 1)
        Coordinates of the cell corners in ``crs``; row 0 is the top row.
    crs : pyproj.CRS
        The CRS of the corners (any: geographic or projected).
    centre : tuple of float
        A point near the middle of the grid, in ``crs``: the centre of the
        equal-area projection.

    Returns
    -------
    ndarray of float64, shape (rows, cols)
        The shoelace area of each cell's four corners projected to a Lambert
        azimuthal equal-area projection (WGS 84) centred on ``centre``.
    """
    to_geo = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lon_c, lat_c = to_geo.transform(*centre)
    laea = pyproj.CRS.from_proj4(f"+proj=laea +lat_0={lat_c} +lon_0={lon_c} +datum=WGS84 +units=m")
    px, py = pyproj.Transformer.from_crs(crs, laea, always_xy=True).transform(gx, gy)
    # Shoelace over the corners (top-left, top-right, bottom-right, bottom-left).
    x0, y0 = px[:-1, :-1], py[:-1, :-1]
    x1, y1 = px[:-1, 1:], py[:-1, 1:]
    x2, y2 = px[1:, 1:], py[1:, 1:]
    x3, y3 = px[1:, :-1], py[1:, :-1]
    twice = (x0 * y1 - x1 * y0) + (x1 * y2 - x2 * y1) + (x2 * y3 - x3 * y2) + (x3 * y0 - x0 * y3)
    return np.abs(twice) / 2.0


def covered_area_m2(config: Config) -> float:
    """Area covered by the polygons, from the coverage band of the top-zoom GeoTIFFs.

    Parameters
    ----------
    config : Config
        The run's config; its first ``weight_by='coverage'`` statistic is used.

    Returns
    -------
    float
        Sum over the z = ``config.z`` GeoTIFFs on disk of coverage x pixel area,
        in square metres (each polygon counted once: the union's area). NaN if
        no statistic measures coverage; 0.0 if there are no GeoTIFFs.
    """
    band = next((i for i, s in enumerate(config.statistics) if s.weight_by == "coverage"), None)
    if band is None:
        return float("nan")
    tiles = Tiles(config)
    total = 0.0
    for path in tiles.get_filenames_from_dir("geotiff", z=config.z):
        values = read_geotiff(path, config)[band].astype("f8")
        total += float(np.nansum(values * pixel_areas_m2(tile_from_path(path), tiles)))
    return total


# ------------------------------------------------------------------------- statistics
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


# ---------------------------------------------------------------------------- GeoTIFF
def _profile(tile: Tile, tiles: Tiles, count: int) -> dict[str, Any]:
    size = tiles.config.tile_size
    left, bottom, right, top = tiles.bounds(tile)
    # Internal tiles of 128 px (any multiple of 16 below the size): readers see a
    # tiled TIFF; one 256 px block would be tiled too but reported as strips.
    block = next((b for b in (128, 64, 32, 16) if b < size and size % b == 0), None)
    # A Cloud-Optimized GeoTIFF (GDAL's COG driver; rasterio writes it on close).
    # The parent zoom levels are the overviews, so a tile carries internal
    # overviews only when it is larger than rio-cogeo's 512 px recommendation.
    profile: dict[str, Any] = dict(
        driver="COG",
        width=size,
        height=size,
        count=count,
        dtype="float32",
        crs=tiles.tms.rasterio_crs,
        transform=from_bounds(left, bottom, right, top, size, size),
        nodata=NODATA,
        compress="deflate",
        level=6,
        predictor=3,
        overviews="AUTO" if size > 512 else "NONE",
    )
    if block is not None:
        profile.update(blocksize=block)
    return profile


def write_geotiff(
    path: str | Path,
    values: np.ndarray,
    tile: Tile,
    config: Config,
    tags: dict[str, Any] | None = None,
) -> Path:
    """Write one tile's bands as a GeoTIFF, atomically.

    Parameters
    ----------
    path : str or Path
        Destination ``.tif``; written to a temporary sibling and renamed.
    values : ndarray of float32, shape (n_statistics, size, size)
        Bands in ``config.statistics`` order, NaN as nodata.
    tile : Tile
        The tile; CRS and transform are its morecantile bounds exactly.
    config : Config
        Supplies the tile matrix set and the statistics.
    tags : dict, optional
        Extra metadata stored as ``GROUPUTILS_<KEY>`` tags (the summary row).

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    A Cloud-Optimized GeoTIFF: float32, DEFLATE (level 6) with the
    floating-point predictor, 128x128 internal tiles, nodata NaN. For ``WorldCRS84Quad`` the
    file's CRS reads back as EPSG:4326: GeoTIFF has no code for OGC:CRS84,
    and GeoTIFF coordinates are always (longitude, latitude), so the two are
    the same here. Each band's description is the
    statistic's name; GDAL ``STATISTICS_*`` tags hold its min, max, mean and
    the percentage of valid pixels.
    """
    path = Path(path)
    tiles = Tiles(config)
    values = np.asarray(values, dtype="f4")
    stats = config.statistics
    if values.shape != (len(stats), config.tile_size, config.tile_size):
        raise ValueError(
            f"values must have shape {(len(stats), config.tile_size, config.tile_size)}"
        )
    with output_path(path, config.scratch_dir) as tmp:
        with rasterio.open(tmp, "w", **_profile(tile, tiles, len(stats))) as dst:
            dst.write(values)
            dst.update_tags(
                **{f"{_TAG_PREFIX}TILE": tile_to_str(tile), f"{_TAG_PREFIX}TMS": config.tms},
                **{f"{_TAG_PREFIX}{k.upper()}": v for k, v in (tags or {}).items()},
            )
            for b, stat in enumerate(stats, start=1):
                dst.set_band_description(b, stat.name)
                band = values[b - 1]
                ok = ~np.isnan(band)
                band_tags: dict[str, Any] = {
                    "STATISTIC_WEIGHT_BY": stat.weight_by,
                    "STATISTIC_AGGREGATE": stat.aggregate,
                    "STATISTIC_RESAMPLING": stat.resampling,
                    "STATISTICS_VALID_PERCENT": f"{100.0 * ok.mean():.6g}",
                }
                if stat.unit:
                    band_tags["UNIT"] = stat.unit
                if ok.any():
                    v = band[ok].astype("f8")
                    band_tags.update(
                        STATISTICS_MINIMUM=repr(float(v.min())),
                        STATISTICS_MAXIMUM=repr(float(v.max())),
                        STATISTICS_MEAN=repr(float(v.mean())),
                        STATISTICS_STDDEV=repr(float(v.std())),
                        STATISTICS_SUM=repr(float(v.sum())),
                    )
                dst.update_tags(b, **band_tags)
    return path


def read_geotiff(path: str | Path, config: Config) -> np.ndarray:
    """Read a tile GeoTIFF written by this module.

    Parameters
    ----------
    path : str or Path
        A ``geotiff/<TMS>/<z>/<x>/<y>.tif``.
    config : Config
        The bands must be this config's statistics, in order.

    Returns
    -------
    ndarray of float32, shape (n_statistics, size, size)
        NaN where there is no data.

    Raises
    ------
    InputError
        Missing or unreadable file, or bands that do not match the statistics.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "GeoTIFF not found")
    try:
        with rasterio.open(path) as src:
            names = tuple(src.descriptions)
            if names != config.statistic_names:
                raise InputError(
                    path,
                    f"bands are {list(names)} but the config's statistics are "
                    f"{list(config.statistic_names)}; rasterize again with this config",
                )
            if (src.width, src.height) != (config.tile_size, config.tile_size):
                raise InputError(
                    path, f"is {src.width}x{src.height} pixels, expected {config.tile_size}"
                )
            return src.read(out_dtype="f4")
    except RasterioIOError as e:
        raise InputError(path, f"not a readable GeoTIFF ({e})") from None


def resample_children(
    children: Sequence[np.ndarray | None], statistics: Sequence[Statistic]
) -> np.ndarray:
    """Combine four child tiles into their parent, by each statistic's resampling rule.

    Parameters
    ----------
    children : sequence of 4 arrays or None
        Child bands ``(n_statistics, size, size)`` in the order top-left,
        top-right, bottom-left, bottom-right (as placed in the parent image);
        ``None`` for a missing child (all nodata).
    statistics : sequence of Statistic
        Band order and resampling rules.

    Returns
    -------
    ndarray of float32, shape (n_statistics, size, size)
        The parent tile: each pixel combines the 2x2 child pixels it covers.
    """
    present = [c for c in children if c is not None]
    if not present:
        raise ValueError("a parent needs at least one child")
    nb, size, _ = present[0].shape
    mosaic = np.full((nb, 2 * size, 2 * size), np.nan, dtype="f8")
    for k, child in enumerate(children):
        if child is not None:
            r, c = divmod(k, 2)
            mosaic[:, r * size : (r + 1) * size, c * size : (c + 1) * size] = child
    blocks = mosaic.reshape(nb, size, 2, size, 2)
    valid = ~np.isnan(blocks)
    n_valid = valid.sum(axis=(2, 4))
    sums = np.where(valid, blocks, 0.0).sum(axis=(2, 4))
    out = np.full((nb, size, size), np.nan, dtype="f8")
    for b, stat in enumerate(statistics):
        has = n_valid[b] > 0
        if stat.resampling == "sum":
            val = sums[b]
        elif zero_when_empty(stat):
            val = sums[b] / 4.0
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                val = sums[b] / n_valid[b]
        out[b][has] = val[has]
    return out.astype("f4")


# ------------------------------------------------------------------------------ tiler
class RasterTiler:
    """Rasterize staged tiles, build the GeoTIFF pyramid and the web tiles.

    Parameters
    ----------
    config : Config
        The run's frozen config (the same one the stager uses).

    Notes
    -----
    The per-item methods :meth:`rasterize_vector`, :meth:`parent_geotiff` and
    :meth:`webtile` are pure functions of the config and their argument, and
    a ``RasterTiler`` pickles as its config, so an executor can map them over
    tiles in any order and any number of processes.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.tiles = Tiles(config)

    def __reduce__(self):
        return (RasterTiler, (self.config,))

    def __repr__(self) -> str:
        return f"RasterTiler(dir_output={str(self.config.dir_output)!r}, tms={self.config.tms!r})"

    # ------------------------------------------------------------- z = max
    def rasterize_vector(self, path: str | Path) -> Tile:
        """Rasterize one staged tile into its GeoTIFF.

        Parameters
        ----------
        path : str or Path
            A staged tile ``staged/<TMS>/<z>/<x>/<y>.gpkg``.

        Returns
        -------
        Tile
            The tile written, e.g. ``Tile(x=1419, y=909, z=13)``; the GeoTIFF is
            ``tiles.path('geotiff', tile)``.

        Raises
        ------
        InputError
            The path is not ``<z>/<x>/<y>``, the file is missing, unreadable,
            lacks the staging columns or has not been finalized.
        """
        return self.rasterize_vector_bands(path)[0]

    def rasterize_vector_bands(self, path: str | Path) -> tuple[Tile, np.ndarray, dict[str, Any]]:
        """:meth:`rasterize_vector`, also returning the bands and the tags written.

        Returns
        -------
        tuple
            ``(tile, bands, tags)``: bands as in :func:`write_geotiff`, tags
            the ``GROUPUTILS_*`` summary fields (``kind``, ``n_rows``, ...).
        """
        path = Path(path)
        tile = tile_from_path(path)
        if tile.z != self.config.z:
            raise InputError(path, f"is a zoom-{tile.z} tile but staging is at z={self.config.z}")
        frame = read_staged_tile(path, self.config)
        result = compute_statistics(frame, self.tiles.bounds(tile), self.config, path)
        tags = {
            "kind": "rasterized",
            "n_rows": result.n_rows,
            "n_counted": result.n_counted,
            "n_duplicated": result.n_duplicated,
            "n_data_pixels": int((~np.isnan(result.values)).any(axis=0).sum()),
        }
        write_geotiff(self.tiles.path("geotiff", tile), result.values, tile, self.config, tags)
        logger.debug("rasterized %s (%d rows)", tile_to_str(tile), result.n_rows)
        return tile, result.values, tags

    def rasterize_vectors(
        self, paths: Iterable[str | Path], make_parents: bool = False, progress: bool = True
    ) -> list[Tile]:
        """Rasterize many staged tiles, one after the other, then write the summary.

        Parameters
        ----------
        paths : iterable of str or Path
            Staged tiles.
        make_parents : bool
            Also build every parent up to zoom 0 (:meth:`parent_geotiffs_from_children`
            with ``recursive=True``).
        progress : bool
            Show a progress bar.

        Returns
        -------
        list of Tile
            The tiles rasterized, in the order given.
        """
        paths = list(paths)
        done = [
            self.rasterize_vector(p)
            for p in tqdm(paths, desc="rasterize", unit="tile", disable=not progress)
        ]
        if make_parents and done:
            self.parent_geotiffs_from_children(done, recursive=True, progress=progress)
        self.write_summary()
        return done

    # -------------------------------------------------------------- pyramid
    def parent_geotiff(self, tile: Tile) -> Tile:
        """Write the GeoTIFF of ``tile`` from its children's GeoTIFFs on disk.

        Parameters
        ----------
        tile : Tile
            The parent tile (zoom below the children).

        Returns
        -------
        Tile
            ``tile``.

        Raises
        ------
        InputError
            None of the four children exists, or one cannot be read.
        """
        return self.parent_geotiff_bands(tile)[0]

    def parent_geotiff_bands(self, tile: Tile) -> tuple[Tile, np.ndarray, dict[str, Any]]:
        """:meth:`parent_geotiff`, also returning the bands and the tags written."""
        tile = Tile(*tile)
        children = self.tiles.get_child_tiles(tile)
        parent_top = self.tiles.bounds(tile).top
        placed: list[np.ndarray | None] = [None] * 4
        found = 0
        for child in children:
            cb = self.tiles.bounds(child)
            top_half = np.isclose(cb.top, parent_top, rtol=0, atol=abs(cb.top - cb.bottom) * 1e-6)
            left_half = child.x == 2 * tile.x
            k = (0 if top_half else 2) + (0 if left_half else 1)
            path = self.tiles.path("geotiff", child)
            if path.is_file():
                placed[k] = read_geotiff(path, self.config)
                found += 1
        if not found:
            folder = self.tiles.path("geotiff", children[0]).parent.parent
            raise InputError(
                folder,
                f"holds no child GeoTIFF of {tile_to_str(tile)}: rasterize its children first",
            )
        values = resample_children(placed, self.config.statistics)
        tags = {
            "kind": "parent",
            "n_children": found,
            "n_data_pixels": int((~np.isnan(values)).any(axis=0).sum()),
        }
        write_geotiff(self.tiles.path("geotiff", tile), values, tile, self.config, tags)
        return tile, values, tags

    def parent_geotiffs_from_children(
        self, tiles: Iterable[Tile], recursive: bool = False, progress: bool = False
    ) -> list[Tile]:
        """Build the parents of ``tiles`` (and, if ``recursive``, theirs, up to zoom 0).

        Parameters
        ----------
        tiles : iterable of Tile
            Child tiles whose GeoTIFFs exist.
        recursive : bool
            Go on up level by level until zoom 0.
        progress : bool
            Show a progress bar per level.

        Returns
        -------
        list of Tile
            The parents written, level by level from the highest zoom down,
            sorted within a level.
        """
        level = unique_tiles(Tile(*t) for t in tiles)
        made: list[Tile] = []
        while level and level[0].z > self.tiles.min_zoom:
            by_zoom = {t.z for t in level}
            if len(by_zoom) > 1:
                raise ValueError(f"tiles must share one zoom level, got zooms {sorted(by_zoom)}")
            parents = unique_tiles(self.tiles.get_parent_tile(t) for t in level)
            for p in tqdm(
                parents, desc=f"parents z={parents[0].z}", unit="tile", disable=not progress
            ):
                self.parent_geotiff(p)
            made.extend(parents)
            if not recursive:
                break
            level = parents
        return made

    # ----------------------------------------------------------- web tiles
    def webtile(self, path: str | Path) -> list[Path]:
        """Colour one GeoTIFF into one PNG web tile per statistic.

        Parameters
        ----------
        path : str or Path
            A ``geotiff/<TMS>/<z>/<x>/<y>.tif``.

        Returns
        -------
        list of Path
            ``web_tiles/<statistic>/<TMS>/<z>/<x>/<y>.png``, in statistic order.
        """
        from grouputils.core.webtiles import write_webtile

        path = Path(path)
        tile = tile_from_path(path)
        values = read_geotiff(path, self.config)
        out = []
        for band, stat in zip(values, self.config.statistics):
            dest = self.tiles.path("web_tiles", tile, statistic=stat.name)
            out.append(
                write_webtile(
                    dest, band, stat, tile.z, self.config.z, scratch_dir=self.config.scratch_dir
                )
            )
        return out

    def write_legends(self) -> list[Path]:
        """Write ``web_tiles/<statistic>/legend.png`` for every statistic."""
        from grouputils.core.webtiles import write_legend

        return [
            write_legend(self.config.dir_web_tiles / s.name / "legend.png", s, self.config.z)
            for s in self.config.statistics
        ]

    def webtiles_from_geotiffs(
        self, paths: Iterable[str | Path] | None = None, progress: bool = True
    ) -> list[Path]:
        """Colour GeoTIFFs into PNG web tiles and write the legends.

        Parameters
        ----------
        paths : iterable of str or Path, optional
            GeoTIFFs; default every GeoTIFF on disk.
        progress : bool
            Show a progress bar.

        Returns
        -------
        list of Path
            The PNGs written (legends not included).

        Notes
        -----
        Colours use each statistic's fixed ``value_range`` (times 4 per level
        up the pyramid for ``resampling='sum'``), so any subset of tiles can be
        coloured, in any process, consistently.
        """
        paths = list(self.tiles.get_filenames_from_dir("geotiff") if paths is None else paths)
        self.write_legends()
        out: list[Path] = []
        for p in tqdm(paths, desc="web tiles", unit="tile", disable=not progress):
            out.extend(self.webtile(p))
        return out

    # -------------------------------------------------------------- summary
    def summary(self) -> pd.DataFrame:
        """One row per GeoTIFF on disk, from the tags each GeoTIFF carries.

        Returns
        -------
        pandas.DataFrame
            Columns ``tile, z, x, y, path, kind, n_rows, n_counted,
            n_duplicated, n_children, n_data_pixels`` then, per statistic,
            ``<name>_min``, ``<name>_max``, ``<name>_mean``, ``<name>_sum``
            (over data pixels). Sorted by z (highest first), x, y.
        """
        rows = []
        base = self.config.dir_output
        for path in self.tiles.get_filenames_from_dir("geotiff"):
            tile = tile_from_path(path)
            try:
                with rasterio.open(path) as src:
                    tags = src.tags()
                    band_tags = [src.tags(b) for b in range(1, src.count + 1)]
                    names = src.descriptions
            except RasterioIOError as e:
                raise InputError(path, f"not a readable GeoTIFF ({e})") from None
            row: dict[str, Any] = {
                "tile": tile_to_str(tile),
                "z": tile.z,
                "x": tile.x,
                "y": tile.y,
                "path": path.relative_to(base).as_posix()
                if path.is_relative_to(base)
                else str(path),
            }
            for key in _SUMMARY_FIELDS:
                value = tags.get(f"{_TAG_PREFIX}{key.upper()}")
                row[key] = value if key == "kind" or value is None else int(value)
            for name, bt in zip(names, band_tags):
                for short, tag in _BAND_SUMMARY.items():
                    v = bt.get(tag)
                    row[f"{name}_{short}"] = float(v) if v is not None else np.nan
            rows.append(row)
        columns = ["tile", "z", "x", "y", "path", *_SUMMARY_FIELDS] + [
            f"{name}_{short}" for name in self.config.statistic_names for short in _BAND_SUMMARY
        ]
        frame = pd.DataFrame(
            rows, columns=list(dict.fromkeys(columns + [k for r in rows for k in r]))
        )
        if len(frame):
            frame = frame.sort_values(
                ["z", "x", "y"], ascending=[False, True, True], ignore_index=True
            )
            for key in _SUMMARY_FIELDS[1:]:
                frame[key] = frame[key].astype("Int64")
        return frame

    def write_summary(self) -> Path:
        """Write :meth:`summary` to ``config.filename_rasterization_summary`` atomically.

        Call it once after the tiles are written (the pipeline calls it after
        each stage); never from several processes writing tiles.

        Returns
        -------
        Path
            The CSV.
        """
        path = self.config.filename_rasterization_summary
        write_text_atomic(path, self.summary().to_csv(index=False))
        return path


def initialize_rasterizer(
    dir_input: str | Path, dir_output: str | Path | None = None, **overrides: Any
) -> RasterTiler:
    """Create a :class:`RasterTiler` with the same config and folders as the stager.

    Parameters
    ----------
    dir_input : str or Path
        The input folder (as given to ``initialize_stager``).
    dir_output : str or Path, optional
        Output folder; default ``./group-project``.
    **overrides
        Other :class:`~grouputils.core.config.Config` settings (``statistics``,
        ``tms``, ``z``, ``tile_size`` ...).

    Returns
    -------
    RasterTiler
    """
    config = Config(
        dir_input=Path(dir_input),
        dir_output=Path(dir_output) if dir_output is not None else Path("group-project"),
        **overrides,
    )
    return RasterTiler(config)
