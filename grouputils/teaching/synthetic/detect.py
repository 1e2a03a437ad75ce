"""How one scene sees the ground polygons of one patch: noisy outlines, misses and artefacts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from grouputils.teaching.synthetic.ground import Ground, Patch
from grouputils.teaching.synthetic.parameters import MAX_VERTICES, SHAPE
from grouputils.teaching.synthetic.scenes import Scene

__all__ = ["Detections", "detect"]


@dataclass
class Detections:
    """Detections of one patch in one scene (local frame, clockwise, padded)."""

    verts: np.ndarray  # (n, MAX_VERTICES, 2)
    nv: np.ndarray  # (n,) 3..6
    fallback: np.ndarray  # (n, 5, 2): ground polygon + scene shift, always valid
    fallback_nv: np.ndarray
    gid: np.ndarray  # (n,) ground id; -1 for extra detections
    cls: np.ndarray
    draws: np.ndarray  # (n, 4): area ratio, centroid offset angle, size, perimeter noise

    @staticmethod
    def concat(parts: list[Detections]) -> Detections:
        if not parts:
            z = np.empty(0)
            return Detections(
                np.empty((0, MAX_VERTICES, 2)),
                z.astype(int),
                np.empty((0, 5, 2)),
                z.astype(int),
                z.astype("i8"),
                z.astype(int),
                np.empty((0, 4)),
            )
        return Detections(
            *(
                np.concatenate([getattr(p, f.name) for p in parts])
                for f in dataclasses.fields(Detections)
            )
        )


def _pad(verts: np.ndarray, width: int) -> np.ndarray:
    if verts.shape[1] >= width:
        return verts[:, :width]
    return np.concatenate([verts, verts[:, :1].repeat(width - verts.shape[1], axis=1)], axis=1)


def detect(seed: int, patch: Patch, ground: Ground, gid0: int, scene: Scene) -> Detections:
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
    out = _pad(out, MAX_VERTICES)
    nv = nv.copy()
    # A missing vertex (triangle) or an extra one on an edge.
    tri = (rng.random(n) < SHAPE.p_triangle) & (nv == 4)
    drop = rng.integers(0, 4, n)
    rows = np.nonzero(tri)[0]
    if len(rows):
        keep = np.arange(4)[None, :] != drop[rows, None]
        tri_verts = out[rows, :4][keep].reshape(len(rows), 3, 2)
        out[rows] = _pad(tri_verts, MAX_VERTICES)
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
        slot = np.arange(MAX_VERTICES)[None, :]
        src = np.where(slot <= edge[:, None], slot, slot - 1)
        src = np.minimum(src, nv[rows, None])  # padding repeats the last vertex
        grown = np.take_along_axis(out[rows], src[..., None], axis=1)
        grown[np.arange(len(rows)), edge + 1] = new
        nv[rows] += 1
        grown[slot >= nv[rows, None]] = grown[:, :1].repeat(MAX_VERTICES, axis=1)[
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
    det = Detections(out, nv, fallback, ground.nv[seen].copy(), gid, cls, draws)
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
    ex = Detections(
        _pad(ev, MAX_VERTICES),
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
    return Detections.concat([det, ex])
