"""A STAC catalogue of the GeoTIFF outputs, so other tools can find and read them.

:func:`write_stac_catalog` describes the GeoTIFF pyramid of a run as a
`SpatioTemporal Asset Catalog <https://stacspec.org>`_ (STAC 1.1, written with
pystac) in ``<dir_output>/stac/``::

    stac/catalog.json                                   the root catalogue
    stac/<TMS>-z13/collection.json                      one collection per zoom level
    stac/<TMS>-z13/<TMS>-13-1401-907/<TMS>-13-1401-907.json   one item per tile

Design
------
* **One item per tile**, grouped in one collection per zoom level. In STAC an
  item is one footprint and its assets share it; a tile is exactly that (its
  GeoTIFF and its PNG web tiles cover the same box). One item per zoom level
  would need a multipolygon footprint and hundreds of assets in one item,
  which STAC clients neither search nor display well. With items per tile a
  search by bounding box returns just the tiles needed.
* **Core STAC only.** The bands are described with STAC 1.1's core ``bands``
  field on the GeoTIFF asset (name, description, ``data_type`` float32,
  ``nodata`` NaN, ``unit`` and ``statistics``: minimum, maximum, mean,
  standard deviation, valid percent, read from the tags each GeoTIFF
  carries). No extension is declared, so the whole catalogue validates
  against the core schemas that pystac ships, offline
  (``pystac.validation.validate_all``). Tile indices and the resampling rule
  are stored under the ``grouputils:`` prefix.
* **Relative links and asset paths** (a self-contained catalogue): the output
  folder can be moved or copied, and the catalogue still resolves.
* **Footprints in longitude/latitude** (STAC requires WGS 84): for
  ``WorldCRS84Quad`` the tile bounds from morecantile as they are; for a
  projected tile matrix set the tile's outline, densified, is transformed.
* **datetime**: STAC items need one. The GeoTIFFs combine several
  acquisitions, so by default an item's ``datetime`` (and ``created``) is
  when its GeoTIFF was written (UTC), and a collection's temporal extent
  spans its items; pass ``datetime=`` to use one nominal time instead.
* **Written atomically**: the catalogue is built in a temporary sibling
  folder and swapped in by two renames, so readers never see a half-written
  catalogue, and rewriting it after a rerun replaces it entirely.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import pystac
import rasterio
import shapely
from morecantile import Tile
from rasterio.errors import RasterioIOError
from tqdm.auto import tqdm

from grouputils.core.config import Config
from grouputils.core.errors import InputError, OutputError
from grouputils.core.layout import Layout
from grouputils.core.raster.tags import KIND_TAG, RULE_TAGS, read_band_statistics
from grouputils.core.swap import replace_folder
from grouputils.core.tiles import Tiles, tile_from_path, tile_id, tile_to_str

__all__ = ["STAC_DIR", "catalog_path", "write_stac_catalog", "validate_stac_catalog", "item_id"]

STAC_DIR = Layout(Path()).stac.name
"""Folder of the catalogue inside the output folder."""

_STATS = ("minimum", "maximum", "mean", "stddev", "valid_percent")


def catalog_path(config: Config) -> Path:
    """Path of the root ``catalog.json`` of ``config``'s run."""
    return Layout.of(config).catalog


def item_id(tms: str, tile: Tile) -> str:
    """STAC item id of a tile, e.g. ``'WorldCRS84Quad-13-1401-907'``."""
    return tile_id(tms, tile)


def _footprint(tiles: Tiles, tile: Tile) -> tuple[list[float], dict[str, Any]]:
    """Bounding box and GeoJSON polygon of a tile in longitude/latitude (WGS 84)."""
    left, bottom, right, top = (float(v) for v in tiles.bounds(tile))
    crs = pyproj.CRS.from_wkt(tiles.tms.crs.to_wkt())
    lonlat = pyproj.CRS.from_epsg(4326)
    if (
        crs.is_geographic
        and crs.ellipsoid == lonlat.ellipsoid
        and all(a.unit_name == "degree" for a in crs.axis_info)
    ):
        # CRS84 and EPSG:4326 coordinates are the same numbers in (lon, lat) order
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
        tr = pyproj.Transformer.from_crs(crs, lonlat, always_xy=True)
        lon, lat = tr.transform(xs, ys)
        poly = shapely.Polygon(np.column_stack([lon, lat]))
    poly = shapely.geometry.polygon.orient(poly, 1.0)  # GeoJSON right-hand rule
    return [float(v) for v in poly.bounds], shapely.geometry.mapping(poly)


