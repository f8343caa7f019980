#!/usr/bin/env bash
# Benchmarks (print figures; see bench/run.py for what is measured).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m bench.run "$@"
