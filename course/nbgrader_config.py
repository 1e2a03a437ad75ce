"""nbgrader configuration of the course (run nbgrader from this folder).

Assignments live in ``source/<assignment>/<notebook>.ipynb``:
``staging``, ``rasterization``, ``cpu-or-io``, ``scripts`` (bonus) and
``lazy-arrays``.
See README.md in this folder for the instructor's workflow.
"""

import copy

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import (CheckCellMetadata, ClearHiddenTests, ClearOutput, DeduplicateIds,
                                    NbGraderPreprocessor, OverwriteCells, OverwriteKernelspec)
from nbgrader.utils import is_grade, is_locked

c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file


class RestoreReleasedHiddenTests(NbGraderPreprocessor):
    """Put the hidden tests back into test cells that learners received without them.

    nbgrader stores a test cell's checksum *before* it removes the hidden tests
    from the release (jupyter/nbgrader#1961), so autograding an unchanged
    release warns "Attribute 'checksum' for cell test-... has changed!" for
    every cell with hidden tests, which reads like tampering. Run before
    ``OverwriteCells``: a locked cell whose text is exactly the released text
    (the gradebook's source with its hidden tests removed) gets the
    gradebook's source back, so the checksums agree. A cell a learner did
    change is left alone, and ``OverwriteCells`` still warns about it and
    restores it.
    """

    def preprocess(self, nb, resources):
        self._clear = ClearHiddenTests(parent=self)
        with Gradebook(resources["nbgrader"]["db_url"]) as gb:
            self._gb = gb
            self._notebook = resources["nbgrader"]["notebook"]
            self._assignment = resources["nbgrader"]["assignment"]
            return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id is None or not (is_grade(cell) and is_locked(cell)):
            return cell, resources
        try:
            source = self._gb.find_source_cell(grade_id, self._notebook, self._assignment)
        except MissingEntry:
            return cell, resources
        released = copy.deepcopy(cell)
        released.source = source.source
        self._clear._remove_hidden_test_region(released)
        if cell.source == released.source:
            cell.source = source.source
        return cell, resources


# nbgrader's own list (nbgrader 0.9), with the hidden tests restored just before OverwriteCells
c.Autograde.sanitize_preprocessors = [
    ClearOutput, DeduplicateIds, OverwriteKernelspec, RestoreReleasedHiddenTests, OverwriteCells,
    CheckCellMetadata,
]

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

from grouputils.teaching.grading import configure  # noqa: E402

configure(c, Path(__file__).resolve().parent / "grading")
