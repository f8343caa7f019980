"""Raw capture: WebSocket frame text → records → shard writer, with counts for everything.

Called synchronously for every frame by :class:`collector.okx_feed.OkxFeed`. Rules:

* data frames become records (:mod:`feeder.records`), one per ``data`` element, written in
  arrival order; candle records are kept only when closed (``confirm == "1"``), because OKX
  pushes the running candle several times a second and only the closed one is a bar;
* subscribe acks, pongs, errors, notices and malformed frames are counted by reason and
  logged with the connection and the frame, never written as data, never raised;
* a shard write failure (disk full, permissions) is fatal: it is reported once through
  ``on_fatal`` (the app stops and exits non-zero) instead of being raised into cryptofeed,
  which would treat it as a connection problem and reconnect forever while losing data.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection

from feeder.records import (
    R_ERROR,
    R_EVENT,
    R_NOTICE,
    Reject,
    candle_confirmed,
    records_from_text,
)
from feeder.shards import ShardWriteError, ShardWriter

from collector.clock import ReceiptClock
from collector.metrics import Metrics

log = logging.getLogger(__name__)

SKIP_CANDLE_OPEN = "candle_not_confirmed"
_LOUD_FIRST = 20       # log the first N rejects of a reason, then every EVERY-th
_LOUD_EVERY = 1000


class RawCapture:
    """The frame sink. Not thread-safe (runs on the event loop)."""

    def __init__(
        self,
        writer: ShardWriter,
        *,
        clock: ReceiptClock,
        channels: Collection[str],
        metrics: Metrics | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.writer = writer
        self.clock = clock
        self.channels = frozenset(channels)
        self.metrics = metrics or Metrics(enabled=False)
        self.on_fatal = on_fatal
        self.frames = 0
        self.pongs = 0
        self.written: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.error_codes: Counter[str] = Counter()
        self.failed: BaseException | None = None
        self.closed = False

    def __call__(self, msg: str | bytes, conn_id: str, address: str, local_ts: float) -> None:
        if self.closed or self.failed is not None:
            return
        self.frames += 1
        self.metrics.frames.inc()
        if msg == "pong" or msg == b"pong":
            self.pongs += 1
            return
        recv_ts = int(self.clock.at(local_ts) * 1000)
        try:
            result = records_from_text(msg, recv_ts=recv_ts, channels=self.channels)
            for reject in result.rejects:
                self._reject(reject, conn_id, address, msg)
            for record in result.records:
                channel = record["channel"]
                if channel == "candle1m" and not candle_confirmed(record):
                    self.skipped[SKIP_CANDLE_OPEN] += 1
                    self.metrics.skipped.labels(SKIP_CANDLE_OPEN).inc()
                    continue
                self.writer.write(record)
                self.written[channel] += 1
                self.metrics.records.labels(channel).inc()
                self.metrics.last_recv.labels(channel).set(recv_ts / 1000)
        except ShardWriteError as exc:
            self._fatal(exc)
        except Exception as exc:  # a bug here must not kill the connection: count and log it
            self.rejected["internal_error"] += 1
            self.metrics.rejects.labels("internal_error").inc()
            log.exception("%s: failed to capture a frame (%s); frame: %.300s", conn_id, exc, msg)

    def tick(self) -> None:
        """Periodic flush/seal (from the app's loop); failures are fatal like write failures."""
        if self.closed or self.failed is not None:
            return
        try:
            for path in self.writer.tick():
                log.info("sealed %s", path)
                self.metrics.sealed.inc()
        except ShardWriteError as exc:
            self._fatal(exc)

    def _fatal(self, exc: BaseException) -> None:
        if self.failed is None:
            self.failed = exc
            log.critical("%s", exc)
            if self.on_fatal is not None:
                self.on_fatal(exc)

    def _reject(self, reject: Reject, conn_id: str, address: str, msg: str | bytes) -> None:
        reason = reject.reason
        self.rejected[reason] += 1
        self.metrics.rejects.labels(reason).inc()
        n = self.rejected[reason]
        if reason == R_EVENT:
            log.debug("%s %s: %s", conn_id, address, reject.detail)
        elif reason == R_ERROR:
            code = reject.detail.split("code=", 1)[1].split(" ", 1)[0] if "code=" in reject.detail else "?"
            self.error_codes[code] += 1
            log.error("%s %s: exchange error: %s", conn_id, address, reject.detail)
        elif reason == R_NOTICE:
            log.warning("%s %s: exchange notice: %s", conn_id, address, reject.detail)
        elif n <= _LOUD_FIRST or n % _LOUD_EVERY == 0:
            text = msg if isinstance(msg, str) else msg.decode("utf-8", "replace")
            log.warning("%s %s: not recorded (%s, #%d of this kind%s): %s; frame: %.300s", conn_id, address, reason,
                        n, "" if n < _LOUD_FIRST else f", logging every {_LOUD_EVERY}th from now",
                        reject.detail.split(": '", 1)[0] if reason == "not_json" else reject.detail, text)

    def summary(self) -> str:
        return (f"{self.frames} frames, written {dict(self.written)}, skipped {dict(self.skipped)}, "
                f"rejected {dict(self.rejected)}, pongs {self.pongs}"
                + (f", exchange errors by code {dict(self.error_codes)}" if self.error_codes else ""))
