"""The ``grouputils`` command line.

One sub-command per task; each is a function ``cmd_<name>(args) -> int`` that
returns the exit status. This is the only module of grouputils that prints.

Examples
--------
::

    grouputils sample data-samples --scale samples --seed 20190903
    grouputils sample --summary                  # the shipped samples (or $GROUPUTILS_DATA)
    grouputils sample /scratch/iwp-course --scale course
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from grouputils.errors import GroupUtilsError

__all__ = ["build_parser", "cmd_sample", "main"]


def _add_sample(sub: argparse._SubParsersAction) -> None:
    from grouputils.samples import DEFAULT_SEED, SCALES

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
    return parser


def _print_summary(table) -> None:  # a pandas.DataFrame from samples.summarize
    shown = table.copy()
    shown["mb"] = shown["mb"].map(lambda v: f"{v:.2f}")
    for col in ("west", "south", "east", "north"):
        shown[col] = shown[col].map(lambda v: f"{v:.4f}")
    print(shown.to_string(index=False))


def cmd_sample(args: argparse.Namespace) -> int:
    """``grouputils sample``: generate a dataset, or print the summary of a folder."""
    from grouputils import samples

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
    logging.basicConfig(
        level={0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG),
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except GroupUtilsError as e:
        print(f"grouputils {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
