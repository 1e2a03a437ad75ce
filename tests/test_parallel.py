"""Worker counts respect every cap, batches are exact, and Parsl maps are ordered, named and leave nothing behind.

Tasks sent to Parsl workers use functions from the standard library
(``math.factorial``, ``time.sleep``): the workers must import the function by
name, and a function defined in this test module is not importable there.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import parsl
import psutil
import pytest
from parsl.executors import HighThroughputExecutor
from parsl.launchers import SrunLauncher
from parsl.providers import LocalProvider, SlurmProvider

from grouputils.core.config import Config
from grouputils.core.errors import ConfigError
from grouputils.core.cores import WorkerCapWarning, clamp_workers, core_limits, usable_cores
from grouputils.core.cores import cgroup_cpu_limit as _cgroup_cpu_limit
from grouputils.run.batches import (
    DEFAULT_TASK_OVERHEAD_S,
    MIN_TASKS_PER_WORKER,
    OVERHEAD_FACTOR,
    choose_batch_size,
    make_batch,
)
from grouputils.run.executors import Executor, TaskError, parallel_map, serial_map
from grouputils.run.failures import Failure
from grouputils.run.parsl_config import local_config, slurm_config

ENV = "GROUPUTILS_MAX_WORKERS"


@pytest.fixture(autouse=True)
def _no_instructor_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)


# ------------------------------------------------------------------ cores and caps
def test_usable_cores_never_exceeds_the_cpus_this_process_may_use() -> None:
    n = usable_cores()
    assert 1 <= n <= len(os.sched_getaffinity(0))
    assert n == min(v for v in core_limits().values() if v is not None)


def test_instructor_cap_from_the_environment_lowers_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "1")
    assert usable_cores() == 1
    assert core_limits()["environment"] == 1


def test_a_cap_above_the_core_count_does_not_raise_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    uncapped = usable_cores()
    monkeypatch.setenv(ENV, "1000")
    assert usable_cores() == uncapped


def test_config_max_workers_caps_usable_cores(tmp_path: Path) -> None:
    cfg = Config(dir_input=tmp_path, dir_output=tmp_path / "out", max_workers=1)
    assert usable_cores(cfg) == 1


@pytest.mark.parametrize("raw", ["abc", "0", "-3", "2.5"])
def test_a_malformed_environment_cap_is_a_config_error(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(ENV, raw)
    with pytest.raises(ConfigError, match=ENV):
        usable_cores()


def _fake_cgroup(tmp_path: Path, lines: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(lines)
    return root, proc


def test_cgroup_v2_quota_is_read_from_the_process_cgroup_and_its_ancestors(tmp_path: Path) -> None:
    root, proc = _fake_cgroup(
        tmp_path,
        "0::/user.slice/job\n",
        {"cpu.max": "max 100000\n", "user.slice/cpu.max": "300000 100000\n",
         "user.slice/job/cpu.max": "150000 100000\n"},
    )
    assert _cgroup_cpu_limit(root, proc) == pytest.approx(1.5)


def test_cgroup_v2_without_quota_means_no_limit(tmp_path: Path) -> None:
    root, proc = _fake_cgroup(tmp_path, "0::/\n", {"cpu.max": "max 100000\n"})
    assert _cgroup_cpu_limit(root, proc) is None


def test_cgroup_v1_cfs_quota_is_read_and_minus_one_means_no_limit(tmp_path: Path) -> None:
    root, proc = _fake_cgroup(
        tmp_path,
        "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n",
        {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "400000\n",
         "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
         "cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
    )
    assert _cgroup_cpu_limit(root, proc) == pytest.approx(4.0)
    root2, proc2 = _fake_cgroup(
        tmp_path / "b", "3:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}
    )
    assert _cgroup_cpu_limit(root2, proc2) is None


def test_asking_for_more_workers_than_allowed_warns_and_clamps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "2")
    with pytest.warns(WorkerCapWarning, match="5 workers"):
        assert clamp_workers(5) == 2


def test_clamp_workers_keeps_an_allowed_count_silently(recwarn: pytest.WarningsRecorder) -> None:
    assert clamp_workers(1) == 1
    assert not [w for w in recwarn if issubclass(w.category, WorkerCapWarning)]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_clamp_workers_refuses_non_positive_or_non_integer_counts(bad: object) -> None:
    with pytest.raises(ValueError):
        clamp_workers(bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------ make_batch
ITEM_FORMS = {
    "list": lambda n: [f"file_{i}.gpkg" for i in range(n)],
    "tuple": lambda n: tuple(range(n)),
    "range": lambda n: range(n),
    "generator": lambda n: (i * i for i in range(n)),
    "dict_keys": lambda n: {f"k{i}": i for i in range(n)}.keys(),
    "numpy": lambda n: np.arange(n),
}


@pytest.mark.parametrize("form", sorted(ITEM_FORMS))
@pytest.mark.parametrize(("n", "size"), [(0, 3), (1, 1), (7, 3), (9, 3), (10, 1), (4, 10)])
def test_make_batch_keeps_order_and_only_the_last_batch_is_shorter(form: str, n: int, size: int) -> None:
    expected_items = list(ITEM_FORMS[form](n))
    batches = make_batch(ITEM_FORMS[form](n), size)
    assert batches == [expected_items[i : i + size] for i in range(0, n, size)]
    assert list(itertools.chain.from_iterable(batches)) == expected_items
    assert all(len(b) == size for b in batches[:-1])
    assert len(batches) == math.ceil(n / size)


def test_make_batch_accepts_numpy_integer_sizes() -> None:
    assert make_batch(range(5), np.int64(2)) == [[0, 1], [2, 3], [4]]


@pytest.mark.parametrize("bad", [0, -2, 1.5, 2.0, True, "3", None])
def test_make_batch_refuses_a_batch_size_that_is_not_a_positive_integer(bad: object) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        make_batch([1, 2, 3], bad)  # type: ignore[arg-type]


def test_make_batch_refuses_a_single_string() -> None:
    with pytest.raises(TypeError, match="string"):
        make_batch("input.gpkg", 2)


# ------------------------------------------------------------------ choose_batch_size
@pytest.mark.parametrize(("n", "w"), [(454, 11), (1000, 4), (44, 11), (100, 2), (26530, 11)])
def test_without_a_task_time_batches_are_as_large_as_four_tasks_per_worker_allow(n: int, w: int) -> None:
    b = choose_batch_size(n, w)
    assert math.ceil(n / b) >= MIN_TASKS_PER_WORKER * w
    assert math.ceil(n / (b + 1)) < MIN_TASKS_PER_WORKER * w or b + 1 > n  # one larger breaks the rule


def test_too_few_items_for_four_tasks_per_worker_gives_one_item_per_task() -> None:
    assert choose_batch_size(20, 11) == 1


@pytest.mark.parametrize(("per_item", "overhead"), [(1e-3, 2.5e-3), (3e-4, 1e-3), (2e-4, 2.5e-3)])
def test_with_cheap_items_each_batch_does_ten_times_the_overhead_in_work(per_item: float, overhead: float) -> None:
    n, w = 100_000, 4
    b = choose_batch_size(n, w, per_item_s=per_item, overhead_s=overhead)
    assert b * per_item >= OVERHEAD_FACTOR * overhead * (1 - 1e-9)
    assert (b - 1) * per_item < OVERHEAD_FACTOR * overhead  # the smallest such batch
    assert math.ceil(n / b) >= MIN_TASKS_PER_WORKER * w  # and balance still holds


def test_expensive_items_are_not_batched() -> None:
    assert choose_batch_size(454, 11, per_item_s=0.9) == 1


def test_when_the_rules_conflict_every_worker_gets_one_batch() -> None:
    n, w = 100, 11
    b = choose_batch_size(n, w, per_item_s=1e-4, overhead_s=DEFAULT_TASK_OVERHEAD_S)
    overhead_min = math.ceil(OVERHEAD_FACTOR * DEFAULT_TASK_OVERHEAD_S / 1e-4)
    assert b < overhead_min
    assert b == math.ceil(n / w)
    assert math.ceil(n / b) <= w  # a single round of tasks


@pytest.mark.parametrize("n", [0, 1])
def test_choose_batch_size_handles_empty_and_single_item_jobs(n: int) -> None:
    assert choose_batch_size(n, 8) == 1
    assert choose_batch_size(n, 8, per_item_s=1e-6) == 1


@pytest.mark.parametrize("kwargs", [{"n_items": -1, "workers": 2}, {"n_items": 5, "workers": 0},
                                    {"n_items": 5, "workers": 2, "per_item_s": 0.0},
                                    {"n_items": 5.0, "workers": 2}])
def test_choose_batch_size_refuses_impossible_inputs(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        choose_batch_size(**kwargs)


# ------------------------------------------------------------------ configs
def test_local_config_is_a_fresh_single_block_loopback_pool_every_call(tmp_path: Path) -> None:
    cfg_a = Config(dir_input=tmp_path, dir_output=tmp_path / "out")
    a, b = local_config(1, config=cfg_a), local_config(1, config=cfg_a)
    assert a is not b and a.executors[0] is not b.executors[0]
    (ex,) = a.executors
    assert isinstance(ex, HighThroughputExecutor)
    assert ex.max_workers_per_node == 1
    assert ex.address == "127.0.0.1" and ex.loopback_address == "127.0.0.1"
    assert isinstance(ex.provider, LocalProvider)
    assert (ex.provider.init_blocks, ex.provider.max_blocks) == (1, 1)
    assert a.strategy_period <= 1
    assert Path(a.run_dir) == (tmp_path / "out" / ".grouputils" / "parsl-runinfo").resolve()


def test_local_config_starts_parsl_with_this_interpreter_not_scripts_on_path(tmp_path: Path) -> None:
    ex = local_config(1, run_dir=tmp_path).executors[0]
    assert ex.interchange_launch_cmd[0] == sys.executable
    assert ex.launch_cmd.startswith(sys.executable + " -m parsl.")
    assert "process_worker_pool.py" not in ex.launch_cmd


def test_local_config_default_is_eleven_workers_or_the_usable_cores(tmp_path: Path) -> None:
    ex = local_config(run_dir=tmp_path).executors[0]
    assert ex.max_workers_per_node == min(11, usable_cores())


def test_local_config_clamps_workers_to_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "1")
    with pytest.warns(WorkerCapWarning):
        ex = local_config(8, run_dir=tmp_path).executors[0]
    assert ex.max_workers_per_node == 1


def test_slurm_config_builds_a_slurm_provider_with_srun(tmp_path: Path) -> None:
    cfg = slurm_config(
        "cpu", account="abcd-delta-cpu", nodes_per_block=2, cores_per_node=128, walltime="00:30:00",
        worker_init="module load anaconda3_cpu", max_blocks=4, run_dir=tmp_path,
    )
    (ex,) = cfg.executors
    assert isinstance(ex, HighThroughputExecutor)
    p = ex.provider
    assert isinstance(p, SlurmProvider) and isinstance(p.launcher, SrunLauncher)
    assert (p.partition, p.account, p.nodes_per_block, p.cores_per_node) == ("cpu", "abcd-delta-cpu", 2, 128)
    assert (p.walltime, p.max_blocks, p.exclusive) == ("00:30:00", 4, True)
    assert "module load anaconda3_cpu" in p.worker_init
    assert ex.max_workers_per_node == 128  # the login node's cores do not limit compute nodes


def test_slurm_config_respects_the_instructor_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "11")
    with pytest.warns(WorkerCapWarning):
        cfg = slurm_config("cpu", cores_per_node=128, run_dir=tmp_path)
    assert cfg.executors[0].max_workers_per_node == 11


# ------------------------------------------------------------------ maps
def test_serial_map_returns_results_in_order_and_names_the_failing_item() -> None:
    assert serial_map(math.factorial, [5, 0, 3], progress=False) == [120, 1, 6]
    with pytest.raises(TaskError, match=r"task 1 failed on item -1") as info:
        serial_map(math.factorial, [3, -1, 4], progress=False)
    assert isinstance(info.value.__cause__, ValueError)
    assert (info.value.index, info.value.item) == (1, -1)


def test_parallel_map_without_a_loaded_config_says_what_to_do() -> None:
    with pytest.raises(ConfigError, match="parsl.load"):
        parallel_map(abs, [1])


def _parsl_processes(run_dir: Path) -> list[psutil.Process]:
    """Processes whose command line mentions ``run_dir`` (the detached worker pool) and their children."""
    found: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["cmdline"]):
        if str(run_dir) in " ".join(p.info["cmdline"] or ()):
            found[p.pid] = p
            try:
                found.update({c.pid: c for c in p.children(recursive=True)})
            except psutil.Error:
                pass
    return [p for p in found.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _alive_children(before: set[int]) -> list[psutil.Process]:
    return [c for c in psutil.Process().children(recursive=True)
            if c.pid not in before and c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_no_parsl_process_survives_when_a_task_and_the_cell_raise(tmp_path: Path) -> None:
    before = {c.pid for c in psutil.Process().children(recursive=True)}
    seen: list[psutil.Process] = []
    with pytest.raises(TaskError):
        with parsl.load(local_config(2, run_dir=tmp_path)):
            parallel_map(abs, [-1, -2], progress=False)  # the pool is up
            seen = _parsl_processes(tmp_path) + _alive_children(before)
            # item 0 fails at once while the 20 s sleeps still occupy both workers;
            # the TaskError leaves the `with` block like any error in a learner's cell
            parallel_map(time.sleep, [-1, 20, 20, 20], progress=False)
    assert len(seen) >= 3  # the check can see the interchange, the pool and its workers
    deadline = time.monotonic() + 30
    while (_parsl_processes(tmp_path) or _alive_children(before)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _parsl_processes(tmp_path) == []
    assert _alive_children(before) == []


# The tests below share one loaded pool; they come after the test above, which loads its own
# (Parsl allows one loaded configuration at a time, and pytest runs tests in file order).
def _path_without_env_bin() -> str:
    env_bin = str(Path(sys.executable).parent)
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != env_bin)


@pytest.fixture(scope="module")
def loaded_parsl(tmp_path_factory: pytest.TempPathFactory):
    """A 2-worker local pool loaded with PATH lacking this environment's bin/ (as in a bare kernel)."""
    run_dir = tmp_path_factory.mktemp("parsl-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", _path_without_env_bin())
        assert shutil.which("process_worker_pool.py") is None  # the scripts really are off PATH
        with parsl.load(local_config(2, run_dir=run_dir)) as dfk:
            yield dfk


