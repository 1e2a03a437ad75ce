"""Web tiles and parents: the code before ``core/raster/`` against today's, side by side.

Run from the repository root (a git checkout: the old code is read from git)::

    .venv/bin/python benchmarks/bench_speed.py                  # shipped samples + real file
    .venv/bin/python benchmarks/bench_speed.py --repeat 5

For each data set (the shipped samples, ``data-samples/``; the real file
``../shared/data/iwp-real`` when present, skipped otherwise) it stages,
finalizes and rasterizes z=13 once in a temporary folder, then, in this one
process, measures CPU seconds (``time.process_time``; the machine is shared)
of the median of ``--repeat`` interleaved rounds of

* **parents, old**: the previous ``grouputils/core/rasterize.py``
  (loaded from git, ``--old-rev``), level by level, each parent reading its
  children's GeoTIFFs from disk;
* **parents, new, per tile**: today's :meth:`RasterTiler.parent_geotiff_bands`
  level by level (what the pipeline's per-tile ``parent_task`` does);
* **parents, new, in memory**: today's
  :meth:`RasterTiler.parent_geotiffs_from_children` (depth first, children
  held in memory, every GeoTIFF read at most once);
* **web tiles, old**: the previous ``webtile`` (read the GeoTIFF, colour,
  Pillow PNG at level 6) of every GeoTIFF;
* **web tiles, new, from disk**: today's :meth:`RasterTiler.webtile` (what
  the pipeline's ``webtile_task`` does);
* **web tiles, new, from memory**: :meth:`RasterTiler.webtiles_from_bands`
  on bands already held (what a parent or rasterize task holding them pays);

then checks that every parent array is bit-identical and every web tile
decodes to identical pixels, and prints the ratios, with where the time goes
per tile. The earlier PDG libraries are not installed: their figures are the
ones stated in issue 19 for the real file (4 z=13 tiles, 13 parents, 17
GeoTIFFs' web tiles), printed as "PDG figure from issue 19".
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import io
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from grouputils.core.raster.geotiff import read_geotiff, write_geotiff
from grouputils.core.raster.pyramid import resample_children
from grouputils.core.rasterize import RasterTiler
from grouputils.core.staging import initialize_stager
from grouputils.core.tiles import Tile
from grouputils.core.webtiles import colorize, encode_png

REPO = Path(__file__).resolve().parents[1]
RASTER_PACKAGE = "grouputils/core/raster"
SAMPLES = REPO / "data-samples"
REAL = REPO.parent / "shared" / "data" / "iwp-real" / "prudhoe_bay_WV03_20190903.gpkg"

#: CPU seconds of the earlier PDG libraries on the real file, from issue 19's table
#: (grouputils' figure times its "x faster" ratio): web tiles 0.91 x 1.2, parents 0.34 x 3.6.
PDG_REAL = {"web tiles": 0.91 * 1.2, "parents": 0.34 * 3.6}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def old_revision() -> str:
    """The commit before ``grouputils/core/raster/`` was added (the old raster code)."""
    added = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H", "--", f"{RASTER_PACKAGE}/__init__.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not added:
        raise SystemExit("grouputils/core/raster/ is not in git history; pass --old-rev")
    return f"{added[-1]}^"


def load_old(rev: str, path: str, name: str) -> types.ModuleType:
    """Import ``path`` as it was at ``rev`` (it imports today's other grouputils modules)."""
    source = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:{path}", "exec"), module.__dict__)
    return module


def cpu(func: Callable[[], object]) -> float:
    """CPU seconds of one call."""
    t0 = time.process_time()
    func()
    return time.process_time() - t0


def prepare(inputs: list[Path], work: Path) -> RasterTiler:
    """Stage, finalize and rasterize z=13 the inputs into ``work/base``."""
    src = work / "inputs"
    src.mkdir(parents=True)
    for p in inputs:
        (src / p.name).symlink_to(p.resolve())
    stager = initialize_stager(src, work / "base")
    for p in stager.tiles.get_filenames_from_dir("input"):
        stager.stage(p)
    stager.finalize(progress=False)
    tiler = RasterTiler(stager.config)
    for p in stager.tiles.get_filenames_from_dir("staged"):
        tiler.rasterize_vector(p)
    return tiler


def levels(tiler: RasterTiler, z13: list[Tile]) -> list[list[Tile]]:
    """Parents of ``z13`` level by level, highest zoom first (sorted within a level)."""
    out, level = [], z13
    while level and level[0].z > tiler.tiles.min_zoom:
        level = sorted({tiler.tiles.get_parent_tile(t) for t in level})
        out.append(level)
    return out


@dataclasses.dataclass
class Trees:
    """One rasterized z=13 output copied three times: old code, new per tile, new in memory."""

    old_rz: types.ModuleType
    old_wt: types.ModuleType
    old: Any  # the old RasterTiler
    new_tile: RasterTiler
    new_memory: RasterTiler
    folders: dict[str, Path]
    z13: list[Tile]
    pyramid: list[list[Tile]]
    held: list[tuple[Tile, np.ndarray]] = dataclasses.field(default_factory=list)


def make_trees(inputs: list[Path], work: Path, rev: str) -> Trees:
    """Rasterize once, copy the outputs for each contender, load the old code."""
    old_rz = load_old(rev, "grouputils/core/rasterize.py", "_old_rasterize")
    old_wt = load_old(rev, "grouputils/core/webtiles.py", "_old_webtiles")
    base = prepare(inputs, work)
    z13 = [base.tiles.tile_from_path(p) for p in base.tiles.get_filenames_from_dir("geotiff")]
    folders = {k: work / k for k in ("old", "new_tile", "new_memory")}
    for folder in folders.values():
        shutil.copytree(base.config.dir_output, folder)
    new_tile = RasterTiler(base.config.replace(dir_output=folders["new_tile"]))
    new_memory = RasterTiler(base.config.replace(dir_output=folders["new_memory"]))
    for t in (new_tile, new_memory):
        t.luts  # noqa: B018 - colour tables once per run, like the legends (Matplotlib)
    old = old_rz.RasterTiler(base.config.replace(dir_output=folders["old"]))
    return Trees(old_rz, old_wt, old, new_tile, new_memory, folders, z13, levels(base, z13))


def contenders(tr: Trees) -> dict[str, Callable[[], object]]:
    """What each contender does, as a call (parents first, then web tiles)."""
    return {**parent_contenders(tr), **web_contenders(tr)}


def parent_contenders(tr: Trees) -> dict[str, Callable[[], object]]:
    """The three ways of building the parents."""

    def old_parents() -> None:
        for level in tr.pyramid:
            for tile in level:
                tr.old.parent_geotiff(tile)

    def new_parents_per_tile() -> None:
        for level in tr.pyramid:
            for tile in level:
                tr.new_tile.parent_geotiff_bands(tile)

    def new_parents_memory() -> None:
        tr.new_memory.parent_geotiffs_from_children(tr.z13, recursive=True)

    return {
        "parents old": old_parents,
        "parents new per tile": new_parents_per_tile,
        "parents new in memory": new_parents_memory,
    }


def web_contenders(tr: Trees) -> dict[str, Callable[[], object]]:
    """The three ways of colouring the web tiles."""

    def old_web() -> None:
        cfg = tr.old.config
        for path in list(tr.old.tiles.get_filenames_from_dir("geotiff")):
            tile = tr.old.tiles.tile_from_path(path)
            values = tr.old_rz.read_geotiff(path, cfg)
            for band, stat in zip(values, cfg.statistics, strict=True):
                dest = tr.old.tiles.path("web_tiles", tile, statistic=stat.name)
                tr.old_wt.write_webtile(dest, band, stat, tile.z, cfg.z)

    def new_web_disk() -> None:
        for path in tr.new_tile.tiles.get_filenames_from_dir("geotiff"):
            tr.new_tile.webtile(path)

    def new_web_memory() -> None:
        if not tr.held:  # the bands a parent task holds (read once, outside the clock)
            raise RuntimeError("hold the bands first")
        for tile, values in tr.held:
            tr.new_memory.webtiles_from_bands(tile, values)

    return {
        "web old": old_web,
        "web new from disk": new_web_disk,
        "web new from memory": new_web_memory,
    }


def measure(tr: Trees, repeat: int) -> dict[str, float]:
    """Median CPU seconds of each contender over ``repeat`` interleaved rounds."""
    times: dict[str, list[float]] = {}
    for _ in range(repeat):
        for key, func in contenders(tr).items():
            if key.startswith("web") and not tr.held:
                mem = tr.new_memory
                tr.held.extend(
                    (mem.tiles.tile_from_path(p), read_geotiff(p, mem.config))
                    for p in mem.tiles.get_filenames_from_dir("geotiff")
                )
            times.setdefault(key, []).append(cpu(func))
    return {k: statistics.median(v) for k, v in times.items()}


def same_outputs(tr: Trees) -> tuple[bool, bool]:
    """(parent arrays bit-identical, web tiles decoding to identical pixels), old vs both new."""
    cfg = tr.old.config
    new = {"new_tile": tr.new_tile, "new_memory": tr.new_memory}
    arrays = all(
        read_geotiff(tr.old.tiles.path("geotiff", t), cfg).tobytes()
        == read_geotiff(n.tiles.path("geotiff", t), cfg).tobytes()
        for level in tr.pyramid
        for t in level
        for n in new.values()
    )
    old_root = tr.folders["old"]
    pngs = [p.relative_to(old_root) for p in old_root.rglob("*.png") if p.name != "legend.png"]
    pixels = bool(pngs) and all(
        np.array_equal(
            np.asarray(Image.open(old_root / r)), np.asarray(Image.open(tr.folders[k] / r))
        )
        for r in pngs
        for k in new
    )
    return arrays, pixels


def folder_kb(folder: Path, pattern: str) -> float:
    """Total size in kB of the files matching ``pattern`` under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob(pattern)) / 1e3


def bench(name: str, inputs: list[Path], repeat: int, rev: str) -> dict[str, float]:
    """Measure, check and print one data set."""
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as tmp:
        tr = make_trees(inputs, Path(tmp), rev)
        med = measure(tr, repeat)
        same_arrays, same_pixels = same_outputs(tr)
        sizes = {
            k: (folder_kb(f / "web_tiles", "*.png"), folder_kb(f / "geotiff", "*.tif"))
            for k, f in tr.folders.items()
        }
        breakdown = time_components(tr.old_rz, tr.old_wt, tr.new_memory, tr.held, tr.pyramid)
    n_parents = sum(map(len, tr.pyramid))
    print(f"\n## {name}: {len(tr.z13)} z=13 tiles, {n_parents} parents, ", end="")
    print(f"{len(tr.held)} GeoTIFFs' web tiles")
    print(f"(CPU seconds, median of {repeat} interleaved rounds, one process)\n")
    print("| step | old code | new, as the pipeline runs it | new, arrays in memory |")
    print("|---|---|---|---|")
    rows = {
        "parents": ("parents old", "parents new per tile", "parents new in memory"),
        "web tiles": ("web old", "web new from disk", "web new from memory"),
    }
    for step, (o, d, m) in rows.items():
        print(
            f"| {step} | {med[o]:.3f} | {med[d]:.3f} ({med[o] / med[d]:.1f}x) "
            f"| {med[m]:.3f} ({med[o] / med[m]:.1f}x) |"
        )
    if name == "real file":
        print()
        for step, (o, d, m) in rows.items():
            pdg = PDG_REAL[step]
            print(
                f"{step}: PDG figure from issue 19 {pdg:.2f} CPU-s -> new as the pipeline runs "
                f"it {pdg / med[d]:.1f}x faster, new in memory {pdg / med[m]:.1f}x faster "
                f"(old code measured here: {pdg / med[o]:.1f}x)"
            )
    print(f"\nparent arrays bit-identical (old vs both new): {same_arrays}")
    print(f"web tiles decode to identical pixels (old vs both new): {same_pixels}")
    (old_png, old_tif), (new_png, new_tif) = sizes["old"], sizes["new_tile"]
    print(f"PNG: old {old_png:.0f} kB, new {new_png:.0f} kB; ", end="")
    print(f"GeoTIFF: old {old_tif:.0f} kB, new {new_tif:.0f} kB")
    print("\nwhere the time goes, ms per tile (CPU):\n")
    print("| part | old | new |")
    print("|---|---|---|")
    for part, (before, after) in breakdown.items():
        print(f"| {part} | {before:.2f} | {after:.2f} |")
    print(f"\npeak RSS so far: {peak_rss_mb():.0f} MB")
    return med


def time_components(
    old_rz: types.ModuleType,
    old_wt: types.ModuleType,
    tiler: RasterTiler,
    held: list[tuple[Tile, np.ndarray]],
    pyramid: list[list[Tile]],
) -> dict[str, tuple[float, float]]:
    """ms per tile of each part of the work, old and new, on the bands held in memory."""
    cfg, tiles = tiler.config, tiler.tiles
    out: dict[str, tuple[float, float]] = {}
    paths = [tiles.path("geotiff", t) for t, _ in held]

    def per(func: Callable[[], object], n: int) -> float:
        return cpu(func) / max(n, 1) * 1000

    n = len(held)
    out["read one GeoTIFF"] = (
        per(lambda: [old_rz.read_geotiff(p, cfg) for p in paths], n),
        per(lambda: [read_geotiff(p, cfg) for p in paths], n),
    )
    stats = cfg.statistics

    def colour(mod: Callable[..., np.ndarray], with_lut: bool) -> list[np.ndarray]:
        return [
            mod(b, s, t.z, cfg.z, lut) if with_lut else mod(b, s, t.z, cfg.z)
            for t, v in held
            for b, s, lut in zip(v, stats, tiler.luts, strict=True)
        ]

    images = colour(colorize, True)
    out["colour the bands of a tile"] = (
        per(lambda: colour(old_wt.colorize, False), n),
        per(lambda: colour(colorize, True), n),
    )

    def pillow6() -> None:
        for img in images:
            buf = io.BytesIO()
            Image.fromarray(img, mode="RGBA").save(buf, format="PNG", compress_level=6)

    out["encode the PNGs of a tile"] = (
        per(pillow6, n),
        per(lambda: [encode_png(i) for i in images], n),
    )
    bands = {t: v for t, v in held}
    parents = [t for level in pyramid for t in level]
    placed = [
        [bands.get(c) if c is not None else None for c in _placed_children(tiler, p)]
        for p in parents
    ]
    out["resample 4 children (per parent)"] = (
        per(lambda: [old_rz.resample_children(c, stats) for c in placed], len(parents)),
        per(lambda: [resample_children(c, stats) for c in placed], len(parents)),
    )
    dest = cfg.dir_output / "bench-write.tif"
    out["write one GeoTIFF"] = (
        per(lambda: [old_rz.write_geotiff(dest, v, t, cfg) for t, v in held], n),
        per(lambda: [write_geotiff(dest, v, t, cfg, tiles=tiles) for t, v in held], n),
    )
    return out


def _placed_children(tiler: RasterTiler, parent: Tile) -> list[Tile | None]:
    """The children of ``parent`` in resample order (top-left, top-right, bottom-left, ...)."""
    from grouputils.core.raster.pyramid import child_quadrant

    order: list[Tile | None] = [None] * 4
    for child in tiler.tiles.get_child_tiles(parent):
        order[child_quadrant(tiler.tiles, parent, child)] = child
    return order


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=Path, default=SAMPLES, help="folder of sample inputs")
    ap.add_argument("--real", type=Path, default=REAL, help="the real file (skipped if absent)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (median)")
    ap.add_argument("--old-rev", default=None, help="git revision of the old code")
    ap.add_argument("--json", type=Path, default=None, help="also write the medians here")
    args = ap.parse_args(argv)
    rev = args.old_rev or old_revision()
    print(f"old code: grouputils/core/rasterize.py and webtiles.py at {rev}")
    out = {"samples": bench("shipped samples", sorted(args.samples.glob("*.gpkg")), args.repeat, rev)}
    if args.real.is_file():
        out["real"] = bench("real file", [args.real], args.repeat, rev)
        out["pdg_real"] = PDG_REAL
    else:
        print(f"\nreal file {args.real} not present: skipped")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
