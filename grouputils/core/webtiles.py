"""Colour GeoTIFF bands into PNG web tiles, and draw a legend per statistic.

Web tiles are ``web_tiles/<statistic>/<TMS>/<z>/<x>/<y>.png``: 256x256 RGBA
(the config's ``tile_size``), fully transparent where the band is nodata
(NaN), otherwise opaque and coloured by the statistic's palette.

Colour scale
------------
A value ``v`` in a tile of zoom ``z`` is placed on the palette by its position
in :func:`level_range` ``(statistic, z, z_max)`` (values beyond it take the
end colours). At the top zoom ``z_max`` (``config.z``), and at every zoom for
``resampling='mean'`` statistics, that is the statistic's ``value_range``
``(lo, hi)`` exactly. A ``resampling='sum'`` statistic grows from zoom to zoom
(a parent pixel adds four children), and how much depends on the data: a
zoom-10 pixel adds 64 zoom-13 pixels, but sparse detections fill few of them.
Its range at ``z < z_max`` is therefore fitted to the zoom level
(:func:`zoom_ranges`)::

    lo_z = lo
    hi_z = clip(max_z, hi, hi * 4 ** (z_max - z))

where ``max_z`` is the band's maximum over the zoom level's GeoTIFFs (``hi``
when the level has no data pixel). The upper bound is the fixed scale of
"every child full"; the lower bound keeps a level from being stretched beyond
what ``value_range`` already shows at ``z_max``. The rule is deterministic
(the same tiles give the same ranges, whichever process colours them) and
needs one pass over per-tile statistics that are already recorded, never a
pixel re-read: each GeoTIFF carries its band maxima as tags
(:mod:`grouputils.core.raster.tags`) and the pipeline's run state holds the
same numbers (``<statistic>_max`` in each GeoTIFF row's ``info``). The ranges
are one value per run (:data:`ColourRanges`), handed to every web-tile task as
plain floats and written to ``web_tiles/colour-ranges.json``
(:func:`write_colour_ranges`), which the map page's legend reads back, so the
page shows the ranges the tiles were coloured with. Without ranges (code
colouring a subset of tiles on its own), :func:`level_range` falls back to the
fixed scale ``value_range * 4 ** (z_max - z)``, which needs no data at all.
The z_max legend (``legend.png``) is the same under both.

Palettes are Matplotlib colormaps looked up with ``matplotlib.colormaps[name]``
or built from a tuple of colours; nothing touches Matplotlib's global state
(no pyplot, no rcParams). Matplotlib is used once per run, for the legends and
to sample each palette into a 256-colour table (:func:`palette_lut`); colouring
a tile (:func:`colorize`) is then a NumPy table look-up, so a worker handed the
tables never imports Matplotlib. PNGs are encoded by :func:`encode_png`
(RGBA, 8 bits, no row filter, zlib level :data:`PNG_COMPRESS_LEVEL`) and
written atomically.

Speed (one 256x256 band, this 2-core machine, ``benchmarks/bench_speed.py``)
---------------------------------------------------------------------------
Colouring took ~7 ms with a ``(256, 4)`` fancy index and a boolean mask over
the RGBA image; looking colours up as one ``uint32`` per pixel in a 257-entry
table (the last entry transparent, for NaN) takes well under 1 ms and gives
the same pixels. Pillow's PNG encoder took 5.7 ms per real tile at its
level 6 (21.6 kB) and 3.4 ms at level 1 (24.2 kB): it picks a row filter for
every row, which these flat, palette-like images do not profit from. One
``zlib.compress`` of the unfiltered rows at level 1 takes 1.1 ms and gives
14.7 kB; Pillow decodes the same pixels (``tests/test_webtiles.py``).
"""

from __future__ import annotations

import functools
import json
import math
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from grouputils.core.atomic import atomic_path, write_json_atomic
from grouputils.core.config import Statistic
from grouputils.core.errors import ConfigError
from grouputils.core.scratch import output_path

__all__ = [
    "PNG_COMPRESS_LEVEL",
    "get_colormap",
    "palette_lut",
    "ZoomRanges",
    "ColourRanges",
    "zoom_ranges",
    "level_range",
    "write_colour_ranges",
    "read_colour_ranges",
    "colorize",
    "encode_png",
    "write_webtile",
    "LEGEND_VERSION",
    "write_legend",
]


