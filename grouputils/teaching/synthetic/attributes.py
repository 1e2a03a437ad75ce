"""The eleven attributes of a detection, computed before simplification (as the real pipeline)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely

from grouputils.teaching.synthetic.geometry import SceneFile
from grouputils.teaching.synthetic.parameters import COLUMNS, SHAPE

__all__ = ["attributes"]


def _oriented_sides(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Long and short side of each polygon's minimum-area rectangle (m)."""
    env = shapely.oriented_envelope(geoms)
    coords, index = shapely.get_coordinates(env, return_index=True)
    n = len(geoms)
    start = np.searchsorted(index, np.arange(n))
    count = np.bincount(index, minlength=n)
    s1 = np.zeros(n)
    s2 = np.zeros(n)
    has2 = count >= 2
    s1[has2] = np.linalg.norm(coords[start[has2] + 1] - coords[start[has2]], axis=1)
    has3 = count >= 3
    s2[has3] = np.linalg.norm(coords[start[has3] + 2] - coords[start[has3] + 1], axis=1)
    return np.maximum(s1, s2), np.minimum(s1, s2)


def attributes(f: SceneFile) -> pd.DataFrame:
    """The eleven attributes, computed as the detection pipeline did (before simplification)."""
    g = f.geoms
    n = len(g)
    ratio, angle, rayleigh, pnoise = f.det.draws.T
    area = shapely.area(g)
    cen = shapely.get_coordinates(shapely.centroid(g))
    offset = np.minimum(SHAPE.centroid_sigma * np.sqrt(area) * rayleigh, SHAPE.centroid_max_m)
    long_side, short_side = _oriented_sides(g)
    scene = f.scene
    frame = pd.DataFrame(
        {
            "Class": f.det.cls.astype("int64"),
            "Sensor": np.full(n, scene.sensor, dtype=object),
            "Date": np.full(n, scene.date, dtype=object),
            "Time": np.full(n, scene.time, dtype=object),
            "Image": np.full(n, scene.image, dtype=object),
            "Area": np.round(area * ratio, 3),
            "CentroidX": np.round(cen[:, 0] + offset * np.cos(angle), 3),
            "CentroidY": np.round(cen[:, 1] + offset * np.sin(angle), 3),
            "Perimeter": np.round(shapely.length(g) * ratio**SHAPE.perimeter_exponent * pnoise, 3),
            "Length": np.round(long_side * np.sqrt(ratio), 3),
            "Width": np.round(short_side * np.sqrt(ratio), 3),
        }
    )
    return frame[list(COLUMNS)]
