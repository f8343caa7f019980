"""Raw JSONL shards: the append-only layer between the collector/backfill and cleaning.

Layout and sealing rules are a contract (docs/ARCHITECTURE.md, "Raw shard layout")::

    <root>/<source>/<channel>/<YYYY-MM-DD>/<HH>/<writer-id>.jsonl          sealed (immutable)
    <root>/<source>/<channel>/<YYYY-MM-DD>/<HH>/<writer-id>.jsonl.open     being written
    <root>/rest/<channel>/<YYYY-MM-DD>.jsonl                              whole REST shard

Why it is built this way:

* **Partition by receipt hour** (UTC, from ``recv_ts``): a shard is finished when its hour is
  over, so downstream stages can trust every sealed file and never read a file being written.
* **Seal = flush, fsync, ``os.replace`` to ``.jsonl``, fsync the directory**: after a crash a
  file is either an ``.open`` file (recovered at the next start-up by :func:`recover`) or a
  complete sealed one. Sealed files are never opened for writing again, by anyone.
* **writer-id = ``<epoch ms>-<pid>``**, taken when the writer starts: a restarted process gets
  a new id, so it never appends to a file a previous process wrote. If the same writer has to
  reopen an hour it already sealed (a record arriving after the seal), it takes a fresh
  ``<now ms>-<pid>`` id for that file instead of touching the sealed one.
* **flock on every open file**: :func:`recover` skips files a live writer holds, so running it
  while another collector is up (a supervisor overlap) cannot seal that collector's files
  under it. The lock dies with the process, so a killed writer's files are recoverable.
* **Bounded memory**: one buffered file per (channel, hour) and nothing per symbol.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feeder.records import decode_record, encode_record

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
OPEN_SUFFIX = ".jsonl.open"
SEALED_SUFFIX = ".jsonl"
_SAFE_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")


class ShardWriteError(RuntimeError):
    """Writing a shard failed (disk full, permissions, ...); the message says what to do.

    ``path`` is the file being written and ``errno`` the OS error number (None if not an OS
    error). Sealed shards are never damaged by a failed write: only the ``.open`` file (or the
    temporary file of an atomic write) can be incomplete, and :func:`recover` repairs that.
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


def _check_name(kind: str, value: str) -> str:
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
    return (Path(root) / _check_name("source", source) / _check_name("channel", channel)
            / start.strftime("%Y-%m-%d") / start.strftime("%H"))


def rest_shard_path(root: str | Path, channel: str, day: dt.date | str) -> Path:
    """``<root>/rest/<channel>/<YYYY-MM-DD>.jsonl``: where the backfill writes a day."""
    day_text = day.isoformat() if isinstance(day, dt.date) else dt.date.fromisoformat(day).isoformat()
    return Path(root) / "rest" / _check_name("channel", channel) / f"{day_text}{SEALED_SUFFIX}"


def sealed_shards(root: str | Path, source: str, channel: str, day: dt.date | str | None = None) -> list[Path]:
    """Sealed WS-layout shards of one channel (optionally one day), in write order.

    Sorted by hour, then by writer-id start time (numeric), then name, so concatenating them
    replays a single writer's records in the order it wrote them.
    """
    base = Path(root) / _check_name("source", source) / _check_name("channel", channel)
    pattern = f"{day if isinstance(day, str) else day.isoformat()}/*/*{SEALED_SUFFIX}" if day else f"*/*/*{SEALED_SUFFIX}"
    return sorted(base.glob(pattern), key=_shard_sort_key)


def all_sealed_shards(root: str | Path, source: str = "ws") -> list[Path]:
    """Every sealed WS-layout shard of every channel under ``<root>/<source>``, oldest hour first.

    Never an ``.jsonl.open`` file (the glob ends in ``.jsonl``). The collector's S3 uploader scans
    with this at start-up to find shards sealed but not yet uploaded.
    """
    base = Path(root) / _check_name("source", source)
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs_durable(path: Path) -> None:
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
        _fsync_dir(directory.parent)


# --------------------------------------------------------------------------- writer


@dataclass
class _OpenShard:
    channel: str
    hour: int
    open_path: Path
    final_path: Path
    fd: int
    buf: list[bytes] = field(default_factory=list)
    buf_len: int = 0
    size: int = 0          # bytes on disk, always a whole number of complete lines
    lines: int = 0
    dirty: bool = False    # a failed write left bytes past ``size`` that could not be cut off


