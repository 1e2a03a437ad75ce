"""Writing a generated dataset: one GeoPackage per scene, ``redetections.csv``, ``generator.json``.

Every file is written to a temporary name and renamed into place, and the
GeoPackages carry a pinned timestamp, so the same seed writes the same bytes.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib.metadata
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely

from grouputils.core.atomic import atomic_path, write_json_atomic, write_text_atomic
from grouputils.core.errors import OutputError
from grouputils.teaching.synthetic.geometry import SceneFile
from grouputils.teaching.synthetic.parameters import (
    CENTRE_LONLAT,
    CRS,
    GENERATOR_FILE,
    GENERATOR_VERSION,
    LAYER,
    REDETECTIONS_FILE,
    SHAPE,
    Scale,
)
from grouputils.teaching.synthetic.scenes import OUR_NAME, Scene

__all__ = [
    "clear_old_outputs",
    "library_versions",
    "write_generator_json",
    "write_gpkg",
    "write_redetections",
]

GENERATOR_NAME = "grouputils.teaching.samples.generate_dataset"
"""The generator's public name as recorded in ``generator.json`` (the course's import path)."""


def library_versions() -> dict[str, str]:
    """Versions of grouputils and of the libraries whose arithmetic the output depends on."""
    import pyogrio
    import pyproj

    return {
        "grouputils": _grouputils_version(),
        "numpy": np.__version__,
        "shapely": shapely.__version__,
        "geos": shapely.geos_version_string,
        "pyproj": pyproj.__version__,
        "proj": pyproj.proj_version_str,
        "pyogrio": pyogrio.__version__,
        "gdal": pyogrio.__gdal_version_string__,
    }


@contextlib.contextmanager
def _gpkg_timestamp(stamp: str) -> Iterator[None]:
    """Pin the ``last_change`` time GDAL writes into a GeoPackage, so reruns are byte-identical.

    ``OGR_CURRENT_DATE`` is a process-wide GDAL setting; it is restored on exit.
    """
    import pyogrio

    before = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": stamp})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": before})


def _grouputils_version() -> str:
    """The installed grouputils version (from its distribution metadata, not the package root)."""
    try:
        return importlib.metadata.version("grouputils")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def write_gpkg(path: Path, frame: pd.DataFrame, geoms: np.ndarray, scene: Scene) -> None:
    """Write one scene's layer atomically and check that fids are 1..n in row order."""
    import geopandas as gpd
    import pyogrio

    gdf = gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geoms, crs=CRS), crs=CRS)
    d, t = scene.date, scene.time
    stamp = f"{d[:4]}-{d[4:6]}-{d[6:]}T{t[:2]}:{t[2:4]}:{t[4:]}Z"  # the acquisition time
    with atomic_path(path) as tmp:
        with _gpkg_timestamp(stamp):
            pyogrio.write_dataframe(
                gdf, tmp, layer=LAYER, driver="GPKG", geometry_type="Polygon", use_arrow=True
            )
        fids = pyogrio.read_dataframe(
            tmp, layer=LAYER, columns=[], read_geometry=False, fid_as_index=True
        ).index
        if not np.array_equal(np.asarray(fids), np.arange(1, len(frame) + 1)):
            raise OutputError(
                path, "GeoPackage feature ids are not 1..n in row order; labels would be wrong"
            )


def clear_old_outputs(out_dir: Path, names: set[str]) -> None:
    """Remove GeoPackages of an earlier generator run; refuse to mix with foreign files."""
    others = [
        p for p in out_dir.glob("*.gpkg") if p.name not in names and not p.name.startswith(".")
    ]
    if not others:
        return
    previous: set[str] = set()
    meta = out_dir / GENERATOR_FILE
    if meta.is_file():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            previous = {f["name"] for f in json.loads(meta.read_text(encoding="utf-8"))["files"]}
    foreign = [p for p in others if p.name not in previous and not OUR_NAME.fullmatch(p.name)]
    if foreign:
        raise OutputError(
            out_dir,
            f"holds GeoPackages the generator did not make "
            f"({', '.join(p.name for p in foreign[:3])}{', ...' if len(foreign) > 3 else ''}); "
            "use an empty folder",
        )
    for p in others:
        p.unlink()


def write_redetections(out_dir: Path, labels: pd.DataFrame) -> Path:
    """Write the re-detection labels as ``redetections.csv`` (Unix line ends, atomically)."""
    buf = io.StringIO()
    labels.to_csv(buf, index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    path = out_dir / REDETECTIONS_FILE
    write_text_atomic(path, buf.getvalue())
    return path


def write_generator_json(
    out_dir: Path,
    *,
    seed: int,
    scale: Scale,
    total_features: int | None,
    files: list[SceneFile],
    labels: pd.DataFrame,
    build: dict[str, Any],
) -> Path:
    """Write ``generator.json``: how the dataset was made, what each file holds, the versions."""
    meta = {
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "scale": dataclasses.asdict(scale),
        "total_features_requested": total_features,
        "shape": dataclasses.asdict(SHAPE),
        "centre_lonlat": list(CENTRE_LONLAT),
        "layer": LAYER,
        "crs": CRS,
        "redetections": REDETECTIONS_FILE,
        "files": [
            {
                "name": f.scene.filename,
                "features": len(f.geoms),
                "redetections": int((labels["file"] == f.scene.filename).sum()),
                "sensor": f.scene.sensor,
                "date": f.scene.date,
                "time": f.scene.time,
                "image": f.scene.image,
                "footprint_local_m": [round(v, 1) for v in f.scene.rect],
            }
            for f in files
        ],
        "build": build,
        "versions": library_versions(),
    }
    path = out_dir / GENERATOR_FILE
    write_json_atomic(path, meta)
    return path
