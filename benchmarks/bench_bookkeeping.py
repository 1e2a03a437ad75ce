"""Bookkeeping of the run state at 10k, 100k and 1M z13 tiles (no geometry, no files).

For each size this builds a fresh :class:`grouputils.run.state.RunState` and drives
the pipeline's own step logic (:func:`grouputils.run.steps.run_tile_step`, with a
runner that returns a made-up record per tile instead of rasterizing) through:

1. **record**: a first run: every staged tile recorded, then the z13 GeoTIFFs,
   every parent level down to z0 and every web tile, one transaction per batch
   of 500 results, as the main process does when results come in;
2. **one input changed**: one staged tile gets a new fingerprint; the rerun
   decides what to redo (only the tile, its ancestors and their web tiles) and
   records it;
3. **no-op rerun**: nothing changed; the steps look at nothing;
4. **summary**: ``run-summary.json``'s totals (:func:`grouputils.run.reports.run_totals`);
5. **catalogue index**: the raster summary table (one row per GeoTIFF, the
   index the CSV, the map and the STAC items are made from) written as CSV.

It prints time and growth of peak resident memory (new peaks only) per phase, and how
each grows from one size to the next: a rerun's cost must stay flat (it grows
with what changed), recording and the reports grow with the dataset.

Not measured here: checking that recorded files are intact (one ``os.stat``
per output file, linear in outputs, done by every rerun) and the staging
manifests (per input file, read by staging).

Usage::

    .venv/bin/python benchmarks/bench_bookkeeping.py              # 10k 100k 1M
    .venv/bin/python benchmarks/bench_bookkeeping.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grouputils.core.config import Config
from grouputils.core.tiles import Tile, Tiles
from grouputils.run.reports import raster_summary, run_totals
from grouputils.run.state import Key, RunState, TileRow
from grouputils.run.steps import TileStep, fingerprint, parent_fingerprints, run_tile_step

Z = 13
BATCH = 500


class FakeRunner:
    """The pipeline runner's ``map`` without work: a record per item, batch by batch."""

    def __init__(self) -> None:
        self.tasks = 0

    def map(
        self, name: str, func: Callable[[Any], Any], items: list[Any], *, batch: bool, on_done=None
    ):
        results = []
        for i in range(0, len(items), BATCH):
            chunk = items[i : i + BATCH]
            res = [(True, func(k)) for k in chunk]
            if on_done is not None:
                on_done(chunk, res)
            results.extend(res)
        self.tasks += len(items)
        return results


def fake_record(key: Key) -> dict[str, Any]:
    z, x, y = key
    info = {
        "kind": "rasterized",
        "n_rows": 40,
        "n_counted": 30,
        "n_duplicated": 2,
        "n_data_pixels": 9000,
        "covered_m2": 1234.5,
        "number_IWP_per_pixel_sum": 30.0,
        "prop_pixel_covered_by_IWP_mean": 0.1,
    }
    return {
        "files": [[f"geotiff/WorldCRS84Quad/{z}/{x}/{y}.tif", 123456, 1_700_000_000_000_000_000]],
        "info": info,
        "seconds": 0.1,
    }


def passes(state: RunState, tiles: Tiles, runner: FakeRunner) -> None:
    """The pipeline's rasterize, parents and web-tile passes over the dirty tiles."""
    settings = "settings"

    def downstream(key: Key) -> list[tuple[str, Key]]:
        out = [("web", key)]
        if key[0] > tiles.min_zoom:
            p = tiles.get_parent_tile(Tile(key[1], key[2], key[0]))
            out.append(("geotiff", (p.z, p.x, p.y)))
        return out

    def z13(keys: list[Key]) -> dict[Key, str]:
        return {
            k: fingerprint(fp, settings) for k, fp in state.fingerprints("staged", keys).items()
        }

    def parents(keys: list[Key]) -> dict[Key, str]:  # the pipeline's own rule
        return parent_fingerprints(state, tiles.get_child_tiles, keys, settings)

    for z in range(Z, -1, -1):
        step = TileStep(
            f"z{z}",
            "geotiff",
            state.dirty("geotiff", z=z),
            z13 if z == Z else parents,
            fake_record,
            lambda k: None,
            downstream,
        )
        run_tile_step(state, step, runner, set())
    web = TileStep(
        "web",
        "web",
        state.dirty("web"),
        lambda keys: {
            k: fingerprint(fp, "style") for k, fp in state.fingerprints("geotiff", keys).items()
        },
        fake_record,
        lambda k: None,
        lambda k: [],
    )
    run_tile_step(state, web, runner, set())