@dataclass
class WriterStats:
    """Counters a collector exports as metrics."""

    records: int = 0
    bytes: int = 0
    shards_opened: int = 0
    shards_sealed: int = 0
    bytes_sealed: int = 0
    flushes: int = 0
    late_reopens: int = 0
    write_errors: int = 0
    lost_records: int = 0   # buffered records dropped because the disk refused them


#: ``on_io(op, seconds, nbytes)``: called after every flush (``op="flush"``) and seal (``"seal"``).
IoHook = Callable[[str, float, int], None]
#: ``on_seal(path, nbytes)``: called with every sealed ``.jsonl`` file, right after the rename is
#: durable (the collector's S3 uploader queues it). Must be quick: it runs on the writer's thread.
SealHook = Callable[[Path, int], None]


class ShardWriter:
    """Appends raw records to hourly ``.jsonl.open`` shards and seals them when the hour ends.

    Not thread-safe: use it from one thread (the collector's event loop).

    * :meth:`write` appends to the shard of the record's **receipt hour** (from ``recv_ts``);
      it also flushes and seals when due, so a busy stream needs no other call.
    * :meth:`tick` must still be called periodically (the collector does, every ~0.25 s): it
      flushes at least every ``flush_interval_s`` and seals hours that ended more than
      ``seal_grace_s`` ago by ``clock``, which matters for quiet channels.
    * :meth:`close` seals everything (SIGTERM path).

    ``clock`` returns epoch seconds and must be the clock ``recv_ts`` comes from (the
    collector's receipt clock), so "the hour is over" means the same thing for both.
    ``flush_clock`` (default: ``clock``) times the flushes; the collector passes
    ``time.monotonic`` so "flushed at least every second" means real seconds even when the
    receipt clock is a simulator running 300x.

    Buffering is done here (a list of lines per shard, written with one ``os.write`` per
    flush), not by Python's ``BufferedWriter``, so the writer always knows how many bytes
    of the file are complete lines: when a write fails (disk full, file size limit), the file is
    cut back to that length, so a shard never holds a torn line in the middle, and sealing
    what is on disk stays safe. ``flush`` hands data to the OS (survives a process kill);
    fsync happens when sealing.
    """

    def __init__(
        self,
        root: str | Path,
        source: str = "ws",
        clock: Callable[[], float] = time.time,
        *,
        flush_interval_s: float = 1.0,
        seal_grace_s: float = 2.0,
        buffer_size: int = 1 << 16,
        pid: int | None = None,
        flush_clock: Callable[[], float] | None = None,
        on_io: IoHook | None = None,
        on_seal: SealHook | None = None,
    ) -> None:
        self.root = Path(root)
        self.source = _check_name("source", source)
        self.clock = clock
        self.flush_clock = flush_clock or clock
        self.flush_interval_s = float(flush_interval_s)
        self.seal_grace_ms = int(seal_grace_s * 1000)
        self.buffer_size = buffer_size
        self.pid = os.getpid() if pid is None else int(pid)
        self.on_io = on_io
        self.on_seal = on_seal
        self._last_id_ms = int(clock() * 1000)
        self.writer_id = f"{self._last_id_ms}-{self.pid}"
        self.stats = WriterStats()
        self._open: dict[tuple[str, int], _OpenShard] = {}
        self._next_flush = self.flush_clock() + self.flush_interval_s
        self._closed = False
        self._failed: ShardWriteError | None = None

    # -- public API ------------------------------------------------------------------

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record (ARCHITECTURE.md format) to its receipt-hour shard."""
        self.write_line(record["channel"], record["recv_ts"], encode_record(record))

    def write_line(self, channel: str, recv_ts: int, line: bytes) -> None:
        """Append an already encoded record line (must end with ``\\n``)."""
        if self._failed is not None or self._closed:
            if self._closed:
                raise RuntimeError("ShardWriter is closed")
            raise self._failed  # type: ignore[misc]
        if line.find(b"\n") != len(line) - 1:
            raise ValueError("a record line must be exactly one line ending with \\n")
        shard = self._open.get((channel, recv_ts // HOUR_MS))
        if shard is None:
            shard = self._shard_for(channel, hour_of(recv_ts))
        shard.buf.append(line)
        shard.buf_len += len(line)
        shard.lines += 1
        self.stats.records += 1
        self.stats.bytes += len(line)
        if shard.buf_len >= self.buffer_size:
            self._flush_timed(shard)
        if self.flush_clock() >= self._next_flush:
            self.tick()

    def tick(self) -> list[Path]:
        """Flush if due and seal the shards whose hour is over; return the sealed paths."""
        if self.flush_clock() >= self._next_flush:
            self.flush()
        now_ms = int(self.clock() * 1000)
        expired = [key for key in self._open if (key[1] + 1) * HOUR_MS + self.seal_grace_ms <= now_ms]
        return [self._seal(self._open.pop(key)) for key in sorted(expired, key=lambda k: (k[1], k[0]))]

    def flush(self) -> None:
        """Hand every buffered line to the OS (no fsync: that is done when sealing)."""
        if self._failed is not None:
            raise self._failed
        for shard in self._open.values():
            if shard.buf:
                self._flush_timed(shard)
        self._next_flush = self.flush_clock() + self.flush_interval_s

    def close(self) -> list[Path]:
        """Seal every open shard (idempotent). Raises the first error after trying all.

        After a write failure (disk full) this still seals what each shard holds on disk
        (complete lines only; the lines the disk refused are counted in ``stats.lost_records``);
        a shard that cannot be sealed stays ``.jsonl.open`` for :func:`recover`.
        """
        if self._closed:
            return []
        self._closed = True
        sealed: list[Path] = []
        first_error: ShardWriteError | None = self._failed
        for key in sorted(self._open, key=lambda k: (k[1], k[0])):
            shard = self._open[key]
            try:
                path = self._seal(shard, best_effort=True)
                if path == shard.final_path:
                    sealed.append(path)
            except ShardWriteError as exc:
                log.error("%s", exc)
                first_error = first_error or exc
        self._open.clear()
        if first_error is not None:
            raise first_error
        return sealed

    @property
    def failed(self) -> ShardWriteError | None:
        """The write error that stopped this writer, if any."""
        return self._failed

    @property
    def open_paths(self) -> list[Path]:
        """The ``.jsonl.open`` files currently being written."""
        return [s.open_path for s in self._open.values()]

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------

    def _fail(self, path: Path, exc: OSError, action: str = "writing") -> ShardWriteError:
        error = ShardWriteError(path, exc, action=action)
        self.stats.write_errors += 1
        if self._failed is None:
            self._failed = error
        return error

    def _flush_timed(self, shard: _OpenShard) -> None:
        t0 = time.perf_counter()
        n = self._flush_shard(shard)
        if self.on_io is not None:
            self.on_io("flush", time.perf_counter() - t0, n)

    def _flush_shard(self, shard: _OpenShard) -> int:
        """Write the shard's buffer with ``os.write``; on failure cut the file back to its last
        complete line and drop the buffer (those records are lost: the repair path restores them)."""
        if not shard.buf:
            return 0
        data = b"".join(shard.buf) if len(shard.buf) > 1 else shard.buf[0]
        lost_lines = len(shard.buf)
        shard.buf.clear()
        shard.buf_len = 0
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                done += os.write(shard.fd, view[done:])
        except OSError as exc:
            self.stats.lost_records += lost_lines
            try:
                os.ftruncate(shard.fd, shard.size)
            except OSError:
                shard.dirty = True   # recover() cuts the torn tail at the next start
            raise self._fail(shard.open_path, exc) from exc
        finally:
            view.release()
        shard.size += done
        self.stats.flushes += 1
        return done

    def _shard_for(self, channel: str, hour: int) -> _OpenShard:
        shard = self._open.get((channel, hour))
        if shard is None:
            shard = self._open_shard(channel, hour)
            self._open[(channel, hour)] = shard
        return shard

    def _open_shard(self, channel: str, hour: int) -> _OpenShard:
        directory = hour_dir(self.root, self.source, channel, hour)
        writer_id = self.writer_id
        path = directory / f"{writer_id}{OPEN_SUFFIX}"
        try:
            _makedirs_durable(directory)
            while True:
                final = directory / f"{writer_id}{SEALED_SUFFIX}"
                open_path = directory / f"{writer_id}{OPEN_SUFFIX}"
                path = open_path
                if not final.exists():
                    try:
                        fd = os.open(open_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
                        break
                    except FileExistsError:
                        pass
                # This writer already sealed (or another process owns) this name: take a fresh id.
                # Ids only grow, so sorting by id replays this writer's files in write order.
                self.stats.late_reopens += 1
                self._last_id_ms = max(int(self.clock() * 1000), self._last_id_ms + 1)
                writer_id = f"{self._last_id_ms}-{self.pid}"
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise
        except OSError as exc:
            raise self._fail(path, exc, action="creating") from exc
        if writer_id != self.writer_id:
            log.warning("shard %s/%s hour %s was already sealed by this writer; late records go to %s",
                        self.source, channel, hour, open_path.name)
        self.stats.shards_opened += 1
        return _OpenShard(channel, hour, open_path, final, fd)

    def _seal(self, shard: _OpenShard, *, best_effort: bool = False) -> Path:
        """flush → fsync → os.replace(.jsonl.open, .jsonl) → fsync dir → close (drops the lock).

        ``best_effort`` (closing after a failure): a flush the disk refuses drops the buffer
        and seals the complete lines already on disk (an empty file is removed instead, and its
        ``open_path`` returned).
        """
        t0 = time.perf_counter()
        try:
            try:
                self._flush_shard(shard)
            except ShardWriteError:
                if not best_effort:
                    raise
            if shard.dirty:
                raise self._fail(shard.open_path, OSError(errno.EIO, "a failed write left a torn line that could "
                                                          "not be cut off"), action="sealing")
            if shard.size == 0:     # nothing reached the disk (e.g. the disk was full from the start)
                os.unlink(shard.open_path)
                return shard.open_path
            os.fsync(shard.fd)
            if shard.final_path.exists():  # cannot happen with unique ids; never clobber a sealed file
                raise FileExistsError(errno.EEXIST, "sealed shard already exists", str(shard.final_path))
            os.replace(shard.open_path, shard.final_path)
            _fsync_dir(shard.final_path.parent)
        except OSError as exc:
            raise self._fail(shard.open_path, exc, action="sealing") from exc
        finally:
            _close_quietly(shard)
        self.stats.shards_sealed += 1
        self.stats.bytes_sealed += shard.size
        if self.on_io is not None:
            self.on_io("seal", time.perf_counter() - t0, shard.size)
        if self.on_seal is not None:
            try:
                self.on_seal(shard.final_path, shard.size)
            except Exception:  # the shard is sealed and safe; a hook bug must not look like a write failure
                log.exception("on_seal hook failed for %s (the shard is sealed)", shard.final_path)
        log.debug("sealed %s (%d lines)", shard.final_path, shard.lines)
        return shard.final_path


def _close_quietly(shard: _OpenShard) -> None:
    """Close a shard's descriptor (drops the flock); never raises."""
    if shard.fd >= 0:
        try:
            os.close(shard.fd)
        except OSError:
            pass
        shard.fd = -1


