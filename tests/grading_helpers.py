"""A toy nbgrader course for the grading tests: one short notebook, its checks, known cheats.

The toy assignment has an answer (a number) and a script, each with a test
cell whose hidden part is the kind of in-kernel check the course used to have
(``math.isclose``, ``grouputils.teaching.course.parse_count_table``), plus a
:func:`grouputils.teaching.grading.record` call that hands the value to the trusted
checks.
"""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ASSIGNMENT = "toy"
NOTEBOOK = "toy.ipynb"


def _cell(source: str, grade_id: str, *, solution: bool = False, points: float = 0) -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    cell.id = grade_id
    cell.metadata["nbgrader"] = {"grade": bool(points), "grade_id": grade_id, "locked": not solution,
                                 "schema_version": 3, "solution": solution, "task": False}
    if points:
        cell.metadata["nbgrader"]["points"] = points
    return cell


def toy_notebook() -> nbformat.NotebookNode:
    """The toy source notebook: 2 points for ``answer``, 3 for the script ``total.py``."""
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [
        new_markdown_cell("# Toy assignment"),
        _cell("import math\nimport os\nimport subprocess\nimport sys", "setup"),
        _cell("### BEGIN SOLUTION\nanswer = sum(range(10))\n### END SOLUTION", "answer", solution=True),
        _cell("assert isinstance(answer, int)\n"
              "### BEGIN HIDDEN TESTS\n"
              "assert math.isclose(answer, 45), 'the answer is wrong'\n"
              "from grouputils.teaching.grading import record\n"
              "record(answer=answer)\n"
              "### END HIDDEN TESTS", "test-answer", points=2),
        _cell("%%writefile total.py\n### BEGIN SOLUTION\nprint('total', sum(range(10)))\n### END SOLUTION",
              "script", solution=True),
        _cell("_run = subprocess.run([sys.executable, 'total.py'], capture_output=True, text=True)\n"
              "assert _run.returncode == 0, _run.stderr\n"
              "### BEGIN HIDDEN TESTS\n"
              "from grouputils.teaching.course import parse_count_table\n"
              "assert parse_count_table(_run.stdout)[1] == 45, 'the total is wrong'\n"
              "### END HIDDEN TESTS", "test-script", points=3),
    ]
    return nb


#: The instructor's trusted checks of the toy assignment (``<checks_dir>/toy.py``).
TOY_CHECKS = '''
from grouputils.teaching.course import parse_count_table


def answer(ctx):
    expected = sum(range(10))            # recomputed here, never taken from the kernel
    assert ctx.recorded("answer") == expected, "the answer is wrong"


def script(ctx):
    run = ctx.run_learner(["total.py"])  # the learner's script again, python -I, read-only, sandboxed
    assert run.returncode == 0, "total.py failed"
    assert parse_count_table(run.stdout)[1] == sum(range(10)), "the total is wrong"


CHECKS = {"test-answer": answer, "test-script": script}
'''

# a learner who reads the instructor's folder: the source notebook, the gradebook, other learners
PEEK = """
import json, os
seen = {"neighbours": sorted(os.listdir("../..")),
        "source": os.path.exists("../../../source"),
        "gradebook": os.path.exists("../../../gradebook.db")}
print("SEEN", json.dumps(seen))
try:
    with open("../../../source/toy/toy.ipynb") as f:
        cells = json.load(f)["cells"]
    solution = [c for c in cells if c.get("id") == "answer"][0]["source"]
    exec("".join(solution))
except OSError:
    answer = 0
"""

#: student -> (answers by grade_id, the test cells it must score 0 on *with* the defences)
CHEATS = {
    # overrides math.isclose, so the hidden in-kernel assertion always passes
    "isclose": ({"answer": "math.isclose = lambda *a, **k: True\nanswer = 0"}, ("test-answer",)),
    # replaces grouputils.teaching.course's parser, for a script that prints "total 0"
    "helpers": ({"answer": "answer = sum(range(10))\nimport grouputils.teaching.course\n"
                           "grouputils.teaching.course.parse_count_table = lambda text: ({}, 45)",
                 "script": "%%writefile total.py\nprint('total 0')"}, ("test-script",)),
    # reads source/ to run the instructor's solution
    "reader": ({"answer": PEEK}, ("test-answer",)),
    # plants a grouputils.py next to its script, whose parse_count_table says 45
    "planted": ({"answer": "answer = 45\nopen('grouputils.py', 'w').write('')\n"
                           "import os; os.makedirs('grouputils/teaching', exist_ok=True)\n"
                           "open('grouputils/__init__.py', 'w').write('')\n"
                           "open('grouputils/teaching/__init__.py', 'w').write('')\n"
                           "open('grouputils/teaching/course.py', 'w').write('def parse_count_table(t): return {}, 45\\n')",
                 "script": "%%writefile total.py\nprint('total 0')"}, ("test-script",)),
}
