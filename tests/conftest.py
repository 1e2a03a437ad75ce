"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from grouputils.core.config import Config
from grouputils.run.pipeline import run_pipeline
from grouputils.teaching.samples import sample_dir

REPO = Path(__file__).resolve().parents[1]
REAL_DIR = REPO.parent / "shared" / "data" / "iwp-real"
REAL_FILE = REAL_DIR / "prudhoe_bay_WV03_20190903.gpkg"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's top folder."""
    return REPO


@pytest.fixture(scope="session")
def real_file() -> Path:
    """The real Prudhoe Bay IWP file, or skip when ../shared is not beside the repo."""
    if not REAL_FILE.exists():
        pytest.skip(f"real IWP data not found at {REAL_FILE} (../shared/data/iwp-real is absent)")
    return REAL_FILE


#: Three shipped samples, two of which overlap (so duplicates are flagged).
THREE_SCENES = ("scene03_WV03_20150814.gpkg", "scene07_WV03_20160728.gpkg", "scene08_WV03_20180704.gpkg")


@pytest.fixture(scope="session")
def three_scene_run(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """A serial pipeline run on three samples, shared read-only by the output tests.

    Tests that change outputs must work on a copy of ``dir_output``.
    """
    base = tmp_path_factory.mktemp("three-scene-run")
    (base / "in").mkdir()
    for name in THREE_SCENES:
        shutil.copy2(sample_dir() / name, base / "in" / name)
    config = Config(dir_input=base / "in", dir_output=base / "out")
    report = run_pipeline(config, executor="serial", progress=False)
    assert report.ok, report.failures
    return config
