"""The raster engine: statistics, GeoTIFFs, pyramid, summary, safety.

Values are checked against independent computations: counts against
``rasterio.transform.rowcol`` of the staged centroids, coverage against the
exact area of the shapely union intersected with every pixel box, areas
against pyproj.Geod, tile geometry against morecantile.
"""

from __future__ import annotations

import multiprocessing
import pickle
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import geopandas as gpd
import morecantile
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import pytest
import rasterio
import rasterio.transform
import shapely
from PIL import Image

from grouputils.core.config import Config, Statistic
from grouputils.core.errors import InputError, NotFinalizedError
from grouputils.core.rasterize import (
    RasterTiler,
    compute_statistics,
    covered_area_m2,
    disjoint_parts,
    initialize_rasterizer,
    pixel_areas_m2,
    read_geotiff,
)
from grouputils.core.staging import initialize_stager, read_staged_tile
from grouputils.core.tiles import Tile, Tiles

TMS = morecantile.tms.get("WorldCRS84Quad")
T = Tile(1419, 909, 13)  # a tile of the real Prudhoe Bay file
EAST = Tile(1420, 909, 13)
SIZE = 256


# ------------------------------------------------------------------ helpers
def pixel_box(col0: float, row0: float, col1: float, row1: float, tile: Tile = T) -> shapely.Polygon:
    """A lon/lat box given in fractional pixel coordinates of ``tile`` (row 0 at the top)."""
    b = TMS.xy_bounds(tile)
    dx = (b.right - b.left) / SIZE
    dy = (b.top - b.bottom) / SIZE
    return shapely.box(b.left + col0 * dx, b.top - row1 * dy, b.left + col1 * dx, b.top - row0 * dy)


def write_input(folder: Path, name: str, geoms: list, areas: list[float]) -> Path:
    frame = gpd.GeoDataFrame({"Area": areas, "Class": [1] * len(geoms)}, geometry=geoms, crs="OGC:CRS84")
    path = folder / name
    pyogrio.write_dataframe(frame, path, layer="iwp")
    return path


def stage_all(dir_input: Path, dir_output: Path, **overrides):
    stager = initialize_stager(dir_input, dir_output, **overrides)
    for p in stager.tiles.get_filenames_from_dir("input"):
        stager.stage(p)
    stager.finalize(progress=False)
    return stager


