"""Plots draw exactly what their titles say, from the files on disk, without touching global state."""

from __future__ import annotations

import types
import warnings
from pathlib import Path

import geopandas as gpd
import matplotlib
import matplotlib.pyplot as plt
import morecantile
import numpy as np
import pandas as pd
import pytest
import rasterio
from matplotlib.collections import PatchCollection
from affine import Affine
from shapely.geometry import box

from grouputils.core.config import Config
from grouputils.core.errors import InputError
from grouputils.teaching.plotting import BasemapWarning, plot_profile, plot_sweep, plot_tiles, tile_palette
from grouputils.teaching.profiling import ResourceProfile, SweepResult, profile_resources
from grouputils.core.tiles import Tile, Tiles

TMS = morecantile.tms.get("WorldCRS84Quad")
ORIGIN = TMS.tile(-148.40, 70.25, 13)  # Prudhoe Bay
TILES = [Tile(ORIGIN.x + dx, ORIGIN.y + dy, 13) for dx, dy in [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1)]]
POLYS_PER_TILE = [3, 1, 4, 2, 5]
STATS = ("number_IWP_per_pixel", "prop_pixel_covered_by_IWP")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _stager(tmp_path: Path) -> types.SimpleNamespace:
    cfg = Config(dir_input=tmp_path / "in", dir_output=tmp_path / "out")
    return types.SimpleNamespace(config=cfg, tiles=Tiles(cfg))


@pytest.fixture
def stager(tmp_path: Path) -> types.SimpleNamespace:
    """A stager-like object whose staged folder holds five tiles with a few square polygons each."""
    obj = _stager(tmp_path)
    for tile, n in zip(TILES, POLYS_PER_TILE):
        b = TMS.xy_bounds(tile)
        w = (b.right - b.left) / 10
        geoms = [box(b.left + (i + 1) * w, b.bottom + w, b.left + (i + 1.5) * w, b.bottom + 1.5 * w)
                 for i in range(n)]
        path = obj.tiles.path("staged", tile)
        path.parent.mkdir(parents=True, exist_ok=True)
        gpd.GeoDataFrame({"area": [1.0] * n}, geometry=geoms, crs="OGC:CRS84").to_file(
            path, layer="staged", driver="GPKG"
        )
    return obj


def _write_geotiffs(obj: types.SimpleNamespace, tiles: list[Tile]) -> dict[Tile, np.ndarray]:
    """Two-band GeoTIFFs; band 2 (coverage) holds a distinct ramp per tile. Returns band 2 by tile."""
    out = {}
    for k, tile in enumerate(tiles):
        b = TMS.xy_bounds(tile)
        count = np.full((8, 8), k, dtype="float32")
        cover = (np.arange(64, dtype="float32").reshape(8, 8) / 63.0 * (k + 1) / len(tiles))
        transform = Affine((b.right - b.left) / 8, 0, b.left, 0, -(b.top - b.bottom) / 8, b.top)
        path = obj.tiles.path("geotiff", tile)
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=2, dtype="float32",
                           crs="OGC:CRS84", transform=transform, nodata=np.nan) as dst:
            dst.write(np.stack([count, cover]))
            for i, name in enumerate(STATS, start=1):
                dst.set_band_description(i, name)
        out[tile] = cover
    return out


def _outlines(ax) -> PatchCollection:
    (coll,) = [c for c in ax.collections if isinstance(c, PatchCollection) and c.get_zorder() == 3]
    return coll


def test_title_counts_exactly_the_tiles_drawn(stager) -> None:
    ax = plot_tiles(stager)
    assert ax.get_title() == "5 of 5 staged tiles"
    assert len(_outlines(ax).get_paths()) == 5
    _, ax3 = plt.subplots()
    assert plot_tiles(stager, n=3, ax=ax3) is ax3
    assert ax3.get_title() == "3 of 5 staged tiles"
    assert len(_outlines(ax3).get_paths()) == 3


def test_outlines_are_the_tile_bounds_from_morecantile(stager) -> None:
    ax = plot_tiles(stager)
    drawn = sorted(tuple(np.round(p.get_extents().bounds, 9)) for p in _outlines(ax).get_paths())
    expected = []
    for t in TILES:
        b = TMS.xy_bounds(t)
        expected.append(tuple(np.round((b.left, b.bottom, b.right - b.left, b.top - b.bottom), 9)))
    assert drawn == sorted(expected)


def test_outline_colours_are_fixed_by_the_seed(stager) -> None:
    a = _outlines(plot_tiles(stager, seed=3)).get_edgecolor()
    b = _outlines(plot_tiles(stager, seed=3)).get_edgecolor()
    c = _outlines(plot_tiles(stager, seed=4)).get_edgecolor()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, np.array(tile_palette(5, seed=3)))
    assert not np.array_equal(a, c)
    assert len({tuple(x) for x in a}) == 5  # neighbours differ


def test_plot_tiles_changes_no_global_matplotlib_state(stager) -> None:
    before = dict(matplotlib.rcParams)
    _, ax = plt.subplots()
    figures = plt.get_fignums()
    plot_tiles(stager, ax=ax, polygons=True)
    assert plt.get_fignums() == figures  # drew on the given Axes, made no other figure
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rcParams lists deprecated keys when read
        assert dict(matplotlib.rcParams) == before


