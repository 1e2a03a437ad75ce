"""Staging (issue 4), as a specification.

Every promise of ``initialize_stager`` / ``TileStager`` is checked against an
independent computation: pyproj.Geod for areas, shapely for centroids,
morecantile for tile membership, geopandas/pyproj for reprojection, and a
serial run for parallel, interrupted and repeated runs.

Fixtures are small GeoPackages built here with shapely and written with
pyogrio, placed at Prudhoe Bay (EPSG:3413) where the real detections are; the
real file (../shared/data/iwp-real) is used where present.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import pickle
import signal
import stat
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import geopandas as gpd
import morecantile
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pyogrio
import pyproj
import pytest
import shapely
from geopandas.testing import assert_geodataframe_equal

from grouputils.core.config import Config
from grouputils.core.errors import (
    ConfigError,
    InputError,
    MissingCRSWarning,
    NotFinalizedError,
    OutputError,
    RepairWarning,
)
from grouputils.core.staging import STAGING_COLUMNS, TileStager, initialize_stager, read_staged_tile
from grouputils.core.staging import parts as parts_module
from grouputils.core.staging.parts import read_part
from grouputils.core.tiles import Tile, str_to_tile, tile_from_path

Z = 13
TMS = morecantile.tms.get("WorldCRS84Quad")
LL_TO_3413 = pyproj.Transformer.from_crs("OGC:CRS84", "EPSG:3413", always_xy=True)
GEOD = pyproj.Geod(ellps="WGS84")
HOME = Tile(1418, 908, Z)  # the z=13 tile of the real Prudhoe Bay detections


# ------------------------------------------------------------------ builders
def tile_bounds(col: int, row: int) -> morecantile.BoundingBox:
    return TMS.xy_bounds(Tile(col, row, Z))


def region(c0: int, r0: int, c1: int, r1: int) -> tuple[float, float, float, float]:
    """lon/lat bounds (west, south, east, north) of the block of tiles c0..c1 x r0..r1."""
    a, b = tile_bounds(c0, r0), tile_bounds(c1, r1)
    return a.left, b.bottom, b.right, a.top


def rect_3413(lon: float, lat: float, w: float, h: float, angle: float) -> shapely.Polygon:
    """A w x h metre rectangle centred on (lon, lat), rotated by ``angle`` degrees, in EPSG:3413."""
    x, y = LL_TO_3413.transform(lon, lat)
    r = shapely.box(-w / 2, -h / 2, w / 2, h / 2)
    r = shapely.affinity.rotate(r, angle, origin=(0, 0))
    return shapely.affinity.translate(r, x, y)


def iwp_attributes(n: int, rng: np.random.Generator) -> dict[str, object]:
    """IWP-like attributes with several dtypes and missing values."""
    area = rng.uniform(20, 300, n).round(3)
    area[::7] = np.nan
    note = np.array(["low", "high", None], dtype=object)[rng.integers(0, 3, n)]
    return {
        "Class": rng.integers(1, 3, n).astype("int64"),
        "Sensor": np.array(["WV02", "WV03"], dtype=object)[rng.integers(0, 2, n)],
        "Date": np.full(n, "20190903", dtype=object),
        "Area": area,
        "Width": pd.array(rng.integers(1, 30, n), dtype="int32"),
        "Checked": rng.random(n) < 0.5,
        "Note": note,
    }


def write_gpkg(
    path: Path, geoms, crs: str | None = "EPSG:3413", layer: str = "iwp", attrs=None, **kw
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    geoms = list(geoms)
    rng = np.random.default_rng(len(geoms))
    data = iwp_attributes(len(geoms), rng) if attrs is None else attrs
    gdf = gpd.GeoDataFrame(data, geometry=geoms, crs=crs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyogrio warns when writing without a CRS
        pyogrio.write_dataframe(gdf, path, layer=layer, **kw)
    return path


def scene(path: Path, seed: int, n: int, bounds: tuple[float, float, float, float]) -> Path:
    """Random 4-25 m detections in lon/lat ``bounds``, plus some straddling tile edges and corners."""
    rng = np.random.default_rng(seed)
    w, s, e, nn = bounds
    lon, lat = rng.uniform(w, e, n), rng.uniform(s, nn, n)
    geoms = [rect_3413(a, b, *rng.uniform(4, 25, 2), rng.uniform(0, 90)) for a, b in zip(lon, lat)]
    # polygons centred on tile edges and corners inside the bounds
    cols = range(TMS._tile(w, nn, Z).x, TMS._tile(e, s, Z).x + 1)
    rows = range(TMS._tile(w, nn, Z).y, TMS._tile(e, s, Z).y + 1)
    for c in cols:
        for r in rows:
            b = tile_bounds(c, r)
            for a, bb in [
                (b.left, (b.top + b.bottom) / 2),
                ((b.left + b.right) / 2, b.bottom),
                (b.left, b.bottom),
            ]:
                if w < a < e and s < bb < nn:
                    geoms.append(rect_3413(a, bb, *rng.uniform(6, 20, 2), rng.uniform(0, 90)))
    return write_gpkg(path, geoms)


def hexagon_3413(
    lon: float, lat: float, radius: float, n: int = 6, noise: float = 0.0, seed: int = 0
):
    x, y = LL_TO_3413.transform(lon, lat)
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = radius + rng.uniform(-noise, noise, n)
    return shapely.Polygon(np.column_stack([x + r * np.cos(t), y + r * np.sin(t)]))


# ------------------------------------------------------------------ readers
def staged_frame(stager: TileStager) -> gpd.GeoDataFrame:
    """Every row of every finalized staged tile (read through the rasterizer-facing reader)."""
    frames = [
        read_staged_tile(p, stager.config) for p in stager.tiles.get_filenames_from_dir("staged")
    ]
    assert frames, "nothing was staged"
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs)


def snapshot(stager: TileStager) -> dict[str, gpd.GeoDataFrame]:
    """Staged tiles by relative path, rows sorted by (staging_id, staging_tile)."""
    out = {}
    for p in stager.tiles.get_filenames_from_dir("staged"):
        g = pyogrio.read_dataframe(p, use_arrow=True)
        out[p.relative_to(stager.config.dir_staged).as_posix()] = g.sort_values(
            ["staging_id", "staging_tile"], ignore_index=True
        )
    return out


def assert_same_staging(a: TileStager, b: TileStager) -> None:
    """Same tiles, same rows (order normalised), same geometries byte for byte, same summary."""
    sa, sb = snapshot(a), snapshot(b)
    assert sorted(sa) == sorted(sb)
    for k in sa:
        assert_geodataframe_equal(sa[k], sb[k], check_less_precise=False)
        assert sa[k].geometry.to_wkb().tolist() == sb[k].geometry.to_wkb().tolist(), k
    assert a.summary().equals(b.summary())


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> hash)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def fid_of(staging_id: str) -> int:
    return int(staging_id.rsplit(":", 1)[1])


def source_of(staging_id: str) -> str:
    return staging_id.rsplit(":", 1)[0]


def expected_tiles(geom: shapely.Geometry) -> set[tuple[int, int]]:
    """Tiles a polygon belongs to, by morecantile: every tile it intersects, plus its centroid's tile."""
    w, s, e, n = geom.bounds
    hit = {
        (t.x, t.y)
        for t in TMS.tiles(w, s, e, n, [Z])
        if shapely.intersects(geom, shapely.box(*TMS.xy_bounds(t)))
    }
    c = geom.centroid
    t = TMS._tile(c.x, c.y, Z)
    return hit | {(t.x, t.y)}


