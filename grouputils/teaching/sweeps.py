"""Time the same work at several worker counts, each on a freshly started executor.

:func:`sweep_workers` returns a :class:`SweepResult` (speed-up, efficiency,
CPU use, tasks per worker...) whose :meth:`~SweepResult.verdict` says what
limits the work (:func:`grouputils.teaching.verdict.classify_bound`). Each
count runs on its own :class:`grouputils.run.executors.Executor`: started,
warmed up (timed apart as ``startup_s``), profiled while the tasks run, and
shut down.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from grouputils.core.config import Config
from grouputils.core.cores import WorkerCapWarning, usable_cores
from grouputils.core.layout import Layout
from grouputils.run.batches import make_batch
from grouputils.run.executors import Executor, TaskError
from grouputils.run.monitor import ResourceProfile, profile_resources
from grouputils.run.parsl_config import local_config
from grouputils.teaching.verdict import Verdict, add_ratios, classify_bound

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["MAX_SWEEP_WORKERS", "SweepResult", "sweep_workers"]

#: Largest worker count a sweep uses unless ``allow_more=True`` (the course's fairness cap).
MAX_SWEEP_WORKERS = 15

TaskStats = tuple[int, float, float, float, int]


def _runqueue_s() -> float:
    """Seconds this process's threads have spent runnable but waiting for a CPU (Linux schedstat).

    NaN where the kernel does not report it. This is the time lost to other
    processes (or too many workers) competing for the cores: it separates a
    task that waits for a *CPU* from one that waits for *I/O*.
    """
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return math.nan
    total, found = 0, False
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
            found = True
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9 if found else math.nan


def _timed_batch(func: Callable[[Any], Any], batch: list[Any]) -> TaskStats:
    """Run ``func`` on each item; return (items, elapsed s, CPU s, run-queue wait s, pid).

    Module level so both Parsl and ``multiprocessing`` send it by reference.
    Results are discarded: a sweep measures, it does not collect.
    """
    t0, c0, q0 = time.perf_counter(), time.process_time(), _runqueue_s()
    for item in batch:
        func(item)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return len(batch), elapsed, cpu, _runqueue_s() - q0, os.getpid()


def _default_worker_counts(cap: int) -> list[int]:
    counts = [1]
    while counts[-1] * 2 <= cap:
        counts.append(counts[-1] * 2)
    if counts[-1] != cap:
        counts.append(cap)
    return counts


@dataclasses.dataclass
class SweepResult:
    """The same work timed at several worker counts.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per worker count, sorted by ``workers``. Columns:

        - ``workers``, ``cores`` (:func:`~grouputils.core.cores.usable_cores` at the time),
          ``n_items``, ``n_tasks``, ``tasks_per_worker``;
        - ``wall_s``: seconds to run all tasks on the already started
          executor; ``startup_s``: seconds to start it and warm every worker
          (not included in ``wall_s``);
        - ``speedup``: ``wall_s`` of the smallest count divided by this
          ``wall_s``; ``efficiency``: speed-up divided by the ideal
          (``workers / smallest count``);
        - ``task_s_mean``, ``task_s_max``: elapsed seconds per task, measured
          in the worker; ``task_cpu_ratio``: CPU seconds / elapsed seconds
          summed over tasks (1 = the task computes all the time, 0 = it only
          waits); ``task_queue_ratio``: seconds the tasks were ready to run
          but waited for a free core (Linux schedstat; NaN elsewhere) /
          elapsed seconds; ``busy_fraction``: task seconds / (``wall_s`` x workers);
          ``workers_used``: distinct worker processes that ran a task;
        - ``cpu_cores_mean`` (whole process tree), ``cpu_util`` (that per
          worker), ``iowait``, ``system_cpu``, ``other_cpu_cores`` (cores
          busy with processes outside the tree), ``peak_rss_bytes``,
          ``mem_total_bytes``, ``swap_bytes``, ``read_bytes``,
          ``write_bytes`` from the :class:`ResourceProfile` of the run.
    profiles : dict of int to ResourceProfile
        The profile of each run, by worker count.
    executor : str
        ``'parsl'``, ``'process'`` or ``'synthetic'``.
    """

    table: pd.DataFrame
    profiles: dict[int, ResourceProfile] = dataclasses.field(default_factory=dict, repr=False)
    executor: str = "synthetic"

    def plot(self, axes: Sequence[Axes] | None = None) -> Any:
        """Speed-up against the ideal line, and efficiency (see ``plotting.plot_sweep``)."""
        from grouputils.teaching.plotting import plot_sweep

        return plot_sweep(self, axes=axes)

    def verdict(self) -> Verdict:
        """Shortcut for :func:`classify_bound`."""
        return classify_bound(self)


def sweep_workers(
    func: Callable[[Any], Any],
    items: Iterable[Any],
    workers: Sequence[int] | None = None,
    *,
    executor: Literal["parsl", "process"] = "parsl",
    batch_size: int | None = None,
    allow_more: bool = False,
    interval: float = 0.1,
    run_dir: str | Path | None = None,
    config: Config | None = None,
    progress: bool = True,
) -> SweepResult:
    """Time the same work at several worker counts, each on a fresh executor.

    For each count: start an executor with that many workers, warm every
    worker with a trivial task that imports ``func``'s module (this start-up
    is timed separately as ``startup_s``), then run every task under
    :func:`profile_resources` and time it (``wall_s``), then shut the executor
    down.

    Parameters
    ----------
    func : callable
        Called with one item; importable from an installed module (see
        :func:`grouputils.run.executors.parallel_map`). Its return value is discarded.
    items : iterable
        The work items, read once.
    workers : sequence of int, optional
        Worker counts. Default 1, 2, 4, ... up to ``min(15, usable_cores())``,
        plus that cap itself. Counts above :func:`usable_cores` or above 15
        are clamped with a :class:`WorkerCapWarning` unless ``allow_more``.
    executor : {'parsl', 'process'}
        ``'parsl'``: a local Parsl HighThroughputExecutor (what the course
        uses); ``'process'``: :class:`concurrent.futures.ProcessPoolExecutor`
        (starts faster, no Parsl).
    batch_size : int, optional
        Items per task (see :func:`make_batch`); default one item per task.
    allow_more : bool
        Keep counts above the cap (with a warning): only on a machine you do
        not share.
    interval : float
        Sampling interval of the resource profile, seconds.
    run_dir : str or Path, optional
        Parent of Parsl's run folders; default ``<config.dir_output>/.grouputils/parsl-runinfo``.
    config : Config, optional
        Supplies ``dir_output`` and the instructor's ``max_workers``.
    progress : bool
        Show a progress bar over the worker counts.

    Returns
    -------
    SweepResult

    Raises
    ------
    TaskError
        If a task fails (naming the item).
    """
    from tqdm.auto import tqdm

    if executor not in ("parsl", "process"):
        raise ValueError(f"executor must be 'parsl' or 'process', got {executor!r}")
    items = list(items)
    if not items:
        raise ValueError("sweep_workers needs at least one item")
    batches = make_batch(items, batch_size) if batch_size is not None else [[i] for i in items]
    checked = _checked_counts(workers, min(MAX_SWEEP_WORKERS, usable_cores(config)), allow_more)
    if run_dir is None:
        base_out = config.dir_output if config is not None else Path("group-project")
        run_root = Layout(Path(base_out)).parsl_runinfo
    else:
        run_root = Path(run_dir)
    run_root = run_root.expanduser().resolve()
    module = getattr(func, "__module__", None)
    cores = usable_cores(config)

    rows: list[dict[str, Any]] = []
    profiles: dict[int, ResourceProfile] = {}
    for w in tqdm(checked, desc="worker counts", disable=not progress):
        folder = run_root / f"sweep-{w}-workers"
        ex = Executor(
            "local" if executor == "parsl" else "process",
            workers=w,
            parsl_config=functools.partial(
                local_config, w, run_dir=folder, config=config, allow_more=True
            ),
            # the work's module, and this one, which holds the timing wrapper of each task
            warm_modules=(module, __name__) if module else (__name__,),
            warm_hold_s=0.1,
            progress=False,
        )
        with ex:
            startup = ex.start()
            dirs = [str(folder)] if executor == "parsl" else []
            with profile_resources(interval, parsl_run_dirs=dirs) as prof:
                t0 = time.perf_counter()
                stats = _run_timed(ex, func, batches, batch_size is not None)
                wall = time.perf_counter() - t0
        rows.append(
            _row(stats, prof, w, cores, (len(items), len(batches)), wall=wall, startup=startup)
        )
        profiles[w] = prof
    return SweepResult(table=add_ratios(pd.DataFrame(rows)), profiles=profiles, executor=executor)


def _checked_counts(workers: Sequence[int] | None, cap: int, allow_more: bool) -> list[int]:
    """The sorted, distinct worker counts to sweep, clamped to ``cap`` unless ``allow_more``."""
    counts = _default_worker_counts(cap) if workers is None else list(workers)
    checked: list[int] = []
    for w in counts:
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise ValueError(f"worker counts must be positive integers, got {w!r}")
        if w > cap:
            if allow_more:
                warnings.warn(
                    f"sweeping {w} workers, above the cap of {cap} (min(15, usable cores)): "
                    "results past the core count measure oversubscription, and on a shared "
                    "machine they take cores from others",
                    WorkerCapWarning,
                    stacklevel=3,
                )
            else:
                warnings.warn(
                    f"{w} workers is above the cap of {cap} (min(15, usable cores)); using {cap}. "
                    "Pass allow_more=True to go beyond it.",
                    WorkerCapWarning,
                    stacklevel=3,
                )
                w = cap
        if w not in checked:
            checked.append(w)
    return sorted(checked)


def _run_timed(
    ex: Executor, func: Callable[[Any], Any], batches: list[list[Any]], batched: bool
) -> list[TaskStats]:
    """Every batch as one timed task; raise :class:`TaskError` at the first failure."""
    stats: list[TaskStats] = []
    for k, ok, res in ex.completed(functools.partial(_timed_batch, func), batches):
        if not ok:
            raise TaskError(k, batches[k] if batched else batches[k][0], res) from res
        stats.append(res)
    return stats


def _row(
    stats: list[TaskStats],
    prof: ResourceProfile,
    workers: int,
    cores: int,
    n_items_tasks: tuple[int, int],
    *,
    wall: float,
    startup: float,
) -> dict[str, Any]:
    """One row of the sweep table from the tasks' own timings and the run's profile."""
    s = prof.summary()
    task_wall = np.array([st[1] for st in stats])
    task_cpu = np.array([st[2] for st in stats])
    task_queue = np.array([st[3] for st in stats])
    wall_sum = float(task_wall.sum())
    return {
        "workers": workers,
        "cores": cores,
        "n_items": n_items_tasks[0],
        "n_tasks": n_items_tasks[1],
        "wall_s": wall,
        "startup_s": startup,
        "task_s_mean": float(task_wall.mean()),
        "task_s_max": float(task_wall.max()),
        "task_cpu_ratio": float(task_cpu.sum()) / wall_sum if wall_sum > 0 else math.nan,
        "task_queue_ratio": float(task_queue.sum()) / wall_sum if wall_sum > 0 else math.nan,
        "busy_fraction": wall_sum / (wall * workers),
        "workers_used": len({st[4] for st in stats}),
        "cpu_cores_mean": s["mean_cpu_cores"],
        "cpu_util": s["mean_cpu_cores"] / workers,
        "iowait": s["iowait_mean"],
        "system_cpu": s["system_cpu_mean"],
        "other_cpu_cores": s["other_cpu_cores_mean"],
        "peak_rss_bytes": s["peak_rss_bytes"],
        "mem_total_bytes": s["mem_total_bytes"],
        "swap_bytes": s["swap_bytes"],
        "read_bytes": s["read_bytes"],
        "write_bytes": s["write_bytes"],
    }
