"""What limits a piece of work: a CPU / I-O / memory / task-count / overhead verdict on a sweep.

:func:`classify_bound` reads the table of a worker sweep
(:func:`grouputils.teaching.sweeps.sweep_workers`) and says what limits the
work: ``'cpu-bound'``, ``'io-bound'``, ``'memory-bound'``, ``'too-few-tasks'``
or ``'overhead-bound'``, with the evidence in words. It is a pure function of
the table: each rule is a small function that returns a :class:`Verdict` or
None, tried in order.

Why not just iowait? The kernel's iowait counter is system-wide and often
reads 0 in containers and on network file systems (and ``fsync`` is a no-op
on tmpfs), so the verdict rests mainly on each task's own ratio of CPU time
to elapsed time, measured inside the worker, and on how task times change as
workers are added; iowait is only supporting evidence.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Protocol

import pandas as pd

from grouputils.run.batches import MIN_TASKS_PER_WORKER, OVERHEAD_FACTOR

__all__ = ["BoundKind", "HasTable", "Verdict", "add_ratios", "classify_bound"]


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


class HasTable(Protocol):
    """Anything with a sweep ``table``, such as :class:`grouputils.teaching.sweeps.SweepResult`."""

    @property
    def table(self) -> pd.DataFrame: ...


def _tasks_bound(n_tasks: float, workers: float, base_workers: float) -> float:
    """Best speed-up ``n_tasks`` equal tasks allow at ``workers`` relative to ``base_workers``."""
    return math.ceil(n_tasks / base_workers) / math.ceil(n_tasks / workers)


def _val(row: pd.Series, col: str) -> float:
    v = row.get(col, math.nan)
    return float(v) if v is not None and not pd.isna(v) else math.nan


def classify_bound(sweep: HasTable | pd.DataFrame) -> Verdict:
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
    table = sweep if isinstance(sweep, pd.DataFrame) else sweep.table
    missing = {"workers", "n_tasks", "wall_s"} - set(table.columns)
    if missing:
        raise ValueError(f"sweep table lacks columns {sorted(missing)}")
    if table.empty:
        raise ValueError("an empty sweep cannot be classified")
    t = table.sort_values("workers").reset_index(drop=True)
    if not {"speedup", "efficiency", "tasks_per_worker"} <= set(t.columns):
        t = add_ratios(t)
    s = _Sweep.of(t)
    for rule in (_memory_rule, _too_few_tasks_rule, _overhead_rule, _io_wait_rule):
        verdict = rule(s)
        if verdict is not None:
            return verdict
    return _contention_rule(s) or _cpu_rule(s)


@dataclasses.dataclass(frozen=True)
class _Sweep:
    """What every rule reads: the rows of the smallest (``base``) and largest (``last``) counts."""

    t: pd.DataFrame
    base: pd.Series
    last: pd.Series
    wb: float
    wl: float
    speed: float
    eff: float
    scaling: str

    @classmethod
    def of(cls, t: pd.DataFrame) -> _Sweep:
        base, last = t.iloc[0], t.iloc[-1]
        wb, wl = float(base["workers"]), float(last["workers"])
        speed, eff = float(last["speedup"]), float(last["efficiency"])
        scaling = (
            f"{speed:.1f}x speed-up at {wl:g} workers over {wb:g} (efficiency {eff:.0%})"
            if len(t) > 1
            else f"only {wb:g} worker(s) measured"
        )
        return cls(t, base, last, wb, wl, speed, eff, scaling)

    @property
    def several(self) -> bool:
        return len(self.t) > 1


def _memory_rule(s: _Sweep) -> Verdict | None:
    """1. Peak memory near the limit, or the system swapped."""
    t = s.t
    if not {"peak_rss_bytes", "mem_total_bytes"} <= set(t.columns):
        return None
    frac = t["peak_rss_bytes"] / t["mem_total_bytes"].where(t["mem_total_bytes"] > 0)
    swapped = t["swap_bytes"] if "swap_bytes" in t.columns else pd.Series(0.0, index=t.index)
    big_swap = swapped > 0.01 * t["mem_total_bytes"]
    if not ((frac >= MEMORY_FRACTION).any() or big_swap.any()):
        return None
    i = int(frac.fillna(0).to_numpy().argmax())  # the first largest (the index is 0..n-1)
    r = t.iloc[i]
    text = (
        f"peak memory {r['peak_rss_bytes'] / 1e9:.1f} GB at {r['workers']:g} workers is "
        f"{frac.iloc[i]:.0%} of the {r['mem_total_bytes'] / 1e9:.1f} GB available"
    )
    if big_swap.any():
        text += f"; the system swapped {swapped.max() / 1e9:.1f} GB"
    return Verdict(
        "memory-bound",
        text + f" ({s.scaling}). More workers would swap or be killed: use fewer workers "
        "or smaller chunks per task.",
    )


def _too_few_tasks_rule(s: _Sweep) -> Verdict | None:
    """2. Too few tasks per worker, and the speed-up reached what that count allows."""
    n_tasks = float(s.last["n_tasks"])
    bound = _tasks_bound(n_tasks, s.wl, s.wb)
    ideal = s.wl / s.wb
    few = n_tasks < MIN_TASKS_PER_WORKER * s.wl and bound < 0.8 * ideal
    if not (s.several and few and s.speed >= 0.75 * bound):
        return None
    rounds = math.ceil(n_tasks / s.wl)
    n_items = _val(s.last, "n_items")
    wanted = MIN_TASKS_PER_WORKER * s.wl
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
        f"{n_tasks:g} tasks on {s.wl:g} workers need {rounds} round(s), so at most "
        f"{bound:.1f}x speed-up over {s.wb:g} worker(s) is possible (ideal {ideal:g}x); measured "
        f"{s.speed:.1f}x. The plateau comes from the task count, not from the work: {advice}.",
    )


def _overhead_rule(s: _Sweep) -> Verdict | None:
    """3. Workers mostly outside tasks, with poor efficiency."""
    busy = _val(s.last, "busy_fraction")
    if math.isnan(busy) or busy >= LOW_BUSY or s.eff >= GOOD_EFFICIENCY:
        return None
    task_s = _val(s.last, "task_s_mean")
    per_task = float(s.last["wall_s"]) * s.wl * (1 - busy) / float(s.last["n_tasks"])
    return Verdict(
        "overhead-bound",
        f"at {s.wl:g} workers, workers spent only {busy:.0%} of the run inside tasks; a task "
        f"lasts {task_s * 1e3:.1f} ms on average but costs ~{per_task * 1e3:.1f} ms of "
        f"executor overhead ({s.scaling}). Put more items in each task (choose_batch_size) "
        f"so each runs >= {OVERHEAD_FACTOR}x longer than the overhead.",
    )


# 4./5. CPU or I/O. A task's elapsed time = computing + waiting for a core + waiting for
# everything else (I/O, sleep). Only the last part makes it I/O-bound, so the CPU share is
# taken over the time the task was not queued for a core.
def _cpu_share(row: pd.Series) -> tuple[float, float]:
    """``(CPU share of the time not queued for a core, share queued)``; NaN where unknown."""
    ratio, queue = _val(row, "task_cpu_ratio"), _val(row, "task_queue_ratio")
    if math.isnan(ratio):
        return _val(row, "cpu_util"), math.nan
    if math.isnan(queue):
        return ratio, math.nan
    return min(ratio / max(1.0 - queue, 1e-9), 1.0), queue


def _share_source(s: _Sweep) -> str:
    if not math.isnan(_val(s.base, "task_queue_ratio")) and not math.isnan(
        _val(s.base, "task_cpu_ratio")
    ):
        return "task CPU time / time not queued for a core"
    if not math.isnan(_val(s.base, "task_cpu_ratio")):
        return "task CPU time / elapsed time"
    return "CPU use per worker"


def _io_note(s: _Sweep) -> str:
    iow = _val(s.last, "iowait")
    if math.isnan(iow):
        return " The kernel does not report iowait here."
    if iow >= 0.05:
        return f" The system reported {iow:.0%} iowait, which agrees."
    return (
        f" iowait read {iow:.0%}, which in containers and on network file systems "
        "does not rule I/O out."
    )


def _io_wait_rule(s: _Sweep) -> Verdict | None:
    """4a. At the smallest count, tasks computed less than half of their unqueued time."""
    ratio_b, _ = _cpu_share(s.base)
    if math.isnan(ratio_b):
        raise ValueError(
            "the sweep has neither task_cpu_ratio nor cpu_util: cannot tell CPU from I/O"
        )
    if ratio_b >= LOW_CPU_RATIO:
        return None
    return Verdict(
        "io-bound",
        f"at {s.wb:g} worker(s) each task computed only {ratio_b:.0%} of its time "
        f"({_share_source(s)}); the rest it waited — for files, the network or a sleep "
        f"({s.scaling}).{_io_note(s)}",
    )


def _core_limit_reason(s: _Sweep, queue_worst: float) -> str | None:
    """Why the cores, not the work, limited the speed-up (or None if nothing says so)."""
    cores, other = _val(s.last, "cores"), _val(s.last, "other_cpu_cores")
    oversubscribed = not math.isnan(cores) and s.wl > cores
    free = cores - other if not (math.isnan(cores) or math.isnan(other)) else math.nan
    others_busy = not math.isnan(free) and free < 0.9 * s.wl
    queued = not math.isnan(queue_worst) and queue_worst >= QUEUED
    if oversubscribed:
        why = f"{s.wl:g} workers on {cores:g} usable cores take turns on them"
    elif others_busy:
        why = (
            f"other processes kept {other:.1f} of the {cores:g} usable cores busy, "
            f"leaving {max(free, 0):.1f} for {s.wl:g} workers"
        )
    elif queued:
        return (
            f"tasks spent up to {queue_worst:.0%} of their time ready to run but "
            "waiting for a free core"
        )
    else:
        return None
    if queued:
        why += f"; tasks spent up to {queue_worst:.0%} of their time waiting for a core"
    return why


def _contention_rule(s: _Sweep) -> Verdict | None:
    """4b./5a. Poor efficiency or queueing: the cores, a shared device, or shared caches."""
    (ratio_b, queue_b), (ratio_l, queue_l) = _cpu_share(s.base), _cpu_share(s.last)
    queue_worst = max((q for q in (queue_b, queue_l) if not math.isnan(q)), default=math.nan)
    if not (s.several and (s.eff < GOOD_EFFICIENCY or queue_worst >= QUEUED)):
        return None
    why = _core_limit_reason(s, queue_worst)
    if why is not None:
        return Verdict(
            "cpu-bound",
            f"tasks computed {ratio_b:.0%} of their time at {s.wb:g} worker(s), but {why} "
            f"({s.scaling}). The limit is the cores available, not the work.",
        )
    slowdown = _val(s.last, "task_s_mean") / _val(s.base, "task_s_mean")
    ratio_fell = not math.isnan(ratio_l) and ratio_l < 0.8 * ratio_b
    if not math.isnan(slowdown) and slowdown >= SLOWDOWN and ratio_fell:
        return Verdict(
            "io-bound",
            f"tasks took {slowdown:.1f}x longer at {s.wl:g} workers than at {s.wb:g} while their "
            f"CPU share fell from {ratio_b:.0%} to {ratio_l:.0%}, with no more workers than "
            f"cores: they queue for a shared device, usually the disk or file system "
            f"({s.scaling}).{_io_note(s)}",
        )
    return Verdict(
        "cpu-bound",
        f"tasks computed {ratio_b:.0%} of their time, but efficiency fell to {s.eff:.0%} at "
        f"{s.wl:g} workers with tasks {slowdown:.1f}x slower: cores share caches, memory "
        f"bandwidth and turbo clock, so CPU work does not scale perfectly ({s.scaling}).",
    )


def _cpu_rule(s: _Sweep) -> Verdict:
    """5b. Tasks compute most of the time and nothing held them back."""
    ratio_b, _ = _cpu_share(s.base)
    if not s.several:
        return Verdict(
            "cpu-bound",
            f"tasks computed {ratio_b:.0%} of their time ({_share_source(s)}); {s.scaling}, so "
            "how it scales is not known yet: sweep more worker counts.",
        )
    return Verdict(
        "cpu-bound",
        f"tasks computed {ratio_b:.0%} of their time ({_share_source(s)}) and the work scaled: "
        f"{s.scaling}. More cores make it faster.",
    )


def add_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """The sweep table by ``workers``, with ``speedup``, ``efficiency`` and ``tasks_per_worker``.

    Parameters
    ----------
    table : pandas.DataFrame
        Needs ``workers``, ``wall_s`` and ``n_tasks``.

    Returns
    -------
    pandas.DataFrame
        A new table; the smallest worker count is the base of the ratios.
    """
    t = table.sort_values("workers").reset_index(drop=True)
    base = t.iloc[0]
    t["speedup"] = base["wall_s"] / t["wall_s"]
    t["efficiency"] = t["speedup"] / (t["workers"] / base["workers"])
    t["tasks_per_worker"] = t["n_tasks"] / t["workers"]
    return t
