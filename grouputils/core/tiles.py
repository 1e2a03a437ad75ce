"""Tile maths on morecantile, the tile's external spellings, and listing outputs.

All coordinates are in the tile matrix set's CRS (for ``WorldCRS84Quad``,
longitude/latitude in degrees).

One tile key
------------
Inside grouputils a tile is a :class:`morecantile.Tile` ``Tile(x, y, z)``,
everywhere: as a dictionary key, in sets, in function arguments and results.
It is what morecantile's own maths (``tms.bounds``, ``tms.parent``,
``tms.tile``) takes and returns, it is a hashable, immutable named tuple that
compares and sorts by value, it pickles small (Parsl ships it to workers) and
it carries its zoom level, so a tile of another level is never mistaken for
one at the staging level. A class of our own (a ``TileKey(z, x, y)``) would
only be a second spelling of what morecantile already returns, to convert at
every call into it. A string or a tuple stands for a tile only where it
leaves Python, and each such form is made and read by one pair of functions
here, never by an f-string elsewhere:

* ``Tile(x=1, y=2, z=3)``: the course-facing ``staging_tile`` column, GeoTIFF
  tags, the CSV ``tile`` column and messages; :func:`tile_to_str` /
  :func:`str_to_tile`.
* ``WorldCRS84Quad-3-1-2``: identifiers across tile matrix sets (STAC item
  ids); :func:`tile_id` / :func:`tile_from_id`.
* ``(3, 1, 2)`` = ``(z, x, y)``: row keys of the run state; :func:`tile_key` /
  :func:`key_tile`.
* ``1/2`` = ``x/y``: tiles of the staging zoom level as JSON keys of a staging
  manifest; :func:`tile_xy` / :func:`xy_tile`.
* ``3/1/2`` = ``z/x/y``: a web tile's URL path; :func:`tile_zxy`.
* ``.../3/1/2.tif``: output paths;
  :meth:`grouputils.core.layout.Layout.tile_path` / :func:`tile_from_path`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import morecantile
import numpy as np
from morecantile import Tile

from grouputils.core.config import Config
from grouputils.core.errors import InputError
from grouputils.core.input_checks import warn_skipped_vector_files
from grouputils.core.layout import TILE_EXTENSIONS, Layout, TileKind

__all__ = [
    "Tile",
    "Tiles",
    "get_tms",
    "tile_from_path",
    "tile_to_str",
    "str_to_tile",
    "tile_id",
    "tile_from_id",
    "tile_key",
    "key_tile",
    "tile_xy",
    "xy_tile",
    "tile_zxy",
    "tile_order",
    "unique_tiles",
]

Kind = Literal["input", "staged", "geotiff", "web_tiles"]
#: A tile as a row key of the run state: ``(z, x, y)``.
TileKey = tuple[int, int, int]


@functools.lru_cache(maxsize=16)
def get_tms(tms_id: str) -> morecantile.TileMatrixSet:
    """Return the morecantile tile matrix set ``tms_id`` (cached; TMS objects are immutable)."""
    return morecantile.tms.get(tms_id)


def tile_to_str(tile: Tile) -> str:
    """``Tile(x=1, y=2, z=3)``: the tile as stored in ``staging_tile``, tags and CSV files."""
    return f"Tile(x={tile.x}, y={tile.y}, z={tile.z})"


def str_to_tile(text: str) -> Tile:
    """Inverse of :func:`tile_to_str`.

    Raises
    ------
    ValueError
        ``text`` is not such a string.
    """
    try:
        inner = text.strip()
        if not (inner.startswith("Tile(") and inner.endswith(")")):
            raise ValueError(text)
        parts = dict(p.strip().split("=") for p in inner[len("Tile(") : -1].split(","))
        return Tile(int(parts["x"]), int(parts["y"]), int(parts["z"]))
    except (KeyError, ValueError) as e:
        raise ValueError(f"not a tile string: {text!r}") from e


def tile_id(tms: str, tile: Tile) -> str:
    """``'<TMS>-<z>-<x>-<y>'``: the tile's identifier across tile matrix sets (STAC item ids)."""
    return f"{tms}-{tile.z}-{tile.x}-{tile.y}"


