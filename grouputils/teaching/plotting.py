"""Figures for the notebooks: staged tiles, GeoTIFF statistics, resource timelines, sweeps.

Every function draws on the Axes it is given (or on a new figure) and returns
the Axes. Nothing here changes global Matplotlib state: no ``rcParams``, no
style sheets, no ``plt.gca()``. A new figure, when no Axes is passed, is made
with :func:`matplotlib.pyplot.subplots` so that Jupyter displays it.
"""

from __future__ import annotations

import math
import socket
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from grouputils.core.errors import ConfigError, GroupUtilsWarning, InputError
from grouputils.run.monitor_plot import new_axes as _new_axes
from grouputils.run.monitor_plot import plot_profile

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from grouputils.teaching.sweeps import SweepResult

__all__ = ["plot_tiles", "plot_profile", "plot_sweep", "tile_palette", "BasemapWarning"]

STAGED_LAYER = "staged"


class BasemapWarning(GroupUtilsWarning):
    """The basemap could not be drawn (offline, or the tile server failed); the plot has none."""


def tile_palette(n: int, seed: int = 0) -> list[tuple[float, float, float, float]]:
    """``n`` RGBA colours for tile outlines: Matplotlib's ``tab20`` in a seeded order.

    The same ``seed`` always gives the same colours, so a tile keeps its colour
    between runs; neighbouring tiles (consecutive in the sorted listing) get
    visibly different colours. The palette repeats after 20 colours.

    Parameters
    ----------
    n : int
        Number of colours.
    seed : int
        Seed of the order.

    Returns
    -------
    list of tuple
        RGBA tuples with components in 0..1.
    """
    import matplotlib
    from matplotlib.colors import ListedColormap

    cmap = matplotlib.colormaps["tab20"]
    assert isinstance(cmap, ListedColormap)  # tab20 is a list of 20 colours
    base = np.asarray(cmap.colors, dtype=float)[:, :3]
    order = np.random.default_rng(seed).permutation(len(base))
    out: list[tuple[float, float, float, float]] = []
    for i in range(n):
        r, g, b = (float(v) for v in base[order[i % len(base)]])
        out.append((r, g, b, 1.0))
    return out


def _tms_crs(obj: Any) -> Any:
    import pyproj

    return pyproj.CRS.from_user_input(obj.tiles.tms.crs.to_wkt())


def _reachable(url: str, timeout_s: float) -> bool:
    """Whether the host of ``url`` accepts a TCP connection within ``timeout_s`` (DNS included)."""
    parsed = urlparse(url.replace("{s}", "a"))
    host = parsed.hostname
    if not host:
        return False
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    ok: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                ok.append(True)
        except OSError:
            ok.append(False)

    # a thread bounds the DNS lookup too, which socket timeouts do not cover
    t = threading.Thread(target=probe, daemon=True, name="grouputils-basemap-probe")
    t.start()
    t.join(timeout_s)
    return bool(ok and ok[0])


def _add_basemap(ax: Axes, crs: Any, source: Any, timeout_s: float) -> bool:
    try:
        import contextily as cx
    except ImportError:
        warnings.warn("basemap skipped: contextily is not installed", BasemapWarning, stacklevel=3)
        return False
    source = source if source is not None else cx.providers.OpenStreetMap.Mapnik
    url = source if isinstance(source, str) else source.build_url()
    if not _reachable(url, timeout_s):
        warnings.warn(
            f"basemap skipped: {urlparse(url).hostname} is not reachable within {timeout_s:g} s "
            "(offline?); plotting without it",
            BasemapWarning,
            stacklevel=3,
        )
        return False
    try:
        cx.add_basemap(
            ax, crs=crs.to_string(), source=source, timeout=(timeout_s, 5 * timeout_s), zorder=0
        )
    except Exception as e:  # any network or tile-server failure: warn, keep the plot
        warnings.warn(f"basemap skipped: {type(e).__name__}: {e}", BasemapWarning, stacklevel=3)
        return False
    return True


def _statistic_style(
    obj: Any, name: str, values: list[np.ma.MaskedArray]
) -> tuple[Any, float, float, str]:
    import matplotlib
    from matplotlib.colors import LinearSegmentedColormap

    try:
        stat = obj.config.statistic(name)
    except (ConfigError, AttributeError):
        stat = None
    if stat is not None:
        pal = stat.palette
        cmap = (
            matplotlib.colormaps[pal]
            if isinstance(pal, str)
            else LinearSegmentedColormap.from_list(name, list(pal))
        )
        lo, hi = stat.value_range
        label = f"{name} ({stat.unit})" if stat.unit else name
        return cmap, lo, hi, label
    finite = [v.compressed() for v in values if v.count()]
    data = np.concatenate(finite) if finite else np.array([0.0, 1.0])
    return matplotlib.colormaps["viridis"], float(data.min()), float(data.max()), name


