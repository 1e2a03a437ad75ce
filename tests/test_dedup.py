"""Duplicate flags across overlapping scenes (issue 4, step 6), as a specification.

The documented rule (grouputils.core.dedup): two polygons from *different* input
files are the same ground polygon when their intersection covers at least
``dedup_overlap`` (default 0.5) of the smaller one; every copy but the one from
the input file whose path sorts first is flagged ``staging_duplicated``.
Overlaps inside one file are never flagged. The flags do not depend on the
order files are staged in, nor on the number of workers.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import warnings
from pathlib import Path

import geopandas as gpd
import morecantile
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import pytest
import shapely
from geopandas.testing import assert_geodataframe_equal

from grouputils.core.dedup import duplicate_flags, overlapping_pairs
from grouputils.core.errors import InputError, RepairWarning
from grouputils.core.staging import (
    TileStager,
    counted_rows,
    duplicates_within,
    initialize_stager,
    read_staged_tile,
)
from grouputils.core.tiles import Tile

Z = 13
TMS = morecantile.tms.get("WorldCRS84Quad")
LL_TO_3413 = pyproj.Transformer.from_crs("OGC:CRS84", "EPSG:3413", always_xy=True)


# ------------------------------------------------------------------ helpers
def rect(x: float, y: float, w: float, h: float, angle: float) -> shapely.Polygon:
    r = shapely.affinity.rotate(shapely.box(-w / 2, -h / 2, w / 2, h / 2), angle, origin=(0, 0))
    return shapely.affinity.translate(r, x, y)


def moved(g: shapely.Polygon, dx: float, dy: float, angle: float = 0.0) -> shapely.Polygon:
    """A re-detection: the same outline shifted (misregistration) and slightly turned."""
    return shapely.affinity.translate(shapely.affinity.rotate(g, angle, origin="centroid"), dx, dy)


def write(path: Path, geoms: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    gdf = gpd.GeoDataFrame(
        {"Class": np.ones(len(geoms), dtype="int64")}, geometry=geoms, crs="EPSG:3413"
    )
    pyogrio.write_dataframe(gdf, path, layer="iwp")
    return path


def stage(stager: TileStager, files, finalize_each: bool = False) -> TileStager:
    for p in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RepairWarning)
            stager.stage(p)
        if finalize_each:
            stager.finalize(progress=False)
    stager.finalize(progress=False)
    return stager


def rows(stager: TileStager) -> gpd.GeoDataFrame:
    frames = [
        read_staged_tile(p, stager.config) for p in stager.tiles.get_filenames_from_dir("staged")
    ]
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs)


def flags_by_id(stager: TileStager) -> pd.Series:
    """Each polygon's flag (from the row holding its centroid), indexed by staging_id."""
    g = rows(stager)
    w = g[g.staging_centroid_within_tile]
    return w.set_index("staging_id")["staging_duplicated"].sort_index()


def snapshot(stager: TileStager) -> dict[str, gpd.GeoDataFrame]:
    out = {}
    for p in stager.tiles.get_filenames_from_dir("staged"):
        g = pyogrio.read_dataframe(p, use_arrow=True).sort_values("staging_id", ignore_index=True)
        out[p.relative_to(stager.config.dir_staged).as_posix()] = g
    return out


def assert_same(a: TileStager, b: TileStager) -> None:
    sa, sb = snapshot(a), snapshot(b)
    assert sorted(sa) == sorted(sb)
    for k in sa:
        assert_geodataframe_equal(sa[k], sb[k])


def brute_force_flags(files: dict[str, list]) -> dict[str, bool]:
    """The documented rule computed directly, pair by pair, in EPSG:3413 metres."""
    items = [(src, fid, g) for src in sorted(files) for fid, g in enumerate(files[src], start=1)]
    flags = {f"{src}:{fid}": False for src, fid, _ in items}
    for (s1, f1, g1), (s2, f2, g2) in itertools.combinations(items, 2):
        if s1 == s2 or not g1.intersects(g2):
            continue
        ratio = g1.intersection(g2).area / min(g1.area, g2.area)
        if ratio >= 0.5:
            later = f"{s2}:{f2}" if s2 > s1 else f"{s1}:{f1}"
            flags[later] = True
    return flags


