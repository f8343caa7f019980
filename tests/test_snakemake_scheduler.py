"""The Snakefile lifts Snakemake's job rate limiter on local runs (feeder.snakemake_scheduler).

With the limiter on, Snakemake's scheduler makes a pass per second for every job finished so
far while jobs wait for a core: a year's build spends minutes of CPU re-checking input files.
These tests run real Snakemake on a small workflow of independent jobs, one core, so jobs wait,
and count the scheduling passes that found jobs ready (Snakemake's "Ready jobs" debug line).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

JOBS = 8

SNAKEFILE = f"""
from feeder.snakemake_scheduler import lift_local_job_rate_limit

if config.get("lift", True):
    onstart:
        lift_local_job_rate_limit(workflow)


rule all:
    input:
        expand("out/{{i}}.txt", i=range({JOBS})),


rule make:
    output:
        "out/{{i}}.txt",
    shell:
        "sleep 0.6 && touch {{output}}"
"""


def scheduling_passes(workdir: Path, *extra: str) -> int:
    """Run the toy workflow from scratch; the number of scheduling passes that found jobs ready."""
    (workdir / "Snakefile").write_text(SNAKEFILE)
    for previous_run in ("out", ".snakemake"):
        shutil.rmtree(workdir / previous_run, ignore_errors=True)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--verbose", *extra],
                          cwd=workdir, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((workdir / "out").glob("*.txt"))) == JOBS
    return sum(line.lstrip().startswith("Ready jobs:") for line in proc.stderr.splitlines())


def test_a_local_run_makes_one_scheduling_pass_per_job(tmp_path: Path) -> None:
    lifted = scheduling_passes(tmp_path)
    kept = scheduling_passes(tmp_path, "--config", "lift=False")
    # one pass at the start and one per finished job: JOBS + 1 here (the job of `rule all` is
    # ready after the last of them); with the limiter on, 23 on a quiet 2-core machine
    assert lifted <= JOBS + 3, f"{lifted} scheduling passes for {JOBS} jobs"
    # the control: Snakemake's own limiter adds passes (if this fails, Snakemake fixed it upstream
    # and feeder.snakemake_scheduler can go)
    assert kept > lifted + 2, f"with Snakemake's limiter: {kept} passes, without: {lifted}"


def test_a_limit_the_user_chose_is_kept(tmp_path: Path) -> None:
    user_limit = scheduling_passes(tmp_path, "--max-jobs-per-timespan", "50/1s")
    assert user_limit > JOBS + 3, f"{user_limit} passes: the user's --max-jobs-per-timespan was not applied"
