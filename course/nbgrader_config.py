"""nbgrader configuration of the course (run nbgrader from this folder).

Assignments live in ``source/<assignment>/<notebook>.ipynb``:
``staging``, ``rasterization``, ``cpu-or-io``, ``scripts`` (bonus) and
``lazy-arrays``.
See README.md in this folder for the instructor's workflow.
"""

c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file

c.CourseDirectory.course_id = "iwp-group-project"

# Outputs a notebook writes next to itself are never released, collected or
# copied over a learner's files: the stager's folder, Parsl's logs, and the
# bonus script (it is written by the notebook; a copy left in source/ by an
# instructor's test run would give the solution away).
c.CourseDirectory.ignore = [
    ".ipynb_checkpoints",
    "*.pyc",
    "__pycache__",
    "feedback",
    "group-project",
    "runinfo",
    "parsl-runinfo",
    "count_polygons.py",
]

# Autograding runs every notebook top to bottom. nbgrader's default limit is 30 s
# per cell; staging course-scale data in parallel or a worker sweep takes longer.
c.Execute.timeout = 900
# Parsl prints nothing, but progress bars and sweep tables are long: keep outputs.
c.LimitOutput.max_lines = 2000

# Stubs the released notebooks show in place of the solutions.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Autograding in a sandbox, with trusted checks (README.md, "Autograding that cannot be gamed"):
# kernels run under bubblewrap and see only their submission's folder, the environment and the
# data; hidden tests only record values, and the checks in grading/<assignment>.py (never
# released) run afterwards in a fresh `python -I` interpreter; feedback omits hidden tests.
from pathlib import Path  # noqa: E402

from grouputils.grading import configure  # noqa: E402

configure(c, Path(__file__).resolve().parent / "grading")