def tile_from_id(text: str) -> tuple[str, Tile]:
    """Inverse of :func:`tile_id`: the tile matrix set and the tile.

    Raises
    ------
    ValueError
        ``text`` does not end in ``-<z>-<x>-<y>``.
    """
    try:
        tms, z, x, y = text.rsplit("-", 3)
        return tms, Tile(int(x), int(y), int(z))
    except ValueError as e:
        raise ValueError(f"not a tile id: {text!r}") from e


def tile_key(tile: Tile) -> TileKey:
    """``(z, x, y)``: the tile as a row key of the run state."""
    return (int(tile.z), int(tile.x), int(tile.y))


def key_tile(key: Iterable[int]) -> Tile:
    """Inverse of :func:`tile_key`."""
    z, x, y = key
    return Tile(int(x), int(y), int(z))


def tile_xy(tile: Tile) -> str:
    """``'<x>/<y>'``: a tile of a known zoom level as a JSON key (staging manifests)."""
    return f"{tile.x}/{tile.y}"


def xy_tile(text: str, z: int) -> Tile:
    """Inverse of :func:`tile_xy` for zoom level ``z``."""
    x, y = text.split("/")
    return Tile(int(x), int(y), z)


def tile_zxy(tile: Tile) -> str:
    """``'<z>/<x>/<y>'``: the tile as a web map's URL path (without the extension)."""
    return f"{tile.z}/{tile.x}/{tile.y}"


def tile_order(tile: Tile) -> tuple[int, int, int]:
    """Sort key of tiles: by zoom level, then column, then row."""
    return (tile.z, tile.x, tile.y)


def tile_from_path(path: str | Path) -> Tile:
    """Read the tile from a path that ends in ``<z>/<x>/<y>.<ext>``.

    Raises
    ------
    InputError
        If the last three parts of the path are not integers.
    """
    p = Path(path)
    try:
        z, x, y = int(p.parent.parent.name), int(p.parent.name), int(p.stem)
    except ValueError:
        raise InputError(
            p, "is not a tile path: it should end in <z>/<x>/<y> with integers"
        ) from None
    if min(x, y, z) < 0:
        raise InputError(p, "is not a tile path: negative tile index")
    return Tile(x, y, z)


@functools.lru_cache(maxsize=32)
def pyramid_min_zoom(tms_id: str, z: int) -> int:
    """Lowest zoom of a pyramid built down from ``z``; checks that every level doubles.

    Parameters
    ----------
    tms_id : str
        A morecantile tile matrix set.
    z : int
        The staging zoom level.

    Returns
    -------
    int
        The tile matrix set's first zoom level (0, or 1 for the UTM sets).

    Raises
    ------
    ConfigError
        Between that level and ``z`` some level does not have the same origin,
        tile size and corner as the one above, half its cell size and twice its
        tiles across and down, so a parent tile would not be exactly four
        children (e.g. ``CanadianNAD83_LCC``).
    """
    from grouputils.core.errors import ConfigError

    tms = get_tms(tms_id)
    lo = max(0, tms.minzoom)
    for level in range(lo + 1, z + 1):
        a, b = tms.matrix(level - 1), tms.matrix(level)
        same = (
            tuple(a.pointOfOrigin) == tuple(b.pointOfOrigin)
            and a.cornerOfOrigin == b.cornerOfOrigin
            and (a.tileWidth, a.tileHeight) == (b.tileWidth, b.tileHeight)
            and (2 * a.matrixWidth, 2 * a.matrixHeight) == (b.matrixWidth, b.matrixHeight)
            and abs(a.cellSize - 2 * b.cellSize) <= 1e-9 * a.cellSize
        )
        if not same:
            raise ConfigError(
                f"tile matrix set {tms_id!r}: zoom {level} does not split each "
                f"zoom-{level - 1} tile into four (same origin, half the cell size), "
                "so no pyramid can be built from it; "
                "use a quadtree set such as WorldCRS84Quad, WebMercatorQuad or UTM<zone>WGS84Quad"
            )
    return lo


