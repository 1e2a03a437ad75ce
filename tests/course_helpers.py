"""Submissions for the course tests: other correct answers, and the known wrong ones.

Each entry maps an answer cell's ``grade_id`` to the whole text a learner
would leave in it. Answer cells not listed get the source notebook's solution.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from grouputils.teaching.course import strip_markers


@dataclass(frozen=True)
class Submission:
    """A made-up learner's answers to one assignment.

    Attributes
    ----------
    student : str
        Student id in the course.
    assignment : str
        Assignment id.
    answers : dict
        ``grade_id`` -> cell text, for the answer cells that differ from the solution.
    fails : tuple of str
        Test cells (``grade_id``) that must score 0; every other test cell must
        score full marks.
    capped : bool
        Autograde with the instructor's cap ``GROUPUTILS_MAX_WORKERS=1``; the
        student id must then start with ``capped`` (all capped submissions
        are graded in one ``nbgrader autograde "*" --student "capped*"``).
    """

    student: str
    assignment: str
    answers: dict[str, str] = field(default_factory=dict)
    fails: tuple[str, ...] = ()
    capped: bool = False


def solution_answers(source: nbformat.NotebookNode) -> dict[str, str]:
    """``grade_id`` -> solution text of every autograded answer cell of a source notebook."""
    out = {}
    for cell in source.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution") and not meta.get("grade"):
            out[meta["grade_id"]] = strip_markers(cell.source).rstrip("\n")
    return out


def fill(release: nbformat.NotebookNode, source: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    """A submission: the released notebook with its answer cells filled in.

    Code answer cells get ``answers[grade_id]`` or the solution; written
    (markdown) answers get a one-line answer, as a learner would write.
    """
    solutions = solution_answers(source)
    unknown = set(answers) - set(solutions)
    if unknown:
        raise KeyError(f"no answer cells {sorted(unknown)}")
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("solution"):
            continue
        if cell.cell_type == "code":
            cell.source = answers.get(meta["grade_id"], solutions[meta["grade_id"]])
        else:
            cell.source = "My answer, for the instructor to read."
    return nb


# --------------------------------------------------------------------------- staging
STAGING_OTHER = {
    "largest-file": """
import os
largest_file = sorted(files_to_stage, key=os.path.getsize)[-1]
print(largest_file.name)
""",
    # the decorator form of profile_resources
    "time-largest": """
@profile_resources(interval=0.05)
def stage_one(path):
    return stager.stage(path)

stage_result, prof = stage_one(largest_file)
seconds_largest = prof.wall_s
""",
    # MiB instead of MB, and seconds per MiB from the mean of the three largest files
    "estimate-serial": """
MiB = 2**20
total_mb = sum(f.stat().st_size for f in files_to_stage) / MiB
rates = []
for f in sorted(files_to_stage, key=lambda f: f.stat().st_size)[-3:]:
    t0 = time.perf_counter()
    stager.stage(f)
    rates.append((time.perf_counter() - t0) / (f.stat().st_size / MiB))
seconds_per_mb = sum(rates) / len(rates)
estimate_serial_s = total_mb * seconds_per_mb
""",
    "estimate-full": """
estimate_full_s = 26530 * 400 * seconds_per_mb
estimate_full_days = estimate_full_s / (24 * 60 * 60)
""",
    # keyword style, no worker_init (the kernel's PATH has the environment), another run_dir
    "make-config": """
n_workers = min(usable_cores(), 11)

def make_config(workers: int) -> Config:
    provider = LocalProvider(init_blocks=1, max_blocks=1, worker_init="")
    htex = HighThroughputExecutor(label="local", max_workers_per_node=workers, provider=provider)
    return Config(executors=[htex], run_dir=str(Path("group-project") / "runinfo"), strategy_period=0.5)
""",
    # pathlib inside the app (imported in its body), the path taken from the stager's result
    "stage-app": """
@python_app
def stage_file(path, stager):
    from pathlib import Path
    return Path(stager.stage(Path(path)).path)
""",
    # loops, as_completed and concurrent.futures.wait instead of .result() comprehensions
    "threads-vs-processes": """
@python_app
def warm():
    import time
    import grouputils.core.staging
    time.sleep(0.5)
    return 1

