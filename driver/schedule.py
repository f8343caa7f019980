"""Keep the dataset current by itself: scheduled workflow runs, overlap safety, freshness.

    python -m driver.schedule run    --config config.yaml   # one locked workflow run
    python -m driver.schedule loop   --config config.yaml   # daily after midnight UTC + repair runs
    python -m driver.schedule status --config config.yaml   # is the dataset fresh?

Why a lock of our own: two overlapping runs would both try to build the same days, and
Snakemake's answer ("Directory cannot be locked...") reads like a crash. Every scheduled run
takes ``<paths.work>/.workflow.lock`` (``flock``: released by the kernel when the holder dies, so
a killed run never leaves a stale lock) and, when it is taken, skips or waits with a log line
that says who holds it since when (``schedule.on_overlap``).

A run killed halfway leaves nothing a reader can see half-written: every stage writes to a
temporary file or directory and renames it into place, the Qlib directory is swapped in whole,
and the next run resumes: Snakemake reruns incomplete jobs (``rerun-incomplete`` in the
workflow profile) and the backfill's fetch log keeps every page already fetched.

Freshness: each successful run records ``<paths.work>/build-status.json`` (when it finished,
the newest day it covers, how long it took); ``status`` compares that with the clock. A run is
successful when Snakemake exits 0 *and* the dataset published at ``paths.qlib`` spans the days
asked (its calendars are read back); otherwise the failure and its reason are recorded.
``status`` also reads what the workflow's ``publish_qlib`` rule recorded
(``<paths.work>/qlib-published.json``), so a build run by hand (``snakemake``) counts as a
successful build of the days it published, when ``paths.qlib`` still shows that version.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from feeder.atomic import write_json
from feeder.config import ConfigError, build_days, last_complete_day, load_config
from feeder.locks import is_snakemake, process_argv
from feeder.logs import setup_logging
from feeder.publish import MANIFEST_NAME

log = logging.getLogger("driver.schedule")

REPO = Path(__file__).resolve().parent.parent  # the checkout whose Snakefile the scheduler runs
LOCK_NAME = ".workflow.lock"
STATUS_NAME = "build-status.json"
EXIT_SKIPPED = 0  # a skipped overlapping run is not a failure for cron/supervisord
EXIT_BAD_CONFIG = 2  # the config is invalid; the message says which key and what to write


class WorkflowBusy(RuntimeError):
    """Another run holds the workflow lock."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@contextmanager
def workflow_lock(work_dir: Path, *, wait: bool, poll_s: float = 2.0) -> Iterator[None]:
    """Hold the workflow lock; if busy, wait (logging who holds it) or raise :class:`WorkflowBusy`."""
    work_dir.mkdir(parents=True, exist_ok=True)
    lock_path = work_dir / LOCK_NAME
    with open(lock_path, "a+") as fh:
        announced = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(lock_path)
                if not wait:
                    raise WorkflowBusy(
                        f"another workflow run is still going ({holder}); skipping this run. "
                        "Set schedule.on_overlap: wait to queue behind it instead."
                    ) from None
                if not announced:
                    log.info("another workflow run is still going (%s); waiting for it to finish", holder)
                    announced = True
                time.sleep(poll_s)
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "since": _now().isoformat(timespec="seconds")}))
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)


def _holder(lock_path: Path) -> str:
    try:
        info = json.loads(lock_path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "holder unknown"
    return f"pid {info.get('pid')}, started {info.get('since')}"


def snakemake_command(config_path: Path, *, cores: int, extra: list[str] | None = None) -> list[str]:
    """The workflow run, exactly as a user would type it (plus --configfile)."""
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--configfile",
            str(config_path), "--cores", str(cores), *(extra or [])]


