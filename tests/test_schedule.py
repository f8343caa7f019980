"""Scheduled runs: one at a time (skip or wait, said plainly), and a freshness verdict."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import okxsim
from feeder.config import check_config
from driver.schedule import freshness, next_run, workflow_lock, WorkflowBusy
from feeder.publish import MANIFEST_NAME
from harness.processes import REPO, write_config

UTC = dt.timezone.utc


def cfg(**schedule) -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["schedule"].update(schedule)
    return check_config(config)


def test_next_run_daily_after_midnight_and_repairs_in_between():
    at = lambda h, m=0, d=5: dt.datetime(2024, 3, d, h, m, tzinfo=UTC)  # noqa: E731
    kw = dict(after_midnight_minutes=20, repair_interval_minutes=180)
    assert next_run(at(0, 25), last_run=at(0, 5), **kw) == at(0, 25)      # daily run due, not done yet
    assert next_run(at(0, 25), last_run=at(0, 21), **kw) == at(3, 21)     # done: next repair
    assert next_run(at(23, 0), last_run=at(22, 0), **kw) == at(0, 20, 6)  # midnight comes first


def test_freshness_verdicts():
    config = cfg(stale_after_hours=30)
    now = dt.datetime(2024, 3, 6, 1, 0, tzinfo=UTC)
    ok, text = freshness(config, {"last_success": "2024-03-06T00:30:00+00:00", "covered_through": "2024-03-05",
                                  "duration_s": 42}, now=now)
    assert ok and text.startswith("OK") and "data through 2024-03-05" in text
    stale, text = freshness(config, {"last_success": "2024-03-04T00:30:00+00:00", "covered_through": "2024-03-03"},
                            now=now)
    assert not stale and text.startswith("STALE") and "limit 30 h" in text
    never, text = freshness(config, {}, now=now)
    assert not never and "no successful build" in text


def test_lock_is_exclusive_and_released_when_the_holder_dies(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from driver.schedule import workflow_lock\n"
        f"with workflow_lock(Path({str(tmp_path)!r}), wait=False):\n"
        "    print('held', flush=True); time.sleep(60)\n")], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(WorkflowBusy, match=r"another workflow run is still going \(pid \d+, started"):
        with workflow_lock(tmp_path, wait=False):
            pass
    holder.kill()  # a killed run must not leave a stale lock
    holder.wait()
    with workflow_lock(tmp_path, wait=False):
        pass


@pytest.mark.slow
def test_a_scheduled_run_overlapping_a_running_one_skips_or_waits(tmp_path):
    with okxsim.Simulator(seed=7, clock_start="2024-03-05T01:00:00Z", speed=1, history_start="2024-02-01", n_swaps=24,
                          history_limit_max=300) as sim:
        config_path = tmp_path / "config.yaml"
        config = write_config(config_path, endpoints=sim, data_dir=tmp_path / "data", start="2024-03-03",
                              end="2024-03-04", size=4, frequencies=["day"])
        config["universe"]["window_days"] = 1  # rank on the day before only: fewer REST jobs
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        # the published dataset only (extra arguments go to Snakemake): the quality page is test_report's
        manifest = str(tmp_path / "data" / "work" / MANIFEST_NAME)

        def run(name: str, *args: str) -> tuple[subprocess.Popen, Path]:
            log = tmp_path / f"{name}.log"  # a file: an unread pipe would block the run when full
            proc = subprocess.Popen([sys.executable, "-m", "driver.schedule", "run", "--config", str(config_path),
                                     *args, manifest], cwd=tmp_path, stdout=open(log, "w"), stderr=subprocess.STDOUT)
            return proc, log

        first, first_log = run("first")
        lock = tmp_path / "data" / "work" / ".workflow.lock"
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        skipped, skipped_log = run("skipped", "--on-overlap", "skip")
        assert skipped.wait(timeout=60) == 0
        out_skip = skipped_log.read_text()
        assert "another workflow run is still going" in out_skip and "skipping this run" in out_skip
        assert first.poll() is None, "the first run should still be going"
        waiting, waiting_log = run("waiting", "--on-overlap", "wait")
        assert first.wait(timeout=300) == 0, first_log.read_text()[-3000:]
        assert waiting.wait(timeout=300) == 0, waiting_log.read_text()[-3000:]
    out_wait = waiting_log.read_text()
    assert "waiting for it to finish" in out_wait
    assert "workflow run finished" in out_wait
    status = yaml.safe_load((tmp_path / "data" / "work" / "build-status.json").read_text())
    assert status["covered_through"] == "2024-03-04"


def qlib_dir_is_consistent(qlib: Path) -> bool | None:
    """None if absent; else True when every calendar, instrument list and bin agrees.

    Like a reader that opened the dataset, it pins the published version (resolves the link)
    before reading, so a publish in the middle of the check cannot mix two versions.
    """
    if not qlib.exists():
        return None
    import numpy as np

    qlib = qlib.resolve()

    cal = {p.name.split(".")[0]: len(p.read_text().splitlines()) for p in (qlib / "calendars").glob("*.txt")}
    insts = [line.split("\t")[0].lower() for line in (qlib / "instruments" / "all.txt").read_text().splitlines()]
    for inst in insts:
        for freq, slots in cal.items():
            bins = list((qlib / "features" / inst).glob(f"*.{freq}.bin"))
            if not bins:
                return False
            for b in bins:
                data = np.fromfile(b, dtype="<f4")
                if data.size < 2 or int(data[0]) + data.size - 1 > slots:
                    return False
    return bool(cal) and bool(insts)


@pytest.mark.slow
def test_a_run_killed_halfway_leaves_no_partial_dataset_and_the_next_run_finishes(tmp_path):
    import os
    import signal
    import threading

    with okxsim.Simulator(seed=7, clock_start="2024-03-06T01:00:00Z", speed=1, history_start="2024-02-01", n_swaps=24,
                          history_limit_max=300) as sim:
        data = tmp_path / "data"
        config_path = tmp_path / "config.yaml"

        def configure(end: str) -> None:
            config = write_config(config_path, endpoints=sim, data_dir=data, start="2024-03-03", end=end, size=4,
                                  frequencies=["1min", "day"])
            config["universe"]["window_days"] = 1  # rank on the day before only: fewer REST jobs
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))

        configure("2024-03-03")
        logs = iter(range(100))
        # the published dataset only (passed on to Snakemake): what the reader checks; the quality
        # page (the rest of the default target) does not feed it
        manifest = str(data / "work" / MANIFEST_NAME)

        def run(*a: str) -> subprocess.Popen:
            # output to a file: an unread pipe would block the run once its buffer is full
            log = open(tmp_path / f"run{next(logs)}.log", "w+")
            return subprocess.Popen([sys.executable, "-m", "driver.schedule", "run", "--config", str(config_path), *a,
                                     manifest],
                                    cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, text=True,
                                    start_new_session=True)

        first = run()
        assert first.wait(timeout=300) == 0, (tmp_path / "run0.log").read_text()[-3000:]
        qlib = data / "qlib"
        assert qlib_dir_is_consistent(qlib)

        # a reader polls the dataset for the whole time the next (extended) build runs
        seen: list[bool | None] = []
        stop_reading = threading.Event()

        def reader() -> None:
            # a check every 5 ms: a half-written dataset would stay visible for the whole export (far
            # longer), and a loop without a pause would take a core from the builds it watches
            while not stop_reading.wait(0.005):
                seen.append(qlib_dir_is_consistent(qlib))

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            configure("2024-03-05")
            second = run()
            # kill it once the new days' cleaning has begun (mid-run), with everything it started
            deadline = time.monotonic() + 120
            while not (data / "work" / "clean" / "2024-03-05").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            os.killpg(second.pid, signal.SIGKILL)
            second.wait()
            assert (data / "work" / "build-status.json").exists()
            assert time.monotonic() < deadline, "the run never reached the new days' cleaning"
            third = run()
            assert third.wait(timeout=300) == 0, (tmp_path / "run2.log").read_text()[-3000:]
        finally:
            stop_reading.set()
            thread.join()
    assert seen and all(state is True for state in seen), "a reader saw a missing or half-written dataset"
    assert (qlib / "calendars" / "day.txt").read_text().split() == ["2024-03-03", "2024-03-04", "2024-03-05"]


# --------------------------------------------------------------------------------------------
# A failed export (issue 12, finding 6): the next run rebuilds and publishes, and the scheduler
# records a success only when the published dataset holds the asked days.
# --------------------------------------------------------------------------------------------


def published_days(qlib: Path, freq: str = "day") -> list[str]:
    return (qlib / "calendars" / f"{freq}.txt").read_text().split()


def schedule_run(config_path: Path, log: Path, *, file_limit_kb: int | None = None,
                 targets: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``python -m driver.schedule run``, optionally under RLIMIT_FSIZE (a disk that fills up), with all it starts.

    ``targets`` are passed on to Snakemake (the default target when empty).
    """
    cmd = [sys.executable, "-m", "driver.schedule", "run", "--config", str(config_path), *targets]
    if file_limit_kb is not None:  # bash's ulimit -f counts 1024-byte blocks; Python turns EFBIG into OSError
        cmd = ["bash", "-c", f'ulimit -f {file_limit_kb} && exec "$@"', "bash", *cmd]
    with open(log, "w") as out:  # a file: an unread pipe would block the run when full
        return subprocess.run(cmd, cwd=config_path.parent, stdout=out, stderr=subprocess.STDOUT, timeout=300)


