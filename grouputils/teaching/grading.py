"""Autograding that trusts nothing a learner's cells can replace.

Every check that runs inside the learner's kernel can be defeated by the
learner's own cells: ``math.isclose = lambda *a, **k: True``, replacing
``grouputils.teaching.course``'s helpers, patching ``subprocess.run`` or ``json``. So
the hidden tests of the course do not *check* anything in the kernel; they
only *record* the values to be graded, and the checks run on the grader's
side, after the notebook has run:

1. a hidden test cell calls :func:`record` (``record(n_polygons=n_polygons)``),
   which shows the values as one output of MIME type :data:`RECORD_MIME`
   (JSON, never pickle);
2. :class:`TrustedChecks`, an nbgrader preprocessor placed after ``Execute``
   in ``Autograde.autograde_preprocessors``, reads that output and starts a
   fresh interpreter (``python -I``: no current folder, no user
   ``site-packages``, no ``PYTHON*`` variables, so a ``sitecustomize.py`` or
   ``grouputils.py`` planted in the submission is never imported) that runs
   the instructor's checks for the assignment, ``<checks_dir>/<assignment>.py``
   (kept outside ``source/``, so never released), against the records and the
   learner's files. A check recomputes what it expects on its own (from the
   input data, from a serial run), and may run a learner's script again, in
   the sandbox, with the submission folder read-only;
3. a cell whose check fails gets an error output *first*, so nbgrader scores
   it 0 whatever else the cell printed; a check that expected a record and
   found none (or more than one) fails too.

A checks module defines ``CHECKS``, a dict of ``grade_id`` -> function taking
a :class:`CheckContext` and raising ``AssertionError`` (its message is shown
to the learner) when the answer is wrong.

:class:`HideHiddenTests` strips hidden test code, records and tracebacks
from the feedback learners get back. :func:`configure` sets all of this up in
an ``nbgrader_config.py``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "RECORD_MIME",
    "CheckContext",
    "record",
    "run_checks",
    "configure",
]

#: MIME type of the output a hidden test cell records its values in.
RECORD_MIME = "application/vnd.grouputils.teaching.grading+json"
_FAILED = "HiddenTestFailed"


def _jsonable(value: Any) -> Any:
    """Plain JSON types: numbers (numpy too), strings, paths, lists and dicts of them.

    A dataclass becomes a dict of its fields with its class name under
    ``"__type__"``; a NaN becomes None (as pandas reads it back), an infinity
    its ``str``.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"__type__": type(value).__name__, **fields}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (bool, str)):
        return value
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()  # numpy / pandas scalars
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return value if math.isfinite(value) else str(value)
    return repr(value)


def record(**values: Any) -> None:
    """Record the values a hidden test hands to the grader (call it in a hidden test cell).

    Parameters
    ----------
    **values
        Named values; numbers, strings, paths and lists or dicts of them are
        kept as JSON, anything else as its ``repr``.
    """
    from IPython.display import publish_display_data

    publish_display_data({RECORD_MIME: _jsonable(values), "text/plain": "(recorded for grading)"})