PNG_COMPRESS_LEVEL = 1
"""zlib level of the web tiles' PNGs (0-9): 1 is fast; higher levels only make smaller files."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def get_colormap(statistic: Statistic) -> Any:
    """The Matplotlib colormap of a statistic's palette.

    Parameters
    ----------
    statistic : Statistic
        Its ``palette`` is a colormap name (``'viridis'``) or a tuple of colours.

    Returns
    -------
    matplotlib.colors.Colormap

    Raises
    ------
    ConfigError
        Unknown colormap name or invalid colour.
    """
    import matplotlib
    from matplotlib.colors import LinearSegmentedColormap

    palette = statistic.palette
    if isinstance(palette, str):
        try:
            return matplotlib.colormaps[palette]
        except KeyError:
            raise ConfigError(
                f"statistic {statistic.name!r}: unknown palette {palette!r} "
                "(a Matplotlib colormap name)"
            ) from None
    try:
        return LinearSegmentedColormap.from_list(statistic.name, list(palette))
    except ValueError as e:
        raise ConfigError(
            f"statistic {statistic.name!r}: invalid palette colours {palette!r} ({e})"
        ) from None


@functools.lru_cache(maxsize=64)
def palette_lut(statistic: Statistic) -> np.ndarray:
    """256 RGBA colours sampling the statistic's palette from its low to its high end.

    Returns
    -------
    ndarray of uint8, shape (256, 4)
        Opaque colours (alpha 255).
    """
    lut = np.asarray(get_colormap(statistic)(np.linspace(0.0, 1.0, 256), bytes=True), dtype="u1")
    lut[:, 3] = 255
    lut.setflags(write=False)
    return lut


ZoomRanges = dict[int, tuple[float, float]]
"""One statistic's colour range ``(lo, hi)`` per zoom level (``0 .. z_max``)."""

ColourRanges = dict[str, ZoomRanges]
"""A run's colour ranges: :data:`ZoomRanges` by statistic name."""


def zoom_ranges(
    statistic: Statistic, maxima_by_zoom: Mapping[int, float | None], z_max: int
) -> ZoomRanges:
    """The colour range of every zoom level, fitted to the data (the module's rule).

    Parameters
    ----------
    statistic : Statistic
        Supplies ``value_range`` (at ``z_max``) and ``resampling``.
    maxima_by_zoom : mapping of int to float or None
        The band's maximum over the GeoTIFFs of each zoom level (over data
        pixels); a zoom left out, None or NaN has no data pixel.
    z_max : int
        The top zoom level (``config.z``).

    Returns
    -------
    dict of int to tuple of float
        For every zoom ``0 .. z_max``: ``value_range`` at ``z_max`` and for
        ``resampling='mean'``; else ``(lo, clip(max_z, hi, hi * 4 ** (z_max - z)))``.

    Examples
    --------
    >>> from grouputils.core.statistic import Statistic
    >>> count = Statistic("n", weight_by="count", resampling="sum", value_range=(0, 2))
    >>> r = zoom_ranges(count, {13: 2.0, 12: 5.0, 11: 1.0, 10: 500.0}, 13)
    >>> r[13], r[12], r[11], r[10], r[9]
    ((0.0, 2.0), (0.0, 5.0), (0.0, 2.0), (0.0, 128.0), (0.0, 2.0))
    """
    lo, hi = (float(v) for v in statistic.value_range)
    out: ZoomRanges = {}
    for z in range(z_max + 1):
        top = maxima_by_zoom.get(z)
        if statistic.resampling != "sum" or z == z_max or top is None or math.isnan(top):
            out[z] = (lo, hi)
        else:
            out[z] = (lo, min(max(float(top), hi), hi * 4.0 ** (z_max - z)))
    return out


