"""The course tests' one nbgrader build, run in the background while the other tests run.

Autograding every made-up submission (``tests/course_helpers.py``) takes most of
the suite's time, and nbgrader runs one notebook after another: about one core.
So ``tests/conftest.py`` starts :class:`CourseBuild` (a detached process) as
soon as the session's first test starts (only when a selected test asks for the ``course``
fixture), moves ``tests/test_course.py`` to the end of the run, and the
``course`` fixture waits for the build there. What is built and graded is the
same as when it ran in the fixture itself; only the clock time overlaps.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import psutil
from course_helpers import SUBMISSIONS, fill

REPO = Path(__file__).resolve().parents[1]
COURSE = REPO / "course"
SOLUTIONS = REPO / "solutions"
COURSE_ID = "iwp-group-project"
ASSIGNMENTS = ("staging", "rasterization", "cpu-or-io", "scripts", "lazy-arrays")
SCRIPT = "count_polygons.py"
# what a course folder may hold besides nbgrader_config.py, README.md and source/
RUN_ARTEFACTS = ("gradebook.db", "release", "submitted", "autograded", "feedback", "group-project",
                 "runinfo", "parsl-runinfo", SCRIPT, ".ipynb_checkpoints", "__pycache__")
#: seconds one nbgrader call may take before the build gives up
NBGRADER_TIMEOUT_S = 2400


def shipped_samples() -> Path:
    """The samples shipped in the package, whatever GROUPUTILS_DATA says."""
    return Path(str(importlib.resources.files("grouputils.data_samples")))


def course_env(base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """Environment of nbgrader and the kernels it starts.

    ``base`` (default this process's environment now) with the shipped samples
    (not a shared folder this shell may name), and this Python's ``bin/``
    first on ``PATH``: nbgrader runs ``alembic`` from ``PATH`` when it creates
    a gradebook.
    """
    env = dict(os.environ if base is None else base)
    env["GROUPUTILS_DATA"] = str(shipped_samples())
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def notebook_of(folder: Path) -> Path:
    (nb,) = sorted(folder.glob("*.ipynb"))
    return nb


@dataclass
class Course:
    """A built and graded course folder, with nbgrader's logs and the time each call took."""

    root: Path
    seconds: dict[str, float] = field(default_factory=dict)
    autograde_logs: list[str] = field(default_factory=list)

    def grades(self, assignment: str, student: str) -> dict[str, tuple[float, float]]:
        """Autograded test cells of a submission: ``grade_id -> (score, max_score)``."""
        from nbgrader.api import Gradebook

        with Gradebook(f"sqlite:///{self.root / 'gradebook.db'}", COURSE_ID) as gb:
            sub = gb.find_submission(assignment, student)
            return {g.name: (g.score, g.max_score) for nb in sub.notebooks for g in nb.grades
                    if g.cell_type == "code"}

    def totals(self, assignment: str, student: str) -> dict[str, float]:
        from nbgrader.api import Gradebook

        with Gradebook(f"sqlite:///{self.root / 'gradebook.db'}", COURSE_ID) as gb:
            sub = gb.find_submission(assignment, student)
            return {"code": sub.code_score, "max_code": sub.max_code_score,
                    "written": sub.written_score, "max_written": sub.max_written_score}

    def autograded(self, assignment: str, student: str) -> Path:
        return self.root / "autograded" / student / assignment


def nbgrader(course: Path, *args: str, env: dict[str, str] | None = None,
             logs: list[str] | None = None) -> float:
    """Run ``python -m nbgrader ARGS`` in ``course``; return the seconds it took.

    nbgrader's log (stderr) is appended to ``logs`` when given.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env or course_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = proc.communicate(timeout=NBGRADER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        raise AssertionError(f"nbgrader {' '.join(args)} took over {NBGRADER_TIMEOUT_S} s:\n"
                             f"{stderr[-6000:]}") from None
    if logs is not None:
        logs.append(stderr)
    if proc.returncode != 0 or "[ERROR]" in stderr or "| ERROR]" in stderr:
        raise AssertionError(f"nbgrader {' '.join(args)} failed:\n{stderr[-6000:]}")
    return time.perf_counter() - t0


def submit(course: Path, student: str, assignment: str, nb: nbformat.NotebookNode, name: str) -> None:
    dest = course / "submitted" / student / assignment
    dest.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(dest / name))


def build_course(root: Path) -> Course:
    """Build and grade the whole course in ``root``: three nbgrader calls.

    ``generate_assignment "*"`` releases all five assignments; ``autograde "*"``
    grades every uncapped submission of every assignment in one call; the
    submissions graded under the instructor's one-worker cap (students
    ``capped*``) are submitted after it and graded in one more call with
    ``GROUPUTILS_MAX_WORKERS=1``.
    """
    c = Course(root)
    shutil.copytree(COURSE, root, ignore=shutil.ignore_patterns(*RUN_ARTEFACTS))
    c.seconds["generate *"] = nbgrader(root, "generate_assignment", "*", "--force")
    capped = [s for s in SUBMISSIONS if s.capped]
    assert all(s.student.startswith("capped") for s in capped)
    assert not any(s.student.startswith("capped") for s in SUBMISSIONS if not s.capped)
    filled = []  # (submission, notebook, file name); Submission holds dicts: not hashable
    for a in ASSIGNMENTS:
        source_path = notebook_of(root / "source" / a)
        source = nbformat.read(source_path, as_version=4)
        release = nbformat.read(notebook_of(root / "release" / a), as_version=4)
        submit(root, "solution", a, source, source_path.name)
        submit(root, "blank", a, release, source_path.name)
        for s in SUBMISSIONS:
            if s.assignment == a:
                filled.append((s, fill(release, source, s.answers), source_path.name))
    for s, nb, name in filled:
        if not s.capped:
            submit(root, s.student, s.assignment, nb, name)
    c.seconds["autograde * (every uncapped submission)"] = nbgrader(
        root, "autograde", "*", logs=c.autograde_logs)
    for s, nb, name in filled:  # after the uncapped run, so only these students are graded with the cap
        if s.capped:
            submit(root, s.student, s.assignment, nb, name)
    c.seconds["autograde * --student capped* (1 worker)"] = nbgrader(
        root, "autograde", "*", "--student", "capped*", env=course_env(GROUPUTILS_MAX_WORKERS="1"),
        logs=c.autograde_logs)
    return c


class CourseBuild:
    """:func:`build_course` in a detached process, started now, waited for by :meth:`result`.

    Detached (a double fork: its parent is init, not pytest), so that the tests
    that measure this process's tree (``tests/test_profiling.py``) never see
    the build's nbgrader and kernels. It runs in a session of its own, so
    :meth:`stop` ends every process of the build at once. The build writes
    ``<root>.pid`` when it starts and ``<root>.result.json`` (the course's
    timings and logs, or the error) when it ends. The environment is the one
    this process has when the build starts (tests running meanwhile may
    monkeypatch ``os.environ``).
    """

    POLL_S = 1.0

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pid_file = root.with_name(root.name + ".pid")
        self.result_file = root.with_name(root.name + ".result.json")

    def start(self) -> CourseBuild:
        launcher = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(self.root)],
                                  cwd=Path(__file__).parent, env=dict(os.environ), capture_output=True,
                                  text=True, timeout=120)
        if launcher.returncode != 0:
            raise RuntimeError(f"course build did not start:\n{launcher.stderr[-3000:]}")
        return self

    def _pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _running(self) -> bool:
        pid = self._pid()
        if pid is None:
            return False
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def result(self, timeout: float = 3 * NBGRADER_TIMEOUT_S) -> Course:
        """Wait for the build; the graded course, or the build's error raised again."""
        t0 = time.monotonic()
        while not self.result_file.exists():
            if not self._running() and not self.result_file.exists():
                raise RuntimeError(f"the course build (pid {self._pid()}) died without a result")
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"the course build took over {timeout:.0f} s")
            time.sleep(self.POLL_S)
        data = json.loads(self.result_file.read_text())
        if data["error"] is not None:
            raise AssertionError(f"the course build failed:\n{data['error']}")
        return Course(self.root, data["seconds"], data["logs"])

    def stop(self) -> None:
        """End a build still running (the session ended early): kill its whole session."""
        pid = self._pid()
        if pid is not None and not self.result_file.exists():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def _detached_main(root: Path) -> None:
    """``python course_build.py ROOT``: fork, let the parent return at once, build in the child.

    The child's output goes to ``<root>.log``; the parent writes the child's
    pid before it returns, so the pid file exists once the launcher has ended.
    """
    pid_file = root.with_name(root.name + ".pid")
    result_file = root.with_name(root.name + ".result.json")
    log = root.with_name(root.name + ".log").open("ab")
    child = os.fork()
    if child > 0:
        pid_file.write_text(str(child))
        return  # the launcher exits; the child is adopted by init
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    result: dict[str, Any] = {"seconds": {}, "logs": [], "error": None}
    try:
        course = build_course(root)
        result.update(seconds=course.seconds, logs=course.autograde_logs)
    except BaseException:  # reported to the tests through the result file
        result["error"] = traceback.format_exc()
    tmp = result_file.with_name(result_file.name + ".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(result_file)
    os._exit(0)


if __name__ == "__main__":
    _detached_main(Path(sys.argv[1]))
