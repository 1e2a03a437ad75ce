"""Web tiles: RGBA PNGs coloured by palette over a fixed per-zoom range, and legends.

Colours are checked against Matplotlib's own colormap evaluation, the value
range against the rule documented in ``Statistic`` (x4 per level for sums).
"""

from __future__ import annotations

import copy
import io
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from grouputils.core.config import Config, Statistic
from grouputils.core.errors import ConfigError
from grouputils.core.rasterize import RasterTiler, write_geotiff
from grouputils.core.tiles import Tile
from grouputils.core.webtiles import colorize, level_range, write_legend, write_webtile

COUNT = Statistic("count", weight_by="count", resampling="sum", palette="viridis", value_range=(0.0, 2.0))
COVER = Statistic("cover", weight_by="coverage", resampling="mean", palette="magma", value_range=(0.0, 1.0))


def expected_colour(stat: Statistic, value: float, z: int, z_max: int) -> np.ndarray:
    """Independent colour: Matplotlib's colormap at the value's position in the level range."""
    lo, hi = stat.value_range
    if stat.resampling == "sum":
        lo, hi = lo * 4 ** (z_max - z), hi * 4 ** (z_max - z)
    pos = min(max((value - lo) / (hi - lo), 0.0), 1.0)
    cmap = matplotlib.colormaps[stat.palette] if isinstance(stat.palette, str) else None
    rgba = np.array(cmap(round(pos * 255) / 255, bytes=True), dtype="u1")
    rgba[3] = 255
    return rgba


@pytest.fixture
def tiler(tmp_path) -> RasterTiler:
    return RasterTiler(Config(dir_input=tmp_path / "in", dir_output=tmp_path / "out", statistics=(COUNT, COVER)))


def test_level_range_grows_fourfold_per_level_for_sums_only():
    assert level_range(COUNT, 13, 13) == (0.0, 2.0)
    assert level_range(COUNT, 12, 13) == (0.0, 8.0)
    assert level_range(COUNT, 0, 13) == (0.0, 2.0 * 4**13)
    assert level_range(COVER, 5, 13) == (0.0, 1.0)


def test_colours_follow_the_palette_and_nodata_is_transparent():
    values = np.array([[np.nan, 0.0, 0.5], [1.0, 2.0, 7.0]])
    rgba = colorize(values, COUNT, 13, 13)
    assert rgba.shape == (2, 3, 4) and rgba.dtype == np.uint8
    assert tuple(rgba[0, 0]) == (0, 0, 0, 0)
    for (r, c), v in np.ndenumerate(values):
        if not np.isnan(v):
            np.testing.assert_array_equal(rgba[r, c], expected_colour(COUNT, v, 13, 13))
    np.testing.assert_array_equal(rgba[1, 2], rgba[1, 1])  # beyond the range: the top colour


def test_one_density_has_one_colour_at_every_zoom_for_sum_statistics():
    child = colorize(np.array([[1.0]]), COUNT, 13, 13)
    parent = colorize(np.array([[4.0]]), COUNT, 12, 13)  # four children of 1 each
    np.testing.assert_array_equal(child, parent)
    np.testing.assert_array_equal(colorize(np.array([[0.3]]), COVER, 13, 13), colorize(np.array([[0.3]]), COVER, 3, 13))


def test_palette_given_as_colours_runs_from_first_to_last():
    stat = Statistic("two", weight_by="count", palette=("#000000", "#ff0000"), value_range=(0.0, 1.0))
    rgba = colorize(np.array([[0.0, 1.0]]), stat, 13, 13)
    np.testing.assert_array_equal(rgba[0, 0], [0, 0, 0, 255])
    np.testing.assert_array_equal(rgba[0, 1], [255, 0, 0, 255])


def test_unknown_palette_is_a_config_error_naming_the_statistic():
    # found when the statistic is declared, before any tile is coloured
    with pytest.raises(ConfigError, match="odd"):
        stat = Statistic("odd", weight_by="count", palette="no_such_colormap")
        colorize(np.zeros((2, 2)), stat, 13, 13)


