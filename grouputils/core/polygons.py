"""Keeping the polygons of an input: repair, and the polygonal part of collections.

Staging keeps polygons and multipolygons. Invalid ones are repaired with
``shapely.make_valid``; a GeometryCollection (some tools write detections
that way) keeps its polygonal part. Both count as *repaired*. Everything
else (points, lines, empty geometries, collections without a polygon) is
*dropped*. Counts are returned so staging can warn naming the file.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import shapely

__all__ = ["PolygonCounts", "polygons_only", "polygonal_part"]

_POLYGON, _MULTIPOLYGON, _COLLECTION = 3, 6, 7


@dataclasses.dataclass(frozen=True)
class PolygonCounts:
    """What :func:`polygons_only` did to one batch.

    Attributes
    ----------
    repaired : int
        Polygons kept after a repair (both kinds below).
    made_valid : int
        Invalid polygons repaired with ``make_valid``.
    from_collections : int
        GeometryCollections whose polygonal part was kept.
    """

    repaired: int
    made_valid: int
    from_collections: int


def polygons_only(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, PolygonCounts]:
    """Keep polygons and multipolygons; repair invalid ones; unpack collections.

    Parameters
    ----------
    geoms : ndarray of shapely geometries (or None)
        One batch of input geometries.

    Returns
    -------
    geoms : ndarray
        The geometries, with repaired and unpacked ones replaced.
    keep : ndarray of bool
        Which geometries are kept (polygonal and not empty).
    counts : PolygonCounts
        How many were repaired, and how.
    """
    geoms = np.asarray(geoms, dtype=object).copy()
    tid = shapely.get_type_id(geoms)
    nonempty = ~shapely.is_empty(geoms) & (tid >= 0)
    polygonal = np.isin(tid, (_POLYGON, _MULTIPOLYGON)) & nonempty
    collections = np.flatnonzero((tid == _COLLECTION) & nonempty)
    from_collections = 0
    for i in collections:
        part = polygonal_part(geoms[i])
        if part is not None:
            geoms[i] = part
            polygonal[i] = True
            from_collections += 1
    invalid = polygonal & ~shapely.is_valid(geoms)
    invalid_collection = invalid.copy()
    invalid_collection[:] = False
    invalid_collection[collections] = invalid[collections]
    made_valid = 0
    if invalid.any():
        fixed = np.array(
            [polygonal_part(g) for g in shapely.make_valid(geoms[invalid])], dtype=object
        )
        geoms[invalid] = fixed
        ok = np.array([g is not None for g in fixed])
        made_valid = int(ok[~invalid_collection[invalid]].sum())
        lost = np.flatnonzero(invalid)[~ok]
        polygonal[lost] = False
        from_collections -= int(np.isin(lost, collections).sum())
    counts = PolygonCounts(made_valid + from_collections, made_valid, from_collections)
    return geoms, polygonal, counts


def polygonal_part(g: shapely.Geometry | None) -> shapely.Geometry | None:
    """The polygons of ``g`` as one Polygon or MultiPolygon, or None if it has none.

    Nested collections are unpacked; empty and zero-area polygons are left out.
    """
    if g is None or shapely.is_empty(g):
        return None
    if isinstance(g, (shapely.Polygon, shapely.MultiPolygon)):
        return g
    polys = []
    todo = [g]
    while todo:
        parts = shapely.get_parts(np.array(todo, dtype=object))
        todo = []
        for p in parts:
            if isinstance(p, shapely.Polygon):
                polys.append(p)
            elif isinstance(p, (shapely.MultiPolygon, shapely.GeometryCollection)):
                todo.append(p)
    polys = [
        p for p in polys if not p.is_empty and (p.area > 0 or not p.is_valid)
    ]  # make_valid follows
    if not polys:
        return None
    return polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)