_PROBE_PREFIX = ".write-probe-"


def _remove_stale_probes(root: Path) -> None:
    """Probe files of processes that died while probing (SIGKILL): remove them."""
    for path in root.glob(f"{_PROBE_PREFIX}*"):
        pid = path.name[len(_PROBE_PREFIX):]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue                # that process is alive (it is probing right now)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            path.unlink()
        except OSError:
            pass


def probe_writable(root: str | Path, *, size: int = 1 << 16) -> ShardWriteError | None:
    """Can ``root`` take a shard? Writes, fsyncs and removes a ``size``-byte probe file.

    Returns None when it can, else the :class:`ShardWriteError` (disk full, permissions, read-only
    filesystem) with the message to log. The collector calls this before it starts writing and
    waits while it fails, so a full disk neither crash-loops it nor makes it lose sealed data.
    """
    root = Path(root)
    probe = root / f"{_PROBE_PREFIX}{os.getpid()}"
    fd = -1
    try:
        _makedirs_durable(root)
        _remove_stale_probes(root)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        block = b"\0" * min(size, 1 << 16)
        left = size
        while left > 0:
            left -= os.write(fd, block[:left])
        os.fsync(fd)
        return None
    except OSError as exc:
        return ShardWriteError(probe, exc, action="test-writing")
    finally:
        if fd >= 0:
            os.close(fd)
        try:
            probe.unlink()
        except OSError:
            pass


