#!/usr/bin/env bash
# The whole test suite (installs what it needs first). .ci/run calls exactly this.
# Tests run on four workers on two cores (--dist loadfile keeps each file's tests, and its module
# fixtures, on one worker): the end-to-end tests spend much of their time waiting on the
# simulator's clock and the collector's fixed streaming windows, not on the CPU. Measured here:
# 9 1/4 to 9 3/4 min of pytest with 4 workers from a fresh clone (638 tests, 2026-11-30, after
# the Snakefile lifted Snakemake's job rate limiter; 10 to 12 1/2 min before it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python -m snakemake --lint
exec .venv/bin/python -m pytest -n 4 --dist loadfile --no-loadscope-reorder "$@"
