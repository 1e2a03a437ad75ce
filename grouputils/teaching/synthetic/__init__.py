"""Synthetic ice-wedge-polygon (IWP) detections: the generator of the course's sample data.

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

Modules, in the order the generator uses them
---------------------------------------------
``parameters`` (sizes, shapes, constants) -> ``scenes`` (footprints) ->
``ground`` (field patches of ground polygons) -> ``detect`` (what each scene
sees) -> ``geometry`` (polygons in EPSG:3413) -> ``labels`` (re-detections,
checked by overlap) -> ``attributes`` -> ``writer`` (GeoPackages, CSV, JSON);
``generator`` drives them. ``locate`` finds the data a course uses and
``summary`` describes a folder of it. :mod:`grouputils.teaching.samples` is the
course-facing facade of the same names.
"""

from __future__ import annotations

from grouputils.teaching.synthetic.generator import generate_dataset
from grouputils.teaching.synthetic.locate import DATA_ENV, sample_dir, sample_files
from grouputils.teaching.synthetic.parameters import (
    DEFAULT_SEED,
    GENERATOR_FILE,
    LAYER,
    REDETECTIONS_FILE,
    SCALES,
    SCENE_WEIGHTS,
    Scale,
    ShapeParameters,
)
from grouputils.teaching.synthetic.summary import summarize

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