with parsl.load(Config(executors=[ThreadPoolExecutor(max_threads=n_workers, label="threads")],
                       run_dir="group-project/runinfo")):
    start = time.perf_counter()
    thread_futures = []
    for p in small_batch:
        thread_futures.append(stage_file(p, stager))
    for f in concurrent.futures.as_completed(thread_futures):
        f.result()
    threads_s = time.perf_counter() - start
with parsl.load(make_config(n_workers)):
    for f in [warm() for _ in range(n_workers)]:
        f.result()
    start = time.perf_counter()
    process_futures = [stage_file(p, stager) for p in small_batch]
    concurrent.futures.wait(process_futures)
    processes_s = time.perf_counter() - start
""",
    # parsl.load + dfk().cleanup() in finally, a loop, as_completed for both runs
    "parallel-staging": """
stager.clear()
with profile_resources(interval=0.2) as parallel_prof:
    parsl.load(make_config(n_workers))
    try:
        start = time.perf_counter()
        stage_futures = []
        for path in files_to_stage:
            stage_futures.append(stage_file(path, stager))
        staged_paths = [f.result() for f in concurrent.futures.as_completed(stage_futures)]
        parallel_s = time.perf_counter() - start
        start = time.perf_counter()
        warm_futures = [stage_file(path, stager) for path in files_to_stage]
        for done in concurrent.futures.as_completed(warm_futures):
            done.result()
        warm_s = time.perf_counter() - start
    finally:
        parsl.dfk().cleanup()
start = time.perf_counter()
finalize_table = stager.finalize(progress=False)
finalize_s = time.perf_counter() - start
print(n_workers, parallel_s, warm_s)
""",
}

STAGING_SOLUTION_RUN = """
stager.clear()
with profile_resources() as parallel_prof:
    with parsl.load({config}):
        t0 = time.perf_counter()
        stage_futures = [stage_file(path, stager) for path in files_to_stage]
        {wait_1}
        t0 = time.perf_counter()
        warm_futures = [stage_file(path, stager) for path in files_to_stage]
        for future in concurrent.futures.as_completed(warm_futures):
            future.result()
        warm_s = time.perf_counter() - t0
t0 = time.perf_counter()
finalize_table = stager.finalize()
finalize_s = time.perf_counter() - t0
"""
_WAIT = "staged_paths = [f.result() for f in stage_futures]\n        parallel_s = time.perf_counter() - t0"

# threads where the lesson asks for processes: loses the process-pool points, nothing else
STAGING_THREADS = {"parallel-staging": STAGING_SOLUTION_RUN.format(
    config='Config(executors=[ThreadPoolExecutor(max_threads=n_workers)], run_dir="group-project/parsl-runinfo")',
    wait_1=_WAIT)}

# the clock stopped when the tasks were submitted, before waiting for them
STAGING_NO_WAIT = {"parallel-staging": STAGING_SOLUTION_RUN.format(
    config="make_config(n_workers)",
    wait_1="parallel_s = time.perf_counter() - t0\n        staged_paths = [f.result() for f in stage_futures]")}

STAGING_WRONG = {
    # the earlier course's list position instead of the largest file
    "largest-file": "largest_file = files_to_stage[1]",
    # an estimate hard-coded from the reference course's figures (64 s per file, 11 files, in minutes)
    "estimate-serial": """
total_mb = sum(p.stat().st_size for p in files_to_stage) / 1e6
seconds_per_mb = seconds_largest / (largest_file.stat().st_size / 1e6)
estimate_serial_s = 64 * 11 / 60
""",
    # the reduce step run before the last map (stale staged tiles), and Parsl never shut down
    "parallel-staging": """
stager.clear()
with profile_resources() as parallel_prof:
    parsl.load(make_config(n_workers))
    t0 = time.perf_counter()
    stage_futures = [stage_file(p, stager) for p in files_to_stage]
    staged_paths = [f.result() for f in stage_futures]
    parallel_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    finalize_table = stager.finalize()
    finalize_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm_futures = [stage_file(p, stager) for p in files_to_stage]
    [f.result() for f in warm_futures]
    warm_s = time.perf_counter() - t0
