"""Trusted checks of the `rasterization` assignment (instructor only: never released).

Run by grouputils.teaching.grading.TrustedChecks in a fresh ``python -I``
interpreter after the learner's notebook has run. Staged tiles, GeoTIFFs and
PNGs are read here from the learner's ``group-project/``; the busiest tile is
rasterized again here, serially, in a scratch folder, and compared pixel for
pixel with the learner's GeoTIFF; the facts the hidden tests recorded about the
learner's futures, configs and shutdown are judged here (``_parsl.py``).
"""

import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from _parsl import awaited, includes_wait, local, make_config_ok, process_pool, shut_down

from grouputils import initialize_rasterizer, usable_cores
from grouputils.teaching.samples import sample_dir


def _rasterizer(ctx):
    return initialize_rasterizer(sample_dir(), ctx.folder / "group-project")


def _staged(ctx) -> list[Path]:
    return _rasterizer(ctx).tiles.get_filenames_from_dir("staged")


def _tile(t) -> tuple:
    """A recorded tile ``[x, y, z]`` (or a Tile) as a tuple."""
    assert isinstance(t, (list, tuple)) and len(t) == 3, f"not a tile: {t!r}"
    return tuple(int(v) for v in t)


def _number(ctx, name):
    value = ctx.recorded(name)
    assert isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), \
        f"{name} should be a number"
    return float(value)


def time_one_tile(ctx) -> None:
    sizes = {p: p.stat().st_size for p in _staged(ctx)}
    assert sizes, "no staged tiles in group-project/"
    busiest = local(ctx, ctx.recorded("busiest_tile_file"))
    assert sizes.get(busiest) == max(sizes.values()), "busiest_tile_file is not the largest staged tile"
    assert _number(ctx, "seconds_one_tile") > 0
    assert math.isclose(_number(ctx, "seconds_one_tile"), _number(ctx, "prof_wall_s")), \
        "seconds_one_tile should be prof.wall_s"


def estimate_raster(ctx) -> None:
    n = len(_staged(ctx))
    assert math.isclose(_number(ctx, "estimate_raster_serial_s"), _number(ctx, "seconds_one_tile") * n,
                        rel_tol=1e-6), "estimate_raster_serial_s should be your time for one tile x the number of staged tiles"


def make_batches(ctx) -> None:
    staged = _staged(ctx)
    n_workers, size = ctx.recorded("n_workers"), ctx.recorded("batch_size")
    batches = [[local(ctx, p) for p in b] for b in ctx.recorded("batches")]
    assert isinstance(n_workers, int) and 1 <= n_workers <= usable_cores(), "use at most usable_cores() workers"
    assert isinstance(size, int) and size >= 1, "batch_size should be a whole number of tiles"
    assert [p for b in batches for p in b] == staged, "the batches should hold every staged tile once, in order"
    assert all(1 <= len(b) <= size for b in batches)
    assert len(batches) == math.ceil(len(staged) / size)
    assert len(batches) >= n_workers, "with fewer batches than workers some workers get nothing to do"


def raster_app(ctx) -> None:
    make_config_ok(ctx.recorded("config"))
    if ctx.recorded("join"):
        return  # a join app needs a loaded Parsl: exercise 5 checks its results
    two = sorted(_staged(ctx), key=lambda p: p.stat().st_size)[:2]
    tiles = _rasterizer(ctx).tiles
    assert [local(ctx, p) for p in ctx.recorded("two")] == two
    out = ctx.recorded("out")
    assert isinstance(out, list) and [_tile(t) for t in out] == [tuple(tiles.tile_from_path(p)) for p in two], \
        "rasterize_batch should return the batch's tiles"


def _serial_pixels(ctx, staged_tile: Path):
    """The busiest tile rasterized again here, alone, in a scratch folder."""
    with tempfile.TemporaryDirectory(prefix="reference-raster-") as tmp:
        scratch = initialize_rasterizer(sample_dir(), Path(tmp) / "group-project")
        rel = staged_tile.relative_to(ctx.folder / "group-project" / "staged")
        copy = scratch.config.dir_staged / rel
        copy.parent.mkdir(parents=True)
        shutil.copyfile(staged_tile, copy)
        tile = scratch.rasterize_vector(copy)
        with rasterio.open(scratch.tiles.path("geotiff", tile)) as src:
            return tile, src.read()


