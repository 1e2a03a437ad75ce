"""Assignment 5 (``lazy-arrays``) is graded like the others: nbgrader releases it, and
autograding gives full marks to the source solutions and to another correct answer,
zero to the unanswered release, and fails the known wrong answers.

One module fixture builds a temporary course from ``course/nbgrader_config.py``,
generates the release and autogrades four submissions once each (in-process,
with nbgrader's API); scores are read through nbgrader's gradebook. Every
submission runs the pipeline on the samples shipped with grouputils in its own
folder, so the hidden tests check each learner against their own outputs.
"""

from __future__ import annotations

import importlib.resources
import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from traitlets.config.loader import PyFileConfigLoader

from course_helpers import assert_result_cells_match, fill

pytest.importorskip("nbgrader")
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")

REPO = Path(__file__).resolve().parents[1]
COURSE = REPO / "course"
ASSIGNMENT = "lazy-arrays"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
TESTS = ("test-busiest-item", "test-totals", "test-read-experiment")
WRITTEN = ("explain-chunks", "dask-vs-parsl")

# Correct, written differently from the solution; graded under the instructor's cap of 1 worker.
OTHER = {
    "busiest-item": """
busiest_item_id, busiest_count = None, -1
for candidate in z13.get_items():
    for band in candidate.assets["data"].extra_fields["bands"]:
        if band["name"] == "number_IWP_per_pixel" and band["grouputils:sum"] > busiest_count:
            busiest_item_id, busiest_count = candidate.id, int(band["grouputils:sum"])
""",
    # sum each row first, then weight the row sums by the row's pixel area
    "totals": """
areas = pixel_area_m2(mosaic)
lazy_count = mosaic.sel(band="number_IWP_per_pixel").sum(dim=["y", "x"])
lazy_area_km2 = (mosaic.sel(band="prop_pixel_covered_by_IWP").sum(dim="x") * areas).sum() / 1e6
n, a = dask.compute(lazy_count, lazy_area_km2)
n_polygons, area_km2 = int(n), float(a)
""",
    "read-experiment": """
seconds = table.pivot_table(index="chunk_label", columns="workers", values="seconds")[max(workers)]
best_chunk = seconds.idxmin()
slowdown_small = float(seconds["128"] / seconds.min())
slowdown_one_chunk = float(seconds["one chunk"] / seconds.min())
row = table[(table.chunk_label == "128") & (table.workers == max(workers))].iloc[0]
overhead_per_task_ms = float(row.overhead_s / row.n_tasks * 1e3)
""",
}

# Known wrong answers: each must fail its test cell, and only those three cells fail.
WRONG = {
    # the first item, and a pixel's maximum instead of the tile's sum
    "busiest-item": """
first = next(z13.get_items())
busiest_item_id = first.id
busiest_count = int(first.assets["data"].extra_fields["bands"][0]["statistics"]["maximum"])
""",
    # pixels with data instead of polygons, one pixel area for every row, the count copied from the summary
    "totals": """
coverage = mosaic.sel(band="prop_pixel_covered_by_IWP")
lazy_count = mosaic.sel(band="number_IWP_per_pixel").count()
lazy_area_km2 = coverage.sum() * float(pixel_area_m2(mosaic).mean()) / 1e6
n_polygons = summary["unique_polygons"]
area_km2 = float(lazy_area_km2.compute())
""",
    # numbers from the model answer, not from the learner's table
    "read-experiment": """
best_chunk = "512"
slowdown_small = 6.9
slowdown_one_chunk = 2.0
overhead_per_task_ms = 0.1
""",
}


def shipped_samples() -> Path:
    """The samples shipped in the package, whatever GROUPUTILS_DATA says in this shell."""
    return Path(str(importlib.resources.files("grouputils.data_samples")))


