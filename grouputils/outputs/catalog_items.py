"""The STAC item of one tile, built from a small record of the tile.

An :class:`ItemRecord` holds what a tile's item says beyond what the tile
matrix set and the config give: the tile, its kind, each band's statistics
and rules, and the acquisition span. :func:`read_item_record` reads one (and
the grid) from a GeoTIFF (what :func:`~grouputils.outputs.catalog.write_stac_catalog`
does without records); the pipeline builds them from its run state instead
(:mod:`grouputils.run.run_steps`), opening no file. :func:`make_item` turns
a record and the tile's grid into the ``pystac.Item``; the grid is read from
the GeoTIFF (with the record) or follows from the tile matrix set as the
GeoTIFF writer lays it out (:func:`tms_grid`): the two are the same numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import pystac
import rasterio
import shapely
from morecantile import Tile
from pystac.extensions.projection import ProjectionExtension
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.transform import array_bounds

from grouputils.core.config import Config
from grouputils.core.errors import InputError
from grouputils.core.raster.geotiff import check_bands, tile_transform
from grouputils.core.raster.tags import (
    KIND_TAG,
    RULE_TAGS,
    UNIT_TAG,
    read_band_statistics,
)
from grouputils.core.tiles import Tiles, tile_from_path, tile_id, tile_to_str
from grouputils.outputs.acquisition import Span

__all__ = [
    "BandRecord",
    "ItemRecord",
    "Grid",
    "Footprints",
    "item_id",
    "read_item_record",
    "tms_grid",
    "make_item",
]

#: Band statistics a STAC band carries (``sum`` goes to ``grouputils:sum``).
_STATS = ("minimum", "maximum", "mean", "stddev", "valid_percent")


@dataclasses.dataclass(frozen=True)
class BandRecord:
    """One band of a tile, as its GeoTIFF's band tags describe it.

    Attributes
    ----------
    name : str
        The band's description: its statistic's name.
    statistics : Mapping of str to float
        :func:`~grouputils.core.raster.tags.read_band_statistics` keys
        (``minimum``, ``maximum``, ``mean``, ``stddev``, ``sum``,
        ``valid_percent``); the ones an empty band lacks are left out.
    rules : Mapping of str to str
        The statistic's rules by field (``weight_by``, ``aggregate``,
        ``resampling``: :data:`~grouputils.core.raster.tags.RULE_TAGS`).
    unit : str
        The band's unit, ``''`` for none.
    """

    name: str
    statistics: Mapping[str, float]
    rules: Mapping[str, str]
    unit: str = ""


@dataclasses.dataclass(frozen=True)
class ItemRecord:
    """What the STAC item of one tile is made from (besides the config).

    Attributes
    ----------
    tile : Tile
        The tile; its GeoTIFF is ``Tiles(config).path('geotiff', tile)``.
    kind : str
        ``'rasterized'`` or ``'parent'`` (the ``GROUPUTILS_KIND`` tag).
    bands : tuple of BandRecord
        One per statistic, in the config's order.
    span : tuple of datetime.datetime or None
        Earliest and latest acquisition of its polygons (UTC); None when
        none carries a date (or when a nominal ``datetime=`` is used).
    """

    tile: Tile
    kind: str
    bands: tuple[BandRecord, ...]
    span: Span | None = None


@dataclasses.dataclass(frozen=True)
class Grid:
    """A GeoTIFF's grid: CRS, ``(height, width)``, geotransform and bounds in its CRS."""

    crs: CRS
    shape: tuple[int, int]
    transform: tuple[float, ...]
    bounds: tuple[float, float, float, float]


def item_id(tms: str, tile: Tile) -> str:
    """STAC item id of a tile, e.g. ``'WorldCRS84Quad-13-1401-907'``."""
    return tile_id(tms, tile)


def band_record(name: str, tags: Mapping[str, str]) -> BandRecord:
    """The record of a band from its GeoTIFF band tags."""
    return BandRecord(
        name=name,
        statistics=read_band_statistics(tags),
        rules={field: tags[tag] for field, tag in RULE_TAGS.items() if tag in tags},
        unit=tags.get(UNIT_TAG, ""),
    )


