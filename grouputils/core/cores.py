"""How many worker processes this process may use: enforced limits, caps and a fair share.

A shared course server must not let one learner take every core. Three kinds
of limit are read, and the smallest wins:

* what the operating system *enforces*: the CPUs this process may run on
  (``os.sched_getaffinity``, a cpuset) and the CPU quota of its cgroup and of
  every ancestor cgroup (cgroup v2 ``cpu.max``, cgroup v1
  ``cpu.cfs_quota_us``). JupyterHub's ``Spawner.cpu_limit`` (SystemdSpawner,
  DockerSpawner, KubeSpawner) and a systemd slice per user
  (``CPUQuota=`` in ``user-<uid>.slice``) both end up as such a quota;
* the instructor's cap: the ``GROUPUTILS_MAX_WORKERS`` environment variable
  and ``Config.max_workers``;
* on a machine with more than :data:`SHARED_MACHINE_CPUS` CPUs and none of the
  above, a *fair share* of ``cpus // FAIR_SHARE_USERS`` (at least 2), with a
  :class:`FairShareWarning` that says how to set the cap: such a machine is
  assumed to be shared, and a learner who has not been given a limit should
  not start a worker per core.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grouputils.core.config import Config
from grouputils.core.errors import ConfigError, GroupUtilsWarning

__all__ = [
    "ENV_CAP",
    "FAIR_SHARE_USERS",
    "SHARED_MACHINE_CPUS",
    "FairShareWarning",
    "WorkerCapWarning",
    "cgroup_cpu_limit",
    "cgroup_memory_limit",
    "check_positive_int",
    "clamp_workers",
    "core_limits",
    "env_cap",
    "fair_share",
    "usable_cores",
]

#: Environment variable holding the instructor's cap on workers.
ENV_CAP = "GROUPUTILS_MAX_WORKERS"
#: Machines with more CPUs than this are assumed to be shared.
SHARED_MACHINE_CPUS = 16
#: Without any limit, a shared machine's CPUs are divided by this many users
#: (8 groups on 88 cores: 11 each).
FAIR_SHARE_USERS = 8

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_PROC_CGROUP = Path("/proc/self/cgroup")
_NO_LIMIT = 2**60  # cgroup v1 reports "no limit" as a number near 2**63


class FairShareWarning(GroupUtilsWarning):
    """No limit is set on a shared machine: a fair share of the CPUs is used."""


class WorkerCapWarning(GroupUtilsWarning):
    """More workers were asked for than this machine or the instructor allows."""


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _v2_limit(d: Path) -> float | None:
    raw = _read_text(d / "cpu.max")
    fields = raw.split() if raw else []
    if len(fields) == 2 and fields[0] != "max":
        try:
            return int(fields[0]) / int(fields[1])
        except (ValueError, ZeroDivisionError):
            return None
    return None


def _v1_limit(d: Path) -> float | None:
    quota, period = _read_text(d / "cpu.cfs_quota_us"), _read_text(d / "cpu.cfs_period_us")
    try:
        q, p = int(quota or ""), int(period or "")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def _cgroup_dirs(
    controller: str, v1_mounts: tuple[str, ...], root: Path, proc_cgroup: Path
) -> Iterator[tuple[bool, Path]]:
    """``(is_v2, folder)`` of this process's cgroup and each ancestor that ``controller`` governs.

    The one parser of ``/proc/self/cgroup``: a line ``<id>:<controllers>:<path>``
    with empty controllers is the cgroup v2 unified hierarchy (mounted at
    ``root``); a v1 line listing ``controller`` lives under one of
    ``root / m`` for ``m`` in ``v1_mounts``. Innermost folder first; inside a
    container the cgroup namespace makes the mount point the container's own cgroup.
    """
    for line in (_read_text(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel_parts = [p for p in rel.strip("/").split("/") if p]
        if controllers == "":
            v2, bases = True, [root]
        elif controller in controllers.split(","):
            v2, bases = False, [root / m for m in v1_mounts]
        else:
            continue
        for base in bases:
            if not base.is_dir():
                continue
            for depth in range(len(rel_parts), -1, -1):
                yield v2, base.joinpath(*rel_parts[:depth])


def cgroup_cpu_limit(
    root: str | Path = _CGROUP_ROOT, proc_cgroup: str | Path = _PROC_CGROUP
) -> float | None:
    """CPU quota of this process's cgroup in cores, or None when unlimited or unknown.

    Reads cgroup v2 ``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``)
    and cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota ``-1`` =
    unlimited), in this process's own cgroup and every ancestor up to the
    mount point; the smallest quota wins, as in the kernel.

    Parameters
    ----------
    root : str or Path
        Mount point of the cgroup file system (``/sys/fs/cgroup``).
    proc_cgroup : str or Path
        This process's cgroup membership (``/proc/self/cgroup``).

    Returns
    -------
    float or None
        Cores (e.g. 1.5 for ``cpu.max`` = ``150000 100000``).
    """
    mounts = ("cpu", "cpu,cpuacct", "cpuacct,cpu")
    limits = [
        limit
        for v2, d in _cgroup_dirs("cpu", mounts, Path(root), Path(proc_cgroup))
        if (limit := (_v2_limit(d) if v2 else _v1_limit(d))) is not None
    ]
    return min(limits) if limits else None


def cgroup_memory_limit(
    root: str | Path = _CGROUP_ROOT, proc_cgroup: str | Path = _PROC_CGROUP
) -> int | None:
    """Memory limit of this process's cgroup in bytes, or None when unlimited or unknown.

    Reads cgroup v2 ``memory.max`` and cgroup v1 ``memory.limit_in_bytes`` in
    this process's cgroup and every ancestor; the smallest wins. ``max`` and
    v1's "no limit" (a number near 2**63) count as no limit.

    Parameters
    ----------
    root : str or Path
        Mount point of the cgroup file system (``/sys/fs/cgroup``).
    proc_cgroup : str or Path
        This process's cgroup membership (``/proc/self/cgroup``).

    Returns
    -------
    int or None
        Bytes.
    """
    limits: list[int] = []
    for v2, d in _cgroup_dirs("memory", ("memory",), Path(root), Path(proc_cgroup)):
        raw = _read_text(d / ("memory.max" if v2 else "memory.limit_in_bytes"))
        if raw is not None and raw.isdigit() and int(raw) < _NO_LIMIT:
            limits.append(int(raw))
    return min(limits) if limits else None


def env_cap() -> int | None:
    """The instructor's cap ``GROUPUTILS_MAX_WORKERS``, or None when unset or empty.

    Raises
    ------
    ConfigError
        If it is set to something other than a positive integer.
    """
    raw = os.environ.get(ENV_CAP)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"environment variable {ENV_CAP}={raw!r} must be a positive integer")
    return value


def fair_share(cpus: int) -> int | None:
    """The default share of a machine with ``cpus`` CPUs when nothing limits a learner.

    Parameters
    ----------
    cpus : int
        CPUs this process may run on.

    Returns
    -------
    int or None
        ``max(2, cpus // FAIR_SHARE_USERS)`` on a machine with more than
        :data:`SHARED_MACHINE_CPUS` CPUs; None (no share: use them all) on a
        smaller one, a laptop or a workstation.

    Examples
    --------
    >>> fair_share(88), fair_share(20), fair_share(16)
    (11, 2, None)
    """
    if cpus <= SHARED_MACHINE_CPUS:
        return None
    return max(2, cpus // FAIR_SHARE_USERS)


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def core_limits(
    config: Config | None = None,
    *,
    cpus: int | None = None,
    cgroup_root: str | Path = _CGROUP_ROOT,
    proc_cgroup: str | Path = _PROC_CGROUP,
) -> dict[str, int | None]:
    """Each limit on the number of worker processes, by source.

    Parameters
    ----------
    config : Config, optional
        Supplies the instructor's cap ``max_workers``.
    cpus : int, optional
        CPUs this process may run on (default: ``os.sched_getaffinity``).
    cgroup_root, proc_cgroup : str or Path
        Where the cgroup tree and this process's membership are read.

    Returns
    -------
    dict
        ``{'affinity': n, 'cgroup': n or None, 'environment': n or None,
        'config': n or None, 'fair_share': n or None}``: the CPUs this
        process may run on, the cgroup CPU quota in whole cores (rounded down,
        at least 1), ``GROUPUTILS_MAX_WORKERS``, ``config.max_workers``, and
        the fair share of a shared machine (only when the other three are all
        None). :func:`usable_cores` is the smallest.

    Raises
    ------
    ConfigError
        If ``GROUPUTILS_MAX_WORKERS`` is malformed.
    """
    affinity = _affinity() if cpus is None else int(cpus)
    quota = cgroup_cpu_limit(cgroup_root, proc_cgroup)
    limits: dict[str, int | None] = {
        "affinity": affinity,
        "cgroup": None if quota is None else max(1, math.floor(quota + 1e-9)),
        "environment": env_cap(),
        "config": None if config is None else config.max_workers,
    }
    unlimited = all(limits[k] is None for k in ("cgroup", "environment", "config"))
    limits["fair_share"] = fair_share(affinity) if unlimited else None
    return limits


def usable_cores(config: Config | None = None, **where: str | Path | int) -> int:
    """The number of worker processes this process should use at most.

    The smallest of :func:`core_limits`. When the only limit is the fair share
    of a shared machine, a :class:`FairShareWarning` says so and how to set a
    cap.

    Parameters
    ----------
    config : Config, optional
        A pipeline configuration whose ``max_workers`` caps the result.
    **where
        ``cpus``, ``cgroup_root``, ``proc_cgroup`` for :func:`core_limits`.

    Returns
    -------
    int
        At least 1.

    Raises
    ------
    ConfigError
        If ``GROUPUTILS_MAX_WORKERS`` is set to something other than a positive integer.
    """
    limits = core_limits(config, **where)  # type: ignore[arg-type]
    share = limits["fair_share"]
    if share is not None:
        warnings.warn(
            f"no per-learner CPU limit is set on this {limits['affinity']}-CPU machine: "
            f"using a fair share of {share} workers. Instructors: set "
            f"{ENV_CAP}=<workers per learner> in the kernel's environment, or enforce a CPU "
            "quota (JupyterHub Spawner.cpu_limit, or CPUQuota= on each user's systemd slice); "
            f"on a machine of your own, set {ENV_CAP}={limits['affinity']} to use every CPU",
            FairShareWarning,
            stacklevel=2,
        )
    return max(1, min(v for v in limits.values() if v is not None))


def check_positive_int(value: Any, name: str) -> int:
    """``value`` as an int if it is an integer >= 1 (``True`` and ``2.0`` are refused).

    Parameters
    ----------
    value : Any
        The value to check.
    name : str
        Its name in the error message.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        If ``value`` is not a positive integer.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def clamp_workers(n: int, config: Config | None = None, *, limit: int | None = None) -> int:
    """Return ``n`` workers, or fewer with a :class:`WorkerCapWarning` if ``n`` is too many.

    Parameters
    ----------
    n : int
        Workers asked for (>= 1).
    config : Config, optional
        Supplies the instructor's cap (see :func:`usable_cores`).
    limit : int, optional
        The cap to use instead of :func:`usable_cores`.

    Returns
    -------
    int
        ``min(n, limit)``.

    Raises
    ------
    ValueError
        If ``n`` is not a positive integer.
    """
    n = check_positive_int(n, "workers")
    cap = usable_cores(config) if limit is None else check_positive_int(limit, "limit")
    if n > cap:
        warnings.warn(
            f"{n} workers asked for but only {cap} may be used here "
            f"(limits: {core_limits(config)}); using {cap}",
            WorkerCapWarning,
            stacklevel=2,
        )
        return cap
    return n
