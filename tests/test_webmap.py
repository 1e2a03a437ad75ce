"""The run's map page (OUTPUT_DIR/index.html) and the notebook map, checked without a browser.

The page must work offline from ``python -m http.server``: every file it
names is in the output folder, Leaflet comes from the installed package, the
only online address is the optional basemap, and the page asks for exactly
the web tiles that exist. tests/test_map_browser.py loads it in Chromium.
"""

from __future__ import annotations

import html.parser
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xyzservices
from PIL import Image

from grouputils.core.config import Config
from grouputils.core.errors import ConfigError
from grouputils.core.rasterize import read_geotiff
from grouputils.core.webtiles import colorize, level_range, palette_lut, read_colour_ranges
from grouputils.outputs.webmap import BASEMAPS, interactive_map, leaflet_assets, write_map_page
from grouputils.run.pipeline import run_pipeline

#: The shipped samples in the repository (not samples.sample_dir(), which
#: $GROUPUTILS_DATA redirects).
SAMPLES = Path(__file__).resolve().parents[1] / "data-samples"
REPO = Path(__file__).resolve().parents[1]
FIXTURE = ("scene03_WV03_20150814.gpkg", "scene07_WV03_20160728.gpkg", "scene08_WV03_20180704.gpkg")


def make_run(base: Path, names: tuple[str, ...], **settings) -> Config:
    inputs = base / "in"
    inputs.mkdir(parents=True)
    for name in names:
        shutil.copy2(SAMPLES / name, inputs / name)
    config = Config(dir_input=inputs, dir_output=base / "out", **settings)
    report = run_pipeline(config, executor="serial", progress=False)
    assert report.ok, report.failures
    return config


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return make_run(tmp_path_factory.mktemp("webmap"), FIXTURE)


def spec_of(page: Path) -> dict:
    m = re.search(r"const SPEC = (\{.*?\});\n", page.read_text())
    assert m, "no SPEC in the page"
    return json.loads(m.group(1))