def test_polygons_come_from_the_staged_layer_of_the_drawn_tiles(stager) -> None:
    ax = plot_tiles(stager, n=2, polygons=True)
    outline = _outlines(ax)
    polys = sum(len(c.get_paths()) for c in ax.collections if c is not outline)
    first_two = stager.tiles.get_filenames_from_dir("staged")[:2]  # sorted by (z, x, y)
    assert polys == sum(len(gpd.read_file(p, layer="staged")) for p in first_two)
    assert polys == sum(n for t, n in zip(TILES, POLYS_PER_TILE) if t in
                        sorted(TILES, key=lambda t: (t.x, t.y))[:2])
    assert ax.get_title() == "2 of 5 staged tiles with their polygons"


def test_statistic_is_drawn_from_the_band_with_that_name(stager) -> None:
    cover = _write_geotiffs(stager, TILES[:2])
    ax = plot_tiles(stager, statistic="prop_pixel_covered_by_IWP")
    assert ax.get_title() == "prop_pixel_covered_by_IWP: 2 of 2 GeoTIFF tiles at z=13"
    assert len(ax.images) == 2
    for im, tile in zip(ax.images, sorted(TILES[:2], key=lambda t: (t.x, t.y))):  # listing order
        np.testing.assert_array_equal(np.ma.getdata(im.get_array()), cover[tile])
        b = TMS.xy_bounds(tile)
        np.testing.assert_allclose(im.get_extent(), (b.left, b.right, b.bottom, b.top))
        assert im.get_clim() == (0.0, 1.0)  # the statistic's value range, same for every tile


def test_a_geotiff_without_the_band_is_an_input_error_naming_it(stager) -> None:
    _write_geotiffs(stager, TILES[:1])
    with pytest.raises(InputError, match=r"\.tif: has no band named 'nope'") as info:
        plot_tiles(stager, statistic="nope")
    assert info.value.path.suffix == ".tif"


def test_nothing_staged_gives_an_empty_plot_that_says_so(tmp_path: Path) -> None:
    ax = plot_tiles(_stager(tmp_path))
    assert ax.get_title().startswith("0 of 0 staged tiles")


@pytest.mark.parametrize("bad", [-1, 2.5, True, "3"])
def test_n_must_be_a_count(stager, bad) -> None:
    with pytest.raises(ValueError, match="n must be"):
        plot_tiles(stager, n=bad)


def test_an_unreachable_basemap_warns_and_the_tiles_are_still_drawn(stager) -> None:
    with pytest.warns(BasemapWarning, match="not reachable"):
        ax = plot_tiles(stager, basemap=True, basemap_source="http://127.0.0.1:9/{z}/{x}/{y}.png",
                        basemap_timeout_s=0.5)
    assert len(_outlines(ax).get_paths()) == 5
    assert not ax.images  # no basemap image was added


def test_default_basemap_never_raises_offline(stager) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BasemapWarning)
        ax = plot_tiles(stager, basemap=True)
    assert ax.get_title() == "5 of 5 staged tiles"


def test_plot_profile_draws_the_profile_table() -> None:
    with profile_resources(interval=0.02) as prof:
        sum(i * i for i in range(300_000))
    axes = plot_profile(prof)
    assert len(axes) == 2
    cpu_line = axes[0].get_lines()[0]
    np.testing.assert_allclose(cpu_line.get_ydata(), prof.table["cpu_cores"])
    np.testing.assert_allclose(cpu_line.get_xdata(), prof.table["time_s"])
    _, single = plt.subplots()
    assert prof.plot(ax=single) == [single]


def test_plot_profile_says_when_iowait_is_not_reported() -> None:
    prof = ResourceProfile(interval=0.1, wall_s=0.2, iowait_available=False, mem_total_bytes=10)
    prof.samples = [dict(time_s=t, dt_s=0.1, cpu_cores=1.0, rss_bytes=5.0, read_bytes=0.0, write_bytes=0.0,
                         read_chars=0.0, write_chars=0.0, iowait=np.nan, system_cpu=0.5,
                         other_cpu_cores=0.0, swap_bytes=0.0, n_processes=1.0) for t in (0.1, 0.2)]
    axes = plot_profile(prof)
    assert any("iowait not reported" in t.get_text() for t in axes[1].texts)


def test_plot_sweep_shows_measured_ideal_and_task_bound() -> None:
    t = pd.DataFrame({"workers": [1, 2, 4, 8], "wall_s": [80.0, 41.0, 22.0, 17.0], "n_tasks": 10,
                      "startup_s": [3.0, 3.1, 3.3, 3.9]})
    t["speedup"] = t["wall_s"].iloc[0] / t["wall_s"]
    t["efficiency"] = t["speedup"] / t["workers"]
    sp, eff = plot_sweep(SweepResult(table=t, executor="parsl"))
    lines = {ln.get_label(): ln for ln in sp.get_lines()}
    np.testing.assert_allclose(lines["measured"].get_ydata(), t["speedup"])
    np.testing.assert_allclose(lines["ideal"].get_ydata(), t["workers"])
    bound = lines["best with 10 tasks"]
    np.testing.assert_allclose(bound.get_ydata()[bound.get_xdata() == 8], [5.0])  # 10 / ceil(10/8)
    np.testing.assert_allclose(eff.get_lines()[0].get_ydata(), t["efficiency"])
