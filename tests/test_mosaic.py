"""The GeoTIFF mosaic as a lazy Dask array: layout, masking, totals, the chunk experiment.

One serial pipeline run on three shipped samples (22 tiles at z=13 scattered
over a 5 x 20 block, so most of the mosaic is missing tiles) is the reference.
Expected values come from the run's own ``run-summary.json`` and from reading
the GeoTIFFs with rasterio, tile by tile.
"""

from __future__ import annotations

import json
import math
import pickle
import shutil
from pathlib import Path

import dask.array as da
import morecantile
import numpy as np
import pyproj
import pytest
import rasterio

from grouputils.core.config import Config
from grouputils.core.errors import InputError, OutputError
from grouputils.core.rasterize import covered_area_m2, pixel_areas_m2, write_geotiff
from grouputils.core.tiles import Tile, Tiles, tile_from_path
from grouputils.outputs.mosaic import (
    config_from_outputs,
    covered_area_km2,
    make_large_mosaic,
    mosaic_totals,
    open_mosaic,
    pixel_area_m2,
    polygon_count,
)
from grouputils.teaching.lazy import chunk_experiment


@pytest.fixture(scope="module")
def run(three_scene_run: Config) -> Config:
    """A serial pipeline run on three samples (two overlap, so duplicates are flagged)."""
    return three_scene_run


@pytest.fixture(scope="module")
def summary(run: Config) -> dict:
    return json.loads((run.dir_output / "run-summary.json").read_text())


def tile_window(mosaic, tile: Tile) -> tuple[slice, slice]:
    """Rows and columns of ``tile`` in the mosaic, from the mosaic's tile origin."""
    size = mosaic.attrs["tile_size"]
    col0, row0 = mosaic.attrs["tile_origin"]
    r, c = (tile.y - row0) * size, (tile.x - col0) * size
    return slice(r, r + size), slice(c, c + size)


# ----------------------------------------------------------------------------- totals
def test_mosaic_totals_equal_the_pipeline_summary(run: Config, summary: dict) -> None:
    """Unique polygons exactly, covered area within 1e-6 (relative), as run-summary.json says."""
    totals = mosaic_totals(open_mosaic(run))
    assert summary["duplicates_flagged"] > 0  # the fixture exercises duplicates
    assert totals.unique_polygons == summary["unique_polygons"]
    assert isinstance(totals.unique_polygons, int)
    assert totals.covered_area_km2 == pytest.approx(summary["covered_area_km2"], rel=1e-6)


def test_totals_do_not_depend_on_the_chunks(run: Config) -> None:
    """Chunks not aligned with tiles, one chunk, and Dask's 'auto' give the same totals."""
    results = [mosaic_totals(open_mosaic(run, chunks=c)) for c in (200, (512, 300), None, "auto")]
    assert len({r.unique_polygons for r in results}) == 1
    areas = [r.covered_area_km2 for r in results]
    assert max(areas) == pytest.approx(min(areas), rel=1e-12)


def test_lazy_totals_are_dask_backed_until_computed(run: Config) -> None:
    """polygon_count and covered_area_km2 return lazy 0-d arrays that compute to the totals."""
    mosaic = open_mosaic(run)
    count, area = polygon_count(mosaic), covered_area_km2(mosaic)
    assert isinstance(count.data, da.Array) and isinstance(area.data, da.Array)
    totals = mosaic_totals(mosaic, scheduler="synchronous")
    assert float(count.compute()) == totals.unique_polygons
    assert float(area.compute()) == pytest.approx(totals.covered_area_km2, rel=1e-12)