def run_once(config_path: Path, *, on_overlap: str | None = None, extra: list[str] | None = None,
             workdir: Path | None = None) -> int:
    """One locked workflow run; records build-status.json. Returns the exit code.

    A success is Snakemake's exit 0 *and* a published dataset whose calendars span the asked days
    (:func:`published_days_problem`); exit 0 without them is recorded as a failure (exit code 1).
    """
    config = load_config(config_path)
    sched = config["schedule"]
    mode = on_overlap or sched["on_overlap"]
    work = Path(workdir or Path.cwd()) / config["paths"]["work"]  # relative paths: as Snakemake sees them
    try:
        with workflow_lock(work, wait=(mode == "wait")):
            days = build_days(config)
            cwd = Path(workdir or Path.cwd())
            clear_stale_snakemake_lock(config_path.resolve(), cwd)
            log.info("workflow run: days %s..%s, %d cores", days[0], days[-1], sched["cores"])
            started = time.monotonic()
            proc = subprocess.run(snakemake_command(config_path.resolve(), cores=sched["cores"], extra=extra),
                                  cwd=workdir or Path.cwd())
            duration = time.monotonic() - started
            # exit 0 is not enough: a run can end without publishing the asked days (--dry-run, --until,
            # a failed export that Snakemake later considers done); the published calendars say what Qlib sees
            problem = published_days_problem(config, days, cwd=cwd) if proc.returncode == 0 else None
            if proc.returncode == 0 and problem is None:
                write_status(work, {"last_success": _now().isoformat(timespec="seconds"),
                                    "covered_through": days[-1].isoformat(), "first_day": days[0].isoformat(),
                                    "duration_s": round(duration, 1)})
                log.info("workflow run finished in %.0fs; data through %s", duration, days[-1])
                return 0
            if problem is not None:
                write_status(work, {"last_failure": _now().isoformat(timespec="seconds"),
                                    "last_failure_exit_code": 1, "last_failure_reason": problem})
                log.error("workflow run ended without error after %.0fs, but %s. Recorded as a failure; run "
                          "`python -m driver.schedule run` again and check the qlib and publish_qlib logs in %s.",
                          duration, problem, work / "logs")
                return 1
            write_status(work, {"last_failure": _now().isoformat(timespec="seconds"),
                                "last_failure_exit_code": proc.returncode})
            log.error("workflow run failed (exit %d) after %.0fs; see the Snakemake log above. The next "
                      "run resumes where this one stopped.", proc.returncode, duration)
            return proc.returncode
    except WorkflowBusy as busy:
        log.warning("%s", busy)
        return EXIT_SKIPPED
    except ConfigError as exc:
        log.error("%s", exc)
        return 2


def published_days_problem(config: dict[str, Any], days: list[dt.date], *, cwd: Path) -> str | None:
    """None when the dataset published at ``paths.qlib`` spans exactly ``days`` at every frequency, else why not.

    Reads what Qlib reads (``calendars/<freq>.txt``: 24/7, from the first to the last built day),
    so a run that ended without publishing the asked days is not recorded as a success.
    """
    qlib = Path(cwd) / config["paths"]["qlib"]
    asked = (days[0].isoformat(), days[-1].isoformat())
    for freq in config["frequencies"]:
        calendar = qlib / "calendars" / f"{freq}.txt"
        try:
            first, last = _first_and_last_line(calendar)
        except OSError as exc:
            return (f"the Qlib dataset published at {qlib} has no readable {freq} calendar ({calendar}: "
                    f"{exc.strerror or exc}); the asked days {asked[0]}..{asked[1]} were not published")
        covered = (first[:10], last[:10])
        if covered != asked:
            return (f"the Qlib dataset published at {qlib} covers {covered[0] or '(nothing)'}..{covered[1]} at "
                    f"{freq}, not the asked {asked[0]}..{asked[1]}")
    return None


def _first_and_last_line(path: Path) -> tuple[str, str]:
    """First and last non-empty line of a text file, without reading the middle (a year of 1min is ~10 MB)."""
    with open(path, "rb") as fh:
        first = fh.readline().decode().strip()
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 4096))
        tail = [line for line in fh.read().splitlines() if line.strip()]
    return first, tail[-1].decode().strip() if tail else ""


