"""The synthetic IWP generator, the shipped samples and ``grouputils sample``.

Promises checked here:

* the generator is deterministic and its output has the real detections'
  schema, shapes and quirks (compared with the real Prudhoe Bay file when it
  is available);
* ``redetections.csv`` is exactly what an overlap rule across files finds;
* the shipped samples are what the documented command makes, small enough to
  ship, and installed with the package.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import morecantile
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from grouputils import cli
from grouputils.core.errors import ConfigError, InputError, OutputError
from grouputils.teaching import samples

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "data-samples"
REAL_DIR = Path(__file__).resolve().parents[2] / "shared/data/iwp-real"
REAL_FILE = REAL_DIR / "prudhoe_bay_WV03_20190903.gpkg"


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    if not REAL_FILE.is_file():
        pytest.skip("real IWP data not found at ../shared/data/iwp-real")
    return pyogrio.read_dataframe(REAL_FILE, layer="iwp", fid_as_index=True)


@pytest.fixture(scope="module")
def shipped() -> dict[str, pd.DataFrame]:
    """Every shipped GeoPackage, by file name, indexed by GeoPackage fid."""
    paths = samples.sample_files(SHIPPED)
    return {p.name: pyogrio.read_dataframe(p, layer="iwp", fid_as_index=True) for p in paths}


@pytest.fixture(scope="module")
def labels() -> pd.DataFrame:
    return pd.read_csv(SHIPPED / samples.REDETECTIONS_FILE)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A small generated dataset (about 1,500 polygons)."""
    out = tmp_path_factory.mktemp("small")
    samples.generate_dataset(out, seed=7, total_features=1500)
    return out


def _read_all(folder: Path) -> dict[str, pd.DataFrame]:
    return {
        p.name: pyogrio.read_dataframe(p, fid_as_index=True) for p in samples.sample_files(folder)
    }


def _overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = shapely.area(shapely.intersection(a, b))
    return inter / np.minimum(shapely.area(a), shapely.area(b))


def _quartiles(values: np.ndarray) -> np.ndarray:
    return np.percentile(np.asarray(values, dtype="f8"), [25, 50, 75])


# --------------------------------------------------------------------------- determinism
def test_same_seed_writes_identical_features(tmp_path):
    a = samples.generate_dataset(tmp_path / "a", seed=11, total_features=600)
    b = samples.generate_dataset(tmp_path / "b", seed=11, total_features=600)
    assert [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b, strict=True):
        fa, fb = pyogrio.read_dataframe(pa), pyogrio.read_dataframe(pb)
        assert len(fa) > 0
        assert list(shapely.to_wkb(fa.geometry.values)) == list(shapely.to_wkb(fb.geometry.values))
        pd.testing.assert_frame_equal(fa.drop(columns="geometry"), fb.drop(columns="geometry"))
    csv = samples.REDETECTIONS_FILE
    assert (tmp_path / "a" / csv).read_text() == (tmp_path / "b" / csv).read_text()


def test_another_seed_writes_other_features(tmp_path):
    a = samples.generate_dataset(tmp_path / "a", seed=11, total_features=600)
    b = samples.generate_dataset(tmp_path / "b", seed=12, total_features=600)
    wkb_a = {w for p in a for w in shapely.to_wkb(pyogrio.read_dataframe(p).geometry.values)}
    wkb_b = {w for p in b for w in shapely.to_wkb(pyogrio.read_dataframe(p).geometry.values)}
    assert not wkb_a & wkb_b


# --------------------------------------------------------------------------- realism
def test_schema_layer_and_crs_equal_the_real_files(real, small):
    real_info = pyogrio.read_info(REAL_FILE, layer="iwp")
    for folder in (SHIPPED, small):
        for path in samples.sample_files(folder):
            assert pyogrio.list_layers(path).tolist() == pyogrio.list_layers(REAL_FILE).tolist(), (
                path
            )
            info = pyogrio.read_info(path, layer="iwp")
            for key in (
                "crs",
                "fields",
                "dtypes",
                "ogr_types",
                "ogr_subtypes",
                "geometry_type",
                "geometry_name",
                "fid_column",
            ):
                assert np.array_equal(np.asarray(info[key]), np.asarray(real_info[key])), (
                    path.name,
                    key,
                )