def stage_all(stager: TileStager, files=None) -> TileStager:
    for p in files if files is not None else stager.tiles.get_filenames_from_dir("input"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RepairWarning)
            stager.stage(p)
    stager.finalize(progress=False)
    return stager


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def synthetic_input(tmp_path_factory) -> Path:
    """Three overlapping scenes over 3 x 2 tiles, one of them with the same name in a subfolder."""
    d = tmp_path_factory.mktemp("synthetic-input")
    scene(d / "scene_a.gpkg", 1, 120, region(1418, 908, 1420, 909))
    scene(d / "scene_b.gpkg", 2, 80, region(1419, 908, 1420, 909))
    scene(d / "sub" / "scene_a.gpkg", 3, 60, region(1418, 909, 1419, 909))
    return d


@pytest.fixture(scope="module")
def synthetic(synthetic_input: Path, tmp_path_factory) -> TileStager:
    """The synthetic input staged serially and finalized."""
    return stage_all(initialize_stager(synthetic_input, tmp_path_factory.mktemp("synthetic-out")))


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> TileStager:
    """The real Prudhoe Bay file staged and finalized (skipped when absent)."""
    real_file = (
        Path(__file__).resolve().parents[2] / "shared/data/iwp-real/prudhoe_bay_WV03_20190903.gpkg"
    )
    if not real_file.exists():
        pytest.skip("real IWP data not found at ../shared/data/iwp-real")
    stager = initialize_stager(real_file.parent, tmp_path_factory.mktemp("real-out"))
    return stage_all(stager, [real_file])


@pytest.fixture(scope="module", params=["synthetic", "real"])
def staged(request) -> tuple[TileStager, gpd.GeoDataFrame]:
    stager = request.getfixturevalue(request.param)
    return stager, staged_frame(stager)


@pytest.fixture(scope="module")
def pool():
    """Two worker processes, as a learner's laptop or the test machine has."""
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as ex:
        yield ex


@pytest.fixture
def one_file(tmp_path: Path) -> TileStager:
    """A good file staged and finalized: the 'earlier outputs' bad inputs must leave intact."""
    d = tmp_path / "in"
    scene(d / "good.gpkg", 11, 40, region(1418, 908, 1419, 908))
    return stage_all(initialize_stager(d, tmp_path / "out"))


# ============================================================ properties
def test_staging_area_is_within_half_a_percent_of_the_geodesic_area(staged) -> None:
    _, gdf = staged
    geodesic = np.array([abs(GEOD.geometry_area_perimeter(g)[0]) for g in gdf.geometry])
    assert (geodesic > 0).all()
    rel = np.abs(gdf["staging_area"].to_numpy() - geodesic) / geodesic
    assert rel.max() <= 0.005, f"worst relative area error {rel.max():.2%}"


def test_staging_area_is_in_square_metres_not_square_degrees(synthetic) -> None:
    gdf = staged_frame(synthetic)
    assert gdf["staging_area"].min() > 1.0  # 4-25 m rectangles: tens to hundreds of m^2
    assert gdf["staging_area"].max() < 1000.0


def test_staging_centroid_is_the_shapely_centroid_of_the_staged_geometry(staged) -> None:
    _, gdf = staged
    c = shapely.centroid(gdf.geometry.values)
    np.testing.assert_allclose(gdf["staging_centroid_x"], shapely.get_x(c), rtol=0, atol=1e-12)
    np.testing.assert_allclose(gdf["staging_centroid_y"], shapely.get_y(c), rtol=0, atol=1e-12)


def test_staged_tiles_are_in_the_tms_crs(staged) -> None:
    # CRS84 is stored as its registered equivalent EPSG:4326 (GeoPackage
    # coordinates are always lon, lat): same datum and units, same coordinates.
    stager, gdf = staged
    crs84 = pyproj.CRS("OGC:CRS84")
    assert pyproj.CRS(gdf.crs).equals(crs84, ignore_axis_order=True)
    for p in stager.tiles.get_filenames_from_dir("staged"):
        assert pyproj.CRS(pyogrio.read_info(p)["crs"]).equals(crs84, ignore_axis_order=True)
        # coordinates are (lon, lat): every polygon intersects its tile's CRS84 bounds
        box = shapely.box(*stager.tiles.bounds(tile_from_path(p)))
        assert shapely.intersects(pyogrio.read_dataframe(p).geometry.values, box).all()


def test_staged_geopackages_record_a_registered_epsg_crs_in_gpkg_1_2(staged) -> None:
    import sqlite3

    stager, _ = staged
    paths = stager.tiles.get_filenames_from_dir("staged")
    assert paths
    for p in paths:
        assert pyogrio.read_info(p)["crs"] == "EPSG:4326"
        with sqlite3.connect(f"file:{p}?mode=ro", uri=True) as con:
            (srs_id,) = con.execute("SELECT srs_id FROM gpkg_geometry_columns").fetchone()
            org, code = con.execute(
                "SELECT organization, organization_coordsys_id FROM gpkg_spatial_ref_sys WHERE srs_id = ?",
                (srs_id,),
            ).fetchone()
            (user_version,) = con.execute("PRAGMA user_version").fetchone()
        assert (srs_id, org.upper(), code) == (4326, "EPSG", 4326)
        # GeoPackage 1.2 (user_version 10200): GDAL 3.6 / QGIS LTR open it without a version warning
        assert user_version == 10200


def test_staged_rows_hold_every_staging_column_and_the_input_attributes(staged) -> None:
    stager, gdf = staged
    attrs = list(pyogrio.read_info(stager.tiles.get_filenames_from_dir("input")[0])["fields"])
    assert list(gdf.columns) == attrs + list(STAGING_COLUMNS) + ["geometry"]


def test_staging_id_is_unique_per_polygon_across_the_dataset(staged) -> None:
    stager, gdf = staged
    within = gdf[gdf["staging_centroid_within_tile"]]
    assert within["staging_id"].is_unique
    # one id per (input file, feature) over all input files, incl. same-named files in subfolders
    n_features = sum(
        pyogrio.read_info(p)["features"] for p in stager.tiles.get_filenames_from_dir("input")
    )
    assert len(within) == n_features
    # an id names its source file and feature, nothing random
    for sid in within["staging_id"].head(50):
        assert (stager.config.dir_input / source_of(sid)).is_file()


def test_same_named_files_in_subfolders_get_distinct_ids(synthetic) -> None:
    gdf = staged_frame(synthetic)
    sources = {source_of(s) for s in gdf["staging_id"]}
    assert sources == {"scene_a.gpkg", "scene_b.gpkg", "sub/scene_a.gpkg"}
    a, sub = (
        gdf[gdf.staging_id.str.startswith("scene_a")],
        gdf[gdf.staging_id.str.startswith("sub/")],
    )
    assert set(a.staging_filename) == set(sub.staging_filename) == {"scene_a.gpkg"}
    assert not set(a.staging_id) & set(sub.staging_id)


def test_staging_filename_is_the_input_file_name(staged) -> None:
    _, gdf = staged
    expected = gdf["staging_id"].map(lambda s: Path(source_of(s)).name)
    assert (gdf["staging_filename"] == expected).all()


