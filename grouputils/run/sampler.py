"""Counters of a process tree: this process, its descendants and the Parsl worker pools it watches.

One :class:`ProcessTreeSampler` reads, at each :meth:`~ProcessTreeSampler.sample`,
the CPU time, resident memory and I/O of every process in the tree and the
system-wide CPU states; :func:`grouputils.run.monitor.profile_resources`
calls it from a background thread.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence

import psutil

__all__ = ["ProcessTreeSampler"]


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


class ProcessTreeSampler:
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
        d_io = [0.0, 0.0, 0.0, 0.0]
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