def test_row_areas_match_geodesic_areas_of_the_pixels(run: Config) -> None:
    """Each row's pixel area equals pyproj.Geod's area of a pixel with parallels densified."""
    mosaic = open_mosaic(run)
    areas = pixel_area_m2(mosaic)
    assert areas.dims == ("y",) and areas.sizes["y"] == mosaic.sizes["y"]
    t = mosaic.rio.transform()
    geod = pyproj.Geod(ellps="WGS84")
    for row in (0, 517, mosaic.sizes["y"] - 1):
        top, bottom = t.f + row * t.e, t.f + (row + 1) * t.e
        lons = np.linspace(t.c, t.c + t.a, 50)
        ring_lon = np.concatenate([lons, lons[::-1]])
        ring_lat = np.concatenate([np.full(50, bottom), np.full(50, top)])
        expected, _ = geod.polygon_area_perimeter(ring_lon, ring_lat)
        assert float(areas[row]) == pytest.approx(abs(expected), rel=1e-6)


# ----------------------------------------------------------------------------- layout
def test_every_tile_appears_where_its_path_says_with_its_pixels(run: Config) -> None:
    """The mosaic's window of each tile equals the GeoTIFF's pixels, NaNs included."""
    mosaic = open_mosaic(run, chunks=300)
    values = mosaic.values  # the fixture is small: compare everything
    paths = Tiles(run).get_filenames_from_dir("geotiff", z=run.z)
    covered = np.zeros(values.shape[1:], dtype=bool)
    for path in paths:
        rows, cols = tile_window(mosaic, tile_from_path(path))
        with rasterio.open(path) as src:
            expected = src.read()
            tx = src.transform
        np.testing.assert_array_equal(values[:, rows, cols], expected)
        # pixel centres of the tile: same coordinates in the mosaic
        xs, ys = rasterio.transform.xy(tx, [0, 255], [0, 255])
        np.testing.assert_allclose(
            mosaic["x"].values[[cols.start, cols.stop - 1]], xs, rtol=0, atol=1e-9
        )
        np.testing.assert_allclose(
            mosaic["y"].values[[rows.start, rows.stop - 1]], ys, rtol=0, atol=1e-9
        )
        covered[rows, cols] = True
    assert not covered.all()  # some tiles are missing in the bounding box ...
    assert np.isnan(values[:, ~covered]).all()  # ... and read as nodata


def test_mosaic_is_in_the_tms_crs_with_statistics_as_bands(run: Config) -> None:
    """CRS and origin from morecantile, band coordinate = statistic names, NaN nodata."""
    mosaic = open_mosaic(run)
    tms = morecantile.tms.get(run.tms)
    assert mosaic.rio.crs == tms.rasterio_crs
    assert list(mosaic["band"].values) == list(run.statistic_names)
    assert list(mosaic["weight_by"].values) == [s.weight_by for s in run.statistics]
    assert math.isnan(mosaic.rio.nodata)
    assert mosaic.dtype == np.float32
    col0, row0 = mosaic.attrs["tile_origin"]
    b = tms.xy_bounds(Tile(col0, row0, run.z))
    t = mosaic.rio.transform()
    assert (t.c, t.f) == (b.left, b.top)
    assert t.a == pytest.approx((b.right - b.left) / run.tile_size, rel=1e-12)
    tiles = [tile_from_path(p) for p in Tiles(run).get_filenames_from_dir("geotiff", z=run.z)]
    n_rows = max(t.y for t in tiles) - min(t.y for t in tiles) + 1
    n_cols = max(t.x for t in tiles) - min(t.x for t in tiles) + 1
    assert mosaic.shape == (2, n_rows * run.tile_size, n_cols * run.tile_size)


def test_opening_reads_no_pixels_and_a_chunk_reads_only_its_tiles(run: Config, monkeypatch) -> None:
    """The mosaic is lazy: opening checks one header; computing one chunk opens one tile."""
    opened: list[str] = []
    real_open = rasterio.open

    def counting_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(rasterio, "open", counting_open)
    mosaic = open_mosaic(run, chunks=256)
    assert isinstance(mosaic.data, da.Array)
    assert len(opened) <= 1
    assert mosaic.chunksizes["y"][0] == 256 and mosaic.chunksizes["band"] == (2,)
    path = Tiles(run).get_filenames_from_dir("geotiff", z=run.z)[0]
    rows, cols = tile_window(mosaic, tile_from_path(path))
    opened.clear()
    block = mosaic.isel(y=rows, x=cols).compute()
    assert opened == [str(path)]
    assert np.isfinite(block.values).any()