def centres_away_from_edges(rng, n: int, cols: range, row: int, margin_m: float = 30.0):
    """Random points in tiles ``cols`` x ``row`` at least ``margin_m`` from every tile edge (EPSG:3413)."""
    out = []
    while len(out) < n:
        c = int(rng.choice(list(cols)))
        b = TMS.xy_bounds(Tile(c, row, Z))
        mx, my = (
            margin_m / 800 * (b.right - b.left),
            margin_m / 2400 * (b.top - b.bottom),
        )  # ~m -> degrees at 70N
        lon = rng.uniform(b.left + 2 * mx, b.right - 2 * mx)
        lat = rng.uniform(b.bottom + 2 * my, b.top - 2 * my)
        out.append(LL_TO_3413.transform(lon, lat))
    return out


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> tuple[Path, dict[str, list]]:
    """Three overlapping scenes with known re-detections, near and across tile edges.

    * ``a.gpkg``: 30 ground polygons, 6 straddling the edge between tiles 1418 and 1419,
      plus 4 of its own near-copies (overlapping inside the file).
    * ``b.gpkg`` (sorts second): re-detects 20 of a's polygons (shifted <= 1 m, turned 3 deg),
      5 polygons overlapping one of a's by only ~25 %, and 10 new polygons.
    * ``c.gpkg`` (sorts last): re-detects 8 of a's polygons (a third copy) and 5 of b's new ones.
    """
    rng = np.random.default_rng(7)
    d = tmp_path_factory.mktemp("dedup-input")
    ground = [
        rect(x, y, *rng.uniform(8, 14, 2), rng.uniform(0, 90))
        for x, y in centres_away_from_edges(rng, 34, range(1418, 1420), 908)
    ]
    edge = TMS.xy_bounds(Tile(1419, 908, Z)).left
    lat0, lat1 = TMS.xy_bounds(Tile(1419, 908, Z)).bottom, TMS.xy_bounds(Tile(1419, 908, Z)).top
    straddlers = [
        rect(*LL_TO_3413.transform(edge, lat), 10, 9, 15)
        for lat in np.linspace(lat0, lat1, 8)[1:-1]
    ]
    a_polys = ground[:24] + straddlers  # 30 ground polygons
    new_b = ground[24:34]
    a = a_polys + [moved(g, 0.4, 0.3) for g in a_polys[:4]]
    b = (
        [moved(g, 0.8, -0.6, 3) for g in a_polys[:14]]
        + [moved(g, -0.5, 0.7, -3) for g in straddlers]
        + [moved(g, 0.75 * np.sqrt(g.area), 0.0) for g in a_polys[14:19]]
        + new_b
    )
    c = [moved(g, -0.7, 0.5, 2) for g in a_polys[:8]] + [moved(g, 0.6, 0.6, 4) for g in new_b[:5]]
    files = {"a.gpkg": a, "b.gpkg": b, "c.gpkg": c}
    for name, geoms in files.items():
        write(d / name, geoms)
    return d, files


@pytest.fixture(scope="module")
def staged(scenes, tmp_path_factory) -> TileStager:
    d, _ = scenes
    s = initialize_stager(d, tmp_path_factory.mktemp("dedup-out"), simplify_tolerance=0)
    return stage(s, s.tiles.get_filenames_from_dir("input"))


