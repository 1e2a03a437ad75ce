"""Colour GeoTIFF bands into PNG web tiles, and draw a legend per statistic.

Web tiles are ``web_tiles/<statistic>/<TMS>/<z>/<x>/<y>.png``: 256x256 RGBA
(the config's ``tile_size``), fully transparent where the band is nodata
(NaN), otherwise opaque and coloured by the statistic's palette.

Colour scale
------------
The scale is *fixed per statistic*, not computed from the data: a value
``v`` at zoom ``z`` is placed on the palette by its position in
:func:`level_range` ``(statistic, z, z_max)``, which is the statistic's
``value_range`` at the top zoom ``z_max``, multiplied by ``4 ** (z_max - z)``
for ``resampling='sum'`` statistics (a parent pixel adds four children, so one
colour means one density per unit area at every zoom) and unchanged for
``resampling='mean'`` ones. Values beyond the range take the end colours.
Because no pass over the data is needed, any subset of tiles can be coloured
in any process and the colours still agree across a zoom level (and across
runs and datasets).

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
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from grouputils.core.atomic import atomic_path
from grouputils.core.config import Statistic
from grouputils.core.errors import ConfigError
from grouputils.core.scratch import output_path

__all__ = [
    "PNG_COMPRESS_LEVEL",
    "get_colormap",
    "palette_lut",
    "level_range",
    "colorize",
    "encode_png",
    "write_webtile",
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


def level_range(statistic: Statistic, z: int, z_max: int) -> tuple[float, float]:
    """Values at the two ends of the palette for tiles of zoom ``z``.

    Parameters
    ----------
    statistic : Statistic
        Supplies ``value_range`` (at ``z_max``) and ``resampling``.
    z : int
        Zoom level of the tile.
    z_max : int
        The top zoom level (``config.z``), where ``value_range`` applies as is.

    Returns
    -------
    tuple of float
        ``value_range * 4 ** (z_max - z)`` for ``resampling='sum'``, else ``value_range``.
    """
    lo, hi = statistic.value_range
    if statistic.resampling == "sum":
        factor = 4.0 ** (z_max - z)
        return lo * factor, hi * factor
    return lo, hi


def _lut32(lut: np.ndarray) -> np.ndarray:
    """The ``(256, 4)`` RGBA table as 257 ``uint32`` colours, the last one transparent (NaN)."""
    table = np.zeros((257, 4), dtype="u1")
    table[:256] = lut
    return table.view("<u4").ravel()


def colorize(
    values: np.ndarray, statistic: Statistic, z: int, z_max: int, lut: np.ndarray | None = None
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

    Returns
    -------
    ndarray of uint8, shape (h, w, 4)
        RGBA; ``(0, 0, 0, 0)`` where ``values`` is NaN.

    Notes
    -----
    A value's colour index is ``rint(clip((v - lo) / (hi - lo), 0, 1) * 255)``
    computed in float64.
    """
    lo, hi = level_range(statistic, z, z_max)
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

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    data = encode_png(colorize(values, statistic, z, z_max, lut), compress_level)
    with output_path(path, scratch_dir) as tmp:
        tmp.write_bytes(data)
    return path


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
        label += "; x4 per zoom level out"
    bar.set_label(label, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.set_title(statistic.description or statistic.name, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, transparent=False, facecolor="white")
    return path
