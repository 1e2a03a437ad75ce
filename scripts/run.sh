#!/usr/bin/env bash
# The main job: set up .venv, then run the pipeline on the shipped samples.
# Extra arguments go to `grouputils`, e.g. `bash scripts/run.sh --workers 2`.
set -euo pipefail
cd "$(dirname "$0")/.."
GROUPUTILS_EXTRAS="${GROUPUTILS_EXTRAS:-course}" bash scripts/setup.sh
exec .venv/bin/grouputils run data-samples group-project "$@"