def test_staging_ids_and_outputs_are_identical_across_reruns(
    synthetic, synthetic_input: Path, tmp_path: Path
) -> None:
    again = stage_all(initialize_stager(synthetic_input, tmp_path / "again"))
    assert_same_staging(synthetic, again)


def test_input_attributes_are_unchanged_in_values_and_dtypes(staged) -> None:
    stager, gdf = staged
    for source, rows in gdf.groupby(gdf["staging_id"].map(source_of)):
        path = stager.config.dir_input / source
        ref = pyogrio.read_dataframe(path, use_arrow=True, fid_as_index=True)
        cols = [c for c in ref.columns if c != "geometry"]
        fids = rows["staging_id"].map(fid_of).to_numpy()
        expected = ref.loc[fids, cols].reset_index(drop=True)
        pd.testing.assert_frame_equal(rows[cols].reset_index(drop=True), expected, check_exact=True)


def test_stage_returns_what_it_did(tmp_path: Path) -> None:
    path = scene(tmp_path / "in" / "a.gpkg", 5, 30, region(1418, 908, 1419, 908))
    stager = initialize_stager(tmp_path / "in", tmp_path / "out")
    r = stager.stage(path)
    assert (r.polygons_read, r.polygons_written) == (pyogrio.read_info(path)["features"],) * 2
    assert r.repaired == r.dropped == 0
    stager.finalize(progress=False)
    gdf = staged_frame(stager)
    assert r.rows_written == len(gdf)
    assert r.tiles == len(stager.tiles.get_filenames_from_dir("staged"))
    assert r.seconds > 0


