"""What a hidden test hands the grader about a learner's Parsl program (kernel side).

The trusted checks (:mod:`grouputils.teaching.grading`) never see the
learner's kernel: a hidden test cell records plain facts with
:func:`grouputils.teaching.grading.record`, and the checks judge them in a
fresh interpreter. These functions gather those facts:

* :func:`parsl_facts` — per future: an ``AppFuture``? done, failed, its
  result, the executors its tasks ran on, when it was invoked and returned;
* :func:`config_facts` — what a learner's ``make_config(workers)`` builds;
* :func:`parsl_leftovers` — whether the runs were shut down and which Parsl
  processes are still alive (psutil); then it shuts them down, so a missing
  shutdown costs only its own points.

They judge nothing themselves.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from grouputils.teaching.grading import _jsonable

__all__ = ["parsl_facts", "config_facts", "parsl_leftovers"]


def _leaves(future: Any) -> list[Any]:
    """The futures of the tasks that did the work: a join app's stands for those it returned."""
    joins = future.task_record.get("joins")
    if joins is None:
        return [future]
    joins = joins if isinstance(joins, list) else [joins]
    return [leaf for j in joins for leaf in _leaves(j)]


def _stamp(moment: Any) -> float | None:
    return None if moment is None else float(moment.timestamp())


def parsl_facts(futures: Iterable[Any]) -> list[dict[str, Any]]:
    """What a hidden test records about Parsl futures; the trusted checks judge it.

    Parameters
    ----------
    futures : iterable
        What the learner kept as the futures of a run (anything: a non-future
        is recorded as such).

    Returns
    -------
    list of dict
        One per item: ``app_future``, and for an ``AppFuture`` its app's name,
        ``done``, ``error`` (repr or None), ``result``, the ``executors`` the
        tasks behind it ran on (label, class name, ``max_workers_per_node``,
        an id per executor object), the id of its DataFlowKernel, and the
        POSIX times it was ``invoked`` and ``returned`` (Parsl's task record).
    """
    from parsl.dataflow.futures import AppFuture

    out: list[dict[str, Any]] = []
    for f in futures:
        if not isinstance(f, AppFuture):
            out.append({"app_future": False, "repr": repr(f)[:200]})
            continue
        rec = f.task_record
        done = f.done()
        error = f.exception() if done else None
        executors = []
        for leaf in _leaves(f):
            leaf_rec = leaf.task_record
            ex = leaf_rec["dfk"].executors.get(leaf_rec["executor"])
            executors.append(
                {
                    "label": leaf_rec["executor"],
                    "type": type(ex).__name__,
                    "max_workers_per_node": getattr(ex, "max_workers_per_node", None),
                    "id": id(ex),
                }
            )
        out.append(
            {
                "app_future": True,
                "app": rec.get("func_name"),
                "done": done,
                "error": None if error is None else repr(error)[:500],
                "result": _jsonable(f.result()) if done and error is None else None,
                "executors": executors,
                "dfk": id(rec["dfk"]),
                "invoked": _stamp(rec.get("time_invoked")),
                "returned": _stamp(rec.get("time_returned")),
            }
        )
    return out


def config_facts(
    make_config: Callable[[int], Any], workers: Sequence[int] = (1, 2)
) -> dict[str, Any]:
    """What a hidden test records about a learner's ``make_config(workers)``.

    Parameters
    ----------
    make_config : callable
        The learner's function.
    workers : sequence of int
        Worker counts to call it with.

    Returns
    -------
    dict
        ``fresh`` (two calls give two objects) and, per worker count, the
        class names of the config, its executors and their providers,
        ``max_workers_per_node``, ``init_blocks`` and ``max_blocks``.
    """
    facts: dict[str, Any] = {"fresh": make_config(workers[0]) is not make_config(workers[0])}
    for w in workers:
        cfg = make_config(w)
        executors = []
        for ex in getattr(cfg, "executors", ()) or ():
            provider = getattr(ex, "provider", None)
            executors.append(
                {
                    "type": type(ex).__name__,
                    "max_workers_per_node": getattr(ex, "max_workers_per_node", None),
                    "provider": type(provider).__name__,
                    "init_blocks": getattr(provider, "init_blocks", None),
                    "max_blocks": getattr(provider, "max_blocks", None),
                }
            )
        facts[str(w)] = {"type": type(cfg).__name__, "executors": executors}
    return facts


def _parsl_processes(run_dirs: list[str]) -> list[str]:
    """Command lines of this kernel's interchange and of ``run_dirs``' worker pools still alive."""
    import psutil

    left = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if p.pid == os.getpid():
                continue
            if ("HTEX interchange" in cmd and p.ppid() == os.getpid()) or (
                "process_worker_pool" in cmd and any(d in cmd for d in run_dirs)
            ):
                left.append(cmd[:300])
        except psutil.Error:  # gone meanwhile
            continue
    return left


def parsl_leftovers(futures: Iterable[Any], *, wait_s: float = 15.0) -> dict[str, Any]:
    """Record whether the runs behind ``futures`` were shut down, then shut them down.

    Called by a hidden test after the learner's shutdown; the shutdown that
    follows the recording keeps a missing one from costing the next
    exercise its points too.

    Parameters
    ----------
    futures : iterable
        The futures of the runs to look at (non-futures are ignored).
    wait_s : float
        Seconds to let worker processes of a cleaned-up run exit.

    Returns
    -------
    dict
        ``runs`` (DataFlowKernels seen), ``not_shut_down`` (of them, never
        cleaned up) and ``left`` (command lines of Parsl processes still alive).
    """
    import parsl
    from parsl.dataflow.futures import AppFuture

    dfks = {
        id(f.task_record["dfk"]): f.task_record["dfk"] for f in futures if isinstance(f, AppFuture)
    }
    not_cleaned = [d for d in dfks.values() if not d.cleanup_called]
    run_dirs = [os.path.abspath(d.run_dir) for d in dfks.values()]
    deadline = time.monotonic() + wait_s
    left = _parsl_processes(run_dirs)
    while left and not not_cleaned and time.monotonic() < deadline:
        time.sleep(0.3)
        left = _parsl_processes(run_dirs)
    for d in not_cleaned:
        d.cleanup()
    parsl.clear()
    return {"runs": len(dfks), "not_shut_down": len(not_cleaned), "left": left}