def snakemake_running_in(directory: Path) -> list[int]:
    """Pids of live Snakemake processes whose working directory is ``directory`` (Linux /proc).

    Only Snakemake itself counts (:func:`feeder.locks.is_snakemake`): the jobs of a killed run,
    whose command lines name ``.snakemake/scripts/...``, do not keep its lock alive (they stop by
    themselves once their Snakemake is gone, and the per-day locks keep a new run's jobs off
    their days until then).
    """
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if not is_snakemake(process_argv(int(proc.name))):
                continue
            if Path(os.readlink(proc / "cwd")).resolve() == directory.resolve():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def clear_stale_snakemake_lock(config_path: Path, directory: Path) -> None:
    """Remove the lock a killed Snakemake run left behind, if no Snakemake runs here any more.

    Holding the workflow lock, we know no other scheduled run is going; a manual Snakemake run
    in the same directory would still show up as a live process, and then we leave it alone.
    """
    locks = directory / ".snakemake" / "locks"
    if not locks.is_dir() or not any(locks.iterdir()):
        return
    running = snakemake_running_in(directory)
    if running:
        log.warning("Snakemake's lock in %s is held by running process(es) %s; not touching it", directory, running)
        return
    log.warning("removing the Snakemake lock left in %s by a run that was killed", directory)
    subprocess.run(snakemake_command(config_path, cores=1, extra=["--unlock", "--quiet"]), cwd=directory,
                   check=False, capture_output=True)


def write_status(work: Path, update: dict[str, Any]) -> None:
    """Merge ``update`` into build-status.json (atomically)."""
    status = read_status(work)
    status.update(update)
    write_json(status, work / STATUS_NAME)


def read_status(work: Path) -> dict[str, Any]:
    try:
        return json.loads((work / STATUS_NAME).read_text())
    except (OSError, ValueError):
        return {}


