"""Logging set-up shared by the workflow scripts and the collector."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from feeder.locks import watch_snakemake

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: What the day rules' shell command runs (workflow/rules/clean.smk, resample.smk): see feeder.job.
SCRIPT_JOB_COMMAND = " -m feeder.job "


def setup_logging(log_file: str | Path | None = None, *, level: int = logging.INFO) -> None:
    """Log to stderr and, if given, to ``log_file`` (Snakemake's ``log:`` path).

    Every workflow script starts with this call, so it also starts the orphan watchdog
    (:func:`feeder.locks.watch_snakemake`): a job whose Snakemake process was killed stops, saying
    why in this log, instead of running on unsupervised. Outside a Snakemake job it does nothing.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=level, format=FORMAT, handlers=handlers, force=True)
    watch_snakemake()


class _NoEmptyShellCommand(logging.Filter):
    """Drops Snakemake's shell-command line of script jobs: ``Shell command: None`` and the
    ``python -m feeder.job`` command.

    ``printshellcmds`` (the workflow profile) makes Snakemake log the shell command of every job
    it starts; a ``script:`` rule has none, so each of its jobs adds ``Shell command: None``, and
    the day rules' ``python -m feeder.job`` command carries the job's files as JSON, a few kB
    restating the input and output lines printed just above it. Records with any other command,
    and every other record, pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if str(getattr(record, "event", "")) != "shellcmd":
            return True
        command = getattr(record, "shellcmd", "")
        return command is not None and SCRIPT_JOB_COMMAND not in str(command)


def quiet_empty_shell_commands(logger: logging.Logger) -> None:
    """Stop ``logger`` (Snakemake's) printing the shell command of script jobs (idempotent).

    Called by the Snakefile on ``snakemake.logging.logger``: every rule of this workflow runs a
    script (``script:``, or ``python -m feeder.job`` for the day rules), so the line would
    otherwise come once per job (59 times in a small build).
    """
    if not any(isinstance(f, _NoEmptyShellCommand) for f in logger.filters):
        logger.addFilter(_NoEmptyShellCommand())
