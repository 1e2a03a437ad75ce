"""Ground truth: field patches of ice-wedge polygons placed on empty tundra.

Each patch is a shrunk, jittered, smoothly warped lattice whose spacing
follows a smooth random field over the region (:func:`smooth_field`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from grouputils.teaching.synthetic.parameters import OUTLINE_REACH, PATCH_MARGIN_M, SHAPE
from grouputils.teaching.synthetic.scenes import Scene

__all__ = ["Ground", "Patch", "Placer", "eval_field", "patch_ground", "smooth_field"]


def smooth_field(
    rng: np.random.Generator, wavelengths: tuple[float, float], n_waves: int = 6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parameters of a random sum of plane waves with unit variance."""
    lam = rng.uniform(*wavelengths, n_waves)
    ang = rng.uniform(0, np.pi, n_waves)
    k = np.column_stack([np.cos(ang), np.sin(ang)]) * (2 * np.pi / lam)[:, None]
    phase = rng.uniform(0, 2 * np.pi, n_waves)
    return k, phase, np.full(n_waves, np.sqrt(2.0 / n_waves))


def eval_field(
    field: tuple[np.ndarray, np.ndarray, np.ndarray],
    x: npt.ArrayLike,
    y: npt.ArrayLike,
) -> np.ndarray:
    """The field at points ``(x, y)`` (arrays of any shape, or scalars)."""
    k, phase, amp = field
    x = np.asarray(x, dtype="f8")[..., None]
    y = np.asarray(y, dtype="f8")[..., None]
    return np.sum(amp * np.cos(k[:, 0] * x + k[:, 1] * y + phase), axis=-1)


# --------------------------------------------------------------------------- patches
@dataclass(frozen=True)
class Patch:
    index: int
    centre: tuple[float, float]
    radius: float  # nominal radius (m); the outline stays within OUTLINE_REACH x
    spacing: float
    scenes: tuple[int, ...]  # scenes whose footprint holds the whole patch


@dataclass
class Ground:
    """Ground-truth polygons of one patch (local frame, clockwise, padded)."""

    verts: np.ndarray  # (n, 5, 2) float64
    nv: np.ndarray  # (n,) int: 4 or 5
    cls: np.ndarray  # (n,) int: 1 or 2


def _rect_distance(x: float, y: float, rect: tuple[float, float, float, float]) -> float:
    dx = max(rect[0] - x, 0.0, x - rect[2])
    dy = max(rect[1] - y, 0.0, y - rect[3])
    return math.hypot(dx, dy)


class Placer:
    """Non-overlapping discs inside one zone (a set of scene footprints and none other)."""

    def __init__(self, scenes: list[Scene]) -> None:
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
            reach = OUTLINE_REACH * radius + PATCH_MARGIN_M
            if min(x - west, east - x, y - south, north - y) < reach:
                continue
            if any(_rect_distance(x, y, o) < reach for o in others):
                continue
            if len(self.r) and np.any(
                np.hypot(*(self.xy - (x, y)).T) < OUTLINE_REACH * (self.r + radius) + PATCH_MARGIN_M
            ):
                continue
            self.xy = np.vstack([self.xy, (x, y)])
            self.r = np.append(self.r, radius)
            return float(x), float(y), float(radius)
        return None


def patch_ground(seed: int, patch: Patch) -> Ground:
    """The ground-truth polygons of a patch: a shrunk, jittered, smoothly warped lattice."""
    rng = np.random.default_rng([seed, 3, patch.index])
    s, R = patch.spacing, patch.radius
    m = int(np.ceil(OUTLINE_REACH * R / (s * (1 - 1.4 * SHAPE.warp_stretch)))) + 2
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
    harm = rng.uniform(0, (OUTLINE_REACH - 1) / 3.3, 3)
    hph = rng.uniform(0, 2 * np.pi, 3)
    outline = R * (1 + sum(harm[h] * np.cos((2, 3, 5)[h] * phi + hph[h]) for h in range(3)))
    fill = smooth_field(rng, (0.4 * R + 3 * s, 1.0 * R + 6 * s), 4)
    q = np.quantile(
        eval_field(fill, rng.normal(0, R, 4000), rng.normal(0, R, 4000)),
        1 - rng.uniform(*SHAPE.patch_fill),
    )
    exists = (
        (dist < outline)
        & (eval_field(fill, rel[..., 0], rel[..., 1]) > q)
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
    return Ground(verts[order], nv[order], cls[order])
