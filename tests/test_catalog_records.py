"""The STAC catalogue from the run's records: the same bytes as from disk, and no file opened.

The pipeline's publish step writes the catalogue from what the tile tasks
recorded in the run state (:func:`grouputils.run.records.catalog_records`).
These tests check that it equals, byte for byte, the catalogue
:func:`write_stac_catalog` writes from the GeoTIFFs and staged tiles on disk;
that publishing reads neither (the files are replaced by junk and the readers
made to raise); and that a state of the previous version (no spans, fewer
band statistics) or a failed tile falls back to the files, once.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import types
from pathlib import Path

import morecantile
import numpy as np
import pyogrio
import pytest
import rasterio

from grouputils.core.acquisition import (
    parse_acquisition,
    span_from_json,
    span_to_json,
    staged_span,
    table_span,
)
from grouputils.core.config import Config
from grouputils.core.errors import InputError
from grouputils.core.raster.geotiff import geotiff_crs, write_geotiff
from grouputils.core.staging import TileStager, staged_fingerprint
from grouputils.core.tiles import Tile, Tiles, tile_from_path, tile_key
from grouputils.outputs.acquisition import acquisition_spans, spread_spans
from grouputils.outputs.catalog import (
    BandRecord,
    ItemRecord,
    catalog_path,
    validate_stac_catalog,
    write_stac_catalog,
)
from grouputils.outputs.catalog_items import read_item_record, tms_grid
from grouputils.run.records import catalog_records
from grouputils.run.run_steps import _publish
from grouputils.run.state import STATE_DIR, STATE_FILE, RunState, TileRow
from grouputils.run.steps import ACQUIRED, adopt_staged


@pytest.fixture(scope="module")
def run(three_scene_run: Config) -> Config:
    """A serial pipeline run on three samples; its publish step wrote the catalogue."""
    return three_scene_run


def copy_run(run: Config, tmp_path: Path) -> Config:
    out = tmp_path / "out"
    shutil.copytree(run.dir_output, out)
    return run.replace(dir_output=out)


def state_of(config: Config) -> RunState:
    return RunState(config.dir_output / STATE_DIR / STATE_FILE)


def catalogue_files(stac: Path) -> dict[str, bytes]:
    return {p.relative_to(stac).as_posix(): p.read_bytes() for p in sorted(stac.rglob("*.json"))}


def assert_same_catalogue(a: Path, b: Path) -> None:
    ours, theirs = catalogue_files(a), catalogue_files(b)
    assert sorted(ours) == sorted(theirs)
    assert len(ours) > 3
    for name, data in ours.items():
        assert data == theirs[name], name


def publish(config: Config) -> None:
    """The pipeline's publish step on an output folder, forced (its catalogue removed first)."""
    shutil.rmtree(config.dir_output / "stac", ignore_errors=True)
    with state_of(config) as state:
        _publish(types.SimpleNamespace(state=state, config=config))  # type: ignore[arg-type]


def test_the_catalogue_from_records_is_byte_identical_to_the_one_from_disk(
    run: Config, tmp_path: Path
) -> None:
    """The run's catalogue (from its records), rewritten from the files, is the same bytes."""
    config = copy_run(run, tmp_path)
    kept = tmp_path / "from-records"
    shutil.copytree(config.dir_output / "stac", kept)
    write_stac_catalog(config)  # from disk: every GeoTIFF and staged tile opened
    assert_same_catalogue(kept, config.dir_output / "stac")
    # and write_stac_catalog(records=...) itself gives those bytes too
    with state_of(config) as state:
        records = catalog_records(state, config)
    assert len(records) == len(Tiles(config).get_filenames_from_dir("geotiff"))
    write_stac_catalog(config, records=records)
    assert_same_catalogue(kept, config.dir_output / "stac")


def _junk(paths: list[Path]) -> None:
    for p in paths:
        p.write_bytes(b"not a GeoTIFF nor a GeoPackage")


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"a file was opened: {args[:1]}")


