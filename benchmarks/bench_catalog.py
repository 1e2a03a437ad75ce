"""The STAC catalogue: written from disk vs from the run's records, side by side in one process.

Run from the repository root::

    .venv/bin/python benchmarks/bench_catalog.py               # the 11 shipped samples
    .venv/bin/python benchmarks/bench_catalog.py --repeat 7

The shipped samples (``data-samples/``) are run through the pipeline once
(serial) in a temporary folder. Then, in this one process, the median CPU
seconds (``time.process_time``; the machine is shared) of ``--repeat``
interleaved rounds of

* **from disk**: ``write_stac_catalog(config)``, what the pipeline called
  before: every GeoTIFF opened for its tags and grid, every staged tile's
  ``Date``/``Time``/``staging_filename`` columns read again;
* **from records**: ``write_stac_catalog(config, records=catalog_records(state, config))``,
  what the pipeline's publish step calls now (building the records from the
  run state included);

and of their parts: the acquisition spans read from the staged tiles
(``acquisition_spans``), the GeoTIFFs' tags (``read_item_record``) and the
records from the state (``catalog_records``). Both catalogues are checked to
be byte-identical; the ratio is printed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from grouputils.core.config import Config
from grouputils.core.tiles import Tiles, tile_from_path
from grouputils.outputs.acquisition import acquisition_spans
from grouputils.outputs.catalog import write_stac_catalog
from grouputils.outputs.catalog_items import read_item_record
from grouputils.run.pipeline import run_pipeline
from grouputils.run.records import catalog_records
from grouputils.run.state import STATE_DIR, STATE_FILE, RunState

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data-samples"


def cpu(func: Callable[[], object]) -> float:
    """CPU seconds of one call."""
    t0 = time.process_time()
    func()
    return time.process_time() - t0


def catalogue(stac: Path) -> dict[str, bytes]:
    return {p.relative_to(stac).as_posix(): p.read_bytes() for p in sorted(stac.rglob("*.json"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds (median)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    try:
        (work / "in").mkdir()
        for p in sorted(SAMPLES.glob("*.gpkg")):
            shutil.copy2(p, work / "in" / p.name)
        config = Config(dir_input=work / "in", dir_output=work / "out")
        report = run_pipeline(config, executor="serial", progress=False)
        if not report.ok:
            print("pipeline failed:", report.failures, file=sys.stderr)
            return 1
        tiles = Tiles(config)
        geotiffs = tiles.get_filenames_from_dir("geotiff")
        staged = tiles.get_filenames_from_dir("staged")
        state = RunState(config.dir_output / STATE_DIR / STATE_FILE)
        stac = config.dir_output / "stac"

        def from_disk() -> None:
            write_stac_catalog(config)

        def from_records() -> None:
            write_stac_catalog(config, records=catalog_records(state, config))

        def spans_from_disk() -> None:
            acquisition_spans(tiles, [tile_from_path(p) for p in geotiffs])

        def tags_from_disk() -> None:
            for p in geotiffs:
                read_item_record(config, p)

        def records_from_state() -> None:
            catalog_records(state, config)

        disk_name, records_name = "from disk (write_stac_catalog(config))", "from records (publish)"
        contenders = {
            disk_name: from_disk,
            records_name: from_records,
            "  part: spans read from the staged tiles": spans_from_disk,
            "  part: GeoTIFF tags read": tags_from_disk,
            "  part: records from the state": records_from_state,
        }
        from_records()
        by_records = catalogue(stac)
        from_disk()
        identical = catalogue(stac) == by_records
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.repeat):
            for name, func in contenders.items():
                times[name].append(cpu(func))
        state.close()
        med = {name: statistics.median(ts) for name, ts in times.items()}
        print(
            f"{len(list(SAMPLES.glob('*.gpkg')))} shipped samples: {len(geotiffs)} GeoTIFFs, "
            f"{len(staged)} staged tiles; median of {args.repeat} interleaved rounds, CPU s"
        )
        for name, t in med.items():
            print(f"  {name:<44} {t:7.3f} s  ({1000 * t / len(geotiffs):6.2f} ms per GeoTIFF)")
        disk, rec = med[disk_name], med[records_name]
        print(f"  ratio from disk / from records: {disk / rec:.2f} x")
        print(f"  catalogues byte-identical: {identical}")
        return 0 if identical else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