def test_parallel_map_returns_results_in_input_order(loaded_parsl, capsys: pytest.CaptureFixture) -> None:
    items = [30000, 3, 20000, 0, 25000, 7, 1, 12000]  # mixed durations: completion order differs
    out = parallel_map(math.factorial, items, desc="factorials")
    assert out == [math.factorial(i) for i in items]
    err = capsys.readouterr().err
    assert "factorials" in err and f"{len(items)}/{len(items)}" in err  # the bar reached the end


def test_a_failing_task_is_reraised_naming_its_item(loaded_parsl) -> None:
    with pytest.raises(TaskError, match=r"task 2 failed on item -5: ValueError") as info:
        parallel_map(math.factorial, [4, 6, -5, 3], progress=False)
    assert (info.value.index, info.value.item) == (2, -5)
    assert isinstance(info.value.__cause__, ValueError)


def test_profiling_finds_the_detached_pool_of_the_loaded_config(loaded_parsl) -> None:
    from grouputils.run.monitor import profile_resources

    pool_pids = {p.pid for p in _parsl_processes(Path(loaded_parsl.run_dir))}
    assert pool_pids and not pool_pids & {c.pid for c in psutil.Process().children(recursive=True)}
    with profile_resources(interval=0.05) as prof:
        parallel_map(math.factorial, [40000] * 6, progress=False)
    # this process + interchange + worker pool + 2 workers, although the pool is not our child
    assert prof.table["n_processes"].max() >= 5


