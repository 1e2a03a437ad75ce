"""Outlines in EPSG:3413: the local frame's affine map, shapely polygons, one scene's file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import shapely

from grouputils.teaching.synthetic.detect import Detections
from grouputils.teaching.synthetic.parameters import CENTRE_LONLAT, CRS, MAX_VERTICES
from grouputils.teaching.synthetic.scenes import Scene

__all__ = [
    "SceneFile",
    "fix_invalid",
    "local_to_3413",
    "overlap",
    "polygons",
    "scaled",
    "sweep_order",
]


def local_to_3413() -> tuple[np.ndarray, np.ndarray]:
    """Affine map from the local east/north frame (m) to EPSG:3413 at the region's centre.

    The coefficients are rounded so that they do not depend on the PROJ version's last bits.
    """
    from pyproj import Geod, Transformer

    lon0, lat0 = CENTRE_LONLAT
    tr = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    geod = Geod(ellps="WGS84")
    x0, y0 = tr.transform(lon0, lat0)
    lon_e, lat_e, _ = geod.fwd(lon0, lat0, 90.0, 1000.0)
    lon_n, lat_n, _ = geod.fwd(lon0, lat0, 0.0, 1000.0)
    xe, ye = tr.transform(lon_e, lat_e)
    xn, yn = tr.transform(lon_n, lat_n)
    matrix = np.round(np.array([[xe - x0, xn - x0], [ye - y0, yn - y0]]) / 1000.0, 9)
    return np.round(np.array([x0, y0]), 3), matrix


def polygons(
    verts: np.ndarray, nv: np.ndarray, origin: np.ndarray, matrix: np.ndarray
) -> np.ndarray:
    """Shapely polygons from padded local vertices, mapped to EPSG:3413."""
    n, width = verts.shape[:2]
    xy = verts @ matrix.T + origin
    ring = np.concatenate([xy, xy[:, :1]], axis=1)  # room for the closing vertex
    rows = np.arange(n)
    ring[rows, nv] = xy[:, 0]
    mask = np.arange(width + 1)[None, :] <= nv[:, None]
    coords = ring[mask]
    index = np.repeat(rows, nv + 1)
    return cast(np.ndarray, shapely.polygons(shapely.linearrings(coords, indices=index)))


@dataclass
class SceneFile:
    scene: Scene
    det: Detections
    geoms: np.ndarray


def fix_invalid(f: SceneFile, origin: np.ndarray, matrix: np.ndarray) -> int:
    bad = np.nonzero(~shapely.is_valid(f.geoms))[0]
    if len(bad):
        f.geoms[bad] = polygons(f.det.fallback[bad], f.det.fallback_nv[bad], origin, matrix)
    return len(bad)


def overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection area / smaller area, element-wise."""
    inter = shapely.area(shapely.intersection(a, b))
    smaller = np.minimum(shapely.area(a), shapely.area(b))
    return np.divide(inter, smaller, out=np.zeros_like(inter), where=smaller > 0)


def sweep_order(det: Detections) -> np.ndarray:
    """Row order of a scene's file: 500 m strips from north to south, west to east in each."""
    valid = np.arange(MAX_VERTICES)[None, :] < det.nv[:, None]
    centre = (det.verts * valid[..., None]).sum(1) / np.maximum(det.nv, 1)[:, None]
    return np.lexsort((centre[:, 0], -np.floor(centre[:, 1] / 500.0)))


def scaled(geoms: np.ndarray, factor: float) -> np.ndarray:
    """Each polygon scaled about its centroid."""
    _, index = shapely.get_coordinates(geoms, return_index=True)
    cen = shapely.get_coordinates(shapely.centroid(geoms))[index]
    return shapely.transform(geoms, lambda xy: cen + factor * (xy - cen))
