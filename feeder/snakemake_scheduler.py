"""A workaround for Snakemake's job rate limiter, which makes its scheduler busy on long local runs.

Snakemake (9.x, up to at least 9.27) limits job submissions to ``--max-jobs-per-timespan``
(default ``100/1s``). With the limiter on, every scheduling pass ends by arming a timer that
starts another pass one timespan later, and that pass arms the next one. Every finished job
starts a pass, so every finished job starts a chain of passes that never ends. After n jobs, n
chains run at once: n passes a second, each of which checks the input files of every ready job.
A 30-day rebuild (64 jobs, 80 s) made about 2,400 passes and 328,000 input size checks, and
Snakemake's own process used 27.7 s of CPU. The same rebuild without the limiter used 9.7 s.
The cost grows with the square of a run's length, so a year's build suffers most. Upstream:
snakemake/snakemake PR #3744 (open).

The command line cannot turn the limiter off (``--max-jobs-per-timespan`` takes only
``N/timespan``), and a long timespan makes Snakemake wait that long at exit for its last timer.
So the Snakefile's ``onstart`` handler calls :func:`lift_local_job_rate_limit`. The handler runs
after the scheduler is made and before it schedules the first job.

The limiter is lifted only for local runs with the default limit. On a cluster it protects the
batch system from bursts of submissions, and a limit a user chose is the user's.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_LIMIT = (100, 1)  # Snakemake's --max-jobs-per-timespan default: 100 jobs per 1 s


def lift_local_job_rate_limit(workflow: Any) -> bool:
    """Turn Snakemake's job rate limiter off for a local run with the default limit.

    ``workflow`` is the Snakefile's ``workflow`` object. Returns whether the limiter was
    lifted. Snakemake versions without the attributes this relies on keep their limiter: the
    run is slower, never wrong.
    """
    scheduler = getattr(workflow, "scheduler", None)
    limiter = getattr(scheduler, "job_rate_limiter", None)
    limit = getattr(getattr(workflow, "scheduling_settings", None), "max_jobs_per_timespan", None)
    if limiter is None or limit is None or not getattr(workflow, "local_exec", False):
        return False
    if (getattr(limit, "max_jobs", None), getattr(limit, "timespan", None)) != DEFAULT_LIMIT:
        return False  # the user chose a limit
    scheduler.job_rate_limiter = None
    log.debug("Snakemake's job rate limiter is off for this local run (it keeps the scheduler busy)")
    return True
