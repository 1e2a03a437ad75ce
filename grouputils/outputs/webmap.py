"""The map page of a run, and an interactive map for notebooks.

:func:`write_map_page` writes ``<dir_output>/index.html``: every statistic's
web tiles on a Leaflet map in the tile matrix set's CRS (``WorldCRS84Quad`` is
Leaflet's ``L.CRS.EPSG4326``: EPSG:4326 with 2x1 tiles at zoom 0), a layer
switcher and the legends. The page tells a newcomer where they are: a scale
bar, the zoom level shown, the latitude/longitude under the cursor, and a
graticule (latitude/longitude lines, labelled) while no basemap is shown; the
legend gives the values the colours stand for *at the zoom shown*: the ranges
the web tiles were coloured with, read back from ``web_tiles/colour-ranges.json``
(a ``resampling='sum'`` statistic's range is fitted to each zoom level's data,
see :mod:`grouputils.core.webtiles`; without that file, the fixed scale of
:func:`~grouputils.core.webtiles.level_range`). An online basemap (from
``xyzservices``) is offered, off when the page opens, so the page works with
no network; if its tiles fail the graticule comes back and a note says so.

Leaflet itself comes from an installed Python package made for shipping static
files (``XStatic-Leaflet``, the unmodified Leaflet build) and is copied next
to the page with its licence; nothing is pasted into this repository. Serve
the folder with ``python -m http.server`` and open the page.

The page knows which tiles exist (a list embedded in the page), so it requests
only those: no 404s for empty ground, and a reviewer can check that every tile
request succeeded.

:func:`interactive_map` returns an ipyleaflet map of the same tiles for a
notebook (tiles served by the Jupyter server from the notebook's folder;
needs the ``notebook`` extra).
"""

from __future__ import annotations

import html
import importlib.resources
import json
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import xyzservices
import xyzservices.providers

from grouputils.core.atomic import write_text_atomic
from grouputils.core.config import Config, Statistic
from grouputils.core.errors import ConfigError
from grouputils.core.extras import missing_extra
from grouputils.core.layout import Layout
from grouputils.core.tiles import Tiles, tile_from_path, tile_zxy
from grouputils.core.webtiles import ZoomRanges, level_range, palette_lut, read_colour_ranges

__all__ = [
    "BASEMAPS",
    "LEAFLET_CRS",
    "interactive_map",
    "leaflet_assets",
    "script_json",
    "write_map_page",
]

#: Tile matrix sets whose tiles Leaflet can place, with Leaflet's CRS for each.
LEAFLET_CRS = {"WorldCRS84Quad": "EPSG4326", "WebMercatorQuad": "EPSG3857"}


def leaflet_assets() -> Path:
    """Folder of the installed Leaflet files (``leaflet.js``, ``leaflet.css``, ``images/``).

    They come from the ``XStatic-Leaflet`` package (``xstatic.pkg.leaflet``),
    the unmodified Leaflet build packaged for Python.
    """
    try:
        import xstatic.pkg.leaflet as xstatic_leaflet  # type: ignore[import-untyped]
    except ModuleNotFoundError as e:  # pragma: no cover - an install problem
        raise ModuleNotFoundError(
            "Leaflet files not found: install grouputils with its dependencies (XStatic-Leaflet)"
        ) from e
    return Path(xstatic_leaflet.BASE_DIR)


#: Leaflet's licence (BSD-2-Clause), copied next to its files on every page.
LEAFLET_LICENSE = "leaflet-LICENSE.txt"


def _available_tiles(tiles: Tiles, statistic: str) -> list[str]:
    out = []
    for p in tiles.get_filenames_from_dir("web_tiles"):
        if p.parts[-5] == statistic:  # web_tiles/<statistic>/<TMS>/<z>/<x>/<y>.png
            out.append(tile_zxy(tile_from_path(p)))
    return out


def _data_bounds(tiles: Tiles, z: int) -> list[list[float]] | None:
    paths = tiles.get_filenames_from_dir("geotiff", z=z)
    if not paths:
        return None
    bs = [
        tiles.tms.bounds(tile_from_path(p)) for p in paths
    ]  # longitude/latitude, as Leaflet wants
    return [
        [min(b.bottom for b in bs), min(b.left for b in bs)],
        [max(b.top for b in bs), max(b.right for b in bs)],
    ]


