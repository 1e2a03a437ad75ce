"""Node-local scratch (`scratch_dir`): file-system operations on the output folder, and time.

The pipeline runs serially on the shipped samples (or ``--input DIR``)
three ways, each from scratch in a fresh output folder:

* ``direct``: every output written beside its final name and renamed;
* ``scratch``: ``scratch_dir`` set: outputs written on the local folder,
  then copied to a temporary name in the output folder and renamed;
* ``scratch+inputs``: also reads each input from a local copy.

For each it prints the wall time (median of ``--repeat`` runs without
tracing, the modes interleaved) and, from a second
run under ``strace -f``, the system calls that touch the output folder (by
path, or by a file descriptor open on it), split into opens, reads, writes,
seeks/locks/syncs and metadata (stat, rename, unlink, mkdir...). The counts
are what a shared (network) file system would have to serve; on this machine
the "local" folder is on the same disk, so times show the cost of the extra
copy, not the saving a slow shared file system gives.

Usage::

    .venv/bin/python benchmarks/bench_scratch.py [--input DIR] [--no-strace] [--repeat N]
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = {
    "direct": {},
    "scratch": {"scratch_dir": "{local}"},
    "scratch+inputs": {"scratch_dir": "{local}", "scratch_inputs": True},
}
CHILD = """
import sys
from pathlib import Path
from grouputils.core.config import Config
from grouputils.run.pipeline import run_pipeline
inp, out, scratch, inputs = sys.argv[1:5]
config = Config(dir_input=Path(inp), dir_output=Path(out), scratch_dir=scratch or None, scratch_inputs=inputs == "1")
report = run_pipeline(config, executor="serial", progress=False)
sys.exit(0 if report.ok else 1)
"""
KIND = {
    "open": {"open", "openat", "openat2", "creat"},
    "read": {"read", "pread64", "readv", "preadv", "preadv2"},
    "write": {"write", "pwrite64", "writev", "pwritev", "pwritev2", "copy_file_range", "sendfile", "ftruncate"},
    "seek/lock/sync": {"lseek", "fcntl", "flock", "fsync", "fdatasync", "fallocate"},
}
LINE = re.compile(r"^\d+\s+([a-z_0-9]+)\(")


def run_child(inputs: Path, out: Path, mode: str, local: Path, trace: Path | None) -> float:
    settings = MODES[mode]
    scratch = str(local) if "scratch_dir" in settings else ""
    cmd = [sys.executable, "-c", CHILD, str(inputs), str(out), scratch, "1" if settings.get("scratch_inputs") else "0"]
    if trace is not None:
        cmd = ["strace", "-f", "-qq", "-y", "-e", "trace=%file,%desc", "-o", str(trace), *cmd]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def count_ops(trace: Path, out: Path) -> collections.Counter:
    """System calls of a trace that touch ``out`` (by path or through a descriptor on it)."""
    marker = str(out.resolve())
    counts: collections.Counter = collections.Counter()
    with trace.open(errors="replace") as f:
        for line in f:
            if marker not in line:
                continue
            m = LINE.match(line)
            if not m or m.group(1) == "close":
                continue
            name = m.group(1)
            kind = next((k for k, names in KIND.items() if name in names), "metadata")
            counts[kind] += 1
            counts["total"] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=None, help="input folder (default: data-samples)")
    parser.add_argument("--no-strace", action="store_true", help="times only")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per mode, interleaved (median shown)")
    args = parser.parse_args()
    inputs = args.input or Path(__file__).resolve().parents[1] / "data-samples"
    use_strace = not args.no_strace and shutil.which("strace") is not None
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scratch-") as tmp:
        base = Path(tmp)
        walls: dict[str, list[float]] = {m: [] for m in MODES}
        for r in range(args.repeat):  # interleaved, so a neighbour's load hits every mode alike
            for mode in MODES:
                out = base / f"out-{mode}-{r}"
                walls[mode].append(run_child(inputs, out, mode, base / f"local-{mode}", None))
                shutil.rmtree(out)
        for mode in MODES:
            local = base / f"local-{mode}"
            wall = statistics.median(walls[mode])
            ops: collections.Counter = collections.Counter()
            if use_strace:
                out = base / f"traced-{mode}"
                run_child(inputs, out, mode, local, base / "trace.txt")
                ops = count_ops(base / "trace.txt", out)
            rows.append((mode, wall, ops))
    cols = ["total", "open", "read", "write", "seek/lock/sync", "metadata"]
    print(f"input: {inputs} ({'strace' if use_strace else 'no strace'})")
    print(f"{'mode':<16}{'wall s':>8}" + "".join(f"{c:>16}" for c in cols))
    for mode, wall, ops in rows:
        print(f"{mode:<16}{wall:>8.1f}" + "".join(f"{ops.get(c, 0):>16,}" for c in cols))
    if use_strace:
        d = rows[0][2].get("total", 0)
        for mode, _, ops in rows[1:]:
            print(f"{mode}: {ops.get('total', 0) / max(d, 1):.2f} x the output-folder operations of direct writes")


if __name__ == "__main__":
    main()
