#!/usr/bin/env bash
# The whole test suite (installs what it needs first). .ci/run calls exactly this.
# Tests run on two workers (--dist loadfile keeps each file's tests, and its module fixtures,
# on one worker): most end-to-end tests wait on the simulator's clock, not on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python -m snakemake --lint
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