def level_range(
    statistic: Statistic,
    z: int,
    z_max: int,
    ranges: Mapping[int, tuple[float, float]] | None = None,
) -> tuple[float, float]:
    """Values at the two ends of the palette for tiles of zoom ``z``.

    Parameters
    ----------
    statistic : Statistic
        Supplies ``value_range`` (at ``z_max``) and ``resampling``.
    z : int
        Zoom level of the tile.
    z_max : int
        The top zoom level (``config.z``), where ``value_range`` applies as is.
    ranges : mapping of int to (float, float), optional
        The statistic's :func:`zoom_ranges` for the run; when given, its entry for ``z``.

    Returns
    -------
    tuple of float
        ``ranges[z]`` when ranges are given; else the fixed scale
        ``value_range * 4 ** (z_max - z)`` for ``resampling='sum'`` and
        ``value_range`` otherwise.

    Raises
    ------
    KeyError
        ``ranges`` has no entry for ``z``.
    """
    if ranges is not None:
        lo_z, hi_z = ranges[z]
        return float(lo_z), float(hi_z)
    lo, hi = statistic.value_range
    if statistic.resampling == "sum":
        factor = 4.0 ** (z_max - z)
        return lo * factor, hi * factor
    return lo, hi


def write_colour_ranges(path: str | Path, ranges: ColourRanges, z_max: int) -> Path:
    """Write a run's colour ranges as JSON, atomically (read back by :func:`read_colour_ranges`).

    Parameters
    ----------
    path : str or Path
        Destination, ``Layout.colour_ranges`` (``web_tiles/colour-ranges.json``).
    ranges : ColourRanges
        Every statistic's range for every zoom ``0 .. z_max``.
    z_max : int
        The top zoom level.

    Returns
    -------
    Path
        ``path``; the file is ``{"z_max": 13, "ranges": {"<statistic>": [[lo, hi], ...]}}``
        with one ``[lo, hi]`` per zoom, index = zoom.
    """
    data = {
        "z_max": z_max,
        "ranges": {
            name: [list(by_zoom[z]) for z in range(z_max + 1)] for name, by_zoom in ranges.items()
        },
    }
    return write_json_atomic(path, data)


