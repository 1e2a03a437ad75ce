"""The raster step's facade: :class:`RasterTiler` and :func:`initialize_rasterizer`.

A tiler turns staged tiles into GeoTIFFs (:mod:`~grouputils.core.raster.statistics`,
:mod:`~grouputils.core.raster.geotiff`), builds the pyramid up to zoom 0
(:mod:`~grouputils.core.raster.pyramid`) and colours web tiles
(:mod:`grouputils.core.webtiles`). Arrays it already holds are used as they
are: a parent is made from the children it built or read a moment before
(each GeoTIFF is read at most once per call), and web tiles can be coloured
from the bands just computed (:meth:`RasterTiler.webtiles_from_bands`).
Colours fit each zoom level (:meth:`RasterTiler.colour_ranges`, the rule of
:mod:`grouputils.core.webtiles`) when the colouring methods are handed the
run's ranges; without them they use the fixed scale.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from morecantile import Tile
from tqdm.auto import tqdm

from grouputils.core.atomic import write_text_atomic
from grouputils.core.config import Config
from grouputils.core.errors import InputError
from grouputils.core.layout import Layout
from grouputils.core.raster.geotiff import read_geotiff, write_geotiff
from grouputils.core.raster.pyramid import place_children, resample_children
from grouputils.core.raster.statistics import compute_statistics, needed_columns
from grouputils.core.raster.summary import geotiff_summary
from grouputils.core.staging import read_staged_tile
from grouputils.core.tiles import Tiles, tile_from_path, tile_to_str, unique_tiles
from grouputils.core.webtiles import (
    ColourRanges,
    palette_lut,
    write_colour_ranges,
    write_legend,
    write_webtile,
    zoom_ranges,
)

__all__ = ["RasterTiler", "initialize_rasterizer"]

logger = logging.getLogger(__name__)

Bands = tuple[Tile, np.ndarray, dict[str, Any]]


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
    a ``RasterTiler`` pickles as its config and its palettes' colour tables
    (so a worker colours web tiles without importing Matplotlib); an executor
    can map them over tiles in any order and any number of processes.
    """

    def __init__(self, config: Config, luts: tuple[np.ndarray, ...] | None = None) -> None:
        self.config = config
        self.tiles = Tiles(config)
        self._luts = luts

    def __reduce__(self) -> tuple[type[RasterTiler], tuple[Config, tuple[np.ndarray, ...]]]:
        return (RasterTiler, (self.config, self.luts))

    @property
    def luts(self) -> tuple[np.ndarray, ...]:
        """The ``(256, 4)`` RGBA colour table of each statistic (:func:`.webtiles.palette_lut`)."""
        if self._luts is None:
            self._luts = tuple(palette_lut(s) for s in self.config.statistics)
        return self._luts

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

    def rasterize_vector_bands(self, path: str | Path) -> Bands:
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
        frame = read_staged_tile(path, self.config, columns=needed_columns(self.config))
        result = compute_statistics(frame, self.tiles.bounds(tile), self.config, path)
        tags = {
            "kind": "rasterized",
            "n_rows": result.n_rows,
            "n_counted": result.n_counted,
            "n_duplicated": result.n_duplicated,
            "n_data_pixels": int((~np.isnan(result.values)).any(axis=0).sum()),
        }
        write_geotiff(
            self.tiles.path("geotiff", tile), result.values, tile, self.config, tags, self.tiles
        )
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

    def parent_geotiff_bands(
        self, tile: Tile, children: dict[Tile, np.ndarray] | None = None
    ) -> Bands:
        """:meth:`parent_geotiff`, also returning the bands and the tags written.

        Parameters
        ----------
        tile : Tile
            The parent tile.
        children : dict, optional
            Bands of children already in memory, by tile; the other children
            are read from disk (a missing file is a missing child).
        """
        tile = Tile(*tile)
        held = dict(children or {})
        for child in self.tiles.get_child_tiles(tile):
            if child not in held:
                path = self.tiles.path("geotiff", child)
                if path.is_file():
                    held[child] = read_geotiff(path, self.config)
        placed = place_children(self.tiles, tile, held)
        found = sum(c is not None for c in placed)
        if not found:
            folder = self.tiles.path("geotiff", self.tiles.get_child_tiles(tile)[0]).parent.parent
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
        write_geotiff(self.tiles.path("geotiff", tile), values, tile, self.config, tags, self.tiles)
        return tile, values, tags

    def parent_geotiffs_from_children(
        self,
        tiles: Iterable[Tile],
        recursive: bool = False,
        progress: bool = False,
        webtiles: bool = False,
    ) -> list[Tile]:
        """Build the parents of ``tiles`` (and, if ``recursive``, theirs, up to zoom 0).

        Parameters
        ----------
        tiles : iterable of Tile
            Child tiles whose GeoTIFFs exist.
        recursive : bool
            Go on up level by level until zoom 0.
        progress : bool
            Show a progress bar.
        webtiles : bool
            Also colour each parent's web tiles from the bands just computed,
            on the fixed scale (the levels' maxima are not known yet; call
            :meth:`webtiles_from_geotiffs` afterwards for colours fitted to each zoom).

        Returns
        -------
        list of Tile
            The parents written, level by level from the highest zoom down,
            sorted within a level.

        Notes
        -----
        The parents are built depth first, each from the bands of its
        children held in memory: every GeoTIFF is read at most once (the
        given tiles, and siblings of theirs that are not given) and no parent
        is read back. At most four bands per zoom level are held at a time.
        """
        level = unique_tiles(Tile(*t) for t in tiles)
        by_zoom = {t.z for t in level}
        if len(by_zoom) > 1:
            raise ValueError(f"tiles must share one zoom level, got zooms {sorted(by_zoom)}")
        wanted: dict[int, list[Tile]] = {}
        while level and level[0].z > self.tiles.min_zoom:
            level = unique_tiles(self.tiles.get_parent_tile(t) for t in level)
            wanted[level[0].z] = level
            if not recursive:
                break
        if not wanted:
            return []
        todo = {t for ts in wanted.values() for t in ts}
        bar = tqdm(total=len(todo), desc="parents", unit="tile", disable=not progress)

        def build(parent: Tile) -> np.ndarray:
            held = {c: build(c) for c in self.tiles.get_child_tiles(parent) if c in todo}
            _, values, _ = self.parent_geotiff_bands(parent, held)
            if webtiles:
                self.webtiles_from_bands(parent, values)
            bar.update()
            return values

        try:
            for root in wanted[min(wanted)]:
                build(root)
        finally:
            bar.close()
        return [t for z in sorted(wanted, reverse=True) for t in wanted[z]]

    # ----------------------------------------------------------- web tiles
    def colour_ranges(
        self, maxima: Mapping[str, Mapping[int, float | None]] | None = None
    ) -> ColourRanges:
        """Every statistic's colour range per zoom (:func:`.webtiles.zoom_ranges`).

        Parameters
        ----------
        maxima : mapping, optional
            ``{statistic name: {zoom: maximum of the band over that zoom's
            GeoTIFFs}}`` (the pipeline reads them from its run state). Default:
            the maxima in the statistics tags of the GeoTIFFs on disk (no pixel
            is read).

        Returns
        -------
        ColourRanges
            ``{statistic name: {zoom: (lo, hi)}}`` for zooms ``0 .. config.z``.
        """
        if maxima is None:
            frame = self.summary()
            maxima = {}
            for s in self.config.statistics:
                top = frame.groupby("z")[f"{s.name}_max"].max()
                maxima[s.name] = dict(
                    zip(top.index.tolist(), top.astype(float).tolist(), strict=True)
                )
        return {
            s.name: zoom_ranges(s, maxima.get(s.name, {}), self.config.z)
            for s in self.config.statistics
        }

    def webtile(self, path: str | Path, ranges: ColourRanges | None = None) -> list[Path]:
        """Colour one GeoTIFF into one PNG web tile per statistic.

        Parameters
        ----------
        path : str or Path
            A ``geotiff/<TMS>/<z>/<x>/<y>.tif``.
        ranges : ColourRanges, optional
            The run's :meth:`colour_ranges`; default the fixed scale
            (:func:`.webtiles.level_range` without ranges).

        Returns
        -------
        list of Path
            ``web_tiles/<statistic>/<TMS>/<z>/<x>/<y>.png``, in statistic order.
        """
        path = Path(path)
        return self.webtiles_from_bands(
            tile_from_path(path), read_geotiff(path, self.config), ranges
        )

    def webtiles_from_bands(
        self, tile: Tile, values: np.ndarray, ranges: ColourRanges | None = None
    ) -> list[Path]:
        """Colour bands held in memory into one PNG web tile per statistic.

        Parameters
        ----------
        tile : Tile
            The tile the bands belong to.
        values : ndarray of float32, shape (n_statistics, size, size)
            Its bands, as :meth:`rasterize_vector_bands` or
            :meth:`parent_geotiff_bands` return them (or :func:`read_geotiff` reads them).
        ranges : ColourRanges, optional
            As in :meth:`webtile`.

        Returns
        -------
        list of Path
            ``web_tiles/<statistic>/<TMS>/<z>/<x>/<y>.png``, in statistic order.
        """
        out = []
        for band, stat, lut in zip(values, self.config.statistics, self.luts, strict=True):
            dest = self.tiles.path("web_tiles", tile, statistic=stat.name)
            out.append(
                write_webtile(
                    dest,
                    band,
                    stat,
                    tile.z,
                    self.config.z,
                    scratch_dir=self.config.scratch_dir,
                    lut=lut,
                    ranges=None if ranges is None else ranges[stat.name],
                )
            )
        return out

    def write_legends(self) -> list[Path]:
        """Write ``web_tiles/<statistic>/legend.png`` for every statistic."""
        return [
            write_legend(self.config.dir_web_tiles / s.name / "legend.png", s, self.config.z)
            for s in self.config.statistics
        ]

    def webtiles_from_geotiffs(
        self, paths: Iterable[str | Path] | None = None, progress: bool = True
    ) -> list[Path]:
        """Colour GeoTIFFs into PNG web tiles, write the legends and the colour ranges.

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
        Colours fit each zoom level: :meth:`colour_ranges` from the statistics
        tags of *every* GeoTIFF on disk (not only ``paths``), the same ranges
        the pipeline takes from its run state, so a subset is coloured as the
        whole would be. They are written to ``web_tiles/colour-ranges.json``
        for the map page. Build the whole pyramid first: a zoom level whose
        GeoTIFFs are added later changes that level's range.
        """
        paths = list(self.tiles.get_filenames_from_dir("geotiff") if paths is None else paths)
        ranges = self.colour_ranges()
        write_colour_ranges(Layout.of(self.config).colour_ranges, ranges, self.config.z)
        self.write_legends()
        out: list[Path] = []
        for p in tqdm(paths, desc="web tiles", unit="tile", disable=not progress):
            out.extend(self.webtile(p, ranges))
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
        return geotiff_summary(self.config)

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
