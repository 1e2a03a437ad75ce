"""The run's map page in a real browser: Debian's Chromium driven by Playwright.

The pipeline runs (serially) on a 3-file fixture; the output folder is served
by ``http.server`` on 127.0.0.1 and every request to any other host is
blocked, as on a machine with no network. The page must load its tiles (all
answered 200, none failed), draw something, switch statistics through the
layer control (new tiles, new legend) and raise no script error. The opening
view must show coloured tiles (not blank, not one colour), a scale bar that
matches the map's metres per pixel, the zoom level, the latitude/longitude
under the cursor (checked against the map's bounds), a graticule (no basemap
is loaded) and legend values for the zoom shown. Turning the basemap on with
no network must neither hang nor lose the graticule. Screenshots go to
``test-artifacts/``.

Needs the ``chromium`` package (``apt-get install -y chromium``) and the
``playwright`` Python package (Playwright's own browser download is not used).
Without them the test fails in CI (``CI=true``) and is skipped elsewhere.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import json
import math
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from hostile import DESCRIPTION, NAME, NAME_QUOTE, UNIT, hostile_config
from PIL import Image

from grouputils.core.config import Config
from grouputils.core.webtiles import level_range, read_colour_ranges
from grouputils.outputs.webmap import write_map_page
from grouputils.run.pipeline import run_pipeline

#: The shipped samples in the repository (not samples.sample_dir(), which
#: $GROUPUTILS_DATA redirects).
SAMPLES = Path(__file__).resolve().parents[1] / "data-samples"
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
FIXTURE = ("scene03_WV03_20150814.gpkg", "scene07_WV03_20160728.gpkg", "scene08_WV03_20180704.gpkg")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BACKGROUND = (0xF4, 0xF4, 0xF0)  # the page's #map background
TIMEOUT_MS = 60_000  # a busy shared machine


def _chromium_or_skip() -> str:
    """Path of the system Chromium; fail in CI, skip elsewhere, when it or Playwright is missing."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    problem = None
    if not Path(path).exists():
        problem = "Debian's chromium is not installed (as root: apt-get install -y chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is not installed (pip install -e '.[test]')"
    if problem:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"the browser test must run in CI: {problem}")
        pytest.skip(problem)
    return path


@contextlib.contextmanager
def _local_page(p, executable: str, blocked: list[str] | None = None) -> Iterator:
    """A Chromium page that reaches only 127.0.0.1; other requests are aborted (listed in ``blocked``)."""

    def route(r) -> None:
        if urlparse(r.request.url).hostname == "127.0.0.1":
            r.continue_()
        else:
            if blocked is not None:
                blocked.append(r.request.url)
            r.abort()

    browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    try:
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.set_default_timeout(TIMEOUT_MS)
        page.route("**/*", route)
        yield page
    finally:
        browser.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@contextlib.contextmanager
def _serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1; yield its address."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Config:
    base = tmp_path_factory.mktemp("browser")
    inputs = base / "in"
    inputs.mkdir()
    for name in FIXTURE:
        shutil.copy2(SAMPLES / name, inputs / name)
    config = Config(dir_input=inputs, dir_output=base / "out")
    report = run_pipeline(config, executor="serial", progress=False)
    assert report.ok, report.failures
    return config


@pytest.fixture(scope="module")
def served(run: Config) -> Iterator[tuple[str, Config]]:
    with _serve(run.dir_output) as url:
        yield url, run


def _tiles_loaded(statistic: str) -> str:
    """JS predicate: the statistic's tile images are in the map and all loaded."""
    return (
        "() => { const imgs = [...document.querySelectorAll('img.leaflet-tile')]"
        f".filter(i => i.src.includes('/web_tiles/{statistic}/'));"
        " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0"
        " && i.classList.contains('leaflet-tile-loaded')); }"
    )


def _map_pixels(page) -> np.ndarray:
    """RGB screenshot of the tiles alone: the controls (layer list, legend, zoom) and the
    graticule hidden."""
    page.add_style_tag(
        content=".leaflet-control-container, .leaflet-graticule-pane"
        " { visibility: hidden !important; }"
    )
    shot = page.screenshot()
    page.evaluate("document.head.lastElementChild.remove()")
    with Image.open(io.BytesIO(shot)) as im:
        return np.asarray(im.convert("RGB"))


