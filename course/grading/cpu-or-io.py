"""Trusted checks of the `cpu-or-io` assignment (instructor only: never released).

Run by grouputils.teaching.grading.TrustedChecks in a fresh ``python -I``
interpreter after the learner's notebook has run. The cap is computed here,
the sweep tables the learner measured are judged as recorded (JSON), the
verdicts are recomputed here with this interpreter's ``classify_bound``, the
task times are read from the learner's manifests, and the facts recorded
about the learner's own sweep (futures, executors, shutdowns) are judged here
(``_parsl.py``).
"""

import math

import pandas as pd
from _parsl import INTERNAL, awaited, executors, includes_wait, local, shut_down
from _reference import input_sizes, learner_stager

from grouputils import classify_bound, usable_cores
from grouputils.teaching.grading import _jsonable


def _cap() -> int:
    return min(15, usable_cores())


def _table(ctx, name="table") -> pd.DataFrame:
    table = ctx.recorded(name)
    assert isinstance(table, dict) and table, f"{name}: the sweep's table was not recorded"
    df = pd.DataFrame(table)
    for col in df.columns:  # a column of NaN comes back as None (JSON)
        if df[col].dtype == object and all(v is None or isinstance(v, (int, float)) for v in df[col]):
            df[col] = pd.to_numeric(df[col])
    return df


def _names(results):
    return sorted(str(r).rsplit("/", 1)[-1] for r in results)


def worker_counts(ctx) -> None:
    assert ctx.recorded("cap") == _cap(), "cap is at most 15 and at most usable_cores()"
    counts = ctx.recorded("worker_counts")
    assert all(isinstance(w, int) and not isinstance(w, bool) for w in counts)
    assert counts and counts[0] == 1 and counts[-1] == _cap() and counts == sorted(set(counts)), \
        "worker_counts should increase from 1 to cap"


def my_sweep(ctx) -> None:
    sweep, futures = ctx.recorded("my_sweep"), ctx.recorded("futures")
    names = sorted(input_sizes())
    assert {str(w) for w in ctx.recorded("worker_counts")} <= set(sweep), "sweep every count of worker_counts"
    assert set(futures) == set(sweep), "keep the futures of every worker count in my_futures"
    seen = []
    for w, facts in futures.items():
        awaited(facts, f"{w} workers")
        assert _names(f["result"] for f in facts) == names, f"{w} workers: stage every file"
        found = executors(facts)
        assert len(found) == 1, "one executor per worker count"
        ((ex_id, ex),) = found.items()
        assert ex["type"] == "HighThroughputExecutor" and ex["max_workers_per_node"] == int(w), \
            f"{w} workers: a HighThroughputExecutor with {w} workers"
        seen.append(ex_id)
        assert all(sweep[w][k] > 0 for k in ("startup_s", "work_s"))
        includes_wait(sweep[w]["work_s"], facts, "work_s")
    assert len(set(seen)) == len(seen), "a fresh configuration for every worker count"
    cap = str(ctx.recorded("cap"))
    assert cap in sweep and math.isclose(ctx.recorded("my_speedup"), sweep["1"]["work_s"] / sweep[cap]["work_s"],
                                         rel_tol=1e-6), "my_speedup: work at 1 worker / work at cap workers"
    try:
        shut_down(ctx.recorded("shutdown"))
    except AssertionError:
        raise AssertionError("shut every run down before the next") from None


def sweep_cap(ctx) -> None:
    cap = _cap()
    swept = ctx.recorded("swept")
    assert swept and max(swept) <= cap, "never sweep beyond min(15, usable_cores()) workers"
    assert all(isinstance(e["max_workers_per_node"], int) and e["max_workers_per_node"] <= cap
               for e in executors(ctx.recorded("futures")).values()
               if e["label"] != INTERNAL), "never sweep beyond min(15, usable_cores()) workers"


def staging_sweep(ctx) -> None:
    table = _table(ctx)
    names = sorted(input_sizes())
    assert set(table["n_items"]) == {len(names)}, "sweep every input file"
    stager = learner_stager(ctx.folder)
    assert stager.tiles_to_finalize() == [], "run stager.finalize() after the sweep"
    assert sorted(m["filename"] for m in stager.manifests()) == names


def raster_sweep(ctx) -> None:
    staged = set(learner_stager(ctx.folder).tiles.get_filenames_from_dir("staged"))
    items = [local(ctx, p) for p in ctx.recorded("raster_items")]
    assert set(items) <= staged, "raster_items should be staged tiles"
    assert len(set(items)) >= min(50, len(staged)), "use at least 50 tiles"
    assert set(_table(ctx)["n_items"]) == {len(items)}


def verdicts(ctx) -> None:
    for name, table in (("staging_verdict", "staging_table"), ("raster_verdict", "raster_table")):
        expected = _jsonable(classify_bound(_table(ctx, table)))
        assert ctx.recorded(name) == expected, f"{name}: classify your sweep with classify_bound"


def startup(ctx) -> None:
    t = _table(ctx).sort_values("workers")
    a, b = t.iloc[0], t.iloc[-1]
    assert math.isclose(ctx.recorded("staging_speedup"), a["wall_s"] / b["wall_s"], rel_tol=1e-6), \
        "staging_speedup does not follow from your sweep's table"
    assert math.isclose(ctx.recorded("staging_speedup_with_startup"),
                        (a["wall_s"] + a["startup_s"]) / (b["wall_s"] + b["startup_s"]), rel_tol=1e-6), \
        "staging_speedup_with_startup does not follow from your sweep's table"


def plateau(ctx) -> None:
    got = ctx.recorded("max_speedup")
    for key, value in got.items():
        n, w = (int(v) for v in key.split(","))
        assert isinstance(value, (int, float)) and math.isclose(value, n / math.ceil(n / w)), \
            f"max_speedup({n}, {w}) is wrong"
    secs = [m["seconds"] for m in learner_stager(ctx.folder).manifests()]
    assert secs, "no staging tasks in group-project/"
    assert sorted(ctx.recorded("task_seconds")) == sorted(secs), "task_seconds should come from stager.manifests()"
    assert ctx.recorded("best_keys") == list(range(1, 89))
    for w, value in ctx.recorded("best_time_s").items():
        assert math.isclose(value, max(max(secs), sum(secs) / int(w)), rel_tol=1e-9), \
            f"best_time_s[{w}] is wrong"
    assert math.isclose(ctx.recorded("plateau_speedup"), sum(secs) / max(secs), rel_tol=1e-9), \
        "plateau_speedup is wrong"


CHECKS = {
    "test-worker-counts": worker_counts,
    "test-my-sweep": my_sweep,
    "test-sweep-cap": sweep_cap,
    "test-staging-sweep": staging_sweep,
    "test-raster-sweep": raster_sweep,
    "test-verdicts": verdicts,
    "test-startup": startup,
    "test-plateau": plateau,
}