def plot_tiles(
    stager_or_rasterizer: Any,
    n: int | None = None,
    ax: Axes | None = None,
    basemap: bool = False,
    polygons: bool = False,
    statistic: str | None = None,
    *,
    seed: int = 0,
    alpha: float = 0.35,
    basemap_source: Any = None,
    basemap_timeout_s: float = 1.5,
) -> Axes:
    """Draw the staged tiles as coloured outlines, optionally their polygons or a GeoTIFF statistic.

    Parameters
    ----------
    stager_or_rasterizer : TileStager or RasterTiler
        Anything with ``.config`` (a :class:`~grouputils.Config`) and
        ``.tiles`` (a :class:`~grouputils.Tiles`).
    n : int, optional
        Draw only the first ``n`` tiles in sorted order (z, x, y); default all.
    ax : matplotlib Axes, optional
        Where to draw; default a new figure.
    basemap : bool
        Add an OpenStreetMap basemap with contextily. Off by default. Needs the
        internet: if the tile server cannot be reached within
        ``basemap_timeout_s`` a :class:`BasemapWarning` is issued and the plot
        is drawn without it.
    polygons : bool
        Also draw the staged polygons of each drawn tile (read from the
        ``staged`` layer of its staged GeoPackage), filled in the tile's colour.
    statistic : str, optional
        Draw this band of the GeoTIFFs at the configured zoom level instead of
        the staged tiles (e.g. ``'number_IWP_per_pixel'``), with the
        statistic's palette and value range and a colour bar.
    seed : int
        Seed of the outline colours (see :func:`tile_palette`).
    alpha : float
        Opacity of polygon fills.
    basemap_source : contextily provider or URL, optional
        Basemap tiles; default OpenStreetMap.
    basemap_timeout_s : float
        Seconds allowed to reach the basemap server.

    Returns
    -------
    matplotlib.axes.Axes
        Its title says exactly how many tiles are drawn out of how many exist.
        Coordinates are those of the tile matrix set's CRS (longitude and
        latitude in degrees for ``WorldCRS84Quad``).

    Raises
    ------
    ValueError
        If ``n`` is not a non-negative integer.
    InputError
        If a GeoTIFF has no band called ``statistic``.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise ValueError(f"n must be a non-negative integer or None, got {n!r}")
    obj = stager_or_rasterizer
    tiles_api, config = obj.tiles, obj.config
    if statistic is None:
        files = list(tiles_api.get_filenames_from_dir("staged"))
        what = "staged tiles"
    else:
        files = list(tiles_api.get_filenames_from_dir("geotiff", z=config.z))
        what = f"GeoTIFF tiles at z={config.z}"
    drawn = files if n is None else files[:n]
    if ax is None:
        ax = _new_axes(figsize=(7, 6))[0]
    crs = _tms_crs(obj)
    colours = tile_palette(len(drawn), seed=seed)
    boxes = [tiles_api.bounds(tiles_api.tile_from_path(p)) for p in drawn]
    if statistic is not None:
        _draw_statistic(ax, obj, drawn, statistic)
    if polygons:
        _draw_polygons(ax, tiles_api, drawn, colours, crs, alpha, staged=statistic is None)
    _draw_outlines(ax, boxes, colours, crs)
    if boxes and basemap:
        _add_basemap(ax, crs, basemap_source, basemap_timeout_s)
    unit = "degrees" if crs.is_geographic else "metres"
    ax.set_xlabel(f"x ({crs.name}, {unit})")
    ax.set_ylabel("y")
    title = f"{len(drawn)} of {len(files)} {what}"
    if statistic is not None:
        title = f"{statistic}: {title}"
    if polygons:
        title += " with their polygons"
    if not files:
        title += f" (none found under {config.dir_output})"
    ax.set_title(title)
    return ax


def _draw_statistic(ax: Axes, obj: Any, drawn: list[Path], statistic: str) -> None:
    """One band of each GeoTIFF as an image, with the statistic's style and a colour bar."""
    import rasterio

    images = []
    for p in drawn:
        with rasterio.open(p) as src:
            names = list(src.descriptions)
            if statistic not in names:
                raise InputError(p, f"has no band named {statistic!r}; its bands are {names}")
            images.append((src.read(names.index(statistic) + 1, masked=True), src.bounds))
    cmap, lo, hi, label = _statistic_style(obj, statistic, [im for im, _ in images])
    mappable = None
    for arr, b in images:
        mappable = ax.imshow(
            arr,
            extent=(b.left, b.right, b.bottom, b.top),
            origin="upper",
            cmap=cmap,
            vmin=lo,
            vmax=hi,
            interpolation="nearest",
            zorder=2,
        )
    if mappable is not None:
        ax.figure.colorbar(mappable, ax=ax, label=label, shrink=0.8)


