"""Benchmark the learner helpers: profiling overhead, Parsl start-up, per-task overhead, speed-up.

Run from the repository root (the ``__main__`` guard matters: Parsl starts
processes that import this file's module)::

    .venv/bin/python benchmarks/bench_profiling.py
    .venv/bin/python benchmarks/bench_profiling.py --repeat 9 --json results.json

In one run it prints

* the overhead of :func:`grouputils.profile_resources`: the same CPU-bound
  work (``math.factorial`` in a loop, ~0.5 s) timed with and without a
  profile, in interleaved pairs (alternating which goes first, so drifts in
  machine load hit both equally); the median of the per-pair ratios
  profiled/unprofiled, at the default interval (0.1 s) and at 0.02 s; and
  the CPU one sample costs, measured by profiling an idle second;
* Parsl local start-up: seconds from ``parsl.load(local_config(1))`` to the
  first result, and the cleanup time of the ``with`` block;
* Parsl per-task overhead: no-op tasks (``abs``) through one warm worker,
  seconds per task (the figure behind ``DEFAULT_TASK_OVERHEAD_S``);
* the speed-up of a synthetic CPU task at 1 and 2 Parsl workers
  (:func:`grouputils.sweep_workers`: executor start-up excluded and
  reported separately) and the :func:`classify_bound` verdict.

The machine may be shared: the load average at the start and end is printed
so the figures can be read against it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import parsl

from grouputils.core.cores import usable_cores
from grouputils.run.batches import DEFAULT_TASK_OVERHEAD_S
from grouputils.run.executors import parallel_map
from grouputils.run.monitor import profile_resources
from grouputils.run.parsl_config import local_config
from grouputils.teaching.sweeps import sweep_workers
from grouputils.teaching.verdict import classify_bound


def cpu_work(n: int = 40) -> None:
    """Pure CPU work in this process, ~0.5 s on the reference 2-core machine."""
    for _ in range(n):
        math.factorial(30000)


def profiling_overhead(repeat: int, interval: float) -> dict[str, float]:
    ratios, plain_s, prof_s = [], [], []
    for i in range(repeat):
        order = (False, True) if i % 2 == 0 else (True, False)
        times = {}
        for profiled in order:
            t0 = time.perf_counter()
            if profiled:
                with profile_resources(interval=interval):
                    cpu_work()
            else:
                cpu_work()
            times[profiled] = time.perf_counter() - t0
        ratios.append(times[True] / times[False])
        plain_s.append(times[False])
        prof_s.append(times[True])
    return {
        "interval_s": interval,
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "plain_s_median": statistics.median(plain_s),
        "profiled_s_median": statistics.median(prof_s),
    }


def sample_cost(interval: float = 0.01, seconds: float = 1.0) -> dict[str, float]:
    """CPU of the sampling thread itself: profile an idle process (only the sampler runs)."""
    with profile_resources(interval=interval) as prof:
        time.sleep(seconds)
    n = len(prof.table)
    per_sample = 1000 * prof.cpu_s / max(n, 1)
    return {"interval_s": interval, "samples": n, "cpu_ms_per_sample": per_sample}


def parsl_startup_and_overhead(run_dir: Path, n_tasks: int) -> dict[str, float]:
    t0 = time.perf_counter()
    with parsl.load(local_config(1, run_dir=run_dir)):
        parallel_map(abs, [-1], progress=False)
        first = time.perf_counter() - t0
        parallel_map(abs, range(50), progress=False)  # warm the path
        t1 = time.perf_counter()
        parallel_map(abs, range(n_tasks), progress=False)
        per_task = (time.perf_counter() - t1) / n_tasks
        t2 = time.perf_counter()
    return {
        "first_result_after_load_s": first,
        "cleanup_s": time.perf_counter() - t2,
        "per_task_overhead_s": per_task,
        "n_tasks": n_tasks,
        "default_task_overhead_s": DEFAULT_TASK_OVERHEAD_S,
    }


def parsl_speedup(run_dir: Path, n_tasks: int) -> dict[str, object]:
    sweep = sweep_workers(
        math.factorial,
        [60000] * n_tasks,
        workers=[1, 2],
        executor="parsl",
        run_dir=run_dir,
        progress=False,
    )
    cols = [
        "workers",
        "wall_s",
        "startup_s",
        "speedup",
        "efficiency",
        "task_s_mean",
        "task_cpu_ratio",
        "task_queue_ratio",
        "busy_fraction",
        "cpu_util",
        "other_cpu_cores",
    ]
    return {
        "table": sweep.table[cols].round(4).to_dict(orient="records"),
        "verdict": str(classify_bound(sweep)),
    }


def engine_sweeps(tmp: Path) -> dict[str, object]:
    """Staging and rasterization of the shipped samples at 1 and 2 Parsl workers, with verdicts."""
    import warnings

    from grouputils import initialize_rasterizer, initialize_stager, sample_dir

    warnings.simplefilter("ignore")
    stager = initialize_stager(sample_dir(), tmp / "engine")
    inputs = stager.tiles.get_filenames_from_dir("input")
    out: dict[str, object] = {}
    sweep = sweep_workers(
        stager.stage, inputs, workers=[1, 2], run_dir=tmp / "run-stage", progress=False
    )
    out["staging"] = (
        sweep.table[["workers", "wall_s", "startup_s", "speedup", "efficiency"]]
        .round(3)
        .to_dict(orient="records"),
        str(classify_bound(sweep)),
    )
    stager.finalize(progress=False)
    rasterizer = initialize_rasterizer(sample_dir(), tmp / "engine")
    staged = rasterizer.tiles.get_filenames_from_dir("staged")
    sweep = sweep_workers(
        rasterizer.rasterize_vector,
        staged,
        workers=[1, 2],
        batch_size=4,
        run_dir=tmp / "run-raster",
        progress=False,
    )
    out["rasterization"] = (
        sweep.table[["workers", "wall_s", "startup_s", "speedup", "efficiency"]]
        .round(3)
        .to_dict(orient="records"),
        str(classify_bound(sweep)),
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=7, help="interleaved pairs per interval")
    ap.add_argument("--tasks", type=int, default=500, help="no-op tasks for the overhead")
    ap.add_argument("--sweep-tasks", type=int, default=24, help="CPU tasks in the 1-vs-2 sweep")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    results: dict[str, object] = {"usable_cores": usable_cores(), "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench-profiling-") as tmp:
        tmp_path = Path(tmp)
        results["overhead"] = [profiling_overhead(args.repeat, iv) for iv in (0.1, 0.02)]
        results["sample_cost"] = sample_cost()
        results["parsl"] = parsl_startup_and_overhead(tmp_path / "run-overhead", args.tasks)
        results["speedup"] = parsl_speedup(tmp_path / "run-sweep", args.sweep_tasks)
        results["engine"] = engine_sweeps(tmp_path)
    results["load_after"] = os.getloadavg()

    print(
        f"usable cores: {results['usable_cores']}; load average before "
        f"{results['load_before'][0]:.2f}, after {results['load_after'][0]:.2f}"
    )
    for o in results["overhead"]:
        print(
            f"profile_resources(interval={o['interval_s']}) overhead: median ratio "
            f"{o['ratio_median']:.3f} (range {o['ratio_min']:.3f}-{o['ratio_max']:.3f}; "
            f"{o['plain_s_median']:.3f} s unprofiled, {args.repeat} interleaved pairs)"
        )
    sc = results["sample_cost"]
    print(
        f"one sample costs {sc['cpu_ms_per_sample']:.2f} ms CPU ({sc['samples']} samples at "
        f"{sc['interval_s']} s)"
    )
    p = results["parsl"]
    print(
        f"parsl local: first result {p['first_result_after_load_s']:.2f} s after load(); "
        f"cleanup {p['cleanup_s']:.2f} s; per-task overhead "
        f"{1000 * p['per_task_overhead_s']:.2f} ms "
        f"({p['n_tasks']} no-op tasks, 1 warm worker; default assumed "
        f"{1000 * p['default_task_overhead_s']:.1f} ms)"
    )
    for row in results["speedup"]["table"]:
        print(
            f"parsl {row['workers']} worker(s): {row['wall_s']:.2f} s work, start-up "
            f"{row['startup_s']:.2f} s (excluded), speed-up {row['speedup']:.2f}, efficiency "
            f"{row['efficiency']:.2f}, task CPU ratio {row['task_cpu_ratio']:.2f}, queued "
            f"{row['task_queue_ratio']:.2f}, other processes {row['other_cpu_cores']:.2f} cores"
        )
    print(f"verdict: {results['speedup']['verdict']}")
    for step, (rows, verdict) in results["engine"].items():
        for row in rows:
            print(
                f"{step} of the shipped samples, {row['workers']} worker(s): {row['wall_s']:.2f} s "
                f"(start-up {row['startup_s']:.2f} s excluded), speed-up {row['speedup']:.2f}, "
                f"efficiency {row['efficiency']:.2f}"
            )
        print(f"{step} verdict: {verdict}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
