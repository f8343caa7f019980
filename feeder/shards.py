"""Raw JSONL shards: the append-only layer between the collector/backfill and cleaning.

Layout and sealing rules are a contract (docs/ARCHITECTURE.md, "Raw shard layout")::

    <root>/<source>/<channel>/<YYYY-MM-DD>/<HH>/<writer-id>.jsonl          sealed (immutable)
    <root>/<source>/<channel>/<YYYY-MM-DD>/<HH>/<writer-id>.jsonl.zst      sealed, zstd-compressed
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
* **Compressed sealed shards** (``.jsonl.zst``, the collector's ``collector.compress_channels``):
  one zstd stream of exactly the bytes the ``.jsonl`` would hold, written to a temporary name,
  fsynced and renamed like any seal (:func:`compress_sealed`). Readers stream them
  (:func:`read_records`, :func:`shard_lines`) without a temporary copy; a torn or garbled one is
  an error naming the file, never a silent skip or a short read.
* **Durable directories**: :func:`makedirs_durable` fsyncs the parent of every directory it
  creates, so a sealed shard's directory entry survives a crash too.
"""

from __future__ import annotations

import datetime as dt
import errno
import io
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from feeder.records import decode_record, encode_record
from feeder.registry import DAY_MS


def _pyarrow() -> Any:
    """pyarrow (its zstd codec), imported on first use: a collector with no compressed channel
    and the readers of plain shards do not pay for it."""
    import pyarrow

    return pyarrow


HOUR_MS = 3_600_000
OPEN_SUFFIX = ".jsonl.open"
SEALED_SUFFIX = ".jsonl"
ZST_SUFFIX = ".jsonl.zst"
#: Every sealed shard ends in one of these (longest first, for stripping a name to its writer id).
SEALED_SUFFIXES: tuple[str, ...] = (ZST_SUFFIX, SEALED_SUFFIX)
_READ_CHUNK = 1 << 20
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


def previous_day_hours(max_age_s: int) -> range:
    """Receipt hours of the day before whose shards can hold a record still in force at 00:00:00
    (a book is the state for ``max_age_s``; the books5 cleaning of day D reads these hours of D-1).

    Such a record has ``ts >= 00:00 - max_age_s`` and is received after it; one more minute
    allows for the collector's clock being behind the exchange's. Here, not in
    feeder.clean_books, because the workflow's input functions call it: this module imports no
    polars, so Snakemake's own process does not pay for it.
    """
    first = (DAY_MS // 1000 - int(max_age_s) - 60) // 3600
    return range(max(0, first), 24)


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
    """Sealed WS-layout shards (``.jsonl`` and ``.jsonl.zst``) of one channel (optionally one day),
    in write order.

    Sorted by hour, then by writer-id start time (numeric), then name, so concatenating them
    replays a single writer's records in the order it wrote them.
    """
    base = Path(root) / check_name("source", source) / check_name("channel", channel)
    day_glob = (day if isinstance(day, str) else day.isoformat()) if day else "*"
    paths = [p for suffix in SEALED_SUFFIXES for p in base.glob(f"{day_glob}/*/*{suffix}")]
    return sorted(paths, key=_shard_sort_key)


def all_sealed_shards(root: str | Path, source: str = "ws") -> list[Path]:
    """Every sealed WS-layout shard (``.jsonl``, ``.jsonl.zst``) of every channel under
    ``<root>/<source>``, oldest hour first.

    Never an ``.jsonl.open`` file nor a compression's temporary file. The collector's S3 uploader
    scans with this at start-up to find shards sealed but not yet uploaded.
    """
    base = Path(root) / check_name("source", source)
    paths = [p for suffix in SEALED_SUFFIXES for p in base.glob(f"*/*/*/*{suffix}") if not p.name.startswith(".")]
    return sorted(paths, key=lambda p: (_shard_sort_key(p), p.parent.parent.parent.name))


def writer_id_of(name: str) -> str:
    """A sealed shard's file name without its suffix (``.jsonl`` or ``.jsonl.zst``)."""
    for suffix in SEALED_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _shard_sort_key(path: Path) -> tuple[str, str, int, str]:
    writer_id = writer_id_of(path.name)
    head = writer_id.split("-", 1)[0]
    return (path.parent.parent.name, path.parent.name, int(head) if head.isdigit() else -1, path.name)


def is_compressed(path: str | Path) -> bool:
    """True for a zstd shard (``.jsonl.zst``)."""
    return str(path).endswith(ZST_SUFFIX)


def _zst_chunks(path: Path) -> Iterator[bytes]:
    """Decompressed bytes of a ``.jsonl.zst`` shard, streamed (bounded memory, no temporary copy).

    A shard that is not one complete zstd stream (torn by a crash outside the sealing protocol,
    garbled, empty) raises ``ValueError`` naming the file: its records cannot be trusted to be all."""
    pa = _pyarrow()
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file, not a zstd stream. A sealed .jsonl.zst is never empty (it is "
                         "written to a temporary name and renamed when complete): the file was truncated outside "
                         "the collector; restore it from S3 or a backup, or move it away to build without it.")
    try:
        with pa.input_stream(str(path), compression="zstd") as fh:
            while True:
                chunk = fh.read(_READ_CHUNK)
                if not chunk:
                    return
                yield chunk
    except OSError as exc:  # pyarrow: "Truncated compressed stream", "ZSTD decompress failed: ..."
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a complete zstd stream ({exc}). The shard is torn or garbled, so some of "
                         "its records are unreadable; restore it from S3 or a backup, or move it away to build "
                         "without it (the repair path refetches what REST can restore).") from exc