# ------------------------------------------------------------------ the rule
def test_polygon_in_two_files_is_flagged_in_all_copies_but_the_one_from_the_file_that_sorts_first(
    staged,
) -> None:
    flags = flags_by_id(staged)
    # a's originals are kept, b's and c's re-detections of them are flagged
    assert not flags[[f"a.gpkg:{i}" for i in range(1, 31)]].any()
    assert flags[[f"b.gpkg:{i}" for i in range(1, 21)]].all()
    assert flags[[f"c.gpkg:{i}" for i in range(1, 9)]].all()
    # b's new polygons are kept, c's re-detections of them are flagged
    assert not flags[[f"b.gpkg:{i}" for i in range(26, 36)]].any()
    assert flags[[f"c.gpkg:{i}" for i in range(9, 14)]].all()


def test_flags_follow_the_documented_overlap_rule_checked_pair_by_pair(staged, scenes) -> None:
    _, files = scenes
    # no pair is near the threshold, so the CRS the ratio is computed in cannot matter
    ratios = [
        g1.intersection(g2).area / min(g1.area, g2.area)
        for (s1, l1), (s2, l2) in itertools.combinations(files.items(), 2)
        for g1 in l1
        for g2 in l2
        if g1.intersects(g2)
    ]
    assert not any(0.4 < r < 0.6 for r in ratios)
    expected = pd.Series(brute_force_flags(files)).sort_index()
    got = flags_by_id(staged)
    pd.testing.assert_series_equal(got, expected, check_names=False, check_index=True)
    assert 30 < got.sum() < len(got)


def test_overlap_below_the_threshold_is_not_a_duplicate_and_the_threshold_is_configurable(
    scenes, tmp_path: Path
) -> None:
    d, files = scenes
    weak = [f"b.gpkg:{i}" for i in range(21, 26)]  # ~25 % overlap with one of a's polygons
    ratios = [
        max(g.intersection(h).area / min(g.area, h.area) for h in files["a.gpkg"])
        for g in files["b.gpkg"][20:25]
    ]
    assert all(0.1 < r < 0.4 for r in ratios)
    default = stage(
        initialize_stager(d, tmp_path / "default", simplify_tolerance=0),
        [d / "a.gpkg", d / "b.gpkg"],
    )
    assert not flags_by_id(default)[weak].any()
    low = stage(
        initialize_stager(d, tmp_path / "low", simplify_tolerance=0, dedup_overlap=0.1),
        [d / "a.gpkg", d / "b.gpkg"],
    )
    assert flags_by_id(low)[weak].all()


def test_overlaps_within_one_file_are_never_flagged(scenes, staged, tmp_path: Path) -> None:
    _, files = scenes
    # a.gpkg holds 4 near-copies of its own polygons (fids 31-34): not duplicates
    assert not flags_by_id(staged)[[f"a.gpkg:{i}" for i in range(31, 35)]].any()
    # a file of exact copies of its own polygons, alone
    only = tmp_path / "only"
    write(only / "twice.gpkg", files["a.gpkg"][:10] * 2)
    s = stage(
        initialize_stager(only, tmp_path / "out", simplify_tolerance=0), [only / "twice.gpkg"]
    )
    assert not rows(s)["staging_duplicated"].any()


def test_copies_crossing_tile_edges_are_flagged_in_every_tile_they_are_written_to(staged) -> None:
    g = rows(staged)
    straddling_b = [f"b.gpkg:{i}" for i in range(15, 21)]
    sub = g[g.staging_id.isin(straddling_b)]
    assert set(sub.staging_tile) == {"Tile(x=1418, y=908, z=13)", "Tile(x=1419, y=908, z=13)"}
    assert len(sub) == 2 * len(straddling_b)
    assert sub.staging_duplicated.all()
    originals = g[g.staging_id.isin([f"a.gpkg:{i}" for i in range(25, 31)])]
    assert len(originals) == 12 and not originals.staging_duplicated.any()