#: Online basemaps laid out like the tile matrix sets: OpenStreetMap from xyzservices'
#: registry for WebMercatorQuad; for WorldCRS84Quad (2x1 tiles at zoom 0), which the
#: registry has no key-free provider for, EOX's WGS84 terrain as an xyzservices provider.
BASEMAPS: dict[str, xyzservices.TileProvider] = {
    "WorldCRS84Quad": xyzservices.TileProvider(
        name="EOX.TerrainLight.WGS84",
        url="https://tiles.maps.eox.at/wmts/1.0.0/terrain-light/default/WGS84/{z}/{y}/{x}.jpg",
        attribution="Terrain Light (C) OpenStreetMap contributors and others, rendering (C) EOX",
        crs="EPSG:4326",
        max_zoom=16,
    ),
    "WebMercatorQuad": xyzservices.providers.OpenStreetMap.Mapnik,
}


def _basemap(config: Config, basemap: bool | xyzservices.TileProvider) -> list[Any] | None:
    """``[url, attribution, max_zoom]`` of the page's basemap, or None."""
    if basemap is False:
        return None
    crs = LEAFLET_CRS.get(config.tms)
    provider = BASEMAPS.get(config.tms) if basemap is True else basemap
    if provider is None or crs is None:
        return None
    if not isinstance(provider, xyzservices.TileProvider):
        raise ConfigError("basemap must be True, False or an xyzservices.TileProvider")
    if provider.get("crs", "EPSG:3857").replace(":", "") != crs:
        raise ConfigError(
            f"basemap {provider.name!r} is in {provider.get('crs', 'EPSG:3857')}, but the map "
            f"of {config.tms} is in {crs[:4]}:{crs[4:]}"
        )
    if provider.requires_token():
        raise ConfigError(f"basemap {provider.name!r} needs an API key; set it on the provider")
    # plain-text attribution: Leaflet inserts it as HTML, so it is escaped here
    text = html.escape(str(provider.get("attribution", provider.name)))
    return [provider.build_url(scale_factor=""), text, int(provider.get("max_zoom", 18))]


