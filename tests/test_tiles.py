"""Tile maths agrees with morecantile, and output listings come in a deterministic order."""

from __future__ import annotations

import warnings
from pathlib import Path

import morecantile
import numpy as np
import pytest

from grouputils.core.config import Config
from grouputils.core.errors import InputError
from grouputils.core.layout import PRIVATE_DIR, Layout
from grouputils.core.tiles import (
    Tile,
    Tiles,
    key_tile,
    str_to_tile,
    tile_from_id,
    tile_from_path,
    tile_id,
    tile_key,
    tile_to_str,
    tile_xy,
    tile_zxy,
    xy_tile,
)

TMS_IDS = [
    "WorldCRS84Quad",
    "WebMercatorQuad",
    "EuropeanETRS89_LAEAQuad",
    "UTM31WGS84Quad",
    "CanadianNAD83_LCC",
]


def _tiles(tmp_path: Path, tms: str = "WorldCRS84Quad", z: int = 13) -> Tiles:
    return Tiles(Config(dir_input=tmp_path / "in", dir_output=tmp_path / "out", tms=tms, z=z))


def _points_on_and_between_edges(
    tms: morecantile.TileMatrixSet, z: int, n: int, rng: np.random.Generator
):
    """Random points inside tiles, plus the corners and edge midpoints of random tiles."""
    m = tms.matrix(z)
    xs, ys = [], []
    for col, row in zip(rng.integers(0, m.matrixWidth, n), rng.integers(0, m.matrixHeight, n)):
        b = tms.xy_bounds(Tile(int(col), int(row), z))
        fx, fy = rng.random(2)
        xs += [
            b.left + fx * (b.right - b.left),
            b.left,
            b.right,
            b.left,
            b.right,
            (b.left + b.right) / 2,
            b.left,
        ]
        ys += [
            b.bottom + fy * (b.top - b.bottom),
            b.top,
            b.bottom,
            b.bottom,
            b.top,
            b.top,
            (b.bottom + b.top) / 2,
        ]
    return np.array(xs), np.array(ys)


@pytest.mark.parametrize("tms_id", TMS_IDS)
@pytest.mark.parametrize("z", [1, 7, 13])
def test_tile_indices_match_morecantile_including_points_on_tile_edges(
    tmp_path: Path, tms_id: str, z: int
) -> None:
    tiles = _tiles(tmp_path, tms_id, z)
    tms = morecantile.tms.get(tms_id)
    x, y = _points_on_and_between_edges(tms, z, 150, np.random.default_rng(z))
    cols, rows = tiles.tile_indices(x, y)
    expected = [tms._tile(float(a), float(b), z) for a, b in zip(x, y)]
    assert cols.tolist() == [t.x for t in expected]
    assert rows.tolist() == [t.y for t in expected]


def test_tile_indices_of_the_default_grid_match_morecantile_tile_for_lon_lat(
    tmp_path: Path,
) -> None:
    tiles = _tiles(tmp_path)
    tms = morecantile.tms.get("WorldCRS84Quad")
    rng = np.random.default_rng(1)
    lon, lat = rng.uniform(-180, 180, 500), rng.uniform(-90, 90, 500)
    cols, rows = tiles.tile_indices(lon, lat)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [tms.tile(float(a), float(b), 13) for a, b in zip(lon, lat)]
    assert list(zip(cols.tolist(), rows.tolist())) == [(t.x, t.y) for t in expected]


@pytest.mark.parametrize("tms_id", TMS_IDS)
def test_tile_boxes_equal_morecantile_xy_bounds(tmp_path: Path, tms_id: str) -> None:
    tiles = _tiles(tmp_path, tms_id, 9)
    tms = morecantile.tms.get(tms_id)
    m = tms.matrix(9)
    rng = np.random.default_rng(2)
    cols, rows = rng.integers(0, m.matrixWidth, 200), rng.integers(0, m.matrixHeight, 200)
    boxes = tiles.tile_boxes(cols, rows)
    expected = np.array([tuple(tms.xy_bounds(Tile(int(c), int(r), 9))) for c, r in zip(cols, rows)])
    np.testing.assert_array_equal(boxes, expected)


def test_parent_and_children_agree_with_morecantile(tmp_path: Path) -> None:
    tiles = _tiles(tmp_path)
    tms = morecantile.tms.get("WorldCRS84Quad")
    t = Tile(1418, 908, 13)
    assert tiles.get_parent_tile(t) == tms.parent(t)[0]
    assert sorted(tiles.get_child_tiles(t)) == sorted(tms.children(t))
    with pytest.raises(ValueError, match="zoom 0"):
        tiles.get_parent_tile(Tile(0, 0, 0))


def test_tile_strings_and_paths_round_trip(tmp_path: Path) -> None:
    tiles = _tiles(tmp_path)
    t = Tile(1418, 908, 13)
    assert tile_to_str(t) == "Tile(x=1418, y=908, z=13)"
    assert str_to_tile(tile_to_str(t)) == t
    path = tiles.path("staged", t)
    assert path == tmp_path / "out" / "staged" / "WorldCRS84Quad" / "13" / "1418" / "908.gpkg"
    assert tile_from_path(path) == t
    assert tiles.path("geotiff", t).suffix == ".tif"


