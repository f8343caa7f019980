"""The collector's shard writer: appends raw records to hourly ``.jsonl.open`` shards and seals them.

The layout it writes is :mod:`feeder.shards` (docs/ARCHITECTURE.md, "Raw shard layout"); the
``.open`` files a dead writer leaves behind are sealed at the next start-up by
:mod:`collector.recovery`.

Why it is built this way:

* **writer-id = ``<epoch ms>-<pid>``**, taken when the writer starts: a restarted process gets
  a new id, so it never appends to a file a previous process wrote. If the same writer has to
  reopen an hour it already sealed (a record arriving after the seal), it takes a fresh
  ``<now ms>-<pid>`` id for that file instead of touching the sealed one.
* **flock on every open file**: recovery skips files a live writer holds, so running it while
  another collector is up (a supervisor overlap) cannot seal that collector's files under it.
  The lock dies with the process, so a killed writer's files are recoverable.
* **Bounded memory**: one buffered file per (channel, hour) and nothing per symbol.
* **Compressed channels** (``compress_channels``, config ``collector.compress_channels``): the
  hour is written as a plain ``.jsonl.open`` (appends stay cheap and a crash leaves complete
  lines, as for every channel); sealing fsyncs it, then one background thread compresses it
  into ``<writer-id>.jsonl.zst`` (:func:`feeder.shards.compress_sealed`: temporary name, fsync,
  rename, fsync dir) and only then removes the ``.open`` file. The thread keeps the ``.open``
  file's lock until it is removed, so start-up recovery of another process never touches it;
  compressing an hour of books (about 100 MB for 50 instruments) takes about a second, which must
  not stall the event loop that reads the sockets. Memory stays bounded (1 MB chunks).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feeder.records import encode_record
from feeder.shards import (HOUR_MS, OPEN_SUFFIX, SEALED_SUFFIX, ZST_SUFFIX, ShardWriteError, check_name,
                           compress_sealed, fsync_dir, hour_dir, hour_of, makedirs_durable)

log = logging.getLogger(__name__)


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
    shards_compressed: int = 0
    bytes_compressed_in: int = 0    # JSONL bytes of the shards sealed as .jsonl.zst
    bytes_compressed_out: int = 0   # their size on disk
    compress_seconds: float = 0.0   # time the compression thread spent on them


#: ``on_io(op, seconds, nbytes)``: called after every flush (``op="flush"``) and seal (``"seal"``).
IoHook = Callable[[str, float, int], None]
#: ``on_seal(path, nbytes)``: called with every sealed ``.jsonl`` (or ``.jsonl.zst``) file, right after the rename is
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
        compress_channels: Collection[str] = (),
    ) -> None:
        self.root = Path(root)
        self.source = check_name("source", source)
        self.clock = clock
        self.flush_clock = flush_clock or clock
        self.flush_interval_s = float(flush_interval_s)
        self.seal_grace_ms = int(seal_grace_s * 1000)
        self.buffer_size = buffer_size
        self.pid = os.getpid() if pid is None else int(pid)
        self.on_io = on_io
        self.on_seal = on_seal
        self.compress_channels = frozenset(compress_channels)
        self._compressor: ThreadPoolExecutor | None = None
        self._compressing: list[tuple[_OpenShard, Future[tuple[int, float]]]] = []
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
        sealed = [self._seal(self._open.pop(key)) for key in sorted(expired, key=lambda k: (k[1], k[0]))]
        sealed = [p for p in sealed if p.name.endswith(SEALED_SUFFIX)]  # compressed ones: when done
        if self._compressing:
            sealed.extend(self._reap(wait=False))
        return sealed

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
        a shard that cannot be sealed stays ``.jsonl.open`` for :func:`collector.recovery.recover`.
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
                if path == shard.final_path and path.name.endswith(SEALED_SUFFIX):
                    sealed.append(path)
            except ShardWriteError as exc:
                log.error("%s", exc)
                first_error = first_error or exc
        self._open.clear()
        try:
            sealed.extend(self._reap(wait=True))
        except ShardWriteError as exc:
            first_error = first_error or exc
        if self._compressor is not None:
            self._compressor.shutdown(wait=True)
            self._compressor = None
        if first_error is not None:
            raise first_error
        return sealed

    @property
    def failed(self) -> ShardWriteError | None:
        """The write error that stopped this writer, if any."""
        return self._failed

    def wait_compressed(self) -> list[Path]:
        """Wait for every compression under way; returns the ``.jsonl.zst`` files sealed (tests, benches)."""
        return self._reap(wait=True)

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
        suffix = ZST_SUFFIX if channel in self.compress_channels else SEALED_SUFFIX
        try:
            makedirs_durable(directory)
            while True:
                final = directory / f"{writer_id}{suffix}"
                open_path = directory / f"{writer_id}{OPEN_SUFFIX}"
                path = open_path
                if not final.exists():
                    try:
                        fd = os.open(open_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)  # read: compression
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
                _close_quietly(shard)
                return shard.open_path
            os.fsync(shard.fd)
            if shard.final_path.exists():  # cannot happen with unique ids; never clobber a sealed file
                raise FileExistsError(errno.EEXIST, "sealed shard already exists", str(shard.final_path))
            if shard.final_path.name.endswith(ZST_SUFFIX):
                # the .open file is complete and durable; the thread compresses it and keeps its lock
                if self._compressor is None:
                    self._compressor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-zstd")
                self._compressing.append((shard, self._compressor.submit(_compress_job, shard)))
                return shard.open_path
            os.replace(shard.open_path, shard.final_path)
            fsync_dir(shard.final_path.parent)
        except OSError as exc:
            _close_quietly(shard)
            raise self._fail(shard.open_path, exc, action="sealing") from exc
        except BaseException:
            _close_quietly(shard)
            raise
        _close_quietly(shard)
        self._sealed(shard, shard.size, time.perf_counter() - t0)
        return shard.final_path

    def _sealed(self, shard: _OpenShard, nbytes: int, seconds: float) -> None:
        """Count a shard sealed and tell the hooks (on the writer's thread)."""
        self.stats.shards_sealed += 1
        self.stats.bytes_sealed += shard.size
        if self.on_io is not None:
            self.on_io("seal", seconds, shard.size)
        if self.on_seal is not None:
            try:
                self.on_seal(shard.final_path, nbytes)
            except Exception:  # the shard is sealed and safe; a hook bug must not look like a write failure
                log.exception("on_seal hook failed for %s (the shard is sealed)", shard.final_path)
        log.debug("sealed %s (%d lines)", shard.final_path, shard.lines)

    def _reap(self, *, wait: bool) -> list[Path]:
        """Finish the compressions that are done (all of them with ``wait``): count them, call the
        hooks, and raise the first failure as a :class:`ShardWriteError` (after reaping the rest)."""
        done: list[Path] = []
        still: list[tuple[_OpenShard, Future[tuple[int, float]]]] = []
        first_error: ShardWriteError | None = None
        for shard, future in self._compressing:
            if not wait and not future.done():
                still.append((shard, future))
                continue
            try:
                size, seconds = future.result()
            except OSError as exc:
                error = self._fail(shard.open_path, exc, action="compressing")
                first_error = first_error or error
                continue
            self.stats.shards_compressed += 1
            self.stats.bytes_compressed_in += shard.size
            self.stats.bytes_compressed_out += size
            self.stats.compress_seconds += seconds
            self._sealed(shard, size, seconds)
            done.append(shard.final_path)
        self._compressing = still
        if first_error is not None:
            raise first_error
        return done


def _compress_job(shard: _OpenShard) -> tuple[int, float]:
    """On the compression thread: ``.jsonl.open`` → ``.jsonl.zst`` (crash-safe), then remove the
    ``.open`` file and fsync the directory; the descriptor (and its lock) is closed last. Until the
    rename, a crash leaves the complete ``.open`` file (recovery seals it again); between the rename
    and the unlink, both (recovery checks they hold the same lines and removes the ``.open``)."""
    t0 = time.perf_counter()
    try:
        size = compress_sealed(shard.fd, shard.size, shard.final_path)
        os.unlink(shard.open_path)
        fsync_dir(shard.open_path.parent)
    except OSError as exc:
        log.error("compressing %s into %s failed (%s); the complete .jsonl.open file is kept and sealed by the "
                  "next start-up", shard.open_path, shard.final_path.name, exc)
        raise
    finally:
        _close_quietly(shard)
    return size, time.perf_counter() - t0


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
        makedirs_durable(root)
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