# --------------------------------------------------------------------------- recovery


@dataclass
class RecoveredShard:
    """One ``.jsonl.open`` file sealed by :func:`recover`."""

    path: Path            # the sealed ``.jsonl`` path (or the removed ``.open`` path if empty)
    kept_bytes: int
    cut_lines: int
    cut_bytes: int


@dataclass
class RecoveryReport:
    """What :func:`recover` did; ``summary()`` is the start-up log line."""

    sealed: list[RecoveredShard] = field(default_factory=list)
    removed_empty: list[Path] = field(default_factory=list)
    in_use: list[Path] = field(default_factory=list)
    conflicts: list[Path] = field(default_factory=list)
    errors: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def cut_lines(self) -> int:
        return sum(s.cut_lines for s in self.sealed)

    @property
    def cut_bytes(self) -> int:
        return sum(s.cut_bytes for s in self.sealed)

    def summary(self) -> str:
        return (f"recovered {len(self.sealed)} unsealed shard(s), cut {self.cut_lines} partial line(s) "
                f"({self.cut_bytes} bytes), removed {len(self.removed_empty)} empty, skipped "
                f"{len(self.in_use)} in use by a live writer, {len(self.conflicts)} conflict(s), "
                f"{len(self.errors)} error(s)")


def _line_start(fd: int, end: int, chunk: int = 1 << 16) -> int:
    """Offset where the line whose content ends at ``end`` (exclusive, before its ``\\n``) starts."""
    pos = end
    while pos > 0:
        step = min(chunk, pos)
        data = os.pread(fd, step, pos - step)
        idx = data.rfind(b"\n")
        if idx >= 0:
            return pos - step + idx + 1
        pos -= step
    return 0


