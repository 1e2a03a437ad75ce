"""Trusted checks of the `lazy-arrays` assignment (instructor only: never released).

Run by grouputils.teaching.grading.TrustedChecks in a fresh ``python -I`` interpreter
after the learner's notebook has run. Tile sums and the covered area are read
here from the learner's GeoTIFFs (with pixel areas from the CRS), the total
count is also compared with the grader's own serial staging of the data, and
the chunk-experiment answers are recomputed from the table the learner
measured (recorded as JSON by the hidden test).
"""

import math

import numpy as np
import pandas as pd
import rasterio
from _reference import reference_counts

from grouputils import Config
from grouputils.core.rasterize import pixel_areas_m2
from grouputils.teaching.samples import sample_dir
from grouputils.core.tiles import Tiles, tile_from_path

COUNT, COVER = "number_IWP_per_pixel", "prop_pixel_covered_by_IWP"


def _geotiffs(ctx):
    """(per-tile polygon sums by item id, total polygons, covered km²) of the learner's zoom-13 GeoTIFFs."""
    config = Config(dir_input=sample_dir(), dir_output=ctx.folder / "group-project")
    tiles = Tiles(config)
    sums, total, area, row_areas = {}, 0.0, 0.0, {}
    for p in tiles.get_filenames_from_dir("geotiff", z=config.z):
        t = tile_from_path(p)
        if t.y not in row_areas:  # WorldCRS84Quad: one row of tiles has one set of pixel areas
            row_areas[t.y] = pixel_areas_m2(t, tiles)
        with rasterio.open(p) as src:
            v = src.read().astype("f8")
            names = list(src.descriptions)
        n = float(np.nansum(v[names.index(COUNT)]))
        sums[f"{config.tms}-{config.z}-{t.x}-{t.y}"] = int(round(n))
        total += n
        area += float(np.nansum(v[names.index(COVER)] * row_areas[t.y]))
    assert sums, "the notebook's pipeline run wrote no zoom-13 GeoTIFFs"
    expected = sum(reference_counts().values())
    assert int(round(total)) == expected, "the GeoTIFFs in group-project/ are not the pipeline's output for the data"
    return sums, int(round(total)), area / 1e6


def busiest_item(ctx) -> None:
    item_id, count = ctx.recorded("busiest_item_id"), ctx.recorded("busiest_count")
    sums, _, _ = _geotiffs(ctx)
    assert count == max(sums.values()), "busiest_count is not the largest number of polygons in a zoom-13 tile"
    assert sums.get(item_id) == count, "busiest_item_id is not a tile with that many polygons"


def totals(ctx) -> None:
    assert ctx.recorded("lazy") is True, \
        "lazy_count and lazy_area_km2 should be lazy (Dask-backed), made from the mosaic"
    n, area = ctx.recorded("n_polygons"), ctx.recorded("area_km2")
    _, total, covered_km2 = _geotiffs(ctx)
    assert isinstance(n, int) and n == total, "n_polygons is not the number of polygons in the GeoTIFFs"
    assert isinstance(area, float) and math.isclose(area, covered_km2, rel_tol=1e-6), \
        "area_km2 is not the covered ground area of the GeoTIFFs (use each pixel's own area)"


def read_experiment(ctx) -> None:
    table = pd.DataFrame(ctx.recorded("table"))
    workers = ctx.recorded("workers")
    assert len(table) == 4 * len(workers) and set(table["chunk_label"]) == {"128", "512", "2048", "one chunk"}, \
        "the chunk experiment's table is not the one the notebook asked for"
    assert (table["unique_polygons"] == sum(reference_counts().values())).all(), "the chunks never change the answer"
    w = table[table["workers"] == max(workers)].set_index("chunk_label")
    assert ctx.recorded("best_chunk") == w["seconds"].idxmin(), "best_chunk is not the fastest chunk size in your table"
    for name, expected in (
        ("slowdown_small", w.loc["128", "seconds"] / w["seconds"].min()),
        ("slowdown_one_chunk", w.loc["one chunk", "seconds"] / w["seconds"].min()),
        ("overhead_per_task_ms", 1000 * w.loc["128", "overhead_s"] / w.loc["128", "n_tasks"]),
    ):
        value = ctx.recorded(name)
        assert isinstance(value, (int, float)) and math.isclose(value, float(expected), rel_tol=1e-9), \
            f"{name} does not follow from your table"


CHECKS = {"test-busiest-item": busiest_item, "test-totals": totals, "test-read-experiment": read_experiment}
