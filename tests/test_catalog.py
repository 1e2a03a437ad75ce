"""The STAC catalogue of the GeoTIFF outputs: core-schema validity, items matching the files.

One serial pipeline run on three shipped samples is catalogued; every check
compares the catalogue with the GeoTIFFs on disk (read with rasterio) and the
tile bounds from morecantile. Validation uses pystac's bundled core schemas,
so it needs no network.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import morecantile
import numpy as np
import pystac
import pytest
import rasterio
import shapely
from pystac.errors import STACValidationError
from pystac.validation import validate_all

from grouputils.outputs.catalog import catalog_path, item_id, validate_stac_catalog, write_stac_catalog
from grouputils.core.config import Config
from grouputils.core.errors import InputError
from grouputils.core.rasterize import write_geotiff
from grouputils.core.tiles import Tile, Tiles, tile_from_path

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


def test_catalogue_validates_against_the_core_stac_schemas(run: Config, catalog: pystac.Catalog) -> None:
    """Every object validates offline; nothing needs an extension schema."""
    validate_all(catalog)
    n_tifs = len(Tiles(run).get_filenames_from_dir("geotiff"))
    assert validate_stac_catalog(catalog_path(run)) == n_tifs
    for item in catalog.get_items(recursive=True):
        assert item.stac_extensions == []


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


def test_one_item_per_geotiff_with_its_file_and_morecantile_footprint(run: Config, catalog: pystac.Catalog) -> None:
    """Items = GeoTIFFs on disk; the data asset is the file; bbox and geometry are the tile bounds."""
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


def test_one_collection_per_zoom_level_whose_extent_holds_its_items(run: Config, catalog: pystac.Catalog) -> None:
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
        assert box == pytest.approx([boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()])


def test_bands_describe_each_statistic_with_the_pixels_statistics(run: Config, catalog: pystac.Catalog) -> None:
    """Band names, nodata, unit and statistics agree with the pixels read from the file."""
    items = items_by_id(catalog)
    for path in Tiles(run).get_filenames_from_dir("geotiff", z=run.z):
        bands = items[item_id(run.tms, tile_from_path(path))].assets["data"].extra_fields["bands"]
        with rasterio.open(path) as src:
            values = src.read()
        assert [b["name"] for b in bands] == list(run.statistic_names)
        for band, stat, pixels in zip(bands, run.statistics, values):
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
    tile = Tile(*[int(v) for v in item.properties["grouputils:tile"][1:]], item.properties["grouputils:tile"][0])
    for stat in run.statistic_names:
        asset = item.assets[f"{stat}_png"]
        assert asset.roles == ["visual"] and asset.media_type == pystac.MediaType.PNG
        assert Path(asset.get_absolute_href()).resolve() == tiles.path("web_tiles", tile, stat).resolve()


def test_the_catalogue_still_resolves_after_moving_the_output_folder(run: Config, tmp_path: Path) -> None:
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


def test_rewriting_replaces_the_catalogue_and_leaves_no_temporary_folder(run: Config, tmp_path: Path) -> None:
    """After a tile disappears, the rewritten catalogue has no item for it, and no .tmp leftovers."""
    out = tmp_path / "out"
    shutil.copytree(run.dir_output, out)
    config = run.replace(dir_output=out)
    gone = Tiles(config).get_filenames_from_dir("geotiff", z=run.z)[0]
    gone.unlink()
    when = dt.datetime(2019, 9, 3, 21, 30, tzinfo=dt.timezone.utc)
    path = write_stac_catalog(config, datetime=when)
    items = items_by_id(pystac.Catalog.from_file(str(path)))
    assert item_id(run.tms, tile_from_path(gone)) not in items
    assert all(it.datetime == when for it in items.values())
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []


def test_projected_tms_footprints_are_longitude_latitude(tmp_path: Path) -> None:
    """WebMercatorQuad tiles get bboxes in degrees equal to morecantile's geographic bounds."""
    config = Config(dir_input=tmp_path, dir_output=tmp_path / "out", tms="WebMercatorQuad", z=11, tile_size=32)
    tms = morecantile.tms.get(config.tms)
    tile = tms.tile(-148.8, 70.0, config.z)
    values = np.stack([np.ones((32, 32), "f4"), np.full((32, 32), 0.5, "f4")])
    write_geotiff(Tiles(config).path("geotiff", tile), values, tile, config)
    path = write_stac_catalog(config, include_web_tiles=False)
    (item,) = pystac.Catalog.from_file(str(path)).get_items(recursive=True)
    b = tms.bounds(tile)
    assert item.bbox == pytest.approx([b.left, b.bottom, b.right, b.top], abs=1e-9)
    validate_all(pystac.Catalog.from_file(str(path)))


def test_catalogue_of_a_run_without_geotiffs_is_an_input_error(tmp_path: Path) -> None:
    config = Config(dir_input=tmp_path, dir_output=tmp_path / "out")
    with pytest.raises(InputError, match="no GeoTIFFs"):
        write_stac_catalog(config)
