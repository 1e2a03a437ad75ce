"""The parts-and-manifests protocol of staging: what makes staged rows count.

Staging one input writes one *part* (an Arrow IPC file, LZ4-compressed) per
(input, tile, chunk)
under ``staging-parts/<TMS>/<z>/<x>/<y>/``, each with its own name, written to
a temporary file and renamed. Then a small per-input *manifest*
(``staging-parts/manifests/<input>.json``) is renamed into place: it names the
parts, and only the parts it names count ("commit"). Parts of an earlier
staging of the same input are deleted after that. A run killed at any point
leaves the old or the new staging of an input, never a mix.

A finalized tile records a *fingerprint* of the committed parts of itself and
its eight neighbours (duplicate flags depend on polygons crossing in from next
door), so a tile is finalized again exactly when that changes.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from grouputils.core.atomic import write_json_atomic
from grouputils.core.config import Config
from grouputils.core.layout import Layout
from grouputils.core.placement import neighbour_tile
from grouputils.core.scratch import output_path
from grouputils.core.staging.schema import FINALIZE_SETTINGS, TILE_X, TILE_Y
from grouputils.core.tiles import Tile, Tiles, tile_xy, xy_tile

__all__ = ["PartsStore", "sha", "write_part", "read_part", "PART_SUFFIX"]

PART_SUFFIX = ".arrow"
"""Suffix of the parts written now. Parts are only ever read back by grouputils."""

_PART_SUFFIXES = (PART_SUFFIX, ".parquet")  # Parquet: parts of output folders staged before

_NEIGHBOURS = [(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dx, dy) != (0, 0)]


def write_part(table: pa.Table, path: Path) -> None:
    """Write one part: an Arrow IPC file, LZ4-compressed.

    Notes
    -----
    On the real file's four parts, writing and reading them back took 15 ms of
    CPU against 31 ms as uncompressed Parquet (the format before), and the
    files are a quarter smaller; uncompressed IPC was faster still (8 ms) but
    twice the size.
    """
    options = ipc.IpcWriteOptions(compression="lz4")
    with ipc.new_file(str(path), table.schema, options=options) as writer:
        writer.write_table(table)


def read_part(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """Read one part (Arrow IPC, or Parquet as written before), all or some columns."""
    if path.suffix == ".parquet":
        return pq.read_table(path, columns=columns)
    with pa.OSFile(str(path)) as f:
        reader = ipc.open_file(f)
        if columns is None:
            return reader.read_all()
        schema = reader.schema
    # only the columns asked for are decompressed (a neighbour's rows: 3 of ~20)
    fields = [schema.get_field_index(c) for c in columns]
    with pa.OSFile(str(path)) as f:
        table = ipc.open_file(f, options=ipc.IpcReadOptions(included_fields=fields)).read_all()
    return table.select(list(columns))


class PartsList(TypedDict):
    """What a manifest (or a staging still being written) says of its parts: ``tiles``."""

    #: ``"x/y"`` of each tile -> its entry (part names, rows, centroids)
    tiles: dict[str, dict[str, Any]]


class StagingManifest(PartsList):
    """A staging manifest, as written to JSON (see :meth:`PartsStore.commit`)."""

    source: str  #: the input's key (its path relative to the input folder)
    filename: str
    token: str  #: this staging's token: parts of other tokens do not count
    layer: str
    crs_assumed: bool
    signature: dict[str, int]  #: the input's size and mtime (see ``input_signature``)
    settings: str  #: fingerprint of the settings staging depends on
    counts: dict[str, int]
    seconds: float


#: The name the rest of the package uses.
Manifest = StagingManifest


def sha(text: str, n: int = 12) -> str:
    """The first ``n`` hex digits of the SHA-256 of ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()[:n]


