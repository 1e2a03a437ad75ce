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


# ------------------------------------------------------------------ the course build, in the background
COURSE_TESTS = "test_course.py"


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    """Run ``tests/test_course.py`` last, so the course build (started first) overlaps the other tests."""
    items.sort(key=lambda item: item.path.name == COURSE_TESTS)  # stable: order kept within each group


@pytest.fixture(scope="session", autouse=True)
def course_build(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Start the course build (``tests/course_build.py``) with the session's first test.

    Only when a selected test uses the ``course`` fixture and nbgrader is
    installed; otherwise None. The build runs nbgrader in subprocesses from a
    thread, while the other tests run; a session that ends before the build
    does (a failure under ``-x``, Ctrl-C) stops it.
    """
    wanted = any("course" in getattr(item, "fixturenames", ()) for item in request.session.items)
    try:
        import nbgrader  # noqa: F401
    except ImportError:
        wanted = False
    if not wanted:
        yield None
        return
    from course_build import CourseBuild

    build = CourseBuild(tmp_path_factory.mktemp("course") / "course").start()
    yield build
    build.stop()
