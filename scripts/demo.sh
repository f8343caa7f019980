#!/usr/bin/env bash
# The main job on the embedded default: OKX simulator -> collector -> Snakemake -> Qlib.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m harness.demo "$@"
