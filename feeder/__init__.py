"""crypto-data-feeder's library: every stage's logic (see docs/ARCHITECTURE.md).

One thing happens at import: polars' thread pool is sized from the Snakemake job's ``threads:``.
Snakemake passes a job's threads to it as ``OMP_NUM_THREADS`` (and the BLAS libraries' variables)
but knows nothing of polars, whose pool is fixed when polars is first imported and otherwise
takes every core: eight parallel jobs on eight cores would run 64 threads. Every workflow script
imports ``feeder`` before polars, so ``POLARS_MAX_THREADS`` is set here, unless the user set it.
"""

import os as _os
import sys as _sys

if "polars" not in _sys.modules and _os.environ.get("OMP_NUM_THREADS", "").isdigit():
    _os.environ.setdefault("POLARS_MAX_THREADS", _os.environ["OMP_NUM_THREADS"])
