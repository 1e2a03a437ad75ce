"""grouputils: stage, rasterize and map ice-wedge-polygon detections in parallel.

The names here are the ones learners use in the course notebooks::

    from grouputils import initialize_stager, initialize_rasterizer, make_batch, plot_tiles
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the module that defines it. Imported on first use (PEP 562),
#: so ``import grouputils`` and ``grouputils --help`` stay light (no geopandas).
_LAZY = {
    **dict.fromkeys(("Config", "Statistic", "load_config_file"), "grouputils.core.config"),
    **dict.fromkeys(
        ("ConfigError", "InputError", "NotFinalizedError", "OutputError"), "grouputils.core.errors"
    ),
    **dict.fromkeys(
        ("WorkerCapWarning", "clamp_workers", "core_limits", "usable_cores"),
        "grouputils.core.cores",
    ),
    **dict.fromkeys(("choose_batch_size", "make_batch"), "grouputils.run.batches"),
    **dict.fromkeys(("TaskError", "parallel_map", "serial_map"), "grouputils.run.executors"),
    **dict.fromkeys(("local_config", "slurm_config"), "grouputils.run.parsl_config"),
    **dict.fromkeys(("Profiled", "ResourceProfile", "profile_resources"), "grouputils.run.monitor"),
    **dict.fromkeys(
        ("BasemapWarning", "plot_profile", "plot_sweep", "plot_tiles"),
        "grouputils.teaching.plotting",
    ),
    **dict.fromkeys(("SweepResult", "sweep_workers"), "grouputils.teaching.sweeps"),
    **dict.fromkeys(("Verdict", "classify_bound"), "grouputils.teaching.verdict"),
    **dict.fromkeys(("RasterTiler", "initialize_rasterizer"), "grouputils.core.rasterize"),
    **dict.fromkeys(
        ("generate_dataset", "sample_dir", "sample_files"), "grouputils.teaching.samples"
    ),
    **dict.fromkeys(("StageResult", "TileStager", "initialize_stager"), "grouputils.core.staging"),
    **dict.fromkeys(("Tile", "Tiles"), "grouputils.core.tiles"),
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time names load lazily
    from grouputils.core.config import Config, Statistic, load_config_file  # noqa: F401
    from grouputils.core.cores import (  # noqa: F401
        WorkerCapWarning,
        clamp_workers,
        core_limits,
        usable_cores,
    )
    from grouputils.core.errors import (  # noqa: F401
        ConfigError,
        InputError,
        NotFinalizedError,
        OutputError,
    )
    from grouputils.core.rasterize import RasterTiler, initialize_rasterizer  # noqa: F401
    from grouputils.core.staging import StageResult, TileStager, initialize_stager  # noqa: F401
    from grouputils.core.tiles import Tile, Tiles  # noqa: F401
    from grouputils.run.batches import choose_batch_size, make_batch  # noqa: F401
    from grouputils.run.executors import TaskError, parallel_map, serial_map  # noqa: F401
    from grouputils.run.monitor import Profiled, ResourceProfile, profile_resources  # noqa: F401
    from grouputils.run.parsl_config import local_config, slurm_config  # noqa: F401
    from grouputils.teaching.plotting import (  # noqa: F401
        BasemapWarning,
        plot_profile,
        plot_sweep,
        plot_tiles,
    )
    from grouputils.teaching.samples import generate_dataset, sample_dir, sample_files  # noqa: F401
    from grouputils.teaching.sweeps import SweepResult, sweep_workers  # noqa: F401
    from grouputils.teaching.verdict import Verdict, classify_bound  # noqa: F401


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'grouputils' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "initialize_stager",
    "initialize_rasterizer",
    "TileStager",
    "RasterTiler",
    "StageResult",
    "Config",
    "Statistic",
    "load_config_file",
    "Tile",
    "Tiles",
    "sample_dir",
    "sample_files",
    "generate_dataset",
    "make_batch",
    "choose_batch_size",
    "usable_cores",
    "core_limits",
    "clamp_workers",
    "local_config",
    "slurm_config",
    "parallel_map",
    "serial_map",
    "profile_resources",
    "ResourceProfile",
    "Profiled",
    "sweep_workers",
    "SweepResult",
    "classify_bound",
    "Verdict",
    "plot_tiles",
    "plot_profile",
    "plot_sweep",
    "ConfigError",
    "InputError",
    "NotFinalizedError",
    "OutputError",
    "TaskError",
    "WorkerCapWarning",
    "BasemapWarning",
]
