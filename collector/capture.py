"""Raw capture: WebSocket frame text → records → shard writer, with counts for everything.

Called synchronously for every frame by :class:`collector.okx_feed.OkxFeed`. Rules:

* data frames become records (:mod:`feeder.records`), one per ``data`` element, written in
  arrival order; candle records are kept only when closed (``confirm == "1"``), because OKX
  pushes the running candle several times a second and only the closed one is a bar
  (``candle_updates=True`` keeps every push: benchmarks and studies of the forming bar; the
  workflow rejects unconfirmed rows as ``unconfirmed`` anyway);
* ``books5`` records go through :class:`collector.sampler.BookSampler` (the last book of each
  exchange-clock second per instrument; the others are counted in ``skipped`` as
  ``books5_sampled``/``books5_stale``); held books are written when their receipt hour ends (before
  its shard is sealed) and by :meth:`RawCapture.finish` at shutdown;
* subscribe acks, pongs, errors, notices and malformed frames are counted by reason and
  logged with the connection and the frame, never written as data, never raised; an error
  that names an instrument (60018 "instId ... doesn't exist": the exchange no longer knows it)
  marks that subscription as refused, so the operator sees which member is not recorded (the
  feed drops it and resubscribes the rest of its request: ``collector.okx_feed``);
* a shard write failure (disk full, permissions) is fatal: it is reported once through
  ``on_fatal`` (the app stops and exits non-zero) instead of being raised into cryptofeed,
  which would treat it as a connection problem and reconnect forever while losing data.

Counters are plain ints/dicts (read by :mod:`collector.metrics` at scrape time); the local
receipt time of the last message per (channel, instrument) feeds the health check.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from feeder.records import (
    CANDLE_CONFIRM_INDEX,
    R_ERROR,
    R_EVENT,
    R_NOTICE,
    Reject,
    records_from_text,
)
from feeder.shards import HOUR_MS, ShardWriteError

from collector.clock import ReceiptClock
from collector.sampler import SKIP_SAMPLED, SKIP_STALE, BookSampler
from collector.writer import ShardWriter

log = logging.getLogger(__name__)

SKIP_CANDLE_OPEN = "candle_not_confirmed"
BOOKS = "books5"
_LOUD_FIRST = 20       # log the first N rejects of a reason, then every EVERY-th
_LOUD_EVERY = 1000
#: OKX: "Wrong URL or channel:candle1m,instId:XYZ-USDT-SWAP doesn't exist. ..."
_REFUSED = re.compile(r"channel\s*:\s*([A-Za-z0-9_-]+)\s*,\s*instId\s*:\s*([A-Za-z0-9_-]+)")


def refused_pair(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """(channel, instId) an OKX error event says the exchange refused, else None.

    OKX names them in ``msg`` ("Wrong URL or channel:candle1m, instId:XYZ-USDT-SWAP doesn't
    exist. ..."); an ``arg`` object, when an error carries one, names them directly."""
    arg = event.get("arg")
    if isinstance(arg, Mapping) and arg.get("channel") and arg.get("instId"):
        return str(arg["channel"]), str(arg["instId"])
    m = _REFUSED.search(str(event.get("msg", "")))
    return (m.group(1), m.group(2)) if m else None


class RawCapture:
    """The frame sink. Not thread-safe (runs on the event loop)."""

    def __init__(
        self,
        writer: ShardWriter,
        *,
        clock: ReceiptClock,
        channels: Collection[str],
        on_fatal: Callable[[BaseException], None] | None = None,
        candle_updates: bool = False,
    ) -> None:
        self.writer = writer
        self.clock = clock
        self.channels = frozenset(channels)
        self.on_fatal = on_fatal
        self.candle_updates = candle_updates
        self.frames = 0
        self.pongs = 0
        self.received: Counter[str] = Counter()     # data elements by channel (written or skipped)
        self.written: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.error_codes: Counter[str] = Counter()
        self.last_seen: dict[tuple[str, str], float] = {}   # (channel, inst) -> local receipt time
        self.expected: dict[tuple[str, str], float] = {}    # subscribed (channel, inst) -> since (local)
        self.refused: dict[tuple[str, str], str] = {}       # (channel, inst) -> exchange error code
        self.failed: BaseException | None = None
        self.closed = False
        self.sampler = BookSampler()
        self._hour = -1   # receipt hour of the last record: books held from earlier hours are written

    def expect(self, pairs: Iterable[tuple[str, str]]) -> None:
        """The (channel, instId) pairs now subscribed (after start-up or a universe change):
        the health check expects data for each of them from now on."""
        now = time.time()
        new = {pair: self.expected.get(pair, now) for pair in pairs}
        self.expected = new
        self.refused = {k: v for k, v in self.refused.items() if k in new}

    def __call__(self, msg: str | bytes, conn_id: str, address: str, local_ts: float) -> None:
        if self.closed or self.failed is not None:
            return
        self.frames += 1
        if msg == "pong" or msg == b"pong":
            self.pongs += 1
            return
        recv_ts = int(self.clock.at(local_ts) * 1000)
        try:
            result = records_from_text(msg, recv_ts=recv_ts, channels=self.channels)
            if result.rejects:
                for reject in result.rejects:
                    self._reject(reject, conn_id, address, msg)
            write = self.writer.write
            if recv_ts // HOUR_MS != self._hour:
                self._hour = recv_ts // HOUR_MS
                self._release(self._hour * HOUR_MS)
            for record in result.records:
                channel = record["channel"]
                self.received[channel] += 1
                self.last_seen[(channel, record["inst"])] = local_ts
                if channel == "candle1m" and not self.candle_updates:
                    data = record["data"]
                    if len(data) <= CANDLE_CONFIRM_INDEX or data[CANDLE_CONFIRM_INDEX] != "1":
                        self.skipped[SKIP_CANDLE_OPEN] += 1
                        continue
                elif channel == BOOKS:
                    self._offer_book(record)
                    continue
                write(record)
                self.written[channel] += 1
        except ShardWriteError as exc:
            self._fatal(exc)
        except Exception as exc:  # a bug here must not kill the connection: count and log it
            self.rejected["internal_error"] += 1
            log.exception("%s: failed to capture a frame (%s); frame: %.300s", conn_id, exc, msg)

    def _offer_book(self, record: dict) -> None:
        sampler = self.sampler
        sampled, stale = sampler.sampled, sampler.stale
        for out in sampler.offer(record):
            self.writer.write(out)
            self.written[BOOKS] += 1
        if sampler.sampled != sampled:
            self.skipped[SKIP_SAMPLED] += 1
        elif sampler.stale != stale:
            self.skipped[SKIP_STALE] += 1

    def _release(self, before_ms: int) -> None:
        """Write the books held from receipt times before ``before_ms`` (their hour is over)."""
        for out in self.sampler.release_before(before_ms):
            self.writer.write(out)
            self.written[BOOKS] += 1

    def finish(self) -> None:
        """Write every held book (shutdown, before the writer seals); then no more frames are taken."""
        if self.failed is None and not self.closed:
            try:
                for out in self.sampler.drain():
                    self.writer.write(out)
                    self.written[BOOKS] += 1
            except ShardWriteError as exc:
                self._fatal(exc)
        self.closed = True

    def tick(self) -> list:
        """Periodic flush/seal (from the app's loop); failures are fatal like write failures."""
        if self.closed or self.failed is not None:
            return []
        try:
            now_hour = int(self.clock.now() * 1000) // HOUR_MS
            if now_hour != self._hour and self.sampler.held:
                self._release(now_hour * HOUR_MS)  # quiet books: their hour is over, write before sealing
            sealed = self.writer.tick()
        except ShardWriteError as exc:
            self._fatal(exc)
            return []
        for path in sealed:
            log.info("sealed %s", path)
        return sealed

    def _fatal(self, exc: BaseException) -> None:
        if self.failed is None:
            self.failed = exc
            log.critical("%s", exc)
            if self.on_fatal is not None:
                self.on_fatal(exc)

    def _reject(self, reject: Reject, conn_id: str, address: str, msg: str | bytes) -> None:
        reason = reject.reason
        self.rejected[reason] += 1
        n = self.rejected[reason]
        if reason == R_EVENT:
            if reject.channel and reject.inst and reject.detail.startswith("event=subscribe"):
                self.refused.pop((reject.channel, reject.inst), None)
            log.debug("%s %s: %s", conn_id, address, reject.detail)
        elif reason == R_ERROR:
            code = reject.detail.split("code=", 1)[1].split(" ", 1)[0] if "code=" in reject.detail else "?"
            self.error_codes[code] += 1
            pair = (reject.channel, reject.inst) if reject.channel and reject.inst else None
            if pair is None:
                m = _REFUSED.search(reject.detail)
                pair = (m.group(1), m.group(2)) if m else None
            if pair is not None:
                # the feed (collector.okx_feed) logs the refusal at WARNING and drops the instrument
                self.refused[pair] = code
                log.debug("%s %s: the exchange refused %s %s (code %s): %s", conn_id, address, pair[0], pair[1],
                          code, reject.detail)
            else:
                log.error("%s %s: exchange error: %s", conn_id, address, reject.detail)
        elif reason == R_NOTICE:
            # 64008 (closing soon for an upgrade) is acted on and logged by the feed
            level = logging.INFO if "code=64008" in reject.detail else logging.WARNING
            log.log(level, "%s %s: exchange notice: %s", conn_id, address, reject.detail)
        elif n <= _LOUD_FIRST or n % _LOUD_EVERY == 0:
            text = msg if isinstance(msg, str) else msg.decode("utf-8", "replace")
            log.warning("%s %s: not recorded (%s, #%d of this kind%s): %s; frame: %.300s", conn_id, address, reason,
                        n, "" if n < _LOUD_FIRST else f", logging every {_LOUD_EVERY}th from now",
                        reject.detail.split(": '", 1)[0] if reason == "not_json" else reject.detail, text)

    def summary(self) -> str:
        return (f"{self.frames} frames, written {dict(self.written)}, skipped {dict(self.skipped)}, "
                f"rejected {dict(self.rejected)}, pongs {self.pongs}"
                + (f", exchange errors by code {dict(self.error_codes)}" if self.error_codes else "")
                + (f", refused subscriptions {sorted(self.refused)}" if self.refused else ""))
