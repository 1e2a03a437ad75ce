"""The map page of a run, and an interactive map for notebooks.

:func:`write_map_page` writes ``<dir_output>/index.html``: every statistic's
web tiles on a Leaflet map in the tile matrix set's CRS (``WorldCRS84Quad`` is
Leaflet's ``L.CRS.EPSG4326``: EPSG:4326 with 2x1 tiles at zoom 0), a layer
switcher, the legends and an optional online basemap (off by default, so the
page works with no network). Leaflet itself comes from an installed Python
package (``django-js-lib-leaflet``, the unmodified Leaflet 1.9 build, used for
its files only) and is copied next to the page; nothing is pasted into this
repository. Serve the folder with ``python -m http.server`` and open the page.

The page knows which tiles exist (a list embedded in the page), so it requests
only those: no 404s for empty ground, and a reviewer can check that every tile
request succeeded.

:func:`interactive_map` returns an ipyleaflet map of the same tiles for a
notebook (tiles served by the Jupyter server from the notebook's folder).
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

from grouputils.core.atomic import write_text_atomic
from grouputils.core.config import Config
from grouputils.core.layout import Layout
from grouputils.core.tiles import Tiles, tile_from_path, tile_zxy

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
    """Folder of the installed Leaflet files (``leaflet.js``, ``leaflet.css``, ``images/``)."""
    try:
        root = importlib.resources.files("js_lib_leaflet") / "static" / "js_lib_leaflet"
    except ModuleNotFoundError as e:  # pragma: no cover - an install problem
        raise ModuleNotFoundError(
            "Leaflet files not found: install grouputils with its dependencies (django-js-lib-leaflet)"
        ) from e
    return Path(str(root))


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


#: Online basemaps laid out like the tile matrix sets (EOX's WGS84 grid has 2x1 tiles at zoom 0).
BASEMAPS = {
    "WorldCRS84Quad": (
        "https://tiles.maps.eox.at/wmts/1.0.0/terrain-light/default/WGS84/{z}/{y}/{x}.jpg",
        "Terrain Light &copy; OpenStreetMap contributors and others, rendering &copy; EOX",
    ),
    "WebMercatorQuad": (
        "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        "&copy; OpenStreetMap contributors",
    ),
}


def write_map_page(config: Config, basemap: bool = True) -> Path:
    """Write ``index.html`` (and Leaflet's files) into ``config.dir_output``.

    Parameters
    ----------
    config : Config
        The run's settings; its web tiles must exist.
    basemap : bool
        Offer an online basemap laid out in the same tile grid (EOX terrain
        for ``WorldCRS84Quad``, OpenStreetMap for ``WebMercatorQuad``) as an
        overlay that is off when the page opens, so the page needs no network.

    Returns
    -------
    Path
        The page.
    """
    tiles = Tiles(config)
    assets = Layout.of(config).map_assets
    src = leaflet_assets()
    assets.mkdir(parents=True, exist_ok=True)
    for name in ("leaflet.js", "leaflet.js.map", "leaflet.css"):  # leaflet.js names its source map
        shutil.copyfile(src / name, assets / name)
    shutil.copytree(src / "images", assets / "images", dirs_exist_ok=True)
    crs = LEAFLET_CRS.get(config.tms)
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
                "tiles": _available_tiles(tiles, s.name),
            }
        )
    spec = {
        "crs": crs,
        "maxNativeZoom": config.z,
        "bounds": _data_bounds(tiles, config.z),
        "layers": layers,
        "basemap": BASEMAPS.get(config.tms) if basemap else None,
    }
    page = _PAGE.replace("__SPEC__", script_json(spec)).replace(
        "__TITLE__", html.escape(f"IWP tiles — {config.tms}")
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


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="assets/leaflet/leaflet.css">
<style>
  html, body { height: 100%; margin: 0; font-family: sans-serif; }
  #map { position: absolute; inset: 0; background: #f4f4f0; }
  .legend { background: white; padding: 6px; border-radius: 4px; box-shadow: 0 0 4px #888; }
  .legend img { display: block; max-width: 320px; }
  .legend .caption { max-width: 320px; font-size: 12px; }
  .note { background: white; padding: 4px 8px; font-size: 12px; }
</style>
</head>
<body>
<div id="map"></div>
<script src="assets/leaflet/leaflet.js"></script>
<script>
const SPEC = __SPEC__;
if (!SPEC.crs) {
  document.getElementById('map').innerHTML =
    '<p class="note">This tile matrix set has no Leaflet CRS; open the PNG tiles directly.</p>';
} else {
  const map = L.map('map', {crs: L.CRS[SPEC.crs], minZoom: 0, maxZoom: SPEC.maxNativeZoom + 3,
                            worldCopyJump: false});
  // A tile layer that asks only for tiles that exist: empty ground costs no request.
  const KnownTiles = L.TileLayer.extend({
    initialize: function (url, known, options) {
      L.TileLayer.prototype.initialize.call(this, url, options);
      this._known = new Set(known);
    },
    createTile: function (coords, done) {
      if (!this._known.has(coords.z + '/' + coords.x + '/' + coords.y)) {
        const empty = document.createElement('div');
        setTimeout(function () { done(null, empty); }, 0);
        return empty;
      }
      return L.TileLayer.prototype.createTile.call(this, coords, done);
    }
  });
  const base = {};
  let first = null;
  for (const layer of SPEC.layers) {
    const t = new KnownTiles(layer.url, layer.tiles, {
      maxNativeZoom: SPEC.maxNativeZoom, maxZoom: SPEC.maxNativeZoom + 3, noWrap: true,
      attribution: 'IWP detections: Permafrost Discovery Gateway (sample data generated by grouputils)'});
    t.legend = layer.legend;
    t.statistic = layer.name;
    t.caption = layer.description + (layer.unit ? ' (' + layer.unit + ')' : '');
    base[layer.label] = t;  // the label is HTML-escaped: Leaflet inserts it as HTML
    if (!first) first = t;
  }
  const overlays = {};
  if (SPEC.basemap) {
    overlays['Online basemap (needs internet)'] = L.tileLayer(SPEC.basemap[0],
      {attribution: SPEC.basemap[1], opacity: 0.7, maxNativeZoom: 13});
  }
  first.addTo(map);
  L.control.layers(base, overlays, {collapsed: false}).addTo(map);
  const legend = L.control({position: 'bottomright'});
  legend.onAdd = function () {  // built from elements and text, never from HTML strings
    const div = L.DomUtil.create('div', 'legend');
    const img = L.DomUtil.create('img', '', div);
    img.id = 'legend';
    img.alt = 'legend';
    img.src = first.legend;
    const caption = L.DomUtil.create('div', 'caption', div);
    caption.id = 'legend-caption';
    caption.textContent = first.caption;
    return div;
  };
  legend.addTo(map);
  map.on('baselayerchange', function (e) {
    document.getElementById('legend').src = e.layer.legend;
    document.getElementById('legend-caption').textContent = e.layer.caption;
    window.currentStatistic = e.layer.statistic;
  });
  window.currentStatistic = first.statistic;
  if (SPEC.bounds) { map.fitBounds(SPEC.bounds); } else { map.setView([0, 0], 1); }
  window.grouputilsMap = map;
}
</script>
</body>
</html>
"""


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
    import ipyleaflet

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
