"""Scale-out: the workflow run through a cluster-style executor builds the same dataset.

profiles/cluster-generic runs every (non-local) job through snakemake-executor-plugin-cluster-generic:
submit.sh starts the job script as a separate, detached process, as a batch system would on a
node, and status.sh reports running / success / failed. The same small history (REST backfill
from the simulator only, no collector: the cheapest complete build) is built twice, locally
with --cores 2 and through that profile, into two directories; the published Qlib datasets must
be identical byte for byte and the coverage tables equal.

The profile's scripts are also checked on their own, on a throwaway Snakefile: a failing job and
a job killed before it could record its exit code are reported as failed (Snakemake exits
instead of waiting forever), and Ctrl-C cancels the running jobs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from harness.processes import PYTHON, REPO, simulator, write_config

PROFILE = REPO / "profiles" / "cluster-generic"
SCRIPTS = ("submit.sh", "status.sh", "cancel.sh")
STATE = Path(".snakemake") / "cluster-generic"  # submit.sh's job records, in the working directory
START, END = "2024-03-03", "2024-03-04"
SIZE = 3
FREQS = ["1min", "day"]
RUN_TIMEOUT_S = 600  # a whole build; the cluster run of this one takes about a minute on 2 cores


def snakemake_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SNAKEMAKE_PROFILE", None)  # a user's global profile must not change what is tested
    return env


def live_job_groups(workdir: Path) -> list[int]:
    """Process groups of the cluster jobs submit.sh started in ``workdir`` that still have a live process.

    submit.sh starts each job in a session of its own (setsid), so the recorded wrapper pid is
    also the job's process group id; a pgid stays taken while any process of the group lives,
    so no unrelated process is ever counted.
    """
    recorded = {int(text) for p in (workdir / STATE).glob("*.pid") if (text := p.read_text().strip()).isdigit()}
    alive = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, _ppid, pgrp = text[text.rfind(")") + 2:].split()[:3]
        if state != "Z" and int(pgrp) in recorded:
            alive.add(int(pgrp))
    return sorted(alive)


def stop_jobs(workdir: Path) -> None:
    """Stop what is left of the jobs this test submitted."""
    for pgid in live_job_groups(workdir):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass


def run_snakemake(snakefile: Path, workdir: Path, *args: str, log: Path, timeout_s: float = RUN_TIMEOUT_S) -> int:
    """Run the Snakemake CLI; on a timeout interrupt it (Ctrl-C: it cancels its cluster jobs),
    stop the jobs that are left, and fail the test saying so instead of hanging."""
    cmd = [PYTHON, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(workdir), *args]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=snakemake_env())
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            pytest.fail(f"snakemake did not finish within {timeout_s:.0f} s (a cluster job that never "
                        f"reports back?); interrupted it. Log: {log}; job logs: {workdir / STATE}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            stop_jobs(workdir)


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root`` (symlinks resolved), but the export's build
    ledger: it names the day block files the build read (their inodes and mtimes), not the data."""
    root = root.resolve()
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".feeder-build.json"}


def test_every_profile_runs_one_rest_job_at_a_time():
    # OKX's rate limits are per IP: a --workflow-profile replaces profiles/default, so each one
    # must carry the global okx_rest limit itself.
    profiles = sorted((REPO / "profiles").glob("*/config.yaml"))
    assert {p.parent.name for p in profiles} >= {"default", "cluster-generic", "slurm", "kubernetes"}
    for path in profiles:
        settings = yaml.safe_load(path.read_text())
        assert settings.get("resources", {}).get("okx_rest") == 1, f"{path}: resources: okx_rest: 1 is missing"


def test_profile_scripts_are_executable():
    # Snakemake runs them as commands: a checkout that lost the executable bit would fail to
    # submit anything ("Permission denied"); `git add` keeps the bit.
    for name in SCRIPTS:
        assert os.access(PROFILE / name, os.X_OK), f"{PROFILE / name} is not executable (chmod +x)"