@dataclass(frozen=True)
class CheckContext:
    """What a trusted check is given.

    Attributes
    ----------
    folder : Path
        The submission's folder after the notebook ran (its outputs are there).
    record : dict or None
        The values the cell's hidden test recorded, None if it recorded nothing.
    sandbox : bool
        Whether :meth:`run_learner` runs commands in the sandbox.
    """

    folder: Path
    record: dict[str, Any] | None
    sandbox: bool = True

    def recorded(self, name: str) -> Any:
        """A recorded value; fails the check if the hidden test did not record it."""
        if self.record is None or name not in self.record:
            raise AssertionError(
                f"the test cell did not hand `{name}` to the grader (did the notebook run to here?)"
            )
        return self.record[name]

    def run_learner(
        self, args: Sequence[str], *, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        """Run a learner's program with ``python -I``, read-only, offline, in the sandbox.

        Parameters
        ----------
        args : sequence of str
            Arguments after ``python -I`` (``["count_polygons.py", "group-project"]``).
        timeout : float
            Seconds before it is killed.

        Returns
        -------
        subprocess.CompletedProcess
            With text ``stdout`` and ``stderr``.
        """
        cmd = [sys.executable, "-I", *args]
        if self.sandbox:
            from grouputils.teaching.sandbox import sandbox_command

            cmd = sandbox_command(cmd, self.folder, writable_workdir=False, network=False)
        return subprocess.run(cmd, cwd=self.folder, capture_output=True, text=True, timeout=timeout)


def _load_checks(path: Path) -> dict[str, Callable[[CheckContext], None]]:
    if str(path.parent) not in sys.path:  # the instructor's folder: checks may share helper modules
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(
        f"_grading_checks_{path.stem.replace('-', '_')}", path
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: cannot be loaded as a checks module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.CHECKS)


def run_checks(
    checks_file: str | Path, folder: str | Path, records: dict[str, Any], *, sandbox: bool = True
) -> dict[str, str | None]:
    """Run every check of a checks module; what the trusted interpreter does.

    Parameters
    ----------
    checks_file : str or Path
        ``<checks_dir>/<assignment>.py`` defining ``CHECKS``.
    folder : str or Path
        The submission's folder.
    records : dict
        ``grade_id`` -> the recorded values, or None.
    sandbox : bool
        Run learners' programs in the sandbox.

    Returns
    -------
    dict
        ``grade_id`` -> None (passed) or the reason it failed.
    """
    results: dict[str, str | None] = {}
    for grade_id, check in _load_checks(Path(checks_file)).items():
        ctx = CheckContext(Path(folder), records.get(grade_id), sandbox)
        try:
            check(ctx)
            results[grade_id] = None
        except AssertionError as e:
            results[grade_id] = str(e) or "the answer is not right"
        except (
            Exception
        ) as e:  # a crash on the learner's files is a failed check, not a grader crash
            results[grade_id] = f"the check could not be completed: {type(e).__name__}: {e}"
    return results


def _main(argv: Sequence[str]) -> int:
    """``python -I -m grouputils.teaching.grading CHECKS FOLDER RECORDS OUT [--no-sandbox]``."""
    checks_file, folder, records_json, out_json = argv[:4]
    records = json.loads(Path(records_json).read_text())
    results = run_checks(checks_file, folder, records, sandbox="--no-sandbox" not in argv)
    Path(out_json).write_text(json.dumps(results))
    return 0


# --------------------------------------------------------------------------- nbgrader side
try:
    from nbformat import NotebookNode
    from nbgrader.preprocessors import ClearHiddenTests, Execute
    from nbgrader.preprocessors.base import NbGraderPreprocessor
    from traitlets import Bool, Float, Unicode
except ImportError:  # pragma: no cover - nbgrader is a course extra
    NbGraderPreprocessor = None

if NbGraderPreprocessor is not None:

    class SandboxedExecute(Execute):
        """nbgrader's Execute, every kernel in the sandbox (:mod:`grouputils.teaching.sandbox`)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            from grouputils.teaching.sandbox import SandboxedKernelManager, bwrap_path

            bwrap_path()  # fail now, with the fix, if bubblewrap is missing
            kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
            super().__init__(*args, **kwargs)

    def _records(cell: NotebookNode) -> list[Any]:
        return [
            o["data"][RECORD_MIME]
            for o in cell.get("outputs", [])
            if o.get("output_type") == "display_data" and RECORD_MIME in o.get("data", {})
        ]

    class TrustedChecks(NbGraderPreprocessor):
        """Run an assignment's instructor checks in a fresh interpreter; fail cells they reject."""

        checks_dir = Unicode(
            "", help="Folder of <assignment>.py checks modules (not under source/)."
        ).tag(config=True)
        sandbox = Bool(True, help="Run learners' programs in the bubblewrap sandbox.").tag(
            config=True
        )
        timeout = Float(1800, help="Seconds the checks of one notebook may take.").tag(config=True)

        def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
            assignment = resources.get("nbgrader", {}).get("assignment")
            checks_file = Path(self.checks_dir) / f"{assignment}.py"
            if not self.checks_dir or not checks_file.is_file():
                return nb, resources
            folder = Path(resources.get("metadata", {}).get("path") or ".").resolve()
            cells = {
                c.metadata.get("nbgrader", {}).get("grade_id"): c
                for c in nb.cells
                if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
            }
            records: dict[str, Any] = {}
            forged: set[str] = set()
            for grade_id, cell in cells.items():
                found = _records(cell)
                if len(found) > 1:
                    forged.add(grade_id)
                records[grade_id] = found[0] if len(found) == 1 else None
            with tempfile.TemporaryDirectory(prefix="grouputils-checks-") as tmp:
                rec, out = Path(tmp) / "records.json", Path(tmp) / "results.json"
                rec.write_text(json.dumps(records))
                cmd = [
                    sys.executable,
                    "-I",
                    "-m",
                    "grouputils.teaching.grading",
                    str(checks_file.resolve()),
                    str(folder),
                    str(rec),
                    str(out),
                ] + ([] if self.sandbox else ["--no-sandbox"])
                run = subprocess.run(
                    cmd, cwd=tmp, capture_output=True, text=True, timeout=self.timeout
                )
                if run.returncode != 0 or not out.is_file():
                    raise RuntimeError(
                        f"the checks of {checks_file} crashed:\n{run.stderr[-4000:]}"
                    )
                results = json.loads(out.read_text())
            for grade_id in forged:
                results[grade_id] = "the test cell recorded more than one set of values"
            for grade_id, reason in results.items():
                if grade_id not in cells:
                    raise KeyError(f"{checks_file}: no test cell {grade_id!r} in the notebook")
                if reason is not None:
                    self.log.info("hidden test %s failed: %s", grade_id, reason)
                    error = NotebookNode(
                        output_type="error",
                        ename=_FAILED,
                        evalue=reason,
                        traceback=[f"{_FAILED}: {reason}"],
                    )
                    cells[grade_id].outputs.insert(
                        0, error
                    )  # first: nbgrader stops at the first result
            return nb, resources

    class HideHiddenTests(ClearHiddenTests):
        """For feedback: remove hidden test code, recorded values and tracebacks that quote them."""

        def preprocess_cell(
            self, cell: NotebookNode, resources: dict, cell_index: int
        ) -> tuple[NotebookNode, dict]:
            had_hidden = self.begin_test_delimeter in cell.source
            cell, resources = super().preprocess_cell(cell, resources, cell_index)
            if cell.cell_type == "code":
                kept = []
                for o in cell.get("outputs", []):
                    if o.get("output_type") == "display_data" and RECORD_MIME in o.get("data", {}):
                        continue
                    if had_hidden and o.get("output_type") == "error":
                        # the message is the instructor's; a traceback would quote hidden lines
                        o.traceback = [f"{o.ename}: {o.evalue}"]
                    kept.append(o)
                cell.outputs = kept
            return cell, resources


def configure(c: Any, checks_dir: str | Path, *, sandbox: bool = True) -> None:
    """Set up sandboxed, trusted autograding in an ``nbgrader_config.py``.

    Parameters
    ----------
    c : traitlets.config.Config
        The ``c`` of the config file.
    checks_dir : str or Path
        Folder of the instructor's ``<assignment>.py`` checks modules.
    sandbox : bool
        Execute notebooks (and learners' scripts) in the bubblewrap sandbox.
    """
    from nbgrader.converters.autograde import Autograde
    from nbgrader.converters.generate_feedback import GenerateFeedback

    steps = list(Autograde.class_traits()["autograde_preprocessors"].default())
    i = steps.index(Execute)
    steps[i : i + 1] = [SandboxedExecute if sandbox else Execute, TrustedChecks]
    c.Autograde.autograde_preprocessors = steps
    c.TrustedChecks.checks_dir = str(checks_dir)
    c.TrustedChecks.sandbox = sandbox
    feedback = list(GenerateFeedback.class_traits()["preprocessors"].default())
    c.GenerateFeedback.preprocessors = [HideHiddenTests, *feedback]
    c.HideHiddenTests.enforce_metadata = False


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
