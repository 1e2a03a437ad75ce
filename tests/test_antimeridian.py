"""Polygons across the antimeridian and around the poles (issue 17, items 9 and 10).

A polygon straddling 180° lands in its one or two real tiles on each side,
keeps one ``staging_id``, one centroid flag and its true area, and is counted
once by the rasterizer; a polygon around the pole is refused naming the file
and the feature; one near the pole lands in the tiles it really touches; and a
guard refuses any polygon that would touch far more tiles than its size allows.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import pytest
import rasterio
import shapely

from grouputils.core import antimeridian
from grouputils.core.config import Config
from grouputils.core.errors import InputError
from grouputils.run.pipeline import run_pipeline
from grouputils.core.staging import STAGED_LAYER, TileStager, initialize_stager
from grouputils.core.tiles import get_tms

LL_TO_3413 = pyproj.Transformer.from_crs("OGC:CRS84", "EPSG:3413", always_xy=True)
TO_LL = pyproj.Transformer.from_crs("EPSG:3413", "OGC:CRS84", always_xy=True)
GEOD = pyproj.Geod(ellps="WGS84")
CHUKOTKA = [(180.0, 66.50), (180.0, 66.52), (-179.99995, 66.54)]  # lon, lat of box centres on 180°


def box_3413(lon: float, lat: float, size: float = 20.0, dx: float = 0.0) -> shapely.Polygon:
    x, y = LL_TO_3413.transform(lon, lat)
    return shapely.box(x - size / 2 + dx, y - size / 2, x + size / 2 + dx, y + size / 2)


def geodesic_area(poly_3413: shapely.Polygon, step: float = 1.0) -> float:
    """Ellipsoidal area of a 3413 polygon, densified so its edges stay straight in 3413."""
    ring = shapely.segmentize(poly_3413, step).exterior
    lon, lat = TO_LL.transform(*np.asarray(ring.coords).T)
    return abs(GEOD.polygon_area_perimeter(lon, lat)[0])


def write(path: Path, geoms, crs: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    gdf = gpd.GeoDataFrame({"Class": np.arange(len(geoms))}, geometry=list(geoms), crs=crs)
    pyogrio.write_dataframe(gdf, path, layer="iwp")
    return path


def staged_rows(stager: TileStager) -> gpd.GeoDataFrame:
    frames = [pyogrio.read_dataframe(p, layer=STAGED_LAYER) for p in stager.tiles.get_filenames_from_dir("staged")]
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs)


def tile_xy(rows: gpd.GeoDataFrame) -> set[tuple[int, int]]:
    t = rows["staging_tile"].str.extract(r"x=(\d+), y=(\d+)").astype(int)
    return set(zip(t[0], t[1]))


@pytest.fixture
def chukotka(tmp_path: Path) -> tuple[TileStager, Path, list[shapely.Polygon]]:
    geoms = [box_3413(lon, lat) for lon, lat in CHUKOTKA]
    path = write(tmp_path / "in" / "chukotka.gpkg", geoms, "EPSG:3413")
    return initialize_stager(path.parent, tmp_path / "out"), path, geoms


def test_3413_boxes_on_the_antimeridian_land_in_their_real_tiles(chukotka):
    stager, path, geoms = chukotka
    result = stager.stage(path)
    stager.finalize(progress=False)
    rows = staged_rows(stager)
    width = get_tms("WorldCRS84Quad").matrix(13).matrixWidth
    assert result.polygons_written == 3
    assert result.tiles <= 6 and result.rows_written == 6  # two tiles per polygon (they lie in 3 rows)
    assert {x for x, _ in tile_xy(rows)} == {0, width - 1}
    for _, r in rows.iterrows():  # each row holds the whole polygon, on its tile's side of 180°
        b = r.geometry.bounds
        assert b[2] - b[0] < 0.01
        if "x=0," in r["staging_tile"]:
            assert b[0] < -180 < b[2] < -179.99
        else:
            assert 179.99 < b[0] < 180 < b[2]


def test_split_polygon_keeps_one_id_one_centroid_flag_and_its_true_area(chukotka):
    stager, path, geoms = chukotka
    stager.stage(path)
    stager.finalize(progress=False)
    rows = staged_rows(stager)
    assert rows["staging_id"].nunique() == 3
    assert rows.groupby("staging_id")["staging_centroid_within_tile"].sum().tolist() == [1, 1, 1]
    assert (rows.groupby("staging_id").size() == 2).all()  # each of the three is cut in two
    for i, g in enumerate(geoms):
        mine = rows[rows["staging_id"] == f"chukotka.gpkg:{i + 1}"]
        true = geodesic_area(g)
        assert mine["staging_area"].nunique() == 1
        assert mine["staging_area"].iloc[0] == pytest.approx(true, rel=1e-4)
        # clipped to the world, the rows' geometries are the two parts, which add up to the polygon
        world = shapely.box(-180, -90, 180, 90)
        parts = sum(abs(GEOD.geometry_area_perimeter(shapely.intersection(p, world))[0]) for p in mine.geometry)
        assert parts == pytest.approx(true, rel=1e-3)
        for p in mine.geometry:
            assert abs(GEOD.geometry_area_perimeter(p)[0]) == pytest.approx(true, rel=1e-3)
        # the centroid is the polygon's (wrapped into -180..180), in the flagged row's tile
        c = shapely.centroid(g)
        lon, lat = TO_LL.transform(c.x, c.y)
        flagged = mine[mine["staging_centroid_within_tile"]].iloc[0]
        assert -180 <= flagged["staging_centroid_x"] < 180
        assert (flagged["staging_centroid_x"] - lon + 180) % 360 - 180 == pytest.approx(0, abs=1e-6)
        assert flagged["staging_centroid_y"] == pytest.approx(lat, abs=1e-6)
        tile = get_tms("WorldCRS84Quad").tile(flagged["staging_centroid_x"], flagged["staging_centroid_y"], 13)
        assert flagged["staging_tile"] == f"Tile(x={tile.x}, y={tile.y}, z=13)"


def test_4326_polygon_from_179_9995_to_minus_179_9995_is_split_not_a_band(tmp_path):
    lat = 66.5
    poly = shapely.Polygon([(179.9995, lat), (-179.9995, lat), (-179.9995, lat + 0.0002), (179.9995, lat + 0.0002)])
    path = write(tmp_path / "in" / "ll.gpkg", [poly], "EPSG:4326")
    stager = initialize_stager(path.parent, tmp_path / "out")
    result = stager.stage(path)
    stager.finalize(progress=False)
    rows = staged_rows(stager)
    assert result.tiles == 2 and len(rows) == 2
    assert rows["staging_centroid_within_tile"].sum() == 1
    # true area: the 0.001° wide box across 180°, on the ellipsoid
    true = abs(GEOD.polygon_area_perimeter([179.9995, 180.0005, 180.0005, 179.9995], [lat, lat, lat + 2e-4, lat + 2e-4])[0])
    assert rows["staging_area"].iloc[0] == pytest.approx(true, rel=1e-3)
    world = shapely.box(-180, -90, 180, 90)
    assert sum(shapely.intersection(r, world).area for r in rows.geometry) == pytest.approx(0.001 * 0.0002, rel=1e-6)


def test_polygons_that_only_reach_the_antimeridian_are_not_split(tmp_path):
    lat = 66.5
    east_edge = shapely.box(179.999, lat, 180.0, lat + 1e-4)
    path = write(tmp_path / "in" / "edge.gpkg", [east_edge], "EPSG:4326")
    stager = initialize_stager(path.parent, tmp_path / "out", simplify_tolerance=0)
    result = stager.stage(path)
    assert (result.tiles, result.rows_written) == (1, 1)


@pytest.mark.parametrize("tms, z, tiles", [("WebMercatorQuad", 14, 2), ("WebMercatorQuad", 0, 1)])
def test_antimeridian_split_works_for_web_mercator_too(tmp_path, tms, z, tiles):
    path = write(tmp_path / "in" / "wm.gpkg", [box_3413(180.0, 66.5)], "EPSG:3413")
    stager = initialize_stager(path.parent, tmp_path / "out", tms=tms, z=z)
    result = stager.stage(path)
    stager.finalize(progress=False)
    rows = staged_rows(stager)
    assert result.tiles == tiles and len(rows) == tiles  # at z=0 both parts share the one tile: one row
    assert rows["staging_centroid_within_tile"].sum() == 1


def test_split_polygons_are_counted_once_through_dedup_and_rasterization(tmp_path):
    """Two files detect the same three polygons: one copy counted, and its area covered once."""
    geoms = [box_3413(lon, lat) for lon, lat in CHUKOTKA]
    inp = tmp_path / "in"
    write(inp / "a.gpkg", geoms, "EPSG:3413")
    write(inp / "b.gpkg", [shapely.affinity.translate(g, 0.5, 0.5) for g in geoms], "EPSG:3413")
    config = Config(dir_input=inp, dir_output=tmp_path / "out")
    report = run_pipeline(config, executor="serial", progress=False)
    assert report.ok, report.failures
    s = report.summary
    assert (s["polygons_read"], s["unique_polygons"], s["duplicates_flagged"]) == (6, 3, 3)
    assert s["staged_tiles"] <= 6
    rows = staged_rows(TileStager(config))
    # every row of one polygon, on both sides of 180°, carries the same duplicate flag
    assert (rows.groupby("staging_id")["staging_duplicated"].nunique() == 1).all()
    assert rows.loc[rows["staging_filename"] == "b.gpkg", "staging_duplicated"].all()
    counted = 0.0
    for p in TileStager(config).tiles.get_filenames_from_dir("geotiff", z=13):
        with rasterio.open(p) as src:
            counted += float(np.nansum(src.read(1)))
    assert counted == 3
    # the coverage band covers the kept copies' area exactly, the parts on both sides of 180° together
    assert s["covered_area_km2"] * 1e6 == pytest.approx(sum(geodesic_area(g) for g in geoms), rel=1e-4)
    assert json.loads((config.dir_output / "run-summary.json").read_text())["unique_polygons"] == 3


def test_duplicate_rule_sees_whole_polygons_on_both_sides_of_180(tmp_path):
    """Copies overlapping by 45 % are not duplicates, although one side's parts overlap by 90 %."""
    lat, w, h = 66.5, 0.0004, 0.0002

    def box(west):
        return shapely.Polygon([(west, lat), (west + w, lat), (west + w, lat + h), (west, lat + h)])

    inp = tmp_path / "in"
    write(inp / "a.gpkg", [box(179.9998)], "EPSG:4326")  # half on each side
    b = shapely.transform(box(179.9998 + 0.55 * w), lambda xy: np.where(xy > 180, xy - 360, xy))
    write(inp / "b.gpkg", [b], "EPSG:4326")  # all east of 180°
    config = Config(dir_input=inp, dir_output=tmp_path / "out", simplify_tolerance=0)
    stager = TileStager(config)
    for p in stager.tiles.get_filenames_from_dir("input"):
        stager.stage(p)
    stager.finalize(progress=False)
    rows = staged_rows(stager)
    assert not rows["staging_duplicated"].any()
    assert rows["staging_centroid_within_tile"].sum() == 2
    # 60 % overlap: a duplicate, flagged in every row of the later file's polygon
    write(inp / "b.gpkg", [shapely.transform(box(179.9998 + 0.4 * w), lambda xy: np.where(xy > 180, xy - 360, xy))], "EPSG:4326")
    stager.stage(inp / "b.gpkg")
    stager.finalize(progress=False)
    rows = staged_rows(stager)
    assert rows.groupby("staging_filename")["staging_duplicated"].agg(["all", "any"]).to_dict("index") == {
        "a.gpkg": {"all": False, "any": False},
        "b.gpkg": {"all": True, "any": True},
    }


