"""The :class:`TileStager`: staging's public face, and :func:`initialize_stager`.

A stager ties the jobs of the other modules of :mod:`grouputils.core.staging`
together: :meth:`TileStager.stage` (read with :mod:`~grouputils.core.staging.io`,
process with :mod:`~grouputils.core.staging.geometry`, write and commit with
:mod:`~grouputils.core.staging.parts`), :meth:`TileStager.finalize`
(:mod:`~grouputils.core.staging.finalize`), the summary and :meth:`TileStager.clear`
(the paths come from :class:`~grouputils.core.layout.Layout`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pyproj
from tqdm.auto import tqdm

from grouputils.core.atomic import write_text_atomic
from grouputils.core.config import Config
from grouputils.core.errors import (
    ConfigError,
    InputError,
    MissingCRSWarning,
    OutputError,
)
from grouputils.core.input_checks import check_integrity
from grouputils.core.layout import Layout
from grouputils.core.scratch import local_input
from grouputils.core.staging.finalize import (
    finalize_tile,
    staging_summary,
    tiles_to_finalize,
)
from grouputils.core.staging.geometry import ChunkProcessor
from grouputils.core.staging.io import check_counts, choose_layer, read_batches
from grouputils.core.staging.parts import Manifest, PartsStore
from grouputils.core.staging.schema import STAGING_SETTINGS
from grouputils.core.tiles import Tile, Tiles

__all__ = ["TileStager", "StageResult", "initialize_stager"]

log = logging.getLogger(__name__)


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
    parts : PartsStore
        The parts and manifests of staging.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.tiles = Tiles(config)
        self.parts = PartsStore(config, self.tiles)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"TileStager(dir_input={str(c.dir_input)!r}, dir_output={str(c.dir_output)!r}, "
            f"tms={c.tms!r}, z={c.z})"
        )

    def __reduce__(self) -> tuple[type[TileStager], tuple[Config]]:
        return (TileStager, (self.config,))  # by reference: workers rebuild it from the settings

    @property
    def layout(self) -> Layout:
        """Every path of the output folder."""
        return self.tiles.layout

    # ------------------------------------------------------------- manifests
    def source_key(self, path: str | Path) -> str:
        """Path of an input relative to ``dir_input`` (POSIX), or its name if outside."""
        return self.parts.source_key(path)

    def read_manifest(self, path: str | Path) -> Manifest | None:
        """The committed manifest of an input file, or None if it was never staged."""
        return self.parts.manifest(self.source_key(path))

    def manifests(self) -> list[Manifest]:
        """Committed manifests of every staged input, sorted by source."""
        return self.parts.manifests()

    def input_signature(self, path: str | Path) -> dict[str, Any]:
        """Size and modification time of an input: what makes a staging stale."""
        st = Path(path).stat()
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}

    def is_staged(self, path: str | Path) -> bool:
        """True if ``path`` was staged with the current settings and has not changed since."""
        m = self.read_manifest(path)
        if m is None or not Path(path).exists():
            return False
        return bool(
            m["signature"] == self.input_signature(path)
            and m["settings"] == self.config.fingerprint(*STAGING_SETTINGS)
        )

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
        layer, info = choose_layer(path, self.config.input_layer)
        check_integrity(path)  # before anything is written: a damaged file is refused whole
        src_crs = self._source_crs(path, info)
        key = self.source_key(path)
        token = uuid.uuid4().hex[:10]
        counts = dict.fromkeys(
            ("read", "kept", "rows", "repaired", "dropped", "from_collections"), 0
        )
        tiles_written: dict[str, dict[str, Any]] = {}
        written: list[Path] = []
        try:
            proc = ChunkProcessor(self.tiles, path, key, src_crs, info)
            scratch = self.config.scratch_dir if self.config.scratch_inputs else None
            with local_input(path, scratch) as src:
                batches = read_batches(src, layer, self.config.chunk_size)
                for chunk_no, batch in enumerate(batches):
                    table, c = proc.process(batch)
                    for k in c:
                        counts[k] += c[k]
                    parts = self.parts.write_parts(table, key, token, chunk_no, tiles_written)
                    written.extend(parts)
            check_counts(path, layer, info, counts)
            seconds = time.perf_counter() - t0
            manifest: Manifest = {
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
            old = self.parts.manifest(key)
            self.parts.commit(key, manifest)  # the commit point
        except BaseException:
            for p in written:
                p.unlink(missing_ok=True)
            # parts of the chunk being written when the error came are not in `written` yet
            self.parts.delete_parts({"tiles": tiles_written})
            raise
        if old is not None:
            self.parts.delete_parts(old)
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

    def _source_crs(self, path: Path, info: dict[str, Any]) -> pyproj.CRS:
        """The input's CRS; the default one (with a warning) if it declares none."""
        crs = info.get("crs")
        if not crs:
            warnings.warn(
                f"{path}: no CRS declared; assuming {self.config.default_crs}",
                MissingCRSWarning,
                stacklevel=3,
            )
            crs = self.config.default_crs
        try:
            return pyproj.CRS.from_user_input(crs)
        except pyproj.exceptions.CRSError as e:
            raise InputError(path, f"its CRS {crs!r} is not understood ({e})") from e

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

    def _check_output_dir(self) -> None:
        out = self.config.dir_output
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(out, f"cannot create the output folder ({e.strerror or e})") from e
        if not os.access(out, os.W_OK | os.X_OK):
            raise OutputError(out, "the output folder is not writable")

    def unstage(self, path: str | Path) -> bool:
        """Forget an input: remove its manifest and parts (run :meth:`finalize` after).

        Returns
        -------
        bool
            True if the input had been staged.
        """
        key = self.source_key(path)
        old = self.parts.manifest(key)
        if old is None:
            return False
        self.parts.manifest_path(key).unlink(missing_ok=True)
        self.parts.delete_parts(old)
        return True

    # --------------------------------------------------------------- finalize
    def committed_tiles(self) -> list[Tile]:
        """Tiles that hold committed parts of at least one staged input, sorted."""
        return sorted(self.parts.committed(), key=lambda t: (t.x, t.y))

    def remove_orphans(self) -> int:
        """Delete parts and temporary files left by killed runs; return how many.

        Only call it when no other process stages into the same output folder:
        parts of a staging still in progress are not committed yet either.
        """
        return self.parts.remove_orphans(self.layout.staged)

    def _tile_parts_dir(self, tile: Tile) -> Path:
        return self.parts.tile_dir(tile)

    def _tile_fingerprint(self, tile: Tile) -> str:
        return self.parts.tile_fingerprint(tile)

    def expected_fingerprints(self) -> dict[Tile, str]:
        """For every tile with committed parts, the fingerprint its staged file must carry.

        Computed from the staging manifests alone (no staged file is opened).
        """
        return self.parts.expected_fingerprints()

    def tiles_to_finalize(self) -> list[Tile]:
        """Tiles whose staged file is missing or older than their committed parts.

        Staged tiles that no longer have any parts are included too:
        finalizing them deletes them.
        """
        return tiles_to_finalize(self.parts)

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
        return finalize_tile(self.parts, tile)

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
        # no bar at all when it is off: a tqdm, even disabled, makes a lock (8 ms) the first time
        tiles_iter = tqdm(todo, desc="finalize", unit="tile") if progress else todo
        rows = [self.finalize_tile(t) for t in tiles_iter]
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
        return staging_summary(self.parts)

    def write_summary(self) -> Path:
        """Write :meth:`summary` to ``config.filename_staging_summary`` (atomically)."""
        return write_text_atomic(self.layout.staging_summary, self.summary().to_csv(index=False))

    # ------------------------------------------------------------------ reset
    def clear(self, everything: bool = True) -> None:
        """Start over: delete the outputs grouputils made in ``dir_output``.

        Parameters
        ----------
        everything : bool
            True (default) removes staging, GeoTIFF and web-tile outputs, the
            STAC catalogue, the map page and summaries; False removes only
            staging outputs. The run's private folder (``.grouputils/``), other
            files in the output folder and the inputs are never touched.
        """
        layout = self.layout
        targets = layout.staging_outputs()
        if everything:
            targets += layout.later_outputs()
        for t in targets:
            if t.is_dir():
                shutil.rmtree(t)
            elif t.exists():
                t.unlink()
        for t in targets:  # folders left empty by removing their only content (assets/)
            parent = t.parent
            if parent != layout.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()


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
