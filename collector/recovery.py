"""Start-up recovery: seal the ``.jsonl.open`` shards a dead collector left behind.

A writer (:mod:`collector.writer`) holds an flock on every file it writes, so a file nobody
holds belongs to a dead process. Its complete lines are kept and sealed (``.jsonl``, the layout
of :mod:`feeder.shards`); a partial or invalid last line is cut and counted. The collector runs
:func:`recover` before it writes anything, so the raw layer is consistent whatever happened last
time.

Shards of a compressed channel (``compress_channels``, config ``collector.compress_channels``) are
sealed as ``.jsonl.zst`` (:func:`feeder.shards.compress_sealed`). A writer killed while compressing
leaves the complete ``.open`` file and maybe a temporary ``.<name>.jsonl.zst.tmp`` (removed here,
then the ``.open`` file is compressed again); killed after the rename but before removing the
``.open`` file, it leaves both: the ``.jsonl.zst`` is checked to hold exactly the ``.open`` file's
lines, then the ``.open`` file is removed (anything else is a conflict, both left as they are).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from feeder.records import decode_record
from feeder.shards import (OPEN_SUFFIX, SEALED_SUFFIX, ZST_SUFFIX, compress_sealed, compress_tmp_path, fsync_dir,
                           shard_lines)

log = logging.getLogger(__name__)


@dataclass
class RecoveredShard:
    """One ``.jsonl.open`` file sealed by :func:`recover`."""

    path: Path            # the sealed ``.jsonl``/``.jsonl.zst`` path (or the removed ``.open`` path if empty)
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


def _same_lines(fd: int, length: int, sealed: Path) -> bool:
    """Does the compressed ``sealed`` hold exactly the first ``length`` bytes of ``fd``?"""
    want, got, n = hashlib.sha256(), hashlib.sha256(), 0
    done = 0
    while done < length:
        chunk = os.pread(fd, min(1 << 20, length - done), done)
        if not chunk:
            return False
        want.update(chunk)
        done += len(chunk)
    try:
        for line in shard_lines(sealed):
            got.update(line)
            n += len(line)
    except ValueError:
        return False
    return n == length and want.digest() == got.digest()


def _recover_one(path: Path, report: RecoveryReport, compress: bool) -> None:
    stem = path.name[: -len(OPEN_SUFFIX)]
    final = path.with_name(stem + (ZST_SUFFIX if compress else SEALED_SUFFIX))
    other = path.with_name(stem + (SEALED_SUFFIX if compress else ZST_SUFFIX))
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report.in_use.append(path)
            return
        if other.exists():
            report.conflicts.append(path)
            log.error("cannot seal %s: %s already exists. Both files are left as they are; inspect them "
                      "(the sealed one is never modified) and move the .open file away.", path, other.name)
            return
        size = os.fstat(fd).st_size
        if compress and final.exists():
            # killed between the rename of the compressed shard and the removal of the .open file
            if _same_lines(fd, size, final):
                os.unlink(path)
                fsync_dir(path.parent)
                report.sealed.append(RecoveredShard(final, size, 0, 0))
                log.info("recovery: %s was already sealed as %s (same lines); removed the .open file", path,
                         final.name)
                return
            report.conflicts.append(path)
            log.error("cannot seal %s: %s already exists and does not hold the same lines. Both files are left "
                      "as they are; inspect them (the sealed one is never modified) and move the .open file "
                      "away.", path, final.name)
            return
        if final.exists():
            report.conflicts.append(path)
            log.error("cannot seal %s: %s already exists. Both files are left as they are; inspect them "
                      "(the sealed one is never modified) and move the .open file away.", path, final.name)
            return
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
            fsync_dir(path.parent)
            report.removed_empty.append(path)
            if cut_lines:
                report.sealed.append(RecoveredShard(path, 0, cut_lines, size))
            return
        if compress:
            tmp = compress_tmp_path(final)
            if tmp.exists():                  # a compression the dead writer did not finish
                tmp.unlink()
            compress_sealed(fd, keep, final)
            os.unlink(path)
            fsync_dir(path.parent)
        else:
            os.replace(path, final)
            fsync_dir(final.parent)
        report.sealed.append(RecoveredShard(final, keep, cut_lines, size - keep))
    finally:
        os.close(fd)


def recover(root: str | Path, *, compress_channels: Collection[str] = ()) -> RecoveryReport:
    """Seal every ``.jsonl.open`` under ``root`` left by a dead writer.

    Shards of ``compress_channels`` (the channel is the path's ``<channel>`` component) are
    sealed as ``.jsonl.zst``, the others as ``.jsonl``, as the writer would have sealed them.

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
    compress = frozenset(compress_channels)
    for path in sorted(root.rglob(f"*{OPEN_SUFFIX}")):
        try:
            _recover_one(path, report, path.parent.parent.parent.name in compress)
        except OSError as exc:
            report.errors.append((path, str(exc)))
            log.error("could not recover %s: %s. Fix the cause (disk full? permissions?) and restart; "
                      "the file is left as it was.", path, exc)
    return report