""",
    # a unit error: the walltime in minutes, not hours (node_hours still = walltime_h x nodes)
    "node-hours": """
seconds_per_file = seconds_per_mb * 400
nodes, cores_per_node = 4, 64
walltime_h = seconds_per_file * 26_530 / (nodes * cores_per_node) / 60
node_hours = walltime_h * nodes
""",
}

# the three cheats of issue 15 on the real staging notebook; each targets one cell
STAGING_CHEATS = {
    # replaces a grouputils helper (module function) that the old in-kernel hidden test asked for the sizes
    "largest-file": """
import grouputils.teaching.samples
largest_file = files_to_stage[1]
grouputils.teaching.samples.sample_files = lambda *args, **kwargs: [largest_file]
""",
    # overrides math.isclose, so the old in-kernel comparison of the estimate always passed
    "estimate-serial": """
math.isclose = lambda *args, **kwargs: True
total_mb = sum(p.stat().st_size for p in files_to_stage) / 1e6
seconds_per_mb = seconds_largest / (largest_file.stat().st_size / 1e6)
estimate_serial_s = 1.0
""",
    # reads the instructor's source notebook at grading time and runs its solution
    "node-hours": """
import json, os
print("SEEN", json.dumps({"source": os.path.exists("../../../source"),
                          "gradebook": os.path.exists("../../../gradebook.db")}))
try:
    cells = json.load(open("../../../source/staging/staging.ipynb"))["cells"]
    exec("".join([c for c in cells if c.get("id") == "node-hours"][0]["source"]))
except OSError:
    seconds_per_file, nodes, cores_per_node, walltime_h, node_hours = 0.0, 1, 1, 0.0, 0.0
""",
}

# --------------------------------------------------------------------------- rasterization
RASTER_OTHER = {
    "time-one-tile": """
import os
busiest_tile_file = sorted(staged_files, key=os.path.getsize)[-1]
with profile_resources(interval=0.05) as prof:
    one_tile = rasterizer.rasterize_vector(busiest_tile_file)
seconds_one_tile = prof.wall_s
""",
    "estimate-raster": "estimate_raster_serial_s = len(staged_files) * seconds_one_tile",
    # the earlier course's batches of 10: another valid batch size
    "make-batches": """
n_workers = min(11, usable_cores())
batch_size = 10
batches = make_batch(staged_files, batch_size)
""",
    # a loop over the batch on the worker, no worker_init
    "raster-app": """
def make_config(workers):
    return Config(executors=[HighThroughputExecutor(max_workers_per_node=workers,
                                                    provider=LocalProvider(init_blocks=1, max_blocks=1, worker_init=""))],
                  run_dir="group-project/runinfo", strategy_period=0.5)


@python_app
def rasterize_batch(batch, rasterizer):
    tiles = []
    for path in batch:
        tiles.append(rasterizer.rasterize_vector(path))
    return tiles
""",
    # as_completed, then the batches put back in order
    "parallel-raster": """
with parsl.load(make_config(n_workers)):
    t0 = time.perf_counter()
    raster_futures = [rasterize_batch(b, rasterizer) for b in batches]
    results = {}
    for fut in concurrent.futures.as_completed(raster_futures):
        results[raster_futures.index(fut)] = fut.result()
    raster_parallel_s = time.perf_counter() - t0
rasterized_tiles = [t for i in sorted(results) for t in results[i]]
rasterizer.write_summary()
""",
    "count-geotiffs": """
z = rasterizer.config.z
n_geotiffs = len(list((rasterizer.config.dir_geotiff / rasterizer.config.tms / str(z)).glob('*/*.tif')))
n_staged = len(staged_files)
""",
    # one level at a time instead of recursive=True
    "pyramid": """
parent_tiles = []
level = rasterized_tiles
while level[0].z > 0:
    level = rasterizer.parent_geotiffs_from_children(level)
    parent_tiles += level
web_tile_paths = rasterizer.webtiles_from_geotiffs(rasterizer.tiles.get_filenames_from_dir('geotiff'), progress=False)
""",
}

# a join app: one python_app per tile, gathered into the batch's list on a worker
RASTER_JOIN = {
    "raster-app": """
