"""`grouputils run --executor slurm` on a real SLURM scheduler (no mock).

A session fixture starts the two-node cluster of ``scripts/slurm-local.sh``
(nodes n1 and n2 on this host, one CPU each; installed with apt-get when run
as root, as CI is) and skips these tests, with the reason, where it cannot
start. The pipeline then runs on the shipped samples exactly as a cluster user
runs it: the command line, a ``cluster.toml`` with a ``[slurm]`` table, one
``sbatch`` job per block.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grouputils.core.config import Config
from grouputils.run.pipeline import run_pipeline
from test_pipeline import SAMPLES, assert_no_partial_files, assert_same_outputs, mtimes

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm-local.sh"
#: Generous bound for one run on a loaded 2-core machine (a hang fails, never blocks CI).
RUN_TIMEOUT_S = 420


def _script(action: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), action], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def slurm_cluster() -> dict[str, str]:
    """The environment (with SLURM_CONF) of a running two-node local SLURM; stopped after if started here."""
    if shutil.which("bash") is None:
        pytest.skip("no bash: scripts/slurm-local.sh cannot run")
    conf = _script("env").stdout.strip().removeprefix("export SLURM_CONF=")
    env = dict(os.environ, SLURM_CONF=conf)
    started_here = _script("status").returncode != 0
    if started_here:
        res = _script("start")
        if res.returncode == 2:
            pytest.skip(f"local SLURM cannot start here: {res.stderr.strip()}")
        if res.returncode != 0:
            pytest.fail(f"scripts/slurm-local.sh start failed:\n{res.stdout}\n{res.stderr}")
    yield env
    if started_here:
        _script("stop")


def write_cluster_toml(path: Path, settings: dict[str, object] | None = None, **slurm: object) -> Path:
    """A config file with ``settings`` and a ``[slurm]`` table for the local cluster (two blocks of one node)."""
    table = {
        "partition": "debug",
        "nodes_per_block": 1,
        "cores_per_node": 1,
        "walltime": "00:07:00",
        "init_blocks": 2,
        "max_blocks": 2,
        **slurm,
    }
    lines = [f"{k} = {json.dumps(v)}" for k, v in (settings or {}).items()]
    lines += ["[slurm]"] + [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def grouputils_run(out: Path, toml: Path, env: dict[str, str], **popen: object) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "grouputils", "run", str(SAMPLES), str(out), "--executor", "slurm",
           "--config", str(toml), "--no-progress"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"grouputils run did not finish in {RUN_TIMEOUT_S} s:\n{out[-3000:]}")
    return proc.returncode, out


def jobs(env: dict[str, str]) -> dict[str, dict[str, str]]:
    """``scontrol show job`` of every job the controller still knows, by job name."""
    res = subprocess.run(["scontrol", "-o", "show", "job"], env=env, capture_output=True, text=True, check=True)
    found = {}
    for line in res.stdout.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobName" in fields:
            found[fields["JobName"]] = fields
    return found


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted serial run on the shipped samples."""
    out = tmp_path_factory.mktemp("serial") / "out"
    report = run_pipeline(Config(dir_input=SAMPLES, dir_output=out), executor="serial", progress=False)
    assert report.ok, report.failures
    return out


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The samples through ``grouputils run --executor slurm`` on two single-node blocks.

    Outputs go through node-local scratch, one folder per node (``$SLURMD_NODENAME``
    is expanded on the worker).
    """
    base = tmp_path_factory.mktemp("slurm")
    marker = f"worker-init-ran-{os.getpid()}"
    toml = write_cluster_toml(
        base / "cluster.toml",
        {"scratch_dir": str(base / "scratch-$SLURMD_NODENAME")},
        account="iwp-test",
        worker_init=f"export IWP_MARK={marker}; echo $IWP_MARK",
    )
    code, log = finish(grouputils_run(base / "out", toml, slurm_cluster))
    assert code == 0, log[-3000:]
    return base / "out", marker


def test_a_slurm_run_on_two_single_node_blocks_through_local_scratch_equals_a_serial_run(
    slurm_run: tuple[Path, str], reference: Path
) -> None:
    out, _ = slurm_run
    summary = json.loads((out / "run-summary.json").read_text())
    assert summary["executor"] == "slurm" and summary["failures"] == []
    # both jobs (one per node) ran pipeline tasks
    for block in ("block-0", "block-1"):
        logs = list((out / ".grouputils" / "parsl-runinfo").glob(f"*/htex_slurm/{block}/*/worker_*.log"))
        assert any("Completed executor task" in p.read_text() for p in logs), block
    assert_same_outputs(reference, out)
    assert_no_partial_files(out)
    # every node wrote through its own local scratch folder, and left it empty
    scratch = {p.name: list((p / "grouputils-scratch").iterdir()) for p in out.parent.glob("scratch-*")}
    assert scratch == {"scratch-n1": [], "scratch-n2": []}


def test_the_slurm_table_reaches_the_job_script_and_the_scheduler(
    slurm_run: tuple[Path, str], slurm_cluster: dict[str, str]
) -> None:
    out, marker = slurm_run
    scripts = sorted(p for p in (out / ".grouputils" / "parsl-runinfo").glob("*/submit_scripts/parsl.htex_slurm.block-*")
                     if p.suffix not in (".stdout", ".stderr"))
    assert len(scripts) == 2, scripts  # init_blocks = 2
    known = jobs(slurm_cluster)
    for script in scripts:
        text = script.read_text()
        assert "#SBATCH --account=iwp-test" in text
        assert "#SBATCH --time=7" in text  # walltime 00:07:00, in minutes
        assert "#SBATCH --nodes=1" in text
        assert "#SBATCH --partition=debug" in text
        assert f"export IWP_MARK={marker}; echo $IWP_MARK" in text
        # the worker_init ran on the node: its echo is in the job's output
        assert marker in script.with_name(script.name + ".stdout").read_text()
        job = known[script.name]
        assert job["Account"] == "iwp-test"
        assert job["TimeLimit"] == "00:07:00"
        assert job["NumNodes"] == "1"
    nodes = {known[s.name]["NodeList"] for s in scripts}
    assert nodes == {"n1", "n2"}, nodes  # one block on each node


#: Slows each staging task on the workers (via worker_init's PYTHONPATH) so a
#: block can be cancelled while it holds work; it changes no output.
SLOW_STAGING = '''
import functools, os, time
from grouputils.core.staging import TileStager
_stage = TileStager.stage
@functools.wraps(_stage)
def stage(self, path, *args, **kwargs):
    time.sleep(float(os.environ["IWP_SLOW_STAGE_S"]))
    return _stage(self, path, *args, **kwargs)
TileStager.stage = stage
'''


def test_a_block_cancelled_mid_run_loses_no_work_and_a_rerun_equals_an_uninterrupted_run(
    slurm_cluster: dict[str, str], reference: Path, tmp_path: Path
) -> None:
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(SLOW_STAGING)
    # short heartbeats so the lost block is noticed in seconds, not Parsl's default two minutes
    beats = {"heartbeat_period": 1, "heartbeat_threshold": 6}
    toml = write_cluster_toml(
        tmp_path / "slow.toml", worker_init=f"export PYTHONPATH={slow} IWP_SLOW_STAGE_S=1.5", **beats
    )
    out = tmp_path / "out"
    before = set(jobs(slurm_cluster))
    proc = grouputils_run(out, toml, slurm_cluster)
    manifests = out / "staging-parts" / "manifests"
    cancelled = None
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while cancelled is None and proc.poll() is None and time.monotonic() < deadline:
        running = {n: j for n, j in jobs(slurm_cluster).items() if n not in before and j["JobState"] == "RUNNING"}
        staged = len(list(manifests.glob("*.json"))) if manifests.exists() else 0
        if len(running) == 2 and 1 <= staged <= 8:  # both blocks hold work, most inputs still to do
            cancelled = min(running)
            subprocess.run(["scancel", running[cancelled]["JobId"]], env=slurm_cluster, check=True)
        time.sleep(0.3)
    code, log = finish(proc)
    assert cancelled is not None, f"the run ended before a block could be cancelled:\n{log[-2000:]}"
    assert jobs(slurm_cluster)[cancelled]["JobState"] == "CANCELLED"
    summary = json.loads((out / "run-summary.json").read_text())
    # the task the cancelled block held is retried on the other block: the run completes
    assert code == 0, log[-3000:]
    assert summary["failures"] == []
    assert_same_outputs(reference, out)
    # and a rerun finds nothing lost: everything up to date, outputs unchanged
    before_rerun = mtimes(out)
    rerun = write_cluster_toml(tmp_path / "rerun.toml", init_blocks=1, max_blocks=1)
    code, log = finish(grouputils_run(out, rerun, slurm_cluster))
    assert code == 0, log[-3000:]
    steps = json.loads((out / "run-summary.json").read_text())["steps"]
    assert all(s["done"] == 0 and s["skipped"] == s["total"] for s in steps), steps
    assert mtimes(out) == before_rerun  # not one tile rewritten
    assert_no_partial_files(out)
