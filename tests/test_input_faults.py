"""Inputs that are damaged, oddly typed or of another format (issue 17, items 1-3).

A damaged GeoPackage is refused whole, naming it, and its earlier staging is
kept; polygons inside GeometryCollections are kept and counted as repaired;
vector files of other formats in the input folder are named in a warning.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pyproj
import pytest
import shapely

from grouputils.core import input_checks
from grouputils.core.config import Config
from grouputils.core.errors import InputError, RepairWarning
from grouputils.core.errors import SkippedInputWarning
from grouputils.core.input_checks import check_feature_count, check_integrity
from grouputils.run.pipeline import run_pipeline
from grouputils.core.staging import TileStager, initialize_stager
from grouputils.core.tiles import Tiles

LL_TO_3413 = pyproj.Transformer.from_crs("OGC:CRS84", "EPSG:3413", always_xy=True)


def boxes_3413(n: int, seed: int = 0, lon: float = -148.6, lat: float = 70.25) -> list[shapely.Polygon]:
    """``n`` 5-20 m boxes scattered over about 2 km near Prudhoe Bay, in EPSG:3413."""
    rng = np.random.default_rng(seed)
    x0, y0 = LL_TO_3413.transform(lon, lat)
    xs, ys = x0 + rng.uniform(0, 2000, n), y0 + rng.uniform(0, 2000, n)
    s = rng.uniform(5, 20, n)
    return list(shapely.box(xs, ys, xs + s, ys + s))


def write(path: Path, geoms, crs: str = "EPSG:3413", driver: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    gdf = gpd.GeoDataFrame({"Class": np.arange(len(geoms))}, geometry=list(geoms), crs=crs)
    kw = {"layer": "iwp"} if driver is None else {"driver": driver}
    pyogrio.write_dataframe(gdf, path, **kw)
    return path


def staging_state(stager: TileStager) -> dict[str, bytes]:
    """Every file of staging-parts, by relative path, with its bytes."""
    root = stager.config.dir_staging_parts
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------- 1. corruption
@pytest.fixture
def good_gpkg(tmp_path: Path) -> Path:
    return write(tmp_path / "in" / "scene.gpkg", boxes_3413(3000))


def damage(path: Path, fraction: float, size: int = 40_000, seed: int = 1) -> None:
    """Overwrite ``size`` bytes of garbage starting at ``fraction`` of the file (not its header page)."""
    data = bytearray(path.read_bytes())
    start = max(4096, int(len(data) * fraction))
    end = min(len(data), start + size)
    data[start:end] = np.random.default_rng(seed).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_damaged_geopackage_is_refused_naming_it_and_keeps_earlier_staging(good_gpkg: Path, tmp_path: Path, fraction):
    stager = initialize_stager(good_gpkg.parent, tmp_path / "out")
    first = stager.stage(good_gpkg)
    assert first.polygons_written == 3000
    before = staging_state(stager)
    manifest = stager.read_manifest(good_gpkg)
    damage(good_gpkg, fraction)
    with pytest.raises(InputError) as err:
        stager.stage(good_gpkg)
    assert err.value.path == good_gpkg
    assert "scene.gpkg" in str(err.value) and "damaged" in str(err.value)
    assert staging_state(stager) == before  # nothing new, nothing lost
    assert stager.read_manifest(good_gpkg) == manifest


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.7])
def test_feature_count_check_alone_refuses_a_partly_readable_file(good_gpkg, tmp_path, fraction, monkeypatch):
    """Without quick_check, the comparison with the layer's count still refuses a damaged file."""
    monkeypatch.setattr("grouputils.core.staging.stager.check_integrity", lambda path: None)
    stager = initialize_stager(good_gpkg.parent, tmp_path / "out")
    damage(good_gpkg, fraction)
    with pytest.raises(InputError, match=r"scene\.gpkg"):
        stager.stage(good_gpkg)
    assert stager.read_manifest(good_gpkg) is None
    parts = stager.config.dir_staging_parts
    assert not parts.exists() or not [p for p in parts.rglob("*.arrow")]


def test_quick_check_passes_an_intact_geopackage_and_ignores_other_formats(good_gpkg, tmp_path):
    check_integrity(good_gpkg)  # no error
    geojson = write(tmp_path / "x.geojson", boxes_3413(3), driver="GeoJSON")
    check_integrity(geojson)


def test_quick_check_never_writes_to_the_input(good_gpkg):
    good_gpkg.parent.chmod(0o555)
    good_gpkg.chmod(0o444)
    try:
        before = good_gpkg.read_bytes()
        check_integrity(good_gpkg)
        assert good_gpkg.read_bytes() == before
        assert sorted(p.name for p in good_gpkg.parent.iterdir()) == ["scene.gpkg"]
    finally:
        good_gpkg.parent.chmod(0o755)
        good_gpkg.chmod(0o644)


def test_quick_check_passes_a_wal_mode_geopackage(good_gpkg):
    import sqlite3

    con = sqlite3.connect(good_gpkg)
    assert con.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    con.close()
    check_integrity(good_gpkg)


def test_a_file_that_only_looks_like_sqlite_is_refused_naming_it(tmp_path):
    fake = tmp_path / "fake.gpkg"
    fake.write_bytes(b"SQLite format 3\x00" + b"\xff" * 5000)
    with pytest.raises(InputError, match=r"fake\.gpkg: (is damaged|cannot be checked)"):
        check_integrity(fake)


def test_feature_count_mismatch_names_file_layer_and_counts():
    with pytest.raises(InputError, match=r"a\.gpkg: layer 'iwp' declares 1453 features but 442"):
        check_feature_count(Path("a.gpkg"), "iwp", 1453, 442)
    check_feature_count(Path("a.gpkg"), "iwp", 10, 10)
    check_feature_count(Path("a.gpkg"), "iwp", -1, 5)  # unknown count: nothing to compare
    check_feature_count(Path("a.gpkg"), "iwp", None, 5)