def shard_lines(path: str | Path) -> Iterator[bytes]:
    """The lines (each ending in ``\n``) of a sealed shard, ``.jsonl`` or ``.jsonl.zst``, streamed.

    A ``.jsonl.zst`` whose content does not end with ``\n`` raises ``ValueError`` (a sealed shard
    holds complete lines only); the same in a plain ``.jsonl`` is left to the line's decoder."""
    path = Path(path)
    if not is_compressed(path):
        with open(path, "rb") as fh:
            yield from fh
        return
    rest = b""
    for chunk in _zst_chunks(path):
        data = rest + chunk if rest else chunk
        cut = data.rfind(b"\n") + 1
        if cut:
            yield from io.BytesIO(data[:cut])   # splits on "\n" only, in C
        rest = data[cut:]
    if rest:
        raise ValueError(f"{path}: the decompressed shard ends with a partial line ({len(rest)} bytes without a "
                         "newline); a sealed shard holds complete lines only: restore it from S3 or a backup, or "
                         "move it away to build without it.")


def read_records(paths: Iterable[str | Path]) -> Iterator[dict[str, Any]]:
    """Records of sealed shards (``.jsonl`` or ``.jsonl.zst``), in file order (raises ``ValueError``
    naming the file on a bad line or a torn/garbled compressed shard)."""
    for path in paths:
        for number, line in enumerate(shard_lines(path), 1):
            try:
                yield decode_record(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not a record: {exc}") from exc


def compress_sealed(src_fd: int, length: int, final: Path) -> int:
    """Seal the first ``length`` bytes of ``src_fd`` (complete JSONL lines) as ``final`` (``.jsonl.zst``).

    Crash-safe like every seal: the zstd stream goes to ``.<final name>.tmp`` in the same
    directory, is fsynced, renamed to ``final`` and the directory fsynced. The source is read
    with ``pread`` (its offset and lock are untouched) in chunks, so memory stays bounded.
    Returns the compressed size. Raises ``OSError`` (the temporary file is removed then)."""
    pa = _pyarrow()
    tmp = compress_tmp_path(final)
    try:
        with pa.output_stream(str(tmp), compression="zstd") as out:
            done = 0
            while done < length:
                chunk = os.pread(src_fd, min(_READ_CHUNK, length - done), done)
                if not chunk:
                    raise OSError(errno.EIO, f"the source ended after {done} of {length} bytes")
                out.write(chunk)
                done += len(chunk)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if final.exists():  # never clobber a sealed file
            raise FileExistsError(errno.EEXIST, "sealed shard already exists", str(final))
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    return size


def compress_tmp_path(final: Path) -> Path:
    """Where :func:`compress_sealed` writes before the rename (a dot file: no reader lists it)."""
    return final.with_name(f".{final.name}.tmp")


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
