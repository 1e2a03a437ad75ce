#!/usr/bin/env bash
# Set up .venv with the test extras (and Debian's chromium and bubblewrap),
# check the package with ruff and mypy (either failing fails the command),
# then run the default test suite. Extra arguments go to pytest, e.g.
# `bash scripts/test.sh -m slow` for the course-scale checks.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages the tests use: chromium (the map test), bubblewrap (the sandboxed grading kernel)
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian's ${need[*]} for the map and grading tests (apt-get)..." >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "note: ${need[*]} not found; the browser and sandbox tests will be skipped (install them from your system's packages)" >&2
    fi
fi
bash scripts/setup.sh
# lint and types (settings in pyproject.toml: [tool.ruff], [tool.mypy] checks grouputils/)
.venv/bin/ruff check grouputils benchmarks/bench_bookkeeping.py benchmarks/bench_whole.py benchmarks/bench_goals.py
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
