"""The course tests' one nbgrader build, run in the background while the other tests run.

Autograding every made-up submission (``tests/course_helpers.py``) takes most of
the suite's time, and nbgrader runs one notebook after another: about one core.
So ``tests/conftest.py`` starts :class:`CourseBuild` in a thread as soon as the
session's first test starts (only when a selected test asks for the ``course``
fixture), moves ``tests/test_course.py`` to the end of the run, and the
``course`` fixture waits for the build there. What is built and graded is the
same as when it ran in the fixture itself; only the clock time overlaps.
"""

from __future__ import annotations

import importlib.resources
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
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


def nbgrader(course: Path, *args: str, env: dict[str, str] | None = None, logs: list[str] | None = None,
             started: Callable[[subprocess.Popen[str]], None] | None = None) -> float:
    """Run ``python -m nbgrader ARGS`` in ``course``; return the seconds it took.

    nbgrader's log (stderr) is appended to ``logs`` when given; ``started`` is
    handed the process as soon as it runs (so that it can be killed).
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env or course_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if started is not None:
        started(proc)
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


class CourseBuild:
    """Builds and grades the whole course in a thread: three nbgrader calls.

    ``generate_assignment "*"`` releases all five assignments; ``autograde "*"``
    grades every uncapped submission of every assignment in one call; the
    submissions graded under the instructor's one-worker cap (students
    ``capped*``) are submitted after it and graded in one more call with
    ``GROUPUTILS_MAX_WORKERS=1``.
    """

    def __init__(self, root: Path) -> None:
        self.course = Course(root)
        # taken now: tests running meanwhile may monkeypatch os.environ
        self._environ = dict(os.environ)
        self._error: BaseException | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="course-build", daemon=True)

    def start(self) -> CourseBuild:
        self._thread.start()
        return self

    def result(self) -> Course:
        """Wait for the build; the graded course, or the build's error raised again."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.course

    def stop(self) -> None:
        """End a build still running (the session ended early): kill nbgrader, wait for the thread."""
        self._stopped.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        try:
            self._build()
        except BaseException as e:  # handed to result()
            self._error = e

    def nbgrader(self, *args: str, env: dict[str, str] | None = None, logs: list[str] | None = None) -> float:
        """:func:`nbgrader` in the course folder, with the environment taken at the start."""
        if self._stopped.is_set():
            raise RuntimeError("course build stopped")
        return nbgrader(self.course.root, *args, env=env or course_env(self._environ), logs=logs,
                        started=self._started)

    def _started(self, proc: subprocess.Popen[str]) -> None:
        self._proc = proc

    def _build(self) -> None:
        c, root = self.course, self.course.root
        shutil.copytree(COURSE, root, ignore=shutil.ignore_patterns(*RUN_ARTEFACTS))
        c.seconds["generate *"] = self.nbgrader("generate_assignment", "*", "--force")
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
        c.seconds["autograde * (every uncapped submission)"] = self.nbgrader(
            "autograde", "*", logs=c.autograde_logs)
        for s, nb, name in filled:  # after the uncapped run, so only these students are graded with the cap
            if s.capped:
                submit(root, s.student, s.assignment, nb, name)
        c.seconds["autograde * --student capped* (1 worker)"] = self.nbgrader(
            "autograde", "*", "--student", "capped*", env=course_env(self._environ, GROUPUTILS_MAX_WORKERS="1"),
            logs=c.autograde_logs)
