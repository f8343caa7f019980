#!/usr/bin/env bash
# The whole test suite (installs what it needs first). .ci/run calls exactly this.
# Tests run on four workers on two cores (--dist loadfile keeps each file's tests, and its module
# fixtures, on one worker): the end-to-end tests spend much of their time waiting on the
# simulator's clock and the collector's fixed streaming windows, not on the CPU.
# --no-loadscope-reorder keeps the order tests/conftest.py gives (the files of builds first);
# xdist's own order started them last. Measured here: 8 min 0 s of pytest (639 tests,
# 2026-11-30), 9 min 14 s the hour before with xdist's order.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python -m snakemake --lint
exec .venv/bin/python -m pytest -n 4 --dist loadfile --no-loadscope-reorder "$@"
