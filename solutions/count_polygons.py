"""Count the unique ice-wedge polygons in staged tiles, per input file and in total.

Usage: python count_polygons.py [OUTPUT_FOLDER]      (default: group-project)
"""
import argparse
from collections import Counter
from pathlib import Path

import pyogrio

COLUMNS = ["staging_filename", "staging_centroid_within_tile", "staging_duplicated"]


def count_unique(folder: Path) -> Counter:
    """Unique polygons per input file in the staged tiles under ``folder/staged``.

    A polygon that crosses tile edges is written into every tile it touches, and a
    polygon detected in two overlapping scenes is in both files, the later copy
    flagged as a duplicate. So each polygon is counted once: in the tile that
    holds its centroid, and only if it is not a flagged duplicate.
    """
    tiles = sorted((folder / "staged").glob("*/*/*/*.gpkg"))  # staged/<TMS>/<z>/<x>/<y>.gpkg
    if not tiles:
        raise SystemExit(f"no staged tiles under {folder / 'staged'}: stage the files and run stager.finalize()")
    counts = Counter()
    for path in tiles:
        rows = pyogrio.read_dataframe(path, columns=COLUMNS, read_geometry=False)
        unique = rows["staging_centroid_within_tile"].astype(bool) & ~rows["staging_duplicated"].astype(bool)
        counts.update(rows.loc[unique, "staging_filename"].value_counts().to_dict())
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="group-project", type=Path,
                        help="output folder of the stager (default: group-project)")
    counts = count_unique(parser.parse_args().folder)
    width = max(len(name) for name in [*counts, "total"])
    for name in sorted(counts):
        print(f"{name:<{width}}  {counts[name]:>9,}")
    print(f"{'total':<{width}}  {sum(counts.values()):>9,}")


if __name__ == "__main__":
    main()
