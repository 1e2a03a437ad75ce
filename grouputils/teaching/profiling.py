"""Measure where the time goes: resource timelines, worker sweeps and a CPU/I-O verdict.

The names the course uses, gathered in one place:

* :func:`profile_resources` / :class:`ResourceProfile` / :class:`Profiled`
  (CPU, memory and I/O of this process tree over time) live in
  :mod:`grouputils.run.monitor`, because the pipeline records one per step;
* :func:`sweep_workers` / :class:`SweepResult` (the same work at several worker
  counts) in :mod:`grouputils.teaching.sweeps`;
* :func:`classify_bound` / :class:`Verdict` (``'cpu-bound'``, ``'io-bound'``,
  ``'memory-bound'``, ``'too-few-tasks'`` or ``'overhead-bound'``, with the
  evidence in words) in :mod:`grouputils.teaching.verdict`.
"""

from __future__ import annotations

from grouputils.run.monitor import Profiled, ResourceProfile, profile_resources
from grouputils.teaching.sweeps import MAX_SWEEP_WORKERS, SweepResult, sweep_workers
from grouputils.teaching.verdict import Verdict, classify_bound

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