def test_duplicate_flag_is_the_same_in_both_tiles_when_the_other_copy_lies_on_one_side(tmp_path):
    """The first and last tile columns are neighbours for the duplicate look-around."""
    lat, w, h = 66.5, 0.0004, 0.0002

    def box(west, east):
        return shapely.Polygon([(west, lat), (east, lat), (east, lat + h), (west, lat + h)])

    inp = tmp_path / "in"
    write(inp / "a.gpkg", [box(-179.99999, -179.99959)], "EPSG:4326")  # east of 180° only
    write(inp / "b.gpkg", [box(179.9999, -179.9997)], "EPSG:4326")  # 1/4 west, 3/4 east; overlap 72 %
    config = Config(dir_input=inp, dir_output=tmp_path / "out", simplify_tolerance=0)
    stager = TileStager(config)
    for p in stager.tiles.get_filenames_from_dir("input"):
        stager.stage(p)
    stager.finalize(progress=False)
    rows = staged_rows(stager)
    b_rows = rows[rows["staging_filename"] == "b.gpkg"]
    assert len(b_rows) == 2 and b_rows["staging_duplicated"].all()  # in both tiles, also the one without a.gpkg
    assert not rows.loc[rows["staging_filename"] == "a.gpkg", "staging_duplicated"].any()
    # a change across 180° re-finalizes the tile on the other side
    width = get_tms("WorldCRS84Quad").matrix(13).matrixWidth
    last = [t for t in stager.committed_tiles() if t.x == width - 1]
    assert last
    stager.unstage(inp / "a.gpkg")
    assert set(last) <= set(stager.tiles_to_finalize())
    stager.finalize(progress=False)
    assert not staged_rows(stager)["staging_duplicated"].any()


