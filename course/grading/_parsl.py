"""Shared judgements of the Parsl exercises (instructor only: never released).

The hidden tests record plain facts about the learner's futures, configs and
shutdowns (``grouputils.teaching.recording``); these functions judge them in
the trusted interpreter, with this interpreter's own ``math`` and
``grouputils``, and the cap this grader computes itself.
"""

from pathlib import Path

from grouputils import usable_cores

INTERNAL = "_parsl_internal"


def local(ctx, path) -> Path:
    """A path the kernel recorded, as a path in the submission's folder (the sandbox binds it in place)."""
    p = Path(path)
    if not p.is_absolute():
        return ctx.folder / p
    if p.is_relative_to(ctx.folder):
        return p
    parts = p.parts
    if "group-project" in parts:  # the same file seen from another mount point
        return ctx.folder.joinpath(*parts[parts.index("group-project"):])
    return p


def awaited(facts, what: str) -> None:
    """Every item is a future of the learner's app, done, without an error."""
    assert facts, f"{what}: no futures were recorded"
    assert all(f["app_future"] for f in facts), f"{what}: keep the futures your app returned"
    assert all(f["done"] and f["error"] is None for f in facts), f"{what}: wait for every task"


def span_s(facts) -> float:
    """Seconds from the first task's submission to the last task's result (Parsl's task records)."""
    return max(f["returned"] for f in facts) - min(f["invoked"] for f in facts)


def includes_wait(measured, facts, name: str) -> None:
    assert isinstance(measured, (int, float)) and measured >= span_s(facts) - 0.05, \
        f"{name} should include waiting for every result"


def executors(facts) -> dict:
    """The executors (by object id) the tasks behind the futures ran on, Parsl's internal one left out."""
    return {e["id"]: e for f in facts if f.get("app_future") for e in f["executors"] if e["label"] != INTERNAL}


def process_pool(facts) -> None:
    """The tasks ran on worker processes (a HighThroughputExecutor) within the cap."""
    found = executors(facts)
    assert found, "no tasks of your app were recorded"
    cap = usable_cores()
    for e in found.values():
        assert e["type"] == "HighThroughputExecutor", \
            "the lesson asks for worker processes: a HighThroughputExecutor, not threads"
        assert isinstance(e["max_workers_per_node"], int) and e["max_workers_per_node"] <= cap, \
            "more workers than usable_cores()"


def shut_down(record) -> None:
    """Every run was cleaned up and no interchange or worker pool of the kernel was left."""
    assert record["runs"] >= 1, "no Parsl run was recorded"
    assert record["not_shut_down"] == 0, \
        "Parsl was not shut down: use `with parsl.load(...):` or parsl.dfk().cleanup()"
    assert not record["left"], f"Parsl processes still running after the cell: {len(record['left'])}"


def make_config_ok(facts, workers=(1, 2)) -> None:
    """``make_config(w)``: a fresh Config of one HighThroughputExecutor with w workers, one local block."""
    assert facts["fresh"], "make_config should build a new Config each time"
    for w in workers:
        cfg = facts[str(w)]
        assert cfg["type"] == "Config", "make_config should return a parsl.config.Config"
        assert len(cfg["executors"]) == 1 and cfg["executors"][0]["type"] == "HighThroughputExecutor", \
            "use one HighThroughputExecutor (worker processes)"
        (ex,) = cfg["executors"]
        assert ex["max_workers_per_node"] == w, "max_workers_per_node should be the workers argument"
        assert ex["provider"] == "LocalProvider", "use a LocalProvider"
        assert ex["init_blocks"] == 1 and ex["max_blocks"] == 1, "one block: init_blocks=1, max_blocks=1"