def test_open_mosaic_from_the_output_folder_matches_the_config(run: Config) -> None:
    """A folder is enough: statistics and zoom are read from the GeoTIFFs."""
    rebuilt = config_from_outputs(run.dir_output)
    assert rebuilt.statistic_names == run.statistic_names
    assert [s.weight_by for s in rebuilt.statistics] == [s.weight_by for s in run.statistics]
    assert (rebuilt.z, rebuilt.tms, rebuilt.tile_size) == (run.z, run.tms, run.tile_size)
    a, b = open_mosaic(run.dir_output), open_mosaic(run)
    assert a.shape == b.shape
    np.testing.assert_array_equal(a.values, b.values)


def test_a_parent_zoom_level_opens_and_keeps_the_polygon_count(run: Config, summary: dict) -> None:
    """Counts resample by sum, so the z=12 mosaic holds the same number of polygons."""
    mosaic = open_mosaic(run, z=run.z - 1)
    assert mosaic.attrs["z"] == run.z - 1
    assert int(polygon_count(mosaic).compute()) == summary["unique_polygons"]


def test_the_mosaic_pickles_for_process_schedulers(run: Config) -> None:
    """A pickled mosaic (as sent to worker processes) reads the same values."""
    mosaic = open_mosaic(run, chunks=512)
    again = pickle.loads(pickle.dumps(mosaic))
    np.testing.assert_array_equal(again.values, mosaic.values)


def test_missing_geotiffs_raise_an_error_naming_the_folder(tmp_path: Path) -> None:
    config = Config(dir_input=tmp_path, dir_output=tmp_path / "out")
    with pytest.raises(InputError, match="holds no GeoTIFFs"):
        open_mosaic(config)
    with pytest.raises(InputError, match="geotiff"):
        open_mosaic(tmp_path / "out")


# ----------------------------------------------------------------------------- other TMS
def test_projected_tms_pixel_areas_and_totals_match_the_raster_engine(tmp_path: Path) -> None:
    """WebMercatorQuad: per-pixel areas and covered area agree with grouputils.core.rasterize."""
    config = Config(
        dir_input=tmp_path, dir_output=tmp_path / "out", tms="WebMercatorQuad", z=12, tile_size=64
    )
    tms = morecantile.tms.get(config.tms)
    t0 = tms.tile(-148.8, 70.0, config.z)
    rng = np.random.default_rng(3)
    written = {}
    for dx, dy in ((0, 0), (1, 0), (2, 1)):  # (1, 1) and (0, 1) are missing
        tile = Tile(t0.x + dx, t0.y + dy, config.z)
        counts = rng.integers(0, 3, (64, 64)).astype("f4")
        cover = rng.random((64, 64)).astype("f4")
        nodata = rng.random((64, 64)) < 0.3
        counts[nodata] = np.nan
        cover[nodata] = np.nan
        values = np.stack([counts, cover])
        write_geotiff(Tiles(config).path("geotiff", tile), values, tile, config)
        written[tile] = values
    mosaic = open_mosaic(config, chunks=40)
    areas = pixel_area_m2(mosaic)
    assert areas.dims == ("y", "x")
    for tile in written:
        rows, cols = tile_window(mosaic, tile)
        np.testing.assert_allclose(
            areas.values[rows, cols], pixel_areas_m2(tile, Tiles(config)), rtol=1e-6
        )
    totals = mosaic_totals(mosaic)
    assert totals.unique_polygons == int(sum(np.nansum(v[0]) for v in written.values()))
    assert totals.covered_area_km2 == pytest.approx(covered_area_m2(config) / 1e6, rel=1e-6)


