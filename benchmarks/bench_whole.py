"""The whole run on the shipped samples, CPU seconds per step: an earlier revision against today's.

Run from the repository root (a git checkout: the earlier code is exported from git)::

    .venv/bin/python benchmarks/bench_whole.py                    # --repeat 3, --old-rev 16a4075
    .venv/bin/python benchmarks/bench_whole.py --old-rev HEAD~5 --repeat 5

Each round runs ``run_pipeline(config, executor="serial", force=True)`` on a
copy of ``data-samples/`` in a fresh Python process, once with the earlier
revision's ``grouputils`` and once with this tree's, alternating, and the
median of ``--repeat`` rounds is printed. Serial, so that every CPU second of
the run is this one process's: ``time.process_time`` around each step (the
steps of :data:`grouputils.run.run_steps.STEPS`), around ``run_pipeline``
(which adds the run summary and the resource timeline figure), and the whole
process from interpreter start (imports included: what ``grouputils run``
costs). The machine is shared: CPU seconds, not wall time, and the two
revisions side by side in one run.

It also prints the *write floor*: the CPU seconds of writing this tree's
outputs again (every staged GeoPackage with pyogrio, every GeoTIFF with
rasterio's COG driver and the same profile and tags, every PNG's bytes) with
the data already in memory. No pipeline that writes these files with these
libraries can take less, so ``PDG / write floor`` bounds the ratio to PDG.

The earlier PDG libraries (pdgstaging 1.1.0 + pdgraster 0.9.3) are not
installed here: their whole-run figure on the same samples is the one issue 19
states (10.5 CPU-s for grouputils at 5.2x faster, so 54.6 CPU-s), printed as
"PDG figure from issue 19".

The default ``--old-rev`` is the last commit before the speed work of this
benchmark's session.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data-samples"
#: issue 19: grouputils took 10.5 CPU-s for the whole run on the shipped samples,
#: 5.2x faster than PDG
PDG_WHOLE_CPU_S = 10.5 * 5.2
OLD_REV = "16a4075"

CHILD = r"""
import json, resource, shutil, sys, time, warnings
from pathlib import Path
tree, samples, work = sys.argv[1:4]
sys.path.insert(0, tree)
warnings.simplefilter("ignore")
import grouputils
assert Path(grouputils.__file__).resolve().is_relative_to(Path(tree).resolve()), grouputils.__file__
from grouputils.core.config import Config
import grouputils.run.run_steps as run_steps
from grouputils.run import pipeline

work = Path(work)
inputs = work / "in"
inputs.mkdir(parents=True)
for p in sorted(Path(samples).glob("*.gpkg")):
    shutil.copy(p, inputs / p.name)
config = Config(dir_input=inputs, dir_output=work / "out")
cpu = {}
steps = run_steps.STEPS


def timed(config):
    out = []
    for name, func in steps(config):
        def step(ctx, rep, func=func, name=name):
            t = time.process_time()
            func(ctx, rep)
            cpu[name] = time.process_time() - t
        out.append((name, step))
    return out


pipeline.STEPS = timed
t = time.process_time()
report = pipeline.run_pipeline(config, executor="serial", progress=False, force=True)
run_s = time.process_time() - t
assert report.ok, report.failures
usage = resource.getrusage(resource.RUSAGE_SELF)
floor = None
if "--floor" in sys.argv:
    # the write floor: the run's own outputs written again with the same libraries and
    # settings, the data already in memory (what any pipeline making these files pays)
    import pyogrio
    import rasterio
    out = work / "out"
    from grouputils.core.raster.geotiff import _profile  # the writer's own creation options
    from grouputils.core.tiles import Tiles, tile_from_path
    tiles = Tiles(config)
    gpkgs = [(pyogrio.read_arrow(p), pyogrio.read_info(p)["geometry_type"])
             for p in sorted((out / "staged").rglob("*.gpkg"))]
    tifs = []
    for p in sorted((out / "geotiff").rglob("*.tif")):
        with rasterio.open(p) as src:
            bands = [src.tags(b) for b in range(1, src.count + 1)]
            profile = _profile(tile_from_path(p), tiles, src.count)
            tifs.append((profile, src.read(), src.tags(), bands, src.descriptions))
    pngs = [p.read_bytes() for p in sorted((out / "web_tiles").rglob("*.png"))]
    dest = work / "floor"
    dest.mkdir()
    t = time.process_time()
    for i, ((meta, table), geometry_type) in enumerate(gpkgs):
        pyogrio.write_arrow(table, dest / f"{i}.gpkg", layer="staged", driver="GPKG",
                            geometry_name=meta["geometry_name"] or "geometry",
                            geometry_type=geometry_type, crs=meta["crs"])
    t_gpkg = time.process_time() - t
    t = time.process_time()
    for i, (profile, values, tags, band_tags, names) in enumerate(tifs):
        with rasterio.open(dest / f"{i}.tif", "w", **profile) as dst:
            dst.write(values)
            dst.update_tags(**tags)
            for b, name in enumerate(names, start=1):
                dst.set_band_description(b, name)
                dst.update_tags(b, **band_tags[b - 1])
    t_tif = time.process_time() - t
    t = time.process_time()
    for i, data in enumerate(pngs):
        (dest / f"{i}.png").write_bytes(data)
    t_png = time.process_time() - t
    floor = {"GeoPackages": t_gpkg, "GeoTIFFs": t_tif, "PNG files (bytes only)": t_png,
             "n": [len(gpkgs), len(tifs), len(pngs)]}
