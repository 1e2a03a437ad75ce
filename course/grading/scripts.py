"""Trusted checks of the `scripts` assignment (instructor only: never released).

Run by grouputils.teaching.grading.TrustedChecks in a fresh ``python -I`` interpreter
after the learner's notebook has run. Nothing here trusts the learner's
kernel: the expected counts come from a serial staging of the course data made
here, and the learner's ``count_polygons.py`` is run again, in the sandbox,
with the submission folder read-only.
"""

from _reference import reference_counts

from grouputils.teaching.course import parse_count_table


def count_polygons(ctx) -> None:
    script = ctx.folder / "count_polygons.py"
    assert script.is_file(), "count_polygons.py was not written"
    run = ctx.run_learner(["count_polygons.py", "group-project"])
    assert run.returncode == 0, "count_polygons.py failed when the grader ran it:\n" + run.stderr[-2000:]
    try:
        per_file, total = parse_count_table(run.stdout)
    except ValueError as e:
        raise AssertionError(f"count_polygons.py printed no total line ({e})") from None
    expected = reference_counts()
    assert total == sum(expected.values()), (
        f"count_polygons.py printed total {total:,}, but the staged tiles hold a different number of unique polygons")
    assert {k: v for k, v in per_file.items() if v} == expected, "the counts per input file are wrong"


CHECKS = {"test-count-polygons": count_polygons}