# ------------------------------------------------------------------- poles
def test_polygon_around_the_north_pole_is_refused_naming_file_and_feature(tmp_path):
    geoms = [box_3413(-148.6, 70.25), shapely.box(-10, -10, 10, 10)]  # fid 2 holds the pole
    path = write(tmp_path / "in" / "pole.gpkg", geoms, "EPSG:3413")
    stager = initialize_stager(path.parent, tmp_path / "out")
    with pytest.raises(InputError, match=r"pole\.gpkg: feature\(s\) with fid 2 enclose or touch a pole") as err:
        stager.stage(path)
    assert "WorldCRS84Quad" in str(err.value)
    assert stager.read_manifest(path) is None
    assert not list(stager.config.dir_staging_parts.rglob("*.arrow"))


def test_polygon_700_m_from_the_pole_lands_in_the_tiles_it_touches(tmp_path):
    poly = shapely.box(690, -10, 710, 10)  # 20 m box 700 m from the North Pole along +x
    path = write(tmp_path / "in" / "near.gpkg", [poly], "EPSG:3413")
    stager = initialize_stager(path.parent, tmp_path / "out", simplify_tolerance=0)
    result = stager.stage(path)
    stager.finalize(progress=False)
    rows = staged_rows(stager)
    # independent: the columns of row 0 between the box's extreme longitudes
    lon, lat = TO_LL.transform(*np.asarray(poly.exterior.coords).T)
    tms = get_tms("WorldCRS84Quad")
    cols = {tms.tile(x, y, 13).x for x, y in zip(lon, lat)}
    expected = set(range(min(cols), max(cols) + 1))
    assert {y for _, y in tile_xy(rows)} == {0}
    assert {x for x, _ in tile_xy(rows)} == expected
    assert 30 < result.tiles < 200
    assert rows["staging_centroid_within_tile"].sum() == 1
    assert rows["staging_area"].iloc[0] == pytest.approx(geodesic_area(poly), rel=1e-4)


