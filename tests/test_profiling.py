"""Resource profiles measure the whole process tree, sweeps time warm executors, verdicts follow the evidence.

Work sent to worker processes uses standard-library functions
(``math.factorial`` computes, ``time.sleep`` waits): workers import a task's
function by name, and the standard library is importable everywhere, unlike a
function defined in this test module.
"""

from __future__ import annotations

import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from grouputils.core.cores import WorkerCapWarning
from grouputils.run.executors import TaskError
from grouputils.teaching.profiling import (
    Profiled,
    ResourceProfile,
    SweepResult,
    Verdict,
    classify_bound,
    profile_resources,
    sweep_workers,
)
from grouputils.teaching.sweeps import _default_worker_counts

ENV = "GROUPUTILS_MAX_WORKERS"

# A child that holds ~200 MB, burns ~0.6 s of CPU, writes then reads 20 MB, and idles 0.4 s.
CHILD = r"""
import os, sys, time
block = bytearray(200_000_000)
for i in range(0, len(block), 4096):
    block[i] = 1
t = time.process_time()
x = 0
while time.process_time() - t < 0.6:
    x += 1
path = sys.argv[1]
with open(path, "wb") as f:
    f.write(os.urandom(20_000_000))
    f.flush()
    os.fsync(f.fileno())
with open(path, "rb") as f:
    while f.read(1 << 20):
        pass
time.sleep(0.4)
"""


@pytest.fixture(autouse=True)
def _no_instructor_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)


@pytest.fixture(scope="module")
def child_profile(tmp_path_factory: pytest.TempPathFactory) -> tuple[ResourceProfile, float, int]:
    """Profile of a block that runs CHILD; also the child's CPU seconds (from the kernel) and our RSS."""
    target = tmp_path_factory.mktemp("io") / "blob.bin"
    own_rss = psutil.Process().memory_info().rss
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with profile_resources(interval=0.05) as prof:
        subprocess.run([sys.executable, "-c", CHILD, str(target)], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return prof, child_cpu, own_rss


def test_profile_counts_the_cpu_time_of_child_processes(child_profile) -> None:
    prof, child_cpu, _ = child_profile
    assert child_cpu > 0.5
    # all of the child's CPU falls inside sampled intervals (it idles before exiting);
    # the rest is this process's own small share
    assert child_cpu * 0.9 <= prof.cpu_s <= child_cpu * 1.1 + 0.3
    assert prof.table["cpu_cores"].max() > 0.5


def test_profile_memory_includes_the_child(child_profile) -> None:
    prof, _, own_rss = child_profile
    assert prof.peak_rss_bytes >= own_rss + 180_000_000
    assert prof.table["n_processes"].max() >= 2


def test_profile_counts_bytes_written_and_read_by_children(child_profile) -> None:
    prof, _, _ = child_profile
    s = prof.summary()
    assert s["write_chars"] >= 20_000_000
    assert s["read_chars"] >= 20_000_000


def test_profile_totals_agree_with_its_table(child_profile) -> None:
    prof, _, _ = child_profile
    t, s = prof.table, prof.summary()
    assert s["cpu_s"] == pytest.approx((t["cpu_cores"] * t["dt_s"]).sum())
    assert s["peak_rss_bytes"] == t["rss_bytes"].max()
    assert s["wall_s"] == pytest.approx(t["dt_s"].sum(), rel=0.2, abs=0.05)
    assert t["time_s"].is_monotonic_increasing
    assert s["wall_s"] > 0.9  # the child ran >= 1 s of CPU, I/O and sleep


def test_iowait_is_flagged_when_the_kernel_does_not_report_it(child_profile) -> None:
    prof, _, _ = child_profile
    reported = "iowait" in psutil.cpu_times()._fields
    assert prof.iowait_available is reported
    iow = prof.table["iowait"]
    if reported:
        assert iow.between(0, 1).all()
    else:
        assert iow.isna().all() and math.isnan(prof.summary()["iowait_mean"])


def test_a_block_shorter_than_the_interval_still_has_a_complete_profile() -> None:
    with profile_resources(interval=5.0) as prof:
        pass
    assert len(prof.table) == 1
    assert not math.isnan(prof.wall_s) and prof.wall_s < 5.0


def test_processes_that_end_between_samples_do_not_break_profiling() -> None:
    with profile_resources(interval=0.01) as prof:
        for _ in range(15):
            subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert len(prof.table) >= 2
    assert prof.table["cpu_cores"].notna().all()


def test_decorator_returns_the_result_and_its_profile() -> None:
    @profile_resources(interval=0.02)
    def slow_square(x: int) -> int:
        time.sleep(0.1)
        return x * x

    out = slow_square(7)
    assert isinstance(out, Profiled)
    result, prof = out
    assert result == 49
    assert prof.wall_s >= 0.1

    @profile_resources
    def bare() -> str:
        return "ok"

    assert bare().result == "ok"


def test_profile_resources_refuses_a_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="interval"):
        profile_resources(interval=0)


