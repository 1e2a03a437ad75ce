"""Reading inputs and writing and reading staged tiles (GeoPackages).

* :func:`choose_layer` and :func:`read_batches`: open an input GeoPackage and
  read it in Arrow batches, turning every failure into an
  :class:`~grouputils.core.errors.InputError` that names the file;
  :func:`check_counts` refuses what was cut short or holds no polygons.
* :func:`write_gpkg`: write a staged tile (GeoPackage 1.2, the TMS CRS, the
  parts fingerprint in the layer metadata).
* :func:`staged_fingerprint` and :func:`read_staged_tile`: read them back,
  refusing tiles that are missing, broken or stale.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyogrio
import pyproj

from grouputils.core.config import Config
from grouputils.core.errors import InputError, NotFinalizedError, RepairWarning
from grouputils.core.input_checks import check_feature_count
from grouputils.core.staging.parts import PartsStore
from grouputils.core.staging.schema import GPKG_VERSION, META_KEY, STAGED_LAYER, STAGING_COLUMNS
from grouputils.core.tiles import Tiles, tile_from_path

__all__ = [
    "choose_layer",
    "read_batches",
    "check_counts",
    "write_gpkg",
    "staged_fingerprint",
    "read_staged_tile",
    "tms_crs",
]


def tms_crs(tiles: Tiles) -> pyproj.CRS:
    """The tile matrix set's CRS as a pyproj CRS."""
    return pyproj.CRS.from_user_input(tiles.tms.crs.srs)


def choose_layer(path: Path, wanted: str) -> tuple[str, dict[str, Any]]:
    """The layer of ``path`` to stage (its only one, or ``wanted``) and its pyogrio info.

    Raises
    ------
    InputError
        The file cannot be opened, holds no layers, or several and none is ``wanted``.
    """
    try:
        layers = pyogrio.list_layers(path)
    except Exception as e:  # pyogrio raises DataSourceError and others
        raise InputError(
            path, f"cannot be opened as a vector file such as a GeoPackage ({e})"
        ) from e
    names = [str(n) for n in layers[:, 0]] if len(layers) else []
    if not names:
        raise InputError(path, "holds no layers")
    if len(names) == 1:
        layer = names[0]
    elif wanted in names:
        layer = wanted
    else:
        raise InputError(
            path, f"has layers {names} and none is called {wanted!r} (set input_layer)"
        )
    try:
        info = pyogrio.read_info(path, layer=layer, force_total_bounds=True)
    except Exception as e:
        raise InputError(path, f"layer {layer!r} cannot be read ({e})") from e
    return layer, info


def read_batches(
    path: Path, layer: str, batch_size: int
) -> Iterator[tuple[dict[str, Any], pa.RecordBatch]]:
    """``(meta, batch)`` pairs of Arrow record batches of a layer, with feature ids.

    Raises
    ------
    InputError
        Reading fails.
    """
    try:
        with pyogrio.open_arrow(
            path, layer=layer, return_fids=True, batch_size=batch_size, use_pyarrow=True
        ) as (meta, reader):
            for batch in reader:
                yield meta, batch
    except InputError:
        raise
    except Exception as e:
        if isinstance(e, (GeneratorExit, KeyboardInterrupt)):
            raise
        raise InputError(path, f"cannot be read ({e})") from e


def check_counts(path: Path, layer: str, info: dict[str, Any], counts: dict[str, int]) -> None:
    """Refuse an input that was cut short, is empty or holds no polygons; warn about repairs."""
    check_feature_count(path, layer, info.get("features"), counts["read"])
    if counts["read"] == 0:
        raise InputError(path, f"layer {layer!r} has no features")
    if counts["kept"] == 0:
        raise InputError(
            path, f"layer {layer!r} has no polygon geometries ({counts['dropped']} dropped)"
        )
    if counts["dropped"]:
        warnings.warn(
            f"{path}: dropped {counts['dropped']} features that are not polygons (or are empty)",
            RepairWarning,
            stacklevel=3,
        )
    if counts["repaired"]:
        made_valid = counts["repaired"] - counts["from_collections"]
        how = [f"{made_valid} invalid polygons with make_valid"] if made_valid else []
        if counts["from_collections"]:
            how.append(
                f"{counts['from_collections']} GeometryCollections by keeping their polygonal part"
            )
        warnings.warn(
            f"{path}: repaired {counts['repaired']} features: {' and '.join(how)}",
            RepairWarning,
            stacklevel=3,
        )


