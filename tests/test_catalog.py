"""The STAC catalogue of the GeoTIFF outputs: schema validity, items matching the files.

One serial pipeline run on three shipped samples is catalogued; every check
compares the catalogue with the GeoTIFFs on disk (read with rasterio), the
tile bounds from morecantile and the acquisition dates in the inputs.
Validation uses pystac's bundled core schemas and the projection schema
shipped with grouputils, so it needs no network; odc-stac loads a zoom level
from the projection fields alone (the GeoTIFFs moved away while it does).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import morecantile
import numpy as np
import pyogrio
import pystac
import pytest
import rasterio
import shapely
from pystac.errors import STACValidationError
from pystac.extensions.projection import ProjectionExtension

from grouputils.core.config import Config
from grouputils.core.errors import InputError
from grouputils.core.rasterize import write_geotiff
from grouputils.core.tiles import Tile, Tiles, tile_from_path
from grouputils.outputs.acquisition import parse_acquisition
from grouputils.outputs.catalog import (
    UndatedError,
    catalog_path,
    item_id,
    offline_validator,
    validate_stac_catalog,
    write_stac_catalog,
)
from grouputils.run.pipeline import run_pipeline
from grouputils.teaching.samples import sample_dir


@pytest.fixture(scope="module")
def run(three_scene_run: Config) -> Config:
    """A serial pipeline run on three samples; the run writes the catalogue."""
    return three_scene_run


@pytest.fixture(scope="module")
def catalog(run: Config) -> pystac.Catalog:
    return pystac.Catalog.from_file(str(catalog_path(run)))


def items_by_id(catalog: pystac.Catalog) -> dict[str, pystac.Item]:
    return {it.id: it for it in catalog.get_items(recursive=True)}


def test_the_run_writes_the_catalogue_and_names_it_in_its_summary(run: Config) -> None:
    summary = json.loads((run.dir_output / "run-summary.json").read_text())
    assert summary["stac_catalog"] == "stac/catalog.json"
    assert catalog_path(run) == run.dir_output / "stac" / "catalog.json"
    assert catalog_path(run).is_file()


def validate_all(catalog: pystac.Catalog) -> None:
    """Every object against its schemas, offline (pystac's own validate_all would download
    the projection extension's schema)."""
    validator = offline_validator()
    for obj in [catalog, *catalog.get_children(), *catalog.get_items(recursive=True)]:
        obj.validate(validator=validator)


def test_catalogue_validates_against_the_stac_schemas_offline(
    run: Config, catalog: pystac.Catalog
) -> None:
    """Every object validates offline; the only extension is the projection extension v2.0."""
    validate_all(catalog)
    n_tifs = len(Tiles(run).get_filenames_from_dir("geotiff"))
    assert validate_stac_catalog(catalog_path(run)) == n_tifs
    for item in catalog.get_items(recursive=True):
        assert item.stac_extensions == [ProjectionExtension.get_schema_uri()]
        assert ProjectionExtension.get_schema_uri().endswith("/projection/v2.0.0/schema.json")


def test_validation_really_checks_the_projection_fields(run: Config, tmp_path: Path) -> None:
    """A proj:shape that is not two integers breaks the shipped projection schema."""
    copy = tmp_path / "out"
    shutil.copytree(run.dir_output / "stac", copy / "stac")
    item_file = next((copy / "stac").glob("*-z13/*/*.json"))
    data = json.loads(item_file.read_text())
    data["properties"]["proj:shape"] = ["256", 256, 1]
    item_file.write_text(json.dumps(data))
    with pytest.raises(STACValidationError):
        validate_stac_catalog(copy / "stac" / "catalog.json")


def test_validation_really_rejects_a_broken_item(run: Config, tmp_path: Path) -> None:
    """The check above can fail: an item without a datetime is refused."""
    copy = tmp_path / "out"
    shutil.copytree(run.dir_output / "stac", copy / "stac")
    item_file = next((copy / "stac").glob("*-z13/*/*.json"))
    data = json.loads(item_file.read_text())
    data["properties"].pop("datetime")
    item_file.write_text(json.dumps(data))
    with pytest.raises(STACValidationError):
        validate_stac_catalog(copy / "stac" / "catalog.json")


def test_one_item_per_geotiff_with_its_file_and_morecantile_footprint(
    run: Config, catalog: pystac.Catalog
) -> None:
    """Items = GeoTIFFs on disk; the data asset is the file; bbox and geometry are the tile
    bounds."""
    tms = morecantile.tms.get(run.tms)
    paths = Tiles(run).get_filenames_from_dir("geotiff")
    items = items_by_id(catalog)
    assert set(items) == {item_id(run.tms, tile_from_path(p)) for p in paths}
    for path in paths:
        tile = tile_from_path(path)
        item = items[item_id(run.tms, tile)]
        asset = item.assets["data"]
        assert Path(asset.get_absolute_href()).resolve() == path.resolve()
        assert asset.media_type == pystac.MediaType.GEOTIFF and asset.roles == ["data"]
        b = tms.bounds(tile)
        assert item.bbox == pytest.approx([b.left, b.bottom, b.right, b.top], abs=1e-12)
        geom = shapely.geometry.shape(item.geometry)
        assert geom.equals(shapely.box(b.left, b.bottom, b.right, b.top))
        assert geom.exterior.is_ccw  # GeoJSON right-hand rule
        assert item.collection_id == f"{run.tms}-z{tile.z}"
        assert item.datetime is not None


def test_one_collection_per_zoom_level_whose_extent_holds_its_items(
    run: Config, catalog: pystac.Catalog
) -> None:
    per_zoom = {}
    for p in Tiles(run).get_filenames_from_dir("geotiff"):
        per_zoom[tile_from_path(p).z] = per_zoom.get(tile_from_path(p).z, 0) + 1
    collections = {c.id: c for c in catalog.get_children()}
    assert set(collections) == {f"{run.tms}-z{z}" for z in per_zoom}
    for z, n in per_zoom.items():
        coll = collections[f"{run.tms}-z{z}"]
        items = list(coll.get_items())
        assert len(items) == n
        (box,) = coll.extent.spatial.bboxes
        boxes = np.array([it.bbox for it in items])
        assert box == pytest.approx(
            [boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()]
        )


def test_bands_describe_each_statistic_with_the_pixels_statistics(
    run: Config, catalog: pystac.Catalog
) -> None:
    """Band names, nodata, unit and statistics agree with the pixels read from the file."""
    items = items_by_id(catalog)
    for path in Tiles(run).get_filenames_from_dir("geotiff", z=run.z):
        bands = items[item_id(run.tms, tile_from_path(path))].assets["data"].extra_fields["bands"]
        with rasterio.open(path) as src:
            values = src.read()
        assert [b["name"] for b in bands] == list(run.statistic_names)
        for band, stat, pixels in zip(bands, run.statistics, values, strict=True):
            ok = ~np.isnan(pixels)
            assert band["data_type"] == "float32" and band["nodata"] == "nan"
            assert band["unit"] == stat.unit and band["description"] == stat.description
            s = band["statistics"]
            assert s["minimum"] == pytest.approx(float(pixels[ok].min()))
            assert s["maximum"] == pytest.approx(float(pixels[ok].max()))
            assert s["mean"] == pytest.approx(float(pixels[ok].astype("f8").mean()), rel=1e-9)
            assert s["valid_percent"] == pytest.approx(100 * ok.mean(), rel=1e-5)


def test_web_tiles_are_visual_assets_of_their_tile(run: Config, catalog: pystac.Catalog) -> None:
    tiles = Tiles(run)
    item = next(iter(catalog.get_items(recursive=True)))
    tile = Tile(
        *[int(v) for v in item.properties["grouputils:tile"][1:]],
        item.properties["grouputils:tile"][0],
    )
    for stat in run.statistic_names:
        asset = item.assets[f"{stat}_png"]
        assert asset.roles == ["visual"] and asset.media_type == pystac.MediaType.PNG
        assert (
            Path(asset.get_absolute_href()).resolve()
            == tiles.path("web_tiles", tile, stat).resolve()
        )


def test_the_catalogue_still_resolves_after_moving_the_output_folder(
    run: Config, tmp_path: Path
) -> None:
    """Links and asset paths are relative: a moved copy validates and finds its files."""
    moved = tmp_path / "elsewhere" / "project"
    shutil.copytree(run.dir_output, moved)
    text = (moved / "stac" / "catalog.json").read_text()
    assert str(run.dir_output) not in text
    copy = pystac.Catalog.from_file(str(moved / "stac" / "catalog.json"))
    validate_all(copy)
    for item in copy.get_items(recursive=True):
        for asset in item.assets.values():
            href = Path(asset.get_absolute_href())
            assert href.is_file() and href.is_relative_to(moved)


def test_rewriting_replaces_the_catalogue_and_leaves_no_temporary_folder(
    run: Config, tmp_path: Path
) -> None:
    """After a tile disappears, the rewritten catalogue has no item for it, and no .tmp
    leftovers."""
    out = tmp_path / "out"
    shutil.copytree(run.dir_output, out)
    config = run.replace(dir_output=out)
    gone = Tiles(config).get_filenames_from_dir("geotiff", z=run.z)[0]
    gone.unlink()
    when = dt.datetime(2019, 9, 3, 21, 30, tzinfo=dt.UTC)
    path = write_stac_catalog(config, datetime=when)
    items = items_by_id(pystac.Catalog.from_file(str(path)))
    assert item_id(run.tms, tile_from_path(gone)) not in items
    assert all(it.datetime == when for it in items.values())
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []


def test_projected_tms_footprints_are_longitude_latitude(tmp_path: Path) -> None:
    """WebMercatorQuad tiles get bboxes in degrees equal to morecantile's geographic bounds."""
    config = Config(
        dir_input=tmp_path, dir_output=tmp_path / "out", tms="WebMercatorQuad", z=11, tile_size=32
    )
    tms = morecantile.tms.get(config.tms)
    tile = tms.tile(-148.8, 70.0, config.z)
    values = np.stack([np.ones((32, 32), "f4"), np.full((32, 32), 0.5, "f4")])
    write_geotiff(Tiles(config).path("geotiff", tile), values, tile, config)
    when = dt.datetime(2019, 9, 3, 22, 41, 24, tzinfo=dt.UTC)  # no staged tiles: no dates
    path = write_stac_catalog(config, include_web_tiles=False, datetime=when)
    (item,) = pystac.Catalog.from_file(str(path)).get_items(recursive=True)
    b = tms.bounds(tile)
    assert item.bbox == pytest.approx([b.left, b.bottom, b.right, b.top], abs=1e-9)
    validate_all(pystac.Catalog.from_file(str(path)))


def test_catalogue_of_a_run_without_geotiffs_is_an_input_error(tmp_path: Path) -> None:
    config = Config(dir_input=tmp_path, dir_output=tmp_path / "out")
    with pytest.raises(InputError, match="no GeoTIFFs"):
        write_stac_catalog(config)


def test_items_carry_the_projection_of_their_geotiff(run: Config, catalog: pystac.Catalog) -> None:
    """proj:code, proj:shape and proj:transform are the file's CRS, size and geotransform."""
    for item in catalog.get_items(recursive=True):
        proj = ProjectionExtension.ext(item)
        with rasterio.open(item.assets["data"].get_absolute_href()) as src:
            assert proj.code == f"EPSG:{src.crs.to_epsg()}" == "EPSG:4326"
            assert proj.shape == [src.height, src.width]
            assert proj.transform == pytest.approx(list(src.transform)[:6], abs=0, rel=0)
            assert proj.bbox == pytest.approx(list(src.bounds), abs=0, rel=0)


def _acquired(paths) -> tuple[dt.datetime, dt.datetime]:
    """Earliest and latest Date/Time (UTC) of the polygons in these GeoPackages."""
    times = []
    for path in paths:
        frame = pyogrio.read_dataframe(path, columns=["Date", "Time"], read_geometry=False)
        for d, t in frame.drop_duplicates().itertuples(index=False):
            times.append(
                dt.datetime.strptime(f"{d}{int(t):06d}", "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
            )
    return min(times), max(times)


def _span(item: pystac.Item) -> tuple[dt.datetime, dt.datetime]:
    """One scene: datetime alone; several: start/end, and datetime the latest."""
    if "start_datetime" not in item.properties:
        assert "end_datetime" not in item.properties
        return item.datetime, item.datetime
    first, last = item.common_metadata.start_datetime, item.common_metadata.end_datetime
    assert first < last == item.datetime
    return first, last


def test_item_times_are_the_acquisitions_of_the_polygons_in_the_tile(
    run: Config, catalog: pystac.Catalog
) -> None:
    """z13 items: the Date/Time of their staged polygons; the z0 item: every input's span."""
    tiles = Tiles(run)
    items = items_by_id(catalog)
    single = several = 0
    for path in tiles.get_filenames_from_dir("geotiff", z=run.z):
        tile = tile_from_path(path)
        first, last = _span(items[item_id(run.tms, tile)])
        assert (first, last) == _acquired([tiles.path("staged", tile)])
        single += first == last
        several += first < last
    assert single and several  # the three scenes overlap: some tiles hold more than one
    (top,) = [it for it in items.values() if it.properties["grouputils:tile"][0] == 0]
    assert _span(top) == _acquired(sorted(run.dir_input.glob("*.gpkg")))
    # each scene's file name carries its date
    for name in (p.name for p in run.dir_input.glob("*.gpkg")):
        assert parse_acquisition(filename=name).strftime("%Y%m%d") in name
    for coll in catalog.get_children():
        (interval,) = coll.extent.temporal.intervals
        spans = [_span(it) for it in coll.get_items()]
        assert interval == [min(a for a, _ in spans), max(b for _, b in spans)]


def test_two_identical_runs_write_byte_identical_catalogues(run: Config, tmp_path: Path) -> None:
    """No file time or clock reading gets in: a second run, later, writes the same bytes."""
    (tmp_path / "in").mkdir()
    for p in run.dir_input.glob("*.gpkg"):
        shutil.copy(p, tmp_path / "in" / p.name)  # new modification times
    again = Config(dir_input=tmp_path / "in", dir_output=tmp_path / "out")
    assert run_pipeline(again, executor="serial", progress=False).ok
    ours, theirs = run.dir_output / "stac", again.dir_output / "stac"
    names = sorted(p.relative_to(ours).as_posix() for p in ours.rglob("*.json"))
    assert names == sorted(p.relative_to(theirs).as_posix() for p in theirs.rglob("*.json"))
    assert len(names) > 3
    for name in names:
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name


def test_odc_stac_loads_a_zoom_level_from_the_catalogue_alone(run: Config, tmp_path: Path) -> None:
    """The grid comes from proj:* (the GeoTIFFs are away while the lazy load is built);
    the loaded mosaic then equals every GeoTIFF of the zoom level pixel for pixel."""
    import odc.stac

    out = tmp_path / "out"
    shutil.copytree(run.dir_output, out)
    catalog = pystac.Catalog.from_file(str(out / "stac" / "catalog.json"))
    items = list(catalog.get_child(f"{run.tms}-z{run.z}").get_items())
    bands = [f"data.{i}" for i in range(1, len(run.statistic_names) + 1)]
    (out / "geotiff").rename(out / "away")
    ds = odc.stac.load(items, bands=bands, chunks={}, groupby=lambda item, parsed, index: "one")
    (out / "away").rename(out / "geotiff")
    box = ds.odc.geobox
    assert box.crs.epsg == 4326 and ds.sizes["time"] == 1
    tms = morecantile.tms.get(run.tms)
    bounds = [
        tms.bounds(tile_from_path(Path(it.assets["data"].get_absolute_href()))) for it in items
    ]
    res = 360 / 2 ** (run.z + 1) / run.tile_size
    assert box.transform.a == pytest.approx(res) and box.transform.e == pytest.approx(-res)
    assert box.transform.c == pytest.approx(min(b.left for b in bounds))
    assert box.transform.f == pytest.approx(max(b.top for b in bounds))
    loaded = np.stack([ds[b].values[0] for b in bands])
    assert not np.isnan(loaded).all()
    size = run.tile_size
    for item in items:
        with rasterio.open(item.assets["data"].get_absolute_href()) as src:
            values, t = src.read(), src.transform
        col, row = round((t.c - box.transform.c) / res), round((box.transform.f - t.f) / res)
        np.testing.assert_array_equal(
            loaded[:, row : row + size, col : col + size], values, err_msg=item.id
        )


def test_a_run_whose_inputs_carry_no_date_gets_no_catalogue(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No Date attribute and no date in the file name: no invented time; datetime= still works."""
    (tmp_path / "in").mkdir()
    frame = pyogrio.read_dataframe(sample_dir() / "scene03_WV03_20150814.gpkg")
    pyogrio.write_dataframe(
        frame.drop(columns=["Date", "Time"]), tmp_path / "in" / "scene.gpkg", layer="iwp"
    )
    config = Config(dir_input=tmp_path / "in", dir_output=tmp_path / "out")
    with caplog.at_level("WARNING"):
        assert run_pipeline(config, executor="serial", progress=False).ok
    assert not catalog_path(config).exists()
    assert "STAC catalogue not written" in caplog.text and "no acquisition date" in caplog.text
    assert json.loads((config.dir_output / "run-summary.json").read_text())["stac_catalog"] is None
    with pytest.raises(UndatedError, match="pass datetime="):
        write_stac_catalog(config)
    when = dt.datetime(2015, 8, 14, tzinfo=dt.UTC)
    assert validate_stac_catalog(write_stac_catalog(config, datetime=when)) > 0


def test_acquisition_times_parse_attributes_and_file_names() -> None:
    utc = dt.UTC
    assert parse_acquisition("20190903", "224124") == dt.datetime(
        2019, 9, 3, 22, 41, 24, tzinfo=utc
    )
    assert parse_acquisition(20190903, 5) == dt.datetime(2019, 9, 3, 0, 0, 5, tzinfo=utc)
    assert parse_acquisition("20190903") == dt.datetime(2019, 9, 3, tzinfo=utc)
    assert parse_acquisition("2019-09-03", None, "x_20150814.gpkg") == dt.datetime(
        2015, 8, 14, tzinfo=utc
    )
    assert parse_acquisition(None, None, "prudhoe_bay_WV03_20190903.gpkg") == dt.datetime(
        2019, 9, 3, tzinfo=utc
    )
    assert parse_acquisition("20191303", None, "a.gpkg") is None  # month 13
    assert parse_acquisition(None, None, "tile_120190903.gpkg") is None  # nine digits: not a date
    assert parse_acquisition(None, None, None) is None


def test_the_real_scene_is_dated_by_its_acquisition(real_file: Path, tmp_path: Path) -> None:
    """The Prudhoe Bay file (WV03_20190903224124...): every item is 2019-09-03 22:41:24 UTC."""
    (tmp_path / "in").mkdir()
    shutil.copy(real_file, tmp_path / "in" / real_file.name)
    config = Config(dir_input=tmp_path / "in", dir_output=tmp_path / "out")
    assert run_pipeline(config, executor="serial", progress=False).ok
    catalog = pystac.Catalog.from_file(str(catalog_path(config)))
    items = list(catalog.get_items(recursive=True))
    assert len(items) == len(Tiles(config).get_filenames_from_dir("geotiff"))
    acquired = dt.datetime(2019, 9, 3, 22, 41, 24, tzinfo=dt.UTC)
    for item in items:
        assert item.datetime == acquired and "start_datetime" not in item.properties
    assert validate_stac_catalog(catalog_path(config)) == len(items)
