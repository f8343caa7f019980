"""Logging set-up shared by the workflow scripts and the collector."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from feeder.locks import watch_snakemake

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
    """Drops Snakemake's ``Shell command: None`` line (its SHELLCMD event with no command).

    ``printshellcmds`` (the workflow profile) makes Snakemake log the shell command of every job
    it starts; a ``script:`` rule has none, so each of its jobs adds ``Shell command: None``.
    Records with a real command, and every other record, pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (str(getattr(record, "event", "")) == "shellcmd" and getattr(record, "shellcmd", "") is None)


def quiet_empty_shell_commands(logger: logging.Logger) -> None:
    """Stop ``logger`` (Snakemake's) printing ``Shell command: None`` for script jobs (idempotent).

    Called by the Snakefile on ``snakemake.logging.logger``: every rule of this workflow runs a
    script, so the line would otherwise come once per job (59 times in a small build).
    """
    if not any(isinstance(f, _NoEmptyShellCommand) for f in logger.filters):
        logger.addFilter(_NoEmptyShellCommand())