def exact_coverage(geoms: np.ndarray, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """Reference coverage: area of (union of geoms) & pixel box / pixel box area, for every pixel."""
    b = TMS.xy_bounds(tile)
    parts = shapely.get_parts(shapely.union_all(geoms))
    xs = np.linspace(b.left, b.right, SIZE + 1)
    ys = np.linspace(b.top, b.bottom, SIZE + 1)
    x0, y0 = np.meshgrid(xs[:-1], ys[:-1])
    x1, y1 = np.meshgrid(xs[1:], ys[1:])
    boxes = shapely.box(x0.ravel(), y1.ravel(), x1.ravel(), y0.ravel())
    bi, pi = shapely.STRtree(parts).query(boxes, predicate="intersects")
    inter = shapely.area(shapely.intersection(boxes[bi], parts[pi]))
    cov = np.bincount(bi, weights=inter, minlength=SIZE * SIZE) / shapely.area(boxes)
    touched = np.bincount(bi, weights=(inter > 0).astype(float), minlength=SIZE * SIZE) > 0
    return cov.reshape(SIZE, SIZE), touched.reshape(SIZE, SIZE)


def reference_counts(frame: gpd.GeoDataFrame, tile: Tile, values: str | None = None, how: str = "sum") -> np.ndarray:
    """Per-pixel count (or aggregate of ``values``) of counted rows, via rasterio's rowcol."""
    b = TMS.xy_bounds(tile)
    transform = rasterio.transform.from_bounds(*b, SIZE, SIZE)
    rows = frame[frame.staging_centroid_within_tile & ~frame.staging_duplicated]
    r, c = rasterio.transform.rowcol(transform, rows.staging_centroid_x.to_numpy(), rows.staging_centroid_y.to_numpy())
    df = pd.DataFrame({"r": np.clip(r, 0, SIZE - 1), "c": np.clip(c, 0, SIZE - 1)})
    df["v"] = 1.0 if values is None else rows[values].to_numpy()
    out = np.full((SIZE, SIZE), np.nan)
    agg = df.groupby(["r", "c"])["v"].agg(how)
    out[agg.index.get_level_values(0), agg.index.get_level_values(1)] = agg.to_numpy()
    return out


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Two input files: overlapping polygons, a cross-file duplicate, an edge-crossing polygon, a sliver."""
    root = tmp_path_factory.mktemp("synthetic")
    dir_in = root / "input"
    dir_in.mkdir()
    a = pixel_box(10.25, 10.5, 13.75, 12.5)
    b = pixel_box(12.0, 11.0, 15.0, 13.0)  # overlaps a (same file: a distinct polygon)
    c = pixel_box(254.5, 100.2, 258.5, 101.7)  # crosses into EAST; centroid there
    e = pixel_box(50.9, 60.3, 51.02, 60.5)  # covers 0.004 of pixel (row 60, col 51)
    write_input(dir_in, "a_scene.gpkg", [a, b, c, e], [100.0, 50.0, 20.0, 1.0])
    write_input(dir_in, "b_scene.gpkg", [a], [999.0])  # the same polygon seen again: a duplicate
    stage_all(dir_in, root / "out")
    tiler = initialize_rasterizer(dir_in, root / "out")
    paths = tiler.tiles.get_filenames_from_dir("staged")
    tiler.rasterize_vectors(paths, progress=False)
    return tiler


@pytest.fixture(scope="module")
def real(tmp_path_factory, real_file):
    """The real Prudhoe Bay file staged, finalized and rasterized (z=13 only)."""
    root = tmp_path_factory.mktemp("real")
    stage_all(real_file.parent, root / "out")
    tiler = initialize_rasterizer(real_file.parent, root / "out")
    tiler.rasterize_vectors(tiler.tiles.get_filenames_from_dir("staged"), progress=False)
    return tiler


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A small synthetic dataset of 11 overlapping scenes (with labelled re-detections), staged and rasterized."""
    from grouputils.teaching.samples import generate_dataset

    root = tmp_path_factory.mktemp("generated")
    generate_dataset(root / "input", total_features=3000)
    stage_all(root / "input", root / "out")
    tiler = initialize_rasterizer(root / "input", root / "out")
    tiler.rasterize_vectors(tiler.tiles.get_filenames_from_dir("staged"), make_parents=True, progress=False)
    return tiler


def shipped_samples() -> list[Path]:
    from grouputils.teaching.samples import sample_dir

    try:
        return sorted(sample_dir().glob("*.gpkg"))
    except InputError:
        return []


def band(tiler: RasterTiler, tile: Tile, name: str) -> np.ndarray:
    values = read_geotiff(tiler.tiles.path("geotiff", tile), tiler.config)
    return values[tiler.config.statistic_names.index(name)].astype("f8")


# ------------------------------------------------------------------ API
def test_initialize_rasterizer_shares_the_stagers_config(tmp_path, real_file):
    stager = initialize_stager(real_file.parent, tmp_path / "out", z=12)
    tiler = initialize_rasterizer(real_file.parent, tmp_path / "out", z=12)
    assert tiler.config == stager.config
    assert tiler.tiles.get_parent_tile(Tile(1419, 909, 13)) == Tile(709, 454, 12)


def test_rasterize_vector_returns_the_tile_and_writes_its_geotiff(synthetic):
    path = synthetic.tiles.path("staged", T)
    assert synthetic.rasterize_vector(path) == T
    assert synthetic.tiles.path("geotiff", T).is_file()


def test_tiler_and_config_pickle_with_their_statistics():
    extra = Statistic("mean_Area", weight_by="attribute", attribute="Area", aggregate="mean", resampling="mean")
    config = Config(dir_input=Path("in"), statistics=(*Config(dir_input=Path("in")).statistics, extra))
    clone = pickle.loads(pickle.dumps(RasterTiler(config)))
    assert clone.config == config
    assert clone.config.statistics[-1] == extra


# ------------------------------------------------------------------ counts
def test_count_band_equals_centroid_counts_of_non_duplicates(synthetic):
    for tile in (T, EAST):
        frame = read_staged_tile(synthetic.tiles.path("staged", tile), synthetic.config)
        got = band(synthetic, tile, "number_IWP_per_pixel")
        want = reference_counts(frame, tile)
        has = ~np.isnan(want)
        np.testing.assert_array_equal(got[has], want[has])
        assert np.nansum(got) == np.nansum(want)


def test_counts_over_all_tiles_equal_the_number_of_unique_polygons(synthetic):
    total = sum(np.nansum(band(synthetic, t, "number_IWP_per_pixel")) for t in (T, EAST))
    assert total == 4  # a, b, c, e; the second scene's copy of a is a duplicate


def test_real_counts_sum_to_every_polygon_of_the_file(real, real_file):
    n = len(pyogrio.read_dataframe(real_file, read_geometry=False))
    tiles = real.tiles.tiles_in("geotiff", z=13)
    assert sum(np.nansum(band(real, t, "number_IWP_per_pixel")) for t in tiles) == n
    frame = read_staged_tile(real.tiles.path("staged", T), real.config)
    got = band(real, T, "number_IWP_per_pixel")
    want = reference_counts(frame, T)
    np.testing.assert_array_equal(got[~np.isnan(want)], want[~np.isnan(want)])


def test_counts_over_generated_scenes_equal_polygons_minus_labelled_redetections(generated):
    inputs = generated.tiles.get_filenames_from_dir("input")
    n_read = sum(len(pyogrio.read_dataframe(p, read_geometry=False)) for p in inputs)
    labels = pd.read_csv(generated.config.dir_input / "redetections.csv")
    assert len(labels) > 0
    flagged = 0
    for p in generated.tiles.get_filenames_from_dir("staged"):
        frame = read_staged_tile(p, generated.config)
        flagged += int((frame.staging_centroid_within_tile & frame.staging_duplicated).sum())
        tile = generated.tiles.tile_from_path(p)
        got = band(generated, tile, "number_IWP_per_pixel")
        want = reference_counts(frame, tile)
        np.testing.assert_array_equal(got[~np.isnan(want)], want[~np.isnan(want)])
    total = {
        z: sum(np.nansum(band(generated, t, "number_IWP_per_pixel")) for t in generated.tiles.tiles_in("geotiff", z=z))
        for z in range(14)
    }
    assert total[13] == n_read - flagged
    assert abs(flagged - len(labels)) <= 0.05 * len(labels)  # staging's dedup against the generator's labels
    assert set(total.values()) == {n_read - flagged}  # conserved up to zoom 0


def test_generated_scenes_coverage_is_exact_where_duplicates_overlap(generated):
    busiest = max(
        generated.tiles.get_filenames_from_dir("staged"),
        key=lambda p: read_staged_tile(p, generated.config).staging_duplicated.sum(),
    )
    frame = read_staged_tile(busiest, generated.config)
    assert frame.staging_duplicated.any()
    tile = generated.tiles.tile_from_path(busiest)
    want, touched = exact_coverage(frame.geometry.values[~frame.staging_duplicated.to_numpy()], tile)
    got = band(generated, tile, "prop_pixel_covered_by_IWP")
    np.testing.assert_allclose(np.nan_to_num(got), want, atol=1e-6)
    with_dups, _ = exact_coverage(frame.geometry.values, tile)
    assert not np.allclose(with_dups, want, atol=1e-6)  # so the duplicates really were left out


def test_shipped_samples_rasterize_with_counts_conserved(tmp_path):
    files = shipped_samples()
    if not files:
        pytest.skip("no shipped samples in data-samples/ yet")
    stage_all(files[0].parent, tmp_path / "out")
    tiler = initialize_rasterizer(files[0].parent, tmp_path / "out")
    staged = tiler.tiles.get_filenames_from_dir("staged")
    tiler.rasterize_vectors(staged, make_parents=True, progress=False)
    unique = 0
    for p in staged:
        frame = read_staged_tile(p, tiler.config)
        unique += int((frame.staging_centroid_within_tile & ~frame.staging_duplicated).sum())
    for z in (13, 7, 0):
        assert sum(np.nansum(band(tiler, t, "number_IWP_per_pixel")) for t in tiler.tiles.tiles_in("geotiff", z=z)) == unique
    summary = pd.read_csv(tiler.config.filename_rasterization_summary)
    assert len(summary) == len(tiler.tiles.get_filenames_from_dir("geotiff"))
    assert np.nanmax([np.nanmax(band(tiler, t, "prop_pixel_covered_by_IWP")) for t in tiler.tiles.tiles_in("geotiff", z=13)]) <= 1.0


# ------------------------------------------------------------------ coverage
def test_disjoint_parts_have_the_union_of_their_input_and_do_not_overlap():
    rng = np.random.default_rng(7)
    x, y = rng.uniform(0, 10, (2, 60))
    boxes = list(shapely.box(x, y, x + rng.uniform(0.5, 2, 60), y + rng.uniform(0.5, 2, 60)))
    bowtie = shapely.Polygon([(20, 20), (22, 22), (22, 20), (20, 22)])  # invalid: self-intersecting
    geoms = np.array(boxes + [bowtie, None, shapely.Polygon()], dtype=object)
    parts = disjoint_parts(geoms)
    assert set(shapely.get_type_id(parts)) == {3}
    union = shapely.union_all(shapely.make_valid(geoms[:-2]))
    assert shapely.area(parts).sum() == pytest.approx(union.area, rel=1e-12)
    assert shapely.area(shapely.symmetric_difference(shapely.union_all(parts), union)) < 1e-9
    i, j = shapely.STRtree(parts).query(parts, predicate="intersects")
    assert shapely.area(shapely.intersection(parts[i[i < j]], parts[j[i < j]])).max(initial=0) < 1e-12


def test_overlapping_polygons_are_not_counted_twice(synthetic):
    cov = band(synthetic, T, "prop_pixel_covered_by_IWP")
    assert np.nanmax(cov) <= 1.0
    # pixel (row 11, col 12) lies inside both a and b, and a's duplicate: fully covered, once.
    assert cov[11, 12] == pytest.approx(1.0, abs=1e-9)
    # pixel (row 10, col 10) is covered by a over cols 10.25-11, rows 10.5-11
    assert cov[10, 10] == pytest.approx(0.75 * 0.5, abs=1e-4)  # staging moves vertices by ~1e-5 px


def test_coverage_equals_exact_union_area_per_pixel(synthetic):
    for tile in (T, EAST):
        frame = read_staged_tile(synthetic.tiles.path("staged", tile), synthetic.config)
        want, touched = exact_coverage(frame.geometry.values[~frame.staging_duplicated.to_numpy()], tile)
        got = band(synthetic, tile, "prop_pixel_covered_by_IWP")
        np.testing.assert_allclose(np.nan_to_num(got), want, atol=1e-6)
        assert (~np.isnan(got) == touched).all()


def test_real_tile_coverage_meets_the_error_bars_against_an_exact_reference(real):
    frame = read_staged_tile(real.tiles.path("staged", T), real.config)
    geoms = frame.geometry.values[~frame.staging_duplicated.to_numpy()]
    want, touched = exact_coverage(geoms, T)
    got = band(real, T, "prop_pixel_covered_by_IWP")
    err = np.abs(np.nan_to_num(got) - want)
    assert err.mean() <= 0.002
    assert err.max() <= 0.05
    b = TMS.xy_bounds(T)
    pixel_area = (b.right - b.left) * (b.top - b.bottom) / SIZE**2  # degrees^2, like the union's
    union_in_tile = shapely.area(shapely.intersection(shapely.union_all(geoms), shapely.box(*b)))
    assert np.nansum(got) * pixel_area == pytest.approx(union_in_tile, rel=0.002)
    # the real file has overlapping polygons: a plain sum of areas would exceed the union
    assert shapely.area(shapely.intersection(geoms, shapely.box(*b))).sum() > union_in_tile * 1.001
    assert np.nanmax(got) <= 1.0
    assert ((~np.isnan(got)) == (touched | ~np.isnan(reference_counts(frame, T)))).all()


def test_nodata_where_nothing_touches_and_touched_pixels_keep_small_values(synthetic):
    cov = band(synthetic, T, "prop_pixel_covered_by_IWP")
    cnt = band(synthetic, T, "number_IWP_per_pixel")
    # the sliver e covers 0.02 x 0.2 of pixel (row 60, col 51); its centroid is in col 50
    assert cov[60, 51] == pytest.approx(0.02 * 0.2, rel=1e-3)
    assert cnt[60, 51] == 0.0
    assert cnt[60, 50] == 1.0
    assert np.isnan(cov[200, 200]) and np.isnan(cnt[200, 200])
    assert (np.isnan(cov) == np.isnan(cnt)).all()


def test_covered_area_equals_the_geodesic_area_of_the_union(real, real_file):
    frame = pyogrio.read_dataframe(real_file)
    union = shapely.union_all(frame.to_crs("OGC:CRS84").geometry.values)
    geod_area = abs(pyproj.Geod(ellps="WGS84").geometry_area_perimeter(union)[0])
    assert covered_area_m2(real.config) == pytest.approx(geod_area, rel=0.002)


def test_pixel_areas_match_geodesic_areas(real):
    areas = pixel_areas_m2(T, real.tiles)
    b = TMS.xy_bounds(T)
    geod = pyproj.Geod(ellps="WGS84")
    for r, c in [(0, 0), (128, 77), (255, 255)]:
        box = pixel_box(c, r, c + 1, r + 1)
        want = abs(geod.geometry_area_perimeter(box)[0])
        assert areas[r, c] == pytest.approx(want, rel=1e-5)
    assert areas.sum() == pytest.approx(abs(geod.geometry_area_perimeter(shapely.box(*b))[0]), rel=1e-5)


def test_exact_lonlat_pixel_areas_agree_with_the_equal_area_shoelace():
    """The two area methods of core/raster/areas.py agree on lon/lat pixels at any latitude (issue 16)."""
    from grouputils.core.raster.areas import cell_areas_m2

    tiles = Tiles(Config(dir_input=Path("in"), dir_output=Path("out")))
    crs = pyproj.CRS.from_wkt(tiles.tms.crs.to_wkt())
    for tile in (T, Tile(8191, 100, 13), Tile(4000, 4095, 13), Tile(3, 1, 3)):
        left, bottom, right, top = tiles.bounds(tile)
        gx, gy = np.meshgrid(np.linspace(left, right, SIZE + 1), np.linspace(top, bottom, SIZE + 1))
        shoelace = cell_areas_m2(gx, gy, crs, centre=((left + right) / 2, (bottom + top) / 2))
        rel = 1e-6 if tile.z == 13 else 2e-3  # corners joined by straight lines in a 45-degree tile
        np.testing.assert_allclose(pixel_areas_m2(tile, tiles), shoelace, rtol=rel)


def test_geotiff_tags_are_the_names_of_the_one_tag_schema(synthetic):
    """Writer, summary, catalogue and mosaic read the same names: grouputils.core.raster.tags (issue 16)."""
    from grouputils.core.raster import tags as schema

    path = synthetic.tiles.path("geotiff", T)
    with rasterio.open(path) as src:
        dataset = src.tags()
        bands = [src.tags(b) for b in range(1, src.count + 1)]
    assert dataset[schema.TILE_TAG] == "Tile(x=1419, y=909, z=13)"
    assert dataset[schema.TMS_TAG] == "WorldCRS84Quad"
    assert schema.read_summary(dataset)["kind"] == "rasterized"
    assert {k for k in dataset if k.startswith(schema.TAG_PREFIX)} <= {
        schema.TILE_TAG,
        schema.TMS_TAG,
        *(schema.summary_tag(f) for f in schema.SUMMARY_FIELDS),
    }
    values = read_geotiff(path, synthetic.config)
    for band, tags, stat in zip(values, bands, synthetic.config.statistics, strict=True):
        assert set(schema.RULE_TAGS.values()) <= set(tags)
        assert set(schema.BAND_STATISTICS.values()) <= set(tags)
        read = schema.read_band_statistics(tags)
        assert read["sum"] == float(np.nansum(band.astype("f8")))
        assert read["maximum"] == float(np.nanmax(band))
        assert tags[schema.RULE_TAGS["weight_by"]] == stat.weight_by


def test_web_mercator_tiles_give_the_same_counts_and_covered_area(real, real_file, tmp_path):
    stage_all(real_file.parent, tmp_path / "out", tms="WebMercatorQuad", z=15)
    tiler = initialize_rasterizer(real_file.parent, tmp_path / "out", tms="WebMercatorQuad", z=15)
    tiler.rasterize_vectors(tiler.tiles.get_filenames_from_dir("staged"), progress=False)
    tiles = tiler.tiles.tiles_in("geotiff", z=15)
    assert sum(np.nansum(band(tiler, t, "number_IWP_per_pixel")) for t in tiles) == 14281
    assert covered_area_m2(tiler.config) == pytest.approx(covered_area_m2(real.config), rel=1e-4)
    with rasterio.open(tiler.tiles.path("geotiff", tiles[0])) as src:
        assert src.crs.to_epsg() == 3857
        wm = morecantile.tms.get("WebMercatorQuad")
        assert tuple(src.bounds) == pytest.approx(tuple(wm.xy_bounds(tiles[0])), abs=1e-6, rel=0)


# ------------------------------------------------------------------ declared statistics
def _rasterize_in_child_process(config: Config, path: Path) -> Tile:
    return RasterTiler(config).rasterize_vector(path)


def test_the_rasterizer_names_an_attribute_column_the_staged_tile_lacks(synthetic, tmp_path):
    # the rasterizer reads only the columns its statistics need: one the file
    # lacks is still an error naming it, not a band of NaN
    stat = Statistic("m", weight_by="attribute", attribute="NoSuchColumn", aggregate="max")
    config = synthetic.config.replace(statistics=(*synthetic.config.statistics, stat))
    with pytest.raises(InputError, match="NoSuchColumn"):
        RasterTiler(config).rasterize_vector(synthetic.tiles.path("staged", T))


def test_a_third_statistic_declared_in_config_runs_in_another_process(synthetic, tmp_path):
    mean_area = Statistic(
        "mean_Area_per_pixel", weight_by="attribute", attribute="Area", aggregate="mean",
        resampling="mean", palette="cividis", value_range=(0.0, 500.0), unit="m2",
    )
    src = synthetic.config.dir_output
    out = tmp_path / "out"
    shutil.copytree(src / "staged", out / "staged")
    shutil.copytree(src / "staging-parts", out / "staging-parts")
    config = synthetic.config.replace(dir_output=out, statistics=(*synthetic.config.statistics, mean_area))
    config = pickle.loads(pickle.dumps(config))
    staged = config.dir_staged / config.tms / "13" / str(T.x) / f"{T.y}.gpkg"
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        assert pool.submit(_rasterize_in_child_process, config, staged).result() == T
    tiler = RasterTiler(config)
    with rasterio.open(tiler.tiles.path("geotiff", T)) as src_:
        assert src_.descriptions == config.statistic_names
    got = band(tiler, T, "mean_Area_per_pixel")
    frame = read_staged_tile(staged, config)
    want = reference_counts(frame, T, values="Area", how="mean")
    has = ~np.isnan(want)
    np.testing.assert_allclose(got[has], want[has], rtol=1e-6)
    assert 999.0 not in got  # the duplicate's attribute is ignored
    # data pixels without a centroid have no mean, but the other bands keep their values
    cov = band(tiler, T, "prop_pixel_covered_by_IWP")
    assert np.isnan(got[~has]).all() and (~np.isnan(cov[~has])).any()


def test_attribute_statistic_needs_its_column(synthetic):
    frame = read_staged_tile(synthetic.tiles.path("staged", T), synthetic.config).drop(columns="Area")
    stat = Statistic("s", weight_by="attribute", attribute="Area", aggregate="max")
    config = synthetic.config.replace(statistics=(stat,))
    with pytest.raises(InputError, match="Area"):
        compute_statistics(frame, TMS.xy_bounds(T), config, path="x.gpkg")


# ------------------------------------------------------------------ GeoTIFF format
def test_geotiff_is_compressed_tiled_float32_with_nodata_and_exact_bounds(real):
    for tile in real.tiles.tiles_in("geotiff"):
        with rasterio.open(real.tiles.path("geotiff", tile)) as src:
            assert (src.width, src.height) == (256, 256)
            assert src.descriptions == real.config.statistic_names
            assert set(src.dtypes) == {"float32"}
            assert np.isnan(src.nodata)
            structure = src.tags(ns="IMAGE_STRUCTURE")
            assert structure["COMPRESSION"] in ("DEFLATE", "ZSTD")
            assert src.profile["tiled"] and src.block_shapes[0][0] < 256
            # GeoTIFF stores CRS84 as EPSG:4326 with (lon, lat) coordinates
            assert pyproj.CRS(src.crs).equals(pyproj.CRS("OGC:CRS84"), ignore_axis_order=True)
            b = TMS.xy_bounds(tile)
            assert tuple(src.bounds) == pytest.approx(tuple(b), abs=1e-12, rel=0)
            assert src.transform == rasterio.transform.from_bounds(*b, 256, 256)


def test_every_geotiff_is_a_valid_cloud_optimized_geotiff_at_every_zoom_level(generated):
    from rio_cogeo.cogeo import cog_validate

    tiles = generated.tiles.tiles_in("geotiff")
    assert {t.z for t in tiles} == set(range(14))  # z13 tiles and every parent level
    for tile in tiles:
        path = generated.tiles.path("geotiff", tile)
        valid, errors, warnings_ = cog_validate(str(path), strict=True)
        assert valid and not errors and not warnings_, (path, errors, warnings_)
        with rasterio.open(path) as src:
            # the COG layout keeps the compression, bands, nodata and statistics tags
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert src.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
            assert src.descriptions == generated.config.statistic_names
            assert np.isnan(src.nodata)
            assert "STATISTICS_VALID_PERCENT" in src.tags(1)


# ------------------------------------------------------------------ pyramid
def test_pyramid_conserves_counts_at_every_level_to_zoom_zero(real, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(real.config.dir_output, out)
    tiler = RasterTiler(real.config.replace(dir_output=out))
    z13 = tiler.tiles.tiles_in("geotiff", z=13)
    made = tiler.parent_geotiffs_from_children(z13, recursive=True)
    assert {t.z for t in made} == set(range(13))
    assert tiler.tiles.tiles_in("geotiff", z=0) == [Tile(0, 0, 0)]
    totals = {
        z: sum(np.nansum(band(tiler, t, "number_IWP_per_pixel")) for t in tiler.tiles.tiles_in("geotiff", z=z))
        for z in range(14)
    }
    assert set(totals.values()) == {14281.0}


def test_parent_counts_sum_and_coverage_averages_with_missing_children_as_zero(synthetic, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(synthetic.config.dir_output, out)
    tiler = RasterTiler(synthetic.config.replace(dir_output=out))
    assert tiler.parent_geotiffs_from_children([T, EAST]) == [Tile(709, 454, 12), Tile(710, 454, 12)]
    parent = Tile(709, 454, 12)
    # T = (1419, 909) is the bottom-right child of (709, 454): parent pixels rows/cols 128..255
    child_cnt = band(tiler, T, "number_IWP_per_pixel")
    child_cov = band(tiler, T, "prop_pixel_covered_by_IWP")
    cnt = band(tiler, parent, "number_IWP_per_pixel")
    cov = band(tiler, parent, "prop_pixel_covered_by_IWP")
    blocks = lambda a: a.reshape(128, 2, 128, 2)  # noqa: E731
    any_data = (~np.isnan(blocks(child_cov))).any(axis=(1, 3))
    want_cnt = np.where(any_data, np.nansum(blocks(child_cnt), axis=(1, 3)), np.nan)
    want_cov = np.where(any_data, np.nansum(blocks(child_cov), axis=(1, 3)) / 4, np.nan)
    np.testing.assert_array_equal(cnt[128:, 128:], want_cnt.astype("f4"))
    np.testing.assert_allclose(cov[128:, 128:], want_cov, rtol=1e-6)
    assert np.isnan(cnt[:128]).all() and np.isnan(cnt[:, :128]).all()  # missing children: nodata
    # a pixel half covered among four child pixels of which three are nodata is 1/8, not 1/2
    assert np.nanmax(cov) <= 1.0


def test_parents_of_parents_only_when_recursive(synthetic, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(synthetic.config.dir_output, out)
    tiler = RasterTiler(synthetic.config.replace(dir_output=out))
    tiler.parent_geotiffs_from_children([T])
    assert tiler.tiles.tiles_in("geotiff", z=11) == []
    tiler.rasterize_vectors([tiler.tiles.path("staged", T)], make_parents=True, progress=False)
    assert tiler.tiles.tiles_in("geotiff", z=0) == [Tile(0, 0, 0)]


def test_parents_built_in_memory_equal_parents_built_one_by_one_from_disk(real, tmp_path):
    """Depth first with children in memory (and web tiles from those bands) gives the per-tile outputs."""
    trees = {}
    for how in ("disk", "memory"):
        out = tmp_path / how
        shutil.copytree(real.config.dir_output, out)
        trees[how] = RasterTiler(real.config.replace(dir_output=out))
    z13 = trees["disk"].tiles.tiles_in("geotiff", z=13)
    by_disk, level = [], z13
    while level[0].z > 0:
        level = sorted({trees["disk"].tiles.get_parent_tile(t) for t in level})
        for t in level:
            trees["disk"].parent_geotiff(t)
            trees["disk"].webtile(trees["disk"].tiles.path("geotiff", t))
        by_disk += level
    made = trees["memory"].parent_geotiffs_from_children(z13, recursive=True, webtiles=True)
    assert sorted(made) == sorted(by_disk) and len(made) == len(set(made))
    for t in made:
        a = trees["disk"].tiles.path("geotiff", t)
        b = trees["memory"].tiles.path("geotiff", t)
        assert read_geotiff(a, real.config).tobytes() == read_geotiff(b, real.config).tobytes(), t
        for name in real.config.statistic_names:
            pa = trees["disk"].tiles.path("web_tiles", t, name)
            pb = trees["memory"].tiles.path("web_tiles", t, name)
            assert np.array_equal(np.asarray(Image.open(pa)), np.asarray(Image.open(pb))), (t, name)


def test_resampling_is_bit_identical_to_reducing_the_assembled_2x2_blocks():
    """Each child reduced on its own equals NumPy's sum over the 2x2 blocks of the 512x512 mosaic."""
    from grouputils.core.rasterize import resample_children

    stats = (
        Statistic("n", weight_by="count", resampling="sum"),
        Statistic("c", weight_by="coverage", resampling="mean"),
        Statistic("m", weight_by="attribute", attribute="a", aggregate="mean", resampling="mean"),
    )
    rng = np.random.default_rng(16)
    for trial in range(6):
        children = []
        for k in range(4):
            if trial and k == trial % 4:
                children.append(None)
                continue
            x = (rng.random((3, 64, 64)) * 10.0 ** rng.integers(-12, 6, (3, 64, 64))).astype("f4")
            x[rng.random(x.shape) < 0.4] = np.nan
            children.append(x)
        mosaic = np.full((3, 128, 128), np.nan)
        for k, c in enumerate(children):
            if c is not None:
                r, q = divmod(k, 2)
                mosaic[:, r * 64 : (r + 1) * 64, q * 64 : (q + 1) * 64] = c
        blocks = mosaic.reshape(3, 64, 2, 64, 2)
        valid = ~np.isnan(blocks)
        n = valid.sum(axis=(2, 4))
        sums = np.where(valid, blocks, 0.0).sum(axis=(2, 4))
        with np.errstate(invalid="ignore", divide="ignore"):
            want = np.stack([sums[0], sums[1] / 4.0, sums[2] / n[2]])
        want[n == 0] = np.nan
        got = resample_children(children, stats)
        assert got.dtype == np.float32
        assert got.tobytes() == want.astype("f4").tobytes(), trial


# ------------------------------------------------------------------ summary
def test_summary_has_one_row_per_geotiff_even_after_reruns(synthetic, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(synthetic.config.dir_output, out)
    tiler = RasterTiler(synthetic.config.replace(dir_output=out))
    paths = tiler.tiles.get_filenames_from_dir("staged")
    tiler.rasterize_vectors(paths, make_parents=True, progress=False)
    tiler.rasterize_vectors(paths, make_parents=True, progress=False)
    summary = pd.read_csv(tiler.config.filename_rasterization_summary)
    on_disk = tiler.tiles.tiles_in("geotiff")
    assert len(summary) == len(on_disk) and not summary.duplicated(["z", "x", "y"]).any()
    assert set(zip(summary.x, summary.y, summary.z)) == set(on_disk)
    z13 = summary[summary.z == 13]
    assert z13.number_IWP_per_pixel_sum.sum() == 4
    assert z13.n_duplicated.sum() == 1
    assert (summary.groupby("z").number_IWP_per_pixel_sum.sum() == 4).all()


def test_summary_of_an_empty_project_has_the_columns_and_no_rows(tmp_path):
    tiler = initialize_rasterizer(tmp_path / "in", tmp_path / "out")
    path = tiler.write_summary()
    frame = pd.read_csv(path)
    assert len(frame) == 0
    assert {"tile", "z", "x", "y", "number_IWP_per_pixel_sum", "prop_pixel_covered_by_IWP_max"} <= set(frame.columns)


# ------------------------------------------------------------------ safety
def test_parallel_rasterization_equals_serial(real, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(real.config.dir_output / "staged", out / "staged")
    shutil.copytree(real.config.dir_output / "staging-parts", out / "staging-parts")
    tiler = RasterTiler(real.config.replace(dir_output=out))
    paths = tiler.tiles.get_filenames_from_dir("staged")
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        tiles = list(pool.map(tiler.rasterize_vector, paths))
    assert tiles == [tiler.tiles.tile_from_path(p) for p in paths]
    tiler.write_summary()
    for tile in tiles:
        with rasterio.open(tiler.tiles.path("geotiff", tile)) as par, rasterio.open(real.tiles.path("geotiff", tile)) as ser:
            np.testing.assert_array_equal(par.read(), ser.read())
            assert par.tags() == ser.tags()
    serial = real.summary().drop(columns="path")
    parallel = tiler.summary().drop(columns="path")
    pd.testing.assert_frame_equal(parallel, serial)


def test_rerun_overwrites_and_a_crash_mid_write_keeps_the_old_geotiff(synthetic, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(synthetic.config.dir_output, out)
    tiler = RasterTiler(synthetic.config.replace(dir_output=out))
    staged = tiler.tiles.path("staged", T)
    tif = tiler.tiles.path("geotiff", T)
    before = tif.read_bytes()
    tiler.rasterize_vector(staged)
    assert tif.read_bytes() == before  # rerun: same content, replaced in place

    import grouputils.core.raster.geotiff as rz

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing tags")

    monkeypatch.setattr(rz, "tile_to_str", crash)  # called after the pixels are written
    with pytest.raises(KeyboardInterrupt):
        tiler.rasterize_vector(staged)
    assert tif.read_bytes() == before
    assert [p.name for p in tif.parent.iterdir()] == [tif.name]  # no temporary left behind


def test_missing_staged_file_is_an_input_error_naming_it(synthetic):
    path = synthetic.tiles.path("staged", Tile(5, 5, 13))
    with pytest.raises(InputError, match=str(path)):
        synthetic.rasterize_vector(path)


def test_corrupt_staged_file_is_an_input_error_naming_it(synthetic, tmp_path):
    path = tmp_path / "staged" / "WorldCRS84Quad" / "13" / str(T.x) / f"{T.y}.gpkg"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a geopackage at all" * 100)
    tiler = RasterTiler(synthetic.config.replace(dir_output=tmp_path))
    with pytest.raises(InputError, match=str(path)):
        tiler.rasterize_vector(path)
    assert not tiler.tiles.path("geotiff", T).exists()


def test_file_without_staging_columns_is_refused(synthetic, tmp_path):
    path = tmp_path / "staged" / "WorldCRS84Quad" / "13" / str(T.x) / f"{T.y}.gpkg"
    path.parent.mkdir(parents=True)
    frame = gpd.GeoDataFrame({"Area": [1.0]}, geometry=[pixel_box(1, 1, 2, 2)], crs="OGC:CRS84")
    pyogrio.write_dataframe(frame, path, layer="staged")
    tiler = RasterTiler(synthetic.config.replace(dir_output=tmp_path))
    with pytest.raises(InputError, match=str(path)):
        tiler.rasterize_vector(path)
    with pytest.raises(InputError, match="staging columns"):
        compute_statistics(frame, TMS.xy_bounds(T), tiler.config, path=path)


def test_tile_not_finalized_after_new_input_is_refused(tmp_path):
    dir_in = tmp_path / "in"
    dir_in.mkdir()
    write_input(dir_in, "a.gpkg", [pixel_box(10, 10, 12, 12)], [1.0])
    stager = stage_all(dir_in, tmp_path / "out")
    tiler = initialize_rasterizer(dir_in, tmp_path / "out")
    staged = tiler.tiles.path("staged", T)
    assert tiler.rasterize_vector(staged) == T
    stager.stage(write_input(dir_in, "b.gpkg", [pixel_box(30, 30, 32, 32)], [2.0]))
    with pytest.raises(NotFinalizedError, match=str(staged)):
        tiler.rasterize_vector(staged)
    stager.finalize(progress=False)
    tiler.rasterize_vector(staged)
    assert np.nansum(band(tiler, T, "number_IWP_per_pixel")) == 2


@pytest.mark.parametrize("name", ["13/1419/tile.gpkg", "1419/909.gpkg", "x/13/1419/-9.gpkg"])
def test_path_that_is_not_z_x_y_is_an_input_error_naming_it(synthetic, tmp_path, name):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(synthetic.tiles.path("staged", T), path)
    with pytest.raises(InputError, match=str(path.name)):
        synthetic.rasterize_vector(path)


def test_geotiff_with_other_statistics_is_refused_by_parents(synthetic, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(synthetic.config.dir_output, out)
    other = Statistic("other", weight_by="count")
    tiler = RasterTiler(synthetic.config.replace(dir_output=out, statistics=(other,)))
    with pytest.raises(InputError, match=str(tiler.tiles.path("geotiff", T))):
        tiler.parent_geotiff(Tile(709, 454, 12))


def test_parent_without_any_child_geotiff_is_an_input_error(synthetic):
    with pytest.raises(InputError, match="no child GeoTIFF of Tile\\(x=3, y=3, z=12\\)"):
        synthetic.parent_geotiff(Tile(3, 3, 12))
