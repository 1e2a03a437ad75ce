"""The ``grouputils`` command line.

One sub-command per task; each is a function ``cmd_<name>(args) -> int`` that
returns the exit status. This is the only module of grouputils that prints.

Examples
--------
::

    grouputils sample data-samples --scale samples --seed 20190903
    grouputils sample --summary                  # the shipped samples (or $GROUPUTILS_DATA)
    grouputils sample /scratch/iwp-course --scale course
    grouputils run data-samples group-project --workers 2
    grouputils run /scratch/iwp /scratch/iwp-out --executor slurm --config cluster.toml
    grouputils plan /scratch/iwp --nodes 4 --cores-per-node 64 --files 26530 --mean-size-mb 400
"""

from __future__ import annotations

import argparse
import errno
import logging
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from grouputils.core.errors import GroupUtilsError

__all__ = ["build_parser", "cmd_sample", "cmd_run", "cmd_plan", "main"]


def _add_sample(sub: argparse._SubParsersAction) -> None:
    from grouputils.teaching.samples import DEFAULT_SEED, SCALES

    p = sub.add_parser(
        "sample",
        help="generate synthetic IWP GeoPackages, or summarize a folder of them",
        description=(
            "Write 11 synthetic ice-wedge-polygon GeoPackages (one satellite scene each), "
            "redetections.csv and generator.json into OUT_DIR; or, with --summary, print "
            "features, size, bounds and z=13 tiles of every GeoPackage in DIR "
            "(default: the shipped samples, or $GROUPUTILS_DATA)."
        ),
    )
    p.add_argument(
        "directory",
        nargs="?",
        type=Path,
        metavar="OUT_DIR|DIR",
        help="folder to write (or to summarize)",
    )
    p.add_argument(
        "--scale",
        choices=sorted(SCALES),
        default="samples",
        help="dataset size (default: samples, ~11 MB; course: ~0.5 GB)",
    )
    p.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default: {DEFAULT_SEED})"
    )
    p.add_argument(
        "--features",
        type=int,
        default=None,
        metavar="N",
        help="approximate total polygons, overriding the scale's",
    )
    p.add_argument(
        "--summary",
        action="store_true",
        help="print a table of the GeoPackages in DIR instead of generating",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sample)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="grouputils",
        description="Stage, rasterize and map ice-wedge-polygon detections.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_sample(sub)
    _add_run(sub)
    _add_plan(sub)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the whole pipeline (stage, rasterize, pyramid, web tiles, map) in parallel",
        description=(
            "Stage every GeoPackage of INPUT_DIR into tiles, flag duplicates, rasterize, build the "
            "pyramid to z=0, colour web tiles and write OUTPUT_DIR/index.html, mapping each step "
            "over its items on the chosen executor. A rerun redoes only what changed."
        ),
    )
    p.add_argument("input_dir", type=Path, metavar="INPUT_DIR")
    p.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR")
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="workers (default: min(11, usable cores); per node with --executor slurm)",
    )
    p.add_argument(
        "--executor",
        choices=["serial", "local", "slurm"],
        default="local",
        help="where tasks run (default: local)",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="TOML file of settings (and [slurm])",
    )
    p.add_argument("--force", action="store_true", help="delete earlier outputs and start over")
    p.add_argument(
        "--blocks", type=_positive_int, default=1, help=argparse.SUPPRESS
    )  # multi-node simulation
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)