# ------------------------------------------------------------------ sweeps
def test_default_worker_counts_double_up_to_the_cap_and_include_it() -> None:
    assert _default_worker_counts(15) == [1, 2, 4, 8, 15]
    assert _default_worker_counts(8) == [1, 2, 4, 8]
    assert _default_worker_counts(2) == [1, 2]
    assert _default_worker_counts(1) == [1]


def test_sweep_clamps_counts_above_the_cap_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "1")
    with pytest.warns(WorkerCapWarning, match="allow_more"):
        clamped = sweep_workers(abs, [-1, -2], workers=[1, 2], executor="process", progress=False)
    assert clamped.table["workers"].tolist() == [1]
    with pytest.warns(WorkerCapWarning, match="oversubscription"):
        more = sweep_workers(abs, [-1, -2], workers=[1, 2], executor="process", allow_more=True,
                             progress=False)
    assert more.table["workers"].tolist() == [1, 2]


@pytest.fixture(scope="module")
def process_sweeps() -> dict[str, SweepResult]:
    """A computing and a waiting workload, each swept over 1 and 2 process workers."""
    return {
        "compute": sweep_workers(math.factorial, [40000] * 12, workers=[1, 2], executor="process",
                                 progress=False),
        "wait": sweep_workers(time.sleep, [0.05] * 12, workers=[1, 2], executor="process",
                              progress=False),
    }


def test_sweep_table_reports_each_count_with_startup_kept_apart(process_sweeps) -> None:
    t = process_sweeps["wait"].table
    assert t["workers"].tolist() == [1, 2]
    assert (t["n_tasks"] == 12).all() and (t["n_items"] == 12).all()
    assert t["tasks_per_worker"].tolist() == [12, 6]
    assert (t["startup_s"] > 0).all()
    # 12 sleeps of 0.05 s on one worker take >= 0.6 s of wall time, measured without start-up
    assert t.loc[0, "wall_s"] >= 0.6
    assert t.loc[0, "speedup"] == 1.0
    assert t.loc[1, "speedup"] == pytest.approx(t.loc[0, "wall_s"] / t.loc[1, "wall_s"])
    assert t.loc[1, "efficiency"] == pytest.approx(t.loc[1, "speedup"] / 2)
    assert (t["workers_used"] <= t["workers"]).all()
    assert t["task_s_mean"].between(0.05, 0.5).all()


def test_waiting_tasks_are_io_bound_and_computing_tasks_cpu_bound(process_sweeps) -> None:
    wait, compute = process_sweeps["wait"], process_sweeps["compute"]
    assert wait.table.loc[0, "task_cpu_ratio"] < 0.2
    # on a busy machine a computing task also waits for a core; that wait is not I/O
    c = compute.table.loc[0]
    assert c["task_cpu_ratio"] / (1 - c["task_queue_ratio"]) > 0.6
    assert classify_bound(wait).kind == "io-bound"
    assert classify_bound(compute).kind == "cpu-bound"


def test_a_failing_task_in_a_sweep_names_its_item() -> None:
    with pytest.raises(TaskError, match="item -1"):
        sweep_workers(math.factorial, [3, -1], workers=[1], executor="process", progress=False)