# ------------------------------------------------------------------ the one executor
def _outcomes_ok(outcomes: list[tuple[bool, Any]]) -> list[bool]:
    return [ok for ok, _ in outcomes]


@pytest.mark.parametrize("kind", ["serial", "process"])
def test_executor_map_keeps_order_and_returns_failures_as_values(kind: str) -> None:
    items = [5, -1, 3, 0, -2, 4, 6]
    finished: list[list[int]] = []
    with Executor(kind, workers=2, progress=False) as ex:
        out = ex.map("factorials", math.factorial, items, batch=True, on_done=lambda b, r: finished.append(b))
    assert _outcomes_ok(out) == [i >= 0 for i in items]
    assert [v for ok, v in out if ok] == [math.factorial(i) for i in items if i >= 0]
    failures = [v for ok, v in out if not ok]
    assert all(isinstance(f, Failure) and f.error.startswith("ValueError") for f in failures)
    assert "factorial" in failures[0].traceback  # formatted where it failed
    assert sorted(i for b in finished for i in b) == sorted(items)  # every batch reported once
    assert len(finished) > 1  # batches: several items per task, more than one task


def test_a_process_executor_leaves_no_process_behind() -> None:
    before = {c.pid for c in psutil.Process().children(recursive=True)}
    with Executor("process", workers=2, warm_modules=("math",), warm_hold_s=0.05, progress=False) as ex:
        assert ex.map_or_raise(math.factorial, [3, 4]) == [6, 24]
        assert ex.startup_s > 0
    assert _alive_children(before) == []


