"""Group items into tasks: :func:`make_batch` and the batch-size rule :func:`choose_batch_size`.

A task costs the executor a few milliseconds besides its work (submitting,
serialising, two ZeroMQ hops), and with too few tasks some workers idle at
the end. :func:`choose_batch_size` balances the two; the constants below are
its rules' figures.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Iterable
from typing import TypeVar

from grouputils.core.cores import check_positive_int

__all__ = [
    "DEFAULT_TASK_OVERHEAD_S",
    "MIN_TASKS_PER_WORKER",
    "OVERHEAD_FACTOR",
    "make_batch",
    "choose_batch_size",
]

T = TypeVar("T")

#: Time one task costs on a warm local HighThroughputExecutor besides the work
#: itself (submitting, serialising, two ZeroMQ hops, bookkeeping), in seconds.
#: Measured with Parsl 2026.10 on a 2-core machine through :func:`parallel_map`:
#: 200-500 no-op tasks through one warm worker took 1.4-2.2 ms each (1.3 ms
#: with two workers), so 2.5 ms is a safe round figure. Rerun
#: ``benchmarks/bench_profiling.py`` to measure it on another machine.
DEFAULT_TASK_OVERHEAD_S = 0.0025

#: Tasks per worker needed to even out unequal task durations (see choose_batch_size).
MIN_TASKS_PER_WORKER = 4

#: Each task should do at least this many times its overhead in work (<= 10 % overhead).
OVERHEAD_FACTOR = 10


def make_batch(items: Iterable[T], batch_size: int) -> list[list[T]]:
    """Split items into consecutive batches of ``batch_size`` (the last may be shorter).

    Parameters
    ----------
    items : iterable
        Any sequence or iterable (a list of paths, a generator, a range...).
        It is read once. A single string is refused: pass a list of strings.
    batch_size : int
        Items per batch, >= 1.

    Returns
    -------
    list of list
        The batches in input order; ``[]`` for no items. A list rather than a
        generator so it can be counted, indexed and iterated more than once,
        which is what a notebook does with it.

    Raises
    ------
    ValueError
        If ``batch_size`` is not an integer >= 1 (``True`` and ``2.0`` are refused).
    TypeError
        If ``items`` is a string or bytes, or not iterable.

    Examples
    --------
    >>> make_batch(range(7), 3)
    [[0, 1, 2], [3, 4, 5], [6]]
    """
    size = check_positive_int(batch_size, "batch_size")
    if isinstance(items, (str, bytes)):
        raise TypeError("make_batch needs a collection of items, not one string; wrap it in a list")
    it = iter(items)
    batches: list[list[T]] = []
    while batch := list(itertools.islice(it, size)):
        batches.append(batch)
    return batches


def choose_batch_size(
    n_items: int,
    workers: int,
    per_item_s: float | None = None,
    overhead_s: float = DEFAULT_TASK_OVERHEAD_S,
) -> int:
    """A batch size that keeps every worker busy and the executor's overhead small.

    Two rules, in this order of preference:

    1. **Balance**: at least ``MIN_TASKS_PER_WORKER`` (4) tasks per worker.
       Task durations vary (file sizes range 6-88 MB in the course), and with
       one task per worker the slowest task sets the finish time while the
       other workers idle. With >= 4 tasks each, a worker that drew a long task
       takes fewer others, and the idle tail is at most about a quarter of a
       worker's share. So the batch is at most the largest ``b`` with
       ``ceil(n_items / b) >= 4 * workers`` (about ``n_items / (4 * workers)``).
    2. **Overhead**: when the time per item is known, each batch does at least
       ``OVERHEAD_FACTOR`` (10) times the per-task overhead of the executor in
       work, so the overhead is at most ~10 %. So the batch is at least
       ``ceil(10 * overhead_s / per_item_s)``.

    When only rule 1 applies (time per item unknown) the largest batch that
    still gives 4 tasks per worker is returned: fewest tasks, least overhead.
    When both apply and agree, the smallest batch meeting rule 2 is returned:
    overhead is already small, so more, smaller tasks balance better and make
    the progress bar finer. When they conflict, the whole job is so short that
    one round of equal batches — one per worker, ``ceil(n_items / workers)``
    items each — finishes first, so the result is the smaller of that and the
    rule-2 size.

    Parameters
    ----------
    n_items : int
        Number of items to process (>= 0).
    workers : int
        Number of workers (>= 1).
    per_item_s : float, optional
        Measured time to process one item, in seconds (e.g. time one file serially).
    overhead_s : float
        Per-task overhead of the executor in seconds. Default
        ``DEFAULT_TASK_OVERHEAD_S`` (2.5 ms, measured for a local Parsl
        HighThroughputExecutor; on SLURM across nodes use a measured value).

    Returns
    -------
    int
        Items per batch, between 1 and ``max(n_items, 1)``.

    Examples
    --------
    >>> choose_batch_size(454, 11)          # 454 staged tiles, 11 workers
    10
    >>> choose_batch_size(454, 11, per_item_s=0.9)   # ~1 s per tile: no batching needed
    1
    """
    if isinstance(n_items, bool) or not isinstance(n_items, numbers.Integral) or n_items < 0:
        raise ValueError(f"n_items must be an integer >= 0, got {n_items!r}")
    workers = check_positive_int(workers, "workers")
    if not overhead_s >= 0:
        raise ValueError(f"overhead_s must be >= 0 seconds, got {overhead_s!r}")
    n = int(n_items)
    if n == 0:
        return 1
    k = MIN_TASKS_PER_WORKER * workers  # tasks wanted; ceil(n / b) >= k  <=>  b < n / (k - 1)
    balance_max = max(1, math.ceil(n / (k - 1)) - 1) if n >= k else 1
    if per_item_s is None:
        return balance_max
    if not per_item_s > 0:
        raise ValueError(f"per_item_s must be > 0 seconds, got {per_item_s!r}")
    overhead_min = max(1, math.ceil(OVERHEAD_FACTOR * overhead_s / per_item_s - 1e-9))
    if overhead_min <= balance_max:
        return min(overhead_min, n)
    return min(overhead_min, math.ceil(n / workers))