def test_the_count_rule_counts_every_ground_polygon_once_and_every_redetection_once(
    staged,
) -> None:
    g = rows(staged)
    flags = flags_by_id(staged)
    within, dup = g.staging_centroid_within_tile, g.staging_duplicated
    counted = counted_rows(within, dup)
    assert counted.sum() == (~flags).sum() and duplicates_within(within, dup).sum() == flags.sum()
    assert g.staging_id[counted].is_unique  # one row per kept polygon, whatever tiles it crosses
    assert counted.sum() + duplicates_within(within, dup).sum() == g.staging_id.nunique()
    assert staged.finalize_tile(Tile(1418, 908, Z))["duplicates_within"] == int(
        duplicates_within(within, dup)[g.staging_tile == "Tile(x=1418, y=908, z=13)"].sum()
    )


# ------------------------------------------------------------------ determinism
def test_flags_are_the_same_whatever_the_order_files_are_staged_in(
    scenes, staged, tmp_path: Path
) -> None:
    d, _ = scenes
    for k, order in enumerate([["c.gpkg", "b.gpkg", "a.gpkg"], ["b.gpkg", "c.gpkg", "a.gpkg"]]):
        s = initialize_stager(d, tmp_path / f"order{k}", simplify_tolerance=0)
        stage(s, [d / n for n in order], finalize_each=True)  # also finalizing between files
        assert_same(staged, s)


def test_flags_are_the_same_when_files_are_staged_in_parallel_processes(
    scenes, staged, tmp_path: Path
) -> None:
    d, _ = scenes
    s = initialize_stager(d, tmp_path / "parallel", simplify_tolerance=0)
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(s.stage, s.tiles.get_filenames_from_dir("input")))
    s.finalize(progress=False)
    assert_same(staged, s)


def test_unstaging_the_first_file_hands_the_kept_copy_to_the_next_file(
    scenes, tmp_path: Path
) -> None:
    d, _ = scenes
    s = initialize_stager(d, tmp_path / "out", simplify_tolerance=0)
    stage(s, s.tiles.get_filenames_from_dir("input"))
    assert s.unstage(d / "a.gpkg")
    s.finalize(progress=False)
    flags = flags_by_id(s)
    assert not any(i.startswith("a.gpkg") for i in flags.index)
    assert not flags[[f"b.gpkg:{i}" for i in range(1, 9)]].any()  # now the first copy
    assert flags[[f"c.gpkg:{i}" for i in range(1, 9)]].all()
    # the same as never having staged a.gpkg
    fresh = stage(
        initialize_stager(d, tmp_path / "fresh", simplify_tolerance=0), [d / "b.gpkg", d / "c.gpkg"]
    )
    assert_same(s, fresh)


def test_every_row_of_a_polygon_carries_the_same_duplicate_flag(tmp_path: Path) -> None:
    # a small polygon (a.gpkg) inside a larger re-detection (b.gpkg) that straddles a tile edge:
    # overlap / smaller area = 1, so b's copy is a duplicate, in both tiles it is written to
    t = TMS.xy_bounds(Tile(1419, 908, Z))
    lat = (t.top + t.bottom) / 2
    x, y = LL_TO_3413.transform(t.left, lat)
    xw, yw = LL_TO_3413.transform(t.left - 0.00008, lat)  # ~3 m west of the edge
    write(tmp_path / "in" / "a.gpkg", [shapely.box(xw - 1, yw - 1, xw + 1, yw + 1)])
    write(tmp_path / "in" / "b.gpkg", [shapely.box(x - 5, y - 5, x + 5, y + 5)])
    s = initialize_stager(tmp_path / "in", tmp_path / "out", simplify_tolerance=0)
    g = rows(stage(s, s.tiles.get_filenames_from_dir("input")))
    b = g[g.staging_id == "b.gpkg:1"]
    assert len(b) == 2
    assert b.staging_duplicated.all()


