"""The frozen, picklable configuration shared by every pipeline step.

A :class:`Config` is built once (by :func:`grouputils.initialize_stager`, the
command line, or a TOML file) and passed explicitly to every step. It is a
frozen dataclass, so it can be sent to Parsl workers and hashed into the
pipeline's manifest; nothing in grouputils keeps global settings.

Learners know the older ``config.get('dir_staged')`` style of access; it works
here too (see :meth:`Config.get`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import morecantile

from grouputils.errors import ConfigError

__all__ = ["Statistic", "Config", "DEFAULT_STATISTICS", "load_config_file"]

WeightBy = Literal["count", "coverage", "attribute"]
Aggregate = Literal["sum", "mean", "max", "min"]
Resampling = Literal["sum", "mean"]


@dataclass(frozen=True)
class Statistic:
    """A raster statistic, declared as data (no code, no lambdas).

    Parameters
    ----------
    name : str
        Band name in the GeoTIFFs and folder name of its web tiles.
    weight_by : {'count', 'coverage', 'attribute'}
        What each polygon contributes to a pixel: ``'count'`` adds 1 at the
        pixel holding the polygon's centroid; ``'coverage'`` is the fraction
        of the pixel's area covered by the union of the polygons (0..1);
        ``'attribute'`` takes the numeric attribute named by ``attribute`` at
        the pixel holding the centroid.
    aggregate : {'sum', 'mean', 'max', 'min'}
        How several polygons' values combine within one pixel (ignored for
        ``'coverage'``, which is always the union's fraction).
    resampling : {'sum', 'mean'}
        How four child pixels combine into one parent pixel in the pyramid.
        ``'sum'`` for counts, ``'mean'`` for proportions and averages.
    palette : str or tuple of str
        A Matplotlib colormap name or a tuple of colours (``'#rrggbb'``).
    value_range : tuple of float
        Values mapped to the ends of the palette at the highest zoom level.
        For ``resampling='sum'`` the range is multiplied by 4 for each level
        up the pyramid (a parent pixel covers four children), so one colour
        means one density at every zoom level.
    attribute : str, optional
        The input attribute read when ``weight_by='attribute'``.
    description : str
        Words for legends, band metadata and the STAC catalogue.
    unit : str
        Unit of the values, for legends.
    """

    name: str
    weight_by: WeightBy
    aggregate: Aggregate = "sum"
    resampling: Resampling = "sum"
    palette: str | tuple[str, ...] = "viridis"
    value_range: tuple[float, float] = (0.0, 1.0)
    attribute: str | None = None
    description: str = ""
    unit: str = ""

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ConfigError(f"statistic name {self.name!r} must be a non-empty folder name")
        if self.weight_by not in ("count", "coverage", "attribute"):
            raise ConfigError(f"statistic {self.name!r}: unknown weight_by {self.weight_by!r}")
        if self.aggregate not in ("sum", "mean", "max", "min"):
            raise ConfigError(f"statistic {self.name!r}: unknown aggregate {self.aggregate!r}")
        if self.resampling not in ("sum", "mean"):
            raise ConfigError(f"statistic {self.name!r}: unknown resampling {self.resampling!r}")
        if self.weight_by == "attribute" and not self.attribute:
            raise ConfigError(f"statistic {self.name!r}: weight_by='attribute' needs attribute=")
        lo, hi = self.value_range
        if not hi > lo:
            raise ConfigError(f"statistic {self.name!r}: value_range must rise, got {self.value_range}")
        if isinstance(self.palette, list):
            object.__setattr__(self, "palette", tuple(self.palette))
        object.__setattr__(self, "value_range", (float(lo), float(hi)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Statistic":
        """Build a statistic from a plain mapping (TOML/JSON)."""
        d = dict(d)
        if "value_range" in d:
            d["value_range"] = tuple(d["value_range"])
        if isinstance(d.get("palette"), list):
            d["palette"] = tuple(d["palette"])
        return cls(**d)


DEFAULT_STATISTICS: tuple[Statistic, ...] = (
    Statistic(
        name="number_IWP_per_pixel",
        weight_by="count",
        aggregate="sum",
        resampling="sum",
        palette="viridis",
        value_range=(0.0, 2.0),
        description="Number of ice-wedge polygons whose centroid lies in the pixel",
        unit="polygons",
    ),
    Statistic(
        name="prop_pixel_covered_by_IWP",
        weight_by="coverage",
        aggregate="sum",
        resampling="mean",
        palette="magma",
        value_range=(0.0, 1.0),
        description="Proportion of the pixel's area covered by ice-wedge polygons",
        unit="fraction",
    ),
)


def _as_path(p: str | Path) -> Path:
    return Path(p).expanduser()


@dataclass(frozen=True)
class Config:
    """Every setting of a pipeline run.

    Parameters
    ----------
    dir_input : Path
        Folder of input GeoPackages (read only; never written).
    dir_output : Path
        Folder that receives every output. Default ``./group-project``.
    tms : str
        A morecantile tile matrix set id. Default ``'WorldCRS84Quad'``.
    z : int
        Zoom level of staging and of the first rasterization. Default 13.
    input_ext : str
        File name ending of inputs. Default ``'.gpkg'``.
    input_layer : str
        Layer read from inputs that hold several layers. A file with a single
        layer is read whatever its layer is called.
    default_crs : str
        CRS assumed (with a warning) for inputs that declare none.
    simplify_tolerance : float
        Douglas-Peucker tolerance in metres, applied in a local equal-area
        projection with topology preserved. 0 switches simplification off.
    chunk_size : int
        Inputs with more features are read and processed this many features
        at a time, which bounds peak memory. The output does not depend on it.
    dedup_overlap : float
        Two polygons from different input files are the same ground polygon
        when their intersection covers at least this fraction of the smaller
        one.
    statistics : tuple of Statistic
        The raster bands, in order.
    tile_size : int
        Width and height of every raster tile in pixels.
    max_workers : int, optional
        An instructor's cap on workers; ``GROUPUTILS_MAX_WORKERS`` also caps.
    scratch_dir : str, optional
        Node-local folder (e.g. ``"$TMPDIR"`` or ``"/tmp"``, expanded on each
        worker) where every output is written first and then copied and
        renamed into the output folder (:mod:`grouputils.scratch`). Outputs
        do not depend on it.
    scratch_inputs : bool
        With ``scratch_dir``, also read each input from a local copy.
    """

    dir_input: Path
    dir_output: Path = Path("group-project")
    tms: str = "WorldCRS84Quad"
    z: int = 13
    input_ext: str = ".gpkg"
    input_layer: str = "iwp"
    default_crs: str = "EPSG:3413"
    simplify_tolerance: float = 0.1
    chunk_size: int = 50_000
    dedup_overlap: float = 0.5
    statistics: tuple[Statistic, ...] = DEFAULT_STATISTICS
    tile_size: int = 256
    max_workers: int | None = None
    scratch_dir: str | None = None
    scratch_inputs: bool = False
    extra: tuple[tuple[str, Any], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dir_input", _as_path(self.dir_input))
        object.__setattr__(self, "dir_output", _as_path(self.dir_output))
        if self.tms not in morecantile.tms.list():
            raise ConfigError(
                f"unknown tile matrix set {self.tms!r}; choose one of {sorted(morecantile.tms.list())}"
            )
        tms = morecantile.tms.get(self.tms)
        lo = max(0, tms.minzoom)
        if not isinstance(self.z, int) or isinstance(self.z, bool) or not lo <= self.z <= tms.maxzoom:
            raise ConfigError(f"z must be an integer from {lo} to {tms.maxzoom} for {self.tms!r}, got {self.z!r}")
        if tms.matrix(self.z).variableMatrixWidths:
            raise ConfigError(f"tile matrix set {self.tms!r} has variable matrix widths: not supported")
        if not self.input_ext.startswith("."):
            raise ConfigError(f"input_ext must start with '.', got {self.input_ext!r}")
        if not (isinstance(self.chunk_size, int) and self.chunk_size >= 1):
            raise ConfigError(f"chunk_size must be a positive integer, got {self.chunk_size!r}")
        if not 0 < self.dedup_overlap <= 1:
            raise ConfigError(f"dedup_overlap must be in (0, 1], got {self.dedup_overlap!r}")
        if self.simplify_tolerance < 0:
            raise ConfigError("simplify_tolerance must be >= 0 (metres)")
        if not (isinstance(self.tile_size, int) and self.tile_size >= 1):
            raise ConfigError(f"tile_size must be a positive integer, got {self.tile_size!r}")
        stats = tuple(
            s if isinstance(s, Statistic) else Statistic.from_dict(s) for s in self.statistics
        )
        if not stats:
            raise ConfigError("at least one statistic is needed")
        names = [s.name for s in stats]
        if len(set(names)) != len(names):
            raise ConfigError(f"statistic names must be unique, got {names}")
        object.__setattr__(self, "statistics", stats)
        if self.max_workers is not None and (not isinstance(self.max_workers, int) or self.max_workers < 1):
            raise ConfigError(f"max_workers must be a positive integer, got {self.max_workers!r}")

    # ------------------------------------------------------------------ paths
    @property
    def dir_staged(self) -> Path:
        """Final staged tiles: ``staged/<TMS>/<z>/<x>/<y>.gpkg``."""
        return self.dir_output / "staged"

    @property
    def dir_staging_parts(self) -> Path:
        """Per-source pieces written by :meth:`TileStager.stage` before finalize."""
        return self.dir_output / "staging-parts"

    @property
    def dir_geotiff(self) -> Path:
        """GeoTIFF pyramid: ``geotiff/<TMS>/<z>/<x>/<y>.tif``."""
        return self.dir_output / "geotiff"

    @property
    def dir_web_tiles(self) -> Path:
        """PNG web tiles: ``web_tiles/<statistic>/<TMS>/<z>/<x>/<y>.png``."""
        return self.dir_output / "web_tiles"

    @property
    def filename_staging_summary(self) -> Path:
        """CSV with one row per input file and tile."""
        return self.dir_output / "staging_summary.csv"

    @property
    def filename_rasterization_summary(self) -> Path:
        """CSV with one row per GeoTIFF tile written."""
        return self.dir_output / "raster_summary.csv"

    @property
    def statistic_names(self) -> tuple[str, ...]:
        """Names of the statistics, in band order."""
        return tuple(s.name for s in self.statistics)

    def statistic(self, name: str) -> Statistic:
        """Return the statistic called ``name``."""
        for s in self.statistics:
            if s.name == name:
                return s
        raise ConfigError(f"no statistic named {name!r}; have {list(self.statistic_names)}")

    _ALIASES = {
        "dir_web_tiles": "dir_web_tiles",
        "dir_webtiles": "dir_web_tiles",
        "filename_raster_summary": "filename_rasterization_summary",
        "tms_id": "tms",
        "z_level": "z",
        "max_zoom": "z",
        "deduplicate_overlap_tolerance": "dedup_overlap",
    }

    def get(self, key: str) -> Any:
        """Look a setting up by name, as the earlier course did.

        Parameters
        ----------
        key : str
            A field or path name such as ``'dir_staged'``,
            ``'filename_staging_summary'``, ``'dir_geotiff'``, ``'tms'``, ``'z'``.
            ``'z_range'`` gives ``(0, z)``; ``'statistics'`` gives the names.

        Returns
        -------
        Any
            The value (paths as :class:`pathlib.Path`).
        """
        key = self._ALIASES.get(key, key)
        if key == "z_range":
            return (0, self.z)
        if key == "statistics":
            return list(self.statistic_names)
        if not key.startswith("_") and (key in ("dir_input", "dir_output") or hasattr(type(self), key)):
            value = getattr(self, key)
            if not callable(value):
                return value
        extra = dict(self.extra)
        if key in extra:
            return extra[key]
        raise KeyError(f"unknown config key {key!r}")

    def replace(self, **changes: Any) -> "Config":
        """Return a copy with some settings changed (the config itself is frozen)."""
        return dataclasses.replace(self, **changes)

    # --------------------------------------------------------------- identity
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able mapping of every setting."""
        d = dataclasses.asdict(self)
        d["dir_input"] = str(self.dir_input)
        d["dir_output"] = str(self.dir_output)
        d["extra"] = [list(kv) for kv in self.extra]
        return d

    def fingerprint(self, *keys: str) -> str:
        """A short hash of the settings named (all settings that shape outputs by default).

        Paths are left out, so moving a project does not invalidate outputs.
        """
        d = self.to_dict()
        for k in ("dir_input", "dir_output", "max_workers", "scratch_dir", "scratch_inputs"):
            d.pop(k)
        if keys:
            d = {k: d[k] for k in keys}
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read settings from a TOML file.

    Top-level keys are :class:`Config` fields; ``[[statistics]]`` tables
    declare statistics; a ``[slurm]`` table (used by ``grouputils run
    --executor slurm``) is returned under the key ``'slurm'``.

    Parameters
    ----------
    path : str or Path
        The TOML file.

    Returns
    -------
    dict
        Keyword arguments for :class:`Config` (plus ``'slurm'`` if present).
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: config file not found") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from e
    known = {f.name for f in dataclasses.fields(Config)} | {"slurm"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{path}: unknown settings {sorted(unknown)}")
    if "statistics" in data:
        data["statistics"] = tuple(Statistic.from_dict(s) for s in data["statistics"])
    return data