class Course:
    """A temporary nbgrader course holding assignment 5."""

    def __init__(self, root: Path) -> None:
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory

        config = PyFileConfigLoader("nbgrader_config.py", path=str(COURSE)).load_config()
        config.CourseDirectory.root = str(root)
        self.root = root
        self.api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)

    def generate(self) -> None:
        result = self.api.generate_assignment(ASSIGNMENT)
        assert result["success"], result["error"] + result["log"]

    def notebook(self, folder: str) -> nbformat.NotebookNode:
        return nbformat.read(self.root / folder / ASSIGNMENT / NOTEBOOK, as_version=4)

    def autograde(self, student: str, nb: nbformat.NotebookNode) -> None:
        dest = self.root / "submitted" / student / ASSIGNMENT
        dest.mkdir(parents=True)
        nbformat.write(nb, dest / NOTEBOOK)
        result = self.api.autograde(ASSIGNMENT, student)
        assert result["success"], result["error"] + result["log"]

    def grades(self, student: str) -> dict[str, tuple[float | None, float]]:
        """``grade_id -> (score, max score)`` of every graded cell (written answers: score None)."""
        from nbgrader.api import Gradebook

        with Gradebook(self.api.coursedir.db_url, self.api.coursedir.course_id) as gb:
            nb = gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
            return {g.name: (g.auto_score, g.max_score) for g in nb.grades}


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Course:
    """The release and four autograded submissions: solution, blank, other (1 worker), wrong.

    nbgrader runs the ``alembic`` command of its environment, so that
    environment's ``bin/`` goes first on PATH; the kernels get the shipped samples.
    """
    root = tmp_path_factory.mktemp("course-arrays") / "course"
    (root / "source").mkdir(parents=True)
    shutil.copytree(COURSE / "source" / ASSIGNMENT, root / "source" / ASSIGNMENT)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
        mp.setenv("GROUPUTILS_DATA", str(shipped_samples()))
        mp.delenv("GROUPUTILS_MAX_WORKERS", raising=False)
        c = Course(root)
        c.generate()
        source, release = c.notebook("source"), c.notebook("release")
        c.autograde("solution", source)
        c.autograde("blank", release)
        c.autograde("wrong", fill(release, source, WRONG))
        mp.setenv("GROUPUTILS_MAX_WORKERS", "1")
        c.autograde("other", fill(release, source, OTHER))
    return c


def test_the_notebook_has_three_autograded_exercises_and_two_written_questions() -> None:
    nb = nbformat.read(COURSE / "source" / ASSIGNMENT / NOTEBOOK, as_version=4)
    graded = {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}
    assert set(graded) == set(TESTS) | set(WRITTEN)
    for gid in TESTS:
        assert graded[gid].cell_type == "code" and graded[gid].metadata["nbgrader"]["locked"]
        assert "### BEGIN HIDDEN TESTS" in graded[gid].source
        assert graded[gid].get("id") == gid
    for gid in WRITTEN:
        assert graded[gid].cell_type == "markdown" and graded[gid].metadata["nbgrader"]["solution"]
    results = [c for c in nb.cells if c.get("id", "").startswith("result-")]
    assert results and all(c.metadata.get("tags") == ["result"] for c in results)


def test_the_release_hides_solutions_and_hidden_tests(course: Course) -> None:
    folder = course.root / "release" / ASSIGNMENT
    assert [p.name for p in folder.iterdir()] == [NOTEBOOK]
    text = (folder / NOTEBOOK).read_text()
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    assert "raise NotImplementedError()" in text and "YOUR ANSWER HERE" in text
    assert "overhead_per_task_ms = 1000" not in text  # a line of the solution


def test_the_source_solution_gets_every_autograded_point(course: Course) -> None:
    grades = course.grades("solution")
    for gid in TESTS:
        score, top = grades[gid]
        assert top > 0 and score == top, f"{gid}: {score} of {top}"
    assert all(grades[gid][0] is None for gid in WRITTEN)  # left to the instructor


def test_another_correct_answer_under_a_one_worker_cap_gets_every_point(course: Course) -> None:
    grades = course.grades("other")
    assert all(grades[gid][0] == grades[gid][1] for gid in TESTS), grades
    # graded from its own outputs, in its own folder, with the one worker the cap allows
    out = course.root / "autograded" / "other" / ASSIGNMENT
    assert (out / "group-project" / "run-summary.json").is_file()
    graded = nbformat.read(out / NOTEBOOK, as_version=4)
    printed = "".join(o.get("text", "") for c in graded.cells if c.cell_type == "code" for o in c.outputs)
    assert "Dask worker threads: [1]" in printed
    solution = nbformat.read(course.root / "autograded" / "solution" / ASSIGNMENT / NOTEBOOK, as_version=4)
    printed = "".join(o.get("text", "") for c in solution.cells if c.cell_type == "code" for o in c.outputs)
    assert "Dask worker threads: [1, 2]" in printed or os.cpu_count() == 1


def test_the_unanswered_release_scores_zero(course: Course) -> None:
    grades = course.grades("blank")
    assert sum(score or 0 for score, _ in grades.values()) == 0
    assert set(TESTS) <= set(grades)


def test_known_wrong_answers_fail_their_tests(course: Course) -> None:
    grades = course.grades("wrong")
    failed = {gid for gid in TESTS if grades[gid][0] < grades[gid][1]}
    assert failed == set(TESTS)
    assert all(grades[gid][0] == 0 for gid in TESTS)


def test_the_autograded_solution_reproduces_the_result_cells_of_solutions(course: Course) -> None:
    """``solutions/lazy-arrays.ipynb`` shows what a fresh run of the source computes."""
    assert_result_cells_match(REPO / "solutions" / NOTEBOOK, course.notebook("autograded/solution"))
