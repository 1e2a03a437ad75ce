"""Flag polygons that were detected twice, in overlapping scenes (input files).

Neighbouring satellite scenes overlap, so the same ground polygon is often
detected in two (or more) input files with slightly different outlines. Within
one staged tile, two polygons from *different* input files are the same ground
polygon when their intersection covers at least ``min_overlap`` of the smaller
one. In every such pair the copy from the input file whose path sorts later is
flagged ``staging_duplicated``; the copy from the file that sorts first is kept.

Why this rule
-------------
* It is a pure function of the polygons present in the tile: staging files in
  any order, with any number of workers, gives the same flags.
* It is pairwise, so three detections of one polygon keep exactly one.
* Overlaps inside one file are never flagged: the real detections overlap their
  own neighbours (about 1,600 intersecting pairs in the Prudhoe Bay file, mostly
  by a few per cent) and those are distinct polygons.
* "Keep the first file" is simple to explain and to check; PDG's staging keeps a
  copy by a configurable attribute rule, which a file-name order reproduces
  when scenes are named by acquisition.
The ratio is computed in the tile matrix set's CRS: within one tile a ratio of
two areas hardly depends on the projection.
"""

from __future__ import annotations

import numpy as np
import shapely

__all__ = ["duplicate_flags", "overlapping_pairs"]


def overlapping_pairs(
    geoms: np.ndarray, min_overlap: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of polygons whose intersection covers at least ``min_overlap`` of the smaller one.

    Parameters
    ----------
    geoms : ndarray of shapely geometries
        Polygons, one per row.
    min_overlap : float
        Threshold on ``area(a & b) / min(area(a), area(b))``, in (0, 1].

    Returns
    -------
    tuple of ndarray
        Row indices ``i < j`` of each pair and its overlap ratio.
    """
    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) < 2:
        empty = np.empty(0, dtype="i8")
        return empty, empty, np.empty(0)
    tree = shapely.STRtree(geoms)
    i, j = tree.query(geoms, predicate="intersects")
    keep = i < j
    i, j = i[keep], j[keep]
    if len(i) == 0:
        return i, j, np.empty(0)
    area = shapely.area(geoms)
    inter = shapely.area(shapely.intersection(geoms[i], geoms[j]))
    smaller = np.minimum(area[i], area[j])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(smaller > 0, inter / smaller, 0.0)
    ok = ratio >= min_overlap
    return i[ok], j[ok], ratio[ok]


def duplicate_flags(geoms: np.ndarray, source_rank: np.ndarray, min_overlap: float) -> np.ndarray:
    """Flag every polygon that re-detects a polygon of an earlier input file.

    Parameters
    ----------
    geoms : ndarray of shapely geometries
        Polygons of one tile, all in one CRS.
    source_rank : ndarray of int
        For each row, the rank of its input file in sorted path order.
    min_overlap : float
        See :func:`overlapping_pairs`.

    Returns
    -------
    ndarray of bool
        True where the row is a duplicate of a row from an earlier file.
    """
    source_rank = np.asarray(source_rank)
    flags = np.zeros(len(source_rank), dtype=bool)
    i, j, _ = overlapping_pairs(geoms, min_overlap)
    cross = source_rank[i] != source_rank[j]
    i, j = i[cross], j[cross]
    loser = np.where(source_rank[i] > source_rank[j], i, j)
    flags[loser] = True
    return flags