def _add_plan(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help="time a few inputs and project time, node-hours, memory and output of a whole run",
        description=(
            "Run the pipeline serially on a few files of INPUT_DIR spanning its size range (in a "
            "temporary folder; nothing else is written), fit seconds, peak memory and output against "
            "input size, and print serial time, wall time and node-hours on NODES x CORES, memory per "
            "worker, safe workers per node, output size and file count, with the fit's uncertainty."
        ),
    )
    p.add_argument("input_dir", type=Path, metavar="INPUT_DIR")
    p.add_argument(
        "--sample", type=_positive_int, default=4, metavar="N", help="files to time (default 4)"
    )
    p.add_argument(
        "--nodes", type=_positive_int, default=None, help="nodes (default: [slurm] table, else 1)"
    )
    p.add_argument(
        "--cores-per-node", type=_positive_int, default=None, metavar="C", help="cores per node"
    )
    p.add_argument(
        "--node-memory-gb", type=float, default=None, metavar="GB", help="memory per node"
    )
    p.add_argument(
        "--files", type=_positive_int, default=None, metavar="N", help="project N files instead"
    )
    p.add_argument(
        "--mean-size-mb", type=float, default=None, metavar="MB", help="mean input size to project"
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="TOML file of settings (and [slurm])",
    )
    p.set_defaults(func=cmd_plan)


def cmd_plan(args: argparse.Namespace) -> int:
    """``grouputils plan``: time a sample of inputs and print the projected run."""
    from grouputils.run.plan import format_projection
    from grouputils.run.plan_timing import plan_run

    result = plan_run(
        args.input_dir,
        sample=args.sample,
        nodes=args.nodes,
        cores_per_node=args.cores_per_node,
        config_file=args.config,
        n_files=args.files,
        mean_size_mb=args.mean_size_mb,
        node_memory_mb=None if args.node_memory_gb is None else args.node_memory_gb * 1e3,
    )
    print(
        f"{'timed file':40s} {'MB':>8s} {'seconds':>8s} {'peak MB':>8s} {'out MB':>8s} {'out files':>9s}"
    )
    for t in result.timings:
        print(
            f"{t.path.name:40s} {t.input_bytes / 1e6:8.2f} {t.seconds:8.2f} {t.peak_mb:8.0f} "
            f"{t.output_bytes / 1e6:8.2f} {t.output_files:9d}"
        )
    fit = result.fits["seconds"]
    print(f"fit: seconds = {fit.intercept:.2f} + {fit.slope * 1e6:.3f} per MB ({fit.n} files)")
    print()
    print(format_projection(result.projection))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """``grouputils run``: the whole pipeline; exit status 1 if any item failed."""
    from grouputils.core.config import Config, load_config_file
    from grouputils.core.errors import ConfigError, OutputError
    from grouputils.core.layout import Layout
    from grouputils.core.preflight import check_statistic_columns
    from grouputils.run.pipeline import check_inputs, check_slurm_settings, run_pipeline

    settings = load_config_file(args.config) if args.config else {}
    slurm = settings.pop("slurm", None)
    settings.pop("dir_input", None)
    settings.pop("dir_output", None)
    config = Config(dir_input=args.input_dir, dir_output=args.output_dir, **settings)
    if args.executor == "slurm":
        if args.config is None:
            raise ConfigError(
                "--executor slurm needs --config FILE with a [slurm] table (partition = ...)"
            )
        try:
            check_slurm_settings(slurm)
        except ConfigError as e:
            raise ConfigError(f"{args.config}: {e}") from None
    inputs = check_inputs(config)  # before anything is written
    check_statistic_columns(config, inputs, source=args.config)
    try:
        layout = Layout.of(config)  # the log names hosts and absolute paths: private
        layout.private.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(layout.run_log)
    except OSError as e:
        raise OutputError(
            config.dir_output, f"output folder is not writable ({e.strerror or e})"
        ) from e
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    pkg_log = logging.getLogger("grouputils")
    old_level = pkg_log.level
    pkg_log.addHandler(handler)
    pkg_log.setLevel(logging.INFO)
    try:
        report = run_pipeline(
            config,
            executor=args.executor,
            workers=args.workers,
            force=args.force,
            progress=not args.no_progress,
            slurm=slurm,
            blocks=args.blocks,
        )
    finally:
        pkg_log.removeHandler(handler)
        pkg_log.setLevel(old_level)
        handler.close()
    _print_run(report, config)
    return 0 if report.ok else 1


