"""The layout of an output folder: every path grouputils writes, in one place.

One run writes into one output folder (``Config.dir_output``)::

    <output>/
        staging-parts/<TMS>/<z>/<x>/<y>/*.arrow     parts (staging's map step)
        staging-parts/manifests/*.json              per-input manifests
        staged/<TMS>/<z>/<x>/<y>.gpkg
        geotiff/<TMS>/<z>/<x>/<y>.tif
        web_tiles/<statistic>/<TMS>/<z>/<x>/<y>.png
        web_tiles/<statistic>/legend.png
        web_tiles/colour-ranges.json               colour range per statistic and zoom
        staging_summary.csv, raster_summary.csv, run-summary.json
        stac/catalog.json      the STAC catalogue
        index.html, assets/leaflet/   the map page and Leaflet's files
        .grouputils/           private: state.sqlite, run.log, run.lock, parsl-runinfo/

Everything that needs one of these paths asks a :class:`Layout` (``Config``'s
``dir_*``/``filename_*`` properties, :class:`~grouputils.core.tiles.Tiles`,
``TileStager.clear()``, the run, the catalogue and the map), so a file name is
spelled exactly once. The module imports nothing else of grouputils: it is
pure path arithmetic, cheap to import from any layer.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from morecantile import Tile

    from grouputils.core.config import Config

__all__ = [
    "Layout",
    "TileKind",
    "TILE_EXTENSIONS",
    "PRIVATE_DIR",
    "STATE_FILE",
    "LOCK_FILE",
    "RUN_LOG",
    "PARSL_RUNINFO",
]

#: Kinds of per-tile outputs.
TileKind = Literal["staged", "geotiff", "web_tiles"]
#: File extension of each kind of per-tile output.
TILE_EXTENSIONS: dict[str, str] = {"staged": ".gpkg", "geotiff": ".tif", "web_tiles": ".png"}
#: Name of the private folder (run state, log, lock, Parsl's run folders): never published.
PRIVATE_DIR = ".grouputils"
#: Names inside the private folder: the run state, the run lock, the log, Parsl's run folders.
STATE_FILE = "state.sqlite"
LOCK_FILE = "run.lock"
RUN_LOG = "run.log"
PARSL_RUNINFO = "parsl-runinfo"


@dataclasses.dataclass(frozen=True)
class Layout:
    """Paths of one output folder.

    Parameters
    ----------
    root : Path
        The output folder (``Config.dir_output``).
    tms : str
        The tile matrix set's identifier (one folder level of every tile path).

    Examples
    --------
    >>> from morecantile import Tile
    >>> lay = Layout(Path("out"), "WorldCRS84Quad")
    >>> lay.tile_path("geotiff", Tile(3, 1, 2)).as_posix()
    'out/geotiff/WorldCRS84Quad/2/3/1.tif'
    >>> lay.state_file.as_posix()
    'out/.grouputils/state.sqlite'
    """

    root: Path
    tms: str = "WorldCRS84Quad"

    @classmethod
    def of(cls, config: Config) -> Layout:
        """The layout of ``config``'s output folder."""
        return cls(Path(config.dir_output), config.tms)

    # ------------------------------------------------------------ step folders
    @property
    def staging_parts(self) -> Path:
        """Staging parts and per-input manifests (``staging-parts/``)."""
        return self.root / "staging-parts"

    @property
    def manifests(self) -> Path:
        """Per-input staging manifests (``staging-parts/manifests/``)."""
        return self.staging_parts / "manifests"

    def parts_root(self, z: int) -> Path:
        """Staging parts of zoom level ``z``: ``staging-parts/<TMS>/<z>/``."""
        return self.staging_parts / self.tms / str(z)

    def parts_dir(self, tile: Tile) -> Path:
        """Staging parts of ``tile``: ``staging-parts/<TMS>/<z>/<x>/<y>/``."""
        return self.parts_root(tile.z) / str(tile.x) / str(tile.y)

    @property
    def staged(self) -> Path:
        """Finalized staged tiles (``staged/``)."""
        return self.root / "staged"

    @property
    def geotiff(self) -> Path:
        """GeoTIFF tiles of every zoom level (``geotiff/``)."""
        return self.root / "geotiff"

    @property
    def web_tiles(self) -> Path:
        """PNG web tiles and legends (``web_tiles/``)."""
        return self.root / "web_tiles"

    # ------------------------------------------------------------- tile paths
    def tile_root(self, kind: TileKind, statistic: str | None = None) -> Path:
        """Folder holding the ``<z>/<x>/<y>`` tree of ``kind`` (per statistic for web tiles).

        Raises
        ------
        ValueError
            Unknown ``kind``, or a web-tile root asked for without a statistic.
        """
        if kind == "staged":
            return self.staged / self.tms
        if kind == "geotiff":
            return self.geotiff / self.tms
        if kind == "web_tiles":
            if statistic is None:
                raise ValueError("web tile paths need a statistic name")
            return self.web_tiles / statistic / self.tms
        raise ValueError(f"unknown kind {kind!r}; use 'staged', 'geotiff' or 'web_tiles'")

    def tile_path(self, kind: TileKind, tile: Tile, statistic: str | None = None) -> Path:
        """Path of ``tile``'s output of ``kind``: ``<root>/<z>/<x>/<y>.<ext>``."""
        root = self.tile_root(kind, statistic)
        return root / str(tile.z) / str(tile.x) / f"{tile.y}{TILE_EXTENSIONS[kind]}"

    def legend(self, statistic: str) -> Path:
        """The legend of ``statistic``'s web tiles (``web_tiles/<statistic>/legend.png``)."""
        return self.web_tiles / statistic / "legend.png"

    @property
    def colour_ranges(self) -> Path:
        """The web tiles' colour range per statistic and zoom (``web_tiles/colour-ranges.json``).

        Written by the web-tile step and ``RasterTiler.webtiles_from_geotiffs``
        (:func:`grouputils.core.webtiles.write_colour_ranges`), read by the map page.
        """
        return self.web_tiles / "colour-ranges.json"

    # -------------------------------------------------------- summaries, pages
    @property
    def staging_summary(self) -> Path:
        """The staging summary CSV (one row per input file and tile)."""
        return self.root / "staging_summary.csv"

    @property
    def raster_summary(self) -> Path:
        """The raster summary CSV (one row per GeoTIFF tile)."""
        return self.root / "raster_summary.csv"

    @property
    def raster_summary_parts(self) -> Path:
        """Per-tile raster summary parts written by older versions (removed by ``clear``)."""
        return self.root / "raster-summary-parts"

    @property
    def run_summary(self) -> Path:
        """The run summary (``run-summary.json``)."""
        return self.root / "run-summary.json"

    @property
    def stac(self) -> Path:
        """The STAC catalogue folder."""
        return self.root / "stac"

    @property
    def catalog(self) -> Path:
        """The STAC catalogue's root ``catalog.json``."""
        return self.stac / "catalog.json"

    @property
    def map_page(self) -> Path:
        """The map page (``index.html``)."""
        return self.root / "index.html"

    @property
    def map_assets(self) -> Path:
        """Leaflet's files used by the map page (``assets/leaflet/``)."""
        return self.root / "assets" / "leaflet"

    # ------------------------------------------------------------ private part
    @property
    def private(self) -> Path:
        """The private folder (``.grouputils/``): machine-specific, never published."""
        return self.root / PRIVATE_DIR

    @property
    def state_file(self) -> Path:
        """The run's state database (SQLite)."""
        return self.private / STATE_FILE

    @property
    def run_log(self) -> Path:
        """The run's log file."""
        return self.private / RUN_LOG

    @property
    def run_lock(self) -> Path:
        """The lock file that keeps two runs out of one output folder."""
        return self.private / LOCK_FILE

    @property
    def parsl_runinfo(self) -> Path:
        """Parent of Parsl's per-run folders."""
        return self.private / PARSL_RUNINFO

    def state_files(self) -> list[Path]:
        """The state database and SQLite's write-ahead log and shared-memory files."""
        return [self.state_file.with_name(self.state_file.name + s) for s in ("", "-wal", "-shm")]

    # -------------------------------------------------------------- clearing
    def staging_outputs(self) -> list[Path]:
        """What staging writes: its parts, staged tiles and summary."""
        return [self.staged, self.staging_parts, self.staging_summary]

    def later_outputs(self) -> list[Path]:
        """What the steps after staging and the end of a run write.

        The private folder is not included: a run holds its lock there while
        it clears (``run_pipeline(force=True)``) and drops the state itself.
        """
        return [
            self.geotiff,
            self.web_tiles,
            self.raster_summary,
            self.raster_summary_parts,
            self.map_page,
            self.map_assets,
            self.run_summary,
            self.stac,
        ]
