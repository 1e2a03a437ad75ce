"""The timeline figure of a :class:`~grouputils.run.monitor.ResourceProfile` (CPU, memory, I/O).

It lives beside the monitor (the run layer) so that ``ResourceProfile.plot`` needs nothing
from the teaching layer; :mod:`grouputils.teaching.plotting` re-exports :func:`plot_profile`.
Matplotlib is imported on first use only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from grouputils.run.monitor import ResourceProfile

__all__ = ["new_axes", "plot_profile"]


def new_axes(nrows: int = 1, **kw: Any) -> Any:
    """``nrows`` stacked axes of a new figure, as a list."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, 1, squeeze=False, **kw)
    return list(axes[:, 0])


def plot_profile(profile: ResourceProfile, ax: Axes | Sequence[Axes] | None = None) -> list[Axes]:
    """Timeline of a :class:`~grouputils.run.monitor.ResourceProfile`, like Dask's ResourceProfiler.

    Top panel: CPU in cores (left axis; 2 = two cores fully busy) and resident
    memory in GB (right axis). Bottom panel: storage reads and writes in MB/s
    and bytes through read/write calls (dashed; includes cached reads, pipes
    and sockets), with system iowait in % on the right axis where the kernel
    reports it.

    Parameters
    ----------
    profile : ResourceProfile
        A finished profile.
    ax : Axes or sequence of two Axes, optional
        One Axes draws only the top panel; two draw both; default a new
        figure with both.

    Returns
    -------
    list of Axes
        The panels drawn (their right-hand twins are attached to them).
    """
    t = profile.table
    if ax is None:
        axes = new_axes(2, sharex=True, figsize=(8, 5.5))
    elif isinstance(ax, Sequence):
        axes = list(ax)
    else:
        axes = [ax]
    top = axes[0]
    top.plot(t["time_s"], t["cpu_cores"], color="C0", label="CPU")
    top.set_ylabel("CPU (cores)", color="C0")
    top.set_ylim(bottom=0)
    mem = top.twinx()
    mem.plot(t["time_s"], t["rss_bytes"] / 1e9, color="C1", label="memory")
    mem.set_ylabel("memory (GB)", color="C1")
    mem.set_ylim(bottom=0)
    s = profile.summary()
    top.set_title(
        f"{s['wall_s']:.1f} s wall, {s['cpu_s']:.1f} CPU-s "
        f"({s['mean_cpu_cores']:.2f} cores on average), peak {s['peak_rss_bytes'] / 1e9:.2f} GB"
    )
    if len(axes) > 1:
        io = axes[1]
        dt = t["dt_s"].where(t["dt_s"] > 0)
        io.plot(t["time_s"], t["read_bytes"] / dt / 1e6, color="C2", label="read (storage)")
        io.plot(t["time_s"], t["write_bytes"] / dt / 1e6, color="C3", label="write (storage)")
        io.plot(
            t["time_s"], t["read_chars"] / dt / 1e6, color="C2", ls="--", lw=0.8, label="read calls"
        )
        io.plot(
            t["time_s"],
            t["write_chars"] / dt / 1e6,
            color="C3",
            ls="--",
            lw=0.8,
            label="write calls",
        )
        io.set_ylabel("I/O (MB/s)")
        io.set_ylim(bottom=0)
        io.set_xlabel("time (s)")
        io.legend(loc="upper left", fontsize="small", ncols=2)
        if profile.iowait_available:
            iw = io.twinx()
            iw.plot(t["time_s"], 100 * t["iowait"], color="C7", lw=0.8)
            iw.set_ylabel("system iowait (%)", color="C7")
            iw.set_ylim(bottom=0)
        else:
            io.text(
                0.99,
                0.95,
                "iowait not reported here",
                transform=io.transAxes,
                ha="right",
                va="top",
                fontsize="small",
            )
    else:
        top.set_xlabel("time (s)")
    return axes
