#!/usr/bin/env bash
# Set up .venv with the test extras (and Debian's chromium for the map test),
# then run the default test suite. Extra arguments go to pytest, e.g.
# `bash scripts/test.sh -m slow` for the course-scale checks.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian's chromium for the map test (apt-get)..." >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "note: chromium not found; the browser test will be skipped (install your system's chromium)" >&2
    fi
fi
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