def _print_run(report, config) -> None:  # a grouputils.run.pipeline.RunReport
    s = report.summary
    print()
    print(
        f"{'step':18s} {'items':>6s} {'done':>6s} {'skipped':>8s} {'failed':>7s} {'seconds':>8s} {'peak MB':>8s}"
    )
    for st in report.steps:
        print(
            f"{st.name:18s} {st.total:6d} {st.done:6d} {st.skipped:8d} {len(st.failed):7d} "
            f"{st.seconds:8.2f} {st.peak_rss_mb:8.0f}"
        )
    print()
    print(f"input files            {s['input_files']}")
    print(f"polygons read          {s['polygons_read']}")
    print(f"unique polygons        {s['unique_polygons']}")
    print(f"duplicates flagged     {s['duplicates_flagged']}")
    print(f"repaired / dropped     {s['polygons_repaired']} / {s['polygons_dropped']}")
    print(f"covered area           {s['covered_area_km2']:.3f} km2")
    tiles = ", ".join(f"z{z}: {n}" for z, n in s["geotiff_tiles_per_zoom"].items())
    print(f"tiles per zoom         {tiles}")
    blocks = f" x {s['blocks']} blocks" if s.get("blocks", 1) > 1 else ""
    print(
        f"executor               {s['executor']} ({s['workers']} workers{blocks}), start-up {s['executor_startup_s']:.1f} s"
    )
    print(f"wall time              {s['wall_s']:.1f} s")
    from grouputils.core.layout import Layout

    layout = Layout.of(config)
    print(f"map                    {layout.map_page} (serve the folder: python -m http.server)")
    if s.get("stac_catalog"):
        print(f"STAC catalogue         {config.dir_output / s['stac_catalog']}")
    print(
        f"summary                {layout.run_summary}, log {layout.run_log}"
    )
    for f in report.failures:
        print(f"FAILED {f['step']}: {f['item']}: {f['error']}", file=sys.stderr)


def _print_summary(table) -> None:  # a pandas.DataFrame from samples.summarize
    shown = table.copy()
    shown["mb"] = shown["mb"].map(lambda v: f"{v:.2f}")
    for col in ("west", "south", "east", "north"):
        shown[col] = shown[col].map(lambda v: f"{v:.4f}")
    print(shown.to_string(index=False))


def cmd_sample(args: argparse.Namespace) -> int:
    """``grouputils sample``: generate a dataset, or print the summary of a folder."""
    from grouputils.teaching import samples

    if args.summary:
        _print_summary(samples.summarize(args.directory))
        return 0
    if args.directory is None:
        print("grouputils sample: error: OUT_DIR is required (or use --summary)", file=sys.stderr)
        return 2
    start = time.perf_counter()
    paths = samples.generate_dataset(
        args.directory,
        scale=args.scale,
        seed=args.seed,
        total_features=args.features,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in paths) / 1e6
    print(
        f"wrote {len(paths)} GeoPackages ({size:.1f} MB), {samples.REDETECTIONS_FILE} and "
        f"{samples.GENERATOR_FILE} to {args.directory} in {seconds:.1f} s"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    console = logging.StreamHandler()
    console.setLevel(level)  # also filters records of libraries (Parsl logs at DEBUG)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(console)
    root.setLevel(min(root.level or logging.WARNING, level))
    try:
        return int(args.func(args))
    except GroupUtilsError as e:
        print(f"grouputils {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, sqlite3.OperationalError) as e:
        full = isinstance(e, OSError) and e.errno == errno.ENOSPC
        full = full or (isinstance(e, sqlite3.OperationalError) and "disk is full" in str(e))
        if not full:
            raise
        where = getattr(e, "filename", None) or "the outputs"
        print(
            f"grouputils {args.command}: error: no space left on device writing {where}: "
            "free some space (or choose another output folder) and run again; finished outputs are kept",
            file=sys.stderr,
        )
        return 1
    finally:
        root.removeHandler(console)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