def _drawn(pixels: np.ndarray) -> int:
    """Pixels that are not the map background."""
    return int((np.abs(pixels.astype(int) - BACKGROUND).sum(axis=2) > 30).sum())


def _dominant_share(pixels: np.ndarray) -> float:
    """Share of the drawn (non-background) pixels that have the most common colour."""
    drawn = pixels[np.abs(pixels.astype(int) - BACKGROUND).sum(axis=2) > 30]
    _, counts = np.unique(drawn.reshape(-1, 3), axis=0, return_counts=True)
    return float(counts.max() / counts.sum())


def _where_you_are(page, config: Config, statistic: str) -> dict:
    """Scale bar, zoom, cursor position, graticule and legend as the page shows them."""
    page.mouse.move(310, 270)
    page.wait_for_function(
        "() => document.getElementById('cursor-position').textContent.startsWith('Cursor')"
    )
    return page.evaluate(
        """() => {
        const m = window.grouputilsMap, b = m.getBounds(), size = m.getSize();
        const scale = document.querySelector('.leaflet-control-scale-line');
        const lz = document.getElementById('legend-zoom');
        return {zoom: m.getZoom(), south: b.getSouth(), north: b.getNorth(), west: b.getWest(),
                east: b.getEast(), width: size.x, height: size.y,
                zoomText: document.getElementById('zoom-level').textContent,
                cursor: document.getElementById('cursor-position').textContent,
                scaleText: scale.textContent, scaleWidth: scale.getBoundingClientRect().width,
                gratLines: document.querySelectorAll('.leaflet-graticule-pane path').length,
                gratLabels: [...document.querySelectorAll('.graticule-label')]
                  .map(e => e.textContent),
                legendHi: Number(lz.dataset.hi), legendZoom: Number(lz.dataset.zoom),
                legendText: lz.textContent};
    }"""
    )


def _check_where_you_are(view: dict, config: Config, statistic: str) -> None:
    z = view["zoom"]
    assert view["zoomText"] == str(z)
    # cursor at (310, 270): plate carree, so latitude and longitude are linear in the pixel
    lat = view["north"] - (view["north"] - view["south"]) * 270 / view["height"]
    lon = view["west"] + (view["east"] - view["west"]) * 310 / view["width"]
    m = re.fullmatch(r"Cursor ([\d.]+)\u00b0 ([NS]), ([\d.]+)\u00b0 ([EW])", view["cursor"])
    assert m, view["cursor"]
    shown_lat = float(m.group(1)) * (1 if m.group(2) == "N" else -1)
    shown_lon = float(m.group(3)) * (1 if m.group(4) == "E" else -1)
    deg_per_px = (view["east"] - view["west"]) / view["width"]
    assert abs(shown_lat - lat) < 2 * deg_per_px and abs(shown_lon - lon) < 2 * deg_per_px
    # the scale bar: its length in metres over its width in pixels is the map's metres per pixel
    m = re.fullmatch(r"(\d+) (m|km)", view["scaleText"])
    assert m, view["scaleText"]
    metres = int(m.group(1)) * (1000 if m.group(2) == "km" else 1)
    centre_lat = math.radians((view["north"] + view["south"]) / 2)
    metres_per_px = math.radians(deg_per_px) * 6378137 * math.cos(centre_lat)
    assert metres / view["scaleWidth"] == pytest.approx(metres_per_px, rel=0.03)
    # a graticule, labelled with latitudes inside the view
    assert view["gratLines"] >= 2
    lats = [float(t.split("\u00b0")[0]) for t in view["gratLabels"] if t.endswith("N")]
    assert lats and all(view["south"] <= v <= view["north"] for v in lats)
    # the legend's values are those of the tiles of the zoom shown
    stat = next(s for s in config.statistics if s.name == statistic)
    tile_zoom = min(round(z), config.z)
    assert view["legendZoom"] == tile_zoom
    used = read_colour_ranges(config.dir_web_tiles / "colour-ranges.json")  # what the tiles used
    shown = level_range(stat, tile_zoom, config.z, used[stat.name])
    assert view["legendHi"] == pytest.approx(shown[1])
    assert f"zoom {z}" in view["legendText"]


