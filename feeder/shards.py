"""Raw JSONL shards: the append-only layer between the collector/backfill and cleaning.

Layout and sealing rules are a contract (docs/ARCHITECTURE.md, "Raw shard layout")::

    <root>/<source>/<channel>/<YYYY-MM-DD>/<HH>/<writer-id>.jsonl          sealed (immutable)
    <root>/<source>/<channel>/<YYYY-MM-DD>/<HH>/<writer-id>.jsonl.open     being written
    <root>/rest/<channel>/<YYYY-MM-DD>.jsonl                              whole REST shard

This module is the layout every stage shares: where a shard lives (:func:`hour_dir`,
:func:`rest_shard_path`), which shards are sealed (:func:`sealed_shards`), reading them
(:func:`read_records`) and writing a whole shard at once (:func:`write_shard_atomically`, the
backfill). The collector's hourly writer is :mod:`collector.writer`; sealing the ``.open`` files
of a dead writer is :mod:`collector.recovery`.

Why it is built this way:

* **Partition by receipt hour** (UTC, from ``recv_ts``): a shard is finished when its hour is
  over, so downstream stages can trust every sealed file and never read a file being written.
* **Seal = flush, fsync, ``os.replace`` to ``.jsonl``, fsync the directory**: after a crash a
  file is either an ``.open`` file (recovered at the next start-up) or a complete sealed one.
  Sealed files are never opened for writing again, by anyone.
* **Durable directories**: :func:`makedirs_durable` fsyncs the parent of every directory it
  creates, so a sealed shard's directory entry survives a crash too.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from feeder.records import decode_record, encode_record


HOUR_MS = 3_600_000
OPEN_SUFFIX = ".jsonl.open"
SEALED_SUFFIX = ".jsonl"
_SAFE_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")


class ShardWriteError(RuntimeError):
    """Writing a shard failed (disk full, permissions, ...); the message says what to do.

    ``path`` is the file being written and ``errno`` the OS error number (None if not an OS
    error). Sealed shards are never damaged by a failed write: only the ``.open`` file (or the
    temporary file of an atomic write) can be incomplete, and the collector's start-up recovery
    (:func:`collector.recovery.recover`) repairs that.
    """

    def __init__(self, path: Path, exc: BaseException, *, action: str = "writing") -> None:
        self.path = Path(path)
        self.errno = getattr(exc, "errno", None)
        super().__init__(self._message(action, exc))

    def _message(self, action: str, exc: BaseException) -> str:
        where = self.path.parent
        if self.errno in (errno.ENOSPC, errno.EDQUOT):
            hint = (f"the disk (or quota) holding {where} is full. Free space there, or point paths.raw in "
                    "config.yaml at a larger disk, then restart.")
        elif self.errno == errno.EFBIG:
            hint = ("a file size limit was reached (ulimit -f / RLIMIT_FSIZE of this process, or the filesystem's "
                    "maximum file size). Raise the limit, then restart.")
        elif self.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            user = os.environ.get("USER") or str(os.getuid())
            hint = (f"no permission to write in {where} (user {user}, or a read-only filesystem). Make the "
                    "directory writable for this user, or point paths.raw elsewhere, then restart.")
        else:
            hint = "check the disk and the path, then restart."
        return (f"{action} raw shard {self.path} failed: {exc}. {hint} Sealed shards are untouched; an "
                "unfinished .jsonl.open file is sealed by the next start-up (its partial last line is cut).")


# --------------------------------------------------------------------------- paths


def check_name(kind: str, value: str) -> str:
    """Refuse path components that could escape the shard tree (``..``, ``/``, upper case)."""
    if not value or not set(value) <= _SAFE_NAME_CHARS or value.startswith("-"):
        raise ValueError(f"{kind} {value!r} is not a valid shard path component "
                         "(lower-case letters, digits, '-' and '_' only)")
    return value


def hour_of(ts_ms: int) -> int:
    """Index of the UTC hour containing ``ts_ms`` (epoch ms // 3 600 000)."""
    return int(ts_ms) // HOUR_MS


def hour_dir(root: str | Path, source: str, channel: str, hour: int) -> Path:
    """``<root>/<source>/<channel>/<YYYY-MM-DD>/<HH>`` for hour index ``hour``."""
    start = dt.datetime.fromtimestamp(hour * 3600, tz=dt.timezone.utc)
    return (Path(root) / check_name("source", source) / check_name("channel", channel)
            / start.strftime("%Y-%m-%d") / start.strftime("%H"))


def rest_shard_path(root: str | Path, channel: str, day: dt.date | str) -> Path:
    """``<root>/rest/<channel>/<YYYY-MM-DD>.jsonl``: where the backfill writes a day."""
    day_text = day.isoformat() if isinstance(day, dt.date) else dt.date.fromisoformat(day).isoformat()
    return Path(root) / "rest" / check_name("channel", channel) / f"{day_text}{SEALED_SUFFIX}"


def sealed_shards(root: str | Path, source: str, channel: str, day: dt.date | str | None = None) -> list[Path]:
    """Sealed WS-layout shards of one channel (optionally one day), in write order.

    Sorted by hour, then by writer-id start time (numeric), then name, so concatenating them
    replays a single writer's records in the order it wrote them.
    """
    base = Path(root) / check_name("source", source) / check_name("channel", channel)
    pattern = f"{day if isinstance(day, str) else day.isoformat()}/*/*{SEALED_SUFFIX}" if day else f"*/*/*{SEALED_SUFFIX}"
    return sorted(base.glob(pattern), key=_shard_sort_key)


def all_sealed_shards(root: str | Path, source: str = "ws") -> list[Path]:
    """Every sealed WS-layout shard of every channel under ``<root>/<source>``, oldest hour first.

    Never an ``.jsonl.open`` file (the glob ends in ``.jsonl``). The collector's S3 uploader scans
    with this at start-up to find shards sealed but not yet uploaded.
    """
    base = Path(root) / check_name("source", source)
    return sorted(base.glob(f"*/*/*/*{SEALED_SUFFIX}"), key=lambda p: (_shard_sort_key(p), p.parent.parent.parent.name))


def _shard_sort_key(path: Path) -> tuple[str, str, int, str]:
    writer_id = path.name[: -len(SEALED_SUFFIX)] if path.name.endswith(SEALED_SUFFIX) else path.name
    head = writer_id.split("-", 1)[0]
    return (path.parent.parent.name, path.parent.name, int(head) if head.isdigit() else -1, path.name)


def read_records(paths: Iterable[str | Path]) -> Iterator[dict[str, Any]]:
    """Records of sealed shards, in file order (raises ``ValueError`` on a bad line)."""
    for path in paths:
        with open(path, "rb") as fh:
            for number, line in enumerate(fh, 1):
                try:
                    yield decode_record(line)
                except ValueError as exc:
                    raise ValueError(f"{path}:{number}: not a record: {exc}") from exc


# --------------------------------------------------------------------------- fs helpers


def fsync_dir(path: Path) -> None:
    """fsync a directory, so the entries created or renamed in it survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(path: Path) -> None:
    """``mkdir -p`` that fsyncs the parent of every directory it creates (entries survive a crash)."""
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            continue
        fsync_dir(directory.parent)


# --------------------------------------------------------------------------- atomic whole shard


def write_shard_atomically(path: str | Path, records: Iterable[Mapping[str, Any]]) -> int:
    """Write a whole shard at once: temp file in the same directory, fsync, ``os.replace``.

    Readers see the old file or the complete new one, never a partial file. Returns the number
    of records written. Used by the backfill for ``raw/rest/<channel>/<day>.jsonl``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    count = 0
    try:
        makedirs_durable(path.parent)
        with open(tmp, "wb") as fh:
            for record in records:
                fh.write(encode_record(record))
                count += 1
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise ShardWriteError(path, exc) from exc
    return count