def test_attribute_values_look_like_the_real_ones(real, shipped):
    for name, frame in shipped.items():
        assert set(frame["Class"].unique()) <= {1, 2}, name
        assert frame["Sensor"].nunique() == frame["Image"].nunique() == frame["Date"].nunique() == 1
        assert (
            frame["Date"].str.fullmatch(r"20\d{6}").all()
            and frame["Time"].str.fullmatch(r"\d{6}").all()
        )
        image = frame["Image"].iloc[0]
        assert image.startswith(
            f"{frame['Sensor'].iloc[0]}_{frame['Date'].iloc[0]}{frame['Time'].iloc[0]}_"
        )
        assert image.endswith("_u16rf3413_p") and abs(len(image) - len(real["Image"].iloc[0])) <= 2
        for col in ("Area", "CentroidX", "CentroidY", "Perimeter", "Length", "Width"):
            assert np.allclose(frame[col], frame[col].round(3), rtol=0, atol=1e-9), (name, col)
    every = pd.concat(shipped.values())
    share = (every["Class"] == 1).mean()
    real_share = (real["Class"] == 1).mean()
    assert 0.5 * real_share < share < 2 * real_share


@pytest.mark.parametrize("measure", ["area", "perimeter", "coordinates"])
def test_shapes_match_the_real_file_within_30_percent(real, shipped, measure):
    def values(frame):
        g = frame.geometry.values
        return {
            "area": shapely.area,
            "perimeter": shapely.length,
            "coordinates": shapely.get_num_coordinates,
        }[measure](g)

    ours = _quartiles(np.concatenate([values(f) for f in shipped.values()]))
    theirs = _quartiles(values(real))
    assert np.all(np.abs(ours - theirs) <= 0.3 * theirs), (ours, theirs)
    iqr, real_iqr = ours[2] - ours[0], theirs[2] - theirs[0]
    assert abs(iqr - real_iqr) <= 0.3 * real_iqr, (iqr, real_iqr)


def test_attributes_describe_the_outline_before_simplification_like_real_files(real, shipped):
    def quirk(frame):
        g = frame.geometry.values
        centroid = shapely.centroid(g)
        ratio = frame["Area"].to_numpy() / shapely.area(g)
        shift = np.hypot(
            shapely.get_x(centroid) - frame["CentroidX"],
            shapely.get_y(centroid) - frame["CentroidY"],
        )
        return ratio, shift.to_numpy()

    real_ratio, real_shift = (np.median(v) for v in quirk(real))
    per_file = [quirk(f) for f in shipped.values()]
    for ratio, shift in per_file:  # in every file, not just on average
        assert np.median(ratio) > 1.2 and np.median(shift) > 0.3
    ratio, shift = (np.concatenate(v) for v in zip(*per_file, strict=True))
    assert abs(np.median(ratio) - real_ratio) <= 0.15 * real_ratio  # about 1.44
    assert abs(np.median(shift) - real_shift) <= 0.3 * real_shift  # about 0.7 m
    assert shift.max() <= 1.1 * quirk(real)[1].max()


def test_every_polygon_is_a_valid_clockwise_polygon(shipped, small):
    frames = list(shipped.values()) + list(_read_all(small).values())
    for frame in frames:
        g = frame.geometry.values
        assert shapely.is_valid(g).all()
        assert (shapely.get_type_id(g) == shapely.GeometryType.POLYGON).all()
        assert not shapely.is_ccw(shapely.get_exterior_ring(g)).any()  # as in the real files


def test_neighbouring_polygons_are_separated_by_narrow_troughs(shipped):
    """Polygons tile the ground like a network: each has close neighbours, but few touch."""
    g = max(shipped.values(), key=len).geometry.values
    _, dist = shapely.STRtree(g).query_nearest(
        g, return_distance=True, exclusive=True, all_matches=False
    )
    assert 0.3 < np.median(dist) < 4.0  # metres: a trough, not open ground
    assert np.mean(dist > 0) > 0.8


# --------------------------------------------------------------------------- re-detections
def test_fids_are_geopackage_fids_starting_at_one(shipped):
    for name, frame in shipped.items():
        assert frame.index.tolist() == list(range(1, len(frame) + 1)), name


def test_redetections_repeat_a_polygon_of_an_earlier_file(shipped, labels):
    assert list(labels.columns) == ["file", "fid", "original_file", "original_fid", "overlap"]
    assert len(labels) > 500
    assert (labels["file"] > labels["original_file"]).all()
    assert not labels.duplicated(["file", "fid"]).any()
    names = sorted(shipped)
    for name in names[1:]:  # every scene overlaps the one before it
        assert (labels["file"] == name).any(), name
    for (name, original), rows in labels.groupby(["file", "original_file"]):
        a = shipped[name].loc[rows["fid"]].geometry.values
        b = shipped[original].loc[rows["original_fid"]].geometry.values
        ov = _overlap(a, b)
        assert np.allclose(ov, rows["overlap"], atol=1e-3)
        assert ov.min() >= 0.6
        assert 0.7 < np.median(ov) < 0.95  # a slightly different outline, not a copy
        # the other scene's copy: different scene attributes
        assert (
            shipped[name].loc[rows["fid"], "Image"].to_numpy()
            != shipped[original].loc[rows["original_fid"], "Image"].to_numpy()
        ).all()