class Tiles:
    """Tile maths and output paths for one :class:`~grouputils.core.config.Config`.

    Parameters
    ----------
    config : Config
        Supplies the tile matrix set, the zoom level and the folders.
    """

    def __init__(self, config: Config) -> None:
        self.config = config

    def __reduce__(self):  # picklable without the TMS object
        return (Tiles, (self.config,))

    @property
    def tms(self) -> morecantile.TileMatrixSet:
        """The morecantile tile matrix set."""
        return get_tms(self.config.tms)

    # ---------------------------------------------------------------- maths
    def bounds(self, tile: Tile) -> morecantile.BoundingBox:
        """Bounds of ``tile`` in the TMS CRS (left, bottom, right, top)."""
        return self.tms.xy_bounds(tile)

    def _grid(self, z: int) -> tuple[float, float, float, float, float, bool]:
        # Origin, cell size and tile size in pixels, exactly as morecantile's
        # ``_tile`` and ``xy_bounds`` use them: the same floating-point
        # operations give the same tile for points on tile edges.
        m = self.tms.matrix(z)
        b = self.tms.xy_bounds(Tile(0, 0, z))  # left/top (or bottom) are the matrix origin exactly
        top_left = m.cornerOfOrigin != "bottomLeft"
        oy = b.top if top_left else b.bottom
        return b.left, oy, float(m.cellSize), float(m.tileWidth), float(m.tileHeight), top_left

    def tile_indices(
        self, x: np.ndarray, y: np.ndarray, z: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Column and row of the tiles holding points, vectorized.

        Follows morecantile's rule (``TileMatrixSet._tile``): ``floor`` of the
        offset from the origin in tile widths, clamped to the matrix. A point
        on a tile edge belongs to the tile to its right (and below, for a
        top-left origin).

        Parameters
        ----------
        x, y : ndarray of float
            Coordinates in the TMS CRS.
        z : int, optional
            Zoom level; default the config's.

        Returns
        -------
        tuple of ndarray of int64
            Tile columns and rows.
        """
        z = self.config.z if z is None else z
        ox, oy, cell, tw, th, top_left = self._grid(z)
        m = self.tms.matrix(z)
        col = np.floor((np.asarray(x, dtype="f8") - ox) / (cell * tw))
        off = (oy - np.asarray(y, dtype="f8")) if top_left else (np.asarray(y, dtype="f8") - oy)
        row = np.floor(off / (cell * th))
        col = np.clip(np.nan_to_num(col, nan=0.0), 0, m.matrixWidth - 1).astype("i8")
        row = np.clip(np.nan_to_num(row, nan=0.0), 0, m.matrixHeight - 1).astype("i8")
        return col, row

    def tile_boxes(self, cols: np.ndarray, rows: np.ndarray, z: int | None = None) -> np.ndarray:
        """Bounds (left, bottom, right, top) of many tiles as an ``(n, 4)`` array."""
        z = self.config.z if z is None else z
        ox, oy, cell, tw, th, top_left = self._grid(z)
        cols = np.asarray(cols, dtype="f8")
        rows = np.asarray(rows, dtype="f8")
        # same operation order as morecantile's xy_bounds, so edges agree bit for bit
        left = ox + cols * cell * tw
        right = ox + (cols + 1) * cell * tw
        if top_left:
            top = oy - rows * cell * th
            bottom = oy - (rows + 1) * cell * th
        else:
            bottom = oy + rows * cell * th
            top = oy + (rows + 1) * cell * th
        return np.column_stack([left, bottom, right, top])

    @property
    def min_zoom(self) -> int:
        """The lowest zoom level of the pyramid (the TMS's first level, 0 for most)."""
        return pyramid_min_zoom(self.config.tms, self.config.z)

    def get_parent_tile(self, tile: Tile) -> Tile:
        """The tile one zoom level up that contains ``tile`` (what ``tms.parent`` gives).

        The tile matrix set is first checked to split every tile into four
        from one origin (:func:`pyramid_min_zoom`), which makes the parent
        ``(x // 2, y // 2)`` exactly; that is 70 times faster than asking
        morecantile, and the tests check it against ``tms.parent`` for every
        accepted set.

        Raises
        ------
        ValueError
            ``tile`` is at the tile matrix set's lowest zoom level.
        ConfigError
            The tile matrix set's levels do not each double from one origin.
        """
        if tile.z <= self.min_zoom:
            lowest = f"the lowest level of {self.config.tms}"
            raise ValueError(f"{tile_to_str(tile)} is at zoom {tile.z}, {lowest}")
        return Tile(tile.x // 2, tile.y // 2, tile.z - 1)

    def get_child_tiles(self, tile: Tile) -> list[Tile]:
        """The four tiles one zoom level down (what ``tms.children`` gives), in row-major order.

        Checked like :meth:`get_parent_tile`.
        """
        self.min_zoom  # noqa: B018 - refuses a TMS whose levels do not double
        x, y, z = 2 * tile.x, 2 * tile.y, tile.z + 1
        return [Tile(x + dx, y + dy, z) for dy in (0, 1) for dx in (0, 1)]

    # ---------------------------------------------------------------- paths
    @property
    def layout(self) -> Layout:
        """Every path of the output folder (:class:`~grouputils.core.layout.Layout`)."""
        return Layout.of(self.config)

    def path(self, kind: TileKind, tile: Tile, statistic: str | None = None) -> Path:
        """Output path of ``tile`` for ``kind`` (``'staged'``, ``'geotiff'`` or ``'web_tiles'``)."""
        return self.layout.tile_path(kind, tile, statistic)

    def tile_from_path(self, path: str | Path) -> Tile:
        """The tile a ``<z>/<x>/<y>.<ext>`` path stands for."""
        return tile_from_path(path)

    def get_filenames_from_dir(self, kind: Kind, z: int | None = None) -> list[Path]:
        """List input files or outputs in a deterministic order.

        Parameters
        ----------
        kind : {'input', 'staged', 'geotiff', 'web_tiles'}
            Which folder to list.
        z : int, optional
            Only this zoom level (ignored for ``'input'``).

        Returns
        -------
        list of Path
            Inputs sorted by their path relative to ``dir_input``; tiles sorted
            by (statistic,) z, x, y numerically. Temporary files are skipped.
            Listing inputs warns (:class:`~grouputils.core.input_checks.SkippedInputWarning`)
            about vector files of other formats, which are not staged.
        """
        if kind == "input":
            root = self.config.dir_input
            if not root.is_dir():
                return []
            ext = self.config.input_ext.lower()
            every = sorted(
                (p for p in root.rglob("*") if p.is_file()),
                key=lambda p: p.relative_to(root).as_posix(),
            )
            warn_skipped_vector_files(root, every, self.config.input_ext)
            files = [p for p in every if p.name.lower().endswith(ext)]
            return sorted(files, key=lambda p: p.relative_to(root).as_posix())
        layout = self.layout
        if kind == "web_tiles":
            roots = [layout.tile_root(kind, s) for s in self.config.statistic_names]
        else:
            roots = [layout.tile_root(kind)]
        out: list[Path] = []
        for root in roots:
            out.extend(self._list_tiles(root, TILE_EXTENSIONS[kind], z))
        return out

    @staticmethod
    def _list_tiles(root: Path, ext: str, z: int | None) -> list[Path]:
        if not root.is_dir():
            return []
        found: list[tuple[tuple[int, int, int], Path]] = []
        zdirs = [root / str(z)] if z is not None else [d for d in root.iterdir() if d.is_dir()]
        for zdir in zdirs:
            if not zdir.is_dir() or not zdir.name.isdigit():
                continue
            for xdir in zdir.iterdir():
                if not xdir.name.isdigit():
                    continue
                for f in xdir.iterdir():
                    if f.suffix == ext and f.stem.isdigit():
                        found.append(((int(zdir.name), int(xdir.name), int(f.stem)), f))
        found.sort(key=lambda t: t[0])
        return [p for _, p in found]

    def tiles_in(self, kind: Kind, z: int | None = None) -> list[Tile]:
        """The tiles present on disk for ``kind`` (deduplicated across statistics)."""
        seen = dict.fromkeys(tile_from_path(p) for p in self.get_filenames_from_dir(kind, z))
        return sorted(seen, key=tile_order)


def unique_tiles(tiles: Iterable[Tile]) -> list[Tile]:
    """Distinct tiles sorted by (z, x, y)."""
    return sorted(set(tiles), key=tile_order)