def _grid_of(src: Any) -> Grid:
    west, south, east, north = (float(v) for v in src.bounds)
    return Grid(
        crs=src.crs,
        shape=(src.height, src.width),
        transform=tuple(float(v) for v in tuple(src.transform)[:6]),
        bounds=(west, south, east, north),
    )


def read_item_record(
    config: Config, path: Path, span: Span | None = None
) -> tuple[ItemRecord, Grid]:
    """The record and grid of a tile read from its GeoTIFF (opened once).

    Parameters
    ----------
    config : Config
        The run's config; the bands must be its statistics.
    path : Path
        A ``geotiff/<TMS>/<z>/<x>/<y>.tif``.
    span : tuple of datetime.datetime, optional
        Its acquisition span (the GeoTIFF does not carry one).

    Returns
    -------
    tuple
        ``(ItemRecord, Grid)``: kind and band tags, and CRS, shape,
        transform and bounds as the file has them.

    Raises
    ------
    InputError
        The file cannot be read, or its bands are not the config's statistics.
    """
    try:
        with rasterio.open(path) as src:
            names = tuple(src.descriptions)
            band_tags = [src.tags(b) for b in range(1, src.count + 1)]
            kind = src.tags().get(KIND_TAG, "unknown")
            grid = _grid_of(src)
    except RasterioIOError as e:
        raise InputError(path, f"not a readable GeoTIFF ({e})") from None
    check_bands(path, names, config)
    bands = tuple(band_record(n, t) for n, t in zip(names, band_tags, strict=True))
    return ItemRecord(tile_from_path(path), kind, bands, span), grid


def tms_grid(tiles: Tiles, tile: Tile, crs: CRS) -> Grid:
    """The grid of a tile's GeoTIFF as the writer lays it out, no file opened.

    Parameters
    ----------
    tiles : Tiles
        The run's tile matrix set and ``tile_size``.
    tile : Tile
        The tile.
    crs : rasterio.crs.CRS
        The CRS its GeoTIFF reads back with
        (:func:`grouputils.core.raster.geotiff.geotiff_crs`).
    """
    size = tiles.config.tile_size
    transform = tile_transform(tile, tiles)
    west, south, east, north = array_bounds(size, size, transform)
    return Grid(
        crs=crs,
        shape=(size, size),
        transform=tuple(float(v) for v in tuple(transform)[:6]),
        bounds=(float(west), float(south), float(east), float(north)),
    )


class Footprints:
    """Bounding box and GeoJSON polygon of tiles in longitude/latitude (WGS 84).

    The CRS comparison and the transformer are made once, for every tile of
    the tile matrix set (they were a seventh of an item's time).

    Parameters
    ----------
    tiles : Tiles
        The run's tile matrix set.
    """

    def __init__(self, tiles: Tiles) -> None:
        self.tiles = tiles
        crs = pyproj.CRS.from_wkt(tiles.tms.crs.to_wkt())
        lonlat = pyproj.CRS.from_epsg(4326)
        # CRS84 and EPSG:4326 coordinates are the same numbers in (lon, lat) order
        self.is_lonlat = (
            crs.is_geographic
            and crs.ellipsoid == lonlat.ellipsoid
            and all(a.unit_name == "degree" for a in crs.axis_info)
        )
        self.transformer = (
            None if self.is_lonlat else pyproj.Transformer.from_crs(crs, lonlat, always_xy=True)
        )

    def __call__(self, tile: Tile) -> tuple[list[float], dict[str, Any]]:
        """``(bbox, geometry)`` of ``tile``; a projected tile's outline is densified."""
        left, bottom, right, top = (float(v) for v in self.tiles.bounds(tile))
        if self.transformer is None:
            poly = shapely.box(left, bottom, right, top)
        else:
            n = 16
            t = np.linspace(0.0, 1.0, n, endpoint=False)
            xs = np.concatenate(
                [
                    left + (right - left) * t,
                    np.full(n, right),
                    right - (right - left) * t,
                    np.full(n, left),
                ]
            )
            ys = np.concatenate(
                [
                    np.full(n, bottom),
                    bottom + (top - bottom) * t,
                    np.full(n, top),
                    top - (top - bottom) * t,
                ]
            )
            lon, lat = self.transformer.transform(xs, ys)
            poly = shapely.Polygon(np.column_stack([lon, lat]))
        poly = shapely.geometry.polygon.orient(poly, 1.0)  # GeoJSON right-hand rule
        return [float(v) for v in poly.bounds], shapely.geometry.mapping(poly)


