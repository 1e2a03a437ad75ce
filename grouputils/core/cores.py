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
import os
import warnings
from pathlib import Path

from grouputils.core.config import Config
from grouputils.core.errors import ConfigError, GroupUtilsWarning

__all__ = [
    "ENV_CAP",
    "FAIR_SHARE_USERS",
    "SHARED_MACHINE_CPUS",
    "FairShareWarning",
    "cgroup_cpu_limit",
    "core_limits",
    "env_cap",
    "fair_share",
    "usable_cores",
]

#: Environment variable holding the instructor's cap on workers.
ENV_CAP = "GROUPUTILS_MAX_WORKERS"
#: Machines with more CPUs than this are assumed to be shared.
SHARED_MACHINE_CPUS = 16
#: Without any limit, a shared machine's CPUs are divided by this many users (8 groups on 88 cores: 11 each).
FAIR_SHARE_USERS = 8

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_PROC_CGROUP = Path("/proc/self/cgroup")


class FairShareWarning(GroupUtilsWarning):
    """No limit is set on a shared machine: a fair share of the CPUs is used."""


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
    root, text = Path(root), _read_text(Path(proc_cgroup)) or ""
    limits: list[float] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel_parts = [p for p in rel.strip("/").split("/") if p]
        if controllers == "":  # cgroup v2 unified hierarchy
            bases, read = [root], _v2_limit
        elif "cpu" in controllers.split(","):
            bases, read = [root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"], _v1_limit
        else:
            continue
        for base in bases:
            if not base.is_dir():
                continue
            # the process's cgroup and its ancestors (inside a container the
            # cgroup namespace makes the mount point the container's own cgroup)
            for depth in range(len(rel_parts), -1, -1):
                limit = read(base.joinpath(*rel_parts[:depth]))
                if limit is not None:
                    limits.append(limit)
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
            f"no per-learner CPU limit is set on this {limits['affinity']}-CPU machine: using a fair share of "
            f"{share} workers. Instructors: set {ENV_CAP}=<workers per learner> in the kernel's environment, "
            "or enforce a CPU quota (JupyterHub Spawner.cpu_limit, or CPUQuota= on each user's systemd slice); "
            f"on a machine of your own, set {ENV_CAP}={limits['affinity']} to use every CPU",
            FairShareWarning,
            stacklevel=2,
        )
    return max(1, min(v for v in limits.values() if v is not None))
