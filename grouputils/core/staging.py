"""Staging: cut input GeoPackages of polygons into tiles of a tile matrix set.

Staging is a *map* step followed by a *reduce* step:

``TileStager.stage(path)`` (map, one input file, any worker)
    refuses a damaged file whole (:mod:`grouputils.core.input_checks`: SQLite
    ``quick_check``, then features read against the layer's count), reads the
    file in chunks (pyogrio, Arrow), assigns the default CRS if the
    file has none (with a warning), repairs invalid polygons, keeps the
    polygonal part of GeometryCollections and drops non-polygons (counted,
    with a warning; :mod:`grouputils.core.polygons`), simplifies in a local
    equal-area projection, computes the ``staging_*`` properties, splits
    polygons at the antimeridian and refuses ones around a pole or fanning out
    over far too many tiles (:mod:`grouputils.core.placement`), assigns every polygon to
    every tile its geometry intersects (and to its centroid's tile), and writes
    one *part* per (input file, tile, chunk) under ``staging-parts/``. Nothing is
    ever appended: every part has its own name, written to a temporary file
    and renamed. Last, a small per-file manifest is renamed into place; it is
    what makes the new parts count ("commit"). Parts of an earlier staging of
    the same file are deleted only after that. A run killed at any point
    therefore leaves either the old or the new staging of the file, never a
    mix, and re-staging a file replaces its rows instead of duplicating them.

``TileStager.finalize()`` (reduce, one tile at a time, any worker)
    gathers the committed parts of a tile, flags duplicates across input files
    (:mod:`grouputils.core.dedup`), sorts rows deterministically and writes the
    final ``staged/<TMS>/<z>/<x>/<y>.gpkg``. The tile records a fingerprint of
    the parts it was made from; the rasterizer refuses a tile whose parts have
    changed since (:class:`~grouputils.core.errors.NotFinalizedError`).

Because every file is written by exactly one task and renamed into place,
this holds for many processes on one machine and for many hosts writing to
one shared file system, with no locks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pyogrio
import pyproj
import shapely
from tqdm.auto import tqdm

from grouputils.core.antimeridian import pole_points, tms_wrap, unwrap_longitudes
from grouputils.core.atomic import write_json_atomic, write_text_atomic
from grouputils.core.config import Config
from grouputils.core.dedup import duplicate_flags
from grouputils.core.errors import (
    ConfigError,
    InputError,
    MissingCRSWarning,
    NotFinalizedError,
    OutputError,
    RepairWarning,
)
from grouputils.core.input_checks import check_feature_count, check_integrity
from grouputils.core.placement import neighbour_tile, place_polygons, tiles_under_bounds
from grouputils.core.polygons import polygons_only
from grouputils.core.scratch import local_input, output_path
from grouputils.core.tiles import Tile, Tiles, tile_from_path, tile_to_str

__all__ = [
    "initialize_stager",
    "TileStager",
    "StageResult",
    "read_staged_tile",
    "STAGING_COLUMNS",
    "STAGED_LAYER",
]

log = logging.getLogger(__name__)

STAGED_LAYER = "staged"
STAGING_COLUMNS = (
    "staging_centroid_x",
    "staging_centroid_y",
    "staging_area",
    "staging_id",
    "staging_filename",
    "staging_tile",
    "staging_centroid_within_tile",
    "staging_duplicated",
)
# Settings that change what staging writes (chunk_size does not, by design).
#: GeoPackage version of staged tiles: 1.2 is what GDAL 3.6 (QGIS LTR) writes
#: itself and opens without a version warning (newer GDAL defaults to 1.4).
GPKG_VERSION = "1.2"
STAGING_SETTINGS = ("tms", "z", "input_layer", "default_crs", "simplify_tolerance")
FINALIZE_SETTINGS = STAGING_SETTINGS + ("dedup_overlap",)
_META_KEY = "grouputils_parts"
_SOURCE = "_source"  # hidden sort keys in parts, dropped from staged tiles
_FID = "_fid"
_MANIFESTS = "manifests"
_NEIGHBOURS = [(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dx, dy) != (0, 0)]


@dataclasses.dataclass(frozen=True)
class StageResult:
    """What :meth:`TileStager.stage` did to one input file.

    Attributes
    ----------
    path : Path
        The input file.
    tiles : int
        Number of tiles its polygons were written to.
    polygons_read : int
        Features read from the file.
    polygons_written : int
        Polygons kept (each written to one or more tiles).
    rows_written : int
        Rows written over all tiles (a polygon crossing tile edges counts once per tile).
    repaired : int
        Features repaired: invalid polygons fixed with ``make_valid``, and
        GeometryCollections reduced to their polygonal part.
    dropped : int
        Features dropped (not polygons, empty, or nothing polygonal after repair).
    seconds : float
        Wall time.
    """

    path: Path
    tiles: int
    polygons_read: int
    polygons_written: int
    rows_written: int
    repaired: int
    dropped: int
    seconds: float


def _sha(text: str, n: int = 12) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _tms_crs(tiles: Tiles) -> pyproj.CRS:
    return pyproj.CRS.from_user_input(tiles.tms.crs.srs)


class TileStager:
    """Stage input GeoPackages into tiles. Build one with :func:`initialize_stager`.

    Parameters
    ----------
    config : Config
        Settings and folders.

    Attributes
    ----------
    config : Config
        The frozen settings (``stager.config.get('dir_staged')`` etc.).
    tiles : Tiles
        Tile maths and listings (``stager.tiles.get_filenames_from_dir('staged')``).
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.tiles = Tiles(config)

    def __repr__(self) -> str:
        c = self.config
        return f"TileStager(dir_input={str(c.dir_input)!r}, dir_output={str(c.dir_output)!r}, tms={c.tms!r}, z={c.z})"

    def __reduce__(self):
        return (TileStager, (self.config,))

    # ------------------------------------------------------------ locations
    @property
    def _parts_root(self) -> Path:
        return self.config.dir_staging_parts / self.config.tms / str(self.config.z)

    @property
    def _manifest_dir(self) -> Path:
        return self.config.dir_staging_parts / _MANIFESTS

    def source_key(self, path: str | Path) -> str:
        """Path of an input relative to ``dir_input`` (POSIX), or its name if outside."""
        p = Path(path).resolve()
        try:
            return p.relative_to(self.config.dir_input.resolve()).as_posix()
        except ValueError:
            return p.name

    def _safe_key(self, key: str) -> str:
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(key).stem)[:60]
        return f"{stem}-{_sha(key, 8)}"

    def _manifest_path(self, key: str) -> Path:
        return self._manifest_dir / f"{self._safe_key(key)}.json"

    def _tile_parts_dir(self, tile: Tile) -> Path:
        return self._parts_root / str(tile.x) / str(tile.y)

    def _check_output_dir(self) -> None:
        out = self.config.dir_output
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(out, f"cannot create the output folder ({e.strerror or e})") from e
        if not os.access(out, os.W_OK | os.X_OK):
            raise OutputError(out, "the output folder is not writable")

    # ------------------------------------------------------------- manifests
    def read_manifest(self, path: str | Path) -> dict[str, Any] | None:
        """The committed manifest of an input file, or None if it was never staged."""
        return self._read_manifest_file(self._manifest_path(self.source_key(path)))

    @staticmethod
    def _read_manifest_file(mpath: Path) -> dict[str, Any] | None:
        try:
            return json.loads(mpath.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def manifests(self) -> list[dict[str, Any]]:
        """Committed manifests of every staged input, sorted by source."""
        if not self._manifest_dir.is_dir():
            return []
        out = []
        for m in sorted(self._manifest_dir.glob("*.json")):
            data = self._read_manifest_file(m)
            if data is not None:
                out.append(data)
        return sorted(out, key=lambda d: d["source"])

    def input_signature(self, path: str | Path) -> dict[str, Any]:
        """Size and modification time of an input: what makes a staging stale."""
        st = Path(path).stat()
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}

    def is_staged(self, path: str | Path) -> bool:
        """True if ``path`` was staged with the current settings and has not changed since."""
        m = self.read_manifest(path)
        if m is None or not Path(path).exists():
            return False
        return m["signature"] == self.input_signature(path) and m[
            "settings"
        ] == self.config.fingerprint(*STAGING_SETTINGS)

    # ------------------------------------------------------------------ stage
    def stage(self, path: str | Path) -> StageResult:
        """Stage one input file: cut its polygons into tiles (the *map* step).

        Run :meth:`finalize` after all inputs are staged to write the final
        tiles with duplicate flags. Staging a file again replaces its rows.

        Parameters
        ----------
        path : str or Path
            A GeoPackage (or any OGR vector file) of polygons.

        Returns
        -------
        StageResult
            Counts and timing.

        Raises
        ------
        InputError
            Missing, unreadable, damaged (SQLite ``quick_check`` fails, or fewer
            features read than the layer declares), empty or polygon-free
            input; no matching layer; a polygon around a pole the TMS cannot
            hold, or one that would touch far more tiles than its size allows
            (the features are named). Nothing of the file is staged then, and
            an earlier staging of it is kept.
        OutputError
            The output folder cannot be written.
        """
        t0 = time.perf_counter()
        path = Path(path)
        self._check_inputs_outputs(path)
        layer, info = _choose_layer(path, self.config.input_layer)
        check_integrity(path)  # before anything is written: a damaged file is refused whole
        crs = info.get("crs")
        if not crs:
            warnings.warn(
                f"{path}: no CRS declared; assuming {self.config.default_crs}",
                MissingCRSWarning,
                stacklevel=2,
            )
            crs = self.config.default_crs
        try:
            src_crs = pyproj.CRS.from_user_input(crs)
        except pyproj.exceptions.CRSError as e:
            raise InputError(path, f"its CRS {crs!r} is not understood ({e})") from e
        key = self.source_key(path)
        token = uuid.uuid4().hex[:10]
        proc = _Processor(self, path, key, src_crs, layer, info)
        counts = {
            "read": 0,
            "kept": 0,
            "rows": 0,
            "repaired": 0,
            "dropped": 0,
            "from_collections": 0,
        }
        tiles_written: dict[str, dict[str, Any]] = {}
        written: list[Path] = []
        try:
            scratch = self.config.scratch_dir if self.config.scratch_inputs else None
            with local_input(path, scratch) as src:
                for chunk_no, batch in enumerate(_read_batches(src, layer, self.config.chunk_size)):
                    table, c = proc.process(batch)
                    for k in c:
                        counts[k] += c[k]
                    written.extend(self._write_parts(table, key, token, chunk_no, tiles_written))
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
                    stacklevel=2,
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
                    stacklevel=2,
                )
            seconds = time.perf_counter() - t0
            manifest = {
                "source": key,
                "filename": path.name,
                "token": token,
                "layer": layer,
                "crs_assumed": not info.get("crs"),
                "signature": self.input_signature(path),
                "settings": self.config.fingerprint(*STAGING_SETTINGS),
                "counts": counts,
                "seconds": round(seconds, 4),
                "tiles": dict(sorted(tiles_written.items())),
            }
            old = self._read_manifest_file(self._manifest_path(key))
            write_json_atomic(self._manifest_path(key), manifest)  # the commit point
        except BaseException:
            for p in written:
                p.unlink(missing_ok=True)
            # parts of the chunk being written when the error came are not in `written` yet
            self._delete_parts({"tiles": tiles_written})
            raise
        if old is not None:
            self._delete_parts(old)
        log.info(
            "staged %s: %d polygons into %d tiles", path.name, counts["kept"], len(tiles_written)
        )
        return StageResult(
            path=path,
            tiles=len(tiles_written),
            polygons_read=counts["read"],
            polygons_written=counts["kept"],
            rows_written=counts["rows"],
            repaired=counts["repaired"],
            dropped=counts["dropped"],
            seconds=seconds,
        )

    def _check_inputs_outputs(self, path: Path) -> None:
        if not path.exists():
            raise InputError(path, "does not exist")
        if not path.is_file():
            raise InputError(path, "is not a file")
        out = self.config.dir_output.resolve()
        if out == path.parent.resolve() or out in path.resolve().parents:
            raise ConfigError(f"{out}: the output folder must not be the input's folder or hold it")
        inp = self.config.dir_input.resolve()
        if out == inp or inp in out.parents:  # a Config built without initialize_stager
            raise ConfigError(f"{out}: outputs must not go into the input folder {inp}")
        self._check_output_dir()

    def _write_parts(
        self,
        table: pa.Table,
        key: str,
        token: str,
        chunk_no: int,
        tiles_written: dict[str, dict[str, Any]],
    ) -> list[Path]:
        if table.num_rows == 0:
            return []
        tile_x = table.column("_tile_x").to_numpy()
        tile_y = table.column("_tile_y").to_numpy()
        within = table.column("staging_centroid_within_tile").to_numpy(zero_copy_only=False)
        order = np.lexsort((tile_y, tile_x))
        table = table.take(pa.array(order)).drop_columns(["_tile_x", "_tile_y"])
        tx, ty, w = tile_x[order], tile_y[order], within[order]
        starts = np.flatnonzero(np.r_[True, (tx[1:] != tx[:-1]) | (ty[1:] != ty[:-1])])
        ends = np.r_[starts[1:], len(tx)]
        out = []
        name = f"{self._safe_key(key)}.{token}.{chunk_no:05d}.parquet"
        for s, e in zip(starts, ends):
            tile = Tile(int(tx[s]), int(ty[s]), self.config.z)
            dest = self._tile_parts_dir(tile) / name
            with output_path(dest, self.config.scratch_dir) as tmp:
                pq.write_table(table.slice(s, e - s), tmp, compression="none")
            out.append(dest)
            entry = tiles_written.setdefault(
                f"{tile.x}/{tile.y}", {"parts": [], "rows": 0, "centroids": 0}
            )
            entry["parts"].append(name)
            entry["rows"] += int(e - s)
            entry["centroids"] += int(w[s:e].sum())
        return out

    def _delete_parts(self, manifest: dict[str, Any]) -> None:
        for xy, entry in manifest["tiles"].items():
            x, y = (int(v) for v in xy.split("/"))
            d = self._tile_parts_dir(Tile(x, y, self.config.z))
            for name in entry["parts"]:
                (d / name).unlink(missing_ok=True)

    def unstage(self, path: str | Path) -> bool:
        """Forget an input: remove its manifest and parts (run :meth:`finalize` after).

        Returns
        -------
        bool
            True if the input had been staged.
        """
        mpath = self._manifest_path(self.source_key(path))
        old = self._read_manifest_file(mpath)
        if old is None:
            return False
        mpath.unlink(missing_ok=True)
        self._delete_parts(old)
        return True

    # --------------------------------------------------------------- finalize
    def committed_tiles(self) -> list[Tile]:
        """Tiles that hold committed parts of at least one staged input, sorted."""
        return sorted(self._committed(), key=lambda t: (t.x, t.y))

    def remove_orphans(self) -> int:
        """Delete parts and temporary files left by killed runs; return how many.

        Only call it when no other process stages into the same output folder:
        parts of a staging still in progress are not committed yet either.
        """
        root = self._parts_root
        if not root.is_dir():
            return 0
        keep = {(t, n) for t, names in self._committed().items() for n in names}
        removed = 0
        for f in root.glob("*/*/*"):
            try:
                tile = Tile(int(f.parent.parent.name), int(f.parent.name), self.config.z)
            except ValueError:
                continue
            if f.name.startswith(".") or (tile, f.name) not in keep:
                f.unlink(missing_ok=True)
                removed += 1
        for d in (self.config.dir_staged, self._manifest_dir):
            if d.is_dir():
                for f in d.rglob(".*.tmp*"):
                    f.unlink(missing_ok=True)
                    removed += 1
        return removed

    def _committed(self) -> dict[Tile, list[str]]:
        """For every tile, the committed part names (from the manifests)."""
        out: dict[Tile, list[str]] = {}
        for m in self.manifests():
            for xy, entry in m["tiles"].items():
                x, y = (int(v) for v in xy.split("/"))
                out.setdefault(Tile(x, y, self.config.z), []).extend(entry["parts"])
        return out

    def _committed_for_tile(self, tile: Tile) -> list[str]:
        d = self._tile_parts_dir(tile)
        if not d.is_dir():
            return []
        tokens_ok: dict[str, str | None] = {}
        names = []
        for f in d.iterdir():
            if f.name.startswith(".") or not f.name.endswith(".parquet"):
                continue
            safe, token, _ = f.name.rsplit(".", 3)[:3]
            if safe not in tokens_ok:
                m = self._read_manifest_file(self._manifest_dir / f"{safe}.json")
                tokens_ok[safe] = None if m is None else m["token"]
            if tokens_ok[safe] == token:
                names.append(f.name)
        return sorted(names)

    def _parts_fingerprint(self, names: Sequence[str]) -> str:
        blob = json.dumps([sorted(names), self.config.fingerprint(*FINALIZE_SETTINGS)])
        return _sha(blob, 20)

    def _neighbourhood(self, tile: Tile, lookup) -> list[str]:
        """Part names a staged tile depends on: its own and its 8 neighbours' (by offset).

        Duplicate flags of a polygon that crosses into a neighbouring tile
        depend on the polygons there, so a change next door re-finalizes.
        Where the TMS wraps, the first and last columns are neighbours.
        """
        names = list(lookup(tile))
        for dx, dy in _NEIGHBOURS:
            nb = neighbour_tile(self.tiles, tile, dx, dy)
            if nb is not None:
                names += [f"{dx},{dy}/{n}" for n in lookup(nb)]
        return names

    def _tile_fingerprint(self, tile: Tile) -> str:
        return self._parts_fingerprint(self._neighbourhood(tile, self._committed_for_tile))

    def expected_fingerprints(self) -> dict[Tile, str]:
        """For every tile with committed parts, the fingerprint its staged file must carry.

        Computed from the staging manifests alone (no staged file is opened).
        """
        committed = self._committed()
        return {
            tile: self._parts_fingerprint(
                self._neighbourhood(tile, lambda t: sorted(committed.get(t, [])))
            )
            for tile in committed
        }

    def tiles_to_finalize(self) -> list[Tile]:
        """Tiles whose staged file is missing or older than their committed parts.

        Staged tiles that no longer have any parts are included too:
        finalizing them deletes them.
        """
        expected = self.expected_fingerprints()
        todo = [
            t
            for t, fp in expected.items()
            if staged_fingerprint(self.tiles.path("staged", t)) != fp
        ]
        for tile in self.tiles.tiles_in("staged", z=self.config.z):
            if tile not in expected:
                todo.append(tile)
        return sorted(set(todo), key=lambda t: (t.x, t.y))

    def finalize_tile(self, tile: Tile) -> dict[str, Any]:
        """Reduce one tile: merge its parts, flag duplicates, write the staged file.

        Parameters
        ----------
        tile : Tile
            A tile at the staging zoom level.

        Returns
        -------
        dict
            ``tile``, ``rows``, ``duplicates``, ``path`` (None if the tile
            had no parts left and its staged file was removed), ``fingerprint``
            (recorded in the file) and ``duplicates_within`` (flagged rows
            whose centroid lies in the tile).
        """
        dest = self.tiles.path("staged", tile)
        names = self._committed_for_tile(tile)
        if not names:
            dest.unlink(missing_ok=True)
            return {
                "tile": tile,
                "rows": 0,
                "duplicates": 0,
                "path": None,
                "fingerprint": None,
                "duplicates_within": 0,
            }
        d = self._tile_parts_dir(tile)
        table = pa.concat_tables(
            [pq.read_table(d / n) for n in names], promote_options="permissive"
        )
        order = np.lexsort((table.column(_FID).to_numpy(), _rank(table.column(_SOURCE))[1]))
        table = table.take(pa.array(order))
        neighbourhood = self._neighbourhood(tile, self._committed_for_tile)
        flags = self._duplicate_flags(tile, table, neighbourhood)
        idx = table.schema.get_field_index("staging_duplicated")
        table = table.set_column(idx, "staging_duplicated", pa.array(flags))
        tids = table.column("_gtype").to_numpy()
        table = table.drop_columns([_SOURCE, _FID, "_gtype"])
        fingerprint = self._parts_fingerprint(neighbourhood)
        with output_path(dest, self.config.scratch_dir) as tmp:
            meta = {_META_KEY: fingerprint, "grouputils_tile": tile_to_str(tile)}
            _write_gpkg(table, tmp, _tms_crs(self.tiles), meta, tids)
        within = (
            table.column("staging_centroid_within_tile").to_numpy(zero_copy_only=False).astype(bool)
        )
        return {
            "tile": tile,
            "rows": table.num_rows,
            "duplicates": int(flags.sum()),
            "path": dest,
            "fingerprint": fingerprint,
            "duplicates_within": int((flags & within).sum()),
        }

    def _duplicate_flags(
        self, tile: Tile, table: pa.Table, neighbourhood: Sequence[str]
    ) -> np.ndarray:
        """Duplicate flags of a tile's rows, looking into neighbouring tiles where polygons cross.

        A polygon crossing into a neighbouring tile is compared with the
        polygons there too, so every row of one polygon, in every tile it is
        written to, gets the same flag.
        """
        n = table.num_rows
        if len({name.rsplit("/", 1)[-1].split(".", 1)[0] for name in neighbourhood}) < 2:
            return np.zeros(n, dtype=bool)  # one input file around: nothing to flag
        geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
        sources = table.column(_SOURCE).to_pylist()
        tb = self.tiles.bounds(tile)
        b = shapely.bounds(geoms)
        crossing = np.flatnonzero(
            (b[:, 0] < tb.left) | (b[:, 2] > tb.right) | (b[:, 1] < tb.bottom) | (b[:, 3] > tb.top)
        )
        extra_geoms: list[np.ndarray] = []
        extra_sources: list[str] = []
        if len(crossing):
            # neighbours across the antimeridian hold their rows on the other side of 180°: shifted
            wanted = tiles_under_bounds(self.tiles, tile, b[crossing])
            own_ids = set(table.column("staging_id").to_pylist())
            tree = shapely.STRtree(geoms[crossing])
            for nb in sorted(wanted, key=lambda t: (t.x, t.y)):
                d = self._tile_parts_dir(nb)
                for name in self._committed_for_tile(nb):
                    part = pq.read_table(d / name, columns=["geometry", "staging_id", _SOURCE])
                    keep = ~np.isin(
                        np.asarray(part.column("staging_id").to_pylist(), dtype=object),
                        list(own_ids),
                    )
                    if not keep.any():
                        continue
                    g = shapely.from_wkb(part.column("geometry").to_numpy(zero_copy_only=False))[
                        keep
                    ]
                    if wanted[nb]:
                        g = shapely.transform(g, lambda xy, s=wanted[nb]: xy + np.array([s, 0.0]))
                    hit = np.unique(tree.query(g, predicate="intersects")[0])
                    if len(hit):
                        extra_geoms.append(g[hit])
                        src = np.asarray(part.column(_SOURCE).to_pylist(), dtype=object)[keep][hit]
                        extra_sources.extend(src.tolist())
        all_geoms = np.concatenate([geoms, *extra_geoms]) if extra_geoms else geoms
        _, rank = _rank(pa.chunked_array([pa.array(sources + extra_sources, type=pa.string())]))
        if len(set(rank.tolist())) < 2:
            return np.zeros(n, dtype=bool)
        return duplicate_flags(all_geoms, rank, self.config.dedup_overlap)[:n]

    def finalize(self, tiles: Iterable[Tile] | None = None, progress: bool = True) -> pd.DataFrame:
        """Write the final staged tiles with duplicate flags (the *reduce* step).

        Only tiles whose parts changed since they were last finalized are
        redone, so calling it again is cheap. It also rewrites the staging
        summary CSV.

        Parameters
        ----------
        tiles : iterable of Tile, optional
            Only these tiles (e.g. one batch of a parallel run). Default: every
            tile that needs it (:meth:`tiles_to_finalize`).
        progress : bool
            Show a tqdm progress bar.

        Returns
        -------
        pandas.DataFrame
            One row per tile finalized: tile, rows, duplicates, path.
        """
        todo = self.tiles_to_finalize() if tiles is None else list(tiles)
        rows = [
            self.finalize_tile(t)
            for t in tqdm(todo, desc="finalize", unit="tile", disable=not progress)
        ]
        if tiles is None:
            self.write_summary()
        return pd.DataFrame(rows, columns=["tile", "rows", "duplicates", "path"])

    # ---------------------------------------------------------------- summary
    def summary(self) -> pd.DataFrame:
        """The staging summary: one row per input file and tile.

        Columns: ``filename``, ``source``, ``tile``, ``x``, ``y``, ``z``,
        ``rows`` (polygons written to the tile, including copies of polygons
        that cross tile edges) and ``centroids`` (polygons whose centroid lies
        in the tile). Built from the per-file manifests, so it is complete and
        free of duplicates however many workers staged.
        """
        recs = []
        for m in self.manifests():
            for xy, entry in m["tiles"].items():
                x, y = (int(v) for v in xy.split("/"))
                recs.append(
                    {
                        "filename": m["filename"],
                        "source": m["source"],
                        "tile": tile_to_str(Tile(x, y, self.config.z)),
                        "x": x,
                        "y": y,
                        "z": self.config.z,
                        "rows": entry["rows"],
                        "centroids": entry["centroids"],
                    }
                )
        cols = ["filename", "source", "tile", "x", "y", "z", "rows", "centroids"]
        df = pd.DataFrame(recs, columns=cols)
        return df.sort_values(["source", "x", "y"], kind="stable").reset_index(drop=True)

    def write_summary(self) -> Path:
        """Write :meth:`summary` to ``config.filename_staging_summary`` (atomically)."""
        return write_text_atomic(
            self.config.filename_staging_summary, self.summary().to_csv(index=False)
        )

    # ------------------------------------------------------------------ reset
    def clear(self, everything: bool = True) -> None:
        """Start over: delete the outputs grouputils made in ``dir_output``.

        Parameters
        ----------
        everything : bool
            True (default) removes staging, GeoTIFF and web-tile outputs, the
            STAC catalogue, the map page and summaries; False removes only staging outputs. Other files in the
            output folder and the inputs are never touched.
        """
        c = self.config
        targets: list[Path] = [c.dir_staged, c.dir_staging_parts, c.filename_staging_summary]
        if everything:
            targets += [c.dir_geotiff, c.dir_web_tiles, c.filename_rasterization_summary]
            targets += [
                c.dir_output / n
                for n in ("raster-summary-parts", "index.html", "run-summary.json", "stac")
            ]
        for t in targets:
            if t.is_dir():
                shutil.rmtree(t)
            elif t.exists():
                t.unlink()


