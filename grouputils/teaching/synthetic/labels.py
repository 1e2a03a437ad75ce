"""Re-detection labels: which polygons repeat a polygon of an earlier file, checked by overlap.

The generator guarantees that a labelled copy overlaps its original by at
least :data:`~grouputils.teaching.synthetic.parameters.MIN_LABELLED_OVERLAP`
and that any other pair of polygons from different files overlaps by less
than :data:`~grouputils.teaching.synthetic.parameters.MAX_UNLABELLED_OVERLAP`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import shapely

from grouputils.teaching.synthetic.detect import Detections
from grouputils.teaching.synthetic.geometry import SceneFile, overlap, polygons, scaled
from grouputils.teaching.synthetic.parameters import MAX_UNLABELLED_OVERLAP, MIN_LABELLED_OVERLAP

__all__ = ["label_table", "reconcile"]


def _copies(files: list[SceneFile]) -> np.ndarray:
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


def _overlapping_scene_pairs(files: list[SceneFile]) -> list[tuple[int, int]]:
    """``(earlier, later)`` file indices whose footprints overlap."""
    pairs = []
    for j, fj in enumerate(files):
        for i in range(j):
            a, b = files[i].scene.rect, fj.scene.rect
            if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                pairs.append((i, j))
    return pairs


def _cross_pairs(fi: SceneFile, fj: SceneFile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersecting polygons of two files: rows in ``fi``, rows in ``fj``, overlap."""
    qj, qi = shapely.STRtree(fi.geoms).query(fj.geoms, predicate="intersects")
    return qi, qj, overlap(fi.geoms[qi], fj.geoms[qj])


def _seen_earlier(files: list[SceneFile], j: int) -> np.ndarray:
    """Per row of file ``j``: is it a copy of a ground polygon in an earlier file?"""
    gid = files[j].det.gid
    earlier = [f.det.gid[f.det.gid >= 0] for f in files[:j]]
    if not earlier:
        return np.zeros(len(gid), dtype=bool)
    return (gid >= 0) & np.isin(gid, np.concatenate(earlier))


def reconcile(files: list[SceneFile], origin: np.ndarray, matrix: np.ndarray) -> dict[str, int]:
    """Make re-detection labels agree with a plain overlap rule across files.

    A copy of a ground polygon must overlap its earlier copy by at least
    ``MIN_LABELLED_OVERLAP``: if it does not, it gets the ground outline
    (shifted by its scene's misregistration), and failing that a slightly
    shrunk repeat of the earlier copy. A polygon that is not a copy must
    overlap every polygon of an earlier file by less than
    ``MAX_UNLABELLED_OVERLAP``: if it does not, it is dropped (a missed
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
            low = overlap(fi.geoms[ri], fj.geoms[rj]) < MIN_LABELLED_OVERLAP
            if not low.any():
                break
            rows = rj[low]
            replaced += len(rows)
            if attempt == 0:
                fb = fj.det
                fj.geoms[rows] = polygons(fb.fallback[rows], fb.fallback_nv[rows], origin, matrix)
            else:  # the earlier copy is odd (expanded, a triangle): repeat it, a bit smaller
                fj.geoms[rows] = scaled(fi.geoms[ri[low]], 0.97)
        _, qj, ov = _cross_pairs(fi, fj)
        bad = (ov >= MAX_UNLABELLED_OVERLAP) & ~_seen_earlier(files, j)[qj]
        drop = np.unique(qj[bad])
        if len(drop):
            keep = np.ones(len(fj.geoms), dtype=bool)
            keep[drop] = False
            fields = dataclasses.fields(Detections)
            fj.det = Detections(*(getattr(fj.det, fld.name)[keep] for fld in fields))
            fj.geoms = fj.geoms[keep]
            dropped += len(drop)
    _verify_labels(files)
    return {"replaced_outlines": replaced, "dropped_polygons": dropped}


def _copy_rows(fi: SceneFile, fj: SceneFile) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the same ground polygons in two files (extra detections have none)."""
    own = np.nonzero(fi.det.gid >= 0)[0]
    _, ri, rj = np.intersect1d(fi.det.gid[own], fj.det.gid, return_indices=True)
    return own[ri], rj


def _verify_labels(files: list[SceneFile]) -> None:
    """Raise if an overlap rule across files would disagree with the labels (a generator bug)."""
    for i, j in _overlapping_scene_pairs(files):
        fi, fj = files[i], files[j]
        ri, rj = _copy_rows(fi, fj)
        _, qj, ov = _cross_pairs(fi, fj)
        copy = _seen_earlier(files, j)[qj]
        if np.any(overlap(fi.geoms[ri], fj.geoms[rj]) < MIN_LABELLED_OVERLAP) or np.any(
            ~copy & (ov >= MAX_UNLABELLED_OVERLAP)
        ):  # pragma: no cover - reconcile makes this impossible
            raise RuntimeError(f"re-detection labels of {fj.scene.filename} disagree with overlaps")


def label_table(files: list[SceneFile]) -> pd.DataFrame:
    """One row per copy of a ground polygon in a later file (fids as written: row + 1)."""
    pairs = _copies(files)
    out = [pd.DataFrame(columns=["file", "fid", "original_file", "original_fid", "overlap"])]
    for k, ok in np.unique(pairs[:, [0, 2]], axis=0).tolist():
        pair = pairs[(pairs[:, 0] == k) & (pairs[:, 2] == ok)]
        ov = overlap(files[k].geoms[pair[:, 1]], files[ok].geoms[pair[:, 3]])
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
