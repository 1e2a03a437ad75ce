"""Synthetic ice-wedge-polygon (IWP) detections and the shipped sample data.

The course needs realistic input files that can be shipped with the package
(a few MB) and, for the instructor, a course-scale set of about 0.5 GB. Both
come from :func:`generate_dataset`, a deterministic generator whose output
looks like the detections the Permafrost Discovery Gateway delivers (layer
``iwp``, EPSG:3413, the same eleven attributes with the same types).

How the polygons are made
-------------------------
* **Ground truth.** Fields of ice-wedge polygons ("patches") are placed on
  empty tundra near Prudhoe Bay, Alaska (148.82 W, 70.03 N). Each patch holds
  a jittered quadrilateral lattice; its spacing follows a smooth random field
  over the region and stretches smoothly inside the patch, its orientation is
  the patch's own. Cells are shrunk towards their centres, which leaves the
  narrow troughs that separate real polygons; a few neighbouring cells are
  merged or split, a few are tiny fragments. Parts of each patch are empty.
* **Scenes.** Eleven satellite scenes form a west-east chain; neighbouring
  footprints overlap. A scene detects the ground polygons inside its
  footprint, each with its own outline (vertex noise of a few decimetres, the
  scene's misregistration, occasional missing vertices or an extra one), a
  few misses, and a few detection artefacts that overlap a neighbour inside
  the same file (as in real files).
* **Re-detections.** A ground polygon inside the overlap of two scenes is
  written to both files. ``redetections.csv`` lists every copy in the file
  whose name sorts later, with the copy it repeats (``original_file``,
  ``original_fid``) and their overlap (intersection / smaller area). The
  generator guarantees that those overlaps are at least 0.6 and that any
  other pair of polygons from different files overlaps by less than 0.4, so a
  duplicate rule with a threshold between the two finds exactly these rows.
* **Attributes.** As in the real pipeline, ``Area``, ``Perimeter``,
  ``Length``, ``Width`` and the centroid describe the outline *before*
  simplification, so they differ from what the geometry gives (area about
  1.44 times larger, centroid shifted by about 0.7 m).

Everything random is drawn from generators seeded by ``(seed, purpose,
patch, scene)``, so the output depends on nothing but the seed, the scale and
the library versions recorded in ``generator.json``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib.resources
import io
import json
import logging
import math
import os
import re
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import shapely
from tqdm.auto import tqdm

from grouputils.core.atomic import atomic_path, write_json_atomic, write_text_atomic
from grouputils.core.errors import ConfigError, InputError, OutputError

if TYPE_CHECKING:
    from grouputils.core.tiles import Tiles

__all__ = [
    "DATA_ENV",
    "DEFAULT_SEED",
    "GENERATOR_FILE",
    "LAYER",
    "REDETECTIONS_FILE",
    "SCALES",
    "SCENE_WEIGHTS",
    "Scale",
    "ShapeParameters",
    "generate_dataset",
    "sample_dir",
    "sample_files",
    "summarize",
]

logger = logging.getLogger(__name__)

DATA_ENV = "GROUPUTILS_DATA"
"""Environment variable naming a shared data folder that replaces the shipped samples."""

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


# --------------------------------------------------------------------------- parameters
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

# Guarantees of the re-detection labels (see module docstring).
_MIN_LABELLED_OVERLAP = 0.6
_MAX_UNLABELLED_OVERLAP = 0.4
_MAX_VERTICES = 6
_PATCH_MARGIN_M = 40.0  # empty ground around each patch
_OUTLINE_REACH = 1.3  # a patch's outline stays within this many nominal radii
_CELLS_PER_SPACING2 = 0.50  # ground polygons per spacing^2 inside a patch's nominal disc (measured)


# --------------------------------------------------------------------------- sample paths
def sample_dir() -> Path:
    """Folder of the sample GeoPackages.

    Returns the folder named by the environment variable ``GROUPUTILS_DATA``
    when it is set (an instructor's shared copy of the course-scale data),
    otherwise the samples shipped inside the package (``data-samples/`` in a
    clone, ``grouputils/data_samples/`` in an installed wheel).

    Returns
    -------
    Path
        An existing folder.

    Raises
    ------
    InputError
        If ``GROUPUTILS_DATA`` names a folder that does not exist, or the
        shipped samples cannot be found as files on disk.
    """
    shared = os.environ.get(DATA_ENV)
    if shared:
        path = Path(shared).expanduser()
        if not path.is_dir():
            raise InputError(path, f"the folder named by {DATA_ENV} does not exist")
        return path
    try:
        resource = importlib.resources.files("grouputils.data_samples")
    except ModuleNotFoundError:
        raise InputError(
            "grouputils.data_samples", "the shipped samples are not installed; reinstall grouputils"
        ) from None
    path = Path(str(resource))
    if not path.is_dir():
        raise InputError(path, "the shipped samples are not a folder on disk (zipped install?)")
    return path


def sample_files(directory: str | Path | None = None) -> list[Path]:
    """The GeoPackages of a sample folder, sorted by name.

    Parameters
    ----------
    directory : str or Path, optional
        Folder to list; default :func:`sample_dir`.

    Returns
    -------
    list of Path
        ``*.gpkg`` files (temporary files starting with ``.`` are skipped).

    Raises
    ------
    InputError
        If the folder does not exist or holds no GeoPackage.
    """
    folder = sample_dir() if directory is None else Path(directory).expanduser()
    if not folder.is_dir():
        raise InputError(folder, "sample folder does not exist")
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() == ".gpkg" and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    if not files:
        raise InputError(
            folder, "holds no GeoPackage (.gpkg); make some with `grouputils sample DIR`"
        )
    return files


# --------------------------------------------------------------------------- scenes
@dataclass(frozen=True)
class _Scene:
    index: int  # 0-based, file order
    sensor: str
    date: str  # YYYYMMDD
    time: str  # hhmmss
    image: str
    rect: tuple[float, float, float, float]  # west, south, east, north in the local frame (m)
    shift: tuple[float, float]  # misregistration (m)
    target: int

    @property
    def filename(self) -> str:
        return f"scene{self.index + 1:02d}_{self.sensor}_{self.date}.gpkg"  # matches _OUR_NAME


_OUR_NAME = re.compile(r"scene\d{2}_WV0[23]_\d{8}\.gpkg")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def _image_id(rng: np.random.Generator, sensor: str, date: str, time: str) -> str:
    """A scene id in the style of the Maxar/PGC names in the real files."""
    prefix = {"WV02": "103001", "WV03": "104001"}[sensor]
    catid = prefix + "".join(rng.choice(list("0123456789ABCDEF"), size=10))
    yy, mon, dd = date[2:4], _MONTHS[int(date[4:6]) - 1], date[6:8]
    order = "5" + "".join(rng.choice(list("0123456789"), size=11))
    part = int(rng.integers(1, 10))
    return (
        f"{sensor}_{date}{time}_{catid}_{yy}{mon}{dd}{time}-M1BS-{order}_01_P{part:03d}_u16rf3413_p"
    )


def _targets(scale: Scale, total_features: int | None) -> np.ndarray:
    total = scale.total_features if total_features is None else int(total_features)
    if total < 11 * 20:
        raise ConfigError(f"total_features must be at least {11 * 20}, got {total}")
    w = np.asarray(SCENE_WEIGHTS, dtype="f8")
    return np.maximum(np.round(total * w / w.sum()).astype("i8"), 20)


def _layout_scenes(seed: int, scale: Scale, targets: np.ndarray) -> list[_Scene]:
    """Eleven footprints in a west-east chain; each overlaps its neighbours only."""
    rng = np.random.default_rng([seed, 1])
    n = len(targets)
    # Footprints grow with the scene's number of polygons (its density varies too).
    rel = targets / targets.mean()
    widths = scale.scene_width_m * rel**0.45 * rng.uniform(0.9, 1.1, n)
    heights = scale.scene_height_m * rel**0.3 * rng.uniform(0.9, 1.1, n)
    overlaps = rng.uniform(0.18, 0.28, n - 1) * np.minimum(widths[:-1], widths[1:])
    west = np.zeros(n)
    for k in range(1, n):
        west[k] = west[k - 1] + widths[k - 1] - overlaps[k - 1]
    west -= (west[-1] + widths[-1]) / 2  # centre the chain on the region's centre
    south = -heights / 2 + rng.uniform(-0.15, 0.15, n) * heights
    # Misregistration: each scene is off from the one before by 1-2 m in some direction.
    step = rng.uniform(*SHAPE.scene_shift_m, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    shifts = np.cumsum(np.column_stack([step * np.cos(angle), step * np.sin(angle)]), axis=0)
    shifts -= shifts.mean(axis=0)
    scenes = []
    for k in range(n):
        sensor = "WV02" if rng.random() < 0.5 else "WV03"
        year = int(rng.integers(2015 if sensor == "WV03" else 2011, 2021))
        day = pd.Timestamp(f"{year}-07-01") + pd.Timedelta(days=int(rng.integers(0, 75)))
        date = day.strftime("%Y%m%d")
        seconds = int(rng.integers(21 * 3600, 23 * 3600 + 1800))
        time = f"{seconds // 3600:02d}{seconds % 3600 // 60:02d}{seconds % 60:02d}"
        scenes.append(
            _Scene(
                index=k,
                sensor=sensor,
                date=date,
                time=time,
                image=_image_id(rng, sensor, date, time),
                rect=(
                    float(west[k]),
                    float(south[k]),
                    float(west[k] + widths[k]),
                    float(south[k] + heights[k]),
                ),
                shift=(float(shifts[k, 0]), float(shifts[k, 1])),
                target=int(targets[k]),
            )
        )
    return scenes


# --------------------------------------------------------------------------- smooth fields
def _smooth_field(
    rng: np.random.Generator, wavelengths: tuple[float, float], n_waves: int = 6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parameters of a random sum of plane waves with unit variance."""
    lam = rng.uniform(*wavelengths, n_waves)
    ang = rng.uniform(0, np.pi, n_waves)
    k = np.column_stack([np.cos(ang), np.sin(ang)]) * (2 * np.pi / lam)[:, None]
    phase = rng.uniform(0, 2 * np.pi, n_waves)
    return k, phase, np.full(n_waves, np.sqrt(2.0 / n_waves))


def _eval_field(
    field: tuple[np.ndarray, np.ndarray, np.ndarray], x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    k, phase, amp = field
    x = np.asarray(x, dtype="f8")[..., None]
    y = np.asarray(y, dtype="f8")[..., None]
    return np.sum(amp * np.cos(k[:, 0] * x + k[:, 1] * y + phase), axis=-1)


# --------------------------------------------------------------------------- patches
@dataclass(frozen=True)
class _Patch:
    index: int
    centre: tuple[float, float]
    radius: float  # nominal radius (m); the outline stays within _OUTLINE_REACH x
    spacing: float
    scenes: tuple[int, ...]  # scenes whose footprint holds the whole patch


@dataclass
class _Ground:
    """Ground-truth polygons of one patch (local frame, clockwise, padded)."""

    verts: np.ndarray  # (n, 5, 2) float64
    nv: np.ndarray  # (n,) int: 4 or 5
    cls: np.ndarray  # (n,) int: 1 or 2


def _rect_distance(x: float, y: float, rect: tuple[float, float, float, float]) -> float:
    dx = max(rect[0] - x, 0.0, x - rect[2])
    dy = max(rect[1] - y, 0.0, y - rect[3])
    return math.hypot(dx, dy)


class _Placer:
    """Non-overlapping discs inside one zone (a set of scene footprints and none other)."""

    def __init__(self, scenes: list[_Scene]) -> None:
        self.scenes = scenes
        self.xy = np.empty((0, 2))
        self.r = np.empty(0)

    def place(
        self,
        rng: np.random.Generator,
        zone: tuple[int, ...],
        radius_at: Callable[[float, float], float],
    ) -> tuple[float, float, float] | None:
        """A free disc ``(x, y, radius)`` whose radius depends on where it lies, or None."""
        rects = [self.scenes[k].rect for k in zone]
        others = [s.rect for s in self.scenes if s.index not in zone]
        west = max(r[0] for r in rects)
        south = max(r[1] for r in rects)
        east = min(r[2] for r in rects)
        north = min(r[3] for r in rects)
        for _ in range(200):
            x, y = rng.uniform(west, east), rng.uniform(south, north)
            radius = radius_at(x, y)
            reach = _OUTLINE_REACH * radius + _PATCH_MARGIN_M
            if min(x - west, east - x, y - south, north - y) < reach:
                continue
            if any(_rect_distance(x, y, o) < reach for o in others):
                continue
            if len(self.r) and np.any(
                np.hypot(*(self.xy - (x, y)).T)
                < _OUTLINE_REACH * (self.r + radius) + _PATCH_MARGIN_M
            ):
                continue
            self.xy = np.vstack([self.xy, (x, y)])
            self.r = np.append(self.r, radius)
            return float(x), float(y), float(radius)
        return None


def _patch_ground(seed: int, patch: _Patch) -> _Ground:
    """The ground-truth polygons of a patch: a shrunk, jittered, smoothly warped lattice."""
    rng = np.random.default_rng([seed, 3, patch.index])
    s, R = patch.spacing, patch.radius
    m = int(np.ceil(_OUTLINE_REACH * R / (s * (1 - 1.4 * SHAPE.warp_stretch)))) + 2
    idx = np.arange(-m, m + 1, dtype="f8")
    u, v = np.meshgrid(idx, idx, indexing="ij")  # node (i, j): u along i, v along j
    jit = rng.uniform(-SHAPE.node_jitter, SHAPE.node_jitter, size=(2, *u.shape))
    u = (u + jit[0]) * s
    v = (v + jit[1]) * s
    # Smooth stretch: d(x)/d(u) = 1 + stretch * cos(...), and a gentle shear.
    lam = R * rng.uniform(1.5, 3.5, 4)
    ph = rng.uniform(0, 2 * np.pi, 4)
    amp = SHAPE.warp_stretch * lam / (2 * np.pi)
    x = (
        u
        + amp[0] * np.sin(2 * np.pi * u / lam[0] + ph[0])
        + 0.4 * amp[2] * np.sin(2 * np.pi * v / lam[2] + ph[2])
    )
    y = (
        v
        + amp[1] * np.sin(2 * np.pi * v / lam[1] + ph[1])
        + 0.4 * amp[3] * np.sin(2 * np.pi * u / lam[3] + ph[3])
    )
    theta = rng.uniform(0, np.pi / 2)
    c, sn = np.cos(theta), np.sin(theta)
    nodes = np.stack([c * x - sn * y + patch.centre[0], sn * x + c * y + patch.centre[1]], axis=-1)

    # Cells (i, j) with clockwise corners (i,j) (i,j+1) (i+1,j+1) (i+1,j).
    c0, c1, c2, c3 = nodes[:-1, :-1], nodes[:-1, 1:], nodes[1:, 1:], nodes[1:, :-1]
    centre = (c0 + c1 + c2 + c3) / 4
    rel = centre - patch.centre
    dist = np.hypot(rel[..., 0], rel[..., 1])
    phi = np.arctan2(rel[..., 1], rel[..., 0])
    harm = rng.uniform(0, (_OUTLINE_REACH - 1) / 3.3, 3)
    hph = rng.uniform(0, 2 * np.pi, 3)
    outline = R * (1 + sum(harm[h] * np.cos((2, 3, 5)[h] * phi + hph[h]) for h in range(3)))
    fill = _smooth_field(rng, (0.4 * R + 3 * s, 1.0 * R + 6 * s), 4)
    q = np.quantile(
        _eval_field(fill, rng.normal(0, R, 4000), rng.normal(0, R, 4000)),
        1 - rng.uniform(*SHAPE.patch_fill),
    )
    exists = (
        (dist < outline)
        & (_eval_field(fill, rel[..., 0], rel[..., 1]) > q)
        & (rng.random(dist.shape) < SHAPE.p_exists)
    )

    # Merges: horizontal pairs (even i), then vertical pairs (even j) of the rest.
    ni, nj = exists.shape
    used = np.zeros_like(exists)
    hm = np.zeros_like(exists)
    hm[0 : ni - 1 : 2] = (
        exists[0 : ni - 1 : 2]
        & exists[1:ni:2]
        & (rng.random(hm[0 : ni - 1 : 2].shape) < SHAPE.p_merge / 2)
    )
    used[0 : ni - 1 : 2] |= hm[0 : ni - 1 : 2]
    used[1:ni:2] |= hm[0 : ni - 1 : 2]
    vm = np.zeros_like(exists)
    free = exists & ~used
    vm[:, 0 : nj - 1 : 2] = (
        free[:, 0 : nj - 1 : 2]
        & free[:, 1:nj:2]
        & (rng.random(vm[:, 0 : nj - 1 : 2].shape) < SHAPE.p_merge / 2)
    )
    used[:, 0 : nj - 1 : 2] |= vm[:, 0 : nj - 1 : 2]
    used[:, 1:nj:2] |= vm[:, 0 : nj - 1 : 2]
    single = exists & ~used

    polys: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    # Single cells, some split in two across their longer direction.
    ii, jj = np.nonzero(single)
    q4 = np.stack([c0[ii, jj], c1[ii, jj], c2[ii, jj], c3[ii, jj]], axis=1)  # (n, 4, 2)
    split = rng.random(len(ii)) < SHAPE.p_split
    quads = q4[~split]
    sq = q4[split]
    t = rng.uniform(0.35, 0.65, (len(sq), 2, 1))
    along_i = np.linalg.norm(sq[:, 3] - sq[:, 0], axis=1) > np.linalg.norm(
        sq[:, 1] - sq[:, 0], axis=1
    )
    a2, a3 = along_i[:, None], along_i[:, None, None]
    s0, s1, s2, s3 = sq[:, 0], sq[:, 1], sq[:, 2], sq[:, 3]
    # longer along i: cut edges c0-c3 and c1-c2; else cut edges c0-c1 and c3-c2
    m1 = np.where(a2, s0 + t[:, 0] * (s3 - s0), s0 + t[:, 0] * (s1 - s0))
    m2 = np.where(a2, s1 + t[:, 1] * (s2 - s1), s3 + t[:, 1] * (s2 - s3))
    h1 = np.where(a3, np.stack([s0, s1, m2, m1], 1), np.stack([s0, m1, m2, s3], 1))
    h2 = np.where(a3, np.stack([m1, m2, s2, s3], 1), np.stack([m1, s1, s2, m2], 1))
    halves = np.concatenate([h1, h2])
    # Merged pairs: the outer corners; some keep the middle node on one side.
    hi, hj = np.nonzero(hm)
    hq = np.stack([c0[hi, hj], c1[hi, hj], c2[hi + 1, hj], c3[hi + 1, hj]], 1)
    h_mid = c2[hi, hj]  # node (i+1, j+1), on the edge c1 -> c2 of the merged quad
    vi, vj = np.nonzero(vm)
    vq = np.stack([c0[vi, vj], c1[vi, vj + 1], c2[vi, vj + 1], c3[vi, vj]], 1)
    v_mid = c2[vi, vj]  # node (i+1, j+1), on the edge c2 -> c3 of the merged quad
    four = np.concatenate([quads, halves, hq, vq])
    nv = np.full(len(four), 4)
    padded = np.concatenate([four, four[:, :1]], axis=1)  # (n, 5, 2)
    keep_h = rng.random(len(hq)) < SHAPE.p_merge_keeps_node
    keep_v = rng.random(len(vq)) < SHAPE.p_merge_keeps_node
    off_h = len(quads) + len(halves)
    off_v = off_h + len(hq)
    for rows, mids, after in (
        (off_h + np.nonzero(keep_h)[0], h_mid[keep_h], 1),
        (off_v + np.nonzero(keep_v)[0], v_mid[keep_v], 2),
    ):
        pts = padded[rows, :4].copy()
        padded[rows] = np.concatenate(
            [pts[:, : after + 1], mids[:, None, :], pts[:, after + 1 :]], axis=1
        )
        nv[rows] = 5
    polys.append(padded)
    counts.append(nv)
    verts = np.concatenate(polys)
    nv = np.concatenate(counts)

    # Shrink towards the vertex mean: the troughs between polygons.
    valid = np.arange(5)[None, :] < nv[:, None]
    centre = (verts * valid[..., None]).sum(1) / nv[:, None]
    f = rng.uniform(*SHAPE.shrink, len(verts))
    tiny = rng.random(len(verts)) < SHAPE.p_tiny
    f[tiny] = rng.uniform(*SHAPE.tiny_shrink, tiny.sum())
    verts = centre[:, None, :] + f[:, None, None] * (verts - centre[:, None, :])
    verts[~valid] = verts[:, :1].repeat(5, axis=1)[~valid]
    # Class: a patch-wide share of low-centred polygons, mean SHAPE.class1_mean.
    p1 = rng.beta(0.7, 0.7 * (1 - SHAPE.class1_mean) / SHAPE.class1_mean)
    cls = np.where(rng.random(len(verts)) < p1, 1, 2)
    # Spatial order (like a detector working across the scene), stable per seed.
    order = np.lexsort((centre[:, 0], np.floor(centre[:, 1] / 50.0)))
    return _Ground(verts[order], nv[order], cls[order])


# --------------------------------------------------------------------------- detections
@dataclass
class _Detections:
    """Detections of one patch in one scene (local frame, clockwise, padded)."""

    verts: np.ndarray  # (n, _MAX_VERTICES, 2)
    nv: np.ndarray  # (n,) 3..6
    fallback: np.ndarray  # (n, 5, 2): ground polygon + scene shift, always valid
    fallback_nv: np.ndarray
    gid: np.ndarray  # (n,) ground id; -1 for extra detections
    cls: np.ndarray
    draws: np.ndarray  # (n, 4): area ratio, centroid offset angle, size, perimeter noise

    @staticmethod
    def concat(parts: list[_Detections]) -> _Detections:
        if not parts:
            z = np.empty(0)
            return _Detections(
                np.empty((0, _MAX_VERTICES, 2)),
                z.astype(int),
                np.empty((0, 5, 2)),
                z.astype(int),
                z.astype("i8"),
                z.astype(int),
                np.empty((0, 4)),
            )
        return _Detections(
            *(
                np.concatenate([getattr(p, f.name) for p in parts])
                for f in dataclasses.fields(_Detections)
            )
        )


def _pad(verts: np.ndarray, width: int) -> np.ndarray:
    if verts.shape[1] >= width:
        return verts[:, :width]
    return np.concatenate([verts, verts[:, :1].repeat(width - verts.shape[1], axis=1)], axis=1)


def _detect(seed: int, patch: _Patch, ground: _Ground, gid0: int, scene: _Scene) -> _Detections:
    """How ``scene`` sees the ground polygons of ``patch``."""
    rng = np.random.default_rng([seed, 4, patch.index, scene.index])
    n = len(ground.nv)
    seen = rng.random(n) >= SHAPE.p_miss
    verts, nv = ground.verts[seen], ground.nv[seen]
    gid = gid0 + np.nonzero(seen)[0]
    cls = ground.cls[seen].copy()
    flip = rng.random(len(cls)) < SHAPE.p_class_flip
    cls[flip] = 3 - cls[flip]
    n = len(nv)
    valid = np.arange(5)[None, :] < nv[:, None]
    centre = (verts * valid[..., None]).sum(1) / nv[:, None]
    area = 0.5 * np.abs(
        np.sum(
            verts[:, :, 0] * np.roll(verts[:, :, 1], -1, 1)
            - np.roll(verts[:, :, 0], -1, 1) * verts[:, :, 1],
            axis=1,
        )
    )
    size = np.clip(np.sqrt(area) / 8.0, 0.05, 1.0)  # small polygons get gentler noise
    shift = np.asarray(scene.shift)
    fallback = verts + shift

    scale = np.exp(rng.normal(0, SHAPE.scale_noise, n))
    expand = rng.random(n) < SHAPE.p_expand
    scale[expand] *= rng.uniform(*SHAPE.expand, expand.sum())
    out = centre[:, None, :] + scale[:, None, None] * (verts - centre[:, None, :])
    out = out + rng.normal(0, SHAPE.vertex_noise_m, out.shape) * size[:, None, None] + shift
    out[~valid] = out[:, :1].repeat(5, axis=1)[~valid]
    out = _pad(out, _MAX_VERTICES)
    nv = nv.copy()
    # A missing vertex (triangle) or an extra one on an edge.
    tri = (rng.random(n) < SHAPE.p_triangle) & (nv == 4)
    drop = rng.integers(0, 4, n)
    rows = np.nonzero(tri)[0]
    if len(rows):
        keep = np.arange(4)[None, :] != drop[rows, None]
        tri_verts = out[rows, :4][keep].reshape(len(rows), 3, 2)
        out[rows] = _pad(tri_verts, _MAX_VERTICES)
        nv[rows] = 3
    ins = (rng.random(n) < SHAPE.p_insert) & ~tri
    rows = np.nonzero(ins)[0]
    if len(rows):
        edge = (rng.random(len(rows)) * nv[rows]).astype(int)
        a = out[rows, edge]
        b = out[rows, (edge + 1) % nv[rows]]
        d = b - a
        outward = np.column_stack(
            [-d[:, 1], d[:, 0]]
        )  # left of travel = outside for clockwise rings
        new = (a + b) / 2 + outward * rng.uniform(0.05, 0.2, (len(rows), 1))
        # shift vertices after the edge's start one place on, then put the new one in
        slot = np.arange(_MAX_VERTICES)[None, :]
        src = np.where(slot <= edge[:, None], slot, slot - 1)
        src = np.minimum(src, nv[rows, None])  # padding repeats the last vertex
        grown = np.take_along_axis(out[rows], src[..., None], axis=1)
        grown[np.arange(len(rows)), edge + 1] = new
        nv[rows] += 1
        grown[slot >= nv[rows, None]] = grown[:, :1].repeat(_MAX_VERTICES, axis=1)[
            slot >= nv[rows, None]
        ]
        out[rows] = grown

    draws = np.column_stack(
        [
            np.exp(rng.normal(np.log(SHAPE.area_ratio_median), SHAPE.area_ratio_sigma, n)),
            rng.uniform(0, 2 * np.pi, n),
            rng.rayleigh(1.0, n),
            np.exp(rng.normal(0, 0.02, n)),
        ]
    )
    det = _Detections(out, nv, fallback, ground.nv[seen].copy(), gid, cls, draws)
    if len(patch.scenes) > 1 or n == 0:
        return det
    # Extra detections overlapping a polygon of the same file (only where one scene looks).
    extra = np.nonzero(rng.random(n) < SHAPE.p_extra)[0]
    k = len(extra)
    if k == 0:
        return det
    g = rng.uniform(0.45, 0.8, k)
    ang = rng.uniform(0, 2 * np.pi, k)
    dist = rng.uniform(0.35, 0.75, k) * np.sqrt(area[extra])
    move = np.column_stack([np.cos(ang), np.sin(ang)]) * dist[:, None]
    base = fallback[extra]
    c = centre[extra] + shift
    ev = c[:, None, :] + g[:, None, None] * (base - c[:, None, :]) + move[:, None, :]
    ex = _Detections(
        _pad(ev, _MAX_VERTICES),
        det.fallback_nv[extra].copy(),
        ev,
        det.fallback_nv[extra].copy(),
        np.full(k, -1, dtype="i8"),
        det.cls[extra].copy(),
        np.column_stack(
            [
                np.exp(rng.normal(np.log(SHAPE.area_ratio_median), SHAPE.area_ratio_sigma, k)),
                rng.uniform(0, 2 * np.pi, k),
                rng.rayleigh(1.0, k),
                np.exp(rng.normal(0, 0.02, k)),
            ]
        ),
    )
    return _Detections.concat([det, ex])


# --------------------------------------------------------------------------- geometry
def _local_to_3413() -> tuple[np.ndarray, np.ndarray]:
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


def _polygons(
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
    return shapely.polygons(shapely.linearrings(coords, indices=index))


@dataclass
class _File:
    scene: _Scene
    det: _Detections
    geoms: np.ndarray


def _fix_invalid(f: _File, origin: np.ndarray, matrix: np.ndarray) -> int:
    bad = np.nonzero(~shapely.is_valid(f.geoms))[0]
    if len(bad):
        f.geoms[bad] = _polygons(f.det.fallback[bad], f.det.fallback_nv[bad], origin, matrix)
    return len(bad)


def _overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection area / smaller area, element-wise."""
    inter = shapely.area(shapely.intersection(a, b))
    smaller = np.minimum(shapely.area(a), shapely.area(b))
    return np.divide(inter, smaller, out=np.zeros_like(inter), where=smaller > 0)


def _sweep_order(det: _Detections) -> np.ndarray:
    """Row order of a scene's file: 500 m strips from north to south, west to east in each."""
    valid = np.arange(_MAX_VERTICES)[None, :] < det.nv[:, None]
    centre = (det.verts * valid[..., None]).sum(1) / np.maximum(det.nv, 1)[:, None]
    return np.lexsort((centre[:, 0], -np.floor(centre[:, 1] / 500.0)))


def _copies(files: list[_File]) -> np.ndarray:
    """Every later copy of a ground polygon and its copy in the earliest file.

    Returns
    -------
    ndarray of int, shape (n, 4)
        Columns: file index, row, original file index, original row.
    """
    parts = [
        np.column_stack([f.det.gid, np.full(len(f.det.gid), k), np.arange(len(f.det.gid))])
        for k, f in enumerate(files)
    ]
    table = np.concatenate(parts) if parts else np.empty((0, 3), dtype="i8")
    table = table[table[:, 0] >= 0]
    table = table[np.lexsort((table[:, 1], table[:, 0]))]  # by ground id, then file order
    _, first, counts = np.unique(table[:, 0], return_index=True, return_counts=True)
    original = np.repeat(first, counts)
    later = np.arange(len(table)) != original
    return np.column_stack([table[later, 1:], table[original[later], 1:]])


def _overlapping_scene_pairs(files: list[_File]) -> list[tuple[int, int]]:
    """``(earlier, later)`` file indices whose footprints overlap."""
    pairs = []
    for j, fj in enumerate(files):
        for i in range(j):
            a, b = files[i].scene.rect, fj.scene.rect
            if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                pairs.append((i, j))
    return pairs


def _cross_pairs(fi: _File, fj: _File) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersecting polygons of two files: rows in ``fi``, rows in ``fj``, overlap."""
    qj, qi = shapely.STRtree(fi.geoms).query(fj.geoms, predicate="intersects")
    return qi, qj, _overlap(fi.geoms[qi], fj.geoms[qj])


def _seen_earlier(files: list[_File], j: int) -> np.ndarray:
    """Per row of file ``j``: is it a copy of a ground polygon in an earlier file?"""
    gid = files[j].det.gid
    earlier = [f.det.gid[f.det.gid >= 0] for f in files[:j]]
    if not earlier:
        return np.zeros(len(gid), dtype=bool)
    return (gid >= 0) & np.isin(gid, np.concatenate(earlier))


def _reconcile(files: list[_File], origin: np.ndarray, matrix: np.ndarray) -> dict[str, int]:
    """Make re-detection labels agree with a plain overlap rule across files.

    A copy of a ground polygon must overlap its earlier copy by at least
    ``_MIN_LABELLED_OVERLAP``: if it does not, it gets the ground outline
    (shifted by its scene's misregistration), and failing that a slightly
    shrunk repeat of the earlier copy. A polygon that is not a copy must
    overlap every polygon of an earlier file by less than
    ``_MAX_UNLABELLED_OVERLAP``: if it does not, it is dropped (a missed
    detection).

    Returns
    -------
    dict
        How many outlines were replaced and polygons dropped.
    """
    replaced = dropped = 0
    for i, j in _overlapping_scene_pairs(files):
        fi, fj = files[i], files[j]
        for attempt in range(2):
            ri, rj = _copy_rows(fi, fj)
            low = _overlap(fi.geoms[ri], fj.geoms[rj]) < _MIN_LABELLED_OVERLAP
            if not low.any():
                break
            rows = rj[low]
            replaced += len(rows)
            if attempt == 0:
                fb = fj.det
                fj.geoms[rows] = _polygons(fb.fallback[rows], fb.fallback_nv[rows], origin, matrix)
            else:  # the earlier copy is odd (expanded, a triangle): repeat it, a bit smaller
                fj.geoms[rows] = _scaled(fi.geoms[ri[low]], 0.97)
        _, qj, ov = _cross_pairs(fi, fj)
        bad = (ov >= _MAX_UNLABELLED_OVERLAP) & ~_seen_earlier(files, j)[qj]
        drop = np.unique(qj[bad])
        if len(drop):
            keep = np.ones(len(fj.geoms), dtype=bool)
            keep[drop] = False
            fields = dataclasses.fields(_Detections)
            fj.det = _Detections(*(getattr(fj.det, fld.name)[keep] for fld in fields))
            fj.geoms = fj.geoms[keep]
            dropped += len(drop)
    _verify_labels(files)
    return {"replaced_outlines": replaced, "dropped_polygons": dropped}


def _copy_rows(fi: _File, fj: _File) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the same ground polygons in two files (extra detections have none)."""
    own = np.nonzero(fi.det.gid >= 0)[0]
    _, ri, rj = np.intersect1d(fi.det.gid[own], fj.det.gid, return_indices=True)
    return own[ri], rj


def _verify_labels(files: list[_File]) -> None:
    """Raise if an overlap rule across files would disagree with the labels (a generator bug)."""
    for i, j in _overlapping_scene_pairs(files):
        fi, fj = files[i], files[j]
        ri, rj = _copy_rows(fi, fj)
        _, qj, ov = _cross_pairs(fi, fj)
        copy = _seen_earlier(files, j)[qj]
        if np.any(_overlap(fi.geoms[ri], fj.geoms[rj]) < _MIN_LABELLED_OVERLAP) or np.any(
            ~copy & (ov >= _MAX_UNLABELLED_OVERLAP)
        ):  # pragma: no cover - _reconcile makes this impossible
            raise RuntimeError(f"re-detection labels of {fj.scene.filename} disagree with overlaps")


def _scaled(geoms: np.ndarray, factor: float) -> np.ndarray:
    """Each polygon scaled about its centroid."""
    _, index = shapely.get_coordinates(geoms, return_index=True)
    cen = shapely.get_coordinates(shapely.centroid(geoms))[index]
    return shapely.transform(geoms, lambda xy: cen + factor * (xy - cen))


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


def _attributes(f: _File) -> pd.DataFrame:
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


# --------------------------------------------------------------------------- generation
def _build(
    seed: int, scale: Scale, total_features: int | None, progress: bool
) -> tuple[list[_File], dict]:
    """Every scene's polygons in memory (no I/O), and facts about the run for generator.json."""
    targets = _targets(scale, total_features)
    scenes = _layout_scenes(seed, scale, targets)
    n = len(scenes)
    rng = np.random.default_rng([seed, 2])
    spacing_field = _smooth_field(rng, SHAPE.spacing_wavelengths_m)
    placer = _Placer(scenes)
    # polygons wanted in each zone: overlaps of neighbours first, then each scene's own ground
    overlap_want = [
        round(scale.overlap_fraction * min(targets[k], targets[k + 1])) for k in range(n - 1)
    ]
    zones: list[tuple[tuple[int, ...], int]] = [((k, k + 1), overlap_want[k]) for k in range(n - 1)]
    for k in range(n):
        own = targets[k] - (overlap_want[k - 1] if k else 0) - (overlap_want[k] if k < n - 1 else 0)
        zones.append(((k,), max(int(own), 0)))

    # Lattice spacing: a smooth field over the region, centred so that its median over the
    # ground where polygons will be (scenes weighted by their number of polygons) is nominal.
    values, weights = [], []
    for sc in scenes:
        gx, gy = np.meshgrid(
            np.linspace(sc.rect[0], sc.rect[2], 25), np.linspace(sc.rect[1], sc.rect[3], 25)
        )
        values.append(_eval_field(spacing_field, gx, gy).ravel())
        weights.append(np.full(gx.size, sc.target / gx.size))
    v, w = np.concatenate(values), np.concatenate(weights)
    order = np.argsort(v)
    centre_field = float(v[order][np.searchsorted(np.cumsum(w[order]), 0.5 * w.sum())])

    def spacing_at(x: float, y: float) -> float:
        return SHAPE.spacing_median_m * math.exp(
            SHAPE.spacing_sigma * (float(_eval_field(spacing_field, x, y)) - centre_field)
        )

    patches: list[_Patch] = []
    grounds: list[_Ground] = []
    for zone, want in zones:
        got = 0
        failures = 0
        while got < want:
            size = min(rng.lognormal(np.log(scale.patch_features), 0.5), 4 * scale.patch_features)
            size = max(min(size * 0.7**failures, 1.2 * (want - got)), 8.0)
            own = math.exp(rng.normal(0, SHAPE.patch_spacing_sigma))

            def radius_at(x: float, y: float, size: float = size, own: float = own) -> float:
                # polygons per patch do not depend on the spacing
                return math.sqrt(size / (math.pi * _CELLS_PER_SPACING2)) * spacing_at(x, y) * own

            placed = placer.place(rng, zone, radius_at)
            if placed is None:
                failures += 1
                if failures > 12:
                    raise ConfigError(
                        f"no room for field patches in the zone of scenes {zone}; lower total_features"
                    )
                continue
            failures = 0
            x, y, radius = placed
            patch = _Patch(len(patches), (x, y), radius, spacing_at(x, y) * own, zone)
            ground = _patch_ground(seed, patch)
            patches.append(patch)
            grounds.append(ground)
            got += round(len(ground.nv) * (1 - SHAPE.p_miss))

    origin, matrix = _local_to_3413()
    parts: list[list[_Detections]] = [[] for _ in range(n)]
    gid0 = 0
    bar = tqdm(total=len(patches), unit="patch", desc="generating", disable=not progress)
    for patch, ground in zip(patches, grounds, strict=True):
        for k in patch.scenes:
            parts[k].append(_detect(seed, patch, ground, gid0, scenes[k]))
        gid0 += len(ground.nv)
        bar.update(1)
    bar.close()

    files = []
    repaired = 0
    for k in range(n):
        det = _Detections.concat(parts[k])
        det = _Detections(
            *(getattr(det, fld.name)[_sweep_order(det)] for fld in dataclasses.fields(_Detections))
        )
        f = _File(scenes[k], det, _polygons(det.verts, det.nv, origin, matrix))
        repaired += _fix_invalid(f, origin, matrix)
        files.append(f)
    fixes = _reconcile(files, origin, matrix)
    for f in files:
        if not shapely.is_valid(f.geoms).all():  # pragma: no cover - fallbacks are valid
            raise RuntimeError(f"{f.scene.filename}: generated an invalid polygon")
    info = {
        "patches": len(patches),
        "invalid_outlines_replaced": repaired,
        **fixes,
        "origin_epsg3413": origin.tolist(),
        "local_to_epsg3413": matrix.tolist(),
    }
    return files, info


def _labels(files: list[_File]) -> pd.DataFrame:
    """One row per copy of a ground polygon in a later file (fids as written: row + 1)."""
    pairs = _copies(files)
    out = [pd.DataFrame(columns=["file", "fid", "original_file", "original_fid", "overlap"])]
    for k, ok in np.unique(pairs[:, [0, 2]], axis=0).tolist():
        pair = pairs[(pairs[:, 0] == k) & (pairs[:, 2] == ok)]
        ov = _overlap(files[k].geoms[pair[:, 1]], files[ok].geoms[pair[:, 3]])
        out.append(
            pd.DataFrame(
                {
                    "file": files[k].scene.filename,
                    "fid": pair[:, 1] + 1,
                    "original_file": files[ok].scene.filename,
                    "original_fid": pair[:, 3] + 1,
                    "overlap": np.round(ov, 4),
                }
            )
        )
    table = pd.concat([o for o in out if len(o)] or out[:1], ignore_index=True)
    return table.sort_values(["file", "fid"], ignore_index=True).astype(
        {"fid": "int64", "original_fid": "int64", "overlap": "float64"}
    )


def _versions() -> dict[str, str]:
    import pyogrio
    import pyproj

    from grouputils import __version__

    return {
        "grouputils": __version__,
        "numpy": np.__version__,
        "shapely": shapely.__version__,
        "geos": shapely.geos_version_string,
        "pyproj": pyproj.__version__,
        "proj": pyproj.proj_version_str,
        "pyogrio": pyogrio.__version__,
        "gdal": pyogrio.__gdal_version_string__,
    }


@contextlib.contextmanager
def _gpkg_timestamp(stamp: str) -> Iterator[None]:
    """Pin the ``last_change`` time GDAL writes into a GeoPackage, so reruns are byte-identical.

    ``OGR_CURRENT_DATE`` is a process-wide GDAL setting; it is restored on exit.
    """
    import pyogrio

    before = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": stamp})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": before})


def _write_gpkg(path: Path, frame: pd.DataFrame, geoms: np.ndarray, scene: _Scene) -> None:
    """Write one scene's layer atomically and check that fids are 1..n in row order."""
    import geopandas as gpd
    import pyogrio

    gdf = gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geoms, crs=CRS), crs=CRS)
    d, t = scene.date, scene.time
    stamp = f"{d[:4]}-{d[4:6]}-{d[6:]}T{t[:2]}:{t[2:4]}:{t[4:]}Z"  # the acquisition time
    with atomic_path(path) as tmp:
        with _gpkg_timestamp(stamp):
            pyogrio.write_dataframe(
                gdf, tmp, layer=LAYER, driver="GPKG", geometry_type="Polygon", use_arrow=True
            )
        fids = pyogrio.read_dataframe(
            tmp, layer=LAYER, columns=[], read_geometry=False, fid_as_index=True
        ).index
        if not np.array_equal(np.asarray(fids), np.arange(1, len(frame) + 1)):
            raise OutputError(
                path, "GeoPackage feature ids are not 1..n in row order; labels would be wrong"
            )


