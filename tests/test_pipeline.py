"""`run_pipeline` / `grouputils run`: resumable, kill-safe, executor-independent, with a true summary.

Every test runs on a 3-file fixture (three shipped samples; two of them
overlap, so duplicates are flagged) and compares outputs by content (rows of
staged tiles, pixels and tags of GeoTIFFs, pixels of PNGs), never by
timestamps. One serial run is the reference for the whole module.
"""

from __future__ import annotations

import dataclasses
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import pytest
import rasterio
import shapely
from PIL import Image

from grouputils import cli
from grouputils.core.config import Config
from grouputils.core.rasterize import RasterTiler, read_geotiff
from grouputils.core.webtiles import colorize, encode_png, palette_lut, read_colour_ranges
from grouputils.run.pipeline import RunReport, run_pipeline

#: The shipped samples in the repository (not samples.sample_dir(), which $GROUPUTILS_DATA redirects).
SAMPLES = Path(__file__).resolve().parents[1] / "data-samples"
#: Three shipped samples: scene07 and scene08 overlap (126 re-detections), scene03 is apart.
FIXTURE = ("scene03_WV03_20150814.gpkg", "scene07_WV03_20160728.gpkg", "scene08_WV03_20180704.gpkg")
CHANGED = "scene08_WV03_20180704.gpkg"  # the input the change tests edit
APART = "scene03_WV03_20150814.gpkg"  # shares no tile with the others
OUTPUT_DIRS = ("staged", "geotiff", "web_tiles")
RANGES = "web_tiles/colour-ranges.json"  # the colour ranges the web tiles were coloured with
STEPS = ("stage", "finalize", "rasterize z=13", "parents", "web tiles")


@dataclasses.dataclass
class Run:
    inputs: Path
    out: Path
    config: Config
    report: RunReport


def copy_inputs(dest: Path, names: tuple[str, ...] = FIXTURE) -> Path:
    dest.mkdir(parents=True)
    for name in names:
        shutil.copy2(SAMPLES / name, dest / name)
    return dest


def serial_run(inputs: Path, out: Path, **settings: Any) -> Run:
    config = Config(dir_input=inputs, dir_output=out, **settings)
    report = run_pipeline(config, executor="serial", progress=False)
    assert report.ok, report.failures
    return Run(inputs, out, config, report)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """An uninterrupted serial run on the fixture; its inputs are never modified."""
    base = tmp_path_factory.mktemp("reference")
    return serial_run(copy_inputs(base / "in"), base / "out")


@pytest.fixture
def copied(reference: Run, tmp_path: Path) -> Run:
    """A copy of the reference run (inputs and outputs, modification times kept) to rerun."""
    inputs = tmp_path / "in"
    shutil.copytree(reference.inputs, inputs)  # copy2: same size and mtime, so still up to date
    out = tmp_path / "out"
    shutil.copytree(reference.out, out)
    return Run(inputs, out, dataclasses.replace(reference.config, dir_input=inputs, dir_output=out), reference.report)


