"""Resource timelines: CPU, memory and I/O of this process and every worker it started.

:func:`profile_resources` samples, in a background thread, the counters of
this process and all its descendants, including the Parsl worker pools
(which Parsl detaches from the process tree, so they are found by their run
folder), and returns a :class:`ResourceProfile` with a tidy table and a
timeline plot, like Dask's ``ResourceProfiler``. The pipeline records one per
step; the course re-exports it from :mod:`grouputils.teaching.profiling`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pandas as pd
import psutil

from grouputils.core.cores import cgroup_memory_limit
from grouputils.run.sampler import ProcessTreeSampler

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["ResourceProfile", "Profiled", "profile_resources", "memory_limit_bytes"]

RESCAN_S = 0.5  # seconds between scans of the process table for new processes


def memory_limit_bytes() -> int:
    """Physical memory, or this process's cgroup memory limit when that is smaller, in bytes.

    Returns
    -------
    int
        Bytes (the cgroup files are read by :func:`grouputils.core.cores.cgroup_memory_limit`).
    """
    total = int(psutil.virtual_memory().total)
    limit = cgroup_memory_limit()
    return total if limit is None else min(total, limit)


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
        """Timeline of CPU, memory and I/O (:func:`grouputils.run.monitor_plot.plot_profile`)."""
        from grouputils.run.monitor_plot import plot_profile

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
        self._sampler: ProcessTreeSampler | None = None
        self._start = 0.0

    def __enter__(self) -> ResourceProfile:
        if self.profile is not None:
            raise RuntimeError("a profile_resources() context can be entered once; make a new one")
        sampler = ProcessTreeSampler(self.parsl_run_dirs, rescan_s=max(self.interval, RESCAN_S))
        sampler.sample()  # baseline counters of every process already running (row dropped)
        prof = ResourceProfile(
            interval=self.interval,
            iowait_available=sampler.iowait_available,
            mem_total_bytes=memory_limit_bytes(),
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