def _clear_old_outputs(out_dir: Path, names: set[str]) -> None:
    """Remove GeoPackages of an earlier generator run; refuse to mix with foreign files."""
    others = [
        p for p in out_dir.glob("*.gpkg") if p.name not in names and not p.name.startswith(".")
    ]
    if not others:
        return
    previous: set[str] = set()
    meta = out_dir / GENERATOR_FILE
    if meta.is_file():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            previous = {f["name"] for f in json.loads(meta.read_text(encoding="utf-8"))["files"]}
    foreign = [p for p in others if p.name not in previous and not _OUR_NAME.fullmatch(p.name)]
    if foreign:
        raise OutputError(
            out_dir,
            f"holds GeoPackages the generator did not make ({', '.join(p.name for p in foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); use an empty folder",
        )
    for p in others:
        p.unlink()


def generate_dataset(
    out_dir: str | Path,
    scale: ScaleName = "samples",
    seed: int = DEFAULT_SEED,
    *,
    total_features: int | None = None,
    progress: bool = False,
) -> list[Path]:
    """Write a synthetic IWP dataset: 11 GeoPackages, ``redetections.csv`` and ``generator.json``.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write into (created). GeoPackages from an earlier run of the
        generator in it are replaced or removed; other GeoPackages make it
        refuse (:class:`~grouputils.core.errors.OutputError`).
    scale : {'samples', 'course'}
        ``'samples'``: about 26,500 polygons, 11 MB, the data shipped in
        ``data-samples/``. ``'course'``: about 1.3 million polygons, 0.5 GB,
        files from ~6 to ~90 MB, for an instructor's shared folder.
    seed : int
        Seed of every random draw. The same seed, scale and library versions
        give identical features (geometries and attributes).
    total_features : int, optional
        Override the scale's approximate total number of polygons (at least
        220), e.g. a small dataset for tests. Scene sizes keep their ratios.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    list of Path
        The 11 GeoPackages, sorted by name (which is scene order). Each has
        one layer ``iwp`` in EPSG:3413 with the real detections' attributes:
        ``Class`` (int64), ``Sensor``, ``Date`` (YYYYMMDD), ``Time``
        (hhmmss), ``Image`` (str), ``Area`` (m^2), ``CentroidX``,
        ``CentroidY`` (EPSG:3413 m), ``Perimeter``, ``Length``, ``Width`` (m).

    Notes
    -----
    ``redetections.csv`` has the columns ``file``, ``fid``,
    ``original_file``, ``original_fid``, ``overlap``: every polygon that
    repeats a polygon of an earlier file (by name), with feature ids as
    written (GeoPackage fids start at 1) and their overlap (intersection /
    smaller area, >= 0.6). Any other pair of polygons from different files
    overlaps by less than 0.4. Within a file some polygons overlap (as in real
    detections); those are not re-detections.

    Memory: about 1.3 kB per polygon at the peak (course scale ~1.8 GB).
    Time: a few seconds for the samples, about a minute for the course scale.
    """
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {sorted(SCALES)}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    spec = SCALES[scale]
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(out, f"cannot create the output folder ({e.strerror})") from e

    files, info = _build(int(seed), spec, total_features, progress)
    names = {f.scene.filename for f in files}
    _clear_old_outputs(out, names)
    labels = _labels(files)
    paths = []
    for f in files:
        path = out / f.scene.filename
        _write_gpkg(path, _attributes(f), f.geoms, f.scene)
        logger.info("wrote %s (%d polygons)", path, len(f.geoms))
        paths.append(path)
    buf = io.StringIO()
    labels.to_csv(buf, index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    write_text_atomic(out / REDETECTIONS_FILE, buf.getvalue())
    meta = {
        "generator": "grouputils.teaching.samples.generate_dataset",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "scale": dataclasses.asdict(spec),
        "total_features_requested": total_features,
        "shape": dataclasses.asdict(SHAPE),
        "centre_lonlat": list(CENTRE_LONLAT),
        "layer": LAYER,
        "crs": CRS,
        "redetections": REDETECTIONS_FILE,
        "files": [
            {
                "name": f.scene.filename,
                "features": len(f.geoms),
                "redetections": int((labels["file"] == f.scene.filename).sum()),
                "sensor": f.scene.sensor,
                "date": f.scene.date,
                "time": f.scene.time,
                "image": f.scene.image,
                "footprint_local_m": [round(v, 1) for v in f.scene.rect],
            }
            for f in files
        ],
        "build": info,
        "versions": _versions(),
    }
    write_json_atomic(out / GENERATOR_FILE, meta)
    return sorted(paths, key=lambda p: p.name)


# --------------------------------------------------------------------------- summary
def _tiles_touched(geoms_lonlat: np.ndarray, tiles: Tiles, z: int) -> set[tuple[int, int]]:
    """Tiles ``(column, row)`` at zoom ``z`` that at least one polygon intersects."""
    from grouputils.core.placement import assign_tiles

    _, cols, rows, _ = assign_tiles(tiles, geoms_lonlat, z=z)
    return set(zip(cols.tolist(), rows.tolist(), strict=True))


def summarize(
    directory: str | Path | None = None, *, tms: str = "WorldCRS84Quad", z: int = 13
) -> pd.DataFrame:
    """Per-file size, extent and tile coverage of a folder of IWP GeoPackages.

    Parameters
    ----------
    directory : str or Path, optional
        Folder of ``*.gpkg`` files; default :func:`sample_dir`.
    tms : str
        Tile matrix set whose tiles are counted. Default ``'WorldCRS84Quad'``.
    z : int
        Zoom level of the tiles counted. Default 13.

    Returns
    -------
    pandas.DataFrame
        One row per file, sorted by name, then a row ``file='total'``.
        Columns: ``file`` (str), ``features`` (int), ``mb`` (size on disk,
        10^6 bytes), ``west``, ``south``, ``east``, ``north`` (bounds in the
        TMS CRS, degrees for WorldCRS84Quad), ``tiles`` (number of tiles the
        polygons intersect; the total counts distinct tiles over all files).

    Notes
    -----
    Reads every geometry and reprojects it, so a course-scale folder takes
    a minute or so.
    """
    import pyogrio
    import pyproj

    from grouputils.core.config import Config
    from grouputils.core.tiles import Tiles

    paths = sample_files(directory)
    tiles = Tiles(Config(dir_input=paths[0].parent, tms=tms, z=z))
    crs = pyproj.CRS.from_user_input(tiles.tms.crs.srs)  # the TMS's own CRS (CRS84: lon, lat)
    rows = []
    everything: set[tuple[int, int]] = set()
    for path in paths:
        try:
            frame = pyogrio.read_dataframe(path, columns=[], use_arrow=True)
        except Exception as e:  # pyogrio raises several error types
            raise InputError(path, f"cannot be read as a GeoPackage layer ({e})") from e
        if frame.crs is None:
            raise InputError(path, "has no CRS")
        geoms = frame.to_crs(crs).geometry.to_numpy()
        touched = _tiles_touched(geoms, tiles, z) if len(geoms) else set()
        everything |= touched
        b = shapely.total_bounds(geoms) if len(geoms) else np.full(4, np.nan)
        rows.append(
            {
                "file": path.name,
                "features": len(frame),
                "mb": path.stat().st_size / 1e6,
                "west": b[0],
                "south": b[1],
                "east": b[2],
                "north": b[3],
                "tiles": len(touched),
            }
        )
    table = pd.DataFrame(rows)
    total = {
        "file": "total",
        "features": int(table["features"].sum()),
        "mb": float(table["mb"].sum()),
        "west": table["west"].min(),
        "south": table["south"].min(),
        "east": table["east"].max(),
        "north": table["north"].max(),
        "tiles": len(everything),
    }
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)