@pytest.mark.slow
def test_a_failed_export_is_rebuilt_and_published_by_the_next_run(tmp_path):
    with okxsim.Simulator(seed=7, clock_start="2024-03-06T01:00:00Z", speed=1, history_start="2024-02-20", n_swaps=6,
                          history_limit_max=300) as sim:
        data = tmp_path / "data"
        config_path = tmp_path / "config.yaml"

        def configure(end: str) -> None:
            config = write_config(config_path, endpoints=sim, data_dir=data, start="2024-03-03", end=end, size=2,
                                  frequencies=["1min", "day"])
            config["universe"]["window_days"] = 1  # rank on the day before only: fewer REST jobs
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))

        # every run builds the published dataset only: the export is the subject, the coverage table
        # and the quality page (the rest of the default target) do not feed it
        manifest = (str(data / "work" / MANIFEST_NAME),)

        # both days' bars and day blocks, but no export yet (a dataset of day one is published next)
        configure("2024-03-04")
        built = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                                "--configfile", str(config_path), "--cores", "2", *manifest, "--omit-from", "qlib"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert built.returncode == 0, built.stderr[-3000:]
        assert list((data / "work" / "qlib-blocks" / "day").glob("*.arrow")), "the day blocks were built"
        configure("2024-03-03")
        assert schedule_run(config_path, tmp_path / "run1.log", targets=manifest).returncode == 0, \
            (tmp_path / "run1.log").read_text()
        qlib = data / "qlib"
        assert published_days(qlib) == ["2024-03-03"]

        # day two is asked for; the disk "fills up" while the qlib job writes the 1min calendar (57 kB)
        configure("2024-03-04")
        failed = schedule_run(config_path, tmp_path / "run2.log", file_limit_kb=40, targets=manifest)
        log2 = (tmp_path / "run2.log").read_text()
        assert failed.returncode != 0, log2[-3000:]
        assert "Error in rule qlib" in log2 and "File too large" in log2, log2[-3000:]
        assert published_days(qlib) == ["2024-03-03"]  # readers keep the previous, complete dataset
        status = yaml.safe_load((data / "work" / "build-status.json").read_text())
        assert status["covered_through"] == "2024-03-03" and status["last_failure"] >= status["last_success"]

        # space is back: the next run must rebuild and publish day two (not "Nothing to be done")
        rerun = schedule_run(config_path, tmp_path / "run3.log", targets=manifest)
        log3 = (tmp_path / "run3.log").read_text()
        assert rerun.returncode == 0, log3[-3000:]
    assert "Nothing to be done" not in log3
    assert published_days(qlib) == ["2024-03-03", "2024-03-04"]
    calendar_1min = published_days(qlib, "1min")
    assert len(calendar_1min) == 2 * 2 * 1440  # date and time: two words a slot
    assert calendar_1min[-2:] == ["2024-03-04", "23:59:00"]
    status = yaml.safe_load((data / "work" / "build-status.json").read_text())
    assert status["covered_through"] == "2024-03-04" and status["last_success"] >= status["last_failure"]
    manifest = yaml.safe_load((data / "work" / "qlib-published.json").read_text())
    assert manifest["request"]["last_day"] == manifest["last_day"] == "2024-03-04"
    assert Path(manifest["version_dir"]) == qlib.resolve()


