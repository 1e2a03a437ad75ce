"""The pyramid: a parent tile from the 2x2 child tiles it covers.

A parent pixel is made from the 2x2 child pixels it covers. ``resampling='sum'``
adds them, ``'mean'`` averages them; for statistics that are 0 when empty
(counts, coverage, sums) a nodata child pixel and a missing child tile count
as 0 (so coverage stays an area fraction and counts are conserved at every
level); for the others (means, maxima, minima of attributes) the mean or sum
is over the child pixels that have a value. A parent pixel is nodata only
where all four child pixels are.

Each child is reduced on its own to a quarter of the parent (four strided
views added in float64, ``(top-left + top-right) + (bottom-left +
bottom-right)``, the order of NumPy's reduction over a 2x2 block, so the
result is bit-identical to summing the 2x2 blocks of the assembled mosaic);
the 512x512 mosaic of the children is never built.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from morecantile import Tile

from grouputils.core.raster.statistics import zero_when_empty
from grouputils.core.statistic import Statistic
from grouputils.core.tiles import Tiles

__all__ = ["resample_children", "child_quadrant", "place_children"]


def _block_sums(child: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sums (float64, NaN as 0) and counts of valid pixels of each 2x2 block of ``child``."""
    c = child.astype("f8")
    valid = ~np.isnan(c)
    np.copyto(c, 0.0, where=~valid)
    sums = (c[:, 0::2, 0::2] + c[:, 0::2, 1::2]) + (c[:, 1::2, 0::2] + c[:, 1::2, 1::2])
    n = (
        valid[:, 0::2, 0::2].astype("i1")
        + valid[:, 0::2, 1::2]
        + valid[:, 1::2, 0::2]
        + valid[:, 1::2, 1::2]
    )
    return sums, n


def resample_children(
    children: Sequence[np.ndarray | None], statistics: Sequence[Statistic]
) -> np.ndarray:
    """Combine four child tiles into their parent, by each statistic's resampling rule.

    Parameters
    ----------
    children : sequence of 4 arrays or None
        Child bands ``(n_statistics, size, size)`` in the order top-left,
        top-right, bottom-left, bottom-right (as placed in the parent image);
        ``None`` for a missing child (all nodata).
    statistics : sequence of Statistic
        Band order and resampling rules.

    Returns
    -------
    ndarray of float32, shape (n_statistics, size, size)
        The parent tile: each pixel combines the 2x2 child pixels it covers.
    """
    present = [c for c in children if c is not None]
    if not present:
        raise ValueError("a parent needs at least one child")
    nb, size, _ = present[0].shape
    half = size // 2
    sums = np.zeros((nb, size, size), dtype="f8")
    n_valid = np.zeros((nb, size, size), dtype="i1")
    for k, child in enumerate(children):
        if child is not None:
            r, c = divmod(k, 2)
            window = (slice(None), slice(r * half, (r + 1) * half), slice(c * half, (c + 1) * half))
            sums[window], n_valid[window] = _block_sums(np.asarray(child))
    out = np.full((nb, size, size), np.nan, dtype="f4")
    for b, stat in enumerate(statistics):
        has = n_valid[b] > 0
        if stat.resampling == "sum":
            val = sums[b]
        elif zero_when_empty(stat):
            val = sums[b] / 4.0
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                val = sums[b] / n_valid[b]
        out[b][has] = val[has]
    return out


def child_quadrant(tiles: Tiles, parent: Tile, child: Tile) -> int:
    """Quadrant of ``child`` in ``parent``: 0, 1 top left, right; 2, 3 bottom left, right."""
    cb = tiles.bounds(child)
    parent_top = tiles.bounds(parent).top
    top_half = np.isclose(cb.top, parent_top, rtol=0, atol=abs(cb.top - cb.bottom) * 1e-6)
    left_half = child.x == 2 * parent.x
    return (0 if top_half else 2) + (0 if left_half else 1)


def place_children(
    tiles: Tiles, parent: Tile, arrays: dict[Tile, np.ndarray]
) -> list[np.ndarray | None]:
    """The children of ``parent`` found in ``arrays``, in :func:`resample_children` order."""
    placed: list[np.ndarray | None] = [None] * 4
    for child in tiles.get_child_tiles(parent):
        if child in arrays:
            placed[child_quadrant(tiles, parent, child)] = arrays[child]
    return placed
