"""Faults a shared server brings, with nothing lost: a second run, Ctrl-C, SIGKILL, a full disk.

Outputs are compared by decoded content (GeoPackage rows, GeoTIFF pixels, PNG
pixels) against the uninterrupted serial run of ``test_pipeline``'s fixture.
Runs that are interrupted are real ``grouputils run`` processes, signalled
from outside the way a terminal, the out-of-memory killer or an admin would.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from grouputils import cli
from grouputils.run.runlock import LOCK_NAME, RunLock, RunLockedError
from test_pipeline import (  # noqa: F401  (reference is a fixture)
    recorded_tiles,
    APART,
    CHANGED,
    Run,
    assert_no_partial_files,
    assert_same_outputs,
    copy_inputs,
    reference,
)

PRIVATE = ".grouputils"


def run_args(inputs: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(inputs), str(out), "--no-progress", *extra]


def start_run(inputs: Path, out: Path, *extra: str) -> subprocess.Popen:
    """``grouputils run`` as a terminal's foreground job: its own process group, SIGINT not ignored."""
    cmd = [sys.executable, "-m", "grouputils", *run_args(inputs, out, *extra)]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def geotiffs_recorded(out: Path) -> int:
    """GeoTIFFs the run's state records as done (read-only, from outside the run)."""
    return recorded_tiles(out, "geotiff")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.1)
        try:
            return db.execute("SELECT count(*) FROM tiles WHERE kind = 'geotiff'").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def wait_for(proc: subprocess.Popen, ready, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before the fault could be injected:\n{proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("the run never reached the point of the fault")
        time.sleep(0.005)


def worker_pools(out: Path) -> list[psutil.Process]:
    """Parsl worker pools (and their workers) of a run into ``out``."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "process_worker_pool" in cmd and str(out) in cmd:
            found.append(p)
    return found


# ------------------------------------------------------------ one run per output folder
def test_a_second_run_into_the_same_folder_is_refused_naming_the_first(reference: Run, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = start_run(reference.inputs, out, "--executor", "serial")
    lock = out / PRIVATE / LOCK_NAME
    wait_for(first, lock.exists)
    second = subprocess.run(
        [sys.executable, "-m", "grouputils", *run_args(reference.inputs, out, "--executor", "serial")],
        capture_output=True, text=True, timeout=600,
    )
    assert second.returncode == 1
    assert f"in use by another grouputils run (pid {first.pid} on this host" in second.stderr
    assert first.wait(timeout=600) == 0, first.stderr.read()[-2000:]
    assert not lock.exists()  # released on exit
    assert_same_outputs(reference.out, out)  # the refused run wrote nothing into the first's outputs


def test_a_lock_left_by_a_killed_run_on_this_host_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = tmp_path / PRIVATE
    folder.mkdir()
    (folder / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "process_started": 0}))
    with RunLock(folder) as lock:
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()} on this host"):
            RunLock(folder).acquire()
    assert lock.holder is None and not (folder / LOCK_NAME).exists()


def test_a_lock_held_on_another_host_is_not_taken_and_names_the_file_to_delete(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text(json.dumps({"host": "node-17", "pid": 1, "started": "2026-01-01T00:00:00"}))
    with pytest.raises(RunLockedError, match="pid 1 on host node-17.*delete .*run.lock"):
        RunLock(tmp_path).acquire()


# ------------------------------------------------------------------- published outputs
def test_published_outputs_hold_no_key_user_name_host_or_absolute_path(reference: Run, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert cli.main(run_args(reference.inputs, out, "--executor", "local", "--workers", "1")) == 0
    private = out / PRIVATE
    keys = [p.read_bytes().strip() for p in private.rglob("*.key_secret")]
    assert keys, "Parsl's certificates are expected under .grouputils/"
    assert (private / "run.log").exists()
    machine = {str(tmp_path), str(out.resolve()), str(Path.home()), str(Path(sys.executable).parent)}
    text_only = {socket.gethostname()}  # short: could occur by chance in compressed binary data
    if getpass.getuser() != "root":  # "root" is also a STAC link relation
        machine.add(getpass.getuser())
    published = [p for p in out.rglob("*") if p.is_file() and PRIVATE not in p.relative_to(out).parts]
    assert any(p.name == "index.html" for p in published)
    for p in published:
        data = p.read_bytes()
        for key in keys:
            assert key not in data, f"{p} holds a Parsl key"
        for s in machine:
            assert s.encode() not in data, f"{p} holds {s!r}"
        if p.suffix in (".json", ".html", ".csv", ".txt", ".log", ".js", ".css"):
            for s in text_only:
                assert f'"{s}' not in data.decode() and f"{s}:" not in data.decode(), f"{p} names the host"


# ------------------------------------------------------------------------- tracebacks
def test_a_failed_item_keeps_its_traceback_in_the_log_and_its_last_frames_in_the_summary(
    reference: Run, tmp_path: Path
) -> None:
    inputs = copy_inputs(tmp_path / "in")
    broken = inputs / CHANGED
    broken.write_bytes(broken.read_bytes()[:5000])
    out = tmp_path / "out"
    assert cli.main(run_args(inputs, out, "--executor", "serial")) == 1
    log = (out / PRIVATE / "run.log").read_text()
    assert f"stage failed on {broken}" in log
    assert "Traceback (most recent call last)" in log and 'grouputils/core/staging/stager.py", line' in log
    (failure,) = json.loads((out / "run-summary.json").read_text())["failures"]
    assert failure["item"] == str(broken)
    frames = failure["traceback"].splitlines()
    assert frames[-1] == failure["error"] and "cannot be opened" in frames[-1]
    assert any(f.startswith("grouputils/core/staging/stager.py:") for f in frames[:-1])
    assert not any(f.startswith("/") for f in frames[:-1])  # frames name files within their package


# --------------------------------------------------------------------- Ctrl-C and SIGKILL
def test_ctrl_c_stops_a_local_parallel_run_promptly_and_a_rerun_finishes_identically(
    reference: Run, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run = start_run(reference.inputs, out, "--executor", "local", "--workers", "2")
    wait_for(run, lambda: geotiffs_recorded(out) > 0)
    os.killpg(run.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
    try:
        rc = run.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        pytest.fail("Ctrl-C did not stop the run within a minute")
    assert rc == 130, run.stderr.read()[-2000:]
    assert geotiffs_recorded(out) > 0  # the manifest was saved: finished GeoTIFFs count
    assert not (out / PRIVATE / LOCK_NAME).exists()
    assert cli.main(run_args(reference.inputs, out, "--executor", "serial")) == 0
    summary = json.loads((out / "run-summary.json").read_text())
    rasterize = next(s for s in summary["steps"] if s["name"] == "rasterize z=13")
    assert rasterize["skipped"] > 0  # work done before Ctrl-C was kept
    assert_same_outputs(reference.out, out)
    assert_no_partial_files(out)


def test_no_worker_outlives_a_sigkilled_parallel_run_and_a_rerun_finishes_identically(
    reference: Run, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run = start_run(reference.inputs, out, "--executor", "local", "--workers", "2")
    wait_for(run, lambda: geotiffs_recorded(out) > 0)
    assert worker_pools(out), "expected the run's worker pool to be running"
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=60)
    deadline = time.monotonic() + 60  # the pools' heartbeat threshold is a few seconds
    while worker_pools(out) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = worker_pools(out)
    for p in left:  # do not leave them behind even when the test fails
        p.kill()
    assert not left, f"worker processes outlived the run: {[p.pid for p in left]}"
    assert cli.main(run_args(reference.inputs, out, "--executor", "serial")) == 0
    assert_same_outputs(reference.out, out)
    assert_no_partial_files(out)


# ----------------------------------------------------------------- damaged outputs, disks
def test_a_deleted_geotiff_is_redone_by_the_next_run(reference: Run, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(reference.out, out)
    tif = sorted((out / "geotiff").rglob("*.tif"))[0]
    tif.unlink()
    assert cli.main(run_args(reference.inputs, out, "--executor", "serial")) == 0
    summary = json.loads((out / "run-summary.json").read_text())
    assert sum(s["done"] for s in summary["steps"] if s["name"] in ("rasterize z=13", "parents")) == 1
    assert_same_outputs(reference.out, out)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 2 MB tmpfs (root only; skips where mounting is not possible)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_fails_clearly_and_a_rerun_with_space_finishes_identically(
    reference: Run, small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = small_disk / "out"
    assert cli.main(run_args(reference.inputs, out, "--executor", "serial")) == 1
    err = capsys.readouterr().err
    assert "error: no space left on device writing" in err and "run again" in err, err[-3000:]
    subprocess.run(["mount", "-o", "remount,size=300m", str(small_disk)], check=True)
    assert cli.main(run_args(reference.inputs, out, "--executor", "serial")) == 0
    assert_same_outputs(reference.out, out)
    assert_no_partial_files(out)


def test_the_catalogue_folder_is_never_absent_while_it_is_rewritten(
    reference: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from grouputils.core import swap
    from grouputils.outputs import catalog

    out = tmp_path / "out"
    shutil.copytree(reference.out, out)
    final = out / "stac" / "catalog.json"
    seen = []

    def checked(func):
        def wrapper(*args, **kwargs):
            result = func(*args, **kwargs)
            seen.append(final.exists())
            return result
        return wrapper

    monkeypatch.setattr(os, "replace", checked(os.replace))  # catalog.os and swap.os are this module
    monkeypatch.setattr(os, "rename", checked(os.rename))
    monkeypatch.setattr(swap, "exchange", checked(swap.exchange))
    monkeypatch.setattr(swap.shutil, "rmtree", checked(shutil.rmtree))
    catalog.write_stac_catalog(reference.config.replace(dir_input=reference.inputs, dir_output=out))
    assert seen and all(seen), seen
    assert catalog.validate_stac_catalog(final) > 0
    assert not [p for p in out.iterdir() if p.name.startswith(".stac")]
