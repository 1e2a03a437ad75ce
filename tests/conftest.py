"""Fixtures shared by the whole test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

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