@pytest.mark.parametrize("threshold", [0.45, 0.5, 0.55])
def test_an_overlap_rule_across_files_finds_exactly_the_labelled_copies(shipped, labels, threshold):
    """Keep the copy in the file that sorts first: the flagged polygons are the sidecar's rows."""
    names = sorted(shipped)
    flagged = set()
    for j, later in enumerate(names):
        g = shipped[later].geometry.values
        fids = shipped[later].index.to_numpy()
        for earlier in names[:j]:
            h = shipped[earlier].geometry.values
            qi, qj = shapely.STRtree(h).query(g, predicate="intersects")[::-1]
            if len(qi):
                hit = _overlap(g[qj], h[qi]) >= threshold
                flagged.update((later, int(f)) for f in fids[qj[hit]])
    expected = set(zip(labels["file"], labels["fid"].astype(int), strict=True))
    assert flagged == expected


def test_polygons_overlap_within_a_file_without_being_labelled(shipped, labels, real):
    pairs = 0
    fractions = []
    for frame in shipped.values():
        g = frame.geometry.values
        a, b = shapely.STRtree(g).query(g, predicate="intersects")
        keep = a < b
        ov = _overlap(g[a[keep]], g[b[keep]])
        fractions.append(ov[ov > 0])
        pairs += int((ov > 0).sum())
    polygons = sum(len(f) for f in shipped.values())
    g = real.geometry.values
    a, b = shapely.STRtree(g).query(g, predicate="intersects")
    real_rate = float((_overlap(g[a[a < b]], g[b[a < b]]) > 0).sum()) / len(g)
    assert 0.5 * real_rate < pairs / polygons < 2 * real_rate
    assert np.median(np.concatenate(fractions)) < 0.5  # mostly slight overlaps, as in the real file
    assert (labels["file"] != labels["original_file"]).all()


# --------------------------------------------------------------------------- shipped samples
def _tiles_with_morecantile(frames) -> set:
    """z=13 WorldCRS84Quad tiles that polygons intersect: morecantile lists, shapely tests."""
    tms = morecantile.tms.get("WorldCRS84Quad")
    found = set()
    for frame in frames:
        g = frame.to_crs("EPSG:4326").geometry.values
        tree = shapely.STRtree(g)
        candidates = list(tms.tiles(*shapely.total_bounds(g), zooms=[13]))
        boxes = shapely.box(*np.array([tuple(tms.bounds(t)) for t in candidates]).T)
        hit = np.unique(tree.query(boxes, predicate="intersects")[0])
        found.update((candidates[k].x, candidates[k].y) for k in hit)
    return found


def test_shipped_samples_are_small_varied_and_cover_60_tiles(shipped):
    paths = samples.sample_files(SHIPPED)
    assert len(paths) == 11
    sizes = np.array([p.stat().st_size for p in paths])
    features = np.array([len(shipped[p.name]) for p in paths])
    assert sizes.sum() <= 12e6
    assert features.max() >= 5 * features.min()
    assert sizes.max() >= 5 * sizes.min()
    tiles = _tiles_with_morecantile(shipped.values())
    assert len(tiles) >= 60
    assert samples.summarize(SHIPPED).iloc[-1]["tiles"] == len(tiles)


def test_summarize_reports_each_file_and_a_total(shipped):
    table = samples.summarize(SHIPPED)
    assert table["file"].tolist() == sorted(shipped) + ["total"]
    body = table.iloc[:-1]
    assert body["features"].tolist() == [len(shipped[n]) for n in body["file"]]
    assert np.allclose(body["mb"], [(SHIPPED / n).stat().st_size / 1e6 for n in body["file"]])
    total = table.iloc[-1]
    assert total["features"] == body["features"].sum()
    assert np.isclose(total["mb"], body["mb"].sum())
    for name, frame in shipped.items():
        row = body[body["file"] == name].iloc[0]
        bounds = shapely.total_bounds(frame.to_crs("EPSG:4326").geometry.values)
        assert np.allclose(row[["west", "south", "east", "north"]].astype(float), bounds)
        assert row["tiles"] == len(_tiles_with_morecantile([frame]))