# ============================================================ tile membership
def test_every_polygon_is_in_exactly_the_tiles_its_geometry_intersects_plus_its_centroids(
    staged,
) -> None:
    _, gdf = staged
    got = gdf.groupby("staging_id")["staging_tile"].agg(
        lambda s: {(t.x, t.y) for t in map(str_to_tile, s)}
    )
    within = gdf[gdf["staging_centroid_within_tile"]].set_index("staging_id")
    multi = got[got.map(len) > 1].index
    assert len(multi) > 0, "the fixture should have polygons crossing tile edges"
    # every multi-tile polygon, and a sample of the others (the real file has 14k)
    rest = got.index.difference(multi)
    check = multi.append(rest[:: max(1, len(rest) // 400)])
    for sid in check:
        assert got[sid] == expected_tiles(within.loc[sid, "geometry"]), sid


def test_staging_tile_matches_the_file_the_row_is_in(staged) -> None:
    stager, _ = staged
    for p in stager.tiles.get_filenames_from_dir("staged"):
        tiles = pyogrio.read_dataframe(p, columns=["staging_tile"], read_geometry=False)[
            "staging_tile"
        ]
        assert set(tiles) == {f"Tile(x={tile_from_path(p).x}, y={tile_from_path(p).y}, z={Z})"}


def test_geometry_is_written_whole_to_each_tile_not_clipped(staged) -> None:
    _, gdf = staged
    wkb = gdf.geometry.to_wkb()
    per_id = wkb.groupby(gdf["staging_id"]).nunique()
    assert (per_id == 1).all(), "a polygon's rows must carry the same geometry"
    crossing = gdf[gdf.groupby("staging_id")["staging_id"].transform("size") > 1]
    for _, row in crossing.head(100).iterrows():
        t = str_to_tile(row["staging_tile"])
        assert not shapely.box(*TMS.xy_bounds(t)).contains(row.geometry)  # sticks out of the tile


def test_centroid_within_tile_is_true_in_exactly_one_row_per_polygon_the_centroids_tile(
    staged,
) -> None:
    _, gdf = staged
    assert (gdf.groupby("staging_id")["staging_centroid_within_tile"].sum() == 1).all()
    within = gdf[gdf["staging_centroid_within_tile"]]
    for x, y, tile in zip(
        within.staging_centroid_x, within.staging_centroid_y, within.staging_tile
    ):
        assert str_to_tile(tile) == TMS._tile(x, y, Z)


def test_polygon_spanning_many_tiles_is_written_to_each_tile_it_crosses(tmp_path: Path) -> None:
    # a thin diagonal strip from tile (1418, 908) to (1422, 909), given in lon/lat
    a, b = tile_bounds(1418, 908), tile_bounds(1422, 909)
    x0, y0 = a.left + 0.3 * (a.right - a.left), a.top - 0.3 * (a.top - a.bottom)
    x1, y1 = b.left + 0.7 * (b.right - b.left), b.bottom + 0.3 * (b.top - b.bottom)
    d = 0.002
    strip = shapely.Polygon([(x0, y0), (x1, y1), (x1, y1 + d), (x0, y0 + d)])
    write_gpkg(tmp_path / "in" / "strip.gpkg", [strip], crs="EPSG:4326")
    stager = stage_all(initialize_stager(tmp_path / "in", tmp_path / "out", simplify_tolerance=0))
    gdf = staged_frame(stager)
    got = {(t.x, t.y) for t in map(str_to_tile, gdf["staging_tile"])}
    expected = expected_tiles(gdf.geometry.iloc[0])
    assert got == expected
    assert len(got) >= 6
    bbox_tiles = {(t.x, t.y) for t in TMS.tiles(*gdf.geometry.iloc[0].bounds, [Z])}
    assert got < bbox_tiles, "only tiles the geometry intersects, not its whole bounding box"
    assert {tile_from_path(p) for p in stager.tiles.get_filenames_from_dir("staged")} == {
        Tile(x, y, Z) for x, y in expected
    }


def test_ring_polygon_is_also_written_to_its_centroids_tile_which_it_does_not_touch(
    tmp_path: Path,
) -> None:
    # a square ring around tile (1419, 908): it touches the 8 neighbours, not the tile holding its centroid
    t = tile_bounds(1419, 908)
    w, h = t.right - t.left, t.top - t.bottom
    cx, cy = (t.left + t.right) / 2, (t.top + t.bottom) / 2
    outer = shapely.box(cx - 1.0 * w, cy - 1.0 * h, cx + 1.0 * w, cy + 1.0 * h)
    hole = shapely.box(cx - 0.7 * w, cy - 0.7 * h, cx + 0.7 * w, cy + 0.7 * h)
    ring = shapely.Polygon(outer.exterior.coords, [hole.exterior.coords])
    write_gpkg(tmp_path / "in" / "ring.gpkg", [ring], crs="EPSG:4326")
    stager = stage_all(initialize_stager(tmp_path / "in", tmp_path / "out", simplify_tolerance=0))
    gdf = staged_frame(stager)
    rows = {str_to_tile(s): w for s, w in zip(gdf.staging_tile, gdf.staging_centroid_within_tile)}
    centre = Tile(1419, 908, Z)
    assert not gdf.geometry.iloc[0].intersects(shapely.box(*TMS.xy_bounds(centre)))
    assert bool(rows[centre])
    assert sorted(rows) == sorted(
        Tile(1419 + dx, 908 + dy, Z) for dx in (-1, 0, 1) for dy in (-1, 0, 1)
    )
    assert sum(rows.values()) == 1


@pytest.mark.parametrize("where", ["vertical edge", "horizontal edge", "corner"])
def test_centroid_on_a_tile_edge_goes_to_one_tile_by_morecantiles_rule(
    tmp_path: Path, where: str
) -> None:
    t = tile_bounds(1419, 908)
    ex = t.left if where in ("vertical edge", "corner") else (t.left + t.right) / 2
    ey = t.bottom if where in ("horizontal edge", "corner") else (t.top + t.bottom) / 2
    d = 0.0002
    square = shapely.box(ex - d, ey - d, ex + d, ey + d)  # symmetric about the edge point
    write_gpkg(tmp_path / "in" / "edge.gpkg", [square], crs="EPSG:4326")
    stager = stage_all(initialize_stager(tmp_path / "in", tmp_path / "out", simplify_tolerance=0))
    gdf = staged_frame(stager)
    assert len(gdf) == (4 if where == "corner" else 2)
    within = gdf[gdf["staging_centroid_within_tile"]]
    assert len(within) == 1
    cx, cy = within.staging_centroid_x.iloc[0], within.staging_centroid_y.iloc[0]
    assert abs(cx - ex) < 1e-9 and abs(cy - ey) < 1e-9  # it really is on the edge
    assert str_to_tile(within.staging_tile.iloc[0]) == TMS._tile(cx, cy, Z)


# ============================================================ reading
def test_output_is_identical_whatever_the_chunk_size(synthetic_input: Path, tmp_path: Path) -> None:
    files = [synthetic_input / "scene_a.gpkg", synthetic_input / "scene_b.gpkg"]
    small = stage_all(initialize_stager(synthetic_input, tmp_path / "c7", chunk_size=7), files)
    big = stage_all(initialize_stager(synthetic_input, tmp_path / "cbig", chunk_size=10**6), files)
    parts = list((tmp_path / "c7").rglob("*.arrow"))
    assert len(parts) > len(list((tmp_path / "cbig").rglob("*.arrow"))), (
        "chunking should have happened"
    )
    assert_same_staging(small, big)


def test_parquet_parts_of_an_output_folder_staged_before_still_finalize(
    synthetic_input: Path, tmp_path: Path
) -> None:
    # Output folders staged before parts became Arrow IPC files hold Parquet parts:
    # they still count, are read, and give the same staged tiles.
    files = [synthetic_input / "scene_a.gpkg", synthetic_input / "scene_b.gpkg"]
    new = stage_all(initialize_stager(synthetic_input, tmp_path / "new", chunk_size=7), files)
    old = stage_all(initialize_stager(synthetic_input, tmp_path / "old", chunk_size=7), files)
    arrow = list((tmp_path / "old").rglob("*.arrow"))
    assert arrow
    for f in arrow:
        pq.write_table(read_part(f), f.with_suffix(".parquet"), compression="none")
        f.unlink()
    for m in (tmp_path / "old").rglob("manifests/*.json"):  # as an old manifest names them
        m.write_text(m.read_text().replace(".arrow", ".parquet"))
    assert old.tiles_to_finalize()  # the part names changed: every tile is redone
    old.finalize(progress=False)
    assert_same_staging(old, new)


def test_missing_crs_warns_naming_the_file_and_assumes_the_default(tmp_path: Path) -> None:
    geoms = [rect_3413(-148.82, 70.045, 10, 12, 20), rect_3413(-148.81, 70.04, 8, 5, 60)]
    write_gpkg(tmp_path / "a" / "scene.gpkg", geoms, crs=None)
    write_gpkg(tmp_path / "b" / "scene.gpkg", geoms, crs="EPSG:3413")
    assert pyogrio.read_info(tmp_path / "a" / "scene.gpkg")["crs"] is None
    no_crs = initialize_stager(tmp_path / "a", tmp_path / "out-a")
    with pytest.warns(MissingCRSWarning, match=r"scene\.gpkg.*EPSG:3413"):
        no_crs.stage(tmp_path / "a" / "scene.gpkg")
    no_crs.finalize(progress=False)
    declared = stage_all(initialize_stager(tmp_path / "b", tmp_path / "out-b"))
    assert_same_staging(no_crs, declared)


def test_default_crs_is_configurable(tmp_path: Path) -> None:
    x, y = pyproj.Transformer.from_crs("OGC:CRS84", "EPSG:32606", always_xy=True).transform(
        -148.82, 70.045
    )
    write_gpkg(tmp_path / "in" / "utm.gpkg", [shapely.box(x, y, x + 10, y + 10)], crs=None)
    stager = initialize_stager(tmp_path / "in", tmp_path / "out", default_crs="EPSG:32606")
    with pytest.warns(MissingCRSWarning, match="EPSG:32606"):
        stager.stage(tmp_path / "in" / "utm.gpkg")
    stager.finalize(progress=False)
    gdf = staged_frame(stager)
    assert (
        abs(gdf.staging_centroid_x.iloc[0] - -148.82) < 1e-3
        and abs(gdf.staging_centroid_y.iloc[0] - 70.045) < 1e-3
    )


@pytest.mark.parametrize("crs", ["EPSG:3413", "EPSG:4326", "EPSG:32606"])
def test_geometries_are_reprojected_to_the_tms_crs(tmp_path: Path, crs: str) -> None:
    src = gpd.GeoSeries(
        [hexagon_3413(-148.82 + 0.003 * i, 70.045, 8, 7, 1, i) for i in range(8)], crs="EPSG:3413"
    )
    src = src.to_crs(crs)
    write_gpkg(tmp_path / "in" / "x.gpkg", src.values, crs=crs)
    stager = stage_all(initialize_stager(tmp_path / "in", tmp_path / "out", simplify_tolerance=0))
    gdf = staged_frame(stager)
    gdf = gdf[gdf.staging_centroid_within_tile]
    ref = pyogrio.read_dataframe(tmp_path / "in" / "x.gpkg", fid_as_index=True).to_crs("OGC:CRS84")
    expected = ref.geometry.loc[gdf.staging_id.map(fid_of)].values
    # same vertices to 1e-8 degrees (about a millimetre)
    assert shapely.equals_exact(gdf.geometry.values, expected, tolerance=1e-8).all()


def test_staging_into_another_tile_matrix_set_uses_its_crs_and_folder(tmp_path: Path) -> None:
    geoms = [hexagon_3413(-148.82 + 0.002 * i, 70.045, 9, 8, 1, i) for i in range(20)]
    write_gpkg(tmp_path / "in" / "x.gpkg", geoms)
    stager = stage_all(
        initialize_stager(tmp_path / "in", tmp_path / "out", tms="WebMercatorQuad", z=15)
    )
    paths = stager.tiles.get_filenames_from_dir("staged")
    assert paths and all(
        p.is_relative_to(tmp_path / "out" / "staged" / "WebMercatorQuad" / "15") for p in paths
    )
    gdf = staged_frame(stager)
    assert pyproj.CRS(gdf.crs).equals(pyproj.CRS("EPSG:3857"))
    ref = gpd.GeoSeries(geoms, crs="EPSG:3413").to_crs("EPSG:3857")
    within = gdf[gdf.staging_centroid_within_tile]
    got = within.geometry.values
    assert shapely.equals_exact(
        got, ref.values[within.staging_id.map(fid_of) - 1], tolerance=1e-6
    ).all()
    wm = morecantile.tms.get("WebMercatorQuad")
    for x, y, t in zip(within.staging_centroid_x, within.staging_centroid_y, within.staging_tile):
        assert str_to_tile(t) == wm._tile(x, y, 15)
    geodesic = np.array([abs(GEOD.geometry_area_perimeter(g)[0]) for g in ref.to_crs("EPSG:4326")])
    np.testing.assert_allclose(
        within.staging_area, geodesic[within.staging_id.map(fid_of) - 1], rtol=0.005
    )


def _staged_in_3413(gdf: gpd.GeoDataFrame) -> np.ndarray:
    within = gdf[gdf.staging_centroid_within_tile].sort_values(
        "staging_id", key=lambda s: s.map(fid_of)
    )
    return shapely.transform(
        within.geometry.values, lambda xy: np.column_stack(LL_TO_3413.transform(xy[:, 0], xy[:, 1]))
    )


def test_simplification_stays_within_the_tolerance_and_removes_vertices(tmp_path: Path) -> None:
    # 60-vertex outlines with 2 cm vertex noise: most vertices are within the tolerance of a coarser outline
    geoms = [hexagon_3413(-148.82 + 0.0004 * i, 70.045, 6 + i % 5, 60, 0.02, i) for i in range(30)]
    write_gpkg(tmp_path / "in" / "noisy.gpkg", geoms)
    tol = 0.3
    stager = stage_all(initialize_stager(tmp_path / "in", tmp_path / "out", simplify_tolerance=tol))
    got = _staged_in_3413(staged_frame(stager))
    assert len(got) == len(geoms)
    assert shapely.get_num_coordinates(got).sum() < 0.5 * shapely.get_num_coordinates(geoms).sum()
    hd = shapely.hausdorff_distance(got, np.array(geoms, dtype=object))
    assert hd.max() <= tol * 1.001, f"simplified outline moved {hd.max():.3f} m, tolerance {tol} m"
    assert shapely.is_valid(got).all()


def test_simplify_tolerance_zero_keeps_every_vertex(tmp_path: Path) -> None:
    geoms = [hexagon_3413(-148.82 + 0.0004 * i, 70.045, 6, 40, 0.02, i) for i in range(10)]
    write_gpkg(tmp_path / "in" / "noisy.gpkg", geoms)
    stager = stage_all(initialize_stager(tmp_path / "in", tmp_path / "out", simplify_tolerance=0))
    got = _staged_in_3413(staged_frame(stager))
    assert (shapely.get_num_coordinates(got) == shapely.get_num_coordinates(geoms)).all()


def test_simplification_never_empties_or_invalidates_tiny_polygons(tmp_path: Path) -> None:
    # polygons far smaller than the tolerance: 3-12 vertices, 2-30 cm across (real files have 0.07 m^2 ones)
    geoms = [
        hexagon_3413(-148.82 + 0.0002 * i, 70.045, 0.01 + 0.015 * (i % 10), 3 + i % 10, 0.004, i)
        for i in range(60)
    ]
    write_gpkg(tmp_path / "in" / "tiny.gpkg", geoms)
    stager = initialize_stager(tmp_path / "in", tmp_path / "out", simplify_tolerance=0.5)
    r = stager.stage(tmp_path / "in" / "tiny.gpkg")
    assert r.polygons_written == len(geoms) and r.dropped == 0
    stager.finalize(progress=False)
    gdf = staged_frame(stager)
    got = _staged_in_3413(gdf)
    assert len(got) == len(geoms)
    assert not shapely.is_empty(got).any()
    assert shapely.is_valid(got).all()
    assert (shapely.area(got) > 0).all() and (gdf.staging_area > 0).all()


def test_invalid_bowtie_polygon_is_repaired_and_counted(tmp_path: Path) -> None:
    x, y = LL_TO_3413.transform(-148.82, 70.045)
    bowtie = shapely.Polygon([(x, y), (x + 10, y + 10), (x + 10, y), (x, y + 10)])
    overlapping_parts = shapely.MultiPolygon(
        [shapely.box(x + 30, y, x + 40, y + 10), shapely.box(x + 35, y, x + 45, y + 10)]
    )
    good = shapely.box(x + 60, y, x + 70, y + 10)
    assert not bowtie.is_valid and not overlapping_parts.is_valid
    path = write_gpkg(
        tmp_path / "in" / "bad.gpkg", [bowtie, overlapping_parts, good], geometry_type="Unknown"
    )
    stager = initialize_stager(tmp_path / "in", tmp_path / "out", simplify_tolerance=0)
    with pytest.warns(RepairWarning, match=r"bad\.gpkg.*repaired 2"):
        r = stager.stage(path)
    assert (r.repaired, r.dropped, r.polygons_written) == (2, 0, 3)
    stager.finalize(progress=False)
    got = _staged_in_3413(staged_frame(stager))
    assert shapely.is_valid(got).all()
    np.testing.assert_allclose(shapely.area(got), [50.0, 150.0, 100.0], rtol=1e-6)


@pytest.mark.parametrize("chunk_size", [50_000, 2])  # 2: a chunk holds no polygon at all
def test_non_polygon_geometries_are_dropped_and_counted_with_a_warning_naming_the_file(
    tmp_path: Path, chunk_size: int
) -> None:
    x, y = LL_TO_3413.transform(-148.82, 70.045)
    geoms = [
        shapely.box(x, y, x + 10, y + 10),
        shapely.Point(x, y),
        shapely.LineString([(x, y), (x + 5, y + 5)]),
        None,
        shapely.box(x + 20, y, x + 30, y + 10),
    ]
    path = write_gpkg(tmp_path / "in" / "mixed.gpkg", geoms, geometry_type="Unknown")
    stager = initialize_stager(tmp_path / "in", tmp_path / "out", chunk_size=chunk_size)
    with pytest.warns(RepairWarning, match=r"mixed\.gpkg.*dropped 3"):
        r = stager.stage(path)
    assert (r.polygons_read, r.polygons_written, r.dropped) == (5, 2, 3)
    stager.finalize(progress=False)
    gdf = staged_frame(stager)
    assert sorted(gdf.staging_id.map(fid_of)) == [1, 5]
    assert set(gdf.geom_type) == {"Polygon"}


def test_multipolygon_is_kept_whole_as_one_row(tmp_path: Path) -> None:
    x, y = LL_TO_3413.transform(-148.82, 70.045)
    multi = shapely.MultiPolygon(
        [shapely.box(x, y, x + 8, y + 8), shapely.box(x + 30, y, x + 38, y + 8)]
    )
    write_gpkg(tmp_path / "in" / "multi.gpkg", [multi])
    stager = stage_all(initialize_stager(tmp_path / "in", tmp_path / "out", simplify_tolerance=0))
    gdf = staged_frame(stager)
    assert len(gdf) == 1
    assert (
        gdf.geom_type.iloc[0] == "MultiPolygon"
        and shapely.get_num_geometries(gdf.geometry.iloc[0]) == 2
    )
    assert gdf.staging_area.iloc[0] == pytest.approx(128.0, rel=0.005)


def test_multipolygon_with_parts_in_distant_tiles_is_written_whole_to_each(tmp_path: Path) -> None:
    a, b = tile_bounds(1418, 908), tile_bounds(1420, 908)
    ya = (a.top + a.bottom) / 2
    ca, cb = ((a.left + a.right) / 2, ya), ((b.left + b.right) / 2, ya)
    multi = shapely.MultiPolygon(
        [shapely.box(*ca, ca[0] + 1e-4, ya + 1e-4), shapely.box(*cb, cb[0] + 1e-4, ya + 1e-4)]
    )
    write_gpkg(tmp_path / "in" / "far.gpkg", [multi], crs="EPSG:4326")
    stager = stage_all(initialize_stager(tmp_path / "in", tmp_path / "out", simplify_tolerance=0))
    gdf = staged_frame(stager)
    tiles = {str_to_tile(t) for t in gdf.staging_tile}
    # both parts' tiles, and the centroid's tile in between (which no part touches)
    assert tiles == {Tile(1418, 908, Z), Tile(1419, 908, Z), Tile(1420, 908, Z)}
    assert gdf.geometry.to_wkb().nunique() == 1 and gdf.geom_type.eq("MultiPolygon").all()
    assert gdf.loc[gdf.staging_centroid_within_tile, "staging_tile"].tolist() == [
        "Tile(x=1419, y=908, z=13)"
    ]


# ============================================================ summary CSV
def _check_summary(stager: TileStager) -> pd.DataFrame:
    csv = pd.read_csv(stager.config.get("filename_staging_summary"))
    gdf = staged_frame(stager)
    assert not csv.duplicated().any()
    assert not csv.duplicated(["source", "tile"]).any()
    key = gdf["staging_id"].map(source_of)
    truth = (
        gdf.assign(source=key)
        .groupby(["source", "staging_tile"])
        .agg(rows=("staging_id", "size"), centroids=("staging_centroid_within_tile", "sum"))
        .reset_index()
        .rename(columns={"staging_tile": "tile"})
    )
    got = csv[["source", "tile", "rows", "centroids"]].sort_values(
        ["source", "tile"], ignore_index=True
    )
    pd.testing.assert_frame_equal(
        got, truth.sort_values(["source", "tile"], ignore_index=True), check_dtype=False
    )
    assert (csv["filename"] == csv["source"].map(lambda s: Path(s).name)).all()
    return csv


def test_summary_csv_has_one_row_per_input_file_and_tile_and_is_complete(synthetic) -> None:
    csv = _check_summary(synthetic)
    assert set(csv["source"]) == {"scene_a.gpkg", "scene_b.gpkg", "sub/scene_a.gpkg"}
    assert len(csv) == csv[["source", "tile"]].drop_duplicates().shape[0] > 3


# ============================================================ concurrency and safety
def test_stager_is_picklable(synthetic) -> None:
    back = pickle.loads(pickle.dumps(synthetic))
    assert back.config == synthetic.config
    assert back.tiles.get_filenames_from_dir("staged") == synthetic.tiles.get_filenames_from_dir(
        "staged"
    )


def test_parallel_staging_in_processes_equals_serial_staging(
    synthetic, synthetic_input: Path, tmp_path: Path, pool
) -> None:
    stager = initialize_stager(synthetic_input, tmp_path / "parallel")
    files = stager.tiles.get_filenames_from_dir("input")
    results = list(pool.map(stager.stage, files))
    assert [r.path for r in results] == files
    # the reduce step in parallel too: one tile per task
    done = list(pool.map(stager.finalize_tile, stager.tiles_to_finalize()))
    assert {d["tile"] for d in done} == {
        tile_from_path(p) for p in stager.tiles.get_filenames_from_dir("staged")
    }
    assert stager.tiles_to_finalize() == []
    stager.write_summary()
    assert_same_staging(synthetic, stager)
    _check_summary(stager)
    assert (
        stager.config.get("filename_staging_summary").read_text()
        == synthetic.config.get("filename_staging_summary").read_text()
    )


def _learner_run(dir_input: str, dir_output: str) -> int:
    stager = initialize_stager(dir_input, dir_output)
    for p in stager.tiles.get_filenames_from_dir("input"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stager.stage(p)
    stager.finalize(progress=False)
    return len(stager.tiles.get_filenames_from_dir("staged"))


def test_two_learners_staging_one_read_only_folder_at_once_do_not_interfere(
    synthetic, synthetic_input: Path, tmp_path: Path, pool
) -> None:
    before = tree_digest(synthetic_input)
    modes = {p: p.stat().st_mode for p in [synthetic_input, *synthetic_input.rglob("*")]}
    try:
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        futures = [
            pool.submit(_learner_run, str(synthetic_input), str(tmp_path / name))
            for name in ("ann", "bob")
        ]
        counts = [f.result() for f in futures]
    finally:
        for p, mode in modes.items():
            p.chmod(stat.S_IMODE(mode))
    assert counts[0] == counts[1] == len(synthetic.tiles.get_filenames_from_dir("staged"))
    for name in ("ann", "bob"):
        assert_same_staging(synthetic, initialize_stager(synthetic_input, tmp_path / name))
    assert tree_digest(synthetic_input) == before  # nothing written into the input folder


def test_restaging_a_file_never_duplicates_rows(
    synthetic, synthetic_input: Path, tmp_path: Path
) -> None:
    stager = stage_all(initialize_stager(synthetic_input, tmp_path / "out"))
    for _ in range(2):
        stager.stage(synthetic_input / "scene_b.gpkg")
        stager.stage(synthetic_input / "scene_a.gpkg")
    stager.finalize(progress=False)
    for p in stager.tiles.get_filenames_from_dir("staged"):
        assert pyogrio.read_dataframe(p, columns=["staging_id"], read_geometry=False)[
            "staging_id"
        ].is_unique, p
    assert_same_staging(synthetic, stager)
    _check_summary(stager)
    assert len(stager.manifests()) == 3


def test_restaging_a_changed_file_replaces_its_rows(tmp_path: Path) -> None:
    d = tmp_path / "in"
    scene(d / "a.gpkg", 1, 60, region(1418, 908, 1420, 909))
    scene(d / "b.gpkg", 2, 20, region(1418, 908, 1418, 908))
    stager = stage_all(initialize_stager(d, tmp_path / "out"))
    n_before = len(stager.tiles.get_filenames_from_dir("staged"))
    assert n_before >= 6
    # the file shrinks to one tile's worth
    scene(d / "a.gpkg", 9, 15, region(1418, 908, 1418, 908))
    stager.stage(d / "a.gpkg")
    stager.finalize(progress=False)
    fresh = stage_all(initialize_stager(d, tmp_path / "fresh"))
    assert_same_staging(stager, fresh)
    assert (
        len(stager.tiles.get_filenames_from_dir("staged")) < n_before
    )  # tiles left without rows are gone
    _check_summary(stager)


_KILL_STAGE = textwrap.dedent(
    """
    import os, signal, sys
    from grouputils.core.staging import initialize_stager, parts
    real, calls = parts.write_part, [0]
    def dying(table, where, *a, **k):
        calls[0] += 1
        real(table, where, *a, **k)
        if calls[0] == int(sys.argv[4]):  # truncate the file being written, then die
            with open(where, "r+b") as f:
                f.truncate(os.path.getsize(where) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
    parts.write_part = dying
    initialize_stager(sys.argv[1], sys.argv[2], chunk_size=5).stage(sys.argv[3])
    """
)

_KILL_FINALIZE = textwrap.dedent(
    """
    import os, signal, sys
    import pyogrio
    from grouputils.core.staging import initialize_stager
    real, calls = pyogrio.write_arrow, [0]
    def dying(table, where, *a, **k):
        calls[0] += 1
        real(table, where, *a, **k)
        if calls[0] == int(sys.argv[3]):
            with open(where, "r+b") as f:
                f.truncate(os.path.getsize(where) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
    pyogrio.write_arrow = dying
    initialize_stager(sys.argv[1], sys.argv[2], chunk_size=5).finalize(progress=False)
    """
)


def _run_killed(script: str, *args: object) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def _all_staged_readable(stager: TileStager) -> None:
    for p in stager.config.dir_staged.rglob("*.gpkg"):
        if p.name.startswith("."):
            assert p not in stager.tiles.get_filenames_from_dir("staged")
            continue
        pyogrio.read_dataframe(p)  # raises on a truncated or corrupt file


def test_a_staging_run_killed_mid_write_leaves_the_previous_staging_intact_and_a_rerun_completes(
    synthetic_input: Path, tmp_path: Path
) -> None:
    files = [synthetic_input / "scene_a.gpkg", synthetic_input / "scene_b.gpkg"]
    stager = stage_all(initialize_stager(synthetic_input, tmp_path / "out", chunk_size=5), files)
    before = tree_digest(stager.config.dir_staged)
    summary = stager.summary()
    manifest = stager.read_manifest(files[0])
    _run_killed(_KILL_STAGE, synthetic_input, tmp_path / "out", files[0], 4)
    assert tree_digest(stager.config.dir_staged) == before
    assert stager.read_manifest(files[0]) == manifest
    assert stager.summary().equals(summary)
    assert stager.tiles_to_finalize() == []
    staged_frame(stager)  # every tile still passes the rasterizer's check
    _all_staged_readable(stager)
    stager.stage(files[0])
    stager.finalize(progress=False)
    uninterrupted = stage_all(
        initialize_stager(synthetic_input, tmp_path / "clean", chunk_size=5), files
    )
    assert_same_staging(stager, uninterrupted)


def test_a_finalize_killed_mid_write_leaves_no_corrupt_tile_and_a_rerun_completes(
    synthetic_input: Path, tmp_path: Path
) -> None:
    files = [synthetic_input / "scene_a.gpkg", synthetic_input / "scene_b.gpkg"]
    stager = stage_all(
        initialize_stager(synthetic_input, tmp_path / "out", chunk_size=5), files[:1]
    )
    stager.stage(files[1])  # touches tiles already finalized
    assert len(stager.tiles_to_finalize()) >= 3
    _run_killed(_KILL_FINALIZE, synthetic_input, tmp_path / "out", 2)
    _all_staged_readable(stager)
    stale = 0
    for p in stager.tiles.get_filenames_from_dir("staged"):
        try:
            read_staged_tile(p, stager.config)
        except NotFinalizedError:
            stale += 1  # the old tile, refused until finalize has run
    assert stale >= 1
    stager.finalize(progress=False)
    uninterrupted = stage_all(
        initialize_stager(synthetic_input, tmp_path / "clean", chunk_size=5), files
    )
    assert_same_staging(stager, uninterrupted)


def test_a_failing_parts_writer_leaves_the_previous_staging_and_no_orphan_parts(
    synthetic_input: Path, tmp_path: Path, monkeypatch
) -> None:
    path = synthetic_input / "scene_a.gpkg"
    stager = stage_all(initialize_stager(synthetic_input, tmp_path / "out", chunk_size=5), [path])
    before = tree_digest(tmp_path / "out")
    real, calls = parts_module.write_part, [0]

    def failing(*a, **k):
        calls[0] += 1
        if calls[0] == 5:
            raise OSError(28, "No space left on device")
        return real(*a, **k)

    monkeypatch.setattr(parts_module, "write_part", failing)
    with pytest.raises(OSError, match="No space"):
        stager.stage(path)
    assert tree_digest(tmp_path / "out") == before
    monkeypatch.undo()
    stager.stage(path)
    stager.finalize(progress=False)
    assert_same_staging(
        stager,
        stage_all(initialize_stager(synthetic_input, tmp_path / "clean", chunk_size=5), [path]),
    )


def test_read_staged_tile_refuses_a_tile_whose_parts_changed_after_finalize(
    synthetic_input: Path, tmp_path: Path
) -> None:
    stager = stage_all(
        initialize_stager(synthetic_input, tmp_path / "out"), [synthetic_input / "scene_a.gpkg"]
    )
    tile = Tile(1419, 908, Z)
    path = stager.tiles.path("staged", tile)
    assert len(read_staged_tile(path, stager.config)) > 0
    stager.stage(synthetic_input / "scene_b.gpkg")  # adds rows to the tile
    with pytest.raises(NotFinalizedError, match=r"908\.gpkg.*finalize"):
        read_staged_tile(path, stager.config)
    stager.finalize(progress=False)
    read_staged_tile(path, stager.config)
    stager.unstage(synthetic_input / "scene_b.gpkg")  # removes rows from the tile
    with pytest.raises(NotFinalizedError):
        read_staged_tile(path, stager.config)


def test_read_staged_tile_refuses_a_geopackage_not_written_by_finalize(tmp_path: Path) -> None:
    config = Config(dir_input=tmp_path / "in", dir_output=tmp_path / "out")
    path = tmp_path / "out" / "staged" / "WorldCRS84Quad" / "13" / "1418" / "908.gpkg"
    write_gpkg(path, [rect_3413(-148.82, 70.045, 5, 5, 0)], layer="staged")
    with pytest.raises(NotFinalizedError, match="finalize"):
        read_staged_tile(path, config)


@pytest.mark.parametrize("case", ["not a tile path", "missing", "corrupt", "text"])
def test_read_staged_tile_raises_input_error_for_non_tile_missing_or_corrupt_files(
    one_file: TileStager, tmp_path: Path, case: str
) -> None:
    good = one_file.tiles.get_filenames_from_dir("staged")[0]
    if case == "not a tile path":
        path = tmp_path / "elsewhere" / "tile.gpkg"
        path.parent.mkdir()
        path.write_bytes(good.read_bytes())
    elif case == "missing":
        path = one_file.tiles.path("staged", Tile(1, 1, Z))
    elif case == "corrupt":
        path = one_file.tiles.path("staged", Tile(2, 2, Z))
        path.parent.mkdir(parents=True)
        path.write_bytes(good.read_bytes()[:3000])
    else:
        path = one_file.tiles.path("staged", Tile(3, 3, Z))
        path.parent.mkdir(parents=True)
        path.write_text("not a geopackage")
    with pytest.raises(InputError) as e:
        read_staged_tile(path, one_file.config)
    assert not isinstance(e.value, NotFinalizedError)
    assert str(path) in str(e.value) or path.name in str(e.value)


# ============================================================ bad input
def _stage_bad(stager: TileStager, path: Path, match: str, error=InputError) -> None:
    """Stage a bad file: a clear error naming it, and every earlier output left as it was."""
    before = tree_digest(stager.config.dir_output)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepairWarning)
        with pytest.raises(error, match=match) as e:
            stager.stage(path)
    assert path.name in str(e.value)
    if isinstance(e.value, InputError):
        assert e.value.path == path
    assert tree_digest(stager.config.dir_output) == before
    staged_frame(stager)  # earlier tiles still finalized and readable


def test_missing_input_path_is_an_input_error_naming_it(one_file: TileStager) -> None:
    _stage_bad(one_file, one_file.config.dir_input / "no_such_scene.gpkg", "does not exist")


def test_text_file_named_gpkg_is_an_input_error_naming_it(one_file: TileStager) -> None:
    path = one_file.config.dir_input / "notes.gpkg"
    path.write_text("Class,Area\n1,20.5\n")
    _stage_bad(one_file, path, "GeoPackage")


def test_truncated_geopackage_is_an_input_error_naming_it(one_file: TileStager) -> None:
    good = one_file.config.dir_input / "good.gpkg"
    path = one_file.config.dir_input / "truncated.gpkg"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _stage_bad(one_file, path, "cannot be (opened|read)")


def test_empty_layer_is_an_input_error_naming_it(one_file: TileStager) -> None:
    path = write_gpkg(
        one_file.config.dir_input / "empty.gpkg", [], attrs={"Class": np.array([], dtype="int64")}
    )
    assert pyogrio.read_info(path)["features"] == 0
    _stage_bad(one_file, path, "no features")


def test_several_layers_none_matching_input_layer_is_an_input_error_naming_them(
    one_file: TileStager,
) -> None:
    path = one_file.config.dir_input / "layers.gpkg"
    write_gpkg(path, [rect_3413(-148.82, 70.045, 5, 5, 0)], layer="polygons")
    write_gpkg(path, [rect_3413(-148.82, 70.045, 5, 5, 0)], layer="footprints", append=True)
    _stage_bad(one_file, path, r"polygons.*footprints.*iwp")


def test_several_layers_with_one_matching_input_layer_stage_that_layer(tmp_path: Path) -> None:
    path = tmp_path / "in" / "layers.gpkg"
    write_gpkg(path, [rect_3413(-148.82, 70.045, 5, 5, 0)] * 3, layer="footprints")
    write_gpkg(path, [rect_3413(-148.82, 70.045, 5, 5, 0)] * 2, layer="iwp", append=True)
    r = initialize_stager(tmp_path / "in", tmp_path / "out").stage(path)
    assert r.polygons_read == 2


def test_file_of_points_and_lines_only_is_an_input_error_naming_it(one_file: TileStager) -> None:
    x, y = LL_TO_3413.transform(-148.82, 70.045)
    geoms = [shapely.Point(x, y), shapely.LineString([(x, y), (x + 3, y)])]
    path = write_gpkg(one_file.config.dir_input / "points.gpkg", geoms, geometry_type="Unknown")
    _stage_bad(one_file, path, "no polygon")


def test_unwritable_output_folder_is_an_output_error_naming_it(tmp_path: Path) -> None:
    path = scene(tmp_path / "in" / "a.gpkg", 1, 5, region(1418, 908, 1418, 908))
    if os.geteuid() != 0:
        out = tmp_path / "locked"
        out.mkdir()
        out.chmod(0o500)
    else:  # root ignores permissions: an output folder that cannot exist instead
        (tmp_path / "a-file").write_text("")
        out = tmp_path / "a-file" / "out"
    try:
        stager = initialize_stager(tmp_path / "in", out)
        with pytest.raises(OutputError, match=out.name):
            stager.stage(path)
    finally:
        if out.exists():
            out.chmod(0o700)
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["a.gpkg"]


def test_output_folder_inside_the_input_folder_is_a_config_error(tmp_path: Path) -> None:
    path = scene(tmp_path / "in" / "a.gpkg", 1, 5, region(1418, 908, 1418, 908))
    for out in (tmp_path / "in", tmp_path / "in" / "outputs"):
        with pytest.raises(ConfigError, match="input folder"):
            initialize_stager(tmp_path / "in", out)
        # also when a Config is built by hand
        with pytest.raises(ConfigError):
            TileStager(Config(dir_input=tmp_path / "in", dir_output=out)).stage(path)
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["a.gpkg"]


def test_missing_input_folder_is_an_input_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no-such-folder"):
        initialize_stager(tmp_path / "no-such-folder", tmp_path / "out")


# ============================================================ config, listing, clear
def test_initialize_stager_writes_to_group_project_in_the_working_directory_by_default(
    tmp_path: Path, monkeypatch
) -> None:
    path = scene(tmp_path / "in" / "a.gpkg", 1, 5, region(1418, 908, 1418, 908))
    nb = tmp_path / "notebook-folder"
    nb.mkdir()
    monkeypatch.chdir(nb)
    stager = stage_all(initialize_stager(tmp_path / "in", z=12), [path])
    assert stager.config.z == 12
    assert stager.config.get("dir_staged").resolve() == nb / "group-project" / "staged"
    assert list((nb / "group-project" / "staged" / "WorldCRS84Quad" / "12").rglob("*.gpkg"))
    assert stager.config.get("filename_staging_summary").resolve().is_file()


def test_get_filenames_from_dir_lists_inputs_and_staged_tiles_sorted(
    synthetic, synthetic_input: Path
) -> None:
    inputs = synthetic.tiles.get_filenames_from_dir("input")
    assert [p.relative_to(synthetic_input).as_posix() for p in inputs] == [
        "scene_a.gpkg",
        "scene_b.gpkg",
        "sub/scene_a.gpkg",
    ]
    staged = synthetic.tiles.get_filenames_from_dir("staged")
    tiles = [tile_from_path(p) for p in staged]
    assert tiles == sorted(tiles, key=lambda t: (t.z, t.x, t.y))
    assert set(tiles) == set(map(str_to_tile, staged_frame(synthetic)["staging_tile"]))
    assert all(p.is_file() and p.is_relative_to(synthetic.config.get("dir_staged")) for p in staged)
    assert synthetic.tiles.get_filenames_from_dir("staged", z=Z) == staged
    assert synthetic.tiles.get_filenames_from_dir("staged", z=12) == []


def test_clear_removes_outputs_but_not_inputs_or_unrelated_files(
    synthetic_input: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    stager = stage_all(initialize_stager(synthetic_input, out))
    (out / "my-notes.txt").write_text("keep me")
    (out / "figures").mkdir()
    (out / "figures" / "plot.png").write_bytes(b"png")
    inputs = tree_digest(synthetic_input)
    n_tiles = len(stager.tiles.get_filenames_from_dir("staged"))
    assert n_tiles > 0
    stager.clear()
    assert stager.tiles.get_filenames_from_dir("staged") == []
    assert not stager.config.get("filename_staging_summary").exists()
    assert stager.manifests() == []
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "figures",
        "figures/plot.png",
        "my-notes.txt",
    ]
    assert tree_digest(synthetic_input) == inputs
    # and staging starts over cleanly
    stage_all(stager)
    assert len(stager.tiles.get_filenames_from_dir("staged")) == n_tiles


def test_clear_asks_the_layout_removes_every_steps_outputs_and_keeps_the_private_folder(
    synthetic_input: Path, tmp_path: Path
) -> None:
    from grouputils.core.layout import Layout

    out = tmp_path / "out"
    stager = stage_all(initialize_stager(synthetic_input, out))
    lay = Layout.of(stager.config)
    later = [lay.map_page, lay.run_summary, lay.raster_summary, lay.catalog, lay.legend("s")]
    later += [lay.tile_path("geotiff", Tile(0, 0, 0)), lay.map_assets / "leaflet.js"]
    for p in [*later, lay.state_file]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    stager.clear(everything=False)
    assert not lay.staged.exists() and not lay.staging_parts.exists()
    assert all(p.exists() for p in later)
    stager.clear()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        ".grouputils",
        ".grouputils/state.sqlite",
    ]


def test_the_staging_package_keeps_its_public_names_and_pickles_stagers_by_reference(
    synthetic,
) -> None:
    import grouputils
    import grouputils.core.staging as staging

    for name in staging.__all__:
        assert getattr(staging, name) is not None, name
    assert grouputils.TileStager is staging.TileStager is TileStager
    assert grouputils.initialize_stager is staging.initialize_stager
    blob = pickle.dumps(synthetic)
    assert b"grouputils.core.staging.stager" in blob and b"TileStager" in blob
    assert len(blob) < 4000  # the settings, not the tile matrix set or any data