def published_build(config: dict[str, Any], *, cwd: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The last publish as a success record (from the manifest ``publish_qlib`` writes), or None and why not.

    A build by hand (``snakemake``) never passes through :func:`run_once`, but it publishes
    through the same rule, which records the version, its days and when. It counts only while
    ``paths.qlib`` still points at that version and its calendars span the recorded days (what
    Qlib reads). Returns ``(None, None)`` when nothing was ever published by the workflow.
    """
    work = Path(cwd) / config["paths"]["work"]
    path = work / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
        published_at, first, last = manifest["published_at"], manifest["first_day"], manifest["last_day"]
        version_dir, freqs = Path(manifest["version_dir"]), list(manifest["freqs"])
        days = [dt.date.fromisoformat(first), dt.date.fromisoformat(last)]
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, (f"the publish record {path} is unreadable ({type(exc).__name__}: {exc}); rerun the workflow "
                      "to write it again")
    qlib = Path(cwd) / config["paths"]["qlib"]
    if qlib.resolve() != version_dir.resolve():
        return None, (f"the publish record {path} names version {version_dir}, but paths.qlib {qlib} now shows "
                      f"{qlib.resolve() if qlib.exists() else 'nothing'}; that publish is not counted. Run "
                      "`python -m driver.schedule run` to publish and record a build")
    problem = published_days_problem({**config, "frequencies": freqs}, days, cwd=cwd)
    if problem is not None:
        return None, (f"the publish recorded in {path} is not counted: {problem}. Run `python -m driver.schedule "
                      "run` to publish and record a build")
    return {"last_success": published_at, "covered_through": last, "first_day": first,
            "published_version": version_dir.name}, None


def current_status(config: dict[str, Any], recorded: dict[str, Any], *, cwd: Path) -> dict[str, Any]:
    """The scheduler's own record, superseded by a newer publish (a build by hand) when there is one.

    A scheduled run writes its record after its publish, so for one of its own runs the record
    is the newer and keeps its duration; failures stay as recorded.
    """
    published, note = published_build(config, cwd=cwd)
    status = dict(recorded)
    if published and _instant(published["last_success"]) > _instant(recorded.get("last_success")):
        status.pop("duration_s", None)
        status.update(published)
    if note:
        status["publish_note"] = note
    return status


def _instant(stamp: str | None) -> dt.datetime:
    """An ISO time of a record as an aware datetime (the oldest possible when absent or unreadable)."""
    try:
        parsed = dt.datetime.fromisoformat(stamp or "")
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def freshness(config: dict[str, Any], status: dict[str, Any], *, now: dt.datetime | None = None) -> tuple[bool, str]:
    """(healthy, plain-words verdict) for the newest built day against the clock."""
    now = now or _now()
    stale_after = dt.timedelta(hours=float(config["schedule"]["stale_after_hours"]))
    expected = last_complete_day(now, int(config.get("grace_minutes", 15)))
    covered = status.get("covered_through")
    note = f" ({status['publish_note']})" if status.get("publish_note") else ""
    if not covered:
        return False, ("STALE: no successful build recorded yet (run `python -m driver.schedule run`, or "
                       f"`snakemake`){note}.")
    covered_day = dt.date.fromisoformat(covered)
    data_end = dt.datetime.combine(covered_day + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    age = now - data_end
    if "published_version" in status:  # a publish newer than the scheduler's record (a build by hand)
        how = (f"last publish {status['last_success']} (version {status['published_version']}; no scheduled run "
               "recorded since)")
    else:
        how = f"last successful build {status.get('last_success', '?')} (took {status.get('duration_s', '?')}s)"
    line = f"{how}, data through {covered_day}; newest complete day is {expected}"
    if _instant(status.get("last_failure")) > _instant(status.get("last_success")):
        line += f"; the latest run FAILED at {status['last_failure']} (exit {status.get('last_failure_exit_code')})"
    line += note
    if age > stale_after:
        hours = age.total_seconds() / 3600
        return False, f"STALE: data ends {hours:.1f} h ago (limit {stale_after.total_seconds() / 3600:g} h): {line}"
    return True, f"OK: {line}"


def next_run(now: dt.datetime, *, after_midnight_minutes: int, repair_interval_minutes: int,
             last_run: dt.datetime | None) -> dt.datetime:
    """When the loop runs next: the daily run after midnight, or the next repair run, whichever is first."""
    daily = dt.datetime.combine(now.date(), dt.time(), dt.timezone.utc) + dt.timedelta(minutes=after_midnight_minutes)
    if daily <= now and (last_run is None or last_run < daily):
        return now  # today's daily run is due and has not happened
    if daily <= now:
        daily += dt.timedelta(days=1)
    repair = (last_run or now) + dt.timedelta(minutes=repair_interval_minutes)
    return max(now, min(daily, repair))


def loop(config_path: Path, *, workdir: Path | None = None) -> int:
    """Run forever: daily after midnight UTC and every ``repair_interval_minutes`` in between.

    The config is read again before every run, so edits take effect without a restart; a config
    broken by an edit is reported at each run and the loop keeps going (``main`` has already
    refused a config that is bad when the scheduler starts).
    """
    last_run: dt.datetime | None = None
    sched = load_config(config_path)["schedule"]
    log.info("scheduler started for %s", config_path)
    while True:
        try:
            sched = load_config(config_path)["schedule"]
        except ConfigError as exc:
            log.error("%s\nNo workflow run until this is fixed; the file is read again at the next run.", exc)
        when = next_run(_now(), after_midnight_minutes=sched["after_midnight_minutes"],
                        repair_interval_minutes=sched["repair_interval_minutes"], last_run=last_run)
        pause = (when - _now()).total_seconds()
        if pause > 0:
            log.info("next workflow run at %s", when.isoformat(timespec="seconds"))
            time.sleep(pause)
        last_run = _now()
        try:
            run_once(config_path, workdir=workdir)
        except ConfigError as exc:
            log.error("%s\nThis run is skipped; the file is read again at the next run.", exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m driver.schedule", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run", "loop", "status"])
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--on-overlap", choices=["skip", "wait"], default=None)
    args, extra = parser.parse_known_args(argv)
    setup_logging()
    try:
        # Every command reads the config first: a bad one is refused here with the fix (exit 2),
        # before a lock is taken or a loop starts, instead of as a traceback from deeper down.
        config = load_config(args.config)
        if args.command == "run":
            return run_once(args.config, on_overlap=args.on_overlap, extra=extra)
        if args.command == "loop":
            return loop(args.config)
    except ConfigError as exc:
        where = "" if str(args.config) in str(exc) else f"\n(config file: {args.config})"
        print(f"{exc}{where}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    work = Path(config["paths"]["work"])
    healthy, verdict = freshness(config, current_status(config, read_status(work), cwd=Path.cwd()))
    print(verdict)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