def test_every_external_form_of_a_tile_round_trips_through_its_one_pair_of_functions() -> None:
    for t in (Tile(0, 0, 0), Tile(1418, 908, 13), Tile(3, 1, 2)):
        assert str_to_tile(tile_to_str(t)) == t
        assert tile_from_id(tile_id("UTM31WGS84Quad", t)) == ("UTM31WGS84Quad", t)
        assert key_tile(tile_key(t)) == t
        assert xy_tile(tile_xy(t), t.z) == t
    t = Tile(1418, 908, 13)
    assert tile_id("WorldCRS84Quad", t) == "WorldCRS84Quad-13-1418-908"
    assert tile_key(t) == (13, 1418, 908) and tile_xy(t) == "1418/908"
    assert tile_zxy(t) == "13/1418/908"
    assert all(type(v) is int for v in tile_key(Tile(np.int64(1), np.int64(2), np.int64(3))))


@pytest.mark.parametrize("bad", ["Tile(x=1, y=2)", "(1, 2, 3)", "Tile(x=1, y=b, z=3)", "1/2/3"])
def test_a_string_that_is_not_a_tile_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a tile string"):
        str_to_tile(bad)


@pytest.mark.parametrize("bad", ["WorldCRS84Quad", "WorldCRS84Quad-13-x-908", "13-1418"])
def test_a_string_that_is_not_a_tile_id_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a tile id"):
        tile_from_id(bad)


def test_the_layout_owns_every_path_of_the_output_folder(tmp_path: Path) -> None:
    config = Config(dir_input=tmp_path / "in", dir_output=tmp_path / "out", tms="WebMercatorQuad")
    lay = Layout.of(config)
    out = tmp_path / "out"
    t = Tile(5, 6, 7)
    assert lay.tile_path("staged", t) == out / "staged/WebMercatorQuad/7/5/6.gpkg"
    assert lay.tile_path("geotiff", t) == out / "geotiff/WebMercatorQuad/7/5/6.tif"
    assert lay.tile_path("web_tiles", t, "iwp_coverage") == (
        out / "web_tiles/iwp_coverage/WebMercatorQuad/7/5/6.png"
    )
    assert lay.legend("iwp_coverage") == out / "web_tiles/iwp_coverage/legend.png"
    assert lay.parts_dir(t) == out / "staging-parts/WebMercatorQuad/7/5/6"
    assert lay.manifests == out / "staging-parts/manifests"
    private = out / PRIVATE_DIR
    assert (lay.state_file, lay.run_log, lay.run_lock, lay.parsl_runinfo) == (
        private / "state.sqlite",
        private / "run.log",
        private / "run.lock",
        private / "parsl-runinfo",
    )
    assert lay.state_files()[1:] == [private / "state.sqlite-wal", private / "state.sqlite-shm"]
    assert (lay.run_summary, lay.map_page, lay.catalog) == (
        out / "run-summary.json",
        out / "index.html",
        out / "stac/catalog.json",
    )
    # Config's folder names and Tiles.path are the layout's, not a second spelling
    assert (config.dir_staged, config.dir_staging_parts, config.dir_geotiff) == (
        lay.staged,
        lay.staging_parts,
        lay.geotiff,
    )
    assert config.dir_web_tiles == lay.web_tiles
    assert config.filename_staging_summary == lay.staging_summary == out / "staging_summary.csv"
    assert config.filename_rasterization_summary == lay.raster_summary
    tiles = Tiles(config)
    for kind in ("staged", "geotiff"):
        assert tiles.path(kind, t) == lay.tile_path(kind, t)
    # nothing a clear() removes is private, and every step's output is removed by one
    cleared = lay.staging_outputs() + lay.later_outputs()
    assert not any(p == lay.private or lay.private in p.parents for p in cleared)
    assert {lay.staged, lay.geotiff, lay.web_tiles, lay.stac, lay.map_page} <= set(cleared)
    with pytest.raises(ValueError, match="statistic"):
        lay.tile_root("web_tiles")
    with pytest.raises(ValueError, match="unknown kind"):
        lay.tile_path("cog", t)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", ["staged/a/b/c.gpkg", "908.gpkg", "13/x/908.gpkg", "13/1418/-1.gpkg"]
)
def test_tile_from_a_non_tile_path_is_an_input_error_naming_it(bad: str) -> None:
    with pytest.raises(InputError, match="tile path") as e:
        tile_from_path(bad)
    assert Path(bad).name in str(e.value)