def measure(func: Callable[[], Any]) -> tuple[float, float, float, Any]:
    """Wall and CPU seconds, and growth of this process's peak resident memory (MB), of ``func``.

    CPU seconds (user + system of this process) are the figure to compare on
    a shared, loaded machine; wall seconds include waiting for a core.
    """
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    out = func()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1e3  # kB on Linux
    return seconds, cpu, peak, out


def one_size(n: int, folder: Path) -> dict[str, Phase]:
    side = int(math.isqrt(n))
    keys = [(Z, 2000 + i, 1000 + j) for i in range(side) for j in range(n // side)]
    config = Config(dir_input=folder / "in", dir_output=folder / "out")
    tiles = Tiles(config)
    state = RunState(folder / "state.sqlite")
    runner = FakeRunner()
    rows: dict[str, Phase] = {}

    def first_run() -> int:
        for i in range(0, len(keys), BATCH):
            with state.transaction():
                chunk = keys[i : i + BATCH]
                state.put_many(
                    "staged",
                    (
                        (k, TileRow(f"fp{k}", [["s", 1, 1]], {"duplicates_within": 1}))
                        for k in chunk
                    ),
                )
                state.mark("geotiff", chunk)
        passes(state, tiles, runner)
        return runner.tasks

    def one_changed() -> int:
        before = runner.tasks
        k = keys[len(keys) // 2]
        with state.transaction():
            state.put("staged", k, TileRow("changed", [["s", 1, 2]], {"duplicates_within": 1}))
            state.mark("geotiff", [k])
        passes(state, tiles, runner)
        return runner.tasks - before

    def noop() -> int:
        before = runner.tasks
        passes(state, tiles, runner)
        return runner.tasks - before

    def index() -> int:
        frame = raster_summary(state, config)
        (folder / "raster_summary.csv").write_text(frame.to_csv(index=False))
        return len(frame)

    for name, func in (
        ("record (first run)", first_run),
        ("rerun, 1 input changed", one_changed),
        ("rerun, nothing changed", noop),
        ("summary totals", lambda: run_totals(state, config)),
        ("catalogue index (CSV)", index),
    ):
        wall, cpu, mb, out = measure(func)
        rows[name] = Phase(wall, cpu, mb, out if isinstance(out, int) else 0)
    state.close()
    size = sum(p.stat().st_size for p in folder.glob("state.sqlite*")) / 1e6
    rows[STATE_MB] = Phase(size, size, 0.0, 0)
    return rows


STATE_MB = "state file MB"


@dataclasses.dataclass(frozen=True)
class Phase:
    """One phase at one size: wall and CPU seconds, peak RSS growth (MB), tasks run."""

    wall: float
    cpu: float
    mb: float
    tasks: int


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = ap.parse_args(argv)
    results: dict[int, dict[str, Phase]] = {}
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-bookkeeping-") as d:
            print(f"{n:,} z13 tiles ...", flush=True)
            results[n] = one_size(n, Path(d))
        for name, ph in results[n].items():  # as each size finishes
            if name == STATE_MB:
                print(f"  {name:26s} {ph.wall:9.1f} MB", flush=True)
                continue
            print(
                f"  {name:26s} {ph.wall:9.3f} s wall {ph.cpu:9.3f} s CPU"
                f"  peak RSS +{ph.mb:.0f} MB  tasks {ph.tasks}",
                flush=True,
            )
    names = list(next(iter(results.values())))
    sizes = list(results)
    print()
    print(f"{'phase (CPU s, +RSS MB)':26s}" + "".join(f"{n:>20,}" for n in sizes) + "   growth")
    for name in names:
        cells = [
            f"{results[n][name].wall:9.1f} MB"
            if name == STATE_MB
            else f"{results[n][name].cpu:8.3f}s {results[n][name].mb:6.0f}MB"
            for n in sizes
        ]
        growth = [
            results[b][name].cpu / max(results[a][name].cpu, 1e-9)
            for a, b in itertools.pairwise(sizes)
        ]
        print(
            f"{name:26s}"
            + "".join(f"{c:>20s}" for c in cells)
            + "   "
            + ", ".join(f"{g:.1f}x" for g in growth)
        )
    print(
        "\n(CPU seconds of this process, so the figures hold on a loaded machine; growth is "
        "from one size to the next: a rerun's should stay near 1x, recording and reports grow "
        "with the tiles)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