def test_the_scheduler_records_a_failure_when_the_published_dataset_lacks_the_asked_days(tmp_path):
    """Exit 0 is not enough (a dry run, --until, an export Snakemake skipped): the published calendars must agree."""
    from feeder.publish import publish_dataset
    from driver.schedule import read_status, run_once
    from harness.processes import SimulatorEndpoints

    data = tmp_path / "data"
    config_path = tmp_path / "config.yaml"
    nowhere = SimulatorEndpoints("https://127.0.0.1:9", "wss://127.0.0.1:9/ws/v5/public",
                                 "wss://127.0.0.1:9/ws/v5/business", str(tmp_path / "ca.pem"), 0)  # never contacted
    config = write_config(config_path, endpoints=nowhere, data_dir=data, start="2024-03-03", end="2024-03-04", size=4,
                          frequencies=["day"])
    built = tmp_path / "built"
    (built / "calendars").mkdir(parents=True)
    (built / "calendars" / "day.txt").write_text("2024-03-03\n")
    publish_dataset(built, data / "qlib")  # what an earlier run published: day one only

    code = run_once(config_path, extra=["--dry-run"], workdir=tmp_path)
    status = read_status(data / "work")
    assert code == 1
    assert "last_success" not in status and "covered_through" not in status
    assert status["last_failure_reason"] == (f"the Qlib dataset published at {data / 'qlib'} covers "
                                             "2024-03-03..2024-03-03 at day, not the asked 2024-03-03..2024-03-04")
    from driver.schedule import published_days_problem

    checked = check_config(config)
    days = [dt.date(2024, 3, 3), dt.date(2024, 3, 4)]
    (built / "calendars" / "day.txt").write_text("2024-03-03\n2024-03-04\n")
    publish_dataset(built, data / "qlib")
    assert published_days_problem(checked, days, cwd=tmp_path) is None
    assert "no readable 1min calendar" in published_days_problem(checked | {"frequencies": ["day", "1min"]}, days,
                                                                 cwd=tmp_path)