def test_the_map_page_loads_every_tile_offline_and_switches_statistics(served) -> None:
    executable = _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    url, config = served
    count_stat, cover_stat = config.statistic_names
    responses: list[tuple[str, int]] = []
    failed: list[tuple[str, str]] = []
    blocked: list[str] = []
    errors: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as p, _local_page(p, executable, blocked) as page:
        page.on("response", lambda r: responses.append((urlparse(r.url).path, r.status)))
        page.on("requestfailed", lambda r: failed.append((r.url, r.failure or "")))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        page.goto(f"{url}/index.html")
        page.wait_for_function(_tiles_loaded(count_stat))
        page.wait_for_load_state("networkidle")
        page.screenshot(path=ARTIFACTS / f"map-{count_stat}.png")
        first = _map_pixels(page)
        assert page.evaluate("window.currentStatistic") == count_stat
        view = _where_you_are(page, config, count_stat)
        page.screenshot(path=ARTIFACTS / "map-opening-view.png")
        # one zoom level in: the zoom shown and the legend follow
        page.evaluate("window.grouputilsMap.zoomIn()")
        page.wait_for_function(
            f"() => document.getElementById('zoom-level').textContent === '{view['zoom'] + 1}'"
        )
        page.wait_for_load_state("networkidle")
        view_in = _where_you_are(page, config, count_stat)
        page.evaluate("window.grouputilsMap.zoomOut()")
        page.wait_for_function(
            f"() => document.getElementById('zoom-level').textContent === '{view['zoom']}'"
        )
        page.wait_for_function(_tiles_loaded(count_stat))
        page.wait_for_load_state("networkidle")
        legend_before = page.evaluate("document.getElementById('legend').src")

        page.locator("label", has_text=cover_stat).locator("input").check()
        page.wait_for_function(_tiles_loaded(cover_stat))
        page.wait_for_function(
            "() => { const l = document.getElementById('legend');"
            " return l.complete && l.naturalWidth > 0; }"
        )
        page.wait_for_load_state("networkidle")
        page.screenshot(path=ARTIFACTS / f"map-{cover_stat}.png")
        second = _map_pixels(page)
        assert page.evaluate("window.currentStatistic") == cover_stat
        view_cover = _where_you_are(page, config, cover_stat)
        legend_after = page.evaluate("document.getElementById('legend').src")
        old_tiles_left = page.evaluate(
            f"document.querySelectorAll('img.leaflet-tile[src*=\"/web_tiles/{count_stat}/\"]').length"
        )

    assert blocked == [], "the page asked for something online (the basemap must be off at start)"
    assert failed == []
    assert errors == []
    assert responses and all(status == 200 for _, status in responses), [
        r for r in responses if r[1] != 200
    ]
    tiles = {
        stat: [path for path, _ in responses if f"/web_tiles/{stat}/{config.tms}/" in path]
        for stat in (count_stat, cover_stat)
    }
    assert tiles[count_stat] and tiles[cover_stat], "both statistics' tiles were requested"
    assert all(
        (config.dir_output / path.lstrip("/")).is_file()
        for path in tiles[count_stat] + tiles[cover_stat]
    )
    assert legend_before.endswith(f"web_tiles/{count_stat}/legend.png")
    assert legend_after.endswith(f"web_tiles/{cover_stat}/legend.png")
    assert (f"/web_tiles/{cover_stat}/legend.png", 200) in responses
    assert old_tiles_left == 0
    # something was drawn, in more than one colour, and the two statistics look different
    for pixels in (first, second):
        assert _drawn(pixels) > 500
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10
        assert _dominant_share(pixels) < 0.9, "the tiles are (nearly) one colour"
    assert (np.abs(first.astype(int) - second.astype(int)).sum(axis=2) > 30).sum() > 500
    # where you are: scale bar, zoom, cursor, graticule and legend values for the zoom shown
    for v, stat in ((view, count_stat), (view_in, count_stat), (view_cover, cover_stat)):
        _check_where_you_are(v, config, stat)
    assert view_in["zoom"] == view["zoom"] + 1
    # a sum statistic: fewer pixels added up one zoom in (by the data's maxima, not a fixed 4)
    assert view_in["legendHi"] < view["legendHi"]
    assert view_cover["legendHi"] == pytest.approx(config.statistics[1].value_range[1])  # a mean