print(json.dumps({"steps": cpu, "run_pipeline": run_s, "process": usage.ru_utime + usage.ru_stime,
                  "geotiffs": sum(report.summary["geotiff_tiles_per_zoom"].values()),
                  "floor": floor}))
"""


def export(rev: str, dest: Path) -> Path:
    """The tree of ``rev`` (``git archive``) under ``dest``."""
    archive = dest / "old.tar"
    subprocess.run(
        ["git", "archive", "--format=tar", "-o", str(archive), rev], cwd=REPO, check=True
    )
    with tarfile.open(archive) as tar:
        tar.extractall(dest / "old", filter="data")
    archive.unlink()
    return dest / "old"


def measure(tree: Path, work: Path, floor: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    extra = ["--floor"] if floor else []
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(tree), str(SAMPLES), str(work), *extra],
        capture_output=True,
        text=True,
        env=env,
        cwd=work.parent,
    )
    shutil.rmtree(work, ignore_errors=True)
    if run.returncode != 0:
        raise SystemExit(f"run with {tree} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-rev", default=OLD_REV, help="earlier revision (default %(default)s)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None, help="also write the medians here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-whole-") as tmp:
        base = Path(tmp)
        trees = {"old": export(args.old_rev, base), "new": REPO}
        runs: dict[str, list[dict]] = {"old": [], "new": []}
        for i in range(args.repeat):
            for name, tree in trees.items():
                runs[name].append(measure(tree, base / f"{name}-{i}", floor=name == "new"))
    med = {
        name: {
            **{s: statistics.median(r["steps"][s] for r in rs) for s in rs[0]["steps"]},
            "run_pipeline (steps + summary + timeline)": statistics.median(
                r["run_pipeline"] for r in rs
            ),
            "whole process (imports included)": statistics.median(r["process"] for r in rs),
        }
        for name, rs in runs.items()
    }
    print(
        f"whole run, {len(list(SAMPLES.glob('*.gpkg')))} shipped samples, serial, "
        f"{runs['new'][0]['geotiffs']} GeoTIFFs; CPU-s, median of {args.repeat} interleaved rounds"
    )
    print(f"{'step':44s} {args.old_rev:>9s} {'now':>9s} {'old/now':>8s}")
    for row in med["new"]:
        old, new = med["old"].get(row, float("nan")), med["new"][row]
        print(f"{row:44s} {old:9.2f} {new:9.2f} {old / new:7.2f}x")
    total = med["new"]["run_pipeline (steps + summary + timeline)"]
    floors = [r["floor"] for r in runs["new"]]
    n_gpkg, n_tif, n_png = floors[0]["n"]
    parts = {k: statistics.median(f[k] for f in floors) for k in floors[0] if k != "n"}
    write_floor = sum(parts.values())
    print(
        f"write floor (the same {n_gpkg} GeoPackages, {n_tif} GeoTIFFs, {n_png} PNGs written "
        "again, data in "
        f"memory): {write_floor:.2f} CPU-s = "
        + " + ".join(f"{k} {v:.2f}" for k, v in parts.items())
    )
    print(
        f"the whole run is {total / write_floor:.1f}x its write floor; PDG / write floor = "
        f"{PDG_WHOLE_CPU_S / write_floor:.1f}x, the most any pipeline writing these files "
        "could reach"
    )
    print(
        f"PDG figure from issue 19: {PDG_WHOLE_CPU_S:.1f} CPU-s -> now "
        f"{PDG_WHOLE_CPU_S / total:.1f}x "
        f"faster than PDG (goal 20x: at most {PDG_WHOLE_CPU_S / 20:.2f} CPU-s)"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "old_rev": args.old_rev,
                    "median": med,
                    "run_pipeline": total,
                    "write_floor": write_floor,
                    "write_floor_parts": parts,
                    "pdg": PDG_WHOLE_CPU_S,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
