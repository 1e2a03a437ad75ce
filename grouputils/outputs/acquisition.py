"""When the polygons of a tile were acquired: a staged tile's span, a parent's its leaves'.

The STAC catalogue (:mod:`grouputils.outputs.catalog`) gives each tile the
time span of the satellite scenes its polygons were detected in, never the
time a file was written, so two identical runs give identical catalogues.

The per-polygon rule (``Date``/``Time`` attributes, else a ``YYYYMMDD`` date
in the input file's name) is :func:`grouputils.core.acquisition.parse_acquisition`,
re-exported here; a staged tile spans its rows
(:func:`grouputils.core.acquisition.table_span`). A parent tile spans the
highest-zoom tiles below it (:func:`spread_spans`): from the staged tiles on
disk (:func:`acquisition_spans`) or from the spans the run recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from morecantile import Tile

from grouputils.core.acquisition import (
    DATE_ATTRIBUTE,
    TIME_ATTRIBUTE,
    Span,
    merge_spans,
    parse_acquisition,
    staged_span,
)
from grouputils.core.tiles import Tiles, tile_from_path

__all__ = [
    "DATE_ATTRIBUTE",
    "TIME_ATTRIBUTE",
    "Span",
    "acquisition_spans",
    "parse_acquisition",
    "spread_spans",
]


def spread_spans(
    tiles: Tiles, leaves: Mapping[Tile, Span | None], wanted: Iterable[Tile]
) -> dict[Tile, Span]:
    """Acquisition span of each wanted tile from the spans of the staging-zoom tiles below it.

    Parameters
    ----------
    tiles : Tiles
        The run's tile matrix set and zoom level.
    leaves : Mapping
        Span of each staged tile (tiles of other zoom levels and undated ones,
        None, are ignored).
    wanted : iterable of Tile
        Tiles of any zoom level up to the run's ``z``.

    Returns
    -------
    dict
        Tile -> (earliest, latest); a wanted tile with no dated leaf below it
        is left out.

    Notes
    -----
    One pass per zoom level, each tile merged into its parent
    (:meth:`~grouputils.core.tiles.Tiles.get_parent_tile`): every level
    holds the spans of the level above, so a parent spans all of its
    staging-zoom descendants.
    """
    wanted = set(wanted)
    z = tiles.config.z
    level: dict[Tile, Span] = {}
    for leaf, span in leaves.items():
        if leaf.z == z and span is not None:
            level[leaf] = span
    out = {t: s for t, s in level.items() if t in wanted}
    lowest = min((t.z for t in wanted), default=z)
    for _ in range(z, lowest, -1):
        up: dict[Tile, Span] = {}
        for tile, span in level.items():
            parent = tiles.get_parent_tile(tile)
            up[parent] = merge_spans(up.get(parent), span)
        level = up
        out.update((t, s) for t, s in level.items() if t in wanted)
    return out


def acquisition_spans(tiles: Tiles, wanted: Iterable[Tile]) -> Mapping[Tile, Span]:
    """Acquisition span of each wanted tile, from the staged tiles on disk below it.

    Parameters
    ----------
    tiles : Tiles
        The run's tile paths and tile matrix set.
    wanted : iterable of Tile
        Tiles of any zoom level up to the run's ``z``.

    Returns
    -------
    Mapping
        Tile -> (earliest, latest); tiles without a dated polygon below them
        (or without staged tiles) are left out.
    """
    leaves = {
        tile_from_path(p): staged_span(p)
        for p in tiles.get_filenames_from_dir("staged", z=tiles.config.z)
    }
    return spread_spans(tiles, leaves, wanted)