# --------------------------------------------------------------------------- bad config: exit 2, no traceback


@pytest.mark.parametrize("command", ["run", "loop", "status"])
def test_every_subcommand_refuses_a_bad_config_with_exit_2_and_the_fix(tmp_path, capsys, monkeypatch, command):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["frequencies"] = ["1min", "1h"]
    config["paths"] = {key: str(tmp_path / key) for key in ("raw", "work", "qlib")}
    bad = tmp_path / "config.yaml"
    bad.write_text(yaml.safe_dump(config))
    res = subprocess.run([sys.executable, "-m", "driver.schedule", command, "--config", str(bad)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert "use '60min'" in res.stderr and str(bad) in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "work").exists(), "nothing may start on a bad config"
    # a missing file, in-process: main returns 2 instead of raising
    import driver.schedule as schedule

    monkeypatch.setattr(schedule, "setup_logging", lambda: None)  # keep pytest's logging as it is
    assert schedule.main([command, "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "copy config.yaml" in capsys.readouterr().err


def test_the_loop_survives_a_config_broken_while_it_runs(tmp_path, monkeypatch, caplog):
    import driver.schedule as schedule

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["paths"] = {key: str(tmp_path / key) for key in ("raw", "work", "qlib")}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    calls = []

    class Stop(Exception):
        pass

    def next_run_now(now, **_kw):  # noqa: ANN001, ANN202  (only the clock is replaced)
        calls.append(now)
        if len(calls) == 1:
            path.write_text(path.read_text().replace("60min", "1h"))  # an edit breaks the file
            return now
        raise Stop

    monkeypatch.setattr(schedule, "next_run", next_run_now)
    with pytest.raises(Stop):
        schedule.loop(path)
    assert "This run is skipped" in caplog.text and "use '60min'" in caplog.text
    assert "No workflow run until this is fixed" in caplog.text


# --------------------------------------------------------------------------------------------
# Which processes count as Snakemake (issue 13): the scheduler removes a killed run's
# .snakemake/locks only when no Snakemake runs in the directory; a job's own command line
# (python .snakemake/scripts/...) is not Snakemake, a `snakemake` console script is.
# --------------------------------------------------------------------------------------------


def test_only_snakemake_itself_counts_as_a_running_snakemake(tmp_path):
    from driver.schedule import snakemake_running_in

    scripts = tmp_path / ".snakemake" / "scripts"
    scripts.mkdir(parents=True)
    job = scripts / "tmpa1b2c3.daily_metrics.py"  # how Snakemake runs a script: job
    job.write_text("import time; print('up', flush=True); time.sleep(60)\n")
    console = tmp_path / "bin" / "snakemake"      # the console script, started as `python .../bin/snakemake`
    console.parent.mkdir()
    console.write_text(job.read_text())
    started = []
    try:
        for argv in ([sys.executable, str(job.relative_to(tmp_path))],
                     ["bash", "-c", f"{sys.executable} {job.relative_to(tmp_path)}; true"]):
            started.append(subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, text=True))
            assert started[-1].stdout.readline().strip() == "up"
        assert snakemake_running_in(tmp_path) == [], "a job's command line was taken for Snakemake"
        started.append(subprocess.Popen([sys.executable, str(console)], cwd=tmp_path, stdout=subprocess.PIPE,
                                        text=True))
        assert started[-1].stdout.readline().strip() == "up"
        assert snakemake_running_in(tmp_path) == [started[-1].pid]
    finally:
        for proc in started:
            proc.kill()
            proc.wait()


def test_the_scheduler_lives_in_the_driver_package_outside_the_library():
    """What starts Snakemake and edits .snakemake/locks is not library code: nothing else imports it."""
    assert not (REPO / "feeder" / "schedule.py").exists() and (REPO / "driver" / "schedule.py").is_file()
    for package in ("feeder", "collector", "okxsim", "workflow"):
        for path in (REPO / package).rglob("*.py"):
            text = path.read_text()
            assert "import driver" not in text and "from driver" not in text, path
    assert "-m driver.schedule loop" in (REPO / "collector" / "supervisord.conf").read_text()


# --------------------------------------------------------------------------- a build by hand counts (issue 16)


def publish_by_hand(data: Path, first: dt.date, last: dt.date, tmp_path: Path) -> Path:
    """What a plain `snakemake` build leaves: a published version and publish_qlib's manifest."""
    from feeder.publish import MANIFEST_NAME, publish_dataset, write_manifest

    built = tmp_path / f"built-{first}-{last}"
    (built / "calendars").mkdir(parents=True)
    days = [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    (built / "calendars" / "day.txt").write_text("\n".join(days) + "\n")
    version = publish_dataset(built, data / "qlib")
    summary = {"first_day": days[0], "last_day": days[-1], "freqs": {"day": {"slots": len(days)}}, "instruments": 2}
    write_manifest(data / "work" / MANIFEST_NAME, qlib_dir=data / "qlib", version=version, summary=summary,
                   request={"first_day": days[0], "last_day": days[-1], "freqs": ["day"]})
    return version


def test_status_counts_a_build_published_by_hand(tmp_path):
    """After a plain `snakemake` build (no scheduler record), status reads the publish manifest: OK, exit 0."""
    from harness.processes import SimulatorEndpoints

    data = tmp_path / "data"
    config_path = tmp_path / "config.yaml"
    nowhere = SimulatorEndpoints("https://127.0.0.1:9", "wss://127.0.0.1:9/ws/v5/public",
                                 "wss://127.0.0.1:9/ws/v5/business", str(tmp_path / "ca.pem"), 0)  # never contacted
    yesterday = dt.datetime.now(UTC).date() - dt.timedelta(days=1)
    config = check_config(write_config(config_path, endpoints=nowhere, data_dir=data, start="2024-03-03",
                                       end=yesterday.isoformat(), size=2, frequencies=["day"]))

    def status() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "driver.schedule", "status", "--config", str(config_path)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)

    version = publish_by_hand(data, yesterday - dt.timedelta(days=1), yesterday, tmp_path)
    res = status()
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("OK: last publish ") and f"version {version.name}" in res.stdout
    assert f"data through {yesterday}" in res.stdout

    # the scheduler's own record stays: an older one is superseded, a newer one (its own run) wins
    from driver.schedule import current_status, write_status

    work = data / "work"
    write_status(work, {"last_success": "2024-03-01T00:30:00+00:00", "covered_through": "2024-02-29",
                        "duration_s": 12.0, "last_failure": "2024-03-02T00:30:00+00:00", "last_failure_exit_code": 1})
    merged = current_status(config, json.loads((work / "build-status.json").read_text()), cwd=tmp_path)
    assert merged["covered_through"] == yesterday.isoformat() and "duration_s" not in merged
    assert merged["last_failure"] == "2024-03-02T00:30:00+00:00"  # kept, and older than the publish
    assert status().returncode == 0
    later = (dt.datetime.now(UTC) + dt.timedelta(minutes=1)).isoformat(timespec="seconds")
    write_status(work, {"last_success": later, "covered_through": yesterday.isoformat(), "duration_s": 42.0})
    res = status()
    assert res.returncode == 0 and "last successful build" in res.stdout and "(took 42.0s)" in res.stdout

    # a publish that paths.qlib no longer shows (someone pointed it elsewhere since) is not counted, and said so
    (work / "build-status.json").unlink()
    second = publish_by_hand(data, yesterday, yesterday, tmp_path)
    (data / "qlib").unlink()
    (data / "qlib").symlink_to(Path("qlib.versions") / version.name)
    res = status()
    assert res.returncode == 1 and res.stdout.startswith("STALE: no successful build recorded yet"), res.stdout
    assert f"names version {second}" in res.stdout and f"now shows {version}" in res.stdout
