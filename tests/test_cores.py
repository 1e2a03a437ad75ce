"""usable_cores on a shared server (issue 15): enforced per-learner cgroup quotas and the fair-share default."""

from __future__ import annotations

import warnings
from pathlib import Path

import psutil
import pytest

from grouputils.core import cores
from grouputils.core.cores import FairShareWarning, core_limits, fair_share, usable_cores

ENV = "GROUPUTILS_MAX_WORKERS"


@pytest.fixture(autouse=True)
def _no_instructor_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)


def _tree(tmp_path: Path, membership: str, files: dict[str, str]) -> dict[str, Path]:
    root = tmp_path / "cgroup"
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    proc = tmp_path / "self-cgroup"
    proc.write_text(membership)
    return {"cgroup_root": root, "proc_cgroup": proc}


def test_jupyterhub_cpu_limit_on_a_user_slice_is_the_learners_worker_count(tmp_path: Path) -> None:
    # SystemdSpawner with c.Spawner.cpu_limit = 4 -> CPUQuota=400% -> cpu.max "400000 100000" on the user's unit
    where = _tree(tmp_path, "0::/user.slice/user-1001.slice/jupyter-alice-singleuser.service\n", {
        "cpu.max": "max 100000\n",
        "user.slice/cpu.max": "max 100000\n",
        "user.slice/user-1001.slice/cpu.max": "max 100000\n",
        "user.slice/user-1001.slice/jupyter-alice-singleuser.service/cpu.max": "400000 100000\n",
    })
    with warnings.catch_warnings():
        warnings.simplefilter("error", FairShareWarning)  # an enforced limit is not a guess: no warning
        assert usable_cores(cpus=88, **where) == 4
    assert core_limits(cpus=88, **where)["cgroup"] == 4


def test_a_systemd_slice_quota_limits_every_process_below_it(tmp_path: Path) -> None:
    # CPUQuota=1100% on user-1002.slice: the kernel, and the Parsl workers it starts, share 11 cores
    where = _tree(tmp_path, "0::/user.slice/user-1002.slice/session-3.scope\n", {
        "user.slice/user-1002.slice/cpu.max": "1100000 100000\n",
        "user.slice/user-1002.slice/session-3.scope/cpu.max": "max 100000\n",
    })
    assert usable_cores(cpus=88, **where) == 11


def test_a_fractional_quota_rounds_down_but_leaves_one_worker(tmp_path: Path) -> None:
    where = _tree(tmp_path, "0::/u\n", {"u/cpu.max": "50000 100000\n"})
    assert usable_cores(cpus=88, **where) == 1


def test_no_limit_on_a_big_machine_gives_a_fair_share_and_says_how_to_set_the_cap(tmp_path: Path) -> None:
    where = _tree(tmp_path, "0::/\n", {"cpu.max": "max 100000\n"})
    with pytest.warns(FairShareWarning, match=ENV) as caught:
        assert usable_cores(cpus=88, **where) == 11
    assert "Spawner.cpu_limit" in str(caught[0].message)
    with pytest.warns(FairShareWarning):
        assert usable_cores(cpus=17, **where) == 2


def test_the_instructors_cap_replaces_the_fair_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    where = _tree(tmp_path, "0::/\n", {"cpu.max": "max 100000\n"})
    monkeypatch.setenv(ENV, "20")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FairShareWarning)
        assert usable_cores(cpus=88, **where) == 20
    assert core_limits(cpus=88, **where)["fair_share"] is None


def test_a_small_machine_uses_all_its_cpus_without_warning(tmp_path: Path) -> None:
    where = _tree(tmp_path, "0::/\n", {"cpu.max": "max 100000\n"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", FairShareWarning)
        assert usable_cores(cpus=16, **where) == 16
        assert usable_cores(cpus=2, **where) == 2


def test_fair_share_is_an_eighth_of_a_shared_machine() -> None:
    assert [fair_share(n) for n in (1, 16, 17, 64, 88, 256)] == [None, None, 2, 8, 11, 32]


def test_the_package_usable_cores_is_the_same_rule() -> None:
    import grouputils

    assert grouputils.usable_cores() == cores.usable_cores()
    assert grouputils.core_limits() == cores.core_limits()


def _memory_tree(tmp_path: Path, files: dict[str, str], membership: str) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    root.mkdir(exist_ok=True)
    proc = tmp_path / "proc-cgroup"
    proc.write_text(membership)
    return root, proc


def test_cgroup_v2_memory_limit_is_the_smallest_of_the_cgroup_and_its_ancestors(tmp_path: Path) -> None:
    root, proc = _memory_tree(
        tmp_path,
        {"user.slice/memory.max": "4000000000\n", "user.slice/me/memory.max": "max\n"},
        "0::/user.slice/me\n",
    )
    assert cores.cgroup_memory_limit(root, proc) == 4_000_000_000


def test_cgroup_v1_memory_limit_and_its_no_limit_value(tmp_path: Path) -> None:
    root, proc = _memory_tree(
        tmp_path,
        {"memory/docker/abc/memory.limit_in_bytes": "2147483648\n", "cpu/cpu.cfs_quota_us": "-1"},
        "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n",
    )
    assert cores.cgroup_memory_limit(root, proc) == 2**31
    (root / "memory/docker/abc/memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert cores.cgroup_memory_limit(root, proc) is None  # v1's "no limit"
    assert cores.cgroup_memory_limit(root, tmp_path / "missing") is None


def test_the_profile_memory_is_capped_by_the_cgroup_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from grouputils.run import monitor

    monkeypatch.setattr(monitor, "cgroup_memory_limit", lambda: 123_456_789)
    assert monitor.memory_limit_bytes() == 123_456_789
    monkeypatch.setattr(monitor, "cgroup_memory_limit", lambda: None)
    assert monitor.memory_limit_bytes() == psutil.virtual_memory().total