def test_publishing_opens_no_geotiff_and_no_geopackage(
    run: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GeoTIFFs and staged tiles turned to junk, rasterio.open and pyogrio's readers raising:
    the publish step still writes the run's catalogue, byte for byte."""
    config = copy_run(run, tmp_path)
    tiles = Tiles(config)
    geotiffs = tiles.get_filenames_from_dir("geotiff")
    staged = tiles.get_filenames_from_dir("staged")
    assert geotiffs and staged
    _junk(geotiffs + staged)
    with pytest.raises(InputError, match="not a readable GeoTIFF"):  # reading them does fail
        write_stac_catalog(config, datetime=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    for name in ("read_arrow", "read_dataframe", "read_info", "open_arrow"):
        monkeypatch.setattr(pyogrio, name, _refuse)
    monkeypatch.setattr(rasterio, "open", _refuse)
    publish(config)
    assert_same_catalogue(run.dir_output / "stac", config.dir_output / "stac")


def _strip(config: Config) -> None:
    """Make the state look like one the previous version wrote: no spans, four band fields."""
    db = sqlite3.connect(config.dir_output / STATE_DIR / STATE_FILE)
    with db:
        db.execute(f"UPDATE tiles SET info = json_remove(info, '$.{ACQUIRED}') WHERE kind='staged'")
        for name in config.statistic_names:
            for suffix in ("stddev", "valid_percent"):
                db.execute(
                    "UPDATE tiles SET info = json_remove(info, ?) WHERE kind='geotiff'",
                    (f'$."{name}_{suffix}"',),
                )
    db.close()


def test_a_state_of_the_previous_version_is_completed_from_the_files_once(
    run: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows without the new fields are read from their files, the fields recorded (equal to
    what the tasks record), and the next publish reads nothing."""
    config = copy_run(run, tmp_path)
    with state_of(config) as state:
        before = {kind: state.rows(kind) for kind in ("staged", "geotiff")}
    _strip(config)
    with state_of(config) as state:
        assert all(ACQUIRED not in r.info for r in state.rows("staged").values())
    publish(config)
    assert_same_catalogue(run.dir_output / "stac", config.dir_output / "stac")
    with state_of(config) as state:
        assert {kind: state.rows(kind) for kind in ("staged", "geotiff")} == before
        assert state.get_meta("published") == str(state.generation)
    tiles = Tiles(config)
    _junk(tiles.get_filenames_from_dir("geotiff") + tiles.get_filenames_from_dir("staged"))
    monkeypatch.setattr(pyogrio, "read_arrow", _refuse)
    monkeypatch.setattr(rasterio, "open", _refuse)
    publish(config)
    assert_same_catalogue(run.dir_output / "stac", config.dir_output / "stac")


def test_a_failed_tile_is_described_from_its_file(run: Config, tmp_path: Path) -> None:
    """A GeoTIFF row left dirty (its task failed: the file may predate the settings) is read
    from disk, not from its record."""
    config = copy_run(run, tmp_path)
    path = Tiles(config).get_filenames_from_dir("geotiff", z=config.z)[0]
    key = tile_key(tile_from_path(path))
    with state_of(config) as state:
        row = state.rows("geotiff")[key]
        wrong = {k: (v + 1.0 if isinstance(v, float) else v) for k, v in row.info.items()}
        with state.transaction():
            state.put("geotiff", key, TileRow(row.fingerprint, row.files, wrong, row.seconds))
            state.mark("geotiff", [key])
        (rec,) = [r for r in catalog_records(state, config) if tile_key(r.tile) == key]
    assert rec == read_item_record(config, path, rec.span)[0]
    publish(config)
    assert_same_catalogue(run.dir_output / "stac", config.dir_output / "stac")


def test_recorded_spans_are_those_read_back_from_the_staged_tiles(run: Config) -> None:
    """finalize records the span of the rows it held: the same as reading the file back."""
    with state_of(run) as state:
        rows = state.rows("staged")
    dated = 0
    for row in rows.values():
        path = run.dir_output / row.files[0][0]
        assert span_from_json(row.info[ACQUIRED]) == staged_span(path)
        _, table = pyogrio.read_arrow(path, read_geometry=False)
        assert table_span(table) == staged_span(path)
        dated += staged_span(path) is not None
    assert dated == len(rows) > 0


def test_a_tables_span_is_the_span_of_its_rows_with_nulls_and_repeats() -> None:
    """table_span over the distinct (Date, Time, filename) rows equals parsing every row."""
    import pyarrow as pa

    rows = [
        ("2019-09-03", "21:10:05", "a_WV03_20190903.gpkg"),
        ("2019-09-03", "21:10:05", "a_WV03_20190903.gpkg"),
        (None, None, "b_WV02_20170711.gpkg"),
        ("2020-08-16", None, "c.gpkg"),
        (None, "10:00:00", None),
        ("2015-08-14", "08:01:02", None),
    ]
    date, time_, name = (list(c) for c in zip(*rows, strict=True))
    table = pa.table({"Date": date, "Time": time_, "staging_filename": name})

    def expected(some):
        dated = [w for w in (parse_acquisition(d, t, n) for d, t, n in some) if w is not None]
        return (min(dated), max(dated)) if dated else None

    assert expected(rows) is not None
    assert table_span(table) == expected(rows)
    for k in range(len(rows)):
        assert table_span(table.slice(k, 1)) == expected(rows[k : k + 1])
    assert table_span(table.slice(0, 0)) is None


def test_an_adopted_staged_tile_records_its_span(run: Config, tmp_path: Path) -> None:
    """A staged tile a killed run left unrecorded is adopted with its span, as finalize gives it."""
    config = copy_run(run, tmp_path)
    with state_of(config) as state:
        rows = state.rows("staged")
    stager = TileStager(config)
    for key, row in list(rows.items())[:5]:
        path = config.dir_output / row.files[0][0]
        rec = adopt_staged(stager, key, staged_fingerprint(path))
        assert rec is not None
        assert rec["info"] == row.info


def test_spans_as_recorded_round_trip() -> None:
    a = dt.datetime(2015, 8, 14, 22, 52, 33, tzinfo=dt.UTC)
    b = dt.datetime(2018, 7, 4, tzinfo=dt.UTC)
    assert span_to_json(None) == []
    assert span_from_json([]) is None
    assert span_from_json(json.loads(json.dumps(span_to_json((a, b))))) == (a, b)


def test_parents_span_their_staging_zoom_descendants_as_morecantile_nests_them(
    run: Config,
) -> None:
    """spread_spans (one pass per level) equals merging every leaf into tms.parent(leaf, zoom)."""
    tiles = Tiles(run)
    tms = morecantile.tms.get(run.tms)
    leaves = {
        tile_from_path(p): staged_span(p) for p in tiles.get_filenames_from_dir("staged", z=run.z)
    }
    wanted = [tile_from_path(p) for p in tiles.get_filenames_from_dir("geotiff")]
    expected: dict[Tile, tuple[dt.datetime, dt.datetime]] = {}
    for leaf, span in leaves.items():
        assert span is not None
        for zoom in sorted({t.z for t in wanted}):
            for t in [leaf] if zoom == run.z else tms.parent(leaf, zoom=zoom):
                if t in wanted:
                    a, b = expected.get(t, span)
                    expected[t] = (min(a, span[0]), max(b, span[1]))
    assert spread_spans(tiles, leaves, wanted) == expected == dict(acquisition_spans(tiles, wanted))
    assert len(expected) == len(wanted)


def test_the_grid_from_the_tile_matrix_set_is_the_geotiffs(tmp_path: Path) -> None:
    """CRS, shape, transform and bounds without opening the file equal those read from it,
    also for a projected set whose CRS the GeoTIFF names otherwise than the TMS."""
    for tms_id in ("WorldCRS84Quad", "WebMercatorQuad", "EuropeanETRS89_LAEAQuad"):
        config = Config(
            dir_input=tmp_path, dir_output=tmp_path / tms_id, tms=tms_id, z=9, tile_size=64
        )
        tiles = Tiles(config)
        crs = geotiff_crs(tiles)
        for tile in (Tile(3, 5, 9), Tile(200, 100, 9)):
            values = np.ones((len(config.statistics), 64, 64), "f4")
            path = write_geotiff(tiles.path("geotiff", tile), values, tile, config)
            _, on_disk = read_item_record(config, path)
            assert tms_grid(tiles, tile, crs) == on_disk, (tms_id, tile)


def test_records_whose_bands_are_not_the_statistics_are_refused(
    run: Config, tmp_path: Path
) -> None:
    config = copy_run(run, tmp_path)
    when = dt.datetime(2015, 8, 14, tzinfo=dt.UTC)
    bad = ItemRecord(Tile(0, 0, 0), "parent", (BandRecord("other", {}, {}),), (when, when))
    with pytest.raises(InputError, match="record's bands"):
        write_stac_catalog(config, records=[bad])
    with pytest.raises(InputError, match="no GeoTIFFs"):
        write_stac_catalog(config, records=[])
    good = ItemRecord(
        Tile(0, 0, 0),
        "parent",
        tuple(BandRecord(n, {"valid_percent": 1.0}, {}) for n in config.statistic_names),
        (when, when),
    )
    assert validate_stac_catalog(write_stac_catalog(config, records=[good])) == 1
    assert catalog_path(config).is_file()
