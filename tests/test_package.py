"""The package root is light: importing it or asking for --help loads no geospatial stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = (
    "geopandas",
    "pyogrio",
    "rasterio",
    "parsl",
    "matplotlib",
    "grouputils.core.staging",
    "grouputils.core.rasterize",
)


def loaded_after(code: str) -> list[str]:
    probe = (
        code
        + f"\nimport json, sys\nprint(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_grouputils_does_not_import_geopandas() -> None:
    assert loaded_after("import grouputils") == []


def test_grouputils_help_does_not_import_geopandas() -> None:
    code = (
        "from grouputils import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass"
    )
    assert loaded_after(code) == []


def test_every_public_name_still_imports_from_the_root() -> None:
    import grouputils

    for name in grouputils.__all__:
        assert getattr(grouputils, name) is not None, name
    from grouputils import TileStager, initialize_stager

    assert TileStager.__module__ == "grouputils.core.staging.stager" and callable(initialize_stager)


def test_every_sub_package_is_listed_for_the_wheel():
    """pyproject.toml names the packages explicitly: a new sub-package left out would be missing from the wheel."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(root).parts)
        for p in (root / "grouputils").rglob("__init__.py")
    }
    assert found - listed == set(), f"sub-packages missing from [tool.setuptools] packages: {sorted(found - listed)}"
