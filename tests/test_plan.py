"""`grouputils plan`: the fit on synthetic timings, the projection, and the command on the samples."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from grouputils.run.plan import choose_sample, fit_linear, project
from test_pipeline import SAMPLES


def test_the_fit_and_its_covariance_agree_with_numpy_polyfit() -> None:
    rng = np.random.default_rng(7)
    x = rng.uniform(1e6, 4e8, 12)
    y = 5.0 + 2e-7 * x + rng.normal(0, 3.0, x.size)
    fit = fit_linear(x, y)
    (slope, intercept), cov = np.polyfit(x, y, 1, cov=True)
    assert fit.slope == pytest.approx(slope, rel=1e-9) and fit.intercept == pytest.approx(intercept, rel=1e-9)
    assert fit.var_slope == pytest.approx(cov[0, 0], rel=1e-9)
    assert fit.var_intercept == pytest.approx(cov[1, 1], rel=1e-9)
    assert fit.cov == pytest.approx(cov[0, 1], rel=1e-9)


def test_the_projected_total_lies_within_two_standard_errors_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(2024)
    a, b = 4.0, 3e-8  # seconds = 4 s + 30 ms per MB
    n_files, mean_size = 26_530, 4e8
    true_total = n_files * (a + b * mean_size)
    hits = 0
    trials = 400
    for _ in range(trials):
        x = np.sort(rng.uniform(5e6, 5e8, 5))  # five timed files spanning the range
        y = a + b * x + rng.normal(0, 1.5, x.size)
        total, se = fit_linear(x, y).total(n_files, n_files * mean_size)
        hits += abs(total - true_total) <= 2 * se
    # t with 3 degrees of freedom: +-2 se covers ~86 %; a wrong variance formula lands far outside
    assert 0.78 <= hits / trials <= 0.93, hits / trials


def test_points_on_a_line_fit_exactly_and_two_points_have_unknown_uncertainty() -> None:
    exact = fit_linear([1, 2, 3, 4], [3, 5, 7, 9])
    assert (exact.intercept, exact.slope) == pytest.approx((1, 2))
    assert exact.total(10, 25) == pytest.approx((60, 0), abs=1e-9)
    two = fit_linear([1, 3], [2, 6])
    assert two.slope == pytest.approx(2) and math.isnan(two.total(5, 10)[1])
    flat = fit_linear([2, 2, 2], [1, 2, 3])  # one size only: no size dependence can be fitted
    assert flat.slope == 0 and flat.intercept == pytest.approx(2)
    with pytest.raises(ValueError, match="at least two"):
        fit_linear([1], [1])


def test_the_projection_divides_serial_time_over_the_workers_that_fit_in_memory() -> None:
    one_second = fit_linear([1, 2, 3], [1, 1, 1])  # 1 s per file, whatever its size
    gigabyte = fit_linear([1, 2, 3], [1000, 1000, 1000])  # 1000 MB peak per worker
    out = fit_linear([1, 2, 3], [10, 20, 30])  # 10 bytes out per byte in
    files = fit_linear([1, 2, 3], [5, 5, 5])
    p = project(one_second, gigabyte, out, files, n_files=100, input_bytes=200, largest_file_bytes=3,
                nodes=2, cores_per_node=5, node_memory_mb=3000)
    assert p.serial_s == pytest.approx(100)
    assert p.max_safe_workers_per_node == 2 and p.workers_per_node == 2  # 80 % of 3000 MB / 1000 MB
    assert p.wall_s == pytest.approx(25) and p.node_hours == pytest.approx(2 * 25 / 3600)
    assert p.output_bytes == pytest.approx(2000) and p.output_files == pytest.approx(500)
    roomy = project(one_second, gigabyte, out, files, n_files=100, input_bytes=200, largest_file_bytes=3,
                    nodes=2, cores_per_node=5, node_memory_mb=64000)
    assert roomy.workers_per_node == 5 and roomy.wall_s == pytest.approx(10)


def test_the_sample_spans_the_size_range() -> None:
    sizes = [50, 10, 400, 30, 200, 20]
    picked = choose_sample(sizes, 3)
    assert sizes[picked[0]] == 10 and sizes[picked[-1]] == 400 and len(set(picked)) == 3
    assert sorted(choose_sample(sizes, 10)) == list(range(6))


def test_plan_on_the_samples_times_the_smallest_and_largest_and_writes_nothing(tmp_path: Path) -> None:
    before = sorted(p.name for p in SAMPLES.iterdir())
    res = subprocess.run(
        [sys.executable, "-m", "grouputils", "plan", str(SAMPLES), "--sample", "3", "--nodes", "2",
         "--cores-per-node", "4", "--node-memory-gb", "8", "--files", "26530", "--mean-size-mb", "400"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout
    sizes = {p.name: p.stat().st_size for p in SAMPLES.glob("*.gpkg")}
    timed = re.findall(r"^(scene\S+\.gpkg)\s", out, flags=re.M)
    assert len(timed) == 3
    assert min(sizes, key=sizes.get) in timed and max(sizes, key=sizes.get) in timed
    m = re.search(r"fit: seconds = ([-\d.]+) \+ ([-\d.]+) per MB", out)
    a, b = float(m.group(1)), float(m.group(2))
    serial_h = float(re.search(r"serial time\s+([-\d,.]+)", out).group(1).replace(",", ""))
    assert serial_h == pytest.approx(26_530 * (a + b * 400) / 3600, rel=0.01, abs=0.01)
    assert "26,530 files" in out and "node-hours" in out and "±" in out
    assert re.search(r"safe workers per node\s+\d+", out) and re.search(r"output files\s+[\d,]+", out)
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran
    assert sorted(p.name for p in SAMPLES.iterdir()) == before