def test_webtile_png_is_rgba_256_and_transparent_exactly_at_nodata(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.uniform(0, 3, (256, 256))
    values[rng.random((256, 256)) < 0.4] = np.nan
    path = write_webtile(tmp_path / "13" / "1" / "2.png", values, COUNT, 13, 13)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGBA" and im.size == (256, 256)
        pixels = np.asarray(im)
    assert ((pixels[..., 3] == 0) == np.isnan(values)).all()
    assert (pixels[~np.isnan(values), 3] == 255).all()
    np.testing.assert_array_equal(pixels, colorize(values, COUNT, 13, 13))
    assert [p.name for p in path.parent.iterdir()] == ["2.png"]  # written atomically, no temporary left


def test_webtiles_from_geotiffs_writes_one_png_per_statistic_and_legends(tiler):
    cfg = tiler.config
    values = np.full((2, 256, 256), np.nan, dtype="f4")
    values[0, :10, :10] = 3.0
    values[1, :10, :10] = 0.25
    tiles = [Tile(1419, 909, 13), Tile(709, 454, 12)]
    paths = [write_geotiff(tiler.tiles.path("geotiff", t), values, t, cfg) for t in tiles]
    written = tiler.webtiles_from_geotiffs(paths, progress=False)
    assert written == [tiler.tiles.path("web_tiles", t, s) for t in tiles for s in ("count", "cover")]
    assert sorted(tiler.tiles.get_filenames_from_dir("web_tiles")) == sorted(written)
    with Image.open(tiler.tiles.path("web_tiles", tiles[1], "count")) as im:
        px = np.asarray(im)
    np.testing.assert_array_equal(px[0, 0], expected_colour(COUNT, 3.0, 12, 13))  # range 0..8 at z=12
    assert px[100, 100, 3] == 0
    for s in ("count", "cover"):
        with Image.open(cfg.dir_web_tiles / s / "legend.png") as im:
            assert im.format == "PNG" and im.size[0] > 100


def test_legend_leaves_matplotlib_global_state_alone(tmp_path):
    before = copy.deepcopy(dict(matplotlib.rcParams))
    backend = matplotlib.get_backend()
    pyplot = __import__("sys").modules.get("matplotlib.pyplot")
    figures = list(pyplot.get_fignums()) if pyplot else None
    path = write_legend(tmp_path / "legend.png", COUNT, 13)
    assert Path(path).stat().st_size > 0
    assert dict(matplotlib.rcParams) == before
    assert matplotlib.get_backend() == backend
    if pyplot:
        assert pyplot.get_fignums() == figures


def test_png_encoding_decodes_to_exactly_the_coloured_pixels():
    """The fast PNG encoder (unfiltered rows, one zlib stream) loses nothing: Pillow decodes the same RGBA."""
    from grouputils.core.webtiles import encode_png

    rng = np.random.default_rng(19)
    values = rng.random((256, 256)) * 3.0
    values[rng.random((256, 256)) < 0.3] = np.nan
    for stat in (COUNT, COVER):
        rgba = colorize(values, stat, 12, 13)
        for level in (0, 1, 9):
            decoded = np.asarray(Image.open(io.BytesIO(encode_png(rgba, level))))
            assert decoded.dtype == np.uint8 and decoded.shape == (256, 256, 4)
            assert np.array_equal(decoded, rgba)
    odd = rng.integers(0, 256, (3, 5, 4), dtype="u1")  # not square, not a multiple of anything
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(odd)))), odd)


def test_colour_lookup_equals_matplotlib_at_every_index_and_nan_is_transparent():
    """Each of the 256 palette positions (and values past both ends) gets Matplotlib's colour."""
    values = np.concatenate([np.arange(256) / 255 * 2.0, [-1.0, 5.0, np.nan]])[None, :]
    got = colorize(values, COUNT, 13, 13)[0]
    for i, v in enumerate(values[0]):
        if np.isnan(v):
            assert tuple(got[i]) == (0, 0, 0, 0)
        else:
            assert np.array_equal(got[i], expected_colour(COUNT, float(v), 13, 13)), (i, v)


def test_a_pickled_rasterizer_colours_web_tiles_without_importing_matplotlib(tmp_path):
    """Workers get the colour tables with the rasterizer: no Matplotlib import (1.7 s) per worker."""
    import pickle
    import subprocess
    import sys

    cfg = Config(dir_input=tmp_path, dir_output=tmp_path / "out", statistics=(COUNT, COVER))
    local = RasterTiler(cfg)
    values = np.linspace(0, 2, 2 * 256 * 256, dtype="f4").reshape(2, 256, 256)
    values[:, :10] = np.nan
    code = (
        "import pickle, sys, numpy as np\n"
        "from grouputils.core.tiles import Tile\n"
        "tiler, values = pickle.loads(sys.stdin.buffer.read())\n"
        "tiler.webtiles_from_bands(Tile(3, 2, 12), values)\n"
        "print('matplotlib' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=pickle.dumps((local, values)), capture_output=True, check=True
    )
    assert out.stdout.decode().strip() == "False"
    for stat, band in zip(cfg.statistics, values, strict=True):
        png = local.tiles.path("web_tiles", Tile(3, 2, 12), statistic=stat.name)
        assert np.array_equal(np.asarray(Image.open(png)), colorize(band, stat, 12, 13))