def _recover_one(path: Path, report: RecoveryReport) -> None:
    final = path.with_name(path.name[: -len(OPEN_SUFFIX)] + SEALED_SUFFIX)
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report.in_use.append(path)
            return
        if final.exists():
            report.conflicts.append(path)
            log.error("cannot seal %s: %s already exists. Both files are left as they are; inspect them "
                      "(the sealed one is never modified) and move the .open file away.", path, final.name)
            return
        size = os.fstat(fd).st_size
        keep = _line_start(fd, size)          # everything after the last "\n" is a partial line
        cut_lines = 1 if keep < size else 0
        while keep > 0:                       # a complete last line must still be a JSON record
            start = _line_start(fd, keep - 1)
            try:
                decode_record(os.pread(fd, keep - start, start))
                break
            except ValueError:
                cut_lines += 1
                keep = start
        if keep < size:
            os.ftruncate(fd, keep)
        os.fsync(fd)
        if keep == 0:
            os.unlink(path)
            _fsync_dir(path.parent)
            report.removed_empty.append(path)
            if cut_lines:
                report.sealed.append(RecoveredShard(path, 0, cut_lines, size))
            return
        os.replace(path, final)
        _fsync_dir(final.parent)
        report.sealed.append(RecoveredShard(final, keep, cut_lines, size - keep))
    finally:
        os.close(fd)


def recover(root: str | Path) -> RecoveryReport:
    """Seal every ``.jsonl.open`` under ``root`` left by a dead writer.

    For each file not locked by a live writer: cut a partial last line (no trailing ``\\n``)
    and any complete last line that is not a JSON record, count them, keep everything before,
    fsync, rename to ``.jsonl``, fsync the directory. A file left empty is removed. Sealed
    ``.jsonl`` files are never opened for writing. Errors on one file are reported (and
    logged) and do not stop the others.
    """
    report = RecoveryReport()
    root = Path(root)
    if not root.exists():
        return report
    for path in sorted(root.rglob(f"*{OPEN_SUFFIX}")):
        try:
            _recover_one(path, report)
        except OSError as exc:
            report.errors.append((path, str(exc)))
            log.error("could not recover %s: %s. Fix the cause (disk full? permissions?) and restart; "
                      "the file is left as it was.", path, exc)
    return report


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
        _makedirs_durable(path.parent)
        with open(tmp, "wb") as fh:
            for record in records:
                fh.write(encode_record(record))
                count += 1
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise ShardWriteError(path, exc) from exc
    return count
