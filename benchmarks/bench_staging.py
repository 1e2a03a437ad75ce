"""Staging speed and memory against the I/O floor, measured side by side in one run.

For each input this prints:

* ``stage``: ``TileStager.stage`` + ``finalize`` of that one file (seconds);
* ``floor``: a pyogrio (Arrow) read of the input plus a pyogrio write of the
  same rows into the same tile files, with no other work;
* ``ratio`` = stage / floor (the bars: <= 3 for the real file, <= 1.5 for the
  largest course-scale file), in wall seconds and in CPU seconds (all threads)
  of the same runs; CPU seconds are steadier when the machine is shared;
* peak RSS of a fresh process doing the staging, and (for the largest file)
  the ratio of its peak RSS to that of a quarter-size copy (the bar: <= 1.5).

Every measurement runs in a fresh subprocess, alternating stage and floor,
and the median of ``--repeat`` runs is reported, because this machine is
shared and noisy.

Usage::

    python benchmarks/bench_staging.py                 # real file (if present) + largest shipped sample
    python benchmarks/bench_staging.py --course        # also the largest --scale course file (generated once)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "iwp-real" / "prudhoe_bay_WV03_20190903.gpkg"


def _stage_once(src: str, out: str, q) -> None:
    import warnings

    from grouputils.core.staging import initialize_stager

    warnings.simplefilter("ignore")
    stager = initialize_stager(Path(src).parent, out)
    t, c = time.perf_counter(), time.process_time()
    stager.stage(src)
    stager.finalize(progress=False)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    q.put((dt, dc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))


def _floor_once(src: str, staged_dir: str, out: str, q) -> None:
    """Read the input, then write the same rows into the same tile files (no other work)."""
    import pyarrow as pa
    import pyogrio

    # Which input rows go to which tile, known in advance (not timed).
    plan = []
    for f in sorted(Path(staged_dir).rglob("*.gpkg")):
        ids = pyogrio.read_dataframe(f, columns=["staging_id"], read_geometry=False)["staging_id"]
        fids = ids.str.rsplit(":", n=1).str[1].astype("int64").to_numpy()
        plan.append((f.relative_to(staged_dir), fids))
    t, c = time.perf_counter(), time.process_time()
    meta, table = pyogrio.read_arrow(src, return_fids=True)
    fid_col = meta.get("fid_column") or "OGC_FID"
    fid_col = fid_col if fid_col in table.column_names else "OGC_FID"
    pos = {int(v): i for i, v in enumerate(table.column(fid_col).to_numpy())}
    geom = meta["geometry_name"] or "wkb_geometry"
    for rel, fids in plan:
        rows = table.take(pa.array([pos[int(f)] for f in fids]))
        dest = Path(out) / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        pyogrio.write_arrow(rows, dest, driver="GPKG", geometry_name=geom, geometry_type="Polygon", crs=meta["crs"])
    dt, dc = time.perf_counter() - t, time.process_time() - c
    q.put((dt, dc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))


def _run(target, *args) -> tuple[float, float, int]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    res = q.get()
    p.join()
    return res


def quarter_copy(src: Path, dest: Path) -> Path:
    """Write the first quarter of ``src``'s features to ``dest`` (same schema)."""
    import pyogrio

    n = pyogrio.read_info(src)["features"]
    df = pyogrio.read_dataframe(src, max_features=max(1, n // 4), use_arrow=True)
    pyogrio.write_dataframe(df, dest, layer=pyogrio.list_layers(src)[0][0])
    return dest


def bench_file(src: Path, repeat: int, work: Path) -> dict:
    stage_t, floor_t, stage_c, floor_c, rss = [], [], [], [], []
    staged_ref = work / "ref"
    # one untimed run produces the tile plan for the floor
    _run(_stage_once, str(src), str(staged_ref))
    for i in range(repeat):
        out = work / f"stage{i}"
        dt, dc, peak = _run(_stage_once, str(src), str(out))
        stage_t.append(dt)
        stage_c.append(dc)
        rss.append(peak)
        shutil.rmtree(out)
        fdt, fdc, _ = _run(_floor_once, str(src), str(staged_ref / "staged"), str(work / f"floor{i}"))
        floor_t.append(fdt)
        floor_c.append(fdc)
        shutil.rmtree(work / f"floor{i}")
    shutil.rmtree(staged_ref)
    s, f = statistics.median(stage_t), statistics.median(floor_t)
    sc, fc = statistics.median(stage_c), statistics.median(floor_c)
    best = min(stage_c) / min(floor_c)  # the least-disturbed run of each
    return {"file": src.name, "MB": src.stat().st_size / 1e6, "stage_s": s, "floor_s": f, "ratio": s / f,
            "stage_cpu": sc, "floor_cpu": fc, "cpu_ratio": sc / fc, "cpu_ratio_of_minima": best, "peak_rss_MB": max(rss) / 1e6}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--course", action="store_true", help="also benchmark the largest --scale course file")
    ap.add_argument("--course-dir", type=Path, default=Path(tempfile.gettempdir()) / "grouputils-course-data")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)

    from grouputils.teaching import samples

    inputs: list[Path] = []
    if REAL.exists():
        inputs.append(REAL)
    else:
        print(f"(real file not found at {REAL}: skipped)")
    shipped = samples.sample_files()
    inputs.append(max(shipped, key=lambda p: p.stat().st_size))
    largest_course = None
    if args.course:
        if not list(args.course_dir.glob("*.gpkg")):
            print(f"generating course-scale data in {args.course_dir} ...", flush=True)
            samples.generate_dataset(args.course_dir, scale="course")
        largest_course = max(samples.sample_files(args.course_dir), key=lambda p: p.stat().st_size)
        inputs.append(largest_course)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for src in inputs:
            rows.append(bench_file(src, args.repeat, work / src.stem))
        if largest_course is not None:
            qdir = work / "quarter"
            qdir.mkdir()
            q = quarter_copy(largest_course, qdir / ("quarter_" + largest_course.name))
            rq = bench_file(q, 1, work / "q")
            rows.append(rq)
            mem_ratio = rows[-2]["peak_rss_MB"] / rq["peak_rss_MB"]
        else:
            mem_ratio = None

    print(f"{'file':45s} {'MB':>7s} {'stage s':>8s} {'floor s':>8s} {'ratio':>6s} "
          f"{'stage CPU-s':>11s} {'floor CPU-s':>11s} {'ratio':>6s} {'min/min':>7s} {'peak RSS MB':>12s}")
    for r in rows:
        print(f"{r['file']:45s} {r['MB']:7.1f} {r['stage_s']:8.3f} {r['floor_s']:8.3f} {r['ratio']:6.2f} "
              f"{r['stage_cpu']:11.3f} {r['floor_cpu']:11.3f} {r['cpu_ratio']:6.2f} {r['cpu_ratio_of_minima']:7.2f} "
              f"{r['peak_rss_MB']:12.0f}")
    print("bar: stage <= 3x floor (the real file), <= 1.5x (the largest course-scale file);")
    print("wall seconds and CPU seconds (all threads) of the same runs, medians; min/min: the")
    print("fastest stage over the fastest floor (other jobs only ever add time)")
    if mem_ratio is not None:
        print(f"peak RSS largest / quarter-size file: {mem_ratio:.2f} (bar: <= 1.5)")
    if args.json is not None:
        kinds = ["real"] * bool(REAL.exists()) + ["sample"] + ["course", "quarter"] * (largest_course is not None)
        args.json.write_text(json.dumps({"rows": dict(zip(kinds, rows, strict=True)), "memory_ratio": mem_ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
