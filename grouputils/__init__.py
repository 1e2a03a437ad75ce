"""grouputils: stage, rasterize and map ice-wedge-polygon detections in parallel.

The names here are the ones learners use in the course notebooks.
"""

from grouputils.config import Config, Statistic
from grouputils.errors import ConfigError, InputError, NotFinalizedError, OutputError
from grouputils.tiles import Tile, Tiles

__version__ = "0.1.0"

__all__ = [
    "Config",
    "Statistic",
    "Tile",
    "Tiles",
    "ConfigError",
    "InputError",
    "NotFinalizedError",
    "OutputError",
]
