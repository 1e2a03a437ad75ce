"""Geometry processing of staging: from an input's Arrow batches to tile-tagged rows.

For every batch of one input file, :class:`ChunkProcessor`

* keeps polygons only, repairing invalid ones and reducing GeometryCollections
  to their polygonal part (:mod:`grouputils.core.polygons`);
* unwraps longitudes of a lon/lat file that crosses the antimeridian;
* simplifies in metres (the input's projected CRS, or a local Lambert
  azimuthal equal-area projection centred on the file) and computes each
  polygon's ellipsoidal area;
* transforms into the TMS CRS and assigns every polygon to every tile its
  geometry intersects, and to its centroid's tile, refusing polar and
  fanning-out polygons (:func:`grouputils.core.placement.place_polygons`);
* computes the ``staging_*`` columns.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyproj
import shapely

from grouputils.core.antimeridian import pole_points, tms_wrap, unwrap_longitudes
from grouputils.core.placement import place_polygons
from grouputils.core.polygons import polygons_only
from grouputils.core.staging.io import tms_crs
from grouputils.core.staging.schema import FID, GTYPE, SOURCE, TILE_X, TILE_Y
from grouputils.core.tiles import Tile, Tiles, tile_to_str

__all__ = ["ChunkProcessor"]


class ChunkProcessor:
    """Turns Arrow batches of one input into tile-tagged Arrow tables.

    Parameters
    ----------
    tiles : Tiles
        Tile maths of the run (and its settings, ``tiles.config``).
    path : Path
        The input file (named in errors).
    key : str
        The input's key (``staging_id`` is ``<key>:<fid>``).
    src_crs : pyproj.CRS
        The input's CRS.
    info : dict
        pyogrio's layer info (``total_bounds`` centres the local projection).
    """

    def __init__(
        self, tiles: Tiles, path: Path, key: str, src_crs: pyproj.CRS, info: dict[str, Any]
    ) -> None:
        self.tiles = tiles
        self.config = tiles.config
        self.path = path
        self.key = key
        self.filename = path.name
        crs_tms = tms_crs(tiles)
        # Simplification and areas need metres. When the input's CRS is
        # projected in metres (EPSG:3413 for IWP), simplify there and take
        # each polygon's ellipsoidal area as its planar area divided by the
        # projection's areal scale factor at its centroid (in lon/lat; pyproj
        # Proj.get_factors): exact for equal-area projections and, within a
        # polygon of a few metres, to ~1e-5 for any other. Otherwise (e.g.
        # lon/lat input) go through a local Lambert azimuthal equal-area
        # projection centred on the file. Either way the geometries are
        # transformed once more, into the TMS CRS.
        unit = src_crs.axis_info[0].unit_conversion_factor if src_crs.axis_info else None
        self.metric_source = bool(src_crs.is_projected and unit == 1.0)
        self.geographic_source = bool(src_crs.is_geographic)
        self.wrap = tms_wrap(crs_tms)
        self.tms_to_ll = pyproj.Transformer.from_crs(crs_tms, "EPSG:4326", always_xy=True)
        self.to_ll = pyproj.Transformer.from_crs(src_crs, "EPSG:4326", always_xy=True)
        if self.metric_source:
            self.proj = pyproj.Proj(src_crs)
            self.to_local = None
            self.to_tms = pyproj.Transformer.from_crs(src_crs, crs_tms, always_xy=True)
        else:
            bounds = info.get("total_bounds")
            if bounds is None or not np.all(np.isfinite(bounds)):
                bounds = (0.0, 0.0, 0.0, 0.0)
            cx, cy = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
            lon, lat = self.to_ll.transform(cx, cy)
            if self.geographic_source and bounds[2] - bounds[0] > 180:
                lon = 180.0  # a lon/lat file that crosses the antimeridian
            if not (np.isfinite(lon) and np.isfinite(lat)):
                lon, lat = 0.0, 0.0
            laea = pyproj.CRS.from_proj4(
                f"+proj=laea +lat_0={lat:.6f} +lon_0={lon:.6f} +datum=WGS84 +units=m +no_defs"
            )
            self.to_local = pyproj.Transformer.from_crs(src_crs, laea, always_xy=True)
            self.to_tms = pyproj.Transformer.from_crs(laea, crs_tms, always_xy=True)
        local_crs = src_crs if self.metric_source else laea
        self.poles_local = pole_points(local_crs, self.wrap.poles_singular)

    def process(
        self, batch_meta: tuple[dict[str, Any], pa.RecordBatch]
    ) -> tuple[pa.Table, dict[str, int]]:
        """Polygons of one batch, repaired, simplified and tagged with their tiles.

        Returns
        -------
        table : pyarrow.Table
            One row per (polygon, tile), with the ``staging_*`` columns, a WKB
            ``geometry`` and the hidden columns of parts.
        counts : dict of int
            ``read``, ``kept``, ``rows``, ``repaired``, ``dropped``, ``from_collections``.
        """
        meta, batch = batch_meta
        table = pa.Table.from_batches([batch])
        gname = meta.get("geometry_name") or "wkb_geometry"
        if gname not in table.column_names:
            gname = next(n for n in table.column_names if n in ("geom", "geometry", "wkb_geometry"))
        fid_name = meta.get("fid_column") or "OGC_FID"
        if fid_name not in table.column_names:
            fid_name = "OGC_FID"
        fids = table.column(fid_name).to_numpy().astype("i8")
        geoms = shapely.from_wkb(
            table.column(gname).to_numpy(zero_copy_only=False), on_invalid="ignore"
        )
        attrs = table.drop_columns([c for c in (gname, fid_name) if c in table.column_names])
        n_read = len(geoms)

        geoms, keep, pcounts = polygons_only(geoms)
        repaired = pcounts.repaired
        dropped = int((~keep).sum())
        geoms = geoms[keep]
        fids = fids[keep]
        if not keep.all():
            attrs = attrs.filter(pa.array(keep))
        if len(geoms) == 0:  # nothing polygonal in this chunk (pyproj fails on empty arrays)
            return attrs, {
                "read": n_read,
                "kept": 0,
                "rows": 0,
                "repaired": repaired,
                "dropped": dropped,
                "from_collections": pcounts.from_collections,
            }

        if self.geographic_source:
            geoms, _ = unwrap_longitudes(geoms)
        if self.to_local is None:
            local = geoms
        else:
            local = shapely.transform(geoms, self._fwd(self.to_local), interleaved=False)  # type: ignore[arg-type]  # the stubs lack the (x, y) form of interleaved=False
        tol = self.config.simplify_tolerance
        if tol > 0:
            # Quadrilaterals (5 coordinates with the closing one), most IWP
            # detections, are already minimal: only larger rings are simplified.
            ncoord = shapely.get_num_coordinates(local)
            big = np.flatnonzero(ncoord > 5)
            simple = shapely.simplify(local[big], tol, preserve_topology=True)
            changed = shapely.get_num_coordinates(simple) != ncoord[big]
            ok = changed.copy()
            ok[changed] = ~shapely.is_empty(simple[changed]) & shapely.is_valid(simple[changed])
            local = local.copy()
            local[big[ok]] = simple[ok]
        area = shapely.area(local)
        geoms = shapely.transform(local, self._fwd(self.to_tms), interleaved=False)  # type: ignore[arg-type]  # as above
        rows = place_polygons(
            self.tiles,
            self.path,
            fids,
            local,
            geoms,
            self.wrap,
            self.poles_local,
            self.tms_to_ll,
        )
        poly_idx, tx, ty, within, row_geoms, cx, cy = rows
        # rows grouped by tile (stable: polygon order within a tile), the order the
        # parts are written in, so the attributes are taken once, already in it
        by_tile = np.lexsort((ty, tx))
        poly_idx, tx, ty, within, row_geoms = (
            a[by_tile] for a in (poly_idx, tx, ty, within, row_geoms)
        )
        if self.metric_source:
            # the areal scale at each polygon's centroid, from the TMS centroids
            # placement computed anyway: a second centroid of every polygon, in
            # the input's CRS, cost up to 40 ms of the real file's 0.4 s
            lon, lat = self.tms_to_ll.transform(cx, cy)
            area = area / self.proj.get_factors(lon, lat).areal_scale
        z = self.config.z
        # strings built once per distinct tile / via Arrow, not once per row in Python
        # one int64 key per tile: np.unique over columns of a 2-row array sorts 10x slower
        uniq, inv = np.unique(tx.astype("i8") << 32 | ty.astype("i8"), return_inverse=True)
        names = np.array(
            [tile_to_str(Tile(int(k >> 32), int(k & 0xFFFFFFFF), z)) for k in uniq], dtype=object
        )
        tile_str = names[inv.ravel()]
        ids = pc.binary_join_element_wise(
            self.key, pc.cast(pa.array(fids[poly_idx]), pa.string()), ":"
        )
        out = attrs.take(pa.array(poly_idx))
        cols = {
            "staging_centroid_x": pa.array(cx[poly_idx]),
            "staging_centroid_y": pa.array(cy[poly_idx]),
            "staging_area": pa.array(area[poly_idx]),
            "staging_id": ids,
            "staging_filename": pa.repeat(pa.scalar(self.filename, pa.string()), len(poly_idx)),
            "staging_tile": pa.array(tile_str, type=pa.string()),
            "staging_centroid_within_tile": pa.array(within),
            "staging_duplicated": pa.array(np.zeros(len(poly_idx), dtype=bool)),
            "geometry": pa.array(shapely.to_wkb(row_geoms), type=pa.binary()),
            SOURCE: pa.repeat(pa.scalar(self.key, pa.string()), len(poly_idx)),
            FID: pa.array(fids[poly_idx]),
            GTYPE: pa.array(shapely.get_type_id(row_geoms).astype("i1")),
            TILE_X: pa.array(tx),
            TILE_Y: pa.array(ty),
        }
        for name, arr in cols.items():
            if name in out.column_names:
                out = out.drop_columns([name])
            out = out.append_column(name, arr)
        counts = {
            "read": n_read,
            "kept": len(geoms),
            "rows": len(poly_idx),
            "repaired": repaired,
            "dropped": dropped,
            "from_collections": pcounts.from_collections,
        }
        return out, counts

    @staticmethod
    def _fwd(
        transformer: pyproj.Transformer,
    ) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        def f(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return transformer.transform(x, y)

        return f