@pytest.fixture(scope="module")
def changed_inputs(reference: Run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture with one polygon fewer in CHANGED, rewritten as a new file."""
    inputs = copy_inputs(tmp_path_factory.mktemp("changed") / "in")
    drop_first_polygon(inputs / CHANGED)
    return inputs


@pytest.fixture(scope="module")
def changed_fresh(changed_inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A fresh serial run on the changed inputs."""
    return serial_run(changed_inputs, tmp_path_factory.mktemp("changed-fresh") / "out")


def drop_first_polygon(path: Path) -> None:
    frame = gpd.read_file(path, layer="iwp")
    tmp = path.with_name("rewrite.tmp.gpkg")
    frame.iloc[1:].to_file(tmp, layer="iwp", driver="GPKG")
    os.replace(tmp, path)


# ------------------------------------------------------------------ comparing outputs
def tile_files(out: Path) -> dict[str, Path]:
    """Every file below staged/, geotiff/ and web_tiles/, by path relative to ``out``."""
    found = {}
    for d in OUTPUT_DIRS:
        for p in (out / d).rglob("*"):
            if p.is_file():
                found[p.relative_to(out).as_posix()] = p
    return found


def mtimes(out: Path) -> dict[str, int]:
    return {rel: p.stat().st_mtime_ns for rel, p in tile_files(out).items()}


def read_staged(path: Path) -> pd.DataFrame:
    frame = pyogrio.read_dataframe(path, layer="staged")
    assert frame.crs is not None
    rows = pd.DataFrame(frame.drop(columns="geometry"))
    rows["geometry"] = shapely.to_wkb(frame.geometry.values)
    return rows.sort_values("staging_id", ignore_index=True)


def read_tif(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    with rasterio.open(path) as src:
        meta = {
            "tags": src.tags(),
            "band_tags": [src.tags(b) for b in range(1, src.count + 1)],
            "descriptions": src.descriptions,
            "crs": src.crs.to_string(),
            "transform": tuple(src.transform),
            "dtypes": src.dtypes,
        }
        return src.read(), meta


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"))


#: Summary keys that describe the data (the rest are timings and executor facts).
SUMMARY_TOTALS = (
    "input_files", "polygons_read", "unique_polygons", "duplicates_flagged", "polygons_repaired",
    "polygons_dropped", "covered_area_km2", "staged_tiles", "geotiff_tiles_per_zoom",
)


def assert_same_outputs(expected: Path, actual: Path) -> None:
    """The two output folders hold the same tiles with the same content."""
    exp, act = tile_files(expected), tile_files(actual)
    assert sorted(act) == sorted(exp), (
        f"missing: {sorted(set(exp) - set(act))[:10]}, extra: {sorted(set(act) - set(exp))[:10]}"
    )
    for rel, p in exp.items():
        q = act[rel]
        if rel.endswith(".gpkg"):
            pd.testing.assert_frame_equal(read_staged(q), read_staged(p), obj=rel)
        elif rel.endswith(".tif"):
            (a, ma), (b, mb) = read_tif(q), read_tif(p)
            np.testing.assert_array_equal(a, b, err_msg=rel)
            assert ma == mb, rel
        elif rel.endswith(".png"):
            np.testing.assert_array_equal(read_png(q), read_png(p), err_msg=rel)
        elif rel == RANGES:
            assert json.loads(q.read_text()) == json.loads(p.read_text()), rel
        else:
            pytest.fail(f"unexpected file {rel}")
    for name in ("staging_summary.csv", "raster_summary.csv", "index.html"):
        assert (actual / name).read_text() == (expected / name).read_text(), name
    s_exp = json.loads((expected / "run-summary.json").read_text())
    s_act = json.loads((actual / "run-summary.json").read_text())
    assert {k: s_act[k] for k in SUMMARY_TOTALS} == {k: s_exp[k] for k in SUMMARY_TOTALS}
    assert s_act["failures"] == []
    assert stac_items(actual) == stac_items(expected)


def stac_items(out: Path) -> dict[str, str]:
    """Item id -> GeoTIFF path (relative to ``out``) of the run's STAC catalogue."""
    import pystac

    catalog = pystac.Catalog.from_file(str(out / "stac" / "catalog.json"))
    items = {}
    for item in catalog.get_items(recursive=True):
        tif = Path(item.assets["data"].get_absolute_href())
        assert tif.exists(), f"{item.id}: {tif} missing"
        items[item.id] = tif.resolve().relative_to(out.resolve()).as_posix()
    return items


def assert_no_partial_files(out: Path) -> None:
    """No temporary file anywhere in the outputs; every tile opens."""
    for d in (*OUTPUT_DIRS, "staging-parts"):
        leftovers = [p for p in (out / d).rglob("*") if p.name.startswith(".") or ".tmp" in p.name]
        assert not leftovers, leftovers[:5]
    assert not [p for p in out.glob(".*") if p.is_file()]
    for rel, p in tile_files(out).items():
        if rel.endswith(".gpkg"):
            assert pyogrio.read_info(p, layer="staged")["features"] > 0, rel
        elif rel.endswith(".tif"):
            read_tif(p)
        elif rel == RANGES:
            json.loads(p.read_text())
        else:
            read_png(p)


def steps(report: RunReport) -> dict[str, Any]:
    return {s.name: s for s in report.steps}


def tiles_of(out: Path, filename: str) -> set[str]:
    """``'13/x/y'`` of every staged tile holding a row of ``filename``."""
    found = set()
    for p in (out / "staged").rglob("*.gpkg"):
        names = pyogrio.read_dataframe(p, layer="staged", columns=["staging_filename"], read_geometry=False)
        if (names["staging_filename"] == filename).any():
            found.add("/".join(p.with_suffix("").parts[-3:]))
    return found


def staged_tiles(out: Path) -> set[str]:
    return {"/".join(p.with_suffix("").parts[-3:]) for p in (out / "staged").rglob("*.gpkg")}


def near(tiles: set[str], candidates: set[str]) -> set[str]:
    """The candidates that are one of ``tiles`` or one of their 8 neighbours.

    Finalizing a tile reads its neighbours' parts (duplicate flags of polygons
    that cross tile edges), so a change in a tile re-finalizes its neighbours.
    """
    cells = {tuple(int(v) for v in t.split("/")) for t in tiles}
    return {
        t for t in candidates
        if any((z, x + dx, y + dy) in cells for z, x, y in [tuple(int(v) for v in t.split("/"))]
               for dx in (-1, 0, 1) for dy in (-1, 0, 1))
    }


def with_ancestors(tiles: set[str]) -> set[str]:
    """The tiles and every ancestor down to z=0 (WorldCRS84Quad: parent = x//2, y//2)."""
    out = set()
    for t in tiles:
        z, x, y = (int(v) for v in t.split("/"))
        while z >= 0:
            out.add(f"{z}/{x}/{y}")
            z, x, y = z - 1, x // 2, y // 2
    return out


def changed_files(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {rel for rel in before.keys() | after.keys() if before.get(rel) != after.get(rel)}


def geotiff_tiles(out: Path) -> set[str]:
    """``'z/x/y'`` of every GeoTIFF."""
    return {"/".join(p.with_suffix("").parts[-3:]) for p in (out / "geotiff").rglob("*.tif")}


def recoloured_zooms(before: Path, after: Path) -> set[int]:
    """Zooms where some statistic's colour range differs between two runs' outputs."""
    a, b = read_colour_ranges(before / RANGES), read_colour_ranges(after / RANGES)
    assert a is not None and b is not None
    return {z for name in b for z in b[name] if a[name][z] != b[name][z]}


def expected_files(tiles13: set[str], config: Config) -> set[str]:
    """Output files of these z=13 tiles, their ancestors' GeoTIFFs and every web tile of them."""
    tms = config.tms
    allz = with_ancestors(tiles13)
    staged = {f"staged/{tms}/{t}.gpkg" for t in tiles13}
    tifs = {f"geotiff/{tms}/{t}.tif" for t in allz}
    pngs = {f"web_tiles/{s}/{tms}/{t}.png" for t in allz for s in config.statistic_names}
    return staged | tifs | pngs


# ---------------------------------------------------------------------- resuming
def test_a_rerun_does_nothing_and_leaves_every_output_untouched(reference: Run, copied: Run) -> None:
    before = mtimes(copied.out)
    report = run_pipeline(copied.config, executor="serial", progress=False)
    assert [s.name for s in report.steps] == list(STEPS)
    for s in report.steps:
        assert (s.done, s.failed) == (0, []), s
        assert s.skipped == s.total > 0, s
    assert mtimes(copied.out) == before  # not rewritten, not even with the same content
    assert_same_outputs(reference.out, copied.out)


def test_changing_one_input_redoes_only_its_tiles_and_their_ancestors(
    reference: Run, copied: Run, changed_inputs: Path, changed_fresh: Run
) -> None:
    shutil.copy2(changed_inputs / CHANGED, copied.inputs / CHANGED)
    before = mtimes(copied.out)
    report = run_pipeline(copied.config, executor="serial", progress=False)
    assert report.ok
    edited = tiles_of(reference.out, CHANGED) | tiles_of(copied.out, CHANGED)
    affected = near(edited, staged_tiles(reference.out) | staged_tiles(copied.out))
    assert edited and staged_tiles(reference.out) - affected  # the fixture exercises both
    by = steps(report)
    assert (by["stage"].done, by["stage"].skipped) == (1, 2)
    assert by["finalize"].done == len(affected)
    assert by["rasterize z=13"].done == len(affected)
    assert by["parents"].done == len({t for t in with_ancestors(affected) if not t.startswith("13/")})
    # web tiles: those of the tiles redone, and every one of a zoom whose colour range changed
    zooms = recoloured_zooms(reference.out, copied.out)
    assert 13 not in zooms
    recoloured = {t for t in geotiff_tiles(copied.out) if int(t.split("/")[0]) in zooms}
    assert by["web tiles"].done == len(with_ancestors(affected) | recoloured)
    expected = expected_files(affected, copied.config) | {
        f"web_tiles/{s}/{copied.config.tms}/{t}.png" for t in recoloured for s in copied.config.statistic_names
    }
    if zooms:
        expected.add(RANGES)
    assert changed_files(before, mtimes(copied.out)) == expected
    assert_same_outputs(changed_fresh.out, copied.out)
    assert report.summary["polygons_read"] == reference.report.summary["polygons_read"] - 1


def test_touching_an_input_restages_it_and_gives_the_same_outputs(reference: Run, copied: Run) -> None:
    path = copied.inputs / CHANGED
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    report = run_pipeline(copied.config, executor="serial", progress=False)
    by = steps(report)
    affected = near(tiles_of(reference.out, CHANGED), staged_tiles(reference.out))
    assert (by["stage"].done, by["finalize"].done) == (1, len(affected))
    assert_same_outputs(reference.out, copied.out)


def test_changing_a_colour_range_redoes_the_web_tiles_only(reference: Run, copied: Run) -> None:
    count, coverage = copied.config.statistics
    recoloured = dataclasses.replace(count, value_range=(0.0, 5.0))
    config = copied.config.replace(statistics=(recoloured, coverage))
    before = mtimes(copied.out)
    report = run_pipeline(config, executor="serial", progress=False)
    by = steps(report)
    assert [by[n].done for n in STEPS[:4]] == [0, 0, 0, 0]
    assert by["web tiles"].done == by["web tiles"].total == len(list((copied.out / "geotiff").rglob("*.tif")))
    changed = changed_files(before, mtimes(copied.out))
    assert changed == {r for r in before if r.startswith("web_tiles/")}
    # the count tiles (and legend) are coloured differently now, the coverage ones are not
    legend = f"web_tiles/{count.name}/legend.png"
    assert not np.array_equal(read_png(copied.out / legend), read_png(reference.out / legend))
    differ = {
        r.split("/")[1]
        for r in changed
        if r.endswith(".png") and not np.array_equal(read_png(copied.out / r), read_png(reference.out / r))
    }
    assert differ == {count.name}


# ------------------------------------------------------------- colours per zoom
CLUSTER = "scene99_WV03_20150814.gpkg"  # the dense cluster added by the recolouring test


def write_cluster(path: Path, side: int = 15) -> None:
    """``side`` x ``side`` small squares (2 m, 4 m apart) just east of APART's data: a dense spot."""
    like = gpd.read_file(SAMPLES / APART, layer="iwp")
    x0, y0 = like.total_bounds[2] + 300.0, like.total_bounds[1] + 300.0
    boxes = [shapely.box(x0 + 4 * i, y0 + 4 * j, x0 + 4 * i + 2, y0 + 4 * j + 2) for i in range(side) for j in range(side)]
    frame = gpd.GeoDataFrame(
        like.drop(columns="geometry").iloc[[0] * len(boxes)].reset_index(drop=True), geometry=boxes, crs=like.crs
    )
    frame["Area"] = 4.0
    frame["CentroidX"] = [b.centroid.x for b in boxes]
    frame["CentroidY"] = [b.centroid.y for b in boxes]
    frame.to_file(path, layer="iwp", driver="GPKG")


def colour_indices(png: Path, statistic) -> np.ndarray:
    """Palette index of every opaque pixel of a web tile."""
    index = {tuple(c): i for i, c in enumerate(palette_lut(statistic).tolist())}
    px = read_png(png)
    return np.array([index[tuple(c)] for c in px[px[..., 3] > 0].tolist()], dtype=int)


def assert_tiles_coloured_with_the_written_ranges(run: Run) -> None:
    """Every web tile is its GeoTIFF coloured with web_tiles/colour-ranges.json; the page shows them."""
    config, tiler = run.config, RasterTiler(run.config)
    ranges = read_colour_ranges(run.out / RANGES)
    assert ranges is not None
    for tif in tiler.tiles.get_filenames_from_dir("geotiff"):
        z = int(tif.parent.parent.name)
        bands = read_geotiff(tif, config)
        for band, stat in zip(bands, config.statistics, strict=True):
            png = run.out / "web_tiles" / stat.name / config.tms / str(z) / tif.parent.name / f"{tif.stem}.png"
            np.testing.assert_array_equal(
                read_png(png), colorize(band, stat, z, config.z, ranges=ranges[stat.name]), err_msg=str(png)
            )
    page = (run.out / "index.html").read_text()
    spec = json.loads(re.search(r"const SPEC = (\{.*?\});\n", page).group(1))
    for layer in spec["layers"]:
        assert layer["scale"]["ranges"] == [list(ranges[layer["name"]][z]) for z in range(config.z + 1)]


def test_zoomed_out_count_tiles_span_the_palette_and_top_zoom_tiles_keep_value_range(reference: Run) -> None:
    """Issue 19: the z10 count tiles were near-uniformly dark on the fixed scale (x64 at z10)."""
    config = reference.config
    count, _ = config.statistics
    fitted, fixed = [], []
    for png in sorted((reference.out / "web_tiles" / count.name / config.tms / "10").rglob("*.png")):
        tif = reference.out / "geotiff" / config.tms / "10" / png.parent.name / f"{png.stem}.tif"
        band = read_geotiff(tif, config)[0].astype("f8")
        fitted.append(colour_indices(png, count))
        lo, hi = count.value_range[0] * 4**3, count.value_range[1] * 4**3  # the old rule at z10
        v = band[~np.isnan(band)]
        fixed.append(np.rint(np.clip((v - lo) / (hi - lo), 0, 1) * 255))
    fitted_i, fixed_i = np.concatenate(fitted), np.concatenate(fixed)
    assert fitted_i.size == fixed_i.size > 1000
    p90, p90_fixed = np.percentile(fitted_i, 90), np.percentile(fixed_i, 90)
    assert fitted_i.max() == 255  # the level's densest pixel takes the top colour
    assert p90 >= 64 and p90 >= 3 * p90_fixed, (p90, p90_fixed)  # a quarter of the palette, 4x the old
    assert np.percentile(fitted_i, 50) >= 3 * np.percentile(fixed_i, 50)
    # z13 (the top zoom) web tiles are byte for byte what value_range alone gives
    for tif in sorted((reference.out / "geotiff" / config.tms / "13").rglob("*.tif")):
        bands = read_geotiff(tif, config)
        for band, stat in zip(bands, config.statistics, strict=True):
            png = reference.out / "web_tiles" / stat.name / config.tms / "13" / tif.parent.name / f"{tif.stem}.png"
            assert png.read_bytes() == encode_png(colorize(band, stat, 13, 13)), png
    # the ranges from the run state are the ranges the GeoTIFFs' tags give (the notebook path)
    assert read_colour_ranges(reference.out / RANGES) == RasterTiler(config).colour_ranges()
    assert_tiles_coloured_with_the_written_ranges(reference)


def test_new_data_raising_a_levels_maximum_recolours_exactly_the_levels_whose_range_changed(
    reference: Run, copied: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    count, _ = copied.config.statistics
    before = mtimes(copied.out)
    write_cluster(copied.inputs / CLUSTER)
    report = run_pipeline(copied.config, executor="serial", progress=False)
    assert report.ok, report.failures
    old, new = read_colour_ranges(reference.out / RANGES), read_colour_ranges(copied.out / RANGES)
    assert new[count.name][10][1] > old[count.name][10][1]  # the cluster raises z10's maximum
    zooms = recoloured_zooms(reference.out, copied.out)
    assert 10 in zooms and 13 not in zooms
    changed = changed_files(before, mtimes(copied.out))
    redone = {r.split("/", 2)[2].removesuffix(".tif") for r in changed if r.startswith("geotiff/")}
    recoloured = {t for t in geotiff_tiles(copied.out) if int(t.split("/")[0]) in zooms}
    assert recoloured - redone  # web tiles recoloured although their GeoTIFF is unchanged
    names = copied.config.statistic_names
    expected = {f"web_tiles/{s}/{copied.config.tms}/{t}.png" for t in redone | recoloured for s in names}
    assert {r for r in changed if r.startswith("web_tiles/") and r.endswith(".png")} - {
        f"web_tiles/{s}/legend.png" for s in names
    } == expected
    assert steps(report)["web tiles"].done == len(redone | recoloured)
    assert RANGES in changed
    assert_tiles_coloured_with_the_written_ranges(copied)
    # and nothing is redone when nothing changed again, without a pass over the GeoTIFF rows
    from grouputils.run.state import RunState

    def no_scan(*args: Any) -> None:
        raise AssertionError("the maxima were read again although no GeoTIFF changed")

    monkeypatch.setattr(RunState, "info_max_by_zoom", no_scan)
    again = mtimes(copied.out)
    report = run_pipeline(copied.config, executor="serial", progress=False)
    assert [(s.done, s.failed) for s in report.steps] == [(0, [])] * len(STEPS)
    assert mtimes(copied.out) == again


def test_changing_the_duplicate_overlap_redoes_finalize_and_everything_after(
    reference: Run, copied: Run, tmp_path: Path
) -> None:
    config = copied.config.replace(dedup_overlap=0.9)
    report = run_pipeline(config, executor="serial", progress=False)
    by = steps(report)
    assert by["stage"].done == 0  # staging does not depend on it
    for name in STEPS[1:]:
        assert by[name].done == by[name].total > 0, name
    fresh = serial_run(reference.inputs, tmp_path / "fresh", dedup_overlap=0.9)
    assert fresh.report.summary["duplicates_flagged"] != reference.report.summary["duplicates_flagged"]
    assert_same_outputs(fresh.out, copied.out)


def test_force_starts_over(reference: Run, copied: Run) -> None:
    stray = copied.out / "geotiff" / copied.config.tms / "13" / "1" / "1.tif"  # not made from any input
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"junk")
    report = run_pipeline(copied.config, executor="serial", progress=False, force=True)
    for s in report.steps:
        assert (s.done, s.skipped) == (s.total, 0), s
    assert_same_outputs(reference.out, copied.out)


def test_removing_an_input_removes_its_tiles(reference: Run, copied: Run, tmp_path: Path) -> None:
    gone = tiles_of(reference.out, APART)
    assert gone
    (copied.inputs / APART).unlink()
    report = run_pipeline(copied.config, executor="serial", progress=False)
    assert report.ok and report.summary["input_files"] == 2
    left = set(tile_files(copied.out))
    for t in gone:
        assert f"staged/{copied.config.tms}/{t}.gpkg" not in left
        assert f"geotiff/{copied.config.tms}/{t}.tif" not in left
    assert sorted(stac_items(copied.out).values()) == sorted(r for r in left if r.startswith("geotiff/"))
    fresh = serial_run(copy_inputs(tmp_path / "two", tuple(n for n in FIXTURE if n != APART)), tmp_path / "fresh")
    assert_same_outputs(fresh.out, copied.out)


# -------------------------------------------------------------- killed and rerun
def run_cli_killed(inputs: Path, out: Path, point: str) -> subprocess.CompletedProcess:
    """Run the command line and SIGKILL its whole process group from outside at ``point``.

    ``point`` is ``"<step>:<n>"``: the kill comes as soon as the run has committed
    ``n`` items of that step (polled every few milliseconds), like a node failure
    or the out-of-memory killer at that moment.
    """
    step, _, n = point.rpartition(":")
    ready = KILL_WHEN[step]
    cmd = [sys.executable, "-m", "grouputils.cli", "run", str(inputs), str(out), "--executor", "serial", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 600
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if ready(out) >= int(n):
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def recorded_tiles(out: Path, kind: str) -> int:
    """Tiles of ``kind`` the run's state records as done (read-only, from outside the run)."""
    import sqlite3

    path = out / ".grouputils" / "state.sqlite"
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.1)) as db:
            return db.execute("SELECT count(*) FROM tiles WHERE kind = ?", (kind,)).fetchone()[0]
    except sqlite3.Error:
        return 0


def _committed(out: Path, pattern: str) -> int:
    """Files renamed into place (temporary files are hidden: ``.<name>.<id>.tmp<suffix>``)."""
    return sum(not p.name.startswith(".") for p in out.glob(pattern))


#: step -> how many of its items a run has committed so far (read from outside the run)
KILL_WHEN = {
    "stage": lambda out: _committed(out, "staging-parts/manifests/*.json"),
    "finalize": lambda out: _committed(out, "staged/*/13/*/*.gpkg"),
    "rasterize": lambda out: recorded_tiles(out, "geotiff"),
    "web tiles": lambda out: _committed(out, "web_tiles/*/*/*/*/*.png"),
}


def count(out: Path, pattern: str) -> int:
    return len(list(out.glob(pattern)))


# kill point -> (files the killed run must have written some but not all of, the step it died in,
#                whether the rerun must keep the batches finished before the kill)
# Staging and finalize commit each file / tile; the later steps (rasterize, 'parents z=<z>', web
# tiles) save their manifest at most once a second as batches finish, so only the first save of a
# run (in rasterize) is sure to precede a kill.
KILL_POINTS = {
    "stage:1": ("staging-parts/manifests/*.json", "stage", True),
    "finalize:1": ("staged/*/13/*/*.gpkg", "finalize", True),
    "rasterize:1": ("geotiff/*/13/*/*.tif", "rasterize z=13", True),
    "web tiles:2": ("web_tiles/*/*/*/*/*.png", "web tiles", False),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_run_killed_at_any_point_reruns_to_identical_outputs(reference: Run, tmp_path: Path, point: str) -> None:
    out = tmp_path / "out"
    proc = run_cli_killed(reference.inputs, out, point)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (out / "run-summary.json").exists()
    pattern, killed_in, keeps_batches = KILL_POINTS[point]
    assert 0 < count(out, pattern) < count(reference.out, pattern), "the kill came before or after that step"
    assert cli.main(["run", str(reference.inputs), str(out), "--executor", "serial", "--no-progress"]) == 0
    assert_same_outputs(reference.out, out)
    assert_no_partial_files(out)
    # the rerun kept what was finished before the kill, even within the step it died in
    rerun = {s["name"]: s for s in json.loads((out / "run-summary.json").read_text())["steps"]}
    for name in STEPS[: STEPS.index(killed_in)]:
        assert rerun[name]["done"] == 0, name
    assert 0 < rerun[killed_in]["done"] <= rerun[killed_in]["total"]
    if keeps_batches:
        assert rerun[killed_in]["done"] < rerun[killed_in]["total"]


def test_a_rerun_killed_after_an_input_changed_still_ends_like_a_fresh_run(
    copied: Run, changed_inputs: Path, changed_fresh: Run
) -> None:
    shutil.copy2(changed_inputs / CHANGED, copied.inputs / CHANGED)
    proc = run_cli_killed(copied.inputs, copied.out, "rasterize:1")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert cli.main(["run", str(copied.inputs), str(copied.out), "--executor", "serial", "--no-progress"]) == 0
    assert_same_outputs(changed_fresh.out, copied.out)
    assert_no_partial_files(copied.out)


# ------------------------------------------------------------------- executors
def test_a_local_parallel_run_gives_the_same_outputs_as_a_serial_run(reference: Run, tmp_path: Path) -> None:
    config = reference.config.replace(dir_output=tmp_path / "out")
    report = run_pipeline(config, executor="local", workers=2, progress=False)
    assert report.ok, report.failures
    assert report.summary["executor"] == "local" and report.summary["executor_startup_s"] > 0
    assert_same_outputs(reference.out, config.dir_output)
    assert_no_partial_files(config.dir_output)


def test_two_blocks_simulating_two_nodes_give_the_same_outputs_as_a_serial_run(
    reference: Run, tmp_path: Path
) -> None:
    config = reference.config.replace(dir_output=tmp_path / "out")
    report = run_pipeline(config, executor="local", workers=1, blocks=2, progress=False)
    assert report.ok, report.failures
    assert report.summary["blocks"] == 2
    # both worker pools ran tasks (Parsl keeps one log folder per block)
    for block in ("block-0", "block-1"):
        logs = list((config.dir_output / ".grouputils" / "parsl-runinfo").glob(f"*/htex_local/{block}/*/worker_*.log"))
        assert any("Completed executor task" in p.read_text() for p in logs), block
    assert_same_outputs(reference.out, config.dir_output)


# ------------------------------------------------------------- a broken input
def test_a_broken_input_fails_alone_and_a_rerun_after_fixing_it_completes(
    reference: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = copy_inputs(tmp_path / "in")
    broken = inputs / CHANGED
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # a download cut short
    out = tmp_path / "out"
    args = ["run", str(inputs), str(out), "--executor", "serial", "--no-progress"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert f"FAILED stage: {broken}" in err
    summary = json.loads((out / "run-summary.json").read_text())
    assert [(f["step"], f["item"]) for f in summary["failures"]] == [("stage", str(broken))]
    assert "cannot be opened" in summary["failures"][0]["error"]
    assert summary["input_files"] == 2  # the others were staged and went all the way
    assert (out / "index.html").exists() and count(out, "web_tiles/*/*/0/0/0.png") == 2
    assert str(broken) in (out / ".grouputils" / "run.log").read_text()

    shutil.copy2(reference.inputs / CHANGED, broken)
    assert cli.main(args) == 0
    assert_same_outputs(reference.out, out)
    assert_no_partial_files(out)
    # what the command line prints and leaves besides the outputs
    printed = capsys.readouterr().out
    assert f"unique polygons        {reference.report.summary['unique_polygons']}" in printed
    log = (out / ".grouputils" / "run.log").read_text()
    for name in STEPS:
        assert f"{name}: " in log
    with Image.open(out / "run-resources.png") as im:
        assert im.size[0] > 300 and im.size[1] > 300
        assert len(np.unique(np.asarray(im.convert("L")))) > 10  # drawn, not blank


# --------------------------------------------------------------------- summary
def test_the_summary_totals_match_independent_counts(reference: Run) -> None:
    s = json.loads((reference.out / "run-summary.json").read_text())
    assert s == json.loads(json.dumps(reference.report.summary))
    staged = [read_staged(p) for p in sorted((reference.out / "staged").rglob("*.gpkg"))]
    rows = pd.concat(staged, ignore_index=True)
    within = rows["staging_centroid_within_tile"].astype(bool)
    dup = rows["staging_duplicated"].astype(bool)
    assert s["unique_polygons"] == int((within & ~dup).sum())
    assert s["duplicates_flagged"] == int((within & dup).sum())
    # the generator's list of re-detections between the fixture's files
    redetections = pd.read_csv(SAMPLES / "redetections.csv")
    both = redetections["file"].isin(FIXTURE) & redetections["original_file"].isin(FIXTURE)
    assert s["duplicates_flagged"] == int(both.sum()) > 0
    assert s["polygons_read"] == sum(pyogrio.read_info(reference.inputs / n)["features"] for n in FIXTURE)
    assert s["input_files"] == len(FIXTURE)
    # the count band at z=13 counts every unique polygon once
    total = 0.0
    for p in (reference.out / "geotiff").rglob("13/*/*.tif"):
        with rasterio.open(p) as src:
            total += float(np.nansum(src.read(1)))
    assert total == s["unique_polygons"]
    # covered area: geodesic area of the union of the non-duplicate polygons
    union = shapely.union_all(shapely.from_wkb(rows.loc[~dup, "geometry"].to_numpy()))
    area_km2 = abs(pyproj.Geod(ellps="WGS84").geometry_area_perimeter(union)[0]) / 1e6
    assert s["covered_area_km2"] == pytest.approx(area_km2, rel=1e-4)
    on_disk = {
        str(z): len(list((reference.out / "geotiff" / reference.config.tms / str(z)).rglob("*.tif")))
        for z in range(reference.config.z + 1)
    }
    assert s["geotiff_tiles_per_zoom"] == on_disk and on_disk["0"] == 1
    assert s["staged_tiles"] == len(staged)
    assert [st["name"] for st in s["steps"]] == list(STEPS)
    assert all(st["seconds"] > 0 and st["peak_rss_mb"] > 0 for st in s["steps"])


# ------------------------------------------------- outputs edited or damaged by hand
def one_of(out: Path, pattern: str) -> Path:
    found = sorted(out.glob(pattern))
    assert found, pattern
    return found[len(found) // 2]


def test_a_staged_tile_with_half_its_rows_deleted_is_redone_on_rerun(reference: Run, copied: Run) -> None:
    path = one_of(copied.out, "staged/*/13/*/*.gpkg")
    frame = pyogrio.read_dataframe(path, layer="staged")
    assert len(frame) >= 2
    pyogrio.write_dataframe(frame.iloc[: len(frame) // 2], path, layer="staged", driver="GPKG")
    report = run_pipeline(copied.config, executor="serial", progress=False)
    assert report.ok, report.failures
    assert steps(report)["finalize"].done == 1
    assert_same_outputs(reference.out, copied.out)


def test_a_corrupt_png_is_redone_on_rerun(reference: Run, copied: Run) -> None:
    path = one_of(copied.out, "web_tiles/*/*/13/*/*.png")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    report = run_pipeline(copied.config, executor="serial", progress=False)
    assert report.ok, report.failures
    by = steps(report)
    assert [by[n].done for n in STEPS] == [0, 0, 0, 0, 1]
    assert_same_outputs(reference.out, copied.out)


def test_a_corrupt_geotiff_is_redone_and_later_runs_do_not_abort(reference: Run, copied: Run) -> None:
    path = one_of(copied.out, "geotiff/*/12/*/*.tif")
    data = bytearray(path.read_bytes())
    data[len(data) // 2 :] = b"\0" * (len(data) - len(data) // 2)  # same size, new mtime: damaged in place
    path.write_bytes(bytes(data))
    report = run_pipeline(copied.config, executor="serial", progress=False)
    assert report.ok, report.failures
    by = steps(report)
    assert by["parents"].done >= 1 and by["rasterize z=13"].done == 0
    assert_same_outputs(reference.out, copied.out)
    again = run_pipeline(copied.config, executor="serial", progress=False)
    assert again.ok and all(s.done == 0 for s in again.steps)


def test_the_run_state_replaces_the_manifest_and_matches_the_outputs(reference: Run) -> None:
    from grouputils.core.rasterize import RasterTiler, covered_area_m2

    out = reference.out
    assert (out / ".grouputils" / "state.sqlite").is_file()
    assert not (out / "run-manifest.json").exists()
    # the CSV written from the state is what the GeoTIFFs' tags say
    from_tags = RasterTiler(reference.config).summary().to_csv(index=False)
    assert (out / "raster_summary.csv").read_text() == from_tags
    summary = json.loads((out / "run-summary.json").read_text())
    assert summary["covered_area_km2"] == pytest.approx(covered_area_m2(reference.config) / 1e6, rel=1e-9)


def test_a_rerun_with_nothing_to_do_starts_no_worker_pool(reference: Run, copied: Run) -> None:
    report = run_pipeline(copied.config, executor="local", workers=2, progress=False)
    assert report.ok and all(s.done == 0 and s.skipped == s.total for s in report.steps)
    assert report.summary["executor_startup_s"] == 0.0
    assert not list(copied.out.rglob("*runinfo*"))  # Parsl never loaded
    assert_same_outputs(reference.out, copied.out)