# ------------------------------------------------------------------ helpers
def _rank(col: pa.ChunkedArray) -> tuple[list[str], np.ndarray]:
    """Distinct sources in sorted order and each row's rank among them."""
    enc = col.combine_chunks().dictionary_encode()
    sources = enc.dictionary.to_pylist()
    order = np.argsort(np.array(sources, dtype=object))
    rank_of = np.empty(len(sources), dtype="i8")
    rank_of[order] = np.arange(len(sources))
    return sorted(sources), rank_of[enc.indices.to_numpy()]


def _choose_layer(path: Path, wanted: str) -> tuple[str, dict[str, Any]]:
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


def _read_batches(path: Path, layer: str, batch_size: int):
    try:
        with pyogrio.open_arrow(
            path, layer=layer, return_fids=True, batch_size=batch_size, use_pyarrow=True
        ) as (
            meta,
            reader,
        ):
            for batch in reader:
                yield meta, batch
    except InputError:
        raise
    except Exception as e:
        if isinstance(e, (GeneratorExit, KeyboardInterrupt)):
            raise
        raise InputError(path, f"cannot be read ({e})") from e


class _Processor:
    """Turns Arrow batches of one input into tile-tagged Arrow tables."""

    def __init__(
        self, stager: TileStager, path: Path, key: str, src_crs: pyproj.CRS, layer: str, info: dict
    ) -> None:
        self.stager = stager
        self.config = stager.config
        self.path = path
        self.key = key
        self.filename = path.name
        tms_crs = _tms_crs(stager.tiles)
        # Simplification and areas need metres. When the input's CRS is
        # projected in metres (EPSG:3413 for IWP), simplify there and take
        # each polygon's ellipsoidal area as its planar area divided by the
        # projection's areal scale factor at its centroid (pyproj
        # Proj.get_factors): exact for equal-area projections and, within a
        # polygon of a few metres, to ~1e-5 for any other. Otherwise (e.g.
        # lon/lat input) go through a local Lambert azimuthal equal-area
        # projection centred on the file. Either way the geometries are
        # transformed once more, into the TMS CRS.
        unit = src_crs.axis_info[0].unit_conversion_factor if src_crs.axis_info else None
        self.metric_source = bool(src_crs.is_projected and unit == 1.0)
        self.geographic_source = bool(src_crs.is_geographic)
        self.wrap = tms_wrap(tms_crs)
        self.tms_to_ll = pyproj.Transformer.from_crs(tms_crs, "EPSG:4326", always_xy=True)
        self.to_ll = pyproj.Transformer.from_crs(src_crs, "EPSG:4326", always_xy=True)
        if self.metric_source:
            self.proj = pyproj.Proj(src_crs)
            self.to_local = None
            self.to_tms = pyproj.Transformer.from_crs(src_crs, tms_crs, always_xy=True)
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
            self.to_tms = pyproj.Transformer.from_crs(laea, tms_crs, always_xy=True)
        local_crs = src_crs if self.metric_source else laea
        self.poles_local = pole_points(local_crs, self.wrap.poles_singular)

    def process(self, batch_meta) -> tuple[pa.Table, dict[str, int]]:
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
            local = shapely.transform(geoms, self._fwd(self.to_local), interleaved=False)
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
        if self.metric_source:
            c = shapely.centroid(local)
            lon, lat = self.to_ll.transform(shapely.get_x(c), shapely.get_y(c))
            area = area / self.proj.get_factors(lon, lat).areal_scale
        geoms = shapely.transform(local, self._fwd(self.to_tms), interleaved=False)
        rows = place_polygons(
            self.stager.tiles,
            self.path,
            fids,
            local,
            geoms,
            self.wrap,
            self.poles_local,
            self.tms_to_ll,
        )
        poly_idx, tx, ty, within, row_geoms, cx, cy = rows
        z = self.config.z
        # strings built once per distinct tile / via Arrow, not once per row in Python
        uniq, inv = np.unique(np.stack([tx, ty]), axis=1, return_inverse=True)
        names = np.array([f"Tile(x={a}, y={b}, z={z})" for a, b in uniq.T], dtype=object)
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
            "staging_filename": pa.array(
                np.full(len(poly_idx), self.filename, dtype=object), type=pa.string()
            ),
            "staging_tile": pa.array(tile_str, type=pa.string()),
            "staging_centroid_within_tile": pa.array(within),
            "staging_duplicated": pa.array(np.zeros(len(poly_idx), dtype=bool)),
            "geometry": pa.array(shapely.to_wkb(row_geoms), type=pa.binary()),
            _SOURCE: pa.array(np.full(len(poly_idx), self.key, dtype=object), type=pa.string()),
            _FID: pa.array(fids[poly_idx]),
            "_gtype": pa.array(shapely.get_type_id(row_geoms).astype("i1")),
            "_tile_x": pa.array(tx),
            "_tile_y": pa.array(ty),
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
    def _fwd(transformer: pyproj.Transformer):
        def f(x, y):
            return transformer.transform(x, y)

        return f