def test_an_empty_map_starts_no_worker(tmp_path: Path) -> None:
    def make() -> Any:
        raise AssertionError("the configuration was built although nothing had to run")

    with Executor("local", workers=2, parsl_config=make, progress=False) as ex:
        assert ex.map("nothing", abs, []) == []
        assert ex.startup_s == 0.0 and ex.run_dir is None


def test_an_owned_parsl_executor_warms_up_and_shuts_down_beside_a_loaded_one(
    loaded_parsl, tmp_path: Path
) -> None:
    """Its own DataFlowKernel: the learner's loaded one is untouched, and nothing survives close()."""
    run_dir = tmp_path / "own"
    ex = Executor(
        "local",
        workers=2,
        parsl_config=functools.partial(local_config, 2, run_dir=run_dir),
        warm_modules=("math",),
        warm_hold_s=0.1,
        progress=False,
    )
    with ex:
        out = ex.map("f", math.factorial, [3, -1, 4], batch=False)
        assert _outcomes_ok(out) == [True, False, True]
        assert ex.startup_s >= 0.1  # two warm-up tasks of 0.1 s, timed apart from the work
        assert _parsl_processes(run_dir)
    assert parsl.dfk() is loaded_parsl  # still the learner's
    assert parallel_map(abs, [-3], progress=False) == [3]
    deadline = time.monotonic() + 30
    while _parsl_processes(run_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _parsl_processes(run_dir) == []
