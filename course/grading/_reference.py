"""Expected values computed by the grader itself, from the course data (instructor only).

A serial staging of the data in a private folder gives the unique polygons per
input file; the result is cached in ``grading/.cache/`` under a fingerprint of
the input files (names, sizes, modification times) and of the grouputils
version, so a course-scale staging runs once per grading session, not once
per submission.
"""

import hashlib
import json
import os
import tempfile
from pathlib import Path

import grouputils
from grouputils import initialize_stager, serial_map
from grouputils.teaching.course import unique_polygon_counts
from grouputils.teaching.samples import sample_dir

_CACHE = Path(__file__).resolve().parent / ".cache"


def _fingerprint(data: Path) -> str:
    h = hashlib.sha256(str(getattr(grouputils, "__version__", "")).encode())
    for p in sorted(data.glob("*.gpkg")):
        st = p.stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def reference_counts() -> dict[str, int]:
    """Unique polygons per input file (files with none left out), from the grader's own serial staging."""
    data = sample_dir()
    cached = _CACHE / f"unique-{_fingerprint(data)}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    with tempfile.TemporaryDirectory(prefix="reference-") as tmp:
        stager = initialize_stager(data, Path(tmp) / "group-project")
        serial_map(stager.stage, stager.tiles.get_filenames_from_dir("input"), progress=False)
        stager.finalize(progress=False)
        counts = {k: int(v) for k, v in unique_polygon_counts(Path(tmp) / "group-project").items() if v}
    try:
        _CACHE.mkdir(exist_ok=True)
        part = cached.with_suffix(f".{os.getpid()}.part")
        part.write_text(json.dumps(counts))
        part.replace(cached)
    except OSError:  # a read-only checks folder: recompute next time
        pass
    return counts


def input_sizes() -> dict[str, int]:
    """Bytes of every input file of the course data, by name."""
    from grouputils.teaching.samples import sample_files

    return {p.name: p.stat().st_size for p in sample_files(sample_dir())}


def manifest_tiles(manifest) -> dict[str, list[int]]:
    """What a staging wrote per tile: ``tile -> [rows, centroids]`` (comparable across runs)."""
    return {k: [int(v["rows"]), int(v["centroids"])] for k, v in (manifest or {}).get("tiles", {}).items()}


def serial_staging(name: str) -> dict[str, list[int]]:
    """:func:`manifest_tiles` of one input file staged alone, here, on a scratch stager."""
    with tempfile.TemporaryDirectory(prefix="reference-one-") as tmp:
        stager = initialize_stager(sample_dir(), Path(tmp) / "group-project")
        stager.stage(sample_dir() / name)
        return manifest_tiles(stager.read_manifest(sample_dir() / name))


def learner_stager(folder: Path):
    """A stager on the submission's ``group-project/`` (to read its manifests and staged tiles)."""
    return initialize_stager(sample_dir(), folder / "group-project")
