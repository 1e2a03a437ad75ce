"""grouputils: stage, rasterize and map ice-wedge-polygon detections in parallel.

The names here are the ones learners use in the course notebooks::

    from grouputils import initialize_stager, initialize_rasterizer, make_batch, plot_tiles
"""

from grouputils.config import Config, Statistic, load_config_file
from grouputils.errors import ConfigError, InputError, NotFinalizedError, OutputError
from grouputils.parallel import (
    TaskError,
    WorkerCapWarning,
    choose_batch_size,
    clamp_workers,
    core_limits,
    local_config,
    make_batch,
    parallel_map,
    serial_map,
    slurm_config,
    usable_cores,
)
from grouputils.plotting import BasemapWarning, plot_profile, plot_sweep, plot_tiles
from grouputils.profiling import (
    Profiled,
    ResourceProfile,
    SweepResult,
    Verdict,
    classify_bound,
    profile_resources,
    sweep_workers,
)
from grouputils.rasterize import RasterTiler, initialize_rasterizer
from grouputils.samples import generate_dataset, sample_dir, sample_files
from grouputils.staging import StageResult, TileStager, initialize_stager
from grouputils.tiles import Tile, Tiles

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