def test_input_files_are_listed_sorted_by_relative_path_with_subfolders(tmp_path: Path) -> None:
    tiles = _tiles(tmp_path)
    root = tmp_path / "in"
    names = [
        "b.gpkg",
        "a.gpkg",
        "sub/a.gpkg",
        "C.GPKG",
        "a0.gpkg",
        "notes.txt",
        "sub/deeper/z.gpkg",
        "x.gpkg.bak",
    ]
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_bytes(b"")
    got = [p.relative_to(root).as_posix() for p in tiles.get_filenames_from_dir("input")]
    assert got == sorted(
        ["b.gpkg", "a.gpkg", "sub/a.gpkg", "C.GPKG", "a0.gpkg", "sub/deeper/z.gpkg"]
    )
    assert all(p.is_absolute() or p.parent.exists() for p in tiles.get_filenames_from_dir("input"))
    assert tiles.get_filenames_from_dir("input") == tiles.get_filenames_from_dir("input")


def test_staged_tiles_are_listed_in_numeric_z_x_y_order_and_temporary_files_skipped(
    tmp_path: Path,
) -> None:
    tiles = _tiles(tmp_path)
    made = [Tile(10, 2, 13), Tile(9, 10, 13), Tile(9, 9, 13), Tile(100, 1, 13), Tile(3, 3, 12)]
    for t in made:
        p = tiles.path("staged", t)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    # a writer's temporary file and unrelated files are not tiles
    d = tiles.path("staged", Tile(9, 9, 13)).parent
    (d / ".9.gpkg.1234-abcd.tmp.gpkg").write_bytes(b"")
    (d / "notes.txt").write_bytes(b"")
    got = tiles.get_filenames_from_dir("staged")
    assert [tile_from_path(p) for p in got] == sorted(made, key=lambda t: (t.z, t.x, t.y))
    only13 = tiles.get_filenames_from_dir("staged", z=13)
    assert [tile_from_path(p) for p in only13] == [
        Tile(9, 9, 13),
        Tile(9, 10, 13),
        Tile(10, 2, 13),
        Tile(100, 1, 13),
    ]
    assert tiles.get_filenames_from_dir("geotiff") == []


def test_listing_an_absent_folder_gives_an_empty_list(tmp_path: Path) -> None:
    tiles = _tiles(tmp_path)
    assert tiles.get_filenames_from_dir("input") == []
    assert tiles.get_filenames_from_dir("staged") == []
    assert tiles.get_filenames_from_dir("web_tiles") == []


@pytest.mark.parametrize("tms_id", ["WorldCRS84Quad", "WebMercatorQuad", "EuropeanETRS89_LAEAQuad", "UTM31WGS84Quad"])
def test_parents_and_children_come_from_morecantile_for_every_quadtree_set(tmp_path: Path, tms_id: str) -> None:
    tiles = _tiles(tmp_path, tms=tms_id, z=9)
    tms = morecantile.tms.get(tms_id)
    m = tms.matrix(9)
    rng = np.random.default_rng(5)
    for x, y in zip(rng.integers(0, m.matrixWidth, 20), rng.integers(0, m.matrixHeight, 20)):
        t = Tile(int(x), int(y), 9)
        assert [tiles.get_parent_tile(t)] == tms.parent(t)
        assert sorted(tiles.get_child_tiles(t)) == sorted(tms.children(t))
        assert t in tiles.get_child_tiles(tiles.get_parent_tile(t))


def test_the_pyramid_of_a_set_without_zoom_0_stops_at_its_first_level(tmp_path: Path) -> None:
    tiles = _tiles(tmp_path, tms="UTM31WGS84Quad", z=5)
    assert tiles.min_zoom == 1
    with pytest.raises(ValueError, match="lowest level"):
        tiles.get_parent_tile(Tile(0, 0, 1))


def test_a_set_whose_levels_do_not_double_is_refused_with_a_config_error(tmp_path: Path) -> None:
    from grouputils.core.errors import ConfigError

    tiles = _tiles(tmp_path, tms="CanadianNAD83_LCC", z=5)
    # morecantile: the parent of (31, 33, 5) is not (15, 16, 4), so x // 2 would be wrong
    assert Tile(15, 16, 4) not in morecantile.tms.get("CanadianNAD83_LCC").parent(Tile(31, 33, 5))
    with pytest.raises(ConfigError, match="CanadianNAD83_LCC.*four"):
        tiles.get_parent_tile(Tile(31, 33, 5))
    with pytest.raises(ConfigError, match="CanadianNAD83_LCC"):
        tiles.get_child_tiles(Tile(3, 3, 4))


def test_the_pipeline_refuses_a_set_whose_levels_do_not_double_before_writing(tmp_path: Path) -> None:
    import shutil

    from grouputils.core.errors import ConfigError
    from grouputils.run.pipeline import run_pipeline

    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy2(Path(__file__).resolve().parents[1] / "data-samples" / "scene03_WV03_20150814.gpkg", inputs)
    config = Config(dir_input=inputs, dir_output=tmp_path / "out", tms="CanadianNAD83_LCC", z=5)
    with pytest.raises(ConfigError, match="CanadianNAD83_LCC"):
        run_pipeline(config, executor="serial", progress=False)
    assert not (tmp_path / "out").exists()