def read_colour_ranges(path: str | Path) -> ColourRanges | None:
    """The colour ranges :func:`write_colour_ranges` wrote, or None when there is no file.

    Parameters
    ----------
    path : str or Path
        The JSON file.

    Returns
    -------
    ColourRanges or None
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return {
        name: {z: (float(lo), float(hi)) for z, (lo, hi) in enumerate(by_zoom)}
        for name, by_zoom in data["ranges"].items()
    }


def _lut32(lut: np.ndarray) -> np.ndarray:
    """The ``(256, 4)`` RGBA table as 257 ``uint32`` colours, the last one transparent (NaN)."""
    table = np.zeros((257, 4), dtype="u1")
    table[:256] = lut
    return table.view("<u4").ravel()


def colorize(
    values: np.ndarray,
    statistic: Statistic,
    z: int,
    z_max: int,
    lut: np.ndarray | None = None,
    ranges: Mapping[int, tuple[float, float]] | None = None,
) -> np.ndarray:
    """Colour one band.

    Parameters
    ----------
    values : ndarray of float, shape (h, w)
        The band, NaN where there is no data.
    statistic : Statistic
        Palette and value range.
    z, z_max : int
        The tile's zoom and the top zoom (see :func:`level_range`).
    lut : ndarray of uint8, shape (256, 4), optional
        The statistic's :func:`palette_lut`, when the caller holds it (no Matplotlib here then).
    ranges : mapping of int to (float, float), optional
        The statistic's :func:`zoom_ranges`; default the fixed scale (:func:`level_range`).

    Returns
    -------
    ndarray of uint8, shape (h, w, 4)
        RGBA; ``(0, 0, 0, 0)`` where ``values`` is NaN.

    Notes
    -----
    A value's colour index is ``rint(clip((v - lo) / (hi - lo), 0, 1) * 255)``
    computed in float64.
    """
    lo, hi = level_range(statistic, z, z_max, ranges)
    v = np.array(values, dtype="f8")  # a copy, scaled in place
    nodata = np.isnan(v)
    np.subtract(v, lo, out=v)
    np.divide(v, hi - lo, out=v)
    np.clip(v, 0.0, 1.0, out=v)
    np.multiply(v, 255.0, out=v)
    np.rint(v, out=v)
    v[nodata] = 256.0
    table = _lut32(palette_lut(statistic) if lut is None else lut)
    rgba32 = table[v.astype("i2")]
    return rgba32.view("u1").reshape(*v.shape, 4)


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(rgba: np.ndarray, compress_level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """PNG bytes of an RGBA image.

    Parameters
    ----------
    rgba : ndarray of uint8, shape (h, w, 4)
        The image, row 0 at the top.
    compress_level : int
        zlib level (0-9) of the image data.

    Returns
    -------
    bytes
        A PNG (colour type 6, 8 bits per channel, not interlaced): the rows,
        each with filter type 0 (none), compressed as one zlib stream in one
        ``IDAT`` chunk (PNG specification, sections 11.2 and 12.8).
    """
    rgba = np.ascontiguousarray(rgba, dtype="u1")
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"expected an (h, w, 4) RGBA image, got shape {rgba.shape}")
    h, w, _ = rgba.shape
    rows = np.zeros((h, 4 * w + 1), dtype="u1")  # column 0: the row's filter type (0)
    rows[:, 1:] = rgba.reshape(h, 4 * w)
    header = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    return b"".join(
        (
            _PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows.tobytes(), compress_level)),
            _chunk(b"IEND", b""),
        )
    )


def write_webtile(
    path: str | Path,
    values: np.ndarray,
    statistic: Statistic,
    z: int,
    z_max: int,
    *,
    scratch_dir: str | None = None,
    lut: np.ndarray | None = None,
    compress_level: int = PNG_COMPRESS_LEVEL,
    ranges: Mapping[int, tuple[float, float]] | None = None,
) -> Path:
    """Colour a band and write it as a PNG, atomically.

    Parameters
    ----------
    path : str or Path
        Destination ``.png``.
    values : ndarray of float, shape (h, w)
        The band (NaN = transparent).
    statistic : Statistic
        Palette and value range.
    z, z_max : int
        The tile's zoom and the top zoom.
    scratch_dir : str, optional
        Write on this node-local folder first (:func:`grouputils.core.scratch.output_path`).
    lut : ndarray of uint8, shape (256, 4), optional
        The statistic's :func:`palette_lut` (looked up, with Matplotlib, when not given).
    compress_level : int
        zlib level of the PNG (0-9); only the file size and the time change, never the pixels.
    ranges : mapping of int to (float, float), optional
        The statistic's :func:`zoom_ranges`; default the fixed scale (:func:`level_range`).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    data = encode_png(colorize(values, statistic, z, z_max, lut, ranges), compress_level)
    with output_path(path, scratch_dir) as tmp:
        tmp.write_bytes(data)
    return path


LEGEND_VERSION = 2
"""Bumped when :func:`write_legend` draws differently (the pipeline redraws old legends)."""


def write_legend(path: str | Path, statistic: Statistic, z_max: int, dpi: int = 100) -> Path:
    """Draw a colour bar for a statistic and save it as a PNG, atomically.

    Parameters
    ----------
    path : str or Path
        Destination, e.g. ``web_tiles/<statistic>/legend.png``.
    statistic : Statistic
        Palette, value range, description and unit.
    z_max : int
        The top zoom, where ``value_range`` applies.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    Uses a :class:`matplotlib.figure.Figure` and the Agg canvas directly, not
    pyplot, so no global Matplotlib state is created or changed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    path = Path(path)
    lo, hi = statistic.value_range
    fig = Figure(figsize=(4.2, 1.25), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    mappable = ScalarMappable(norm=Normalize(lo, hi), cmap=get_colormap(statistic))
    # Coverage cannot exceed its range; other statistics take the top colour beyond it.
    extend = "neither" if statistic.weight_by == "coverage" else "max"
    bar = fig.colorbar(mappable, cax=ax, orientation="horizontal", extend=extend)
    unit = f" ({statistic.unit})" if statistic.unit else ""
    label = f"per pixel at zoom {z_max}{unit}"
    if statistic.resampling == "sum":
        label += "; pixels add up when zoomed out"  # by how much: the map's legend per zoom
    bar.set_label(label, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.set_title(statistic.description or statistic.name, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, transparent=False, facecolor="white")
    return path
