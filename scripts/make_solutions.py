#!/usr/bin/env python
"""Generate ``solutions/`` from ``course/source``: the executed solution notebooks and count_polygons.py.

Never edit ``solutions/`` by hand: edit the source notebooks (with nbgrader's
solution and hidden-test markers) and run, from the repository root::

    .venv/bin/python scripts/make_solutions.py                 # every assignment
    .venv/bin/python scripts/make_solutions.py scripts         # only some

Each source notebook is copied with the nbgrader markers removed (solutions
and hidden tests kept), executed top to bottom on a fresh ``python3`` kernel in
a temporary folder (so its ``group-project/`` outputs never land in the
repository), and written to ``solutions/<assignment>.ipynb`` with its outputs.
Every folder of ``course/source`` that holds a notebook is an assignment.
The bonus assignment's ``%%writefile`` cell writes ``count_polygons.py``; that
file is copied to ``solutions/count_polygons.py``.

By default the notebooks run on the samples shipped with grouputils, whatever
``GROUPUTILS_DATA`` says in your shell, so the stored outputs are the same on
every machine; ``--data DIR`` runs them on another folder instead.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from grouputils.teaching.course import strip_markers
from grouputils.teaching.grading import RECORD_MIME

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "course" / "source"
SOLUTIONS = REPO / "solutions"
COURSE_ORDER = ("staging", "rasterization", "cpu-or-io", "scripts", "lazy-arrays")
SCRIPT = "count_polygons.py"
DATA_ENV = "GROUPUTILS_DATA"


def drop_records(nb: nbformat.NotebookNode) -> None:
    """Remove the values hidden test cells record for grading (RECORD_MIME outputs).

    They are the grader's input, not part of the solution a reader studies, and
    they hold what a run on one machine saw (its paths, process ids, clock).
    """
    for cell in nb.cells:
        if "outputs" in cell:
            cell.outputs = [o for o in cell.outputs if RECORD_MIME not in o.get("data", {})]


def solution_notebook(source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The source notebook with the nbgrader markers removed from every cell."""
    nb = copy.deepcopy(source)
    for cell in nb.cells:
        cell.source = strip_markers(cell.source).rstrip("\n")
    return nb


def assignments() -> list[str]:
    """Every assignment in ``course/source``: the course's order first, then any others by name."""
    found = sorted(p.name for p in SOURCE.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))
    return [a for a in COURSE_ORDER if a in found] + [a for a in found if a not in COURSE_ORDER]


def source_notebook(assignment: str) -> Path:
    """The one notebook of ``course/source/<assignment>/``."""
    found = sorted((SOURCE / assignment).glob("*.ipynb"))
    if len(found) != 1:
        raise SystemExit(f"expected one notebook in {SOURCE / assignment}, found {len(found)}")
    return found[0]


def execute(nb: nbformat.NotebookNode, workdir: Path, env: dict[str, str], timeout: int) -> None:
    """Run ``nb`` in place, top to bottom, on a fresh kernel started in ``workdir``."""
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
        record_timing=False,
    )
    client.execute(env=env)
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                raise RuntimeError(f"cell {i} ({cell.get('id')}) raised {out['ename']}: {out['evalue']}")


def make(assignment: str, out_dir: Path, env: dict[str, str], timeout: int) -> float:
    """Execute the solution of one assignment into ``out_dir``; return the seconds it took."""
    src = source_notebook(assignment)
    nb = solution_notebook(nbformat.read(src, as_version=4))
    with tempfile.TemporaryDirectory(prefix=f"solution-{assignment}-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        execute(nb, work, env, timeout)
        seconds = time.perf_counter() - t0
        drop_records(nb)
        out_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(out_dir / f"{assignment}.ipynb"))
        if (work / SCRIPT).is_file():
            shutil.copyfile(work / SCRIPT, out_dir / SCRIPT)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    known = assignments()
    parser.add_argument("assignments", nargs="*", metavar="ASSIGNMENT",
                        help=f"some of {', '.join(known)} (default: all)")
    parser.add_argument("--out", type=Path, default=SOLUTIONS, help="output folder (default: solutions/)")
    parser.add_argument("--data", type=Path, help=f"input folder for the notebooks (sets {DATA_ENV})")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell (default 900)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.assignments) - set(known))
    if unknown:
        parser.error(f"unknown assignment(s) {unknown}; choose from {known}")
    env = dict(os.environ)
    env.pop(DATA_ENV, None)
    # the kernel's PATH starts with this environment's bin/, as the instructor guide's kernel has it:
    # Parsl's HighThroughputExecutor runs interchange.py and process_worker_pool.py from PATH
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    if args.data is not None:
        env[DATA_ENV] = str(args.data.resolve())
    for assignment in args.assignments or known:
        seconds = make(assignment, args.out, env, args.timeout)
        print(f"{assignment}: executed in {seconds:.1f} s -> {args.out / (assignment + '.ipynb')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
