#!/usr/bin/env bash
# The whole test suite (installs what it needs first). .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python -m snakemake --lint
exec .venv/bin/python -m pytest "$@"
