"""Measure where the time goes: resource timelines, worker sweeps and a CPU/I-O verdict.

* :func:`profile_resources` samples, in a background thread, the CPU, memory
  and I/O of this process and all its descendants (including the Parsl worker
  pool, which Parsl detaches from the process tree) and returns a
  :class:`ResourceProfile` with a tidy table and a timeline plot, like Dask's
  ``ResourceProfiler``.
* :func:`sweep_workers` runs the same work at several worker counts, each on a
  freshly started executor, and returns a :class:`SweepResult` (speed-up,
  efficiency, CPU use, tasks per worker...).
* :func:`classify_bound` reads a sweep and says what limits the work:
  ``'cpu-bound'``, ``'io-bound'``, ``'memory-bound'``, ``'too-few-tasks'`` or
  ``'overhead-bound'``, with the evidence in words.

Why not just iowait? The kernel's iowait counter is system-wide and often
reads 0 in containers and on network file systems (and ``fsync`` is a no-op
on tmpfs), so the verdict rests mainly on each task's own ratio of CPU time
to elapsed time, measured inside the worker, and on how task times change as
workers are added; iowait is only supporting evidence.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import importlib
import math
import multiprocessing
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import pandas as pd
import psutil

from grouputils.core.config import Config
from grouputils.run.parallel import (
    MIN_TASKS_PER_WORKER,
    OVERHEAD_FACTOR,
    TaskError,
    WorkerCapWarning,
    local_config,
    make_batch,
    usable_cores,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "ResourceProfile",
    "Profiled",
    "profile_resources",
    "SweepResult",
    "sweep_workers",
    "Verdict",
    "classify_bound",
    "MAX_SWEEP_WORKERS",
]

#: Largest worker count a sweep uses unless ``allow_more=True`` (the course's fairness cap).
MAX_SWEEP_WORKERS = 15

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_PROC_CGROUP = Path("/proc/self/cgroup")
_NO_LIMIT = 2**60  # cgroup v1 reports "no limit" as a huge number
RESCAN_S = 0.5  # seconds between scans of the process table for new processes


# ============================================================================ sampling
def _memory_limit_bytes(root: Path = _CGROUP_ROOT, proc_cgroup: Path = _PROC_CGROUP) -> int:
    """Physical memory, or the cgroup memory limit when that is smaller, in bytes."""
    total = int(psutil.virtual_memory().total)
    try:
        text = proc_cgroup.read_text()
    except OSError:
        return total
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel_parts = [p for p in rel.strip("/").split("/") if p]
        if controllers == "":
            base, name = root, "memory.max"
        elif "memory" in controllers.split(","):
            base, name = root / "memory", "memory.limit_in_bytes"
        else:
            continue
        for depth in range(len(rel_parts), -1, -1):
            try:
                raw = base.joinpath(*rel_parts[:depth], name).read_text().strip()
            except OSError:
                continue
            if raw.isdigit() and int(raw) < _NO_LIMIT:
                total = min(total, int(raw))
    return total


def _parsl_run_dir() -> str | None:
    """Run folder of the Parsl DataFlowKernel loaded in this process, if any."""
    if "parsl" not in sys.modules:  # nothing can be loaded; do not pay for the import
        return None
    import parsl
    from parsl.errors import NoDataFlowKernelError

    try:
        return str(parsl.dfk().run_dir)
    except NoDataFlowKernelError:
        return None


class _Sampler:
    """Reads the counters of a process tree; one instance per profile (not thread-shared)."""

    _POOL = "process_worker_pool"

    def __init__(self, parsl_run_dirs: Sequence[str], rescan_s: float) -> None:
        self.me = psutil.Process()
        self.watch = list(parsl_run_dirs)
        self.rescan_s = rescan_s
        self.tree: list[psutil.Process] = [self.me]
        self.last_scan = -math.inf
        self.prev_pids: set[int] | None = None  # None: the first scan's processes are a baseline
        self.fresh: set[int] = set()
        self.prev: dict[tuple[int, float], tuple[float, int, int, int, int]] = {}
        self.cpus = self._usable_cpus()
        self.prev_t = time.time()
        self.prev_sys = self._system_times()
        self.prev_swap = self._swap()
        self.iowait_available = "iowait" in self.prev_sys

    @staticmethod
    def _usable_cpus() -> list[int] | None:
        """Indices of the CPUs this process may run on, or None for all of them."""
        try:
            cpus = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            return None
        n = len(psutil.cpu_times(percpu=True))
        return cpus if cpus and max(cpus) < n and len(cpus) < n else None

    def _system_times(self) -> dict[str, float]:
        """CPU time of all processes summed over the usable CPUs, by state (user, iowait...)."""
        if self.cpus is None:
            t = psutil.cpu_times()
            return {f: getattr(t, f) for f in t._fields}
        per = psutil.cpu_times(percpu=True)
        fields = per[0]._fields
        return {f: sum(getattr(per[i], f) for i in self.cpus) for f in fields}

    @property
    def n_cpus(self) -> int:
        return len(self.cpus) if self.cpus is not None else (psutil.cpu_count() or 1)

    @staticmethod
    def _swap() -> int:
        try:
            s = psutil.swap_memory()
            return int(s.sin + s.sout)
        except (RuntimeError, OSError):  # no swap accounting
            return 0

    @staticmethod
    def _process_table(with_cmdline: bool) -> dict[int, tuple[int, str]]:
        """``{pid: (parent pid, command line)}`` of every process (command lines only if asked)."""
        table: dict[int, tuple[int, str]] = {}
        if not os.path.exists("/proc/self/stat"):  # not Linux: psutil's portable (slower) way
            attrs = ["ppid", "cmdline"] if with_cmdline else ["ppid"]
            for p in psutil.process_iter(attrs):
                table[p.pid] = (p.info["ppid"] or 0, " ".join(p.info.get("cmdline") or ()))
            return table
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
                ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
                cmd = ""
                if with_cmdline:
                    with open(f"/proc/{name}/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, ValueError, IndexError):  # vanished or unreadable
                continue
            table[int(name)] = (ppid, cmd)
        return table

    def _scan(self, now: float) -> None:
        """Find the tree: this process, Parsl pools of the watched run folders, all descendants.

        One pass over the process table (parent ids, and command lines only
        when a Parsl run folder is watched). This is the costly part of
        sampling on a server with many processes, so it runs every
        ``rescan_s`` seconds, not at every sample. A process absent from the
        previous pass was born since, so none of its CPU time has been counted.
        """
        dirs = list(self.watch)
        loaded = _parsl_run_dir()
        if loaded is not None:
            dirs.append(loaded)
        table = self._process_table(with_cmdline=bool(dirs))
        kids: dict[int, list[int]] = {}
        roots = [self.me.pid]
        for pid, (ppid, cmd) in table.items():
            kids.setdefault(ppid, []).append(pid)
            if dirs and self._POOL in cmd and any(d in cmd for d in dirs):
                roots.append(pid)
        members: set[int] = set()
        stack = list(roots)
        while stack:
            pid = stack.pop()
            if pid not in members:
                members.add(pid)
                stack.extend(kids.get(pid, ()))
        old = {p.pid: p for p in self.tree}
        tree: list[psutil.Process] = []
        for pid in members:
            if pid in old:
                tree.append(old[pid])
                continue
            try:
                proc = psutil.Process(pid)
            except psutil.Error:
                continue
            tree.append(proc)
            if self.prev_pids is not None and pid not in self.prev_pids:
                self.fresh.add(pid)
        self.tree = tree
        self.prev_pids = set(table)
        self.last_scan = now

    def sample(self) -> dict[str, float]:
        now = time.time()
        dt = max(now - self.prev_t, 1e-9)
        cur: dict[tuple[int, float], tuple[float, int, int, int, int]] = {}
        d_cpu = 0.0
        d_io = [0, 0, 0, 0]
        rss = 0
        n = 0
        if now - self.last_scan >= self.rescan_s:
            self._scan(now)
        for p in self.tree:
            try:
                with p.oneshot():
                    created = p.create_time()
                    t = p.cpu_times()
                    mem = p.memory_info().rss
                    try:
                        io = p.io_counters()
                        iov = (
                            io.read_bytes,
                            io.write_bytes,
                            getattr(io, "read_chars", 0),
                            getattr(io, "write_chars", 0),
                        )
                    except (psutil.AccessDenied, AttributeError, NotImplementedError):
                        iov = (0, 0, 0, 0)
            except psutil.Error:  # NoSuchProcess, ZombieProcess, AccessDenied
                continue
            key = (p.pid, created)
            vals = (t.user + t.system, *iov)
            cur[key] = vals
            rss += mem
            n += 1
            if key in self.prev:
                base = self.prev[key]
            elif p.pid in self.fresh:  # born since the previous scan: all of it is new
                base = (0.0, 0, 0, 0, 0)
                self.fresh.discard(p.pid)
            else:  # existed before we saw it (first sample, or a pool found late): baseline
                continue
            d_cpu += max(vals[0] - base[0], 0.0)
            for i in range(4):
                d_io[i] += max(vals[i + 1] - base[i + 1], 0)
        self.prev = cur
        sys_now = self._system_times()
        sys_d = {f: sys_now[f] - self.prev_sys[f] for f in sys_now}
        total = sum(v for f, v in sys_d.items() if f not in ("guest", "guest_nice"))
        busy = total - sys_d.get("idle", 0.0) - sys_d.get("iowait", 0.0)
        system_cpu = busy / total if total > 0 else math.nan
        swap = self._swap()
        row = {
            "time_s": now,
            "dt_s": dt,
            "cpu_cores": d_cpu / dt,
            "rss_bytes": float(rss),
            "read_bytes": float(d_io[0]),
            "write_bytes": float(d_io[1]),
            "read_chars": float(d_io[2]),
            "write_chars": float(d_io[3]),
            "iowait": sys_d["iowait"] / total if self.iowait_available and total > 0 else math.nan,
            "system_cpu": system_cpu,
            "other_cpu_cores": max(system_cpu * self.n_cpus - d_cpu / dt, 0.0),
            "swap_bytes": float(max(swap - self.prev_swap, 0)),
            "n_processes": float(n),
        }
        self.prev_t, self.prev_sys, self.prev_swap = now, sys_now, swap
        return row


# ============================================================================ profile
_COLUMNS = [
    "time_s",
    "dt_s",
    "cpu_cores",
    "rss_bytes",
    "read_bytes",
    "write_bytes",
    "read_chars",
    "write_chars",
    "iowait",
    "system_cpu",
    "other_cpu_cores",
    "swap_bytes",
    "n_processes",
]


@dataclasses.dataclass
class ResourceProfile:
    """CPU, memory and I/O of a process tree over time.

    Attributes
    ----------
    interval : float
        Seconds between samples.
    wall_s : float
        Elapsed time of the profiled block in seconds (NaN while it runs).
    iowait_available : bool
        Whether the kernel reports iowait (Linux does; other systems do not).
        Even when available it is system-wide and often 0 in containers.
    mem_total_bytes : int
        Memory available to this process: physical memory or the container's
        limit, whichever is smaller.
    samples : list of dict
        Raw rows of :attr:`table`.
    """

    interval: float
    wall_s: float = math.nan
    iowait_available: bool = False
    mem_total_bytes: int = 0
    samples: list[dict[str, float]] = dataclasses.field(default_factory=list, repr=False)
    _t0: float = dataclasses.field(default=0.0, repr=False)

    @property
    def table(self) -> pd.DataFrame:
        """One row per sampling interval (tidy).

        Columns: ``time_s`` (end of the interval, seconds since the start),
        ``dt_s`` (interval length), ``cpu_cores`` (CPU time used by the tree
        in the interval divided by its length: 2.0 means two cores busy),
        ``rss_bytes`` (resident memory summed over the tree at the end of the
        interval; shared pages count once per process), ``read_bytes`` /
        ``write_bytes`` (bytes the tree made the storage layer read/write in
        the interval; reads served from the page cache count 0),
        ``read_chars`` / ``write_chars`` (bytes passed through read/write
        system calls, cache hits, pipes and sockets included), ``iowait`` and
        ``system_cpu`` (fractions of the time of the CPUs this process may
        use spent waiting for I/O and busy, by any process; iowait NaN when
        not reported), ``other_cpu_cores`` (cores busy with processes outside
        the tree), ``swap_bytes`` (system-wide swap traffic), ``n_processes``.
        """
        df = pd.DataFrame(list(self.samples), columns=_COLUMNS)
        df["time_s"] = df["time_s"] - self._t0
        return df

    @property
    def cpu_s(self) -> float:
        """CPU seconds used by the process tree (user + system)."""
        return float(sum(r["cpu_cores"] * r["dt_s"] for r in self.samples))

    @property
    def peak_rss_bytes(self) -> int:
        """Largest sampled resident memory of the process tree, in bytes."""
        return int(max((r["rss_bytes"] for r in self.samples), default=0))

    def summary(self) -> dict[str, float | int | bool]:
        """Totals and means of the timeline.

        Returns
        -------
        dict
            ``wall_s``, ``cpu_s``, ``mean_cpu_cores`` (``cpu_s / wall_s``),
            ``max_cpu_cores``, ``peak_rss_bytes``, ``mem_total_bytes``,
            ``read_bytes``, ``write_bytes``, ``read_chars``, ``write_chars``,
            ``iowait_mean`` (NaN if unavailable), ``iowait_available``,
            ``system_cpu_mean``, ``other_cpu_cores_mean``, ``swap_bytes``, ``max_processes``,
            ``n_samples``, ``interval_s``.
        """
        t = self.table
        wall = self.wall_s if not math.isnan(self.wall_s) else float(t["dt_s"].sum())
        w = t["dt_s"]

        def weighted(col: str) -> float:
            ok = t[col].notna()
            return float((t.loc[ok, col] * w[ok]).sum() / w[ok].sum()) if ok.any() else math.nan

        return {
            "wall_s": float(wall),
            "cpu_s": self.cpu_s,
            "mean_cpu_cores": self.cpu_s / wall if wall > 0 else math.nan,
            "max_cpu_cores": float(t["cpu_cores"].max()) if len(t) else math.nan,
            "peak_rss_bytes": self.peak_rss_bytes,
            "mem_total_bytes": int(self.mem_total_bytes),
            "read_bytes": float(t["read_bytes"].sum()),
            "write_bytes": float(t["write_bytes"].sum()),
            "read_chars": float(t["read_chars"].sum()),
            "write_chars": float(t["write_chars"].sum()),
            "iowait_mean": weighted("iowait") if self.iowait_available else math.nan,
            "iowait_available": bool(self.iowait_available),
            "system_cpu_mean": weighted("system_cpu"),
            "other_cpu_cores_mean": weighted("other_cpu_cores"),
            "swap_bytes": float(t["swap_bytes"].sum()),
            "max_processes": int(t["n_processes"].max()) if len(t) else 0,
            "n_samples": int(len(t)),
            "interval_s": float(self.interval),
        }

    def plot(self, ax: Axes | Sequence[Axes] | None = None) -> Any:
        """Timeline of CPU, memory and I/O; see :func:`grouputils.teaching.plotting.plot_profile`."""
        from grouputils.teaching.plotting import plot_profile

        return plot_profile(self, ax=ax)


class Profiled(NamedTuple):
    """What a function decorated with :func:`profile_resources` returns."""

    result: Any
    profile: ResourceProfile


class _ProfileContext:
    """The object :func:`profile_resources` returns: a context manager and a decorator."""

    def __init__(self, interval: float, parsl_run_dirs: Iterable[str | Path]) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self.interval = float(interval)
        self.parsl_run_dirs = [str(d) for d in parsl_run_dirs]
        self.profile: ResourceProfile | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampler: _Sampler | None = None
        self._start = 0.0

    def __enter__(self) -> ResourceProfile:
        if self.profile is not None:
            raise RuntimeError("a profile_resources() context can be entered once; make a new one")
        sampler = _Sampler(self.parsl_run_dirs, rescan_s=max(self.interval, RESCAN_S))
        sampler.sample()  # baseline counters of every process already running (row dropped)
        prof = ResourceProfile(
            interval=self.interval,
            iowait_available=sampler.iowait_available,
            mem_total_bytes=_memory_limit_bytes(),
            _t0=sampler.prev_t,
        )
        self.profile, self._sampler = prof, sampler
        self._start = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="grouputils-profiler", daemon=True)
        self._thread.start()
        return prof

    def _run(self) -> None:
        assert self._sampler is not None and self.profile is not None
        while not self._stop.wait(self.interval):
            try:
                self.profile.samples.append(self._sampler.sample())
            except Exception:  # a sampling hiccup must never break the user's work
                continue

    def __exit__(self, *exc: object) -> None:
        assert self._sampler is not None and self.profile is not None and self._thread is not None
        wall = time.perf_counter() - self._start
        self._stop.set()
        self._thread.join()
        self.profile.samples.append(self._sampler.sample())  # the last partial interval
        self.profile.wall_s = wall

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Profiled]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Profiled:
            with _ProfileContext(self.interval, self.parsl_run_dirs) as prof:
                result = func(*args, **kwargs)
            return Profiled(result, prof)

        return wrapper


def profile_resources(
    interval: float | Callable[..., Any] = 0.1,
    *,
    parsl_run_dirs: Iterable[str | Path] = (),
) -> Any:
    """Record CPU, memory and I/O of this process tree while a block or function runs.

    Use as a context manager, which yields a :class:`ResourceProfile` that is
    complete once the block ends::

        with profile_resources() as prof:
            parallel_map(stager.stage, paths)
        prof.summary(); prof.plot()

    or as a decorator; the decorated function then returns
    ``Profiled(result, profile)``::

        @profile_resources(interval=0.2)
        def run(paths): ...
        result, prof = run(paths)

    Parameters
    ----------
    interval : float
        Seconds between samples (default 0.1). Each sample reads ``/proc`` for
        every process in the tree, so very short intervals cost CPU in this
        process; see ``benchmarks/bench_profiling.py`` for the measured overhead.
    parsl_run_dirs : iterable of str or Path
        Run folders of Parsl DataFlowKernels whose worker pools to include.
        The pool of the DataFlowKernel loaded with ``parsl.load`` is found
        automatically. (Parsl starts its pools detached from this process, so
        they are found by the run folder in their command line.)

    Returns
    -------
    context manager and decorator
        Entering it yields a :class:`ResourceProfile`.

    Notes
    -----
    CPU is measured per process as the change in user + system time between
    samples. New processes are found by a scan of the process table every
    0.5 s (or every ``interval`` if longer), which is the costly part of a
    sample on a busy server; a process's CPU time before it is found is
    credited to the interval in which it is found. A process that ends
    between two samples loses the CPU time of its last partial interval, and
    one that lives less than a scan period may be missed entirely, so very
    short-lived children are undercounted.
    """
    if callable(interval):  # bare @profile_resources
        return _ProfileContext(0.1, parsl_run_dirs)(interval)
    return _ProfileContext(interval, parsl_run_dirs)


# ============================================================================ sweeps
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


def _timed_batch(
    func: Callable[[Any], Any], batch: list[Any]
) -> tuple[int, float, float, float, int]:
    """Run ``func`` on each item; return (items, elapsed s, CPU s, run-queue wait s, pid).

    Module level so both Parsl and ``multiprocessing`` send it by reference.
    Results are discarded: a sweep measures, it does not collect.
    """
    t0, c0, q0 = time.perf_counter(), time.process_time(), _runqueue_s()
    for item in batch:
        func(item)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return len(batch), elapsed, cpu, _runqueue_s() - q0, os.getpid()


def _warm_up(module: str | None, seconds: float) -> int:
    """Import the work's module and hold a worker briefly, so each worker takes one."""
    if module:
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    time.sleep(seconds)
    return os.getpid()


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

        - ``workers``, ``cores`` (:func:`usable_cores` at the time),
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


