"""Web tiles: RGBA PNGs coloured by palette over a per-zoom range, and legends.

Colours are checked against Matplotlib's own colormap evaluation; the value
range against the rules of ``grouputils.core.webtiles``: fitted to each zoom's
maximum (clipped to ``[hi, hi * 4 ** (z_max - z)]``) for sums when the run's
ranges are given, else the fixed scale (x4 per level for sums).
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
from grouputils.core.webtiles import (
    colorize,
    level_range,
    read_colour_ranges,
    write_colour_ranges,
    write_legend,
    write_webtile,
    zoom_ranges,
)

COUNT = Statistic("count", weight_by="count", resampling="sum", palette="viridis", value_range=(0.0, 2.0))
COVER = Statistic("cover", weight_by="coverage", resampling="mean", palette="magma", value_range=(0.0, 1.0))


def expected_colour(
    stat: Statistic, value: float, z: int, z_max: int, span: tuple[float, float] | None = None
) -> np.ndarray:
    """Independent colour: Matplotlib's colormap at the value's position in the level range."""
    lo, hi = stat.value_range
    if span is not None:
        lo, hi = span
    elif stat.resampling == "sum":
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


def test_zoom_ranges_fit_each_level_between_value_range_and_the_full_scale():
    maxima = {13: 9.0, 12: 5.0, 11: 1.0, 10: 500.0, 9: float("nan"), 8: None}  # no zoom 0-7
    r = zoom_ranges(COUNT, maxima, 13)
    assert sorted(r) == list(range(14))
    assert r[13] == (0.0, 2.0)  # the top zoom keeps value_range, whatever its maximum
    assert r[12] == (0.0, 5.0)  # the level's maximum
    assert r[11] == (0.0, 2.0)  # clipped up to value_range's top
    assert r[10] == (0.0, 2.0 * 4**3)  # clipped down to the full scale (every child full)
    assert r[9] == r[8] == r[0] == (0.0, 2.0)  # no data: value_range
    shifted = Statistic("n", weight_by="count", resampling="sum", value_range=(1.0, 2.0))
    assert zoom_ranges(shifted, maxima, 13)[12] == (1.0, 5.0)  # the low end never moves
    assert zoom_ranges(shifted, maxima, 13)[10] == (1.0, 128.0)
    # means are averages, not sums: value_range at every zoom, data or not
    assert set(zoom_ranges(COVER, {12: 0.3, 5: 7.0, 13: 0.9}, 13).values()) == {(0.0, 1.0)}
    # another top zoom: the rule follows z_max
    assert zoom_ranges(COUNT, {8: 40.0, 7: 40.0}, 9)[8] == (0.0, 8.0)
    assert zoom_ranges(COUNT, {8: 40.0, 7: 40.0}, 9)[7] == (0.0, 32.0)


def test_level_range_with_the_runs_ranges_is_their_entry_and_colours_follow_it():
    ranges = zoom_ranges(COUNT, {10: 20.0}, 13)
    assert level_range(COUNT, 10, 13, ranges) == (0.0, 20.0)
    assert level_range(COUNT, 13, 13, ranges) == level_range(COUNT, 13, 13) == (0.0, 2.0)
    with pytest.raises(KeyError):
        level_range(COUNT, 14, 13, ranges)
    values = np.array([[0.0, 5.0, 10.0, 20.0, 99.0, np.nan]])
    rgba = colorize(values, COUNT, 10, 13, ranges=ranges)
    for c, v in enumerate(values[0][:-1]):
        np.testing.assert_array_equal(rgba[0, c], expected_colour(COUNT, v, 10, 13, (0.0, 20.0)))
    assert tuple(rgba[0, -1]) == (0, 0, 0, 0)
    # the fixed scale would put all of these in the bottom sixth of the palette
    assert not np.array_equal(rgba, colorize(values, COUNT, 10, 13))


def test_colour_ranges_round_trip_through_their_json(tmp_path):
    ranges = {"count": zoom_ranges(COUNT, {10: 20.0, 12: 3.5}, 13), "cover": zoom_ranges(COVER, {}, 13)}
    path = write_colour_ranges(tmp_path / "web_tiles" / "colour-ranges.json", ranges, 13)
    assert read_colour_ranges(path) == ranges
    assert read_colour_ranges(tmp_path / "absent.json") is None
    assert [p.name for p in path.parent.iterdir()] == ["colour-ranges.json"]  # atomic, no temporary


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
    values[0, 0, 1] = 1.5
    tiles = [Tile(1419, 909, 13), Tile(709, 454, 12)]
    paths = [write_geotiff(tiler.tiles.path("geotiff", t), values, t, cfg) for t in tiles]
    written = tiler.webtiles_from_geotiffs(paths, progress=False)
    assert written == [tiler.tiles.path("web_tiles", t, s) for t in tiles for s in ("count", "cover")]
    assert sorted(tiler.tiles.get_filenames_from_dir("web_tiles")) == sorted(written)
    with Image.open(tiler.tiles.path("web_tiles", tiles[1], "count")) as im:
        px = np.asarray(im)
    # range 0..3 at z=12: the level's maximum (3.0, within [2, 8]), not the full scale 0..8
    np.testing.assert_array_equal(px[0, 0], expected_colour(COUNT, 3.0, 12, 13, (0.0, 3.0)))
    np.testing.assert_array_equal(px[0, 1], expected_colour(COUNT, 1.5, 12, 13, (0.0, 3.0)))
    assert px[100, 100, 3] == 0
    with Image.open(tiler.tiles.path("web_tiles", tiles[0], "count")) as im:  # z13: value_range
        np.testing.assert_array_equal(np.asarray(im), colorize(values[0], COUNT, 13, 13))
    for s in ("count", "cover"):
        with Image.open(cfg.dir_web_tiles / s / "legend.png") as im:
            assert im.format == "PNG" and im.size[0] > 100
    # the ranges used are written for the map page, as the tags on disk give them
    used = read_colour_ranges(cfg.dir_web_tiles / "colour-ranges.json")
    assert used == tiler.colour_ranges() == {
        "count": zoom_ranges(COUNT, {13: 3.0, 12: 3.0}, 13),
        "cover": zoom_ranges(COVER, {}, 13),
    }
    assert used["count"][12] == (0.0, 3.0) and used["count"][11] == (0.0, 2.0)


def test_a_subset_of_geotiffs_is_coloured_with_the_ranges_of_every_level_on_disk(tiler):
    """Colouring one tile alone gives the pixels colouring all of them gives (ranges from all tags)."""
    cfg = tiler.config
    low, high = np.full((2, 256, 256), np.nan, dtype="f4"), np.full((2, 256, 256), np.nan, dtype="f4")
    low[:, :4, :4], high[:, :4, :4] = 1.0, 6.0
    a, b = Tile(709, 454, 12), Tile(709, 455, 12)
    pa = write_geotiff(tiler.tiles.path("geotiff", a), low, a, cfg)
    write_geotiff(tiler.tiles.path("geotiff", b), high, b, cfg)
    tiler.webtiles_from_geotiffs([pa], progress=False)
    with Image.open(tiler.tiles.path("web_tiles", a, "count")) as im:
        np.testing.assert_array_equal(np.asarray(im)[0, 0], expected_colour(COUNT, 1.0, 12, 13, (0.0, 6.0)))


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
        "tiler, values, ranges = pickle.loads(sys.stdin.buffer.read())\n"
        "tiler.webtiles_from_bands(Tile(3, 2, 12), values)\n"
        "tiler.webtiles_from_bands(Tile(3, 3, 12), values, ranges)\n"
        "print('matplotlib' in sys.modules)\n"
    )
    ranges = {s.name: zoom_ranges(s, {12: 1.0}, 13) for s in cfg.statistics}  # plain floats
    out = subprocess.run(
        [sys.executable, "-c", code], input=pickle.dumps((local, values, ranges)), capture_output=True, check=True
    )
    assert out.stdout.decode().strip() == "False"
    for stat, band in zip(cfg.statistics, values, strict=True):
        png = local.tiles.path("web_tiles", Tile(3, 2, 12), statistic=stat.name)
        assert np.array_equal(np.asarray(Image.open(png)), colorize(band, stat, 12, 13))
        png = local.tiles.path("web_tiles", Tile(3, 3, 12), statistic=stat.name)
        assert np.array_equal(np.asarray(Image.open(png)), colorize(band, stat, 12, 13, ranges=ranges[stat.name]))