def write_gpkg(
    table: pa.Table, path: Path, crs: pyproj.CRS, metadata: dict[str, str], tids: np.ndarray
) -> None:
    """Write a staged tile: ``table``'s WKB ``geometry`` and columns into layer ``staged``.

    Parameters
    ----------
    table : pyarrow.Table
        Rows with a WKB ``geometry`` column.
    path : Path
        Destination (a temporary name; the caller renames it).
    crs : pyproj.CRS
        The TMS CRS.
    metadata : dict of str
        Layer metadata (the parts fingerprint and the tile).
    tids : ndarray of int
        Shapely geometry type ids by row (declares Polygon or MultiPolygon when uniform).
    """
    geometry_type = (
        "Polygon" if np.all(tids == 3) else ("MultiPolygon" if np.all(tids == 6) else "Unknown")
    )
    field = table.schema.field("geometry").with_metadata({b"ARROW:extension:name": b"geoarrow.wkb"})
    table = table.cast(table.schema.set(table.schema.get_field_index("geometry"), field))
    pyogrio.write_arrow(
        table,
        path,
        layer=STAGED_LAYER,
        driver="GPKG",
        geometry_name="geometry",
        geometry_type=geometry_type,
        crs=_gpkg_crs(crs),
        layer_metadata=metadata,
        dataset_options={"VERSION": GPKG_VERSION},
    )


def _gpkg_crs(crs: pyproj.CRS) -> str:
    return _gpkg_crs_of_wkt(crs.to_wkt())


@functools.lru_cache(maxsize=16)
def _gpkg_crs_of_wkt(wkt: str) -> str:
    # GeoPackage coordinates are always (x, y) = (longitude, latitude), whatever the
    # CRS's axis order, so OGC:CRS84 (no EPSG code; GDAL would store it as an
    # unregistered srs_id 100000, organization NONE) is stored as EPSG:4326, the
    # registered code every GeoPackage reader knows. The coordinates do not change.
    # ``equals`` compares the two definitions without searching PROJ's database
    # (``to_epsg`` did, about 20 ms, once per process); cached by WKT, as every
    # staged tile of a run has the same CRS.
    crs = pyproj.CRS.from_wkt(wkt)
    if crs.equals(pyproj.CRS.from_epsg(4326), ignore_axis_order=True):
        return "EPSG:4326"
    return wkt


def staged_fingerprint(path: Path) -> str | None:
    """The parts fingerprint a finalized staged tile records (None if missing or unreadable)."""
    if not path.exists():
        return None
    try:
        meta = pyogrio.read_info(path, layer=STAGED_LAYER).get("layer_metadata") or {}
    except Exception:
        return None
    value = meta.get(META_KEY)
    return None if value is None else str(value)


def read_staged_tile(
    path: str | Path, config: Config, columns: Sequence[str] | None = None
) -> gpd.GeoDataFrame:
    """Read a finalized staged tile, refusing ones that are missing, broken or stale.

    Parameters
    ----------
    path : str or Path
        ``staged/<TMS>/<z>/<x>/<y>.gpkg``.
    config : Config
        The run's settings (to find the tile's staging parts).
    columns : sequence of str, optional
        Read only these columns (and the geometry); names the file lacks are
        left out. Default: every column. The file must hold every staging
        column either way.

    Returns
    -------
    geopandas.GeoDataFrame
        Rows of the tile, in the TMS CRS.

    Raises
    ------
    InputError
        The path is not a tile path, is missing, unreadable, or lacks staging columns.
    NotFinalizedError
        The tile's parts changed since it was finalized (run ``stager.finalize()``).
    """
    path = Path(path)
    tile = tile_from_path(path)
    if not path.exists():
        raise InputError(path, "staged tile does not exist")
    try:
        info = pyogrio.read_info(path, layer=STAGED_LAYER)
    except Exception as e:
        raise InputError(path, f"is not a readable staged GeoPackage ({e})") from e
    recorded = (info.get("layer_metadata") or {}).get(META_KEY)
    if recorded is None:
        raise NotFinalizedError(
            path, "was not written by stager.finalize(): run finalize after staging"
        )
    parts = PartsStore(config)
    if parts.tile_dir(tile).is_dir() and recorded != parts.tile_fingerprint(tile):
        raise NotFinalizedError(
            path, "its inputs changed since it was finalized: run stager.finalize()"
        )
    missing = [c for c in STAGING_COLUMNS if c not in set(info.get("fields", ()))]
    if missing:
        raise InputError(path, f"lacks staging columns {missing}")
    try:
        gdf = pyogrio.read_dataframe(
            path,
            layer=STAGED_LAYER,
            use_arrow=True,
            columns=None if columns is None else list(columns),
        )
    except Exception as e:
        raise InputError(path, f"cannot be read ({e})") from e
    return gdf
