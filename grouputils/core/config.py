"""The frozen, picklable, validated configuration shared by every pipeline step.

A :class:`Config` is built once (by :func:`grouputils.initialize_stager`, the
command line, or a TOML file) and passed explicitly to every step. It is a
frozen pydantic dataclass: every setting is checked when the config is made
(types, ranges, unknown keys, palettes, the CRS), before any work, and a bad
one raises :class:`~grouputils.core.errors.ConfigError` naming the key (and the
file, for TOML). It can be sent to Parsl workers and hashed into the
pipeline's manifest; nothing in grouputils keeps global settings.

The field descriptions are the one documentation of the settings: the class
docstrings, the JSON schema (``pydantic.TypeAdapter(Config).json_schema()``)
and the README's settings reference (:mod:`grouputils.settings_doc`) are made
from them.

Learners know the older ``config.get('dir_staged')`` style of access; it works
here too (see :meth:`Config.get`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar

import morecantile
from pydantic import (
    Field,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.dataclasses import dataclass

from grouputils.core.config_slurm import SlurmSettings, slurm_problems, slurm_settings
from grouputils.core.errors import ConfigError
from grouputils.core.layout import Layout
from grouputils.core.statistic import (
    DEFAULT_STATISTICS,
    FORBID,
    STATISTIC_NAME,
    FiniteFloat,
    Statistic,
    StrictInt,
)
from grouputils.core.validation import (
    document_fields,
    friendly_errors,
    join_problems,
    problems,
    unknown_keys_message,
)

__all__ = [
    "DEFAULT_STATISTICS",
    "STATISTIC_NAME",
    "Config",
    "SlurmSettings",
    "Statistic",
    "load_config_file",
    "slurm_settings",
]


@functools.lru_cache(maxsize=64)
def _crs_problem(text: str) -> str | None:
    import pyproj

    try:
        pyproj.CRS.from_user_input(text)
    except pyproj.exceptions.CRSError as e:
        return f"is not a CRS pyproj knows ({e})"
    return None


@document_fields
@dataclass(frozen=True, config=FORBID)
class Config:
    """Every setting of a pipeline run."""

    dir_input: Annotated[
        Path, Field(description="Folder of input GeoPackages (read only; never written).")
    ]
    dir_output: Annotated[Path, Field(description="Folder that receives every output.")] = Path(
        "group-project"
    )
    tms: Annotated[StrictStr, Field(description="A morecantile tile matrix set id.")] = (
        "WorldCRS84Quad"
    )
    z: Annotated[
        int,
        Field(
            description="Zoom level of staging and of the first rasterization (an integer the "
            "tile matrix set has)."
        ),
    ] = 13
    input_ext: Annotated[
        StrictStr, Field(description="File name ending of inputs, with its dot.")
    ] = ".gpkg"
    input_layer: Annotated[
        StrictStr,
        Field(
            description="Layer read from inputs that hold several layers; a file with a single "
            "layer is read whatever its layer is called."
        ),
    ] = "iwp"
    default_crs: Annotated[
        StrictStr, Field(description="CRS assumed (with a warning) for inputs that declare none.")
    ] = "EPSG:3413"
    simplify_tolerance: Annotated[
        FiniteFloat,
        Field(
            ge=0,
            description="Douglas-Peucker tolerance in metres, applied with topology preserved; 0 "
            "switches simplification off.",
        ),
    ] = 0.1
    chunk_size: Annotated[
        StrictInt,
        Field(
            ge=1,
            description="Inputs with more features are read and processed this many features at a "
            "time, which bounds peak memory; the output does not depend on it.",
        ),
    ] = 50_000
    dedup_overlap: Annotated[
        FiniteFloat,
        Field(
            gt=0,
            le=1,
            description="Two polygons from different input files are the same ground polygon when "
            "their intersection covers at least this fraction of the smaller one.",
        ),
    ] = 0.5
    statistics: Annotated[
        tuple[Statistic, ...],
        Field(
            description="The raster bands, in order ([[statistics]] tables in TOML; they replace "
            "the default two)."
        ),
    ] = DEFAULT_STATISTICS
    tile_size: Annotated[
        StrictInt, Field(ge=1, description="Width and height of every raster tile in pixels.")
    ] = 256
    max_workers: Annotated[
        StrictInt | None,
        Field(
            ge=1, description="An instructor's cap on workers; GROUPUTILS_MAX_WORKERS also caps."
        ),
    ] = None
    scratch_dir: Annotated[
        StrictStr | None,
        Field(
            description='Node-local folder (e.g. "$TMPDIR" or "/tmp", expanded on each worker) '
            "where every output is written first, then copied and renamed into the output folder. "
            "Outputs do not depend on it."
        ),
    ] = None
    scratch_inputs: Annotated[
        bool, Field(description="With scratch_dir, also read each input from a local copy.")
    ] = False
    extra: Annotated[
        tuple[tuple[str, Any], ...],
        Field(
            repr=False,
            description="Further (name, value) pairs that Config.get looks up; not used by "
            "grouputils.",
        ),
    ] = ()

    @field_validator("dir_input", "dir_output")
    @classmethod
    def _expand(cls, path: Path) -> Path:
        return path.expanduser()

    @field_validator("tms")
    @classmethod
    def _check_tms(cls, tms: str) -> str:
        if tms not in morecantile.tms.list():
            raise ValueError(
                f"{tms!r} is not a tile matrix set morecantile knows; "
                f"choose one of {sorted(morecantile.tms.list())}"
            )
        return tms

    @field_validator("z", mode="before")
    @classmethod
    def _check_z(cls, z: object, info: ValidationInfo) -> object:
        tms_id = info.data.get("tms")
        if tms_id is None:  # the tms is wrong already; say only what is wrong with z itself
            if not isinstance(z, int) or isinstance(z, bool):
                raise ValueError(f"must be an integer, got {z!r}")
            return z
        tms = morecantile.tms.get(tms_id)
        lo = max(0, tms.minzoom)
        if not isinstance(z, int) or isinstance(z, bool) or not lo <= z <= tms.maxzoom:
            raise ValueError(
                f"must be an integer from {lo} to {tms.maxzoom} for {tms_id!r}, got {z!r}"
            )
        if tms.matrix(z).variableMatrixWidths:
            raise ValueError(f"is a level of {tms_id!r} with variable matrix widths: not supported")
        return z

    @field_validator("input_ext")
    @classmethod
    def _check_ext(cls, ext: str) -> str:
        if not ext.startswith(".") or len(ext) < 2:
            raise ValueError(f"must start with '.', e.g. '.gpkg', got {ext!r}")
        return ext

    @field_validator("input_layer")
    @classmethod
    def _check_layer(cls, layer: str) -> str:
        if not layer:
            raise ValueError("must not be empty")
        return layer

    @field_validator("default_crs")
    @classmethod
    def _check_crs(cls, crs: str) -> str:
        problem = _crs_problem(crs)
        if problem:
            raise ValueError(problem)
        return crs

    @field_validator("statistics")
    @classmethod
    def _check_statistics(cls, stats: tuple[Statistic, ...]) -> tuple[Statistic, ...]:
        if not stats:
            raise ValueError("needs at least one statistic")
        names = [s.name for s in stats]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"must have unique names; named twice: {twice}")
        return stats

    # ------------------------------------------------------------------ paths
    @property
    def dir_staged(self) -> Path:
        """Final staged tiles: ``staged/<TMS>/<z>/<x>/<y>.gpkg``."""
        return Layout(self.dir_output, self.tms).staged

    @property
    def dir_staging_parts(self) -> Path:
        """Per-source pieces written by :meth:`TileStager.stage` before finalize."""
        return Layout(self.dir_output, self.tms).staging_parts

    @property
    def dir_geotiff(self) -> Path:
        """GeoTIFF pyramid: ``geotiff/<TMS>/<z>/<x>/<y>.tif``."""
        return Layout(self.dir_output, self.tms).geotiff

    @property
    def dir_web_tiles(self) -> Path:
        """PNG web tiles: ``web_tiles/<statistic>/<TMS>/<z>/<x>/<y>.png``."""
        return Layout(self.dir_output, self.tms).web_tiles

    @property
    def filename_staging_summary(self) -> Path:
        """CSV with one row per input file and tile."""
        return Layout(self.dir_output, self.tms).staging_summary

    @property
    def filename_rasterization_summary(self) -> Path:
        """CSV with one row per GeoTIFF tile written."""
        return Layout(self.dir_output, self.tms).raster_summary

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

    _ALIASES: ClassVar[dict[str, str]] = {
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
        if not key.startswith("_") and (key in _FIELD_NAMES or hasattr(type(self), key)):
            value = getattr(self, key)
            if not callable(value):
                return value
        extra = dict(self.extra)
        if key in extra:
            return extra[key]
        raise KeyError(f"unknown config key {key!r}")

    def replace(self, **changes: Any) -> Config:
        """A copy with some settings changed and checked (the config itself is frozen)."""
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


friendly_errors(Config, nested={"[[statistics]]": Statistic})
_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Config))

#: Settings a config file may hold at its top level (``extra`` is for Python callers only).
FILE_SETTINGS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(Config) if f.name != "extra"
)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read and check the settings of a TOML file, before any work.

    Top-level keys are :class:`Config` fields; ``[[statistics]]`` tables
    declare statistics; a ``[slurm]`` table (used by ``grouputils run
    --executor slurm``) holds the arguments of
    :func:`grouputils.run.parallel.slurm_config` and is returned under the key
    ``'slurm'``. Every setting is checked here (types, ranges, unknown or
    misspelt keys, palettes, the CRS, statistic names), so a mistake is found
    before anything runs.

    Parameters
    ----------
    path : str or Path
        The TOML file.

    Returns
    -------
    dict
        Keyword arguments for :class:`Config` (``statistics`` as
        :class:`Statistic` objects), plus ``'slurm'`` (a dict of the keys the
        file sets) if the file has that table.

    Raises
    ------
    ConfigError
        The file is missing, is not TOML, or a setting is wrong; the message
        names the file and every key at fault.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: config file not found") from e
    except IsADirectoryError as e:
        raise ConfigError(f"{path}: is a folder, not a config file") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from e
    slurm = data.pop("slurm", None)
    known = {
        "": [*FILE_SETTINGS, "slurm"],
        "[[statistics]]": [f.name for f in dataclasses.fields(Statistic)],
    }
    lines: list[str] = []
    if "extra" in data:  # a Config field for Python callers, not a setting of a file
        del data["extra"]
        lines.append(unknown_keys_message("", ["extra"], known[""]))
    raw = {"dir_input": Path("."), **data}
    # pydantic's own __init__, so that the errors are worded with the file's name
    init = Config.__init__.__wrapped__  # type: ignore[attr-defined]
    checked = object.__new__(Config)
    try:
        init(checked, **raw)
    except ValidationError as e:
        lines += problems(e, raw=raw, known=known)
    slurm_kwargs, slurm_lines = slurm_problems(slurm) if slurm is not None else ({}, [])
    lines += slurm_lines
    if lines:
        raise join_problems(path, lines)
    out: dict[str, Any] = {key: getattr(checked, key) for key in data}
    if slurm is not None:
        out["slurm"] = slurm_kwargs
    return out
