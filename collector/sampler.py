"""The ``books5`` sampler: per instrument, the last book of each exchange-clock second.

OKX pushes a 5-level book snapshot every 100 ms when the book changed. Kept verbatim, 50
instruments would be about 15 GB of JSON a day; the features built from books (spread, depth,
imbalance: docs/fields.md) are per-second values, so the collector keeps per instrument and
exchange-clock second only the book the features use: the one with the greatest (``ts``,
``seqId``) among the books with the same ``ts // 1000`` (hftbacktest and Tardis sample books the
same way). That makes this channel **sampled, not lossless** (docs/collector.md).

The sample depends only on the books received, never on a timer: a second's book is written when a
book of a later second arrives. Two exceptions only move *when* it is written, not *which* book:
the receipt hour of the held book ends (:meth:`BookSampler.release_before`, so it lands in its own
hour's shard before that shard is sealed) and the collector stops (:meth:`BookSampler.drain`). If
a later book of that same second still arrives after such an early write, it is written too (the
pipeline keeps the greatest (``ts``, ``seqId``) of each second).

Pure and small: records in, records to write out, counters; no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Record = dict[str, Any]
Key = tuple[int, int]   # (ts ms, seqId)

#: Reasons a book is not written (``RawCapture.skipped`` → ``collector_records_skipped{reason}``).
SKIP_SAMPLED = "books5_sampled"   # a later book of the same second replaced it
SKIP_STALE = "books5_stale"       # not newer than a book already taken (duplicate, out of order)


def book_key(record: Mapping[str, Any]) -> Key:
    """(``ts``, ``seqId``) of a book record; a missing or non-integer ``seqId`` counts as -1."""
    data = record.get("data")
    seq = data.get("seqId") if isinstance(data, Mapping) else None
    return int(record["ts"]), seq if type(seq) is int else -1


class _Held:
    __slots__ = ("record", "key", "taken")

    def __init__(self) -> None:
        self.record: Record | None = None   # the book held for its second (not written yet)
        self.key: Key = (-1, -1)             # its key
        self.taken: Key = (-1, -1)           # key of the last book written


class BookSampler:
    """Keeps per instrument the last book of the current exchange-clock second.

    :meth:`offer` takes each book record in arrival order and returns the records to write now
    (the held book of an earlier second, at most one). Counters: ``sampled`` (books replaced by a
    later book of their second), ``stale`` (books not newer than one already held or written).
    """

    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}
        self.sampled = 0
        self.stale = 0

    def offer(self, record: Record) -> list[Record]:
        """A book record (ARCHITECTURE.md format, ``ts`` = the book's ``ts``) → records to write now."""
        key = book_key(record)
        held = self._held.get(record["inst"])
        if held is None:
            held = self._held[record["inst"]] = _Held()
        if held.record is None:
            if key <= held.taken:
                self.stale += 1
                return []
            held.record, held.key = record, key
            return []
        if key[0] // 1000 == held.key[0] // 1000:   # the same second: keep the greatest (ts, seqId)
            if key > held.key:
                held.record, held.key = record, key
                self.sampled += 1
            else:
                self.stale += 1
            return []
        if key < held.key:                           # an earlier second than the held book: too late
            self.stale += 1
            return []
        out = held.record
        held.taken = held.key
        held.record, held.key = record, key
        return [out]

    def release_before(self, recv_ts: int) -> list[Record]:
        """Held books received before ``recv_ts`` (ms): written now, so they land in the shard of
        their receipt hour before it is sealed (the collector calls this when the hour changes)."""
        out = []
        for held in self._held.values():
            record = held.record
            if record is not None and record["recv_ts"] < recv_ts:
                out.append(record)
                held.taken = held.key
                held.record = None
        return out

    def drain(self) -> list[Record]:
        """Every held book (shutdown: write them before the shards are sealed)."""
        return self.release_before(1 << 62)

    @property
    def held(self) -> int:
        """Books held, not written yet (one per instrument at most)."""
        return sum(1 for h in list(self._held.values()) if h.record is not None)
