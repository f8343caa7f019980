"""Run safety for workflow jobs: one job per REST day at a time, and no job outliving its run.

Two things Snakemake does not guarantee on its own:

* **Per-day locks.** Snakemake's directory lock only keeps two runs out of one working directory,
  and ``--unlock`` after a killed run removes it while the killed run's jobs may still be going.
  So every REST job (backfill, daily_metrics, funding_history) takes an exclusive lock for its
  rule and day, ``<paths.work>/.locks/<rule>/<day>.lock``, with ``flock``: the kernel releases it
  when the holding process exits or dies, so a lock can never go stale. A second job for the
  same rule and day **waits** for the holder, logging who holds it (pid, Snakemake pid, since
  when), then runs: the fetch log and the caches make the second run of a day cheap, and
  waiting lets a new run start right after a killed one instead of failing on its leftovers.
* **Orphaned jobs.** After ``kill -9`` of Snakemake, the jobs it started run on: the local
  executor starts each ``script:`` job as a child process of the Snakemake process (through
  ``bash -c`` that execs the interpreter, so normally the direct parent; with conda or other
  wrappers there can be more processes in between). :func:`watch_snakemake` finds that Snakemake
  process among the job's ancestors and watches it from a thread; when it is gone the job logs
  why and stops (:class:`JobOrphaned` is raised in the main thread, so ``finally`` blocks remove
  temp files; outputs are written atomically, so nothing half-written is left), and exits hard if
  it has not stopped after a grace period. ``PR_SET_PDEATHSIG`` is not used: it fires when the parent *thread*
  exits, and Snakemake starts jobs from worker threads.

Linux only (``/proc`` and ``flock``); elsewhere the watchdog does nothing.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("feeder.locks")

LOCKS_DIR = ".locks"
_STOP_SIGNAL = signal.SIGUSR1  # sent by the watchdog thread to the main thread
_held: list[IO[str]] = []  # open lock files: the locks last as long as the process
_watching: dict[str, int] = {}


def day_lock_path(*, work_dir: Path, job: str, day: str) -> Path:
    """Where the lock of ``job`` (the rule name) for ``day`` lives."""
    return Path(work_dir) / LOCKS_DIR / job / f"{day}.lock"


def hold_day_lock(*, work_dir: str | Path, job: str, day: str, poll_s: float = 1.0,
                  remind_s: float = 300.0) -> Path:
    """Take the exclusive lock of ``job`` for ``day`` for the rest of this process; wait while held.

    Returns the lock path. The lock is released by the kernel when the process exits (normally or
    killed), so callers take it once at the start of a job and never release it by hand.
    """
    watch_snakemake()  # a job waiting for a lock must also stop when its run is killed
    path = day_lock_path(work_dir=Path(work_dir), job=job, day=day)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    started = time.monotonic()
    announced_at: float | None = None
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            now = time.monotonic()
            if announced_at is None or now - announced_at >= remind_s:
                log.warning("%s %s is already being run by another job (%s; lock %s); waiting for it to finish "
                            "(waited %.0fs so far)", job, day, lock_holder(path), path, now - started)
                announced_at = now
            time.sleep(poll_s)
    if announced_at is not None:
        log.info("%s %s: the other job finished after %.0fs; running now", job, day, time.monotonic() - started)
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps({"pid": os.getpid(), "snakemake_pid": _watching.get("pid"), "host": socket.gethostname(),
                         "job": job, "day": day,
                         "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}))
    fh.flush()
    _held.append(fh)
    return path


def lock_holder(path: Path) -> str:
    """Who holds the lock at ``path``, in words, from what the holder wrote into it."""
    try:
        info: dict[str, Any] = json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "holder unknown"
    run = f" of Snakemake pid {info['snakemake_pid']}" if info.get("snakemake_pid") else ""
    return f"pid {info.get('pid')}{run} on {info.get('host')}, since {info.get('since')}"


# --------------------------------------------------------------------------- orphan watchdog


class JobOrphaned(BaseException):
    """The Snakemake process that started this job is gone; the job stops.

    A BaseException (like KeyboardInterrupt), so ``except Exception`` in the job's code cannot
    swallow it and carry on.
    """


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (comm) state": the parent pid


def process_argv(pid: int) -> list[str]:
    """The command line of process ``pid`` (Linux ``/proc``); empty when it is gone or unreadable."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def is_snakemake(argv: list[str]) -> bool:
    """``python -m snakemake ...`` or the ``snakemake`` console script (as argv[0] or after the interpreter).

    Strict on purpose: a job's own command line (``python .snakemake/scripts/tmpab12.backfill.py``)
    and the ``bash -c`` that starts it mention "snakemake" too, but they are not Snakemake.
    """
    head = argv[:4]
    if any(a == "-m" and b == "snakemake" for a, b in zip(head, head[1:])):
        return True
    return any(Path(a).name == "snakemake" for a in argv[:2])


def ancestors(pid: int | None = None) -> list[int]:
    """The parent, grandparent, ... of ``pid`` (this process by default), up to pid 1."""
    chain: list[int] = []
    current = os.getpid() if pid is None else pid
    while True:
        parent = _ppid(current)
        if not parent or parent in chain:
            return chain
        chain.append(parent)
        current = parent


def snakemake_ancestor(pid: int | None = None) -> int | None:
    """The pid of the nearest Snakemake process among the ancestors of ``pid``, or None."""
    return next((p for p in ancestors(pid) if is_snakemake(process_argv(p))), None)


def watch_snakemake(*, poll_s: float = 0.5, grace_s: float = 10.0) -> int | None:
    """Stop this job when the Snakemake process that started it is gone; return that pid (or None).

    Does nothing when no Snakemake process is among the ancestors (the collector, the scheduler,
    a test calling the library) or on a system without ``/proc``. Safe to call more than once.
    """
    if "pid" in _watching:
        return _watching["pid"]
    target = snakemake_ancestor()
    if target is None and hasattr(sys.modules.get("__main__"), "snakemake"):
        # a Snakemake script job whose Snakemake is not among its ancestors: killed before this
        # job got here, or started in a way not recognised (the per-day lock still applies)
        log.warning("no Snakemake process among this job's ancestors %s; the orphan watchdog is off", ancestors())
    if target is None or threading.current_thread() is not threading.main_thread():
        return None
    _watching["pid"] = target
    main_ident = threading.main_thread().ident
    assert main_ident is not None

    def stop(_signum: int, _frame: Any) -> None:
        raise JobOrphaned(f"the Snakemake process (pid {target}) that started this job is gone")

    signal.signal(_STOP_SIGNAL, stop)

    def watch() -> None:
        while target in ancestors():
            time.sleep(poll_s)
        log.error("the Snakemake process (pid %d) that started this job is gone (killed?); stopping this job so it "
                  "does not run on unsupervised. Nothing half-written is left: outputs are only ever renamed into "
                  "place whole. The next workflow run redoes this job.", target)
        signal.pthread_kill(main_ident, _STOP_SIGNAL)  # to the main thread: interrupts a blocking read too
        time.sleep(grace_s)
        log.error("this job did not stop within %.0fs of its Snakemake process going away; exiting now", grace_s)
        logging.shutdown()
        os._exit(1)

    threading.Thread(target=watch, name="snakemake-watchdog", daemon=True).start()
    return target
