"""Benchmark the raster engine: z=13 tiles against their I/O floor, parents, web tiles.

Run from the repository root::

    .venv/bin/python benchmarks/bench_rasterize.py                 # real file (if present)
    .venv/bin/python benchmarks/bench_rasterize.py --samples DIR   # also a folder of sample inputs
    .venv/bin/python benchmarks/bench_rasterize.py --compare-coverage

In one run and one process (one core), it stages and finalizes the inputs in a
temporary folder, then prints

* ms per z=13 tile (median over tiles of the median of ``--repeat`` runs),
  beside the I/O floor measured on the same tiles in the same run (read the
  staged tile with ``read_staged_tile`` + write an all-nodata GeoTIFF of the
  same shape and options) and their ratio;
* ms per output tile for the parents (z=12..0) and for the PNG web tiles;
* peak RSS of the process.

``--compare-coverage`` also measures the candidate coverage methods on the
busiest real tiles against an exact reference (see ``grouputils.core.rasterize``).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from grouputils.core.rasterize import RasterTiler, coverage_fraction, write_geotiff
from grouputils.core.staging import initialize_stager, read_staged_tile

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "iwp-real" / "prudhoe_bay_WV03_20190903.gpkg"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def timed(func, *args, repeat: int = 1) -> tuple[float, object]:
    """Median wall time in ms of ``repeat`` calls, and the last result."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = func(*args)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), out


def stage(dir_input: Path, dir_output: Path) -> RasterTiler:
    stager = initialize_stager(dir_input, dir_output)
    for p in stager.tiles.get_filenames_from_dir("input"):
        stager.stage(p)
    stager.finalize(progress=False)
    return RasterTiler(stager.config)


def floor_ms(tiler: RasterTiler, path: Path, repeat: int) -> float:
    """Read the staged tile and write an all-nodata GeoTIFF of the same shape and options."""
    cfg = tiler.config
    tile = tiler.tiles.tile_from_path(path)
    empty = np.full((len(cfg.statistics), cfg.tile_size, cfg.tile_size), np.nan, dtype="f4")
    dest = cfg.dir_output / "floor" / f"{tile.x}_{tile.y}.tif"

    def io() -> None:
        read_staged_tile(path, cfg)
        write_geotiff(dest, empty, tile, cfg)

    return timed(io, repeat=repeat)[0]