def _scale(statistic: Statistic, z_max: int, ranges: ZoomRanges | None) -> dict[str, Any]:
    """What the page needs to label the statistic's colours at any zoom.

    ``ranges[z]`` is :func:`~grouputils.core.webtiles.level_range` at zoom
    ``z`` with the run's colour ranges (``ranges``, as the web-tile step
    wrote them; the fixed scale when there are none): the values at the two
    ends of the palette in the web tiles of that zoom (the page holds no rule
    of its own).
    """
    lut = palette_lut(statistic)
    stops = [lut[i] for i in range(0, 256, 32)] + [lut[255]]
    return {
        "ranges": [list(level_range(statistic, z, z_max, ranges)) for z in range(z_max + 1)],
        "sum": statistic.resampling == "sum",
        "colours": ["#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgba[:3])) for rgba in stops],
    }


def write_map_page(config: Config, basemap: bool | xyzservices.TileProvider = True) -> Path:
    """Write ``index.html`` (and Leaflet's files with its licence) into ``config.dir_output``.

    Parameters
    ----------
    config : Config
        The run's settings; its web tiles must exist (and, for the legend,
        ``web_tiles/colour-ranges.json``, which the pipeline and
        ``RasterTiler.webtiles_from_geotiffs`` write).
    basemap : bool or xyzservices.TileProvider
        Offer an online basemap laid out in the same tile grid as an overlay
        that is off when the page opens, so the page needs no network. True:
        :data:`BASEMAPS` (EOX terrain for ``WorldCRS84Quad``, OpenStreetMap
        for ``WebMercatorQuad``); a provider (e.g. from
        ``xyzservices.providers``) in the map's CRS; False: none.

    Returns
    -------
    Path
        The page.

    Raises
    ------
    ConfigError
        The basemap provider is in another CRS than the map, or needs an API key.
    """
    tiles = Tiles(config)
    assets = Layout.of(config).map_assets
    src = leaflet_assets()
    assets.mkdir(parents=True, exist_ok=True)
    for name in ("leaflet.js", "leaflet.js.map", "leaflet.css"):  # leaflet.js names its source map
        shutil.copyfile(src / name, assets / name)
    shutil.copytree(src / "images", assets / "images", dirs_exist_ok=True)
    licence = importlib.resources.files("grouputils") / "assets" / LEAFLET_LICENSE
    write_text_atomic(assets / "LICENSE.txt", licence.read_text("utf-8"))
    crs = LEAFLET_CRS.get(config.tms)
    used = read_colour_ranges(Layout.of(config).colour_ranges) or {}
    layers = []
    for s in config.statistics:
        folder = f"web_tiles/{quote(s.name, safe='')}"
        layers.append(
            {
                "name": s.name,
                "label": html.escape(s.name),  # Leaflet's layer control inserts labels as HTML
                "description": s.description,  # shown with textContent, never as HTML
                "unit": s.unit,
                "url": f"{folder}/{quote(config.tms, safe='')}/{{z}}/{{x}}/{{y}}.png",
                "legend": f"{folder}/legend.png",
                "scale": _scale(s, config.z, used.get(s.name)),
                "tiles": _available_tiles(tiles, s.name),
            }
        )
    spec = {
        "crs": crs,
        "maxNativeZoom": config.z,
        "bounds": _data_bounds(tiles, config.z),
        "layers": layers,
        "basemap": _basemap(config, basemap),
    }
    template = importlib.resources.files("grouputils") / "assets" / MAP_PAGE_TEMPLATE
    page = (
        template.read_text("utf-8")
        .replace("__SPEC__", script_json(spec))
        .replace("__TITLE__", html.escape(f"IWP tiles — {config.tms}"))
    )
    return write_text_atomic(Layout.of(config).map_page, page)


def script_json(value: Any) -> str:
    """JSON that is safe inside an HTML ``<script>`` block.

    ``json.dumps`` leaves ``</script>`` and ``<!--`` as they are, so a string
    holding them would end the script block and let the rest run as HTML.
    ``<``, ``>`` and ``&`` become ``\\u003c``-style escapes (the same string
    to JavaScript and to ``json.loads``), as do U+2028 and U+2029.

    Parameters
    ----------
    value : Any
        Anything ``json.dumps`` takes.

    Returns
    -------
    str
    """
    text = json.dumps(value)
    for char in ("<", ">", "&", "\u2028", "\u2029"):
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


#: The page's template (HTML, CSS and the script); ``__SPEC__`` and ``__TITLE__`` are filled in.
MAP_PAGE_TEMPLATE = "map-page.html"


def interactive_map(
    config: Config, statistic: str | None = None, notebook_dir: str | Path | None = None
) -> Any:
    """An ipyleaflet map of the web tiles, for a notebook.

    Parameters
    ----------
    config : Config
        The run's settings (``stager.config`` or ``rasterizer.config``).
    statistic : str, optional
        The layer shown first; every statistic is in the layer switcher.
    notebook_dir : str or Path, optional
        The folder the Jupyter server serves the notebook from (default: the
        current working directory, which is the notebook's folder). The web
        tiles must lie below it.

    Returns
    -------
    ipyleaflet.Map
    """
    try:
        import ipyleaflet
    except ImportError as e:
        raise missing_extra("notebook", e) from e

    crs_name = LEAFLET_CRS.get(config.tms)
    if crs_name is None:
        raise ValueError(f"no Leaflet CRS for tile matrix set {config.tms!r}")
    tiles = Tiles(config)
    base = Path(notebook_dir) if notebook_dir else Path.cwd()
    rel = Path(os.path.relpath(config.dir_web_tiles.resolve(), base.resolve()))
    if rel.parts and rel.parts[0] == "..":
        raise ValueError(f"{config.dir_web_tiles} is not below the notebook folder {base}")
    bounds = _data_bounds(tiles, config.z)
    crs = getattr(ipyleaflet.projections, crs_name)
    m = ipyleaflet.Map(crs=crs, zoom=2, center=(0, 0), scroll_wheel_zoom=True)
    for layer in list(m.layers):  # the default online basemap (ipyleaflet refuses basemap=None)
        m.remove(layer)
    names = list(config.statistic_names)
    if statistic is not None:
        names.remove(statistic)
        names.insert(0, statistic)
    for i, name in enumerate(names):
        m.add(
            ipyleaflet.LocalTileLayer(
                path=f"{rel.as_posix()}/{name}/{config.tms}/{{z}}/{{x}}/{{y}}.png",
                name=html.escape(name),  # Leaflet's layer control shows names as HTML
                base=True,
                max_native_zoom=config.z,
                max_zoom=config.z + 3,
                no_wrap=True,
                visible=i == 0,
            )
        )
    m.add(ipyleaflet.LayersControl(position="topright"))
    if bounds:
        m.fit_bounds(bounds)
    return m