def test_pipeline_reports_a_damaged_input_and_finishes_the_rest(tmp_path):
    inp = tmp_path / "in"
    write(inp / "a_good.gpkg", boxes_3413(200, seed=1))
    bad = write(inp / "b_bad.gpkg", boxes_3413(3000, seed=2))
    damage(bad, 0.5)
    report = run_pipeline(Config(dir_input=inp, dir_output=tmp_path / "out"), executor="serial", progress=False)
    assert not report.ok
    text = repr(report.failures)
    assert "b_bad.gpkg" in text and "a_good.gpkg" not in text
    stager = TileStager(Config(dir_input=inp, dir_output=tmp_path / "out"))
    assert stager.read_manifest(inp / "a_good.gpkg") is not None
    assert stager.read_manifest(bad) is None


# ----------------------------------------------------- 2. GeometryCollections
def test_polygons_inside_geometry_collections_are_kept_and_counted_as_repaired(tmp_path):
    boxes = boxes_3413(50, seed=3)
    gcs = [
        shapely.GeometryCollection([b, shapely.Point(b.centroid), shapely.LineString(b.exterior.coords[:2])])
        for b in boxes
    ]
    path = write(tmp_path / "in" / "collections.gpkg", gcs)
    stager = initialize_stager(path.parent, tmp_path / "out")
    with pytest.warns(RepairWarning, match=r"collections\.gpkg: repaired 50 features: 50 GeometryCollections"):
        result = stager.stage(path)
    assert (result.polygons_read, result.polygons_written, result.repaired, result.dropped) == (50, 50, 50, 0)
    stager.finalize(progress=False)
    rows = gpd.GeoDataFrame(
        pyogrio.read_dataframe(stager.tiles.get_filenames_from_dir("staged")[0], layer="staged")
    )
    assert set(rows.geom_type) <= {"Polygon", "MultiPolygon"}
    # the polygonal part is the box itself: its area in EPSG:3413 divided by the areal scale
    assert stager.read_manifest(path)["counts"]["from_collections"] == 50


def test_collections_without_polygons_are_dropped_and_mixed_ones_counted_once(tmp_path):
    b = boxes_3413(3, seed=4)
    bowtie = shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    bowtie = shapely.affinity.translate(bowtie, *b[2].exterior.coords[0])
    geoms = [
        shapely.GeometryCollection([shapely.Point(0, 0)]),  # nothing polygonal: dropped
        shapely.GeometryCollection([shapely.GeometryCollection([b[0]])]),  # nested: kept
        shapely.GeometryCollection([bowtie]),  # invalid polygon inside: made valid, counted once
        b[1],
    ]
    path = write(tmp_path / "in" / "mixed.gpkg", geoms)
    stager = initialize_stager(path.parent, tmp_path / "out")
    with pytest.warns(RepairWarning) as rec:
        result = stager.stage(path)
    assert (result.polygons_written, result.repaired, result.dropped) == (3, 2, 1)
    messages = " ".join(str(w.message) for w in rec)
    assert "mixed.gpkg" in messages and "2 GeometryCollections" in messages and "dropped 1" in messages


# ---------------------------------------------------------- 3. other formats
def test_other_vector_formats_in_the_input_folder_are_named_in_a_warning(tmp_path):
    inp = tmp_path / "in"
    write(inp / "a.gpkg", boxes_3413(5))
    write(inp / "sub" / "b.shp", boxes_3413(5), driver="ESRI Shapefile")
    write(inp / "c.geojson", boxes_3413(5), driver="GeoJSON")
    (inp / "notes.csv").write_text("a,b\n")
    config = Config(dir_input=inp, dir_output=tmp_path / "out")
    with pytest.warns(SkippedInputWarning) as rec:
        files = Tiles(config).get_filenames_from_dir("input")
    assert [p.name for p in files] == ["a.gpkg"]
    msg = str(rec[0].message)
    assert "c.geojson" in msg and "sub/b.shp" in msg and "input_ext" in msg
    assert "b.dbf" not in msg and "notes.csv" not in msg


def test_input_ext_stages_another_format_and_then_warns_about_the_geopackages(tmp_path):
    inp = tmp_path / "in"
    write(inp / "a.gpkg", boxes_3413(5))
    write(inp / "b.shp", boxes_3413(7, seed=9), driver="ESRI Shapefile")
    config = Config(dir_input=inp, dir_output=tmp_path / "out", input_ext=".shp")
    with pytest.warns(SkippedInputWarning, match=r"a\.gpkg"):
        files = Tiles(config).get_filenames_from_dir("input")
    assert [p.name for p in files] == ["b.shp"]
    assert TileStager(config).stage(files[0]).polygons_written == 7


def test_no_warning_when_every_vector_file_is_staged(tmp_path):
    inp = tmp_path / "in"
    write(inp / "a.gpkg", boxes_3413(5))
    (inp / "generator.json").write_text("{}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedInputWarning)
        assert len(Tiles(Config(dir_input=inp, dir_output=tmp_path / "out")).get_filenames_from_dir("input")) == 1
    assert input_checks.skipped_vector_files([inp / "a.gpkg", inp / "generator.json"], ".gpkg") == []


def test_shipped_samples_raise_no_skipped_input_warning(tmp_path):
    from grouputils.teaching.samples import sample_dir

    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedInputWarning)
        files = Tiles(Config(dir_input=sample_dir(), dir_output=tmp_path / "o")).get_filenames_from_dir("input")
    assert len(files) == 11
    shutil.rmtree(tmp_path / "o", ignore_errors=True)