# ------------------------------------------------------------------ shipped samples
@pytest.fixture(scope="module")
def samples_staged(tmp_path_factory) -> tuple[TileStager, pd.DataFrame, pd.Series]:
    try:
        from grouputils.teaching import samples

        with pytest.MonkeyPatch.context() as mp:  # the shipped samples, not a course-scale folder
            mp.delenv(samples.DATA_ENV, raising=False)
            d = samples.sample_dir()
    except (ImportError, InputError) as e:  # not generated / not installed yet
        pytest.skip(f"shipped samples not available ({e})")
    if not sorted(d.glob("*.gpkg")):
        pytest.skip(f"no sample GeoPackages in {d} yet (data-samples/*.gpkg not generated)")
    if not (d / "redetections.csv").is_file():
        pytest.skip(f"{d / 'redetections.csv'} not found")
    s = initialize_stager(d, tmp_path_factory.mktemp("samples-out"))
    stage(s, s.tiles.get_filenames_from_dir("input"))
    return s, pd.read_csv(d / "redetections.csv"), flags_by_id(s)


def test_duplicate_flags_on_the_shipped_samples_have_precision_and_recall_of_at_least_95_percent(
    samples_staged,
) -> None:
    stager, labels, flags = samples_staged
    assert {"file", "fid"} <= set(labels.columns)
    keys = {
        p.relative_to(stager.config.dir_input).as_posix()
        for p in stager.tiles.get_filenames_from_dir("input")
    }
    assert set(labels["file"]) <= keys
    truth = set(labels["file"] + ":" + labels["fid"].astype(str))
    predicted = set(flags.index[flags.to_numpy()])
    assert truth, "the samples should contain re-detections"
    tp = len(truth & predicted)
    precision, recall = tp / max(len(predicted), 1), tp / len(truth)
    assert precision >= 0.95 and recall >= 0.95, f"precision {precision:.3f}, recall {recall:.3f}"


def test_no_copy_from_the_first_sample_file_is_flagged(samples_staged) -> None:
    stager, labels, flags = samples_staged
    first = stager.tiles.get_filenames_from_dir("input")[0].name
    assert not flags[flags.index.str.startswith(first + ":")].any()
    assert first not in set(labels["file"])


# ------------------------------------------------------------------ the functions themselves
def _random_polys(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 60, (n, 2))
    return np.array(
        [rect(x, y, *rng.uniform(3, 10, 2), rng.uniform(0, 90)) for x, y in xy], dtype=object
    )


def test_overlapping_pairs_match_a_brute_force_computation() -> None:
    geoms = _random_polys(60, 1)
    i, j, r = overlapping_pairs(geoms, 0.3)
    got = {(a, b): c for a, b, c in zip(i.tolist(), j.tolist(), r.tolist())}
    expected = {}
    for a, b in itertools.combinations(range(len(geoms)), 2):
        inter = geoms[a].intersection(geoms[b]).area
        ratio = inter / min(geoms[a].area, geoms[b].area)
        if ratio >= 0.3:
            expected[(a, b)] = ratio
    assert got.keys() == expected.keys() and len(got) > 5
    np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), rtol=1e-12)


def test_duplicate_flags_do_not_depend_on_row_order() -> None:
    geoms = _random_polys(80, 2)
    rank = np.random.default_rng(3).integers(0, 3, len(geoms))
    flags = duplicate_flags(geoms, rank, 0.3)
    assert flags.any() and not flags.all()
    perm = np.random.default_rng(4).permutation(len(geoms))
    np.testing.assert_array_equal(duplicate_flags(geoms[perm], rank[perm], 0.3), flags[perm])


def test_three_copies_of_one_polygon_keep_exactly_the_first_files() -> None:
    g = rect(0, 0, 10, 10, 0)
    geoms = np.array([moved(g, 0.5, 0), g, moved(g, 0, 0.5)], dtype=object)
    np.testing.assert_array_equal(
        duplicate_flags(geoms, np.array([2, 0, 1]), 0.5), [True, False, True]
    )
    # from one file only: nothing is flagged
    np.testing.assert_array_equal(
        duplicate_flags(geoms, np.array([0, 0, 0]), 0.5), [False, False, False]
    )
