#!/usr/bin/env bash
# The whole test suite (installs what it needs first). .ci/run calls exactly this.
# Tests run on four workers on two cores (--dist loadfile keeps each file's tests, and its module
# fixtures, on one worker): the end-to-end tests spend much of their time waiting on the
# simulator's clock and the collector's fixed streaming windows, not on the CPU. Measured here:
# 10 to 12 1/2 min with 4 workers from a fresh clone (636 tests, 2026-11-30; the same code took
# 9 min 59 s on one day and 12 min 23 s on another).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python -m snakemake --lint
exec .venv/bin/python -m pytest -n 4 --dist loadfile "$@"