def _band_metadata(config: Config, bands: tuple[BandRecord, ...]) -> list[dict[str, Any]]:
    out = []
    known = {s.name: s for s in config.statistics}
    for rec in bands:
        band: dict[str, Any] = {"name": rec.name, "data_type": "float32", "nodata": "nan"}
        stat = known.get(rec.name)
        if stat is not None and stat.description:
            band["description"] = stat.description
        unit = (stat.unit if stat is not None else "") or rec.unit
        if unit:
            band["unit"] = unit
        read = rec.statistics
        stats = {k: read[k] for k in _STATS if k in read and np.isfinite(read[k])}
        if stats:
            band["statistics"] = stats
        if "sum" in read:
            band["grouputils:sum"] = read["sum"]
        for field in RULE_TAGS:
            if field in rec.rules:
                band[f"grouputils:{field}"] = rec.rules[field]
        out.append(band)
    return out


def _crs_code(crs: CRS | None) -> str | None:
    """``'EPSG:4326'``-style code of a rasterio CRS, or None when it has none."""
    found = crs.to_authority() if crs is not None else None
    return f"{found[0]}:{found[1]}" if found else None


def make_item(
    config: Config,
    footprints: Footprints,
    record: ItemRecord,
    span: Span,
    grid: Grid,
    include_web_tiles: bool,
) -> pystac.Item:
    """The STAC item of one tile.

    Parameters
    ----------
    config : Config
        The run's config.
    footprints : Footprints
        ``Footprints(Tiles(config))``.
    record : ItemRecord
        The tile's kind and bands.
    span : tuple of datetime.datetime
        The item's time span (its record's, or a nominal time twice).
    grid : Grid
        Its GeoTIFF's grid (as read with its record, or :func:`tms_grid`).
    include_web_tiles : bool
        Add its PNG web tiles that exist as ``'visual'`` assets.

    Returns
    -------
    pystac.Item
    """
    tile, tiles = record.tile, footprints.tiles
    bbox, geometry = footprints(tile)
    first, last = span
    item = pystac.Item(
        id=item_id(config.tms, tile),
        geometry=geometry,
        bbox=bbox,
        datetime=last,  # several scenes: the latest (the tile shows the ground as of then)
        start_datetime=None if first == last else first,
        end_datetime=None if first == last else last,
        properties={
            "title": f"{tile_to_str(tile)} of {config.tms}",
            "grouputils:tms": config.tms,
            "grouputils:tile": [tile.z, tile.x, tile.y],
            "grouputils:kind": record.kind,
        },
    )
    code = _crs_code(grid.crs)
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.apply(
        code=code,
        wkt2=None if code else grid.crs.to_wkt(),
        shape=list(grid.shape),
        transform=list(grid.transform),
        bbox=list(grid.bounds),
    )
    item.add_asset(
        "data",
        pystac.Asset(
            href=str(tiles.path("geotiff", tile).resolve()),
            title="GeoTIFF, one float32 band per statistic (NaN = no data)",
            media_type=pystac.MediaType.GEOTIFF,  # a COG: rio cogeo validate passes
            roles=["data"],
            extra_fields={"bands": _band_metadata(config, record.bands)},
        ),
    )
    if include_web_tiles:
        for stat in config.statistics:
            png = tiles.path("web_tiles", tile, statistic=stat.name)
            if png.is_file():
                item.add_asset(
                    f"{stat.name}_png",
                    pystac.Asset(
                        href=str(png.resolve()),
                        title=f"Web tile of {stat.name} (coloured PNG)",
                        media_type=pystac.MediaType.PNG,
                        roles=["visual"],
                    ),
                )
    return item
