"""The course's sample data: where it is, and the generator that made it.

The names learners, the course notebooks, the grading scripts and ``grouputils
sample`` / ``grouputils summary`` use, re-exported from
:mod:`grouputils.teaching.synthetic` (which holds the generator, one job per
module)::

    from grouputils.teaching.samples import sample_dir, sample_files, generate_dataset
"""

from __future__ import annotations

from grouputils.teaching.synthetic import (
    DATA_ENV,
    DEFAULT_SEED,
    GENERATOR_FILE,
    LAYER,
    REDETECTIONS_FILE,
    SCALES,
    SCENE_WEIGHTS,
    Scale,
    ShapeParameters,
    generate_dataset,
    sample_dir,
    sample_files,
    summarize,
)

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