def test_polar_polygon_is_accepted_by_a_tms_that_holds_the_pole(tmp_path):
    """The refusal is about the TMS, not the pole: a polar TMS (EPSG:3413 grid here) is not wrapped."""
    w = antimeridian.tms_wrap(pyproj.CRS("EPSG:3413"))
    assert w.period is None and w.poles_singular == (False, True)
    assert len(antimeridian.pole_points(pyproj.CRS("EPSG:3413"), w.poles_singular)) == 1  # the South Pole only


# -------------------------------------------------------------------- guard
def test_guard_refuses_a_polygon_that_would_fan_out_naming_the_feature(chukotka, monkeypatch):
    """Without the antimeridian split (the old behaviour) the guard stops the band of 16,384 tiles."""

    def no_split(geoms, wrap):
        geoms = np.asarray(geoms, dtype=object)
        c = shapely.centroid(geoms)
        n = len(geoms)
        return geoms, geoms, np.arange(n), shapely.get_x(c), shapely.get_y(c), np.ones(n, dtype=bool)

    monkeypatch.setattr("grouputils.core.placement.split_at_antimeridian", no_split)
    stager, path, _ = chukotka
    with pytest.raises(InputError, match=r"chukotka\.gpkg: feature\(s\) with fid 1, 2, 3 would touch far more tiles"):
        stager.stage(path)
    assert stager.read_manifest(path) is None


def test_guard_lets_large_real_polygons_through(tmp_path):
    """A 3 km polygon touches many z=13 tiles legitimately: no error."""
    x, y = LL_TO_3413.transform(-148.6, 70.25)
    big = shapely.box(x, y, x + 3000, y + 3000)
    path = write(tmp_path / "in" / "big.gpkg", [big], "EPSG:3413")
    result = initialize_stager(path.parent, tmp_path / "out").stage(path)
    assert result.tiles > 4


def test_implied_tile_count_grows_as_tiles_narrow_towards_the_pole():
    boxes = np.array([[0.0, 0.0, 0.02197265625, 0.02197265625], [0.0, 89.978, 0.02197265625, 90.0]])
    n = antimeridian.implied_tile_count(np.array([20.0, 20.0]), boxes, np.array([0.01, 89.99]))
    assert n[0] == pytest.approx((20 / 2446 + 2) * (20 / 2430 + 2), rel=0.01)
    assert n[1] > 20 * n[0]


def test_tms_wrap_finds_the_antimeridian_of_lonlat_and_mercator():
    ll = antimeridian.tms_wrap(pyproj.CRS("OGC:CRS84"))
    assert (ll.period, ll.left, ll.right) == pytest.approx((360.0, -180.0, 180.0))
    wm = antimeridian.tms_wrap(pyproj.CRS("EPSG:3857"))
    assert wm.right == pytest.approx(20037508.342789244) and wm.period == pytest.approx(2 * 20037508.342789244)
    assert ll.poles_singular == wm.poles_singular == (True, True)