def test_parsl_sweep_profiles_the_detached_worker_pool(tmp_path: Path) -> None:
    sweep = sweep_workers(math.factorial, [40000] * 8, workers=[1, 2], executor="parsl",
                          run_dir=tmp_path, progress=False)
    t = sweep.table
    assert t["workers"].tolist() == [1, 2] and sweep.executor == "parsl"
    assert (t["startup_s"] > 0).all()
    # this process + interchange + worker pool + 2 workers; the pool is not our child
    assert sweep.profiles[2].table["n_processes"].max() >= 5
    # the profile sees at least the CPU time the tasks measured inside the workers
    task_cpu = t.loc[0, "task_cpu_ratio"] * t.loc[0, "task_s_mean"] * t.loc[0, "n_tasks"]
    assert sweep.profiles[1].cpu_s >= 0.8 * task_cpu


# ------------------------------------------------------------------ verdicts on synthetic tables
def _sweep(rows: list[dict]) -> SweepResult:
    """A sweep table with benign defaults (plenty of memory and tasks, no other load)."""
    defaults = {"cores": 16, "n_tasks": 400, "n_items": 400, "startup_s": 3.0, "task_cpu_ratio": 0.97,
                "busy_fraction": 0.97, "iowait": 0.0, "other_cpu_cores": 0.0,
                "peak_rss_bytes": 2e9, "mem_total_bytes": 64e9, "swap_bytes": 0.0}
    t = pd.DataFrame([{**defaults, **r} for r in rows])
    t["speedup"] = t["wall_s"].iloc[0] / t["wall_s"]
    t["efficiency"] = t["speedup"] / (t["workers"] / t["workers"].iloc[0])
    t["tasks_per_worker"] = t["n_tasks"] / t["workers"]
    if "task_s_mean" not in t:
        t["task_s_mean"] = 0.5
    return SweepResult(table=t)


def test_near_ideal_scaling_of_computing_tasks_is_cpu_bound() -> None:
    v = classify_bound(_sweep([{"workers": w, "wall_s": 100 / w / (1 - 0.02 * i)} for i, w in
                              enumerate([1, 2, 4, 8])]))
    assert v.kind == "cpu-bound" and "scaled" in v.evidence


def test_tasks_that_mostly_wait_are_io_bound_even_with_zero_iowait() -> None:
    v = classify_bound(_sweep([{"workers": w, "wall_s": 100 / w, "task_cpu_ratio": 0.15} for w in [1, 2, 4]]))
    assert v.kind == "io-bound"
    assert "15%" in v.evidence and "does not rule I/O out" in v.evidence


def test_tasks_that_slow_down_as_workers_share_a_device_are_io_bound() -> None:
    rows = [
        {"workers": 1, "wall_s": 100, "task_s_mean": 0.25, "task_cpu_ratio": 0.95, "iowait": 0.02},
        {"workers": 4, "wall_s": 50, "task_s_mean": 0.5, "task_cpu_ratio": 0.48, "iowait": 0.3},
        {"workers": 8, "wall_s": 40, "task_s_mean": 0.8, "task_cpu_ratio": 0.30, "iowait": 0.4},
    ]
    v = classify_bound(_sweep(rows))
    assert v.kind == "io-bound" and "3.2x longer" in v.evidence and "40% iowait" in v.evidence


def test_tasks_queued_for_a_core_are_cpu_bound_not_io_bound() -> None:
    # a CPU task on a crowded machine: 35% computing, 60% waiting for a core, 5% anything else
    rows = [{"workers": w, "wall_s": 100 / w * 1.1, "task_cpu_ratio": 0.35, "task_queue_ratio": 0.6}
            for w in [1, 2]]
    rows[0]["wall_s"] = 100
    v = classify_bound(_sweep(rows))
    assert v.kind == "cpu-bound" and "60% of their time" in v.evidence and "waiting" in v.evidence


def test_a_single_worker_count_gives_a_verdict_without_claiming_scaling() -> None:
    v = classify_bound(_sweep([{"workers": 1, "wall_s": 10.0}]))
    assert v.kind == "cpu-bound" and "not known" in v.evidence


def test_more_workers_than_cores_is_cpu_bound_not_io_bound() -> None:
    rows = [
        {"workers": 1, "wall_s": 100, "task_s_mean": 0.25, "cores": 2},
        {"workers": 2, "wall_s": 51, "task_s_mean": 0.25, "cores": 2},
        {"workers": 4, "wall_s": 50, "task_s_mean": 0.5, "task_cpu_ratio": 0.48, "cores": 2},
    ]
    v = classify_bound(_sweep(rows))
    assert v.kind == "cpu-bound" and "take turns" in v.evidence


