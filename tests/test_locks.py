"""Run safety: one REST job per rule and day at a time, and no job outliving a killed Snakemake."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from feeder.locks import day_lock_path, is_snakemake as _is_snakemake
from harness.processes import PYTHON, REPO, simulator, write_config

DAY = "2024-03-04"


def holder_script(work: Path, day: str, hold_s: float) -> str:
    """A process that takes the day's backfill lock the way the workflow scripts do, then works."""
    return (
        "import sys, time\n"
        "from feeder.logs import setup_logging\n"
        "from feeder.locks import hold_day_lock\n"
        "setup_logging()\n"
        f"hold_day_lock(work_dir={str(work)!r}, job='backfill', day={day!r}, poll_s=0.05)\n"
        "print('start', time.time(), flush=True)\n"
        f"time.sleep({hold_s})\n"
        "print('end', time.time(), flush=True)\n"
    )


def times(out: str) -> tuple[float, float]:
    marks = dict(line.split() for line in out.splitlines())
    return float(marks["start"]), float(marks["end"])


def test_two_jobs_of_one_day_never_run_at_once_and_the_second_says_who_it_waits_for(tmp_path):
    work = tmp_path / "work"

    def start(day: str, hold_s: float) -> subprocess.Popen:
        return subprocess.Popen([PYTHON, "-c", holder_script(work, day, hold_s)], cwd=REPO, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    first = start(DAY, 1.5)
    assert first.stdout.readline().startswith("start")  # holds the lock now
    second = start(DAY, 0.1)
    other_day = start("2024-03-05", 0.1)
    out_first, _ = first.communicate(timeout=30)
    out_second, err_second = second.communicate(timeout=30)
    out_other, _ = other_day.communicate(timeout=30)
    assert first.returncode == second.returncode == other_day.returncode == 0
    first_end = float(out_first.split()[-1])
    second_start, _ = times(out_second)
    assert second_start >= first_end, "two jobs of the same day ran at the same time"
    assert f"backfill {DAY} is already being run by another job (pid {first.pid}" in err_second
    assert "waiting for it to finish" in err_second
    other_start, _ = times(out_other)
    assert other_start < first_end, "a job of another day must not wait"
    # a killed holder never leaves the lock behind: the kernel releases flock on exit
    holder = json.loads(day_lock_path(work_dir=work, job="backfill", day=DAY).read_text())
    assert holder["pid"] == second.pid and holder["day"] == DAY


def test_snakemake_process_recognised_by_its_command_line():
    assert _is_snakemake(["/venv/bin/python", "-m", "snakemake", "--cores", "8"])
    assert _is_snakemake(["/venv/bin/python", "/venv/bin/snakemake", "--cores", "8"])
    assert _is_snakemake(["/venv/bin/snakemake", "--cores", "8"])
    # a job's own command line mentions .snakemake/scripts; that is not Snakemake
    assert not _is_snakemake(["/venv/bin/python", "/w/.snakemake/scripts/tmpab12.backfill.py"])
    assert not _is_snakemake(["bash", "-c", "set -euo pipefail; python -m snakemake --cores 1"])


def gone(pid: int) -> bool:
    """Exited (a zombie waiting for a reaper counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def children(parent: int, marker: str) -> list[int]:
    """Pids of the live children of ``parent`` whose command line contains ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent \
                    and marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def wait_for(predicate, timeout_s: float, what: str) -> float:  # noqa: ANN001
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout_s, f"timed out after {timeout_s}s waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.slow
def test_a_backfill_orphaned_by_kill_9_of_snakemake_stops_and_frees_its_day(tmp_path):
    """kill -9 of Snakemake while the real backfill job waits on a slow OKX answer: the job notices,
    logs why, stops within seconds without publishing anything, and the day's lock is free."""
    # the simulator as its own process: the answer it holds back dies with it, not in this interpreter
    with simulator(clock_start="2024-03-05T01:00:00Z", speed=1, cert_dir=tmp_path / "certs",
                   log_path=tmp_path / "sim.log", extra_args=["--n-swaps", "12"]) as sim:
        data = tmp_path / "data"
        config_path = tmp_path / "config.yaml"
        config = write_config(config_path, endpoints=sim, data_dir=data, start=DAY, end=DAY, size=2,
                              frequencies=["day"])
        config["universe"]["window_days"] = 1
        config["exchange"]["timeout_s"] = 30
        config_path.write_text(yaml.safe_dump(config))
        work = data / "work"
        cmd = [PYTHON, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
               "--configfile", str(config_path), "--cores", "2"]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        log = open(tmp_path / "snakemake.log", "w")
        # the day's universe first, so that the backfill is the job running when Snakemake is killed
        subprocess.run([*cmd, str(work / "universe" / f"{DAY}.parquet")], cwd=tmp_path, env=env, stdout=log,
                       stderr=subprocess.STDOUT, check=True, timeout=120)
        # the backfill's first page hangs
        requests.post(f"{sim.rest}/sim/faults", verify=sim.ca_file, timeout=10,
                      json={"kind": "rest_delay", "endpoint": "history-candles", "count": 1, "seconds": 60})
        run = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
        lock = day_lock_path(work_dir=work, job="backfill", day=DAY)
        try:
            jobs: list[int] = []
            wait_for(lambda: jobs.extend(children(run.pid, "backfill.py")) or jobs, 60, "the backfill job to start")
            job = jobs[0]
            job_log_path = work / "logs" / "backfill" / f"{DAY}.log"
            wait_for(job_log_path.exists, 20, "the backfill job to start logging")
            time.sleep(1.0)  # the job is now blocked reading the delayed answer (timeout_s 30)
            holder = json.loads(lock.read_text()) if lock.exists() else {}

            os.kill(run.pid, signal.SIGKILL)
            run.wait()
            took = wait_for(lambda: gone(job), 5, f"the orphaned backfill job (pid {job}) to stop")
            print(f"orphan stopped {took:.2f}s after kill -9 of Snakemake")
        finally:
            try:
                os.killpg(run.pid, signal.SIGKILL)  # whatever is left of the run's process group
            except ProcessLookupError:
                pass
    assert holder.get("pid") == job and holder.get("snakemake_pid") == run.pid, holder  # it held the day's lock
    job_log = job_log_path.read_text()
    assert f"the Snakemake process (pid {run.pid}) that started this job is gone" in job_log
    assert not (data / "raw" / "rest" / "candle1m" / f"{DAY}.jsonl").exists()
    assert not (work / "backfill" / f"{DAY}.json").exists()
    assert not [p.name for d in (data / "raw" / "rest" / "candle1m", work / "backfill") if d.exists()
                for p in d.iterdir() if p.name.endswith(".tmp")]
    with open(lock, "a+") as fh:  # the next run's backfill of this day can start at once
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
