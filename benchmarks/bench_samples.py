"""Benchmark the synthetic IWP generator: time, size and tile coverage per scale.

Run from the repository root::

    .venv/bin/python benchmarks/bench_samples.py              # the shipped-samples scale
    .venv/bin/python benchmarks/bench_samples.py --course     # also the course scale (~0.5 GB)
    .venv/bin/python benchmarks/bench_samples.py --repeat 5 --keep /scratch/out

For each scale it generates the dataset ``--repeat`` times into a temporary
folder (or ``--keep DIR``) with the default seed, in this process (one core),
and prints

* generation time: median and minimum over the repeats (seconds), and
  polygons per second;
* the peak RSS of the process after each scale (it only grows, so the
  course figure includes the samples run before it);
* per file and in total: features, MB on disk (10^6 bytes) and the z=13
  WorldCRS84Quad tiles the polygons touch (:func:`grouputils.teaching.samples.summarize`,
  timed separately), plus the re-detections listed in ``redetections.csv``.

The machine may be shared: the load average at the start and end is printed.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from grouputils.teaching import samples


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def bench(scale: str, repeat: int, out: Path) -> None:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        paths = samples.generate_dataset(out, scale=scale, seed=samples.DEFAULT_SEED)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    table = samples.summarize(out)
    summary_s = time.perf_counter() - start
    labels = pd.read_csv(out / samples.REDETECTIONS_FILE)
    total = table.iloc[-1]
    print(f"\n== scale {scale!r}: {len(paths)} files in {out}")
    print(
        f"generate: median {statistics.median(times):.2f} s, min {min(times):.2f} s "
        f"over {repeat} run(s); "
        f"{total['features'] / min(times):,.0f} polygons/s; peak RSS {_peak_rss_mb():,.0f} MB"
    )
    print(f"summarize: {summary_s:.2f} s")
    shown = table.copy()
    shown["mb"] = shown["mb"].map(lambda v: f"{v:.2f}")
    print(shown[["file", "features", "mb", "tiles"]].to_string(index=False))
    body = table.iloc[:-1]
    print(
        f"features {int(total['features']):,}, {total['mb']:.2f} MB, "
        f"{int(total['tiles'])} z=13 tiles; "
        f"largest/smallest: {body['features'].max() / body['features'].min():.1f}x features, "
        f"{body['mb'].max() / body['mb'].min():.1f}x bytes; "
        f"{len(labels):,} re-detections (overlap median {labels['overlap'].median():.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--course", action="store_true", help="also benchmark the course scale (~0.5 GB on disk)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="generations per scale (default 3; course runs once)"
    )
    parser.add_argument(
        "--keep", type=Path, default=None, help="write into DIR/<scale> and keep the files"
    )
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    scales = ["samples", "course"] if args.course else ["samples"]
    with tempfile.TemporaryDirectory(prefix="bench-samples-") as tmp:
        root = args.keep if args.keep is not None else Path(tmp)
        for scale in scales:
            bench(scale, args.repeat if scale == "samples" else 1, root / scale)
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