def _add_ratios(table: pd.DataFrame) -> pd.DataFrame:
    t = table.sort_values("workers").reset_index(drop=True)
    base = t.iloc[0]
    t["speedup"] = base["wall_s"] / t["wall_s"]
    t["efficiency"] = t["speedup"] / (t["workers"] / base["workers"])
    t["tasks_per_worker"] = t["n_tasks"] / t["workers"]
    return t


class _Runner:
    """A started executor that runs ``_timed_batch`` tasks (Parsl or a process pool)."""

    def __init__(self, kind: str, workers: int, run_dir: Path, config: Config | None) -> None:
        self.kind = kind
        self.run_dir = run_dir
        if kind == "parsl":
            from parsl.dataflow.dflow import DataFlowKernel

            cfg = local_config(workers, run_dir=run_dir, config=config, allow_more=True)
            self.dfk = DataFlowKernel(cfg)  # not made global: a learner's loaded DFK is untouched
            import parsl

            self._timed = parsl.python_app(_timed_batch, data_flow_kernel=self.dfk, cache=False)
            self._warm = parsl.python_app(_warm_up, data_flow_kernel=self.dfk, cache=False)
        else:
            ctx = multiprocessing.get_context("spawn")  # fork is unsafe with threads running
            self.pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)

    def submit_timed(
        self, func: Callable[[Any], Any], batch: list[Any]
    ) -> concurrent.futures.Future:
        if self.kind == "parsl":
            return self._timed(func, batch)
        return self.pool.submit(_timed_batch, func, batch)

    def submit_warm(self, module: str | None, seconds: float) -> concurrent.futures.Future:
        if self.kind == "parsl":
            return self._warm(module, seconds)
        return self.pool.submit(_warm_up, module, seconds)

    def close(self) -> None:
        if self.kind == "parsl":
            self.dfk.cleanup()
        else:
            self.pool.shutdown(wait=True, cancel_futures=True)


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
        :func:`grouputils.run.parallel.parallel_map`). Its return value is discarded.
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
    cap = min(MAX_SWEEP_WORKERS, usable_cores(config))
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
                    stacklevel=2,
                )
            else:
                warnings.warn(
                    f"{w} workers is above the cap of {cap} (min(15, usable cores)); using {cap}. "
                    "Pass allow_more=True to go beyond it.",
                    WorkerCapWarning,
                    stacklevel=2,
                )
                w = cap
        if w not in checked:
            checked.append(w)
    checked.sort()
    if run_dir is None:
        base_out = config.dir_output if config is not None else Path("group-project")
        run_root = Path(base_out) / ".grouputils" / "parsl-runinfo"
    else:
        run_root = Path(run_dir)
    run_root = run_root.expanduser().resolve()
    module = getattr(func, "__module__", None)
    cores = usable_cores(config)

    rows: list[dict[str, Any]] = []
    profiles: dict[int, ResourceProfile] = {}
    for w in tqdm(checked, desc="worker counts", disable=not progress):
        t_start = time.perf_counter()
        runner = _Runner(executor, w, run_root / f"sweep-{w}-workers", config)
        try:
            warm = [runner.submit_warm(module, 0.1) for _ in range(w)]
            for f in warm:
                f.result()
            startup = time.perf_counter() - t_start
            dirs = [str(run_root / f"sweep-{w}-workers")] if executor == "parsl" else []
            with profile_resources(interval, parsl_run_dirs=dirs) as prof:
                t0 = time.perf_counter()
                futs = {runner.submit_timed(func, b): k for k, b in enumerate(batches)}
                stats = []
                for fut in concurrent.futures.as_completed(futs):
                    err = fut.exception()
                    if err is not None:
                        k = futs[fut]
                        item = batches[k] if batch_size is not None else batches[k][0]
                        raise TaskError(k, item, err) from err
                    stats.append(fut.result())
                wall = time.perf_counter() - t0
        finally:
            runner.close()
        s = prof.summary()
        task_wall = np.array([st[1] for st in stats])
        task_cpu = np.array([st[2] for st in stats])
        task_queue = np.array([st[3] for st in stats])
        wall_sum = float(task_wall.sum())
        rows.append(
            {
                "workers": w,
                "cores": cores,
                "n_items": len(items),
                "n_tasks": len(batches),
                "wall_s": wall,
                "startup_s": startup,
                "task_s_mean": float(task_wall.mean()),
                "task_s_max": float(task_wall.max()),
                "task_cpu_ratio": float(task_cpu.sum()) / wall_sum if wall_sum > 0 else math.nan,
                "task_queue_ratio": (
                    float(task_queue.sum()) / wall_sum if wall_sum > 0 else math.nan
                ),
                "busy_fraction": wall_sum / (wall * w),
                "workers_used": len({st[4] for st in stats}),
                "cpu_cores_mean": s["mean_cpu_cores"],
                "cpu_util": s["mean_cpu_cores"] / w,
                "iowait": s["iowait_mean"],
                "system_cpu": s["system_cpu_mean"],
                "other_cpu_cores": s["other_cpu_cores_mean"],
                "peak_rss_bytes": s["peak_rss_bytes"],
                "mem_total_bytes": s["mem_total_bytes"],
                "swap_bytes": s["swap_bytes"],
                "read_bytes": s["read_bytes"],
                "write_bytes": s["write_bytes"],
            }
        )
        profiles[w] = prof
    return SweepResult(table=_add_ratios(pd.DataFrame(rows)), profiles=profiles, executor=executor)