def bench(name: str, dir_input: Path, repeat: int, min_rows: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-rasterize-") as tmp:
        t0 = time.perf_counter()
        tiler = stage(dir_input, Path(tmp) / "out")
        print(f"\n## {name}: staged {dir_input} in {time.perf_counter() - t0:.1f} s "
              f"(peak RSS so far {peak_rss_mb():.0f} MB)")
        paths = tiler.tiles.get_filenames_from_dir("staged")
        rows = {p: len(read_staged_tile(p, tiler.config)) for p in paths}
        tiler.rasterize_vector(paths[0])  # warm-up (imports, GDAL drivers)
        per_tile, per_floor = [], []
        for p in paths:
            ms, _ = timed(tiler.rasterize_vector, p, repeat=repeat)
            fl = floor_ms(tiler, p, repeat)
            per_tile.append((rows[p], ms, fl))
        big = [t for t in per_tile if t[0] >= min_rows] or per_tile
        print(f"z={tiler.config.z} tiles: {len(paths)}; rows per tile min/median/max "
              f"{min(rows.values())}/{int(np.median(list(rows.values())))}/{max(rows.values())}")
        if len(paths) <= 12:
            for p, (n, ms, fl) in zip(paths, per_tile):
                tile = tiler.tiles.tile_from_path(p)
                print(f"  {tile.x}/{tile.y}: {n:5d} rows  {ms:7.1f} ms  floor {fl:6.1f} ms")
        for label, sel in (("all tiles", per_tile), (f"tiles with >= {min_rows} rows", big)):
            med = statistics.median(t[1] for t in sel)
            fl = statistics.median(t[2] for t in sel)
            print(f"median ms per z={tiler.config.z} tile ({label}, n={len(sel)}): {med:.1f} ms; "
                  f"I/O floor {fl:.1f} ms; ratio {med / fl:.2f}")

        z13 = [tiler.tiles.tile_from_path(p) for p in paths]
        t0 = time.perf_counter()
        parents = tiler.parent_geotiffs_from_children(z13, recursive=True)
        ms = (time.perf_counter() - t0) * 1000
        print(f"parents z={tiler.config.z - 1}..0: {len(parents)} tiles, {ms / len(parents):.1f} ms per output tile")

        geotiffs = tiler.tiles.get_filenames_from_dir("geotiff")
        t0 = time.perf_counter()
        legends = tiler.write_legends()
        ms = (time.perf_counter() - t0) * 1000
        print(f"legends: {len(legends)} in {ms:.0f} ms (once per run, Matplotlib import included)")
        t0 = time.perf_counter()
        pngs = [png for p in geotiffs for png in tiler.webtile(p)]
        ms = (time.perf_counter() - t0) * 1000
        print(f"web tiles: {len(pngs)} PNGs from {len(geotiffs)} GeoTIFFs, "
              f"{ms / len(pngs):.1f} ms per PNG (output tile), {ms / len(geotiffs):.1f} ms per GeoTIFF")
        t0 = time.perf_counter()
        tiler.write_summary()
        print(f"summary of {len(geotiffs)} GeoTIFFs: {(time.perf_counter() - t0) * 1000:.0f} ms")
        print(f"peak RSS so far {peak_rss_mb():.0f} MB")


def compare_coverage(real: Path) -> None:
    """The four candidate coverage methods against an exact reference on the busiest real tiles."""
    import rasterio.features
    import rasterio.transform
    import shapely

    with tempfile.TemporaryDirectory(prefix="bench-coverage-") as tmp:
        tiler = stage(real.parent, Path(tmp) / "out")
        size = tiler.config.tile_size
        print("\n## coverage methods on the real tiles (error against shapely intersection with every pixel)")
        print(f"{'tile':>10} {'method':>26} {'mean err':>9} {'max err':>8} {'area err %':>10} {'ms':>6}")
        for path in tiler.tiles.get_filenames_from_dir("staged"):
            tile = tiler.tiles.tile_from_path(path)
            frame = read_staged_tile(path, tiler.config)
            geoms = frame.geometry.values[~frame.staging_duplicated.to_numpy()]
            b = tiler.tiles.bounds(tile)
            union = shapely.union_all(geoms)
            parts = shapely.get_parts(union)
            xs = np.linspace(b.left, b.right, size + 1)
            ys = np.linspace(b.top, b.bottom, size + 1)
            x0, y0 = np.meshgrid(xs[:-1], ys[:-1])
            x1, y1 = np.meshgrid(xs[1:], ys[1:])
            boxes = shapely.box(x0.ravel(), y1.ravel(), x1.ravel(), y0.ravel())
            bi, pi = shapely.STRtree(parts).query(boxes, predicate="intersects")
            inter = shapely.area(shapely.intersection(boxes[bi], parts[pi]))
            ref = (np.bincount(bi, weights=inter, minlength=size * size) / shapely.area(boxes)).reshape(size, size)
            in_tile = shapely.area(shapely.intersection(union, shapely.box(*b)))
            pixel = (b.right - b.left) * (b.top - b.bottom) / size**2

            def supersampled(f: int) -> np.ndarray:
                tr = rasterio.transform.from_bounds(*b, size * f, size * f)
                burn = rasterio.features.rasterize(((g, 1) for g in geoms), out_shape=(size * f, size * f),
                                                   transform=tr, dtype="uint8")
                return burn.reshape(size, f, size, f).sum(axis=(1, 3), dtype="u4") / (f * f)

            def exact_full_union() -> np.ndarray:
                return coverage_fraction(np.array([shapely.union_all(geoms)], dtype=object), b, size)

            methods = {
                "8x supersampled": lambda: supersampled(8),
                "16x supersampled": lambda: supersampled(16),
                "exactextract union_all": exact_full_union,
                "exactextract dissolved": lambda: coverage_fraction(geoms, b, size),
            }
            for label, fn in methods.items():
                ms, cov = timed(fn, repeat=3)
                err = np.abs(cov - ref)
                area = (cov.sum() * pixel - in_tile) / in_tile * 100
                print(f"{tile.x}/{tile.y:<5} {label:>26} {err.mean():9.1e} {err.max():8.1e} {area:10.1e} {ms:6.0f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, default=REAL, help="the real IWP GeoPackage")
    ap.add_argument("--samples", type=Path, action="append", default=[], help="a folder of input GeoPackages")
    ap.add_argument("--repeat", type=int, default=5, help="runs per tile (median taken)")
    ap.add_argument("--min-rows", type=int, default=3000, help="'busy' tiles have at least this many rows")
    ap.add_argument("--compare-coverage", action="store_true", help="also compare coverage methods")
    args = ap.parse_args(argv)

    if args.real.exists():
        bench("real Prudhoe Bay file", args.real.parent, args.repeat, args.min_rows)
        if args.compare_coverage:
            compare_coverage(args.real)
    else:
        print(f"real file not found at {args.real}: skipped")
    for folder in args.samples:
        bench(f"samples {folder.name}", folder, max(1, args.repeat // 2), args.min_rows)
    print(f"\npeak RSS: {peak_rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
