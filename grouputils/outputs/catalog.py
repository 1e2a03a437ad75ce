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
* **Core STAC plus the projection extension.** The bands are described with
  STAC 1.1's core ``bands`` field on the GeoTIFF asset (name, description,
  ``data_type`` float32, ``nodata`` NaN, ``unit`` and ``statistics``:
  minimum, maximum, mean, standard deviation, valid percent, read from the
  tags each GeoTIFF carries). Each item declares the projection extension
  v2.0 (``proj:code``, ``proj:shape``, ``proj:transform``, ``proj:bbox`` of
  the GeoTIFF's grid), so ``odc-stac`` or ``stackstac`` can lay the tiles out
  without opening them. The catalogue validates offline
  (:func:`validate_stac_catalog`: the core schemas pystac ships and the
  projection schema shipped in ``grouputils/assets``). Tile indices and the
  resampling rule are stored under the ``grouputils:`` prefix.
* **Relative links and asset paths** (a self-contained catalogue): the output
  folder can be moved or copied, and the catalogue still resolves.
* **Footprints in longitude/latitude** (STAC requires WGS 84): for
  ``WorldCRS84Quad`` the tile bounds from morecantile as they are; for a
  projected tile matrix set the tile's outline, densified, is transformed.
* **datetime**: when the polygons in the tile were acquired
  (:mod:`grouputils.outputs.acquisition`: their ``Date``/``Time``
  attributes, else the date in their input file's name), never when a file
  was written: one scene gives ``datetime``; several give
  ``start_datetime``/``end_datetime`` and, as ``datetime``, the latest (what
  the tile shows is the ground as of then); a parent tile spans its children.
  Two identical runs write byte-identical catalogues. Pass ``datetime=`` to
  use one nominal time instead (required when nothing carries a date).
* **From the run's records or from disk**, the same bytes: the pipeline
  hands ``write_stac_catalog`` one :class:`ItemRecord` per tile (kind, band
  statistics, acquisition span, from its run state:
  :mod:`grouputils.run.records`) and no GeoTIFF or staged tile is opened;
  without records each GeoTIFF is opened for its tags and grid and the
  staged tiles for their dates (:mod:`grouputils.outputs.catalog_items`).
* **Written atomically**: the catalogue is built in a temporary sibling
  folder and swapped in by two renames, so readers never see a half-written
  catalogue, and rewriting it after a rerun replaces it entirely.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.resources
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pystac
from morecantile import Tile
from pystac.extensions.projection import ProjectionExtension
from pystac.serialization import identify_stac_object
from pystac.utils import make_absolute_href
from tqdm.auto import tqdm

from grouputils.core.config import Config
from grouputils.core.errors import InputError, OutputError
from grouputils.core.layout import Layout
from grouputils.core.raster.geotiff import check_bands, geotiff_crs
from grouputils.core.swap import replace_folder
from grouputils.core.tiles import Tiles, tile_from_path, tile_order
from grouputils.outputs.acquisition import DATE_ATTRIBUTE, Span, acquisition_spans
from grouputils.outputs.catalog_items import (
    BandRecord,
    Footprints,
    Grid,
    ItemRecord,
    item_id,
    make_item,
    read_item_record,
    tms_grid,
)

if TYPE_CHECKING:  # pystac.validation imports jsonschema and its format checkers: seconds
    from pystac.validation import JsonSchemaSTACValidator

__all__ = [
    "STAC_DIR",
    "BandRecord",
    "ItemRecord",
    "UndatedError",
    "catalog_path",
    "item_id",
    "offline_validator",
    "validate_stac_catalog",
    "write_stac_catalog",
]

STAC_DIR = Layout(Path()).stac.name
"""Folder of the catalogue inside the output folder."""

#: The projection extension's schema, shipped with grouputils
#: (Apache-2.0, from stac-extensions/projection).
_PROJ_SCHEMA = "stac-projection-v2.0.0-schema.json"


class UndatedError(InputError):
    """A tile's polygons carry no acquisition date, so its STAC item has no time."""


def catalog_path(config: Config) -> Path:
    """Path of the root ``catalog.json`` of ``config``'s run."""
    return Layout.of(config).catalog


def _described(
    config: Config, tiles: Tiles, paths: list[Path], when: dt.datetime | None
) -> list[tuple[ItemRecord, Grid]]:
    """Records and grids of the GeoTIFFs on disk (each opened once), dated from the staged tiles."""
    spans: Mapping[Tile, Span] = {}
    if when is None:  # checked before any GeoTIFF is opened
        spans = acquisition_spans(tiles, [tile_from_path(p) for p in paths])
        _check_dated(tiles, [t for t in map(tile_from_path, paths) if t not in spans])
    out = []
    for p in paths:
        record, grid = read_item_record(config, p, spans.get(tile_from_path(p)))
        out.append((record, grid))
    return out


def _from_records(
    config: Config, tiles: Tiles, records: Iterable[ItemRecord], zooms: set[int] | None
) -> list[tuple[ItemRecord, Grid]]:
    """Records in z, x, y order with the grids the tile matrix set gives (no file opened)."""
    crs = geotiff_crs(tiles)
    out = []
    for rec in sorted(records, key=lambda r: tile_order(r.tile)):
        if zooms is not None and rec.tile.z not in zooms:
            continue
        names = tuple(b.name for b in rec.bands)
        check_bands(tiles.path("geotiff", rec.tile), names, config, what="its record's bands")
        out.append((rec, tms_grid(tiles, rec.tile, crs)))
    return out


def _spans(
    tiles: Tiles, described: list[tuple[ItemRecord, Grid]], when: dt.datetime | None
) -> list[Span]:
    if when is not None:
        return [(when, when) for _ in described]
    _check_dated(tiles, [rec.tile for rec, _ in described if rec.span is None])
    return [rec.span for rec, _ in described if rec.span is not None]


def _check_dated(tiles: Tiles, undated: list[Tile]) -> None:
    if undated:
        raise UndatedError(
            tiles.path("geotiff", undated[0]),
            f"{len(undated)} GeoTIFF tile(s) have no acquisition date: their staged polygons "
            f"have no {DATE_ATTRIBUTE!r} attribute (YYYYMMDD) and their input file names carry "
            "no YYYYMMDD date (or the staged tiles are gone); pass datetime= to "
            "write_stac_catalog for one nominal time",
        )


def write_stac_catalog(
    config: Config,
    *,
    zooms: Iterable[int] | None = None,
    include_web_tiles: bool = True,
    datetime: dt.datetime | None = None,
    license: str = "other",
    progress: bool = False,
    records: Iterable[ItemRecord] | None = None,
) -> Path:
    """Write (or rewrite) the STAC catalogue of the run's GeoTIFFs.

    Parameters
    ----------
    config : Config
        The run's config; without ``records`` its GeoTIFFs
        ``geotiff/<TMS>/<z>/<x>/<y>.tif`` are described as they are on disk.
    zooms : iterable of int, optional
        Zoom levels to catalogue; default every level on disk.
    include_web_tiles : bool
        Add each tile's PNG web tiles (one per statistic, where they exist)
        as ``'visual'`` assets of its item.
    datetime : datetime.datetime, optional
        One nominal time for every item (timezone-aware; naive means UTC).
        Default: the acquisition times of the polygons in each tile
        (:func:`grouputils.outputs.acquisition.acquisition_spans`).
    license : str
        SPDX license id of the collections, or ``'other'``.
    progress : bool
        Show a progress bar.
    records : iterable of ItemRecord, optional
        One record per GeoTIFF to catalogue (what the run recorded of each
        tile: kind, band statistics, acquisition span); then no GeoTIFF and
        no staged tile is opened, and each grid follows from the tile matrix
        set and ``config.tile_size`` as the GeoTIFF writer lays it out. For
        the same outputs the catalogue is byte-identical to the one read
        from disk.

    Returns
    -------
    Path
        The root ``<dir_output>/stac/catalog.json``.

    Raises
    ------
    InputError
        No GeoTIFFs (or records), or a GeoTIFF that cannot be read or whose
        bands (or record's bands) are not the config's statistics.
    UndatedError
        No ``datetime`` given and a tile's polygons carry no acquisition date.
    OutputError
        The output folder cannot be written.

    Notes
    -----
    One collection per zoom level (id ``<TMS>-z<z>``), one item per tile (id
    ``<TMS>-<z>-<x>-<y>``) with the GeoTIFF as asset ``'data'``; links and
    asset paths are relative. Items declare the projection extension v2.0.
    :func:`validate_stac_catalog` validates the result with no network.
    """
    tiles = Tiles(config)
    if datetime is not None and datetime.tzinfo is None:
        datetime = datetime.replace(tzinfo=dt.UTC)
    wanted = None if zooms is None else {int(z) for z in zooms}
    if records is not None:
        described = _from_records(config, tiles, records, wanted)
    else:
        paths = tiles.get_filenames_from_dir("geotiff")
        if wanted is not None:
            paths = [p for p in paths if tile_from_path(p).z in wanted]
        described = _described(config, tiles, paths, datetime) if paths else []
    if not described:
        raise InputError(
            Layout.of(config).tile_root("geotiff"),
            "holds no GeoTIFFs to catalogue; run the pipeline first",
        )
    spans = _spans(tiles, described, datetime)
    by_zoom: dict[int, list[tuple[ItemRecord, Grid, Span]]] = {}
    for (rec, grid), span in zip(described, spans, strict=True):
        by_zoom.setdefault(rec.tile.z, []).append((rec, grid, span))

    names = ", ".join(config.statistic_names)
    root = pystac.Catalog(
        id=f"grouputils-{config.tms}",
        title="Ice-wedge polygon rasters (grouputils)",
        description=(
            f"GeoTIFF pyramid of a grouputils run on the {config.tms} tile matrix set, zoom "
            f"levels {min(by_zoom)} to {max(by_zoom)}: one float32 band per statistic ({names}), "
            "NaN where there is no data. One collection per zoom level, one item per tile."
        ),
    )
    footprints = Footprints(tiles)
    bar = tqdm(total=len(described), desc="STAC items", unit="item", disable=not progress)
    for z in sorted(by_zoom, reverse=True):
        items = []
        for rec, grid, span in by_zoom[z]:
            items.append(make_item(config, footprints, rec, span, grid, include_web_tiles))
            bar.update()
        boxes = np.array([it.bbox for it in items])
        first = min(span[0] for _, _, span in by_zoom[z])
        last = max(span[1] for _, _, span in by_zoom[z])
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
                pystac.TemporalExtent([[first, last]]),
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


def offline_validator() -> JsonSchemaSTACValidator:
    """A pystac validator that needs no network for grouputils' catalogues.

    pystac ships the core STAC schemas; the projection extension's schema
    (v2.0.0) is shipped in ``grouputils/assets`` and put in this validator's
    own schema cache (the validator pystac registers globally is untouched).
    """
    from pystac.validation import JsonSchemaSTACValidator

    validator = JsonSchemaSTACValidator()
    text = (importlib.resources.files("grouputils") / "assets" / _PROJ_SCHEMA).read_text("utf-8")
    validator.schema_cache[ProjectionExtension.get_schema_uri()] = json.loads(text)
    return validator


def _validate_tree(href: str, validator: JsonSchemaSTACValidator, stac_io: pystac.StacIO) -> int:
    from pystac.validation import validate_dict

    data = stac_io.read_json(href)
    info = identify_stac_object(data)
    validate_dict(
        data,
        stac_object_type=info.object_type,
        stac_version=str(info.version_range.latest_valid_version()),
        extensions=list(info.extensions),
        href=href,
        validator=validator,
    )
    if info.object_type == pystac.STACObjectType.ITEM:
        return 1
    n = 0
    for link in data.get("links", []):
        if link.get("rel") in (pystac.RelType.ITEM, pystac.RelType.CHILD):
            n += _validate_tree(
                make_absolute_href(link["href"], start_href=href), validator, stac_io
            )
    return n


def validate_stac_catalog(path: str | Path) -> int:
    """Validate a catalogue and everything under it, offline.

    Core objects are checked against the STAC 1.1 schemas pystac ships, and
    the projection extension against its v2.0.0 schema shipped with
    grouputils (:func:`offline_validator`); nothing is downloaded.

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
    return _validate_tree(str(path.resolve()), offline_validator(), pystac.StacIO.default())