def _band_metadata(
    config: Config, names: Iterable[str], band_tags: list[dict[str, str]]
) -> list[dict[str, Any]]:
    out = []
    known = {s.name: s for s in config.statistics}
    for name, tags in zip(names, band_tags):
        band: dict[str, Any] = {"name": name, "data_type": "float32", "nodata": "nan"}
        stat = known.get(name)
        if stat is not None and stat.description:
            band["description"] = stat.description
        unit = (stat.unit if stat is not None else "") or tags.get("UNIT", "")
        if unit:
            band["unit"] = unit
        read = read_band_statistics(tags)
        stats = {k: read[k] for k in _STATS if k in read and np.isfinite(read[k])}
        if stats:
            band["statistics"] = stats
        if "sum" in read:
            band["grouputils:sum"] = read["sum"]
        for field, tag in RULE_TAGS.items():
            if tag in tags:
                band[f"grouputils:{field}"] = tags[tag]
        out.append(band)
    return out


def _item(
    config: Config, tiles: Tiles, path: Path, when: dt.datetime | None, include_web_tiles: bool
) -> pystac.Item:
    tile = tile_from_path(path)
    try:
        with rasterio.open(path) as src:
            names = tuple(src.descriptions)
            band_tags = [src.tags(b) for b in range(1, src.count + 1)]
            tags = src.tags()
            shape = [src.height, src.width]
    except RasterioIOError as e:
        raise InputError(path, f"not a readable GeoTIFF ({e})") from None
    if names != config.statistic_names:
        raise InputError(
            path,
            f"bands are {list(names)} but the config's statistics are {list(config.statistic_names)}",
        )
    made = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.UTC).replace(microsecond=0)
    bbox, geometry = _footprint(tiles, tile)
    item = pystac.Item(
        id=item_id(config.tms, tile),
        geometry=geometry,
        bbox=bbox,
        datetime=when or made,
        properties={
            "title": f"{tile_to_str(tile)} of {config.tms}",
            "created": pystac.utils.datetime_to_str(made),
            "grouputils:tms": config.tms,
            "grouputils:tile": [tile.z, tile.x, tile.y],
            "grouputils:kind": tags.get(KIND_TAG, "unknown"),
            "grouputils:shape": shape,
        },
    )
    item.add_asset(
        "data",
        pystac.Asset(
            href=str(path.resolve()),
            title="GeoTIFF, one float32 band per statistic (NaN = no data)",
            media_type=pystac.MediaType.GEOTIFF,
            roles=["data"],
            extra_fields={"bands": _band_metadata(config, names, band_tags)},
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


def write_stac_catalog(
    config: Config,
    *,
    zooms: Iterable[int] | None = None,
    include_web_tiles: bool = True,
    datetime: dt.datetime | None = None,
    license: str = "other",
    progress: bool = False,
) -> Path:
    """Write (or rewrite) the STAC catalogue of the run's GeoTIFFs.

    Parameters
    ----------
    config : Config
        The run's config; its GeoTIFFs ``geotiff/<TMS>/<z>/<x>/<y>.tif`` are
        described as they are on disk.
    zooms : iterable of int, optional
        Zoom levels to catalogue; default every level on disk.
    include_web_tiles : bool
        Add each tile's PNG web tiles (one per statistic, where they exist)
        as ``'visual'`` assets of its item.
    datetime : datetime.datetime, optional
        One nominal time for every item (timezone-aware; naive means UTC).
        Default: when each GeoTIFF was written.
    license : str
        SPDX license id of the collections, or ``'other'``.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Path
        The root ``<dir_output>/stac/catalog.json``.

    Raises
    ------
    InputError
        No GeoTIFFs, or a GeoTIFF that cannot be read or whose bands are not
        the config's statistics.
    OutputError
        The output folder cannot be written.

    Notes
    -----
    One collection per zoom level (id ``<TMS>-z<z>``), one item per tile (id
    ``<TMS>-<z>-<x>-<y>``) with the GeoTIFF as asset ``'data'``; links and
    asset paths are relative. The result validates against the core STAC
    1.1 schemas bundled with pystac (no network needed).
    """
    tiles = Tiles(config)
    if datetime is not None and datetime.tzinfo is None:
        datetime = datetime.replace(tzinfo=dt.UTC)
    paths = tiles.get_filenames_from_dir("geotiff")
    if zooms is not None:
        wanted = {int(z) for z in zooms}
        paths = [p for p in paths if tile_from_path(p).z in wanted]
    if not paths:
        raise InputError(
            Layout.of(config).tile_root("geotiff"),
            "holds no GeoTIFFs to catalogue; run the pipeline first",
        )
    by_zoom: dict[int, list[Path]] = {}
    for p in paths:
        by_zoom.setdefault(tile_from_path(p).z, []).append(p)

    names = ", ".join(config.statistic_names)
    root = pystac.Catalog(
        id=f"grouputils-{config.tms}",
        title="Ice-wedge polygon rasters (grouputils)",
        description=(
            f"GeoTIFF pyramid of a grouputils run on the {config.tms} tile matrix set, zoom levels "
            f"{min(by_zoom)} to {max(by_zoom)}: one float32 band per statistic ({names}), NaN where "
            "there is no data. One collection per zoom level, one item per tile."
        ),
    )
    bar = tqdm(total=len(paths), desc="STAC items", unit="item", disable=not progress)
    for z in sorted(by_zoom, reverse=True):
        items = []
        for p in by_zoom[z]:
            items.append(_item(config, tiles, p, datetime, include_web_tiles))
            bar.update()
        boxes = np.array([it.bbox for it in items])
        times = sorted(it.datetime for it in items)
        collection = pystac.Collection(
            id=f"{config.tms}-z{z}",
            title=f"Zoom level {z}",
            description=(
                f"{len(items)} GeoTIFF tiles of zoom level {z} of {config.tms} "
                f"({config.tile_size} x {config.tile_size} pixels each); bands: {names}."
            ),
            extent=pystac.Extent(
                pystac.SpatialExtent(
                    [
                        [
                            float(boxes[:, 0].min()),
                            float(boxes[:, 1].min()),
                            float(boxes[:, 2].max()),
                            float(boxes[:, 3].max()),
                        ]
                    ]
                ),
                pystac.TemporalExtent([[times[0], times[-1]]]),
            ),
            license=license,
            keywords=["ice-wedge polygons", "permafrost", "raster", "tiles"],
            extra_fields={"grouputils:z": z, "grouputils:tms": config.tms},
        )
        collection.add_items(items)
        root.add_child(collection)
    bar.close()

    final = Layout.of(config).stac
    tmp = config.dir_output / f".{STAC_DIR}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        root.normalize_hrefs(str(final.resolve()))
        root.make_all_asset_hrefs_relative()
        # tmp is a sibling of final: relative paths written there stay right after the rename
        root.save(pystac.CatalogType.SELF_CONTAINED, dest_href=str(tmp.resolve()))
        replace_folder(tmp, final)  # readers see the old or the new catalogue, never none
    except OSError as e:
        raise OutputError(final, f"cannot write the STAC catalogue ({e.strerror or e})") from e
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".old")):
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(leftover)
    return final / "catalog.json"


def validate_stac_catalog(path: str | Path) -> int:
    """Validate a catalogue and everything under it against the core STAC schemas.

    Parameters
    ----------
    path : str or Path
        A ``catalog.json`` (or ``collection.json``).

    Returns
    -------
    int
        Number of items validated.

    Raises
    ------
    pystac.errors.STACValidationError
        An object breaks the schema (the message names it).
    InputError
        The file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "STAC catalogue not found")
    from pystac.validation import validate_all

    catalog = pystac.read_file(str(path.resolve()))
    validate_all(catalog)
    return sum(1 for _ in catalog.get_items(recursive=True))
