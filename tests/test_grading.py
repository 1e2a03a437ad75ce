"""Autograding that cannot be gamed (issue 15): the sandbox and the trusted checks, on a toy course.

A toy course (``tests/grading_helpers.py``) is autograded twice, by nbgrader
itself: once with the course's defences (``grouputils.teaching.grading.configure``:
sandboxed kernels, hidden tests that only record, trusted checks in a fresh
interpreter, feedback without hidden tests), and once without them, to show
that each cheat really does win points when nothing stops it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from course_helpers import fill
from grading_helpers import ASSIGNMENT, CHEATS, NOTEBOOK, TOY_CHECKS, toy_notebook

pytest.importorskip("nbgrader")
from course_build import nbgrader, submit  # noqa: E402
from nbgrader.api import Gradebook  # noqa: E402

COURSE_ID = "toy-course"
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")

CONFIG = '''
c = get_config()
c.CourseDirectory.course_id = "toy-course"
c.Execute.timeout = 120
{defences}
'''
DEFENCES = '''
from pathlib import Path
from grouputils.teaching.grading import configure
configure(c, Path(__file__).parent / "grading")
'''


def _scores(root: Path, student: str) -> dict[str, float]:
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", COURSE_ID) as gb:
        sub = gb.find_submission(ASSIGNMENT, student)
        return {g.name: g.score for nb in sub.notebooks for g in nb.grades if g.cell_type == "code"}


def _build(root: Path, defences: bool) -> Path:
    (root / "source" / ASSIGNMENT).mkdir(parents=True)
    (root / "grading").mkdir()
    (root / "grading" / f"{ASSIGNMENT}.py").write_text(TOY_CHECKS)
    (root / "nbgrader_config.py").write_text(CONFIG.format(defences=DEFENCES if defences else ""))
    source = toy_notebook()
    nbformat.write(source, str(root / "source" / ASSIGNMENT / NOTEBOOK))
    nbgrader(root, "generate_assignment", ASSIGNMENT, "--force")
    release = nbformat.read(str(root / "release" / ASSIGNMENT / NOTEBOOK), as_version=4)
    submit(root, "correct", ASSIGNMENT, fill(release, source, {}), NOTEBOOK)
    for student, (answers, _) in CHEATS.items():
        submit(root, student, ASSIGNMENT, fill(release, source, answers), NOTEBOOK)
    nbgrader(root, "autograde", ASSIGNMENT)
    return root


@pytest.fixture(scope="module")
def defended(tmp_path_factory) -> Path:
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap (bwrap) is not installed")
    return _build(tmp_path_factory.mktemp("defended") / "course", defences=True)


@pytest.fixture(scope="module")
def undefended(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("undefended") / "course", defences=False)


FULL = {"test-answer": 2.0, "test-script": 3.0}


def test_without_the_defences_every_cheat_wins_the_points_it_targets(undefended: Path) -> None:
    assert _scores(undefended, "correct") == FULL
    for student, (_, targets) in CHEATS.items():
        scores = _scores(undefended, student)
        if student == "reader":  # without a sandbox it reads the source notebook and runs the solution
            out = (undefended / "autograded" / student / ASSIGNMENT / NOTEBOOK).read_text()
            assert '\\"source\\": true' in out and '\\"gradebook\\": true' in out
        for grade_id in targets:
            assert scores[grade_id] == FULL[grade_id], (student, scores)


@needs_bwrap
def test_a_correct_submission_keeps_full_marks_in_the_sandbox(defended: Path) -> None:
    assert _scores(defended, "correct") == FULL


@needs_bwrap
@pytest.mark.parametrize("student", sorted(CHEATS))
def test_each_cheat_scores_nothing_for_the_cells_it_targets(defended: Path, student: str) -> None:
    scores = _scores(defended, student)
    for grade_id in CHEATS[student][1]:
        assert scores[grade_id] == 0, (student, scores)


@needs_bwrap
def test_a_sandboxed_submission_sees_neither_the_source_the_gradebook_nor_other_learners(defended: Path) -> None:
    nb = nbformat.read(str(defended / "autograded" / "reader" / ASSIGNMENT / NOTEBOOK), as_version=4)
    (cell,) = [c for c in nb.cells if c.get("id") == "answer"]
    (line,) = [ln for o in cell.outputs if o.get("name") == "stdout" for ln in o.text.splitlines()
               if ln.startswith("SEEN ")]
    assert json.loads(line[5:]) == {"neighbours": ["reader"], "source": False, "gradebook": False}


@needs_bwrap
def test_feedback_does_not_show_the_hidden_tests(defended: Path) -> None:
    nbgrader(defended, "generate_feedback", ASSIGNMENT)
    for student in ("correct", "isclose", "helpers"):
        (html,) = (defended / "feedback" / student / ASSIGNMENT).glob("*.html")
        text = html.read_text()
        for secret in ("HIDDEN TESTS", "math.isclose(answer, 45)", "import parse_count_table", "record(answer"):
            assert secret not in text, (student, secret)
    assert "the total is wrong" in (defended / "feedback" / "helpers" / ASSIGNMENT / "toy.html").read_text()


@needs_bwrap
def test_a_sandboxed_command_cannot_write_outside_its_folder_or_read_the_course(tmp_path: Path) -> None:
    from grouputils.teaching.sandbox import sandbox_command

    course = tmp_path / "course"
    work = course / "autograded" / "a" / "x"
    work.mkdir(parents=True)
    (course / "gradebook.db").write_text("secret")
    probe = ("import os, pathlib, sys\n"
             "print(os.path.exists('../../../gradebook.db'))\n"
             "try:\n    open(sys.prefix + '/planted.py', 'w')\nexcept OSError:\n    print('read-only')\n"
             "pathlib.Path('out.txt').write_text('ok')\n")
    run = subprocess.run(sandbox_command([sys.executable, "-c", probe], work), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "read-only"]
    assert (work / "out.txt").read_text() == "ok"
    ro = subprocess.run(sandbox_command([sys.executable, "-c", "open('x', 'w')"], work, writable_workdir=False),
                        capture_output=True, text=True)
    assert ro.returncode != 0 and not (work / "x").exists()


# The cheats on the real assignments (staging and scripts: math.isclose, replaced grouputils helpers,
# reading source/) are Submission variants of the course fixture: tests/course_helpers.py, test_course.py.


@needs_bwrap
def test_a_learners_script_rerun_by_the_grader_has_no_network(tmp_path: Path) -> None:
    from grouputils.teaching.sandbox import sandbox_command

    probe = "import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=2)\nexcept OSError as e:\n" \
            "    print(e.errno)\n"
    run = subprocess.run(sandbox_command([sys.executable, "-I", "-c", probe], tmp_path, network=False),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "101"  # ENETUNREACH: only a loopback exists