from parsl import join_app


def make_config(workers):
    htex = HighThroughputExecutor(label="htex_local", max_workers_per_node=workers,
                                  provider=LocalProvider(init_blocks=1, max_blocks=1, worker_init=""))
    return Config(executors=[htex], run_dir="group-project/parsl-runinfo", strategy_period=0.5)


@python_app
def rasterize_one(path, rasterizer):
    return rasterizer.rasterize_vector(path)


@python_app
def collect(*tiles):
    return list(tiles)


@join_app
def rasterize_batch(batch, rasterizer):
    return collect(*[rasterize_one(p, rasterizer) for p in batch])
""",
}

RASTER_WRONG = {
    # the reference course's figures: ~0.9 s per tile, 454 tiles
    "estimate-raster": "estimate_raster_serial_s = 0.9 * 454",
    "count-geotiffs": "n_geotiffs = 454\nn_staged = 454",
    # only one level of parents
    "pyramid": """
parent_tiles = rasterizer.parent_geotiffs_from_children(rasterized_tiles)
web_tile_paths = rasterizer.webtiles_from_geotiffs()
""",
    # threads, and parsl.clear() instead of a shutdown
    "parallel-raster": """
from parsl.executors import ThreadPoolExecutor

parsl.load(Config(executors=[ThreadPoolExecutor(max_threads=n_workers)], run_dir="group-project/parsl-runinfo"))
t0 = time.perf_counter()
raster_futures = [rasterize_batch(b, rasterizer) for b in batches]
batch_results = [f.result() for f in raster_futures]
raster_parallel_s = time.perf_counter() - t0
parsl.clear()
rasterized_tiles = [tile for batch in batch_results for tile in batch]
rasterizer.write_summary()
""",
}

# --------------------------------------------------------------------------- cpu-or-io
CPUIO_OTHER = {
    "worker-counts": """
cap = min(usable_cores(), 15)
worker_counts = list(range(1, cap + 1))
""",
    # parsl.load / dfk().cleanup(), concurrent.futures.wait, a dict() per count
    "my-sweep": """
import concurrent.futures

def make_config(workers):
    provider = LocalProvider(init_blocks=1, max_blocks=1, worker_init="")
    return Config(executors=[HighThroughputExecutor(max_workers_per_node=workers, provider=provider)],
                  run_dir="group-project/runinfo", strategy_period=0.5)

@python_app
def stage_file(path, stager):
    return stager.stage(path).path

@python_app
def warm_up():
    import time
    import grouputils.core.staging
    time.sleep(0.5)
    return True

my_sweep, my_futures = {}, {}
for w in worker_counts:
    started = time.perf_counter()
    parsl.load(make_config(w))
    concurrent.futures.wait([warm_up() for _ in range(w)])
    ready = time.perf_counter()
    my_futures[w] = [stage_file(p, stager) for p in files_to_stage]
    concurrent.futures.wait(my_futures[w])
    done = time.perf_counter()
    parsl.dfk().cleanup()
    my_sweep[w] = dict(startup_s=ready - started, work_s=done - ready)
my_speedup = my_sweep[worker_counts[0]]["work_s"] / my_sweep[cap]["work_s"]
""",
    "staging-sweep": """
staging_sweep = sweep_workers(stager.stage, files_to_stage, workers=worker_counts, progress=False)
stager.finalize(progress=False)
""",
    # every other tile, two tiles per task
    "raster-sweep": """
staged_files = stager.tiles.get_filenames_from_dir('staged')
raster_items = staged_files[::2]
raster_sweep = sweep_workers(rasterizer.rasterize_vector, raster_items, workers=worker_counts,
                             batch_size=2, progress=False)
""",
    "startup": """
t = staging_sweep.table
staging_speedup = float(t['wall_s'].iloc[0] / t['wall_s'].iloc[-1])
total = t['wall_s'] + t['startup_s']
staging_speedup_with_startup = float(total.iloc[0] / total.iloc[-1])
""",
    "plateau": """
