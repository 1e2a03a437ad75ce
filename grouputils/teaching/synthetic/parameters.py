"""Parameters of the synthetic IWP data: dataset sizes, shapes, and the generator's constants.

The shape, detection and attribute parameters were fitted to the real
Prudhoe Bay detections (see :class:`ShapeParameters`); the two dataset sizes
are :data:`SCALES`.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CELLS_PER_SPACING2",
    "CENTRE_LONLAT",
    "COLUMNS",
    "CRS",
    "DEFAULT_SEED",
    "GENERATOR_FILE",
    "GENERATOR_VERSION",
    "LAYER",
    "MAX_UNLABELLED_OVERLAP",
    "MAX_VERTICES",
    "MIN_LABELLED_OVERLAP",
    "OUTLINE_REACH",
    "PATCH_MARGIN_M",
    "REDETECTIONS_FILE",
    "SCALES",
    "SCENE_WEIGHTS",
    "SHAPE",
    "Scale",
    "ScaleName",
    "ShapeParameters",
]

DEFAULT_SEED = 20190903
LAYER = "iwp"
CRS = "EPSG:3413"
REDETECTIONS_FILE = "redetections.csv"
GENERATOR_FILE = "generator.json"
GENERATOR_VERSION = 1
CENTRE_LONLAT = (-148.82, 70.03)
"""Centre of the synthetic region (longitude, latitude in degrees): near Prudhoe Bay, Alaska."""

ScaleName = Literal["samples", "course"]

COLUMNS = (
    "Class", "Sensor", "Date", "Time", "Image",
    "Area", "CentroidX", "CentroidY", "Perimeter", "Length", "Width",
)  # fmt: skip


@dataclass(frozen=True)
class Scale:
    """Size of a generated dataset.

    Parameters
    ----------
    name : str
        ``'samples'`` or ``'course'``.
    total_features : int
        Approximate number of polygons summed over the eleven files
        (re-detections count once in each file they are in).
    scene_width_m, scene_height_m : float
        Mean west-east and south-north extent of a scene footprint, metres.
    patch_features : int
        Mean number of polygons in a field patch.
    overlap_fraction : float
        Polygons in the overlap of two neighbouring scenes, as a fraction of
        the smaller scene's polygons.
    """

    name: str
    total_features: int
    scene_width_m: float
    scene_height_m: float
    patch_features: int
    overlap_fraction: float


SCALES: types.MappingProxyType[str, Scale] = types.MappingProxyType(
    {
        "samples": Scale("samples", 25_500, 3_600.0, 7_000.0, 110, 0.12),
        "course": Scale("course", 1_300_000, 13_000.0, 26_000.0, 2_500, 0.08),
    }
)
"""The two dataset sizes: the shipped samples (~11 MB) and the course data (~0.5 GB)."""

SCENE_WEIGHTS: tuple[int, ...] = (70, 160, 16, 120, 225, 100, 140, 50, 190, 85, 130)
"""Relative number of polygons of the eleven scenes, in file order (largest / smallest = 14)."""


@dataclass(frozen=True)
class ShapeParameters:
    """Shape, detection and attribute parameters, fitted to the real Prudhoe Bay file.

    Lengths are metres; probabilities are per polygon unless noted.
    """

    spacing_median_m: float = 14.0  # lattice spacing (centre to centre of polygons)
    spacing_sigma: float = 0.30  # log-sd of the smooth regional spacing field
    spacing_wavelengths_m: tuple[float, float] = (3_000.0, 15_000.0)
    patch_spacing_sigma: float = 0.08  # extra log-sd per patch
    node_jitter: float = 0.27  # lattice node jitter, in spacings (< 0.5 keeps cells simple)
    warp_stretch: float = 0.18  # smooth in-patch stretch of the lattice (+-)
    shrink: tuple[float, float] = (0.68, 0.90)  # polygon size / cell size (troughs between)
    p_merge: float = 0.10  # two neighbouring cells form one polygon
    p_merge_keeps_node: float = 0.06  # ... and keep the middle node (a pentagon)
    p_split: float = 0.06  # a cell is split in two
    p_tiny: float = 0.004  # a tiny fragment
    tiny_shrink: tuple[float, float] = (0.03, 0.25)
    p_exists: float = 0.65  # a cell inside a patch holds a polygon
    patch_fill: tuple[float, float] = (0.60, 0.95)  # share of a patch that is polygonal ground
    class1_mean: float = 0.06  # mean share of Class 1 (low-centred) ground polygons
    p_miss: float = 0.03  # a scene misses a ground polygon
    p_class_flip: float = 0.01  # a scene classifies a polygon differently
    vertex_noise_m: float = 0.15  # sd of each outline vertex around the ground polygon
    scene_shift_m: tuple[float, float] = (1.0, 2.0)  # misregistration between neighbouring scenes
    scale_noise: float = 0.05  # log-sd of the outline's size around the ground polygon
    p_expand: float = 0.04  # outline bleeds into the troughs and neighbours
    expand: tuple[float, float] = (1.30, 1.70)
    p_triangle: float = 0.009  # outline misses a vertex
    p_insert: float = 0.006  # outline has an extra vertex
    p_extra: float = 0.03  # second, overlapping detection in the same file
    area_ratio_median: float = 1.44  # attribute Area / geometry area
    area_ratio_sigma: float = 0.10
    perimeter_exponent: float = 0.43  # Perimeter ratio = area ratio ** exponent
    centroid_sigma: float = 0.065  # centroid offset sd per sqrt(m^2) of area
    centroid_max_m: float = 4.9


SHAPE = ShapeParameters()

# Guarantees of the re-detection labels (see grouputils.teaching.synthetic).
MIN_LABELLED_OVERLAP = 0.6
MAX_UNLABELLED_OVERLAP = 0.4
MAX_VERTICES = 6  # vertices of a detected outline at most
PATCH_MARGIN_M = 40.0  # empty ground around each patch
OUTLINE_REACH = 1.3  # a patch's outline stays within this many nominal radii
CELLS_PER_SPACING2 = 0.50  # ground polygons per spacing^2 inside a patch's nominal disc (measured)
