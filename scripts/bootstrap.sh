#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install the pinned
# dependencies into it: every role (".[test]": collector, workflow, research, simulator, test
# tools; pyproject.toml lists them). Idempotent: a second run with nothing changed takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "bootstrap: $PYTHON not found. This project needs Python 3.11 (cryptofeed 2.4.1 is the newest release for it)." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing pinned dependencies (first run: about 3 minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  # Every pinned package (constraints.txt) as a wheel in .venv/wheelhouse, fetched once; the
  # install below and tests/test_install_roles.py (a fresh venv per role) install from it offline.
  .venv/bin/python -m pip wheel --quiet -w .venv/wheelhouse -r constraints.txt "setuptools>=68"
  .venv/bin/python -m pip install --quiet --no-index --find-links .venv/wheelhouse -c constraints.txt -e ".[test]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# Bytecode of the project's own modules. Where PYTHONDONTWRITEBYTECODE is set (CI machines often
# set it), Python never caches it, so every process (each Snakemake job, the collector, each test
# worker) would compile them from source again: measured 0.1 s a job here. pip compiled the rest.
.venv/bin/python -m compileall -q feeder collector okxsim harness bench workflow/scripts