def _documented_command() -> list[str]:
    text = (SHIPPED / "README.md").read_text(encoding="utf-8")
    line = next(
        m.group(0) for m in re.finditer(r"^grouputils sample data-samples.*$", text, re.MULTILINE)
    )
    return line.split()[1:]


def test_documented_command_reproduces_the_shipped_samples(tmp_path):
    args = _documented_command()
    assert args[:2] == ["sample", "data-samples"]
    out = tmp_path / "again"
    assert cli.main([args[0], str(out), *args[2:], "--no-progress"]) == 0
    ours, theirs = samples.sample_files(out), samples.sample_files(SHIPPED)
    assert [p.name for p in ours] == [p.name for p in theirs]
    for a, b in zip(ours, theirs, strict=True):
        fa, fb = (
            pyogrio.read_dataframe(a, fid_as_index=True),
            pyogrio.read_dataframe(b, fid_as_index=True),
        )
        assert fa.index.equals(fb.index), a.name
        # exact on this machine; tolerances absorb last-bit differences of other platforms' maths
        assert shapely.equals_exact(fa.geometry.values, fb.geometry.values, tolerance=1e-6).all(), (
            a.name
        )
        for col in fa.columns.drop("geometry"):
            if fa[col].dtype.kind == "f":
                assert np.allclose(fa[col], fb[col], rtol=0, atol=1.5e-3), (a.name, col)
            else:
                assert fa[col].tolist() == fb[col].tolist(), (a.name, col)
    la = pd.read_csv(out / samples.REDETECTIONS_FILE)
    lb = pd.read_csv(SHIPPED / samples.REDETECTIONS_FILE)
    pd.testing.assert_frame_equal(la.drop(columns="overlap"), lb.drop(columns="overlap"))
    assert np.allclose(la["overlap"], lb["overlap"], atol=1e-3)
    ja = json.loads((out / samples.GENERATOR_FILE).read_text())
    jb = json.loads((SHIPPED / samples.GENERATOR_FILE).read_text())
    assert {k: v for k, v in ja.items() if k != "versions"} == {
        k: v for k, v in jb.items() if k != "versions"
    }


# --------------------------------------------------------------------------- paths
def test_sample_dir_finds_the_shipped_samples(monkeypatch):
    monkeypatch.delenv(samples.DATA_ENV, raising=False)
    assert [p.name for p in samples.sample_files()] == [
        p.name for p in samples.sample_files(SHIPPED)
    ]
    assert (samples.sample_dir() / samples.REDETECTIONS_FILE).is_file()


def test_sample_dir_honours_GROUPUTILS_DATA(monkeypatch, tmp_path):
    monkeypatch.setenv(samples.DATA_ENV, str(tmp_path))
    assert samples.sample_dir() == tmp_path


def test_sample_dir_rejects_a_missing_GROUPUTILS_DATA_folder(monkeypatch, tmp_path):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv(samples.DATA_ENV, str(missing))
    with pytest.raises(InputError, match="GROUPUTILS_DATA") as err:
        samples.sample_dir()
    assert err.value.path == missing


