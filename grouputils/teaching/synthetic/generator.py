"""The generator: every scene's polygons in memory, then the files of a dataset.

:func:`generate_dataset` is the public entry point; see
:mod:`grouputils.teaching.synthetic` for how the polygons are made.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from tqdm.auto import tqdm

from grouputils.core.errors import ConfigError, OutputError
from grouputils.teaching.synthetic.attributes import attributes
from grouputils.teaching.synthetic.detect import Detections, detect
from grouputils.teaching.synthetic.geometry import (
    SceneFile,
    fix_invalid,
    local_to_3413,
    polygons,
    sweep_order,
)
from grouputils.teaching.synthetic.ground import (
    Ground,
    Patch,
    Placer,
    eval_field,
    patch_ground,
    smooth_field,
)
from grouputils.teaching.synthetic.labels import label_table, reconcile
from grouputils.teaching.synthetic.parameters import (
    CELLS_PER_SPACING2,
    DEFAULT_SEED,
    SCALES,
    SHAPE,
    Scale,
    ScaleName,
)
from grouputils.teaching.synthetic.scenes import Scene, layout_scenes, scene_targets
from grouputils.teaching.synthetic.writer import (
    clear_old_outputs,
    write_generator_json,
    write_gpkg,
    write_redetections,
)

__all__ = ["generate_dataset"]

logger = logging.getLogger(__name__)


def _zones(scale: Scale, targets: np.ndarray) -> list[tuple[tuple[int, ...], int]]:
    """Polygons wanted in each zone: overlaps of neighbours first, then each scene's own ground."""
    n = len(targets)
    overlap_want = [
        round(scale.overlap_fraction * min(targets[k], targets[k + 1])) for k in range(n - 1)
    ]
    zones: list[tuple[tuple[int, ...], int]] = [((k, k + 1), overlap_want[k]) for k in range(n - 1)]
    for k in range(n):
        own = targets[k] - (overlap_want[k - 1] if k else 0) - (overlap_want[k] if k < n - 1 else 0)
        zones.append(((k,), max(int(own), 0)))
    return zones


def _spacing(
    field: tuple[np.ndarray, np.ndarray, np.ndarray], scenes: list[Scene]
) -> Callable[[float, float], float]:
    """Lattice spacing (m) as a function of position.

    A smooth field over the region, centred so that its median over the ground
    where polygons will be (scenes weighted by their number of polygons) is the
    nominal spacing.
    """
    values, weights = [], []
    for sc in scenes:
        gx, gy = np.meshgrid(
            np.linspace(sc.rect[0], sc.rect[2], 25), np.linspace(sc.rect[1], sc.rect[3], 25)
        )
        values.append(eval_field(field, gx, gy).ravel())
        weights.append(np.full(gx.size, sc.target / gx.size))
    v, w = np.concatenate(values), np.concatenate(weights)
    order = np.argsort(v)
    centre_field = float(v[order][np.searchsorted(np.cumsum(w[order]), 0.5 * w.sum())])

    def spacing_at(x: float, y: float) -> float:
        return SHAPE.spacing_median_m * math.exp(
            SHAPE.spacing_sigma * (float(eval_field(field, x, y)) - centre_field)
        )

    return spacing_at


def _place_patches(
    seed: int,
    rng: np.random.Generator,
    scale: Scale,
    scenes: list[Scene],
    spacing_at: Callable[[float, float], float],
) -> tuple[list[Patch], list[Ground]]:
    """Field patches and their ground polygons, zone by zone, until each zone has its share."""
    placer = Placer(scenes)
    patches: list[Patch] = []
    grounds: list[Ground] = []
    for zone, want in _zones(scale, np.asarray([s.target for s in scenes])):
        got = 0
        failures = 0
        while got < want:
            size = min(rng.lognormal(np.log(scale.patch_features), 0.5), 4 * scale.patch_features)
            size = max(min(size * 0.7**failures, 1.2 * (want - got)), 8.0)
            own = math.exp(rng.normal(0, SHAPE.patch_spacing_sigma))

            def radius_at(x: float, y: float, size: float = size, own: float = own) -> float:
                # polygons per patch do not depend on the spacing
                return math.sqrt(size / (math.pi * CELLS_PER_SPACING2)) * spacing_at(x, y) * own

            placed = placer.place(rng, zone, radius_at)
            if placed is None:
                failures += 1
                if failures > 12:
                    raise ConfigError(
                        f"no room for field patches in the zone of scenes {zone}; "
                        "lower total_features"
                    )
                continue
            failures = 0
            x, y, radius = placed
            patch = Patch(len(patches), (x, y), radius, spacing_at(x, y) * own, zone)
            ground = patch_ground(seed, patch)
            patches.append(patch)
            grounds.append(ground)
            got += round(len(ground.nv) * (1 - SHAPE.p_miss))
    return patches, grounds


def _scene_files(
    seed: int,
    scenes: list[Scene],
    patches: list[Patch],
    grounds: list[Ground],
    frame: tuple[np.ndarray, np.ndarray],
    progress: bool,
) -> tuple[list[SceneFile], int]:
    """What each scene detects, in file row order, as valid polygons; and the outlines repaired."""
    origin, matrix = frame
    parts: list[list[Detections]] = [[] for _ in scenes]
    gid0 = 0
    bar = tqdm(total=len(patches), unit="patch", desc="generating", disable=not progress)
    for patch, ground in zip(patches, grounds, strict=True):
        for k in patch.scenes:
            parts[k].append(detect(seed, patch, ground, gid0, scenes[k]))
        gid0 += len(ground.nv)
        bar.update(1)
    bar.close()

    files = []
    repaired = 0
    for scene, scene_parts in zip(scenes, parts, strict=True):
        det = Detections.concat(scene_parts)
        det = Detections(
            *(getattr(det, fld.name)[sweep_order(det)] for fld in dataclasses.fields(Detections))
        )
        f = SceneFile(scene, det, polygons(det.verts, det.nv, origin, matrix))
        repaired += fix_invalid(f, origin, matrix)
        files.append(f)
    return files, repaired


def _build(
    seed: int, scale: Scale, total_features: int | None, progress: bool
) -> tuple[list[SceneFile], dict[str, Any]]:
    """Every scene's polygons in memory (no I/O), and facts about the run for generator.json."""
    scenes = layout_scenes(seed, scale, scene_targets(scale, total_features))
    rng = np.random.default_rng([seed, 2])
    spacing_at = _spacing(smooth_field(rng, SHAPE.spacing_wavelengths_m), scenes)
    patches, grounds = _place_patches(seed, rng, scale, scenes, spacing_at)
    origin, matrix = local_to_3413()
    files, repaired = _scene_files(seed, scenes, patches, grounds, (origin, matrix), progress)
    fixes = reconcile(files, origin, matrix)
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
    clear_old_outputs(out, names)
    labels = label_table(files)
    paths = []
    for f in files:
        path = out / f.scene.filename
        write_gpkg(path, attributes(f), f.geoms, f.scene)
        logger.info("wrote %s (%d polygons)", path, len(f.geoms))
        paths.append(path)
    write_redetections(out, labels)
    write_generator_json(
        out,
        seed=int(seed),
        scale=spec,
        total_features=total_features,
        files=files,
        labels=labels,
        build=info,
    )
    return sorted(paths, key=lambda p: p.name)
