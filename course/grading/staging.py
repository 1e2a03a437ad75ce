"""Trusted checks of the `staging` assignment (instructor only: never released).

Run by grouputils.teaching.grading.TrustedChecks in a fresh ``python -I``
interpreter after the learner's notebook has run. The sizes of the input
files are read here from the course data, the staged outputs and manifests
from the learner's ``group-project/``, a serial staging of one file is made
here, and the facts the hidden tests recorded about the learner's futures,
configs and shutdowns are judged here (``_parsl.py``). Nothing is taken from
the learner's kernel but recorded values.
"""

import math

from _parsl import awaited, includes_wait, make_config_ok, process_pool, shut_down
from _reference import input_sizes, learner_stager, manifest_tiles, serial_staging

from grouputils import usable_cores

MB_UNITS = (1e6, 2**20)  # MB or MiB, as long as it is used consistently
FULL_BYTES = (400e6 * 26_530, 400 * 2**20 * 26_530)


def _number(ctx, name):
    value = ctx.recorded(name)
    assert isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), \
        f"{name} should be a number"
    return float(value)


def _unit(total_mb):
    total = sum(input_sizes().values())
    return [u for u in MB_UNITS if math.isclose(total_mb, total / u, rel_tol=1e-6)]


def largest_file(ctx) -> None:
    sizes = input_sizes()
    name = ctx.recorded("largest_file")
    assert name in sizes, "largest_file should be one of the paths in files_to_stage"
    assert sizes[name] == max(sizes.values()), "largest_file is not the largest file by size"


def time_largest(ctx) -> None:
    seconds = _number(ctx, "seconds_largest")
    assert seconds > 0
    assert ctx.recorded("staged") == ctx.recorded("largest_file"), "stage largest_file"
    manifest_s = ctx.recorded("manifest_seconds")
    assert manifest_s is not None, "largest_file has not been staged"
    # the stager's own clock runs inside the profiled block
    assert manifest_s <= seconds + 1e-3, "seconds_largest is shorter than the staging itself"
    assert math.isclose(seconds, _number(ctx, "prof_wall_s")), "seconds_largest should be prof.wall_s"


def estimate_serial(ctx) -> None:
    total_mb, per_mb, estimate = (_number(ctx, n) for n in ("total_mb", "seconds_per_mb", "estimate_serial_s"))
    unit = _unit(total_mb)
    assert unit, "total_mb is not the total size of the input files"
    assert math.isclose(estimate, per_mb * total_mb, rel_tol=1e-6), \
        "estimate_serial_s should be your seconds per MB times the total MB"
    # every valid method: the rate (s per byte) of any file this notebook staged and timed, or of the
    # profiled block, from one file or a mean of several, within a factor 2
    sizes = input_sizes()
    rates = [s / sizes[name] for name, s in ctx.recorded("timed") if name in sizes and s]
    largest = ctx.recorded("largest_file")
    if largest in sizes:
        rates.append(_number(ctx, "seconds_largest") / sizes[largest])
    assert rates, "no file was timed before the estimate"
    per_byte = per_mb / unit[0]
    assert 0.5 * min(rates) <= per_byte <= 2 * max(rates), \
        "seconds_per_mb does not come from the files you timed in this notebook"


def estimate_full(ctx) -> None:
    # graded on your own seconds_per_mb (checked in exercise 3), so one wrong rate costs its points once
    full_s, days, per_mb = (_number(ctx, n) for n in ("estimate_full_s", "estimate_full_days", "seconds_per_mb"))
    assert math.isclose(days * 86_400, full_s, rel_tol=1e-6), "a day has 86,400 s"
    units = _unit(_number(ctx, "total_mb")) or [1e6]
    assert any(math.isclose(full_s, per_mb / u * b, rel_tol=1e-6) for u in units for b in FULL_BYTES), \
        "estimate_full_s should be your seconds per MB x 400 MB x 26,530 files"


def make_config(ctx) -> None:
    n = ctx.recorded("n_workers")
    assert isinstance(n, int) and 1 <= n <= usable_cores(), "n_workers: at most usable_cores()"
    assert n == min(11, usable_cores()), "n_workers should be min(11, usable_cores())"
    make_config_ok(ctx.recorded("config"))