def test_sample_files_lists_geopackages_by_name_and_skips_temporaries(tmp_path):
    for name in ("b.gpkg", "a.gpkg", ".a.gpkg.123.tmp.gpkg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in samples.sample_files(tmp_path)] == ["a.gpkg", "b.gpkg"]
    with pytest.raises(InputError, match="does not exist"):
        samples.sample_files(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no GeoPackage"):
        samples.sample_files(tmp_path / "empty")


def test_generator_replaces_its_own_files_and_refuses_foreign_ones(tmp_path):
    first = samples.generate_dataset(tmp_path, seed=1, total_features=300)
    second = samples.generate_dataset(tmp_path, seed=2, total_features=300)
    assert sorted(p.name for p in tmp_path.glob("*.gpkg")) == [p.name for p in second]
    assert {p.name for p in first} != {p.name for p in second}  # names carry sensor and date
    (tmp_path / "mine.gpkg").write_bytes(b"")
    with pytest.raises(OutputError, match="mine.gpkg"):
        samples.generate_dataset(tmp_path, seed=3, total_features=300)


@pytest.mark.parametrize(
    "kwargs", [{"scale": "huge"}, {"seed": -1}, {"seed": 1.5}, {"total_features": 10}]
)
def test_bad_generator_arguments_raise_config_errors(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        samples.generate_dataset(tmp_path, **kwargs)


# --------------------------------------------------------------------------- packaging
def test_a_built_wheel_installs_the_samples(tmp_path):
    if importlib.util.find_spec("build") is None:
        pytest.skip("the `build` package is not installed (pip install build)")
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("grouputils", "data-samples"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    run = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), str(src)],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("grouputils-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in SHIPPED.iterdir():
        if path.suffix in (".gpkg", ".csv", ".json", ".md"):
            assert f"grouputils/data_samples/{path.name}" in names
    target = tmp_path / "site"
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(wheel),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    code = (
        "from grouputils.teaching import samples; "
        "print(samples.sample_dir()); print(len(samples.sample_files()))"
    )
    env = {k: v for k, v in os.environ.items() if k != samples.DATA_ENV}
    env["PYTHONPATH"] = str(target)
    shown = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    folder, count = shown.stdout.split()
    assert Path(folder).resolve() == (target / "grouputils" / "data_samples").resolve()
    assert int(count) == 11


def test_the_samples_facade_is_the_synthetic_package_and_imports_no_higher_layer():
    """teaching.samples re-exports teaching.synthetic, which loads neither run nor outputs."""
    from grouputils.teaching import synthetic

    assert set(samples.__all__) == set(synthetic.__all__)
    for name in samples.__all__:
        assert getattr(samples, name) is getattr(synthetic, name), name
    code = (
        "import sys\n"
        "import grouputils.teaching.samples\n"
        "bad = sorted(k for k in sys.modules\n"
        "             if k.startswith(('grouputils.run', 'grouputils.outputs', 'geopandas')))\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def test_generator_json_records_the_installed_grouputils_version(small):
    import importlib.metadata

    import grouputils

    meta = json.loads((small / samples.GENERATOR_FILE).read_text())
    assert meta["versions"]["grouputils"] == importlib.metadata.version("grouputils")
    assert meta["versions"]["grouputils"] == grouputils.__version__
    assert meta["generator"] == "grouputils.teaching.samples.generate_dataset"


# --------------------------------------------------------------------------- command line
def test_cli_sample_writes_a_dataset(tmp_path, capsys):
    assert (
        cli.main(["sample", str(tmp_path), "--features", "400", "--seed", "5", "--no-progress"])
        == 0
    )
    assert len(samples.sample_files(tmp_path)) == 11
    assert (tmp_path / samples.REDETECTIONS_FILE).is_file()
    assert json.loads((tmp_path / samples.GENERATOR_FILE).read_text())["seed"] == 5
    assert "wrote 11 GeoPackages" in capsys.readouterr().out


def test_cli_summary_prints_a_table_of_the_folder(shipped, capsys):
    assert cli.main(["sample", "--summary", str(SHIPPED)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["file", "features", "mb", "west", "south", "east", "north", "tiles"]
    assert [line.split()[0] for line in lines[1:]] == sorted(shipped) + ["total"]
    assert int(lines[-1].split()[1]) == sum(len(f) for f in shipped.values())


def test_cli_summary_defaults_to_sample_dir(monkeypatch, tmp_path, capsys):
    samples.generate_dataset(tmp_path, seed=9, total_features=300)
    monkeypatch.setenv(samples.DATA_ENV, str(tmp_path))
    assert cli.main(["sample", "--summary"]) == 0
    out = capsys.readouterr().out
    assert all(p.name in out for p in samples.sample_files(tmp_path))


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    assert cli.main(["sample"]) == 2
    assert "OUT_DIR is required" in capsys.readouterr().err
    assert cli.main(["sample", "--summary", str(tmp_path / "missing")]) == 1
    assert str(tmp_path / "missing") in capsys.readouterr().err


# --------------------------------------------------------------------------- course scale
@pytest.mark.slow
def test_course_scale_has_the_course_sizes(tmp_path, real):
    paths = samples.generate_dataset(tmp_path, scale="course")
    sizes = np.array([p.stat().st_size for p in paths]) / 1e6
    table = samples.summarize(tmp_path)
    features = table["features"].iloc[:-1].to_numpy()
    assert 400 < sizes.sum() < 600
    assert 4 < sizes.min() < 9 and 75 < sizes.max() < 100
    assert 1.2e6 < features.sum() < 1.45e6 and 200_000 < features.max() < 250_000
    assert table["tiles"].iloc[-1] >= 450
    frames = [pyogrio.read_dataframe(p, columns=[]) for p in paths[::3]]
    area = _quartiles(np.concatenate([shapely.area(f.geometry.values) for f in frames]))
    theirs = _quartiles(shapely.area(real.geometry.values))
    assert np.all(np.abs(area - theirs) <= 0.3 * theirs)