def test_cores_taken_by_other_users_are_reported_as_the_cpu_limit() -> None:
    rows = [
        {"workers": 1, "wall_s": 100, "task_s_mean": 0.25, "other_cpu_cores": 6},
        {"workers": 8, "wall_s": 40, "task_s_mean": 0.6, "task_cpu_ratio": 0.45, "other_cpu_cores": 12},
    ]
    v = classify_bound(_sweep(rows))
    assert v.kind == "cpu-bound" and "other processes" in v.evidence


def test_memory_near_the_limit_is_memory_bound_whatever_the_cpu_does() -> None:
    rows = [
        {"workers": 1, "wall_s": 100, "peak_rss_bytes": 10e9},
        {"workers": 4, "wall_s": 26, "peak_rss_bytes": 40e9},
        {"workers": 8, "wall_s": 30, "peak_rss_bytes": 58e9},
    ]
    v = classify_bound(_sweep(rows))
    assert v.kind == "memory-bound" and "91%" in v.evidence and "8 workers" in v.evidence


def test_a_plateau_set_by_the_task_count_is_too_few_tasks() -> None:
    # 10 equal tasks: 8 workers need 2 rounds, so at most 5x; measured 4.8x
    rows = [{"workers": w, "wall_s": 100 / s, "n_tasks": 10, "n_items": 10}
            for w, s in [(1, 1.0), (2, 1.95), (4, 3.2), (8, 4.8)]]
    v = classify_bound(_sweep(rows))
    assert v.kind == "too-few-tasks"
    assert "at most 5.0x" in v.evidence and "at least 32 tasks" in v.evidence
    assert "use at most 2 workers" in v.evidence  # one item per task: fewer workers, not batches


def test_too_few_batches_advise_smaller_batches() -> None:
    rows = [{"workers": w, "wall_s": 100 / s, "n_tasks": 12, "n_items": 120}
            for w, s in [(1, 1.0), (8, 5.7)]]  # 12 tasks on 8 workers: at most 6x
    v = classify_bound(_sweep(rows))
    assert v.kind == "too-few-tasks" and "fewer items in each task" in v.evidence


def test_a_scaling_problem_far_below_the_task_bound_is_not_blamed_on_tasks() -> None:
    rows = [{"workers": w, "wall_s": 100 / s, "n_tasks": 10, "n_items": 10, "task_s_mean": t,
             "task_cpu_ratio": r}
            for w, s, t, r in [(1, 1.0, 0.2, 0.95), (8, 1.5, 1.0, 0.2)]]  # bound 5x, measured 1.5x
    assert classify_bound(_sweep(rows)).kind != "too-few-tasks"


def test_tiny_tasks_that_leave_workers_idle_are_overhead_bound() -> None:
    rows = [
        {"workers": 1, "wall_s": 2.0, "n_tasks": 4000, "task_s_mean": 0.0004, "busy_fraction": 0.8},
        {"workers": 8, "wall_s": 1.6, "n_tasks": 4000, "task_s_mean": 0.0004, "busy_fraction": 0.12},
    ]
    v = classify_bound(_sweep(rows))
    assert v.kind == "overhead-bound" and "12%" in v.evidence


def test_classify_bound_is_a_pure_function_of_the_table() -> None:
    sweep = _sweep([{"workers": w, "wall_s": 100 / w} for w in [1, 2, 4]])
    copy = sweep.table.copy()
    first, second = classify_bound(sweep), classify_bound(sweep.table)
    assert first == second and isinstance(first, Verdict)
    pd.testing.assert_frame_equal(sweep.table, copy)


def test_without_task_timings_the_profile_cpu_use_decides() -> None:
    t = _sweep([{"workers": w, "wall_s": 100 / w} for w in [1, 2]]).table
    t = t.drop(columns=["task_cpu_ratio", "busy_fraction", "task_s_mean"]).assign(cpu_util=[0.1, 0.1])
    assert classify_bound(t).kind == "io-bound"


def test_classify_bound_refuses_a_table_without_the_basic_columns() -> None:
    with pytest.raises(ValueError, match="wall_s"):
        classify_bound(pd.DataFrame({"workers": [1], "n_tasks": [3]}))