# ----------------------------------------------------------------------------- experiment
def test_chunk_experiment_has_a_row_per_setting_and_never_changes_the_answer(
    run: Config, summary: dict
) -> None:
    """One row per (chunk, workers); smaller chunks mean more tasks; totals always equal."""
    table = chunk_experiment(run, chunk_sizes=(128, 512, None), workers=(1, 2), warm_up=False)
    assert len(table) == 6
    assert set(table["workers"]) == {1, 2}
    assert (table["unique_polygons"] == summary["unique_polygons"]).all()
    assert np.allclose(table["covered_area_km2"], summary["covered_area_km2"], rtol=1e-6)
    one = table[table["workers"] == 1].set_index("chunk_label")
    h, w = open_mosaic(run).shape[1:]
    assert one.loc["128", "n_chunks"] == math.ceil(h / 128) * math.ceil(w / 128)
    assert one.loc["one chunk", "n_chunks"] == 1
    assert one.loc["128", "n_tasks"] > one.loc["512", "n_tasks"] > one.loc["one chunk", "n_tasks"]
    assert (table["seconds"] > 0).all() and (table["peak_rss_mb"] > 0).all()
    assert one.loc["one chunk", "chunk_mb"] == pytest.approx(2 * h * w * 4 / 1e6)


def test_make_large_mosaic_repeats_the_tiles_with_their_own_georeferencing(
    run: Config, summary: dict, tmp_path: Path
) -> None:
    """Copies land on new tiles whose transform is morecantile's; counts scale with the copies."""
    big = make_large_mosaic(run, tmp_path / "big", repeat=(2, 3))
    src = Tiles(run).get_filenames_from_dir("geotiff", z=run.z)
    out = Tiles(big).get_filenames_from_dir("geotiff", z=run.z)
    assert len(out) == 6 * len(src)
    tms = morecantile.tms.get(run.tms)
    for path in out[:: max(1, len(out) // 10)]:
        tile = tile_from_path(path)
        with rasterio.open(path) as f:
            b = tms.xy_bounds(tile)
            assert f.bounds == pytest.approx((b.left, b.bottom, b.right, b.top), abs=1e-9)
    mosaic = open_mosaic(big)
    small = open_mosaic(run)
    assert mosaic.shape == (2, 2 * small.shape[1], 3 * small.shape[2])
    assert mosaic_totals(mosaic).unique_polygons == 6 * summary["unique_polygons"]
    assert open_mosaic(run).shape == small.shape  # the source is untouched
    with pytest.raises(OutputError):
        make_large_mosaic(run, run.dir_output)


def test_a_tile_that_does_not_match_the_others_is_named_when_read(
    run: Config, tmp_path: Path
) -> None:
    """A GeoTIFF with other bands, met while computing, raises InputError naming that file."""
    out = tmp_path / "out"
    shutil.copytree(run.dir_output / "geotiff", out / "geotiff")
    config = run.replace(dir_output=out)
    bad = Tiles(config).get_filenames_from_dir("geotiff", z=run.z)[-1]
    with rasterio.open(bad) as src:
        profile = src.profile
        one_band = src.read(1)
    profile.update(count=1)
    with rasterio.open(bad, "w", **profile) as dst:
        dst.write(one_band, 1)
    mosaic = open_mosaic(config)
    with pytest.raises(InputError, match=str(bad.name)):
        mosaic_totals(mosaic)


# ----------------------------------------------------------------------------- layers
def test_the_mosaic_imports_core_only() -> None:
    """outputs.mosaic loads neither run nor teaching (the lesson's experiment is teaching.lazy)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import grouputils.outputs.mosaic as m\n"
        "up = sorted(k for k in sys.modules\n"
        "            if k.startswith(('grouputils.run', 'grouputils.teaching')))\n"
        "assert not up, up\n"
        "assert not hasattr(m, 'chunk_experiment')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