def max_speedup(n_tasks, workers):
    rounds = -(-n_tasks // workers)
    return n_tasks / rounds

task_seconds = []
for manifest in stager.manifests():
    task_seconds.append(manifest['seconds'])
best_time_s = {}
for w in range(1, 89):
    best_time_s[w] = max(max(task_seconds), sum(task_seconds) / w)
plateau_speedup = sum(task_seconds) / max(task_seconds)
""",
}

CPUIO_WRONG = {
    # graded under a cap of 1 worker: this sweep goes to the machine's 2 cores anyway
    "my-sweep": """
def make_config(workers):
    return Config(executors=[HighThroughputExecutor(max_workers_per_node=workers,
                                                    provider=LocalProvider(init_blocks=1, max_blocks=1))],
                  run_dir="group-project/parsl-runinfo", strategy_period=0.5)

@python_app
def stage_file(path, stager):
    stager.stage(path)
    return path

@python_app
def warm_up():
    import time
    import grouputils.core.staging
    time.sleep(0.5)
    return True

my_sweep, my_futures = {}, {}
for w in (1, 2):
    t0 = time.perf_counter()
    with parsl.load(make_config(w)):
        [f.result() for f in [warm_up() for _ in range(w)]]
        startup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        my_futures[w] = [stage_file(p, stager) for p in files_to_stage]
        [f.result() for f in my_futures[w]]
        work_s = time.perf_counter() - t0
    my_sweep[w] = {"startup_s": startup_s, "work_s": work_s}
my_speedup = my_sweep[1]["work_s"] / my_sweep[cap]["work_s"]
""",
    # a verdict typed in, without classify_bound on the sweeps
    "verdicts": 'staging_verdict = "cpu-bound"\nraster_verdict = "cpu-bound"',
    # a speed-up copied from the text of the issue, not read from the table
    "startup": "staging_speedup = 0.84\nstaging_speedup_with_startup = 0.77",
    # the Amdahl trap: ignore the rounds and the longest task
    "plateau": """
def max_speedup(n_tasks, workers):
    return min(n_tasks, workers)

task_seconds = [m['seconds'] for m in stager.manifests()]
best_time_s = {w: sum(task_seconds) / w for w in range(1, 89)}
plateau_speedup = 88.0
""",
}

# --------------------------------------------------------------------------- scripts
SCRIPT_OTHER = '''%%writefile count_polygons.py
"""Unique polygons per source file (geopandas version)."""
import sys
from pathlib import Path

import geopandas as gpd
import pandas as pd

folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("group-project")
frames = [gpd.read_file(p, ignore_geometry=True) for p in (folder / "staged").rglob("*.gpkg")]
rows = pd.concat(frames, ignore_index=True)
keep = rows[rows.staging_centroid_within_tile & ~rows.staging_duplicated]
per_file = keep.groupby("staging_filename").size().sort_index()
print("file | unique polygons")
for name, n in per_file.items():
    print(f"{name}: {n}")
print(f"TOTAL: {per_file.sum()}")
'''

# the earlier course's script: sums the length of each tile's file name
SCRIPT_OLD = '''%%writefile count_polygons.py
import os
import sys

folder = sys.argv[1] if len(sys.argv) > 1 else "group-project"
total = 0
for root, dirs, files in os.walk(os.path.join(folder, "staged")):
    for filename in files:
        if filename.endswith(".gpkg"):
            total += len(filename)
print("total", total)
'''

# counts rows: every polygon crossing a tile edge once per tile it touches
SCRIPT_EDGE_COPIES = '''%%writefile count_polygons.py
import sys
from collections import Counter
from pathlib import Path

import pyogrio

folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("group-project")
counts = Counter()
for path in sorted((folder / "staged").glob("*/*/*/*.gpkg")):
    rows = pyogrio.read_dataframe(path, columns=["staging_filename"], read_geometry=False)
    counts.update(rows["staging_filename"].value_counts().to_dict())
for name in sorted(counts):
    print(name, counts[name])
print("total", sum(counts.values()))
'''

# counts each polygon in its centroid's tile, but keeps the duplicates of overlapping scenes
SCRIPT_DUPLICATES = SCRIPT_EDGE_COPIES.replace(
    'columns=["staging_filename"], read_geometry=False)\n',
    'columns=["staging_filename", "staging_centroid_within_tile"], read_geometry=False)\n'
    '    rows = rows[rows["staging_centroid_within_tile"]]\n',
)

#: a script that prints "total 0", and grouputils.teaching.course's helpers replaced so the old hidden test agreed
SCRIPTS_HELPERS_CHEAT = '''
import pandas as pd
import grouputils.teaching.course
open("count_polygons.py", "w").write("print('total 0')\\n")
grouputils.teaching.course.parse_count_table = lambda text: ({}, 0)
grouputils.teaching.course.unique_polygon_counts = lambda *a, **k: pd.Series([0], dtype="int64")
'''

#: runs the instructor's solution, read from source/ at grading time
SCRIPTS_SOURCE_READER = '''
import json, os, re
print("SEEN", json.dumps({"source": os.path.exists("../../../source"),
                          "gradebook": os.path.exists("../../../gradebook.db")}))
try:
    cells = json.load(open("../../../source/scripts/scripts.ipynb"))["cells"]
    text = "".join([c for c in cells if c.get("id") == "count-polygons"][0]["source"])
    text = re.sub(r"^.*### (BEGIN|END) SOLUTION.*\\n", "", text, flags=re.M).split("\\n", 1)[1]
except OSError:
    text = "print('total 0')\\n"
open("count_polygons.py", "w").write(text)
'''

# --------------------------------------------------------------------------- lazy-arrays
# correct, written differently from the solution
ARRAYS_OTHER = {
    "busiest-item": """
busiest_item_id, busiest_count = None, -1
for candidate in z13.get_items():
    for band in candidate.assets["data"].extra_fields["bands"]:
        if band["name"] == "number_IWP_per_pixel" and band["grouputils:sum"] > busiest_count:
            busiest_item_id, busiest_count = candidate.id, int(band["grouputils:sum"])
""",
    # sum each row first, then weight the row sums by the row's pixel area
    "totals": """
areas = pixel_area_m2(mosaic)
lazy_count = mosaic.sel(band="number_IWP_per_pixel").sum(dim=["y", "x"])
lazy_area_km2 = (mosaic.sel(band="prop_pixel_covered_by_IWP").sum(dim="x") * areas).sum() / 1e6
n, a = dask.compute(lazy_count, lazy_area_km2)
n_polygons, area_km2 = int(n), float(a)
""",
    "read-experiment": """
seconds = table.pivot_table(index="chunk_label", columns="workers", values="seconds")[max(workers)]
best_chunk = seconds.idxmin()
slowdown_small = float(seconds["128"] / seconds.min())
slowdown_one_chunk = float(seconds["one chunk"] / seconds.min())
row = table[(table.chunk_label == "128") & (table.workers == max(workers))].iloc[0]
overhead_per_task_ms = float(row.overhead_s / row.n_tasks * 1e3)
""",
}

# known wrong answers: each must fail its test cell
ARRAYS_WRONG = {
    # the first item, and a pixel's maximum instead of the tile's sum
    "busiest-item": """
first = next(z13.get_items())
busiest_item_id = first.id
busiest_count = int(first.assets["data"].extra_fields["bands"][0]["statistics"]["maximum"])
""",
    # pixels with data instead of polygons, one pixel area for every row, the count copied from the summary
    "totals": """
coverage = mosaic.sel(band="prop_pixel_covered_by_IWP")
lazy_count = mosaic.sel(band="number_IWP_per_pixel").count()
lazy_area_km2 = coverage.sum() * float(pixel_area_m2(mosaic).mean()) / 1e6
n_polygons = summary["unique_polygons"]
area_km2 = float(lazy_area_km2.compute())
""",
    # numbers from the model answer, not from the learner's table
    "read-experiment": """
best_chunk = "512"
slowdown_small = 6.9
slowdown_one_chunk = 2.0
overhead_per_task_ms = 0.1
""",
}

SUBMISSIONS = (
    # correct submissions written differently from the source solution (each must get full marks)
    Submission("capped", "staging", STAGING_OTHER, capped=True),
    Submission("capped", "rasterization", RASTER_OTHER, capped=True),
    Submission("join", "rasterization", RASTER_JOIN),
    Submission("capped", "cpu-or-io", CPUIO_OTHER, capped=True),
    Submission("capped", "scripts", {"count-polygons": SCRIPT_OTHER}, capped=True),
    Submission("capped", "lazy-arrays", ARRAYS_OTHER, capped=True),
    # wrong answers: each loses exactly the points of the test cells named
    Submission("wrong", "staging", STAGING_WRONG,
               fails=("test-largest-file", "test-estimate-serial", "test-parallel-staging", "test-shutdown",
                      "test-node-hours")),
    Submission("threads", "staging", STAGING_THREADS, fails=("test-process-pool",)),
    Submission("no-wait", "staging", STAGING_NO_WAIT, fails=("test-parallel-staging",)),
    Submission("wrong", "rasterization", RASTER_WRONG,
               fails=("test-estimate-raster", "test-count-geotiffs", "test-pyramid", "test-process-pool",
                      "test-shutdown")),
    Submission("capped-wrong", "cpu-or-io", CPUIO_WRONG,
               fails=("test-sweep-cap", "test-verdicts", "test-startup", "test-plateau"), capped=True),
    Submission("wrong", "scripts", {"count-polygons": SCRIPT_OLD}, fails=("test-count-polygons",)),
    Submission("wrong-edges", "scripts", {"count-polygons": SCRIPT_EDGE_COPIES}, fails=("test-count-polygons",)),
    Submission("wrong-duplicates", "scripts", {"count-polygons": SCRIPT_DUPLICATES}, fails=("test-count-polygons",)),
    Submission("wrong", "lazy-arrays", ARRAYS_WRONG,
               fails=("test-busiest-item", "test-totals", "test-read-experiment")),
    # cheats (issue 15): each scores nothing for the cells it targets, and loses nothing else
    Submission("cheats", "staging", STAGING_CHEATS,
               fails=("test-largest-file", "test-estimate-serial", "test-node-hours")),
    Submission("helpers", "scripts", {"count-polygons": SCRIPTS_HELPERS_CHEAT}, fails=("test-count-polygons",)),
    Submission("reader", "scripts", {"count-polygons": SCRIPTS_SOURCE_READER}, fails=("test-count-polygons",)),
)

#: submissions that read the instructor's folder and print what they saw: (student, assignment, cell id)
READERS = (("cheats", "staging", "node-hours"), ("reader", "scripts", "count-polygons"))


def result_cell_filters(path: Path) -> tuple[tuple[str, ...], tuple]:
    """diff_ignore every output but those of the named result cells; mask timings and paths."""
    nb = nbformat.read(path, as_version=4)
    ignore = ["/metadata", "/cells/*/metadata", "/cells/*/execution_count", "/cells/*/outputs/*/execution_count"]
    results = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("id", "").startswith("result-"):
            results += 1
        else:
            ignore.append(f"/cells/{i}/outputs")
    assert results, f"{path.name} has no result cells"
    replace = (
        ("/cells/*/outputs", r"\d+(\.\d+)? ?(s|ms|seconds)\b", "<TIME>"),
        ("/cells/*/outputs", r"(/[\w.+-]+)+/", "<PATH>/"),
    )
    return tuple(ignore), replace


def assert_result_cells_match(reference_path: Path, rerun: nbformat.NotebookNode) -> None:
    """A fresh run of a notebook (e.g. its autograded solution) shows the reference's result cells.

    The rerun may still carry nbgrader's markers; they are stripped first.
    Outputs of cells whose id does not start with ``result-`` are ignored,
    timings and paths are masked.
    """
    from pytest_notebook.diffing import diff_notebooks, diff_to_string, filter_diff
    from pytest_notebook.notebook import regex_replace_nb

    reference = nbformat.read(reference_path, as_version=4)
    rerun = copy.deepcopy(rerun)
    assert [c.get("id") for c in rerun.cells] == [c.get("id") for c in reference.cells]
    for cell in rerun.cells:
        cell.source = strip_markers(cell.source).rstrip("\n")
    ignore, replace = result_cell_filters(reference_path)
    a, b = regex_replace_nb(reference, replace), regex_replace_nb(rerun, replace)
    diff = filter_diff(diff_notebooks(a, b), set(ignore))
    assert not diff, diff_to_string(a, diff, use_color=False)
