"""Every speed goal of issue 19 from one run: the four benchmarks, then one table.

Run from the repository root (a git checkout, with ``../shared`` beside it
for the real file)::

    .venv/bin/python benchmarks/bench_goals.py               # about 10-15 minutes
    .venv/bin/python benchmarks/bench_goals.py --quick       # fewer rounds, no course scale

It runs, one after the other, each in its own process and each printing its
own full report:

* ``bench_speed.py`` (web tiles and parents on the real file, CPU seconds);
* ``bench_staging.py --course`` (staging against its I/O floor, the real file
  and the largest course-scale file);
* ``bench_whole.py`` (the whole serial run on the shipped samples, and the
  write floor that bounds it);
* ``bench_pipeline.py --course`` (parallel efficiency at 2 workers, peak
  memory per worker);

then prints every goal with the figure the issue started from, the figure
measured now and whether the bar is met. The PDG libraries are not installed
here: ratios to PDG divide the PDG figures stated in issue 19 by today's
CPU seconds, as each benchmark explains. Run it on a machine with nothing
else running; every figure comes from this one sitting.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def run(script: str, args: list[str], out: Path) -> dict[str, Any]:
    """Run one benchmark (its report goes to our stdout); return its ``--json`` figures."""
    print(f"\n===== {script} {' '.join(args)}\n", flush=True)
    subprocess.run([sys.executable, str(HERE / script), *args, "--json", str(out)], check=False)
    if not out.is_file():
        raise SystemExit(f"{script} wrote no figures ({out})")
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def goal_rows(
    speed: dict[str, Any],
    staging: dict[str, Any],
    whole: dict[str, Any],
    pipeline: dict[str, Any] | None,
) -> list[tuple[str, str, str, str, bool | None]]:
    """(goal, before, now, bar, met) of every goal the figures cover."""
    rows: list[tuple[str, str, str, str, bool | None]] = []
    real = speed.get("real")
    if real is not None:
        pdg = speed["pdg_real"]
        for step, key, before in (
            ("web tiles", "web new from disk", "1.2x"),
            ("parents", "parents new per tile", "3.6x"),
        ):
            x = pdg[step] / real[key]
            rows.append(
                (
                    f"{step} vs PDG, real file, as the pipeline runs them",
                    before,
                    f"{x:.1f}x",
                    ">= 10x",
                    x >= 10,
                )
            )
    total, floor, pdg_whole = whole["run_pipeline"], whole["write_floor"], whole["pdg"]
    x = pdg_whole / total
    rows.append(
        (
            "whole run on the shipped samples vs PDG",
            "5.2x",
            f"{x:.1f}x ({total:.2f} CPU-s)",
            ">= 20x",
            x >= 20,
        )
    )
    rows.append(
        (
            "  bound: PDG / write floor (the files alone, written again)",
            "-",
            f"{pdg_whole / floor:.1f}x ({floor:.2f} CPU-s)",
            "-",
            None,
        )
    )
    rows.append(("  the whole run / its write floor", "-", f"{total / floor:.1f}x", "-", None))
    srows = staging["rows"]
    if "real" in srows:
        r = srows["real"]
        rows.append(
            (
                "staging the real file / its I/O floor (CPU-s)",
                "6.4x",
                f"{r['cpu_ratio']:.2f}x ({r['stage_cpu']:.3f} / {r['floor_cpu']:.3f})",
                "<= 3x",
                r["cpu_ratio"] <= 3,
            )
        )
    if "course" in srows:
        r = srows["course"]
        rows.append(
            (
                "staging the largest course-scale file / its I/O floor (CPU-s)",
                "-",
                f"{r['cpu_ratio']:.2f}x ({r['stage_cpu']:.2f} / {r['floor_cpu']:.2f})",
                "<= 1.5x",
                r["cpu_ratio"] <= 1.5,
            )
        )
        rows.append(
            (
                "  its peak memory / a quarter-size copy's",
                "-",
                f"{staging['memory_ratio']:.2f}x",
                "<= 1.5x",
                staging["memory_ratio"] <= 1.5,
            )
        )
    if pipeline is not None:
        runs = {r["label"]: r for r in pipeline["runs"]}
        one, two = runs.get("local-1"), runs.get("local-2")
        if one is not None and two is not None:
            t1, t2 = sum(one["steps"].values()), sum(two["steps"].values())
            eff = t1 / (2 * t2)
            where = "course scale" if pipeline["course"] else "shipped samples"
            rows.append(
                (
                    f"parallel efficiency at 2 workers, all steps, {where}",
                    "-",
                    f"{100 * eff:.0f} %",
                    ">= 80 %",
                    eff >= 0.8,
                )
            )
            peaks = ", ".join(f"{m:.0f}" for m in two["worker_peak_mb"])
            rows.append(("  peak memory per worker (MB)", "-", peaks, "reported", None))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="one round each, no course-scale data (a smoke run, not the figures)",
    )
    args = ap.parse_args(argv)
    rounds = ["--repeat", "1" if args.quick else "5"]
    course = [] if args.quick else ["--course"]
    with tempfile.TemporaryDirectory(prefix="bench-goals-") as tmp:
        t = Path(tmp)
        speed = run("bench_speed.py", rounds, t / "speed.json")
        staging = run("bench_staging.py", [*course, *rounds], t / "staging.json")
        whole = run("bench_whole.py", ["--repeat", "1" if args.quick else "3"], t / "whole.json")
        pipeline = None if args.quick else run("bench_pipeline.py", course, t / "pipeline.json")
    rows = goal_rows(speed, staging, whole, pipeline)
    print("\n===== issue 19's goals, from this one run\n")
    print("| goal | before (issue 19) | now | bar | met |")
    print("|---|---|---|---|---|")
    for goal, before, now, bar, met in rows:
        mark = "" if met is None else ("yes" if met else "no")
        print(f"| {goal} | {before} | {now} | {bar} | {mark} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