def parallel_raster(ctx) -> None:
    facts = ctx.recorded("futures")
    awaited(facts, "raster_futures")
    rasterizer = _rasterizer(ctx)
    staged = _staged(ctx)
    batches = [[local(ctx, p) for p in b] for b in ctx.recorded("batches")]
    assert len(facts) == len(batches), "one future per batch in raster_futures"
    flat = [_tile(t) for f in facts for t in (f["result"] or [])]
    assert flat == [tuple(rasterizer.tiles.tile_from_path(p)) for b in batches for p in b], \
        "one tile per path of each batch"
    rasterized = [_tile(t) for t in ctx.recorded("rasterized_tiles")]
    assert sorted(rasterized) == sorted(flat), "rasterized_tiles should be the tiles your tasks returned"
    includes_wait(ctx.recorded("raster_parallel_s"), facts, "raster_parallel_s")
    assert set(rasterized) == {tuple(rasterizer.tiles.tile_from_path(p)) for p in staged}, \
        "rasterized_tiles should be exactly the staged tiles"
    geotiffs = {tuple(rasterizer.tiles.tile_from_path(p))
                for p in rasterizer.tiles.get_filenames_from_dir("geotiff", z=rasterizer.config.z)}
    assert set(rasterized) <= geotiffs, "a rasterized tile has no GeoTIFF"
    assert rasterizer.config.filename_rasterization_summary.is_file(), "call rasterizer.write_summary()"
    # the parallel output equals a serial run of the busiest tile, made here
    busiest = max(staged, key=lambda p: p.stat().st_size)
    tile, serial = _serial_pixels(ctx, busiest)
    with rasterio.open(rasterizer.tiles.path("geotiff", tile)) as src:
        parallel = src.read()
    assert np.array_equal(parallel, serial, equal_nan=True), "the parallel GeoTIFF differs from a serial one"


def process_pool_check(ctx) -> None:
    process_pool(ctx.recorded("futures"))


def shutdown(ctx) -> None:
    shut_down(ctx.recorded("shutdown"))


def count_geotiffs(ctx) -> None:
    rasterizer = _rasterizer(ctx)
    z, cfg = rasterizer.config.z, rasterizer.config
    assert ctx.recorded("n_geotiffs") == len(list((cfg.dir_geotiff / cfg.tms / str(z)).glob("*/*.tif"))), \
        "n_geotiffs is not the number of GeoTIFFs at the staging zoom level"
    assert ctx.recorded("n_staged") == len(list((cfg.dir_staged / cfg.tms / str(z)).glob("*/*.gpkg"))), \
        "n_staged is not the number of staged tiles"


def pyramid(ctx) -> None:
    parents = [_tile(t) for t in ctx.recorded("parent_tiles")]
    assert parents and min(t[2] for t in parents) == 0, "make parents all the way up to zoom level 0"
    rasterizer = _rasterizer(ctx)
    tiles, z = rasterizer.tiles, rasterizer.config.z
    for level in range(z - 1, -1, -1):
        expected = {tiles.get_parent_tile(t) for t in tiles.tiles_in("geotiff", z=level + 1)}
        assert set(tiles.tiles_in("geotiff", z=level)) == expected, f"zoom {level}: parents missing or extra"
    pngs = [local(ctx, p) for p in ctx.recorded("web_tile_paths")]
    n_geotiffs = len(tiles.get_filenames_from_dir("geotiff"))
    assert len(set(pngs)) == len(pngs) == n_geotiffs * len(rasterizer.config.statistics), \
        "one PNG per GeoTIFF and statistic"
    assert all(p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs), "the web tiles are not PNGs"


CHECKS = {
    "test-time-one-tile": time_one_tile,
    "test-estimate-raster": estimate_raster,
    "test-make-batches": make_batches,
    "test-raster-app": raster_app,
    "test-parallel-raster": parallel_raster,
    "test-process-pool": process_pool_check,
    "test-shutdown": shutdown,
    "test-count-geotiffs": count_geotiffs,
    "test-pyramid": pyramid,
}