# ============================================================================ verdict
BoundKind = Literal["cpu-bound", "io-bound", "memory-bound", "too-few-tasks", "overhead-bound"]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What limits a piece of work, and why we think so.

    Attributes
    ----------
    kind : {'cpu-bound', 'io-bound', 'memory-bound', 'too-few-tasks', 'overhead-bound'}
    evidence : str
        The measurements behind the verdict, in words.
    """

    kind: BoundKind
    evidence: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.evidence}"


#: Thresholds of :func:`classify_bound` (fractions unless stated).
MEMORY_FRACTION = 0.8  # peak memory / available memory that counts as memory-bound
GOOD_EFFICIENCY = 0.7  # parallel efficiency that counts as "scales"
LOW_CPU_RATIO = 0.5  # task CPU/elapsed below which a task mostly waits
LOW_BUSY = 0.5  # share of worker time spent in tasks below which the executor dominates
SLOWDOWN = 1.3  # growth of the mean task time that counts as contention
QUEUED = 0.2  # share of task time spent waiting for a free core that counts as CPU contention


def _tasks_bound(n_tasks: float, workers: float, base_workers: float) -> float:
    """Best speed-up ``n_tasks`` equal tasks allow at ``workers`` relative to ``base_workers``."""
    return math.ceil(n_tasks / base_workers) / math.ceil(n_tasks / workers)


def _val(row: pd.Series, col: str) -> float:
    v = row.get(col, math.nan)
    return float(v) if v is not None and not pd.isna(v) else math.nan


def classify_bound(sweep: SweepResult | pd.DataFrame) -> Verdict:
    """Say what limits the work measured by a sweep: a pure function of its table.

    The rules, checked in this order:

    1. **memory-bound** — peak memory of the tree reached ``MEMORY_FRACTION``
       (80 %) of the memory available at some worker count (or the system
       swapped): more workers would swap or be killed, whatever the CPUs do.
    2. **too-few-tasks** — at the largest count there are fewer than 4 tasks
       per worker, so whole rounds of tasks leave workers idle: with ``n``
       equal tasks on ``w`` workers the speed-up cannot exceed
       ``n / ceil(n / w)``. It applies when that bound is well below the
       ideal and the measured speed-up came close to it (the task count, not
       something else, was the limit). This is the plateau the earlier course
       mistook for Amdahl's law.
    3. **overhead-bound** — workers spent less than half of the run inside
       tasks although there were enough tasks, and efficiency is poor: tasks
       are so short that sending and collecting them dominates.
    4. **io-bound** — at the smallest count, tasks used the CPU less than
       half of the time they were not queued for a core
       (``task_cpu_ratio / (1 - task_queue_ratio)``): they wait for files,
       the network or sleep. Time spent ready to run but waiting for a core
       (other users, too many workers) is CPU contention, not I/O, and is
       left out. Also when efficiency is poor and tasks slowed
       down by 30 %+ as workers were added while each task's CPU share fell,
       with no more workers than cores and enough cores free of other
       processes: the workers queue for a shared device, usually the disk or
       file system.
    5. **cpu-bound** — otherwise: tasks compute most of the time; the
       evidence says whether they scaled, or were limited by the cores
       (more workers than cores, cores busy with other processes, or tasks
       queued >= 20 % of their time for a core).

    iowait is reported as supporting evidence only: it is system-wide and
    often 0 in containers even when the work waits on files.

    Parameters
    ----------
    sweep : SweepResult or pandas.DataFrame
        A sweep, or its table. Needed columns: ``workers``, ``n_tasks``,
        ``wall_s``; used when present: ``speedup``, ``efficiency``,
        ``task_s_mean``, ``task_cpu_ratio``, ``task_queue_ratio``,
        ``busy_fraction``, ``cpu_util``,
        ``cores``, ``other_cpu_cores``, ``iowait``, ``peak_rss_bytes``,
        ``mem_total_bytes``, ``swap_bytes``.

    Returns
    -------
    Verdict
    """
    table = sweep.table if isinstance(sweep, SweepResult) else sweep
    missing = {"workers", "n_tasks", "wall_s"} - set(table.columns)
    if missing:
        raise ValueError(f"sweep table lacks columns {sorted(missing)}")
    if table.empty:
        raise ValueError("an empty sweep cannot be classified")
    t = table.sort_values("workers").reset_index(drop=True)
    if not {"speedup", "efficiency", "tasks_per_worker"} <= set(t.columns):
        t = _add_ratios(t)
    base, last = t.iloc[0], t.iloc[-1]
    wb, wl = float(base["workers"]), float(last["workers"])
    speed, eff = float(last["speedup"]), float(last["efficiency"])
    scaling = (
        f"{speed:.1f}x speed-up at {wl:g} workers over {wb:g} (efficiency {eff:.0%})"
        if len(t) > 1
        else f"only {wb:g} worker(s) measured"
    )

    # 1. memory
    if {"peak_rss_bytes", "mem_total_bytes"} <= set(t.columns):
        frac = t["peak_rss_bytes"] / t["mem_total_bytes"].where(t["mem_total_bytes"] > 0)
        swapped = t["swap_bytes"] if "swap_bytes" in t.columns else pd.Series(0.0, index=t.index)
        big_swap = swapped > 0.01 * t["mem_total_bytes"]
        if (frac >= MEMORY_FRACTION).any() or big_swap.any():
            i = int(frac.fillna(0).idxmax())
            r = t.iloc[i]
            text = (
                f"peak memory {r['peak_rss_bytes'] / 1e9:.1f} GB at {r['workers']:g} workers is "
                f"{frac.iloc[i]:.0%} of the {r['mem_total_bytes'] / 1e9:.1f} GB available"
            )
            if big_swap.any():
                text += f"; the system swapped {swapped.max() / 1e9:.1f} GB"
            return Verdict(
                "memory-bound",
                text + f" ({scaling}). More workers would swap or be killed: use fewer workers "
                "or smaller chunks per task.",
            )

    # 2. too few tasks
    n_tasks = float(last["n_tasks"])
    bound = _tasks_bound(n_tasks, wl, wb)
    ideal = wl / wb
    few = n_tasks < MIN_TASKS_PER_WORKER * wl and bound < 0.8 * ideal
    if len(t) > 1 and few and speed >= 0.75 * bound:
        rounds = math.ceil(n_tasks / wl)
        n_items = _val(last, "n_items")
        wanted = MIN_TASKS_PER_WORKER * wl
        if not math.isnan(n_items) and n_items > n_tasks:
            advice = f"put fewer items in each task so there are at least {wanted:g} tasks"
        else:
            advice = (
                f"each task is already one item, so for {n_tasks:g} items use at most "
                f"{max(1, math.floor(n_tasks / MIN_TASKS_PER_WORKER)):g} workers, or split the "
                f"items so there are at least {wanted:g} tasks"
            )
        return Verdict(
            "too-few-tasks",
            f"{n_tasks:g} tasks on {wl:g} workers need {rounds} round(s), so at most "
            f"{bound:.1f}x speed-up over {wb:g} worker(s) is possible (ideal {ideal:g}x); measured "
            f"{speed:.1f}x. The plateau comes from the task count, not from the work: {advice}.",
        )

    # 3. overhead
    busy = _val(last, "busy_fraction")
    task_s = _val(last, "task_s_mean")
    if not math.isnan(busy) and busy < LOW_BUSY and eff < GOOD_EFFICIENCY:
        per_task = float(last["wall_s"]) * wl * (1 - busy) / n_tasks
        return Verdict(
            "overhead-bound",
            f"at {wl:g} workers, workers spent only {busy:.0%} of the run inside tasks; a task "
            f"lasts {task_s * 1e3:.1f} ms on average but costs ~{per_task * 1e3:.1f} ms of "
            f"executor overhead ({scaling}). Put more items in each task (choose_batch_size) "
            f"so each runs >= {OVERHEAD_FACTOR}x longer than the overhead.",
        )

    # 4./5. CPU or I/O. A task's elapsed time = computing + waiting for a core + waiting for
    # everything else (I/O, sleep). Only the last part makes it I/O-bound, so the CPU share is
    # taken over the time the task was not queued for a core.
    def cpu_share(row: pd.Series) -> tuple[float, float]:
        ratio, queue = _val(row, "task_cpu_ratio"), _val(row, "task_queue_ratio")
        if math.isnan(ratio):
            return _val(row, "cpu_util"), math.nan
        if math.isnan(queue):
            return ratio, math.nan
        return min(ratio / max(1.0 - queue, 1e-9), 1.0), queue

    ratio_b, queue_b = cpu_share(base)
    ratio_l, queue_l = cpu_share(last)
    source = (
        "task CPU time / time not queued for a core"
        if not math.isnan(queue_b)
        else "task CPU time / elapsed time"
        if not math.isnan(_val(base, "task_cpu_ratio"))
        else "CPU use per worker"
    )
    iow = _val(last, "iowait")
    if math.isnan(iow):
        io_note = " The kernel does not report iowait here."
    elif iow >= 0.05:
        io_note = f" The system reported {iow:.0%} iowait, which agrees."
    else:
        io_note = (
            f" iowait read {iow:.0%}, which in containers and on network file systems "
            "does not rule I/O out."
        )
    cores = _val(last, "cores")
    other = _val(last, "other_cpu_cores")
    if math.isnan(ratio_b):
        raise ValueError(
            "the sweep has neither task_cpu_ratio nor cpu_util: cannot tell CPU from I/O"
        )
    if ratio_b < LOW_CPU_RATIO:
        return Verdict(
            "io-bound",
            f"at {wb:g} worker(s) each task computed only {ratio_b:.0%} of its time ({source}); "
            f"the rest it waited — for files, the network or a sleep ({scaling}).{io_note}",
        )
    slowdown = _val(last, "task_s_mean") / _val(base, "task_s_mean")
    queue_worst = max((q for q in (queue_b, queue_l) if not math.isnan(q)), default=math.nan)
    if len(t) > 1 and (eff < GOOD_EFFICIENCY or queue_worst >= QUEUED):
        oversubscribed = not math.isnan(cores) and wl > cores
        free = cores - other if not (math.isnan(cores) or math.isnan(other)) else math.nan
        others_busy = not math.isnan(free) and free < 0.9 * wl
        queued = not math.isnan(queue_worst) and queue_worst >= QUEUED
        ratio_fell = not math.isnan(ratio_l) and ratio_l < 0.8 * ratio_b
        if oversubscribed or others_busy or queued:
            if oversubscribed:
                why = f"{wl:g} workers on {cores:g} usable cores take turns on them"
            elif others_busy:
                why = (
                    f"other processes kept {other:.1f} of the {cores:g} usable cores busy, "
                    f"leaving {max(free, 0):.1f} for {wl:g} workers"
                )
            else:
                why = (
                    f"tasks spent up to {queue_worst:.0%} of their time ready to run but "
                    "waiting for a free core"
                )
            if queued and not why.startswith("tasks spent"):
                why += f"; tasks spent up to {queue_worst:.0%} of their time waiting for a core"
            return Verdict(
                "cpu-bound",
                f"tasks computed {ratio_b:.0%} of their time at {wb:g} worker(s), but {why} "
                f"({scaling}). The limit is the cores available, not the work.",
            )
        if not math.isnan(slowdown) and slowdown >= SLOWDOWN and ratio_fell:
            return Verdict(
                "io-bound",
                f"tasks took {slowdown:.1f}x longer at {wl:g} workers than at {wb:g} while their "
                f"CPU share fell from {ratio_b:.0%} to {ratio_l:.0%}, with no more workers than "
                f"cores: they queue for a shared device, usually the disk or file system "
                f"({scaling}).{io_note}",
            )
        return Verdict(
            "cpu-bound",
            f"tasks computed {ratio_b:.0%} of their time, but efficiency fell to {eff:.0%} at "
            f"{wl:g} workers with tasks {slowdown:.1f}x slower: cores share caches, memory "
            f"bandwidth and turbo clock, so CPU work does not scale perfectly ({scaling}).",
        )
    if len(t) == 1:
        return Verdict(
            "cpu-bound",
            f"tasks computed {ratio_b:.0%} of their time ({source}); {scaling}, so how it scales "
            "is not known yet: sweep more worker counts.",
        )
    return Verdict(
        "cpu-bound",
        f"tasks computed {ratio_b:.0%} of their time ({source}) and the work scaled: {scaling}. "
        "More cores make it faster.",
    )
