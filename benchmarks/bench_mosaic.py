"""Benchmark the lazy GeoTIFF mosaic: one reduction per chunk size and Dask worker count.

Run from the repository root::

    .venv/bin/python benchmarks/bench_mosaic.py                    # samples + a 2x2 larger mosaic
    .venv/bin/python benchmarks/bench_mosaic.py --output DIR       # reuse a finished pipeline run
    .venv/bin/python benchmarks/bench_mosaic.py --repeat-grid 3 3  # a 9x larger mosaic
    .venv/bin/python benchmarks/bench_mosaic.py --compare-vrt      # also VRT + rioxarray

In one run and one process it

1. runs the pipeline serially on the shipped samples (unless ``--output``),
2. times :func:`grouputils.outputs.mosaic.mosaic_totals` (unique polygons + covered
   area, one pass) with :func:`grouputils.teaching.lazy.chunk_experiment` at each
   chunk size and worker count (Dask threads), on the run's z=13 mosaic and
   on a larger mosaic written by :func:`grouputils.outputs.mosaic.make_large_mosaic`,
3. prints one table per mosaic: median seconds, tasks, worker time outside
   tasks, mean cores busy, peak memory, and the time relative to the best
   setting of the same worker count,
4. with ``--compare-vrt``, times the same reduction on a GDAL VRT of the tiles
   opened with ``rioxarray.open_rasterio`` (lock=False), the design
   ``grouputils.outputs.mosaic`` did not choose, on both mosaics (each chunk's task
   reopens the VRT, whose XML lists every tile).

The machine may be shared: compare rows of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import dask
import pandas as pd

from grouputils.core.config import Config
from grouputils.core.tiles import Tiles, tile_from_path
from grouputils.outputs.mosaic import (
    config_from_outputs,
    covered_area_km2,
    make_large_mosaic,
    open_mosaic,
    polygon_count,
)
from grouputils.run.pipeline import run_pipeline
from grouputils.teaching.lazy import chunk_experiment
from grouputils.teaching.samples import sample_dir


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    med = table.groupby(["workers", "chunk_px"], as_index=False).agg(
        chunk=("chunk_label", "first"),
        chunk_mb=("chunk_mb", "first"),
        n_chunks=("n_chunks", "first"),
        seconds=("seconds", "median"),
        n_tasks=("n_tasks", "median"),
        overhead_s=("overhead_s", "median"),
        cpu_cores=("cpu_cores", "median"),
        peak_rss_mb=("peak_rss_mb", "median"),
        extra_rss_mb=("extra_rss_mb", "median"),
    )
    med["vs_best"] = med["seconds"] / med.groupby("workers")["seconds"].transform("min")
    return med.drop(columns="chunk_px")


def write_vrt(config: Config) -> Path:
    """A GDAL VRT placing every z tile of ``config`` in one raster (for the comparison only)."""
    import rasterio

    tiles = Tiles(config)
    paths = tiles.get_filenames_from_dir("geotiff", z=config.z)
    found = [tile_from_path(p) for p in paths]
    x0, y0 = min(t.x for t in found), min(t.y for t in found)
    s = config.tile_size
    width = (max(t.x for t in found) - x0 + 1) * s
    height = (max(t.y for t in found) - y0 + 1) * s
    with rasterio.open(paths[0]) as src:
        wkt, res = src.crs.to_wkt(), src.transform.a
    b = tiles.bounds(found[0].__class__(x0, y0, config.z))
    root = config.dir_geotiff / config.tms
    parts = [
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
        f"<SRS>{wkt}</SRS>",
        f"<GeoTransform>{b.left!r}, {res!r}, 0.0, {b.top!r}, 0.0, {-res!r}</GeoTransform>",
    ]
    for i, name in enumerate(config.statistic_names, start=1):
        parts.append(
            f'<VRTRasterBand dataType="Float32" band="{i}"><Description>{name}</Description>'
            "<NoDataValue>nan</NoDataValue>"
        )
        for p, t in zip(paths, found, strict=True):
            parts.append(
                "<SimpleSource>"
                f'<SourceFilename relativeToVRT="1">{p.relative_to(root).as_posix()}'
                "</SourceFilename>"
                f"<SourceBand>{i}</SourceBand>"
                f'<SourceProperties RasterXSize="{s}" RasterYSize="{s}" DataType="Float32" '
                'BlockXSize="128" BlockYSize="128"/>'
                f'<SrcRect xOff="0" yOff="0" xSize="{s}" ySize="{s}"/>'
                f'<DstRect xOff="{(t.x - x0) * s}" yOff="{(t.y - y0) * s}" '
                f'xSize="{s}" ySize="{s}"/></SimpleSource>'
            )
        parts.append("</VRTRasterBand>")
    parts.append("</VRTDataset>")
    vrt = root / f"bench-{config.z}.vrt"
    vrt.write_text("\n".join(parts))
    return vrt


def vrt_rows(config: Config, chunk_sizes: list[int | None], workers: list[int]) -> pd.DataFrame:
    """The same reduction on ``rioxarray.open_rasterio(vrt, chunks=...)``."""
    import rioxarray

    vrt = write_vrt(config)
    ours = open_mosaic(config)
    rows = []
    try:
        for chunk in chunk_sizes:
            for w in workers:
                side = -1 if chunk is None else chunk
                arr = rioxarray.open_rasterio(
                    vrt, chunks={"band": -1, "y": side, "x": side}, masked=True, lock=False
                )
                arr = arr.assign_coords(
                    band=list(config.statistic_names),
                    weight_by=("band", list(ours["weight_by"].values)),
                )
                arr = arr.assign_coords(x=ours["x"].values, y=ours["y"].values)
                t0 = time.perf_counter()
                n, a = dask.compute(
                    polygon_count(arr), covered_area_km2(arr), scheduler="threads", num_workers=w
                )
                rows.append(
                    {
                        "chunk": "one chunk" if chunk is None else str(chunk),
                        "workers": w,
                        "seconds": time.perf_counter() - t0,
                        "unique_polygons": int(n),
                    }
                )
    finally:
        vrt.unlink(missing_ok=True)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output", type=Path, help="a finished pipeline output folder to reuse")
    ap.add_argument(
        "--repeat-grid",
        type=int,
        nargs=2,
        default=(2, 2),
        metavar=("ROWS", "COLS"),
        help="copies of the tile block in the larger mosaic (default 2 2)",
    )
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per setting (median shown)")
    ap.add_argument("--compare-vrt", action="store_true")
    args = ap.parse_args()
    pd.set_option("display.width", 200)
    pd.set_option("display.precision", 3)

    with tempfile.TemporaryDirectory(prefix="bench-mosaic-") as tmp:
        tmp = Path(tmp)
        if args.output:
            config = config_from_outputs(args.output)
        else:
            config = Config(dir_input=sample_dir(), dir_output=tmp / "run")
            t0 = time.perf_counter()
            report = run_pipeline(config, executor="serial", progress=False)
            print(
                f"pipeline (serial, samples): {time.perf_counter() - t0:.1f} s, "
                f"{report.summary['unique_polygons']} polygons, "
                f"{report.summary['covered_area_km2']:.4f} km2"
            )
        print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()}")
        small = open_mosaic(config)
        print(
            f"\nrun mosaic: {small.shape}, {small.attrs['n_tiles']} tiles, "
            f"{small.nbytes / 1e6:.0f} MB"
        )
        sizes = [64, 128, 256, 512, 1024, 2048, 4096, None]
        t0 = time.perf_counter()
        table = chunk_experiment(
            config, chunk_sizes=sizes, workers=args.workers, repeats=args.repeats
        )
        print(summarize(table).to_string(index=False))
        print(f"(experiment {time.perf_counter() - t0:.0f} s)")

        t0 = time.perf_counter()
        big = make_large_mosaic(config, tmp / "big", repeat=tuple(args.repeat_grid))
        large = open_mosaic(big)
        print(
            f"\nlarger mosaic {tuple(args.repeat_grid)}: {large.shape}, "
            f"{large.attrs['n_tiles']} tiles, "
            f"{large.nbytes / 1e6:.0f} MB (written in {time.perf_counter() - t0:.1f} s)"
        )
        t0 = time.perf_counter()
        table = chunk_experiment(
            big,
            chunk_sizes=[128, 256, 512, 1024, 2048, 4096, None],
            workers=args.workers,
            repeats=args.repeats,
        )
        print(summarize(table).to_string(index=False))
        print(f"(experiment {time.perf_counter() - t0:.0f} s)")

        if args.compare_vrt:
            for name, cfg, sizes in (
                ("run", config, [64, 256, 1024, None]),
                ("larger", big, [256, 1024]),
            ):
                print(
                    f"\nVRT + rioxarray.open_rasterio(lock=False), {name} mosaic "
                    "(compare with the same rows above):"
                )
                vrt = vrt_rows(cfg, sizes, args.workers)
                print(vrt.to_string(index=False))


if __name__ == "__main__":
    main()