def _draw_polygons(
    ax: Axes,
    tiles_api: Any,
    drawn: list[Path],
    colours: list[tuple[float, float, float, float]],
    crs: Any,
    alpha: float,
    *,
    staged: bool,
) -> None:
    """The staged polygons of each drawn tile, filled in the tile's colour."""
    import pyogrio

    for p, colour in zip(drawn, colours, strict=True):
        path = p if staged else tiles_api.path("staged", tiles_api.tile_from_path(p))
        if not Path(path).exists():
            continue
        gdf = pyogrio.read_dataframe(path, layer=STAGED_LAYER, columns=[])
        if gdf.crs is not None and not crs.equals(gdf.crs):
            gdf = gdf.to_crs(crs)
        if len(gdf):
            gdf.plot(
                ax=ax,
                facecolor=colour[:3],
                edgecolor=colour[:3],
                alpha=alpha,
                linewidth=0.3,
                zorder=2,
            )


def _draw_outlines(
    ax: Axes, boxes: list[Any], colours: list[tuple[float, float, float, float]], crs: Any
) -> None:
    """Tile outlines, and limits and aspect that fit them (true shape on a geographic CRS)."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    rects = [Rectangle((b.left, b.bottom), b.right - b.left, b.top - b.bottom) for b in boxes]
    ax.add_collection(
        PatchCollection(rects, facecolor="none", edgecolor=colours, linewidth=1.2, zorder=3)
    )
    if not boxes:
        return
    left = min(b.left for b in boxes)
    right = max(b.right for b in boxes)
    bottom = min(b.bottom for b in boxes)
    top = max(b.top for b in boxes)
    pad_x, pad_y = 0.05 * (right - left), 0.05 * (top - bottom)
    ax.set_xlim(left - pad_x, right + pad_x)
    ax.set_ylim(bottom - pad_y, top + pad_y)
    if crs.is_geographic:  # one degree of longitude is cos(latitude) degrees of latitude long
        mid = math.radians(max(min((bottom + top) / 2, 89.0), -89.0))
        ax.set_aspect(1 / math.cos(mid))
    else:
        ax.set_aspect("equal")


def plot_sweep(sweep: SweepResult, axes: Sequence[Axes] | None = None) -> list[Axes]:
    """Speed-up against the ideal line, and parallel efficiency, from a worker sweep.

    The left panel also shows the best speed-up the number of tasks allows
    (``n_tasks / ceil(n_tasks / workers)``, relative to the smallest count):
    when the measured curve follows that line rather than the ideal one, the
    plateau comes from too few tasks, not from the work.

    Parameters
    ----------
    sweep : SweepResult
        From :func:`grouputils.teaching.sweeps.sweep_workers` (or built from a table).
    axes : sequence of two Axes, optional
        Default a new figure with two panels side by side.

    Returns
    -------
    list of Axes
        ``[speed-up panel, efficiency panel]``.
    """
    t = sweep.table.sort_values("workers")
    if axes is None:
        import matplotlib.pyplot as plt

        fig, arr = plt.subplots(1, 2, figsize=(10, 4))
        axes = list(arr)
    else:
        axes = list(axes)
        if len(axes) != 2:
            raise ValueError(f"plot_sweep needs two Axes, got {len(axes)}")
    w = t["workers"].to_numpy(dtype=float)
    w0 = w[0]
    sp, eff = axes
    sp.plot(w, w / w0, color="0.5", ls=":", label="ideal")
    if "n_tasks" in t.columns:
        n_tasks = float(t["n_tasks"].iloc[-1])
        grid = np.arange(w0, w[-1] + 1)
        bound = np.ceil(n_tasks / w0) / np.ceil(n_tasks / grid)
        sp.plot(grid, bound, color="C1", ls="--", lw=0.9, label=f"best with {n_tasks:g} tasks")
    sp.plot(w, t["speedup"], "o-", color="C0", label="measured")
    sp.set_xlabel("workers")
    sp.set_ylabel(f"speed-up over {w0:g} worker(s)")
    sp.set_title(f"Speed-up ({sweep.executor})")
    sp.legend(fontsize="small")
    eff.plot(w, t["efficiency"], "o-", color="C0")
    eff.axhline(1.0, color="0.5", ls=":")
    eff.set_ylim(0, max(1.1, float(t["efficiency"].max()) * 1.05))
    eff.set_xlabel("workers")
    eff.set_ylabel("efficiency (speed-up / ideal)")
    if "startup_s" in t.columns:
        lo, hi = t["startup_s"].min(), t["startup_s"].max()
        eff.set_title(f"Efficiency (start-up {lo:.1f}-{hi:.1f} s, excluded)")
    else:
        eff.set_title("Efficiency")
    for a in axes:
        a.set_xticks(w)
    return axes