class _Refs(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


def test_every_file_the_page_names_is_in_the_output_folder(config: Config) -> None:
    out = config.dir_output
    parser = _Refs()
    parser.feed((out / "index.html").read_text())
    local = [r for r in parser.refs if not r.startswith("data:")]
    assert "assets/leaflet/leaflet.js" in local and "assets/leaflet/leaflet.css" in local
    for ref in local:
        assert not re.match(r"[a-z]+:", ref), ref
        assert (out / ref).is_file(), ref
    # what leaflet.css and leaflet.js name in turn
    css = out / "assets/leaflet/leaflet.css"
    for url in re.findall(r"url\(([^)#]+)\)", css.read_text()):
        assert (css.parent / url.strip("'\"")).is_file(), url
    source_map = re.search(
        r"sourceMappingURL=(\S+)", (out / "assets/leaflet/leaflet.js").read_text()
    ).group(1)
    assert (out / "assets/leaflet" / source_map).is_file()


def test_the_only_online_address_is_the_optional_basemap(config: Config, tmp_path: Path) -> None:
    page = config.dir_output / "index.html"
    spec = spec_of(page)
    urls = re.findall(r"https?://[^\s\"'<>)]+", page.read_text())
    assert urls == [spec["basemap"][0]] == [BASEMAPS[config.tms].build_url(scale_factor="")]
    # without the basemap the page holds no online address at all
    offline = config.replace(dir_output=tmp_path / "copy")
    shutil.copytree(config.dir_output / "web_tiles", offline.dir_output / "web_tiles")
    shutil.copytree(config.dir_output / "geotiff", offline.dir_output / "geotiff")
    page = write_map_page(offline, basemap=False)
    assert spec_of(page)["basemap"] is None
    assert not re.findall(r"https?://", page.read_text())


def test_leaflet_is_copied_from_the_installed_package_not_kept_in_the_repository(
    config: Config,
) -> None:
    src, dest = leaflet_assets(), config.dir_output / "assets" / "leaflet"
    names = ["leaflet.js", "leaflet.css", *[f"images/{p.name}" for p in (src / "images").iterdir()]]
    assert "images/layers.png" in names
    for name in names:
        assert (dest / name).read_bytes() == (src / name).read_bytes(), name
    # Leaflet's files come from the XStatic package, with Leaflet's licence next to them
    assert "xstatic" in src.parts and "leaflet" in src.parts
    assert "Leaflet 1.9" in (dest / "leaflet.js").read_text()[:200]
    licence = (dest / "LICENSE.txt").read_text()
    assert "BSD 2-Clause License" in licence and "Agafonkin" in licence
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert not [
        f
        for f in tracked.splitlines()
        if Path(f).name.startswith("leaflet") and f.endswith((".js", ".css"))
    ]


def test_the_page_lists_exactly_the_web_tiles_on_disk(config: Config) -> None:
    out = config.dir_output
    spec = spec_of(out / "index.html")
    assert spec["crs"] == "EPSG4326" and spec["maxNativeZoom"] == config.z
    assert [layer["name"] for layer in spec["layers"]] == list(config.statistic_names)
    for layer in spec["layers"]:
        root = out / "web_tiles" / layer["name"] / config.tms
        on_disk = {p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.png")}
        assert set(layer["tiles"]) == on_disk and len(layer["tiles"]) == len(on_disk)
        for t in layer["tiles"]:
            z, x, y = t.split("/")
            assert (out / layer["url"].format(z=z, x=x, y=y)).is_file()
        assert (out / layer["legend"]).is_file()
    # the view fits the z=13 GeoTIFFs ([[south, west], [north, east]])
    lefts, bottoms, rights, tops = [], [], [], []
    for p in (out / "geotiff" / config.tms / str(config.z)).rglob("*.tif"):
        with rasterio.open(p) as src:
            b = src.bounds
        lefts.append(b.left), bottoms.append(b.bottom), rights.append(b.right), tops.append(b.top)
    (south, west), (north, east) = spec["bounds"]
    assert [south, west, north, east] == pytest.approx(
        [min(bottoms), min(lefts), max(tops), max(rights)]
    )


def test_a_web_mercator_map_is_placed_in_degrees(tmp_path: Path) -> None:
    config = make_run(tmp_path, ("scene03_WV03_20150814.gpkg",), tms="WebMercatorQuad")
    spec = spec_of(config.dir_output / "index.html")
    assert spec["crs"] == "EPSG3857"
    (south, west), (north, east) = spec["bounds"]
    # scene03 lies near 149.05 W, 70.04 N; its z=13 tiles are ~0.04 degrees wide
    assert -149.2 < west < -149.067 and -149.034 < east < -148.9
    assert 69.9 < south < 70.035 and 70.045 < north < 70.2


def test_interactive_map_shows_every_statistic_from_the_notebook_folder(config: Config) -> None:
    import ipyleaflet

    m = interactive_map(
        config, statistic="prop_pixel_covered_by_IWP", notebook_dir=config.dir_output.parent
    )
    tiles = [layer for layer in m.layers if isinstance(layer, ipyleaflet.LocalTileLayer)]
    assert [t.name for t in tiles] == ["prop_pixel_covered_by_IWP", "number_IWP_per_pixel"]
    assert [t.visible for t in tiles] == [True, False]
    for t in tiles:
        assert t.path == f"out/web_tiles/{t.name}/{config.tms}/{{z}}/{{x}}/{{y}}.png"
        assert t.base and t.max_native_zoom == config.z
    assert m.crs["name"] == "EPSG4326"
    with pytest.raises(ValueError, match="not below the notebook folder"):
        interactive_map(config, notebook_dir=config.dir_output / "assets")


def test_basemaps_come_from_xyzservices_in_the_map_crs(config: Config, tmp_path: Path) -> None:
    """Default providers are xyzservices TileProviders in the TMS's CRS; a wrong one is refused."""
    assert isinstance(BASEMAPS["WebMercatorQuad"], xyzservices.TileProvider)
    assert BASEMAPS["WebMercatorQuad"] is xyzservices.providers.OpenStreetMap.Mapnik
    assert BASEMAPS["WorldCRS84Quad"].get("crs") == "EPSG:4326"
    copy = config.replace(dir_output=tmp_path / "copy")
    shutil.copytree(config.dir_output / "web_tiles", copy.dir_output / "web_tiles")
    shutil.copytree(config.dir_output / "geotiff", copy.dir_output / "geotiff")
    with pytest.raises(ConfigError, match="EPSG:3857"):
        write_map_page(copy, basemap=xyzservices.providers.OpenStreetMap.Mapnik)
    mine = xyzservices.TileProvider(
        name="mine",
        url="https://example.org/{z}/{y}/{x}.png",
        attribution="<b>me</b>",
        crs="EPSG:4326",
        max_zoom=9,
    )
    spec = spec_of(write_map_page(copy, basemap=mine))
    assert spec["basemap"] == ["https://example.org/{z}/{y}/{x}.png", "&lt;b&gt;me&lt;/b&gt;", 9]


def test_the_legend_scale_in_the_page_is_the_web_tiles_colouring(config: Config) -> None:
    """The page labels each zoom with the ranges the web tiles of that zoom were coloured
    with (web_tiles/colour-ranges.json, fitted per zoom for sums) and the palette's LUT."""
    spec = spec_of(config.dir_output / "index.html")
    used = read_colour_ranges(config.dir_web_tiles / "colour-ranges.json")
    assert used is not None
    for layer, stat in zip(spec["layers"], config.statistics, strict=True):
        scale = layer["scale"]
        assert scale["ranges"] == [list(used[stat.name][z]) for z in range(config.z + 1)]
        assert scale["ranges"][config.z] == list(stat.value_range)  # the top zoom: value_range
        if stat.resampling == "sum":  # fitted below the top zoom: not the fixed x4 scale
            assert scale["ranges"][10] != list(level_range(stat, 10, config.z))
            assert stat.value_range[1] <= scale["ranges"][10][1] <= stat.value_range[1] * 4**3
        assert scale["sum"] == (stat.resampling == "sum")
        lut = palette_lut(stat)
        assert scale["colours"][0] == "#{:02x}{:02x}{:02x}".format(*lut[0][:3])
        assert scale["colours"][-1] == "#{:02x}{:02x}{:02x}".format(*lut[255][:3])
    # the tiles of every zoom are coloured with exactly the page's ranges
    for z in range(config.z + 1):
        tif = next((config.dir_output / "geotiff" / config.tms / str(z)).rglob("*.tif"))
        bands = read_geotiff(tif, config)
        for layer, stat, band in zip(spec["layers"], config.statistics, bands, strict=True):
            png = config.dir_web_tiles / stat.name / config.tms / str(z) / tif.parent.name
            png = png / f"{tif.stem}.png"
            lo, hi = layer["scale"]["ranges"][z]
            with Image.open(png) as im:
                pixels = np.asarray(im)
            assert np.array_equal(pixels, colorize(band, stat, z, config.z, ranges={z: (lo, hi)}))


def test_without_the_ranges_file_the_page_shows_the_fixed_scale(
    config: Config, tmp_path: Path
) -> None:
    """Web tiles coloured outside the pipeline without ranges: the page labels the fixed scale."""
    copy = config.replace(dir_output=tmp_path / "copy")
    shutil.copytree(config.dir_output / "web_tiles", copy.dir_output / "web_tiles")
    (copy.dir_web_tiles / "colour-ranges.json").unlink()
    spec = spec_of(write_map_page(copy, basemap=False))
    for layer, stat in zip(spec["layers"], config.statistics, strict=True):
        assert layer["scale"]["ranges"] == [
            list(level_range(stat, z, config.z)) for z in range(config.z + 1)
        ]
