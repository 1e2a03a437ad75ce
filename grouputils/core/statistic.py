"""A raster statistic, declared as data: the ``[[statistics]]`` tables of a config file.

:class:`Statistic` is a frozen pydantic dataclass (see :mod:`grouputils.core.config`):
its name, rules, palette and value range are checked when it is declared, and
a bad one raises :class:`~grouputils.core.errors.ConfigError` naming it and the key.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictStr, field_validator, model_validator
from pydantic.dataclasses import dataclass

from grouputils.core.validation import document_fields, friendly_errors

__all__ = [
    "DEFAULT_STATISTICS",
    "FORBID",
    "STATISTIC_NAME",
    "Aggregate",
    "FiniteFloat",
    "Resampling",
    "Statistic",
    "StrictInt",
    "WeightBy",
]

WeightBy = Literal["count", "coverage", "attribute"]
Aggregate = Literal["sum", "mean", "max", "min"]
Resampling = Literal["sum", "mean"]
FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
StrictInt = Annotated[int, Field(strict=True)]

#: What a statistic name may hold: it becomes a folder name (``web_tiles/<name>/``) and a band name.
STATISTIC_NAME = r"^[A-Za-z0-9_-]{1,64}$"
#: Model configuration of every settings table: an unknown key is an error.
FORBID = ConfigDict(extra="forbid")


#: Matplotlib colormaps present in every Matplotlib this package supports (>= 3.5): known
#: without importing Matplotlib (1.7 s), so declaring the default statistics, and a
#: worker process unpickling them, does not import it.
_BUILTIN_PALETTES = frozenset(
    f"{name}{suffix}"
    for name in ("viridis", "magma", "plasma", "inferno", "cividis", "Greys", "Blues", "Reds")
    for suffix in ("", "_r")
)


@functools.lru_cache(maxsize=256)
def _palette_problem(palette: str | tuple[str, ...]) -> str | None:
    if isinstance(palette, str) and palette in _BUILTIN_PALETTES:
        return None
    import matplotlib
    from matplotlib.colors import is_color_like

    if isinstance(palette, str):
        if palette in matplotlib.colormaps:
            return None
        close = [n for n in matplotlib.colormaps if n.lower() == palette.lower()]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{palette!r} is not a Matplotlib colormap name{hint}"
    if not palette:
        return "needs at least one colour"
    bad = [c for c in palette if not is_color_like(c)]
    return f"has colours Matplotlib does not know: {bad}" if bad else None


@document_fields
@dataclass(frozen=True, config=FORBID)
class Statistic:
    """A raster statistic, declared as data (no code, no lambdas)."""

    name: Annotated[
        StrictStr,
        Field(
            description="Band name in the GeoTIFFs and folder name of its web tiles: 1 to 64 "
            "letters, digits, '_' or '-'.",
            json_schema_extra={"pattern": STATISTIC_NAME},
        ),
    ]
    weight_by: Annotated[
        WeightBy,
        Field(
            description="What each polygon contributes to a pixel: 'count' adds 1 at the pixel "
            "holding its centroid; 'coverage' is the fraction of the pixel's area "
            "covered by the union of the polygons (0..1); 'attribute' takes the "
            "numeric input column named by attribute at the pixel holding the "
            "centroid."
        ),
    ]
    aggregate: Annotated[
        Aggregate,
        Field(
            description="How several polygons' values combine within one pixel (ignored for "
            "'coverage', which is always the union's fraction)."
        ),
    ] = "sum"
    resampling: Annotated[
        Resampling,
        Field(
            description="How four child pixels combine into one parent pixel in the pyramid: "
            "'sum' for counts, 'mean' for proportions and averages."
        ),
    ] = "sum"
    palette: Annotated[
        StrictStr | tuple[StrictStr, ...],
        Field(description="A Matplotlib colormap name, or a list of colours ('#rrggbb')."),
    ] = "viridis"
    value_range: Annotated[
        tuple[FiniteFloat, FiniteFloat],
        Field(
            description="Values mapped to the ends of the palette at the highest zoom level, low "
            "first. For resampling 'sum' the top at each lower zoom level is that level's "
            "largest value, kept between this top and 4 times it per level up the pyramid "
            "(pixels add up), so the colours fit the data at every zoom level."
        ),
    ] = (0.0, 1.0)
    attribute: Annotated[
        StrictStr | None,
        Field(
            description="The numeric input column read when weight_by is 'attribute'; every input "
            "must have it."
        ),
    ] = None
    description: Annotated[
        StrictStr, Field(description="Words for legends, band metadata and the STAC catalogue.")
    ] = ""
    unit: Annotated[StrictStr, Field(description="Unit of the values, for legends.")] = ""

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not re.fullmatch(STATISTIC_NAME, name):
            raise ValueError(
                "must be 1 to 64 letters, digits, '_' or '-' (it becomes a folder name and a "
                f"band name), got {name!r}"
            )
        return name

    @field_validator("palette")
    @classmethod
    def _check_palette(cls, palette: str | tuple[str, ...]) -> str | tuple[str, ...]:
        problem = _palette_problem(palette)
        if problem:
            raise ValueError(problem)
        return palette

    @model_validator(mode="after")
    def _check_rules(self) -> Statistic:
        if self.weight_by == "attribute" and not self.attribute:
            raise ValueError("weight_by = 'attribute' needs attribute = '<input column>'")
        lo, hi = self.value_range
        if not hi > lo:
            raise ValueError(f"value_range must rise (low, high), got {list(self.value_range)}")
        return self

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Statistic:
        """Build a statistic from a plain mapping (TOML/JSON)."""
        return cls(**d)


friendly_errors(Statistic)

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