@pytest.mark.e2e
@pytest.mark.slow
def test_cluster_run_builds_the_same_dataset_as_a_local_run(tmp_path):
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    with simulator(clock_start="2024-03-06T01:00:00Z", speed=1, cert_dir=tmp_path / "certs",
                   log_path=tmp_path / "simulator.log") as sim:
        configs = {}
        for data in (local, cluster):
            configs[data] = data / "config.yaml"
            config = write_config(configs[data], endpoints=sim, data_dir=data, start=START, end=END, size=SIZE,
                                  frequencies=FREQS, channels=["candle1m"])
            # rank on the day before only: 2 REST jobs for the universes instead of 8
            config["universe"]["window_days"] = 1
            configs[data].write_text(yaml.safe_dump(config, sort_keys=False))

        began = time.monotonic()
        # local: profiles/default (found from the repository root, the current directory)
        rc = run_snakemake(REPO / "Snakefile", local, "--configfile", str(configs[local]), "--cores", "2",
                           log=local / "snakemake.log")
        assert rc == 0, (local / "snakemake.log").read_text()[-4000:]
        local_s = time.monotonic() - began

        began = time.monotonic()
        rc = run_snakemake(REPO / "Snakefile", cluster, "--configfile", str(configs[cluster]),
                           "--workflow-profile", str(PROFILE), log=cluster / "snakemake.log")
        assert rc == 0, (cluster / "snakemake.log").read_text()[-4000:]
        cluster_s = time.monotonic() - began
    print(f"\nlocal run {local_s:.1f} s, cluster-generic run {cluster_s:.1f} s")

    # the cluster run really ran its jobs as separate processes, and every one of them succeeded
    log = (cluster / "snakemake.log").read_text()
    assert "Submitted job" in log, "no job went through the cluster-generic executor"
    exit_codes = {p.name: p.read_text().strip() for p in (cluster / STATE).glob("*.rc")}
    assert exit_codes, f"submit.sh recorded no job in {cluster / STATE}"
    assert set(exit_codes.values()) == {"0"}, exit_codes
    assert any(name.startswith("snakejob.clean.") for name in exit_codes), sorted(exit_codes)
    assert not (local / STATE).exists()

    # the published dataset: paths.qlib is a symlink to a versioned directory; compare what it points to
    local_qlib, cluster_qlib = tree_digest(local / "qlib"), tree_digest(cluster / "qlib")
    assert local_qlib, f"no Qlib dataset at {local / 'qlib'}"
    assert any(name.startswith("features/") for name in local_qlib), sorted(local_qlib)[:20]
    assert sorted(cluster_qlib) == sorted(local_qlib), "the two datasets hold different files"
    differing = [name for name in local_qlib if cluster_qlib[name] != local_qlib[name]]
    assert not differing, f"{len(differing)} files differ between the local and the cluster dataset: {differing[:10]}"

    # the coverage tables
    local_cov = pl.read_parquet(local / "work" / "coverage.parquet")
    cluster_cov = pl.read_parquet(cluster / "work" / "coverage.parquet")
    assert local_cov.height > 0
    assert cluster_cov.equals(local_cov)
    assert (cluster / "work" / "gaps.csv").read_bytes() == (local / "work" / "gaps.csv").read_bytes()


FAILING_SNAKEFILE = """
rule fails:
    output: "fails.txt"
    shell: "echo failing on purpose >&2; exit 3"

rule killed:
    # kills its own job (the wrapper submit.sh started, its process group) before the wrapper can
    # record an exit code: what a node crash or the OOM killer would do
    output: "killed.txt"
    shell: "kill -9 -- -$(cat {STATE}/snakejob.killed.*.pid); sleep 30; touch {{output}}"

rule slow:
    output: "slow.txt"
    shell: "sleep 60; touch {{output}}"
"""


# Both need submit.sh to start jobs in a session of their own, and read processes from /proc.
needs_setsid = pytest.mark.skipif(shutil.which("setsid") is None or not Path("/proc/self/stat").exists(),
                                  reason="needs setsid(1) and /proc (Linux)")


@pytest.fixture
def throwaway_workflow(tmp_path) -> Path:
    (tmp_path / "Snakefile").write_text(FAILING_SNAKEFILE.replace("{STATE}", str(STATE)))
    return tmp_path


@pytest.mark.e2e
@needs_setsid
def test_failed_and_killed_jobs_are_reported_failed_not_waited_for(throwaway_workflow):
    work = throwaway_workflow
    began = time.monotonic()
    rc = run_snakemake(work / "Snakefile", work, "--workflow-profile", str(PROFILE), "--keep-going",
                       "fails.txt", "killed.txt", log=work / "snakemake.log", timeout_s=120)
    elapsed = time.monotonic() - began
    log = (work / "snakemake.log").read_text()
    assert rc != 0, log[-3000:]
    assert "Error in rule fails" in log and "Error in rule killed" in log, log[-3000:]
    assert "ended without an exit code" in log, log[-3000:]  # status.sh saw the killed job die
    assert not (work / "killed.txt").exists()
    assert elapsed < 60, f"took {elapsed:.0f} s to notice two failed jobs"


@pytest.mark.e2e
@needs_setsid
def test_ctrl_c_cancels_running_jobs(throwaway_workflow):
    work = throwaway_workflow
    log = work / "snakemake.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([PYTHON, "-m", "snakemake", "--snakefile", str(work / "Snakefile"), "--directory",
                                 str(work), "--workflow-profile", str(PROFILE), "slow.txt"],
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=snakemake_env())
    try:
        deadline = time.monotonic() + 60
        while not live_job_groups(work):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) != 0
        deadline = time.monotonic() + 10
        while live_job_groups(work) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not live_job_groups(work), "the job kept running after Snakemake was interrupted"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stop_jobs(work)
