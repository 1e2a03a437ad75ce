"""Plan a run: fit cost against input size, project it to a whole data set and a cluster.

Pure functions (no I/O): :func:`fit_linear` fits ``y = a + b * size`` by least
squares with the standard errors and covariance of ``a`` and ``b``;
:func:`project` turns fits of seconds, peak memory, output bytes and output
files per input file into totals for ``n_files`` inputs, with wall time and
node-hours on ``nodes x cores_per_node`` workers and the largest number of
workers that fit a node's memory. The timing driver that measures a few
files is :mod:`grouputils.run.plan_timing`; the command is ``grouputils plan``.

Uncertainty: totals are sums of per-file predictions, so their standard
error is ``sqrt(n^2 var(a) + S^2 var(b) + 2 n S cov(a, b))`` for ``n`` files
of total size ``S`` (fit error only: the spread of single files around the
line averages out over many files). With two timed files the line passes
through both and the error is unknown (reported as NaN).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["LinearFit", "fit_linear", "Projection", "project", "format_projection", "choose_sample"]


@dataclasses.dataclass(frozen=True)
class LinearFit:
    """``y = intercept + slope * x`` with its uncertainty.

    Attributes
    ----------
    intercept, slope : float
        Least-squares coefficients.
    var_intercept, var_slope, cov : float
        Their variances and covariance (NaN with fewer than three points).
    residual_sd : float
        Standard deviation of single points about the line (NaN below three points).
    n : int
        Number of points.
    """

    intercept: float
    slope: float
    var_intercept: float
    var_slope: float
    cov: float
    residual_sd: float
    n: int

    def predict(self, x: float) -> float:
        """The fitted value at ``x``."""
        return self.intercept + self.slope * x

    def total(self, n: int, sum_x: float) -> tuple[float, float]:
        """Sum of the fitted values over ``n`` points of total ``sum_x``, and its standard error."""
        value = n * self.intercept + self.slope * sum_x
        var = n * n * self.var_intercept + sum_x * sum_x * self.var_slope + 2 * n * sum_x * self.cov
        return value, math.sqrt(var) if var >= 0 else math.nan

    def upper(self, x: float, k: float = 2.0) -> float:
        """A cautious value at ``x``: the fit plus ``k`` standard deviations of a single point."""
        se_mean = math.sqrt(
            max(0.0, self.var_intercept + x * x * self.var_slope + 2 * x * self.cov)
        )
        spread = math.hypot(se_mean, self.residual_sd)
        return self.predict(x) + (k * spread if math.isfinite(spread) else 0.0)


def fit_linear(x: Sequence[float], y: Sequence[float]) -> LinearFit:
    """Least-squares line through ``(x, y)``.

    Parameters
    ----------
    x, y : sequence of float
        At least two points; with one distinct ``x`` the slope is 0 and the
        intercept the mean (a flat line: no size dependence can be seen).

    Returns
    -------
    LinearFit

    Raises
    ------
    ValueError
        Fewer than two points, or lengths differ.
    """
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    if xa.shape != ya.shape or xa.size < 2:
        raise ValueError("fit_linear needs at least two (x, y) points of equal count")
    n = xa.size
    xm, ym = xa.mean(), ya.mean()
    sxx = float(((xa - xm) ** 2).sum())
    if sxx == 0:
        sd = float(ya.std(ddof=1))
        return LinearFit(float(ym), 0.0, sd * sd / n, 0.0, 0.0, sd, n)
    slope = float(((xa - xm) * (ya - ym)).sum() / sxx)
    intercept = float(ym - slope * xm)
    if n < 3:
        nan = math.nan
        return LinearFit(intercept, slope, nan, nan, nan, nan, n)
    resid = ya - (intercept + slope * xa)
    s2 = float((resid**2).sum() / (n - 2))
    var_slope = s2 / sxx
    var_intercept = s2 * (1.0 / n + xm * xm / sxx)
    cov = -xm * s2 / sxx
    return LinearFit(intercept, slope, var_intercept, var_slope, cov, math.sqrt(s2), n)


def choose_sample(sizes: Sequence[int], k: int) -> list[int]:
    """Indices of ``k`` files spanning the size range (smallest, largest and evenly between)."""
    if k < 1:
        raise ValueError("the sample needs at least one file")
    order = np.argsort(np.asarray(sizes), kind="stable")
    picks = np.unique(np.round(np.linspace(0, len(order) - 1, min(k, len(order)))).astype(int))
    return [int(order[i]) for i in picks]


@dataclasses.dataclass(frozen=True)
class Projection:
    """Projected totals of a run (seconds, bytes; ``*_se`` are standard errors)."""

    n_files: int
    input_bytes: float
    serial_s: float
    serial_se: float
    nodes: int
    cores_per_node: int
    workers_per_node: int
    wall_s: float
    wall_se: float
    node_hours: float
    node_hours_se: float
    memory_per_worker_mb: float
    node_memory_mb: float | None
    max_safe_workers_per_node: int | None
    output_bytes: float
    output_bytes_se: float
    output_files: float
    output_files_se: float
    largest_file_bytes: float


def project(
    seconds: LinearFit,
    peak_mb: LinearFit,
    out_bytes: LinearFit,
    out_files: LinearFit,
    *,
    n_files: int,
    input_bytes: float,
    largest_file_bytes: float,
    nodes: int = 1,
    cores_per_node: int = 1,
    node_memory_mb: float | None = None,
    memory_headroom: float = 0.8,
) -> Projection:
    """Project per-file fits (x = input bytes) to ``n_files`` inputs of ``input_bytes`` in total.

    Wall time assumes the files are spread evenly over ``nodes x workers``
    (tasks are many and short compared with the run); workers per node are
    ``cores_per_node``, lowered to what fits ``memory_headroom`` of
    ``node_memory_mb`` when a worker needs more than its share. Memory per
    worker is the cautious peak (fit + 2 sd) at the largest file.
    """
    if n_files < 1 or nodes < 1 or cores_per_node < 1:
        raise ValueError("n_files, nodes and cores_per_node must be positive")
    serial, serial_se = seconds.total(n_files, input_bytes)
    mem = max(0.0, peak_mb.upper(largest_file_bytes))
    safe = None
    workers = cores_per_node
    if node_memory_mb is not None and mem > 0:
        safe = max(0, int(node_memory_mb * memory_headroom // mem))
        workers = max(1, min(cores_per_node, safe))
    slots = nodes * workers
    wall, wall_se = serial / slots, serial_se / slots
    ob, ob_se = out_bytes.total(n_files, input_bytes)
    of, of_se = out_files.total(n_files, input_bytes)
    return Projection(
        n_files=n_files,
        input_bytes=input_bytes,
        serial_s=serial,
        serial_se=serial_se,
        nodes=nodes,
        cores_per_node=cores_per_node,
        workers_per_node=workers,
        wall_s=wall,
        wall_se=wall_se,
        node_hours=nodes * wall / 3600,
        node_hours_se=nodes * wall_se / 3600,
        memory_per_worker_mb=mem,
        node_memory_mb=node_memory_mb,
        max_safe_workers_per_node=safe,
        output_bytes=ob,
        output_bytes_se=ob_se,
        output_files=of,
        output_files_se=of_se,
        largest_file_bytes=largest_file_bytes,
    )


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"


def _pm(value: float, se: float, fmt: str = "{:,.1f}") -> str:
    return fmt.format(value) + ("" if not math.isfinite(se) else " ± " + fmt.format(se))


def format_projection(p: Projection) -> str:
    """The projection as the table ``grouputils plan`` prints (± one standard error of the fit)."""
    lines = [
        f"input                  {p.n_files:,} files, {p.input_bytes / 1e9:,.3f} GB "
        f"(largest {p.largest_file_bytes / 1e6:,.1f} MB)",
        f"serial time            {_pm(p.serial_s / 3600, p.serial_se / 3600, '{:,.2f}')} h "
        f"({_hms(p.serial_s)})",
        f"cluster                {p.nodes} nodes x {p.cores_per_node} cores, "
        f"{p.workers_per_node} workers per node",
        f"wall time              {_pm(p.wall_s / 3600, p.wall_se / 3600, '{:,.2f}')} h "
        f"({_hms(p.wall_s)})",
        f"node-hours             {_pm(p.node_hours, p.node_hours_se, '{:,.2f}')}",
        f"memory per worker      {p.memory_per_worker_mb:,.0f} MB "
        "(peak at the largest file, fit + 2 sd)",
    ]
    if p.max_safe_workers_per_node is not None and p.node_memory_mb is not None:
        lines.append(
            f"safe workers per node  {p.max_safe_workers_per_node} "
            f"(80 % of {p.node_memory_mb / 1e3:,.1f} GB node memory)"
        )
    lines += [
        f"output size            "
        f"{_pm(p.output_bytes / 1e9, p.output_bytes_se / 1e9, '{:,.3f}')} GB",
        f"output files           {_pm(p.output_files, p.output_files_se, '{:,.0f}')}",
    ]
    return "\n".join(lines)