def _write_gpkg(
    table: pa.Table, path: Path, crs: pyproj.CRS, metadata: dict[str, str], tids: np.ndarray
) -> None:
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
    # GeoPackage coordinates are always (x, y) = (longitude, latitude), whatever the
    # CRS's axis order, so OGC:CRS84 (no EPSG code; GDAL would store it as an
    # unregistered srs_id 100000, organization NONE) is stored as EPSG:4326, the
    # registered code every GeoPackage reader knows. The coordinates do not change.
    if crs.to_epsg() is None and crs.equals(pyproj.CRS.from_epsg(4326), ignore_axis_order=True):
        return "EPSG:4326"
    return crs.to_wkt()


def staged_fingerprint(path: Path) -> str | None:
    """The parts fingerprint a finalized staged tile records (None if missing or unreadable)."""
    if not path.exists():
        return None
    try:
        meta = pyogrio.read_info(path, layer=STAGED_LAYER).get("layer_metadata") or {}
    except Exception:
        return None
    return meta.get(_META_KEY)


def read_staged_tile(path: str | Path, config: Config) -> gpd.GeoDataFrame:
    """Read a finalized staged tile, refusing ones that are missing, broken or stale.

    Parameters
    ----------
    path : str or Path
        ``staged/<TMS>/<z>/<x>/<y>.gpkg``.
    config : Config
        The run's settings (to find the tile's staging parts).

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
    recorded = (info.get("layer_metadata") or {}).get(_META_KEY)
    if recorded is None:
        raise NotFinalizedError(
            path, "was not written by stager.finalize(): run finalize after staging"
        )
    stager = TileStager(config)
    parts_dir = stager._tile_parts_dir(tile)
    if parts_dir.is_dir() and recorded != stager._tile_fingerprint(tile):
        raise NotFinalizedError(
            path, "its inputs changed since it was finalized: run stager.finalize()"
        )
    try:
        gdf = pyogrio.read_dataframe(path, layer=STAGED_LAYER, use_arrow=True)
    except Exception as e:
        raise InputError(path, f"cannot be read ({e})") from e
    missing = [c for c in STAGING_COLUMNS if c not in gdf.columns]
    if missing:
        raise InputError(path, f"lacks staging columns {missing}")
    return gdf


def initialize_stager(
    dir_input: str | Path, dir_output: str | Path | None = None, **overrides: Any
) -> TileStager:
    """Create a :class:`TileStager` for a folder of input GeoPackages.

    Parameters
    ----------
    dir_input : str or Path
        Folder of inputs; may be read-only (a shared course folder). Never written.
    dir_output : str or Path, optional
        Where outputs go. Default ``./group-project`` in the current working
        directory (a notebook's own folder), so every learner writes their own.
    **overrides
        Any :class:`~grouputils.core.config.Config` setting, e.g. ``z=12``,
        ``tms='WebMercatorQuad'``, ``simplify_tolerance=0``.

    Returns
    -------
    TileStager

    Examples
    --------
    >>> from grouputils import initialize_stager              # doctest: +SKIP
    >>> from grouputils.teaching import samples             # doctest: +SKIP
    >>> stager = initialize_stager(samples.sample_dir())        # doctest: +SKIP
    >>> stager.stage(stager.tiles.get_filenames_from_dir('input')[0])  # doctest: +SKIP
    >>> stager.finalize()                                       # doctest: +SKIP
    """
    dir_input = Path(dir_input)
    if not dir_input.is_dir():
        raise InputError(dir_input, "input folder does not exist")
    config = Config(
        dir_input=dir_input,
        dir_output=Path(dir_output) if dir_output else Path("group-project"),
        **overrides,
    )
    out = config.dir_output.resolve()
    if out == dir_input.resolve() or dir_input.resolve() in out.parents:
        raise ConfigError(f"{out}: outputs must not go into the input folder {dir_input}")
    return TileStager(config)