def test_script_and_html_in_the_config_never_run_on_the_map_page(
    run: Config, tmp_path: Path
) -> None:
    """Descriptions closing the script block and names holding <img onerror> stay text."""
    executable = _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    out = tmp_path / "hostile"
    shutil.copytree(run.dir_output, out)
    config = hostile_config(run.replace(dir_output=out))
    write_map_page(config, basemap=False)
    count_stat = run.statistic_names[0]
    errors: list[str] = []
    dialogs: list[str] = []
    with _serve(out) as url, sync_playwright() as p, _local_page(p, executable) as page:
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{url}/index.html")
        page.wait_for_load_state("load")
        pwned = page.evaluate("window.__pwned === undefined ? null : String(window.__pwned)")
        assert pwned is None, f"injected script ran when the page loaded: {pwned}"
        page.wait_for_function(_tiles_loaded(count_stat))  # the page's own script ran
        page.wait_for_load_state("networkidle")
        labels = page.evaluate(
            "[...document.querySelectorAll('.leaflet-control-layers-base label')]"
            ".map(l => l.textContent.trim())"
        )
        caption_first = page.evaluate("document.getElementById('legend-caption').textContent")
        # choose the forged layer named with an <img onerror>: its caption is text too
        page.locator("label", has_text=NAME).locator("input").check()
        page.wait_for_function(f"() => window.currentStatistic === {json.dumps(NAME)}")
        caption_forged = page.evaluate("document.getElementById('legend-caption').textContent")
        page.wait_for_timeout(500)  # give any onerror handler time to fire
        pwned = page.evaluate("window.__pwned === undefined ? null : String(window.__pwned)")
        injected = page.evaluate(
            "document.querySelectorAll('img[onerror], script:not([src])').length"
        )
        page.screenshot(path=ARTIFACTS / "map-hostile.png")

    assert pwned is None, f"injected script ran: {pwned}"
    assert dialogs == []
    assert errors == []
    assert injected == 1  # only the page's own inline script; no <img onerror> anywhere
    assert labels == [*run.statistic_names, NAME, NAME_QUOTE]  # the names, shown as text
    assert caption_first == f"{DESCRIPTION} ({UNIT})"
    assert caption_forged == f"{DESCRIPTION} ({run.statistics[0].unit})"


def test_turning_the_basemap_on_offline_neither_hangs_nor_loses_the_graticule(served) -> None:
    """No network: the basemap's tiles fail, the page says so, the graticule and data stay."""
    executable = _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    url, config = served
    blocked: list[str] = []
    errors: list[str] = []

    with sync_playwright() as p, _local_page(p, executable, blocked) as page:
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/index.html")
        page.wait_for_function(_tiles_loaded(config.statistic_names[0]))
        page.locator("label", has_text="Online basemap").locator("input").check()
        page.wait_for_function(
            "() => document.getElementById('basemap-note').textContent.includes('unavailable')",
            timeout=15_000,
        )
        lines = page.evaluate(
            "document.querySelectorAll('.leaflet-graticule-pane path').length"
        )
        tiles_left = page.evaluate(
            "document.querySelectorAll('img.leaflet-tile-loaded').length"
        )
        page.screenshot(path=ARTIFACTS / "map-basemap-offline.png")
        page.locator("label", has_text="Online basemap").locator("input").uncheck()
        note = page.evaluate("document.getElementById('basemap-note').textContent")
    assert blocked, "the basemap was asked for"
    assert all(urlparse(b).hostname == "tiles.maps.eox.at" for b in blocked)
    assert errors == []
    assert lines >= 2 and tiles_left > 0
    assert note == ""
