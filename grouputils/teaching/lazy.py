"""The lazy-arrays lesson's experiment: how chunk size and Dask workers change a reduction's cost.

:func:`chunk_experiment` times the mosaic's totals
(:func:`~grouputils.outputs.mosaic.mosaic_totals`) at several chunk sizes and
Dask worker counts (threads), with Dask's :class:`~dask.diagnostics.Profiler`
(tasks) and :func:`grouputils.profile_resources` (CPU, memory), and returns a
tidy table; :func:`plot_chunk_experiment` draws it and
:func:`plot_task_timeline` draws the tasks of one computation. Small chunks
make many tasks, each paying a fixed cost (a scheduler step, opening a
GeoTIFF, decompressing a whole internal block for a few pixels of it); large
chunks make few tasks, so workers sit idle and every chunk's temporaries are
large. :func:`~grouputils.outputs.mosaic.make_large_mosaic` writes a bigger
mosaic when a run's own is too small to show both effects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
import numpy as np
import pandas as pd
import psutil
import xarray as xr
from tqdm.auto import tqdm

from grouputils.core.config import Config
from grouputils.core.cores import usable_cores
from grouputils.outputs.mosaic import (
    DEFAULT_CHUNK_PX,
    covered_area_km2,
    mosaic_totals,
    open_mosaic,
    polygon_count,
)
from grouputils.teaching.profiling import profile_resources

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["chunk_experiment", "plot_chunk_experiment", "plot_task_timeline"]

logger = logging.getLogger(__name__)


def chunk_experiment(
    source: Config | str | Path | xr.DataArray,
    chunk_sizes: Sequence[int | None] = (64, 128, 256, 512, 1024, 2048, None),
    workers: Sequence[int] | None = None,
    *,
    z: int | None = None,
    repeats: int = 1,
    interval: float = 0.05,
    warm_up: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """Time :func:`mosaic_totals` at several chunk sizes and worker counts.

    Every (chunk size, workers) pair reopens the mosaic with that chunk size
    and computes both totals with Dask's threaded scheduler, under Dask's
    :class:`~dask.diagnostics.Profiler` (one record per task) and
    :func:`grouputils.profile_resources` (CPU and memory of this process).

    Parameters
    ----------
    source : Config, str, Path or xarray.DataArray
        What :func:`open_mosaic` accepts, or an opened mosaic (it is rechunked
        by reopening its files, so its own chunks do not matter).
    chunk_sizes : sequence of int or None
        Square chunk sides in pixels; ``None`` is one chunk (the whole mosaic).
    workers : sequence of int, optional
        Dask worker threads (``num_workers``); default 1 and
        :func:`grouputils.usable_cores`.
    z : int, optional
        Zoom level (see :func:`open_mosaic`).
    repeats : int
        Timed runs per pair; the order of the pairs is shuffled with a fixed
        seed on every repeat, so slow drifts of a shared machine do not line up
        with one chunk size.
    interval : float
        Sampling interval of the resource profile in seconds.
    warm_up : bool
        Compute once, untimed, first: the first read of each file pays the
        disk, later ones the page cache.
    progress : bool
        Show a progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per timed run, sorted by ``workers``, ``chunk_px``, ``repeat``:
        ``chunk_px`` (chunk side; the larger side of the mosaic for one
        chunk), ``chunk_label`` (``'256'``, ... or ``'one chunk'``),
        ``chunk_mb`` (MB of one full chunk, all bands, float32),
        ``n_chunks``, ``workers``, ``repeat``, ``seconds`` (wall time of the
        compute), ``n_tasks`` (Dask tasks run), ``task_s`` (time summed over
        tasks), ``overhead_s`` (``seconds * workers - task_s``: worker time
        not spent in a task, i.e. idle or scheduling), ``cpu_cores`` (mean
        cores busy), ``peak_rss_mb`` (peak resident memory of this process),
        ``extra_rss_mb`` (that peak minus the memory just before the run: what
        the computation itself needed),
        ``unique_polygons``, ``covered_area_km2`` (identical in every row:
        chunking never changes the answer).
    """
    from dask.diagnostics import Profiler

    if isinstance(source, xr.DataArray):
        z = int(source.attrs["z"]) if z is None else z
        source = Path(source.attrs["source"])
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    if workers is None:
        workers = sorted({1, usable_cores()})
    workers = [int(w) for w in workers]
    if not workers or min(workers) < 1:
        raise ValueError(f"workers must be positive integers, got {workers}")
    pairs = [(c, w) for c in chunk_sizes for w in workers]
    if warm_up:
        mosaic_totals(open_mosaic(source, z, chunks=DEFAULT_CHUNK_PX), num_workers=max(workers))
    rng = np.random.default_rng(0)
    rows = []
    bar = tqdm(total=len(pairs) * repeats, desc="chunk experiment", disable=not progress)
    for rep in range(repeats):
        for k in rng.permutation(len(pairs)):
            chunk, w = pairs[k]
            mosaic = open_mosaic(source, z, chunks=chunk)
            data = mosaic.data
            _, ny, nx = mosaic.shape
            side = max(ny, nx) if chunk is None else int(chunk)
            n_chunks = int(np.prod(data.numblocks))
            chunk_mb = float(np.prod([c[0] for c in data.chunks])) * 4 / 1e6
            count, area = polygon_count(mosaic), covered_area_km2(mosaic)
            rss_before = psutil.Process().memory_info().rss
            with Profiler() as tasks, profile_resources(interval) as res:
                t0 = time.perf_counter()
                n, a = dask.compute(count, area, scheduler="threads", num_workers=w)
                seconds = time.perf_counter() - t0
            task_s = float(sum(r.end_time - r.start_time for r in tasks.results))
            rows.append(
                {
                    "chunk_px": side,
                    "chunk_label": "one chunk" if chunk is None else str(int(chunk)),
                    "chunk_mb": chunk_mb,
                    "n_chunks": n_chunks,
                    "workers": w,
                    "repeat": rep,
                    "seconds": seconds,
                    "n_tasks": len(tasks.results),
                    "task_s": task_s,
                    "overhead_s": max(0.0, seconds * w - task_s),
                    "cpu_cores": res.summary()["mean_cpu_cores"],
                    "peak_rss_mb": res.peak_rss_bytes / 1e6,
                    "extra_rss_mb": max(0.0, (res.peak_rss_bytes - rss_before) / 1e6),
                    "unique_polygons": int(round(float(n))),
                    "covered_area_km2": float(a),
                }
            )
            logger.debug(
                "chunks %s, %d workers: %.3f s, %d tasks",
                rows[-1]["chunk_label"],
                w,
                seconds,
                len(tasks.results),
            )
            bar.update()
    bar.close()
    table = pd.DataFrame(rows)
    return table.sort_values(["workers", "chunk_px", "repeat"], ignore_index=True)


def plot_chunk_experiment(table: pd.DataFrame, ax: Axes | Sequence[Axes] | None = None) -> Any:
    """Draw a :func:`chunk_experiment` table: time, tasks and memory against chunk size.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`chunk_experiment` (several repeats are shown as their median).
    ax : Axes or sequence of 2 Axes, optional
        Where to draw; default a new figure with two panels side by side.

    Returns
    -------
    numpy.ndarray of Axes
        Left: wall time (s) per worker count, with the number of tasks written
        above the points; right: peak memory above the memory before the run
        (MB). Chunk side on a log axis.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    else:
        axes = np.atleast_1d(np.asarray(ax, dtype=object))
        if len(axes) != 2:
            raise ValueError("plot_chunk_experiment draws on two Axes")
    med = table.groupby(["workers", "chunk_px"], as_index=False).agg(
        seconds=("seconds", "median"),
        extra_rss_mb=("extra_rss_mb", "median"),
        n_tasks=("n_tasks", "median"),
        chunk_label=("chunk_label", "first"),
    )
    for w, part in med.groupby("workers"):
        label = f"{w} worker" + ("s" if w != 1 else "")
        axes[0].plot(part["chunk_px"], part["seconds"], marker="o", label=label)
        axes[1].plot(part["chunk_px"], part["extra_rss_mb"], marker="o", label=label)
    first = med[med["workers"] == med["workers"].min()]
    for _, r in first.iterrows():
        axes[0].annotate(
            f"{int(r['n_tasks'])} tasks",
            (r["chunk_px"], r["seconds"]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=7,
        )
    ticks = sorted(med["chunk_px"].unique())
    labels = [med.loc[med["chunk_px"] == t, "chunk_label"].iloc[0] for t in ticks]
    for a, ylabel in zip(axes, ("reduction time (s)", "memory used by the run (MB)"), strict=True):
        a.set_xscale("log", base=2)
        a.set_xticks(ticks, labels, rotation=30)
        a.minorticks_off()
        a.set_xlabel("chunk side (pixels)")
        a.set_ylabel(ylabel)
        a.set_ylim(bottom=0, top=a.get_ylim()[1] * 1.12)  # room for the task counts
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    axes[0].set_title("Time of one reduction", loc="left", fontsize=10)
    axes[1].set_title("Memory", loc="left", fontsize=10)
    return axes


def plot_task_timeline(results: Sequence[Any], ax: Axes | None = None) -> Axes:
    """Draw the tasks of one Dask computation as bars per worker thread over time.

    Parameters
    ----------
    results : sequence of dask.diagnostics.profile.TaskData
        ``Profiler().results`` after a computation.
    ax : Axes, optional
        Where to draw; default a new figure.

    Returns
    -------
    Axes
        One row per worker thread; each task is a bar from its start to its
        end (seconds since the first task started), coloured by what it
        does: read a chunk from the GeoTIFFs, select / multiply / rechunk,
        or reduce (partial and final sums). Gaps are time a worker spent
        outside tasks: waiting, or scheduling the next one.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(9, 2.5), layout="constrained")
    if not results:
        ax.set_title("no tasks recorded", loc="left", fontsize=10)
        return ax

    t0 = min(r.start_time for r in results)
    workers = sorted({r.worker_id for r in results})
    row = {w: i for i, w in enumerate(workers)}

    def kind(key: Any) -> str:
        name = str(key[0] if isinstance(key, tuple) else key)
        if name.startswith("mosaic-"):
            return "read a chunk"
        if "sum" in name or "finalize" in name:
            return "reduce"
        return "select, multiply, rechunk"

    kinds = ["read a chunk", "select, multiply, rechunk", "reduce"]
    colours = ("tab:blue", "tab:orange", "tab:green")
    for name, colour in zip(kinds, colours, strict=True):
        mine = [r for r in results if kind(r.key) == name]
        label: str | None = name
        for w in workers:
            bars = [
                (r.start_time - t0, max(r.end_time - r.start_time, 1e-5))
                for r in mine
                if r.worker_id == w
            ]
            if bars:
                ax.broken_barh(bars, (row[w] - 0.4, 0.8), color=colour, label=label)
                label = None
    ax.set_yticks(range(len(workers)), [f"thread {i + 1}" for i in range(len(workers))])
    ax.set_xlabel("seconds")
    ax.set_title(
        f"{len(results)} tasks on {len(workers)} worker thread(s)", loc="left", fontsize=10
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax
