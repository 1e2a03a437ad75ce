"""The course (issues 8 and 9): nbgrader assignments generate, grade right and wrong work, and reproduce.

One session fixture builds the whole course once in a temporary folder
(``tests/course_build.py``; it starts in the background when the session does,
and this module's tests run last):
``nbgrader generate_assignment`` for every assignment, then submissions by
made-up learners — the source solutions, the unanswered release, another
correct answer under the instructor's one-worker cap, and the known wrong
answers (``tests/course_helpers.py``) — and ``nbgrader autograde``. Scores are
read through nbgrader's gradebook API. Every notebook is executed once per
submission, and once more by pytest-notebook to check that the committed
solutions reproduce their result cells.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from course_build import (
    ASSIGNMENTS,
    COURSE,
    SCRIPT,
    SOLUTIONS,
    Course,
    course_env,
    notebook_of,
    shipped_samples,
)
from course_helpers import (
    READERS,
    SUBMISSIONS,
    Submission,
    assert_result_cells_match,
    strip_markers,
)

pytest.importorskip("nbgrader")


@pytest.fixture(scope="session")
def course(course_build) -> Course:
    """The whole course, built and graded once (:class:`course_build.CourseBuild`).

    The build starts in the background when the session's first test starts
    (``tests/conftest.py``); this waits for it.
    """
    c = course_build.result()
    print("\n".join(f"{k}: {v:.1f} s" for k, v in c.seconds.items()))
    return c


# ----------------------------------------------------------------------------- release
def test_the_release_hides_solutions_and_hidden_tests_and_ships_no_outputs(course):
    for a in ASSIGNMENTS:
        folder = course.root / "release" / a
        assert sorted(p.name for p in folder.iterdir()) == [notebook_of(folder).name]
        text = notebook_of(folder).read_text()
        assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
        assert "raise NotImplementedError()" in text and "YOUR ANSWER HERE" in text
        source = notebook_of(course.root / "source" / a).read_text()
        assert "BEGIN HIDDEN TESTS" in source, f"{a} has no hidden tests"


def test_every_assignment_has_autograded_tests_and_manually_graded_questions(course):
    for a in ASSIGNMENTS:
        totals = course.totals(a, "solution")
        assert totals["max_code"] > 0 and totals["max_written"] > 0, a


# ----------------------------------------------------------------------------- grading
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_source_solution_gets_full_autograded_marks(course, assignment):
    grades = course.grades(assignment, "solution")
    assert grades and all(score == top for score, top in grades.values()), grades
    totals = course.totals(assignment, "solution")
    assert totals["code"] == totals["max_code"]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_unanswered_release_scores_zero(course, assignment):
    totals = course.totals(assignment, "blank")
    assert totals["code"] == 0 and totals["written"] == 0, totals


@pytest.mark.parametrize("sub", [s for s in SUBMISSIONS if s.fails], ids=lambda s: f"{s.assignment}-{s.student}")
def test_known_wrong_answers_fail_their_tests_and_only_those(course, sub: Submission):
    grades = course.grades(sub.assignment, sub.student)
    assert set(sub.fails) <= set(grades)
    failed = {gid for gid, (score, top) in grades.items() if score < top}
    assert failed == set(sub.fails), f"expected exactly {sub.fails} to fail; scores: {grades}"
    assert all(grades[gid][0] == 0 for gid in sub.fails)


@pytest.mark.parametrize("sub", [s for s in SUBMISSIONS if not s.fails], ids=lambda s: f"{s.assignment}-{s.student}")
def test_correct_submissions_in_other_styles_get_full_marks(course, sub: Submission):
    grades = course.grades(sub.assignment, sub.student)
    assert grades and all(score == top for score, top in grades.values()), grades


@pytest.mark.parametrize("student,assignment,cell_id", READERS, ids=lambda v: str(v))
def test_a_submission_reading_the_instructors_folder_gets_nothing(course, student, assignment, cell_id):
    """Autograded in the sandbox: no ``source/``, no gradebook (the cell's points are lost: see the fails)."""
    nb = nbformat.read(notebook_of(course.autograded(assignment, student)), as_version=4)
    (cell,) = [c for c in nb.cells if c.get("id") == cell_id]
    (line,) = [ln for o in cell.outputs if o.get("name") == "stdout" for ln in o.text.splitlines()
               if ln.startswith("SEEN ")]
    assert json.loads(line[5:]) == {"source": False, "gradebook": False}


def test_the_hidden_tests_of_the_parsl_notebooks_only_record(course):
    """No assertion in a hidden test: the trusted checks in grading/<assignment>.py judge what it records."""
    for a in PARSL_NOTEBOOKS:
        nb = nbformat.read(notebook_of(COURSE / "source" / a), as_version=4)
        checks = (COURSE / "grading" / f"{a}.py").read_text()
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if not (meta.get("grade") and cell.cell_type == "code"):
                continue
            hidden = cell.source.split("### BEGIN HIDDEN TESTS", 1)[1].split("### END HIDDEN TESTS")[0]
            assert "_record(" in hidden and "assert" not in hidden and "isclose" not in hidden, (a, meta["grade_id"])
            assert f'"{meta["grade_id"]}":' in checks, f"{a}: no trusted check for {meta['grade_id']}"


def test_each_submission_is_graded_from_its_own_outputs_in_its_own_folder(course):
    for a in ("staging", "rasterization", "scripts"):
        for student in ("solution", "capped"):
            out = course.autograded(a, student) / "group-project"
            assert any((out / "staged").rglob("*.gpkg")), f"{a}/{student}: no staged tiles in its own folder"
    assert (course.autograded("scripts", "capped") / SCRIPT).read_text() != \
        (course.autograded("scripts", "solution") / SCRIPT).read_text()
    # the capped run really used one worker, the default run more where the machine has them
    capped = nbformat.read(notebook_of(course.autograded("staging", "capped")), as_version=4)
    cell = next(c for c in capped.cells if c.get("id") == "parallel-staging")
    assert "".join(o.get("text", "") for o in cell.outputs).startswith("1 ")
    for folder in (course.root / "source").iterdir():
        assert not (folder / "group-project").exists(), "grading wrote into the source folder"


def test_autograding_unchanged_test_cells_raises_no_checksum_warnings(course):
    """nbgrader#1961: the gradebook's checksum of a test cell includes its hidden tests; the release's does not."""
    log = "\n".join(course.autograde_logs)
    for a in ASSIGNMENTS:
        assert "Sanitizing" in log and f"/submitted/blank/{a}/" in log, f"{a}: nbgrader's log was not captured"
    assert "has changed" not in log, [line for line in log.splitlines() if "has changed" in line][:3]


def test_hidden_tests_are_restored_into_the_graded_notebooks(course):
    released = notebook_of(course.root / "release" / "staging").read_text()
    graded = notebook_of(course.autograded("staging", "blank")).read_text()
    assert "_leftovers(" not in released and "_leftovers(" in graded


PARSL_NOTEBOOKS = ("staging", "rasterization", "cpu-or-io")


@pytest.mark.parametrize("assignment", PARSL_NOTEBOOKS)
def test_learners_write_the_parsl_program_themselves(assignment):
    nb = nbformat.read(notebook_of(COURSE / "source" / assignment), as_version=4)
    answers = "\n".join(c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")
                        and c.cell_type == "code")
    for needed in ("@python_app", "HighThroughputExecutor(", "LocalProvider(", "max_workers_per_node=",
                   "init_blocks=1", "max_blocks=1", "worker_init=", "Config(executors=", "run_dir=",
                   ".result()", "parsl.load("):
        assert needed in answers, f"{assignment}: the learner's answers should write {needed}"
    everything = "\n".join(c.source for c in nb.cells)
    for gone in ("parallel_map(", "local_config("):
        assert gone not in "\n".join(c.source for c in nb.cells if c.cell_type == "code"), \
            f"{assignment} still runs {gone} for the learner"
    assert "fails there" not in everything and "about 454" not in everything
    release_tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]
    assert all(c.get("id", "").startswith("test-") for c in release_tests)


def test_the_learner_config_gives_validate_a_long_enough_cell_timeout(tmp_path):
    """Validate reads nbgrader's config from the server's folder and ``jupyter --paths``: ship it there."""
    etc = tmp_path / "etc-jupyter"
    etc.mkdir()
    shutil.copyfile(COURSE / "learner" / "nbgrader_config.py", etc / "nbgrader_config.py")
    probe = ("from jupyter_core.paths import jupyter_config_path\n"
             "from nbgrader.apps import NbGrader\n"
             "import os\n"
             "paths = jupyter_config_path(); paths.insert(0, os.getcwd())\n"   # as nbgrader's Validate handler
             "app = NbGrader(); app.config_file_paths.append(paths); app.load_config_file()\n"
             "print(app.config.Execute.get('timeout', 'default'))\n")
    home = tmp_path / "home"
    home.mkdir()
    env = course_env(JUPYTER_CONFIG_PATH=str(etc), HOME=str(home))
    env.pop("JUPYTER_CONFIG_DIR", None)
    out = subprocess.run([sys.executable, "-c", probe], cwd=home, env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    assert float(out.stdout.split()[-1]) >= 600
    without = subprocess.run([sys.executable, "-c", probe], cwd=home, env=course_env(HOME=str(home)),
                             capture_output=True, text=True, timeout=120, check=True)
    assert without.stdout.split()[-1] == "default", "this machine has an nbgrader_config.py of its own"


def test_validate_passes_on_a_correct_notebook_with_the_learner_config(course, tmp_path):
    """A learner's Validate of a correct staging notebook, with the shipped learner config only."""
    etc = tmp_path / "etc-jupyter"
    etc.mkdir()
    shutil.copyfile(COURSE / "learner" / "nbgrader_config.py", etc / "nbgrader_config.py")
    work = tmp_path / "home" / "staging"
    work.mkdir(parents=True)
    shutil.copyfile(notebook_of(course.root / "submitted" / "capped" / "staging"), work / "staging.ipynb")
    env = course_env(JUPYTER_CONFIG_PATH=str(etc), HOME=str(tmp_path / "home"))
    run = subprocess.run([sys.executable, "-m", "nbgrader", "validate", "staging.ipynb"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Success! Your notebook passes all the tests." in run.stdout, (run.stdout[-3000:], run.stderr[-3000:])


# ----------------------------------------------------------------------------- lazy-arrays
def test_lazy_arrays_has_three_autograded_exercises_and_two_written_questions():
    nb = nbformat.read(notebook_of(COURSE / "source" / "lazy-arrays"), as_version=4)
    graded = {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}
    tests = {"test-busiest-item", "test-totals", "test-read-experiment"}
    written = {"explain-chunks", "dask-vs-parsl"}
    assert set(graded) == tests | written
    for gid in tests:
        assert graded[gid].cell_type == "code" and graded[gid].metadata["nbgrader"]["locked"]
        assert "### BEGIN HIDDEN TESTS" in graded[gid].source
        assert graded[gid].get("id") == gid
    for gid in written:
        assert graded[gid].cell_type == "markdown" and graded[gid].metadata["nbgrader"]["solution"]
    results = [c for c in nb.cells if c.get("id", "").startswith("result-")]
    assert results and all(c.metadata.get("tags") == ["result"] for c in results)


def test_lazy_arrays_is_graded_from_its_own_run_with_the_workers_the_cap_allows(course):
    release = notebook_of(course.root / "release" / "lazy-arrays").read_text()
    assert "overhead_per_task_ms = 1000" not in release  # a line of the solution
    for student in ("solution", "capped"):
        assert (course.autograded("lazy-arrays", student) / "group-project" / "run-summary.json").is_file()

    def printed(student: str) -> str:
        nb = nbformat.read(notebook_of(course.autograded("lazy-arrays", student)), as_version=4)
        return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)

    assert "Dask worker threads: [1]" in printed("capped")  # graded under GROUPUTILS_MAX_WORKERS=1
    assert "Dask worker threads: [1, 2]" in printed("solution") or (os.cpu_count() or 1) == 1


# ----------------------------------------------------------------------------- solutions/
def _solution_cells(assignment: str) -> list[tuple[str, str]]:
    nb = nbformat.read(SOLUTIONS / f"{assignment}.ipynb", as_version=4)
    return [(c.cell_type, c.source) for c in nb.cells]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solutions_are_generated_from_the_current_source_notebooks(assignment):
    source = nbformat.read(notebook_of(COURSE / "source" / assignment), as_version=4)
    expected = [(c.cell_type, strip_markers(c.source).rstrip("\n")) for c in source.cells]
    assert _solution_cells(assignment) == expected, "run scripts/make_solutions.py"
    nb = nbformat.read(SOLUTIONS / f"{assignment}.ipynb", as_version=4)
    errors = [c.id for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code"), "solutions are executed"


def test_the_solution_script_is_the_one_the_bonus_notebook_writes():
    cells = [src for kind, src in _solution_cells("scripts") if src.startswith(f"%%writefile {SCRIPT}")]
    assert len(cells) == 1
    body = cells[0].split("\n", 1)[1]
    assert (SOLUTIONS / SCRIPT).read_text().rstrip("\n") == body.rstrip("\n")


# The autograded run of each source solution is a fresh execution of the same code on the shipped
# samples; the committed solutions must show the same result cells (no second execution here).
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_autograded_run_of_a_solution_reproduces_its_result_cells(course, assignment):
    rerun = nbformat.read(notebook_of(course.autograded(assignment, "solution")), as_version=4)
    assert_result_cells_match(SOLUTIONS / f"{assignment}.ipynb", rerun)


# ----------------------------------------------------------------------------- count_polygons.py
@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory) -> Path:
    from grouputils.core.config import Config
    from grouputils.run.pipeline import run_pipeline

    out = tmp_path_factory.mktemp("pipeline") / "group-project"
    report = run_pipeline(Config(dir_input=shipped_samples(), dir_output=out), executor="serial", progress=False)
    assert report.ok
    return out


def test_count_polygons_agrees_with_the_pipelines_unique_polygon_count(pipeline_run):
    from grouputils.teaching.course import parse_count_table

    run = subprocess.run([sys.executable, str(SOLUTIONS / SCRIPT), str(pipeline_run)],
                         capture_output=True, text=True, timeout=300, check=True)
    per_file, total = parse_count_table(run.stdout)
    summary = json.loads((pipeline_run / "run-summary.json").read_text())
    assert total == summary["unique_polygons"]
    assert sum(per_file.values()) == total
    # independently of the staged tiles: the generator's features minus its listed re-detections
    generator = json.loads((shipped_samples() / "generator.json").read_text())
    expected = {f["name"]: f["features"] - f["redetections"] for f in generator["files"]}
    assert per_file == expected


def test_count_polygons_reads_group_project_by_default_and_says_when_nothing_is_staged(pipeline_run, tmp_path):
    shutil.copytree(pipeline_run / "staged", tmp_path / "group-project" / "staged")
    default = subprocess.run([sys.executable, str(SOLUTIONS / SCRIPT)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300, check=True)
    explicit = subprocess.run([sys.executable, str(SOLUTIONS / SCRIPT), str(pipeline_run)],
                              capture_output=True, text=True, timeout=300, check=True)
    assert default.stdout == explicit.stdout
    empty = subprocess.run([sys.executable, str(SOLUTIONS / SCRIPT), str(tmp_path / "nothing")],
                           capture_output=True, text=True, timeout=300)
    assert empty.returncode != 0 and "no staged tiles" in empty.stderr


def test_unique_polygon_counts_and_the_table_parser_agree_with_the_pipeline(pipeline_run):
    from grouputils.teaching.course import parse_count_table, unique_polygon_counts

    counts = unique_polygon_counts(pipeline_run)
    summary = json.loads((pipeline_run / "run-summary.json").read_text())
    assert int(counts.sum()) == summary["unique_polygons"]
    table = "file | polygons\n" + "\n".join(f"| {k} | {v:,} |" for k, v in counts.items()) + \
        f"\nTOTAL: {int(counts.sum()):_}\n"
    assert parse_count_table(table) == (counts.to_dict(), int(counts.sum()))
    with pytest.raises(ValueError, match="total"):
        parse_count_table("scene01.gpkg 3\n")


def test_unique_polygon_counts_says_when_a_folder_holds_no_staged_tiles(tmp_path):
    from grouputils.core.errors import InputError
    from grouputils.teaching.course import unique_polygon_counts

    with pytest.raises(InputError, match="no staged tiles") as err:
        unique_polygon_counts(tmp_path / "group-project")
    assert err.value.path == tmp_path / "group-project"


# ----------------------------------------------------------------------------- course scale
@pytest.fixture(scope="module")
def course_scale_data(tmp_path_factory) -> Path:
    """The course-scale data set (~0.5 GB, generated once per module)."""
    from grouputils.teaching.samples import generate_dataset

    data = tmp_path_factory.mktemp("iwp-course")
    generate_dataset(data, scale="course")
    return data


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_solutions_pass_their_own_tests_on_course_scale_data(assignment, course_scale_data, tmp_path):
    """Every source notebook, hidden tests included, runs clean on ~0.5 GB of course-scale data."""
    from nbclient import NotebookClient

    nb = nbformat.read(notebook_of(COURSE / "source" / assignment), as_version=4)
    client = NotebookClient(nb, timeout=1800, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    t0 = time.perf_counter()
    client.execute(env=course_env(GROUPUTILS_DATA=str(course_scale_data)))  # raises on a failing assert
    print(f"{assignment}: {time.perf_counter() - t0:.0f} s on course-scale data")
    assert any((tmp_path / "group-project" / "staged").rglob("*.gpkg"))


# ----------------------------------------------------------------------------- the course kernel
LEARNER_PROGRAM = '''
import parsl
from parsl import python_app
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import LocalProvider

@python_app
def square(x):
    import os
    return x * x, os.getpid()

config = Config(executors=[HighThroughputExecutor(max_workers_per_node=1,
                                                  provider=LocalProvider(init_blocks=1, max_blocks=1, worker_init=""))],
                run_dir="runinfo", strategy_period=0.5)
with parsl.load(config):
    results = [f.result() for f in [square(i) for i in range(3)]]
print("squares", [r[0] for r in results], "worker", results[0][1] != __import__("os").getpid())
'''


def _run_in_kernel(kernel_dirs: list[Path], name: str, cwd: Path, env: dict[str, str]) -> str:
    """Start kernel ``name`` from ``kernel_dirs`` as Jupyter would (a parent with ``env``), run the program."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    ksm = KernelSpecManager(kernel_dirs=[str(d) for d in kernel_dirs], ensure_native_kernel=False)
    km = KernelManager(kernel_name=name, kernel_spec_manager=ksm)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the environment of the Jupyter server that starts the kernel
    try:
        km.start_kernel(cwd=str(cwd))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        out: list[str] = []

        def hook(msg):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")

        kc.execute_interactive(LEARNER_PROGRAM, timeout=180, output_hook=hook)
        return "".join(out)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_notebook_defined_app_runs_on_the_kernel_the_instructor_guide_installs(tmp_path):
    """Jupyter started without the environment on PATH: the guide's ``--env PATH`` makes HTEX find its commands."""
    prefix = tmp_path / "prefix"
    bindir = Path(sys.executable).parent
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", "iwp",
                    "--env", "PATH", f"{bindir}:${{PATH}}"], check=True, capture_output=True, timeout=120)
    kernels = prefix / "share" / "jupyter" / "kernels"
    spec = json.loads((kernels / "iwp" / "kernel.json").read_text())
    assert spec["env"]["PATH"].startswith(str(bindir))
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "CONDA"))}
    bare["PATH"] = "/usr/bin:/bin"  # a launcher's PATH, without the course environment
    (tmp_path / "with-path").mkdir()
    printed = _run_in_kernel([kernels], "iwp", tmp_path / "with-path", bare)
    assert "squares [0, 1, 4] worker True" in printed, printed

    # the same kernel installed without --env PATH cannot start the interchange: the test can fail
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", "plain"],
                   check=True, capture_output=True, timeout=120)
    (tmp_path / "without-path").mkdir()
    printed = _run_in_kernel([kernels], "plain", tmp_path / "without-path", bare)
    assert "squares" not in printed and "FileNotFoundError" in printed, printed
