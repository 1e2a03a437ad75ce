"""Node-local scratch (`Config.scratch_dir`): same outputs, nothing half-written on either side."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from grouputils.core.config import Config
from grouputils.core.errors import ConfigError
from grouputils.run.pipeline import run_pipeline
from grouputils.core.scratch import SCRATCH_SUBDIR, output_path, resolve_scratch
from test_pipeline import FIXTURE, SAMPLES, assert_no_partial_files, assert_same_outputs


def test_a_run_with_scratch_and_local_inputs_gives_the_same_outputs_and_leaves_scratch_empty(
    three_scene_run: Config, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in FIXTURE:
        shutil.copy2(SAMPLES / name, inputs / name)
    scratch = tmp_path / "node-local"
    config = Config(dir_input=inputs, dir_output=tmp_path / "out", scratch_dir=str(scratch), scratch_inputs=True)
    report = run_pipeline(config, executor="serial", progress=False)
    assert report.ok, report.failures
    assert_same_outputs(three_scene_run.dir_output, config.dir_output)
    assert_no_partial_files(config.dir_output)
    assert list((scratch / SCRATCH_SUBDIR).iterdir()) == []
    # the setting does not shape outputs: switching it off redoes nothing
    again = run_pipeline(config.replace(scratch_dir=None, scratch_inputs=False), executor="serial", progress=False)
    assert all(s.done == 0 for s in again.steps), [(s.name, s.done) for s in again.steps]


def test_scratch_dir_variables_are_expanded_on_the_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_TMP", str(tmp_path / "n1"))
    assert resolve_scratch("$NODE_TMP") == tmp_path / "n1" / SCRATCH_SUBDIR
    monkeypatch.delenv("NODE_TMP")
    with pytest.raises(ConfigError, match=r"\$NODE_TMP.*not set"):
        resolve_scratch("$NODE_TMP")


#: A child process that writes an output through scratch and is SIGKILLed at one point.
KILLED_WRITER = textwrap.dedent(
    """
    import os, shutil, signal, sys
    from pathlib import Path
    from grouputils.core import scratch

    target, where, point = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    if point == "mid-copy":       # half the bytes copied to the shared file system
        def half(src, dst):
            data = Path(src).read_bytes()
            with open(dst, "wb") as f:
                f.write(data[: len(data) // 2]); f.flush()
            die()
        scratch.shutil.copyfile = half
    if point == "before-rename":  # copy complete, rename not done
        scratch.os.replace = die
    with scratch.output_path(target, where) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"new " * 100_000)
            if point == "mid-local-write":
                f.flush(); die()
    """
)


@pytest.mark.parametrize("point", ["mid-local-write", "mid-copy", "before-rename"])
def test_a_task_killed_while_writing_through_scratch_leaves_nothing_half_written(tmp_path: Path, point: str) -> None:
    shared = tmp_path / "shared" / "geotiff"
    shared.mkdir(parents=True)
    target = shared / "1.tif"
    target.write_bytes(b"old complete output")
    scratch = tmp_path / "local"
    res = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target), str(scratch), point])
    assert res.returncode == -9
    # shared side: the old output intact, no other file under a real (listed) name
    assert target.read_bytes() == b"old complete output"
    assert [p.name for p in shared.iterdir() if not (p.name.startswith(".") and ".tmp" in p.name)] == ["1.tif"]
    # local side: only the dead process's file, removed by the next scratch write on the node
    root = scratch / SCRATCH_SUBDIR
    left = [p.name for p in root.iterdir()]
    assert len(left) == 1 and left[0].split("-")[0].isdigit(), left  # <dead pid>-<id>-1.tif
    with output_path(target, str(scratch)) as tmp:
        tmp.write_bytes(b"rewritten")
    assert target.read_bytes() == b"rewritten"
    assert list(root.iterdir()) == []


def test_a_failed_write_through_scratch_keeps_the_old_output_and_cleans_both_sides(tmp_path: Path) -> None:
    target = tmp_path / "out" / "t.png"
    target.parent.mkdir()
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with output_path(target, str(tmp_path / "local")) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert os.listdir(target.parent) == ["t.png"]
    assert list((tmp_path / "local" / SCRATCH_SUBDIR).iterdir()) == []
