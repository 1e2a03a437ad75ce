"""The GeoTIFF tag schema: every metadata tag name a grouputils GeoTIFF carries.

One module spells the names; the writer (:mod:`grouputils.core.raster.geotiff`),
the summary, the STAC catalogue and the mosaic reader ask it.

Dataset tags (``GROUPUTILS_*``)
    ``GROUPUTILS_TILE`` (``"Tile(x=…, y=…, z=…)"``), ``GROUPUTILS_TMS`` and the
    summary row of the tile (:data:`SUMMARY_FIELDS`, e.g. ``GROUPUTILS_KIND``,
    ``GROUPUTILS_N_ROWS``); ``GROUPUTILS_COPY_OF`` on a tile copied by the mosaic.
Band tags
    GDAL's statistics (:data:`BAND_STATISTICS`: ``STATISTICS_MINIMUM`` ...,
    ``STATISTICS_VALID_PERCENT``, and ``STATISTICS_SUM``, which GDAL does not
    define but reads as an ordinary tag), the statistic's rules
    (:data:`RULE_TAGS`: ``STATISTIC_WEIGHT_BY`` ...) and ``UNIT``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from grouputils.core.statistic import Statistic

__all__ = [
    "TAG_PREFIX",
    "TILE_TAG",
    "TMS_TAG",
    "KIND_TAG",
    "COPY_OF_TAG",
    "UNIT_TAG",
    "SUMMARY_FIELDS",
    "SUMMARY_BAND_FIELDS",
    "BAND_STATISTICS",
    "RULE_TAGS",
    "summary_tag",
    "statistic_rules",
    "dataset_tags",
    "band_tags",
    "read_summary",
    "read_band_statistics",
]

TAG_PREFIX = "GROUPUTILS_"
"""Prefix of grouputils' own dataset tags."""

TILE_TAG = f"{TAG_PREFIX}TILE"
TMS_TAG = f"{TAG_PREFIX}TMS"
KIND_TAG = f"{TAG_PREFIX}KIND"
COPY_OF_TAG = f"{TAG_PREFIX}COPY_OF"
UNIT_TAG = "UNIT"

#: Summary fields of a GeoTIFF (``GROUPUTILS_<FIELD>`` tags), in the summary's column order.
SUMMARY_FIELDS: tuple[str, ...] = (
    "kind",
    "n_rows",
    "n_counted",
    "n_duplicated",
    "n_children",
    "n_data_pixels",
)

#: GDAL's per-band statistics tags, by the short name STAC uses.
BAND_STATISTICS: dict[str, str] = {
    "minimum": "STATISTICS_MINIMUM",
    "maximum": "STATISTICS_MAXIMUM",
    "mean": "STATISTICS_MEAN",
    "stddev": "STATISTICS_STDDEV",
    "sum": "STATISTICS_SUM",
    "valid_percent": "STATISTICS_VALID_PERCENT",
}

#: Band statistics in the summary table: ``<statistic>_<short>`` column -> schema key.
SUMMARY_BAND_FIELDS: dict[str, str] = {
    "min": "minimum",
    "max": "maximum",
    "mean": "mean",
    "sum": "sum",
}

#: Tags holding a band's :class:`~grouputils.core.statistic.Statistic` rules, by field name.
RULE_TAGS: dict[str, str] = {
    "weight_by": "STATISTIC_WEIGHT_BY",
    "aggregate": "STATISTIC_AGGREGATE",
    "resampling": "STATISTIC_RESAMPLING",
}


def summary_tag(field: str) -> str:
    """Tag name of a summary field, e.g. ``'n_rows'`` -> ``'GROUPUTILS_N_ROWS'``."""
    return f"{TAG_PREFIX}{field.upper()}"


def statistic_rules(statistic: Statistic) -> dict[str, str]:
    """A statistic's rules by field (``weight_by`` ...), as its band's rule tags hold them."""
    return {f: str(getattr(statistic, f)) for f in RULE_TAGS}


def dataset_tags(tile_str: str, tms: str, summary: Mapping[str, Any] | None) -> dict[str, Any]:
    """The dataset tags of one tile: its name, its TMS and its summary fields."""
    tags: dict[str, Any] = {TILE_TAG: tile_str, TMS_TAG: tms}
    tags.update({summary_tag(k): v for k, v in (summary or {}).items()})
    return tags


def band_tags(band: np.ndarray, statistic: Statistic) -> dict[str, str]:
    """The tags of one band: its statistic's rules, unit and GDAL statistics over data pixels.

    Parameters
    ----------
    band : ndarray of float, shape (h, w)
        NaN where there is no data.
    statistic : Statistic
        The band's statistic.

    Returns
    -------
    dict of str
        Minimum, maximum, mean, standard deviation and sum are written only
        when the band has a data pixel (``repr`` of a float64, so they read
        back exactly); the valid percentage always.
    """
    ok = ~np.isnan(band)
    tags: dict[str, str] = {RULE_TAGS[f]: v for f, v in statistic_rules(statistic).items()}
    tags[BAND_STATISTICS["valid_percent"]] = f"{100.0 * ok.mean():.6g}"
    if statistic.unit:
        tags[UNIT_TAG] = statistic.unit
    if ok.any():
        v = band[ok].astype("f8")
        for key, value in (
            ("minimum", v.min()),
            ("maximum", v.max()),
            ("mean", v.mean()),
            ("stddev", v.std()),
            ("sum", v.sum()),
        ):
            tags[BAND_STATISTICS[key]] = repr(float(value))
    return tags


def read_summary(tags: Mapping[str, str]) -> dict[str, Any]:
    """The summary fields of a GeoTIFF's dataset tags (``kind`` a str, the rest int or None)."""
    out: dict[str, Any] = {}
    for field in SUMMARY_FIELDS:
        value = tags.get(summary_tag(field))
        out[field] = value if field == "kind" or value is None else int(value)
    return out


def read_band_statistics(tags: Mapping[str, str]) -> dict[str, float]:
    """The GDAL statistics present in a band's tags, by short name (``minimum``, ``sum`` ...)."""
    return {key: float(tags[tag]) for key, tag in BAND_STATISTICS.items() if tag in tags}