def stage_app(ctx) -> None:
    sizes = input_sizes()
    smallest = min(sizes, key=sizes.get)
    assert ctx.recorded("given") == smallest
    returned = ctx.recorded("returned")
    assert isinstance(returned, str) and returned.endswith("/" + smallest), "stage_file should return the path it staged"
    tiles = ctx.recorded("tiles")
    assert tiles, "stage_file should stage the file"
    assert tiles == serial_staging(smallest), "stage_file does not stage the file as stager.stage does"


def _names(results):
    return sorted(str(r).rsplit("/", 1)[-1] for r in results)


def threads_vs_processes(ctx) -> None:
    threads, processes = ctx.recorded("threads"), ctx.recorded("processes")
    batch = sorted(ctx.recorded("small_batch"))
    awaited(threads, "thread_futures")
    awaited(processes, "process_futures")
    assert all(e["type"] == "ThreadPoolExecutor" for f in threads for e in f["executors"]), "thread_futures: threads"
    assert all(e["type"] == "HighThroughputExecutor" for f in processes for e in f["executors"]), \
        "process_futures: HighThroughputExecutor"
    assert _names(f["result"] for f in threads) == batch == _names(f["result"] for f in processes), \
        "each run should stage small_batch"
    includes_wait(ctx.recorded("threads_s"), threads, "threads_s")
    includes_wait(ctx.recorded("processes_s"), processes, "processes_s")
    try:
        shut_down(ctx.recorded("shutdown"))
    except AssertionError:
        raise AssertionError("shut Parsl down after each run") from None


def parallel_staging(ctx) -> None:
    names = sorted(input_sizes())
    first, warm = ctx.recorded("stage"), ctx.recorded("warm")
    awaited(first, "stage_futures (the first run)")
    awaited(warm, "warm_futures (the second run)")
    assert _names(f["result"] for f in first) == names, "the first run should stage every file"
    assert _names(f["result"] for f in warm) == names, "the second run should stage every file"
    assert _names(ctx.recorded("staged_paths")) == names, "staged_paths should hold the path of every file"
    includes_wait(ctx.recorded("parallel_s"), first, "parallel_s")
    includes_wait(ctx.recorded("warm_s"), warm, "warm_s")
    assert _number(ctx, "prof_wall_s") >= _number(ctx, "parallel_s") + _number(ctx, "warm_s") - 0.05, \
        "run both inside parallel_prof"
    assert _number(ctx, "finalize_s") > 0
    stager = learner_stager(ctx.folder)
    assert stager.tiles_to_finalize() == [], \
        "staged tiles are missing or stale: run stager.finalize() after the last staging"
    assert sorted(m["filename"] for m in stager.manifests()) == names
    # the parallel output equals a serial run of the smallest file, made here
    smallest = min(input_sizes(), key=input_sizes().get)
    got = manifest_tiles(stager.read_manifest(stager.config.dir_input / smallest))
    assert got == serial_staging(smallest), "the parallel staging of a file differs from its serial staging"


def process_pool_check(ctx) -> None:
    process_pool(ctx.recorded("stage") + ctx.recorded("warm"))


def shutdown(ctx) -> None:
    shut_down(ctx.recorded("shutdown"))


def node_hours(ctx) -> None:
    nodes, cores = ctx.recorded("nodes"), ctx.recorded("cores_per_node")
    assert isinstance(nodes, int) and isinstance(cores, int) and nodes >= 1 and cores >= 1
    per_file, walltime, hours, per_mb = (
        _number(ctx, n) for n in ("seconds_per_file", "walltime_h", "node_hours", "seconds_per_mb"))
    # graded on your own seconds_per_mb (MB or MiB, as in exercise 3), whatever its value
    assert any(math.isclose(per_file, per_mb * f, rel_tol=1e-6) for f in (400, 400e6 / 2**20)), \
        "seconds_per_file should be your seconds per MB x 400 MB"
    assert math.isclose(walltime, per_file * 26_530 / (nodes * cores) / 3600, rel_tol=1e-6), \
        "walltime_h: the files' total time divided over nodes x cores_per_node workers, in hours"
    assert math.isclose(hours, walltime * nodes, rel_tol=1e-6), "node_hours = walltime_h x nodes"


CHECKS = {
    "test-largest-file": largest_file,
    "test-time-largest": time_largest,
    "test-estimate-serial": estimate_serial,
    "test-estimate-full": estimate_full,
    "test-make-config": make_config,
    "test-stage-app": stage_app,
    "test-threads-vs-processes": threads_vs_processes,
    "test-parallel-staging": parallel_staging,
    "test-process-pool": process_pool_check,
    "test-shutdown": shutdown,
    "test-node-hours": node_hours,
}