class PartsStore:
    """Parts and manifests of one output folder, at the staging zoom level.

    Parameters
    ----------
    config : Config
        The run's settings.
    tiles : Tiles, optional
        Tile maths (made from ``config`` if not given).
    """

    def __init__(self, config: Config, tiles: Tiles | None = None) -> None:
        self.config = config
        self.tiles = tiles if tiles is not None else Tiles(config)
        self.layout = Layout.of(config)
        self.parts_root = self.layout.parts_root(config.z)
        self.manifest_dir = self.layout.manifests

    # --------------------------------------------------------------- names
    def source_key(self, path: str | Path) -> str:
        """Path of an input relative to ``dir_input`` (POSIX), or its name if outside."""
        p = Path(path).resolve()
        try:
            return p.relative_to(self.config.dir_input.resolve()).as_posix()
        except ValueError:
            return p.name

    @staticmethod
    def safe_key(key: str) -> str:
        """A file-name-safe, collision-free stem for an input's key."""
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(key).stem)[:60]
        return f"{stem}-{sha(key, 8)}"

    def manifest_path(self, key: str) -> Path:
        """Where the manifest of the input with key ``key`` is committed."""
        return self.manifest_dir / f"{self.safe_key(key)}.json"

    def tile_dir(self, tile: Tile) -> Path:
        """The folder of ``tile``'s parts."""
        return self.layout.parts_dir(tile)

    # ----------------------------------------------------------- manifests
    @staticmethod
    def read_manifest_file(mpath: Path) -> Manifest | None:
        """A manifest file's content, or None if it does not exist."""
        try:
            data: Manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return data

    def manifest(self, key: str) -> Manifest | None:
        """The committed manifest of the input with key ``key`` (None if never staged)."""
        return self.read_manifest_file(self.manifest_path(key))

    def manifests(self) -> list[Manifest]:
        """Committed manifests of every staged input, sorted by source."""
        if not self.manifest_dir.is_dir():
            return []
        out = []
        for m in sorted(self.manifest_dir.glob("*.json")):
            data = self.read_manifest_file(m)
            if data is not None:
                out.append(data)
        return sorted(out, key=lambda d: d["source"])

    def commit(self, key: str, manifest: Manifest) -> None:
        """Rename ``manifest`` into place: the commit point of an input's staging."""
        write_json_atomic(self.manifest_path(key), manifest)

    def tiles_of(self, manifest: PartsList) -> dict[Tile, dict[str, Any]]:
        """A manifest's entries (part names, rows, centroids) by tile."""
        z = self.config.z
        return {xy_tile(xy, z): entry for xy, entry in manifest["tiles"].items()}

    # --------------------------------------------------------------- parts
    def write_parts(
        self,
        table: pa.Table,
        key: str,
        token: str,
        chunk_no: int,
        tiles_written: dict[str, dict[str, Any]],
    ) -> list[Path]:
        """Write one chunk of an input as one part per tile; note them in ``tiles_written``.

        Parameters
        ----------
        table : pyarrow.Table
            Rows with ``_tile_x``/``_tile_y`` columns (dropped from the parts).
        key : str
            The input's key (:meth:`source_key`).
        token : str
            This staging's token: the manifest commits parts of one token only.
        chunk_no : int
            Number of the chunk within the input.
        tiles_written : dict
            The manifest's ``tiles`` being built, updated in place.

        Returns
        -------
        list of Path
            The parts written.
        """
        if table.num_rows == 0:
            return []
        tile_x = table.column(TILE_X).to_numpy()
        tile_y = table.column(TILE_Y).to_numpy()
        within = table.column("staging_centroid_within_tile").to_numpy(zero_copy_only=False)
        order = np.lexsort((tile_y, tile_x))
        if np.any(order[1:] < order[:-1]):  # ChunkProcessor's rows come grouped already
            table = table.take(pa.array(order))
        table = table.drop_columns([TILE_X, TILE_Y])
        tx, ty, w = tile_x[order], tile_y[order], within[order]
        starts = np.flatnonzero(np.r_[True, (tx[1:] != tx[:-1]) | (ty[1:] != ty[:-1])])
        ends = np.r_[starts[1:], len(tx)]
        out = []
        name = f"{self.safe_key(key)}.{token}.{chunk_no:05d}{PART_SUFFIX}"
        for s, e in zip(starts, ends, strict=True):
            tile = Tile(int(tx[s]), int(ty[s]), self.config.z)
            dest = self.tile_dir(tile) / name
            with output_path(dest, self.config.scratch_dir) as tmp:
                write_part(table.slice(s, e - s), tmp)
            out.append(dest)
            entry = tiles_written.setdefault(
                tile_xy(tile), {"parts": [], "rows": 0, "centroids": 0}
            )
            entry["parts"].append(name)
            entry["rows"] += int(e - s)
            entry["centroids"] += int(w[s:e].sum())
        return out

    def delete_parts(self, manifest: PartsList) -> None:
        """Delete the parts a manifest (or a manifest being built) names."""
        for tile, entry in self.tiles_of(manifest).items():
            d = self.tile_dir(tile)
            for name in entry["parts"]:
                (d / name).unlink(missing_ok=True)

    def committed(self) -> dict[Tile, list[str]]:
        """For every tile, the committed part names (from the manifests)."""
        out: dict[Tile, list[str]] = {}
        for m in self.manifests():
            for tile, entry in self.tiles_of(m).items():
                out.setdefault(tile, []).extend(entry["parts"])
        return out

    def committed_for_tile(
        self, tile: Tile, tokens: dict[str, str | None] | None = None
    ) -> list[str]:
        """The committed part names of one tile (listing its folder, reading its manifests).

        Parameters
        ----------
        tile : Tile
            A tile at the staging zoom level.
        tokens : dict, optional
            Committed token by input (safe key), filled in as manifests are
            read; pass one dict to the lookups of one tile and its neighbours
            so each manifest is read once, not once per tile (on a 90 MB input
            of 175 tiles: 1,464 reads of its manifest in finalize before).
        """
        d = self.tile_dir(tile)
        if not d.is_dir():
            return []
        tokens_ok: dict[str, str | None] = {} if tokens is None else tokens
        names = []
        for f in d.iterdir():
            if f.name.startswith(".") or not f.name.endswith(_PART_SUFFIXES):
                continue
            safe, token, _ = f.name.rsplit(".", 3)[:3]
            if safe not in tokens_ok:
                m = self.read_manifest_file(self.manifest_dir / f"{safe}.json")
                tokens_ok[safe] = None if m is None else m["token"]
            if tokens_ok[safe] == token:
                names.append(f.name)
        return sorted(names)

    def remove_orphans(self, staged_dir: Path) -> int:
        """Delete parts and temporary files left by killed runs; return how many.

        Only call it when no other process stages into the same output folder:
        parts of a staging still in progress are not committed yet either.
        """
        root = self.parts_root
        if not root.is_dir():
            return 0
        keep = {(t, n) for t, names in self.committed().items() for n in names}
        removed = 0
        for f in root.glob("*/*/*"):
            try:
                tile = Tile(int(f.parent.parent.name), int(f.parent.name), self.config.z)
            except ValueError:
                continue
            if f.name.startswith(".") or (tile, f.name) not in keep:
                f.unlink(missing_ok=True)
                removed += 1
        for d in (staged_dir, self.manifest_dir):
            if d.is_dir():
                for f in d.rglob(".*.tmp*"):
                    f.unlink(missing_ok=True)
                    removed += 1
        return removed

    # -------------------------------------------------------- fingerprints
    @functools.cached_property
    def _finalize_settings(self) -> str:
        # the config is frozen: its fingerprint is taken once, not twice a tile
        return self.config.fingerprint(*FINALIZE_SETTINGS)

    def fingerprint(self, names: Sequence[str]) -> str:
        """Fingerprint of a neighbourhood's part names and the settings of finalizing."""
        blob = json.dumps([sorted(names), self._finalize_settings])
        return sha(blob, 20)

    def neighbourhood(self, tile: Tile, lookup: Callable[[Tile], Sequence[str]]) -> list[str]:
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

    def tile_fingerprint(self, tile: Tile) -> str:
        """The fingerprint ``tile``'s staged file must carry, from its parts folders."""
        tokens: dict[str, str | None] = {}
        return self.fingerprint(
            self.neighbourhood(tile, lambda t: self.committed_for_tile(t, tokens))
        )

    def expected_fingerprints(self) -> dict[Tile, str]:
        """For every tile with committed parts, the fingerprint its staged file must carry.

        Computed from the staging manifests alone (no staged file is opened).
        """
        committed = self.committed()
        return {
            tile: self.fingerprint(self.neighbourhood(tile, lambda t: sorted(committed.get(t, []))))
            for tile in committed
        }
