"""Prometheus metrics of the collector (``collector.metrics_host``/``metrics_port``).

The hot path (every frame, every record) only bumps plain Python counters kept by the
objects that own them (:class:`collector.capture.RawCapture`, :class:`collector.writer.ShardWriter`,
:class:`collector.okx_feed.OkxFeed`); this module turns them into metric families when
Prometheus scrapes (a custom collector). A labelled ``prometheus_client.Counter`` costs a few
microseconds per call, which at 20,000 messages/s would be a noticeable share of the budget.
The event loop mutates those counters while the HTTP thread reads them: every read copies a
dict first (``dict(d)`` is atomic under the GIL), so a scrape never sees a half-updated dict.

A private registry per collector instance, so tests can build several in one process; the
HTTP endpoint is started only when ``serve()`` is called with a port > 0.

Every metric is listed in docs/collector.md. Ages are in real (local) seconds.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # pragma: no cover
    from collector.app import CollectorApp
    from collector.s3 import UploadSnapshot

log = logging.getLogger(__name__)

IO_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The collector's registry. ``bind(app)`` connects it to the objects holding the counts."""

    def __init__(self, *, enabled: bool = True) -> None:
        disable_created_metrics()  # no *_created series: they double the output and nobody reads them here
        self.enabled = enabled
        self.registry = CollectorRegistry(auto_describe=False)
        self.io_seconds = Histogram("collector_shard_io_seconds",
                                    "Time to hand buffered lines to the OS (op=flush) or to seal a shard "
                                    "(op=seal: flush, fsync, rename, fsync dir)", ["op"], buckets=IO_BUCKETS,
                                    registry=self.registry)
        self._flush = self.io_seconds.labels("flush")
        self._seal = self.io_seconds.labels("seal")
        self.app: CollectorApp | None = None
        self.started = time.time()
        self.served_on: tuple[str, int] | None = None
        self.registry.register(_StateCollector(self))

    def bind(self, app: CollectorApp) -> None:
        self.app = app

    def observe_io(self, op: str, seconds: float, _nbytes: int) -> None:
        """:class:`collector.writer.ShardWriter` ``on_io`` hook."""
        (self._flush if op == "flush" else self._seal).observe(seconds)

    def serve(self, host: str, port: int) -> bool:
        """Expose ``/metrics``; a port of 0 disables it. Returns whether it is served."""
        if not self.enabled or port <= 0:
            return False
        try:
            start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            log.warning("metrics: cannot listen on %s:%d (%s); continuing without metrics. Free the port or set "
                        "collector.metrics_port (0 disables).", host, port, exc)
            return False
        self.served_on = (host, port)
        log.info("metrics on http://%s:%d/metrics", host, port)
        return True


def _copy(d: Any) -> dict[Any, Any]:
    return dict(d) if d else {}


def _feed_counts(app: Any, name: str) -> dict[Any, int]:
    """A counter dict of the current feed plus those of feeds retired by universe changes."""
    total: dict[Any, int] = dict(_copy(getattr(app, "retired_counters", {}).get(name)))
    for key, n in _copy(getattr(app.feed, name, None) if app.feed is not None else None).items():
        total[key] = total.get(key, 0) + n
    return total


def _upload_snapshot(app: Any) -> UploadSnapshot | None:
    """The S3 uploader's state, or None when ``collector.s3`` is not configured (no s3 metrics then)."""
    uploader = getattr(app, "uploader", None)
    return uploader.snapshot() if uploader is not None else None


def _upload_families(up: UploadSnapshot, now: float) -> Iterator[Any]:
    """``collector_s3_*``: the upload backlog and what happened to it (docs/collector.md)."""
    yield GaugeMetricFamily("collector_s3_backlog_shards",
                            "Sealed shards not yet uploaded to S3 (they wait on the local disk)",
                            value=up.backlog_shards)
    yield GaugeMetricFamily("collector_s3_backlog_bytes", "Bytes of those shards", value=up.backlog_bytes)
    yield GaugeMetricFamily("collector_s3_oldest_backlog_age_seconds",
                            "Seconds the oldest shard of the backlog has waited in this process (0 = none waiting)",
                            value=max(0.0, now - up.oldest_queued_at) if up.oldest_queued_at else 0.0)
    yield GaugeMetricFamily("collector_s3_failing_seconds",
                            "Seconds since S3 uploads started failing (0 while they succeed)",
                            value=max(0.0, now - up.failing_since) if up.failing_since else 0.0)
    yield GaugeMetricFamily("collector_s3_scan_done",
                            "1 once the start-up scan for sealed shards missing from S3 has finished",
                            value=1.0 if up.scanned else 0.0)
    yield CounterMetricFamily("collector_s3_uploads", "Shards uploaded to S3 by this process", value=up.uploaded)
    yield CounterMetricFamily("collector_s3_uploaded_bytes", "Bytes uploaded to S3 by this process",
                              value=up.uploaded_bytes)
    yield CounterMetricFamily("collector_s3_already_present",
                              "Shards found in S3 with the same bytes (recorded, not uploaded again)",
                              value=up.already_present)
    yield CounterMetricFamily("collector_s3_upload_errors", "Failed upload attempts (each one is retried)",
                              value=up.errors)
    yield CounterMetricFamily("collector_s3_conflicts",
                              "Shards whose S3 key holds different bytes (not overwritten; see the log)",
                              value=up.conflicts)
    yield GaugeMetricFamily("collector_s3_last_upload_timestamp_seconds",
                            "When the last shard was uploaded or found in S3 (epoch s; 0 = not yet)",
                            value=up.last_upload_at or 0.0)


class _StateCollector(Collector):
    """Builds the metric families from the app's live objects at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Any]:  # noqa: C901 - a flat list of families
        app = self.m.app
        now = time.time()
        yield GaugeMetricFamily("collector_start_time_seconds", "When this collector process started (epoch s)",
                                value=self.m.started)
        info = {"pid": str(os.getpid())}
        if app is not None:
            info["clock"] = getattr(app.clock, "name", "?")
            info["phase"] = app.phase
            if app.writer is not None:
                info["writer_id"] = app.writer.writer_id
            if app.disk_problem:
                info["disk_problem"] = app.disk_problem[:500]
        uploads = _upload_snapshot(app)
        if uploads is not None:
            info["s3_prefix"] = uploads.url
            if uploads.last_error:
                info["s3_error"] = uploads.last_error[:1000]
        yield InfoMetricFamily("collector", "Collector process facts", value=info)
        if app is None:
            return
        if uploads is not None:
            yield from _upload_families(uploads, now)
        phase = GaugeMetricFamily("collector_phase", "1 for the phase the collector is in", labels=["phase"])
        for name in ("starting", "waiting_for_disk", "running", "stopping"):
            phase.add_metric([name], 1.0 if app.phase == name else 0.0)
        yield phase
        yield GaugeMetricFamily("collector_disk_writable",
                                "0 while the raw directory cannot be written (disk full, permissions)",
                                value=0.0 if app.disk_problem else 1.0)

        # recovery at start-up
        rec = app.recovery
        yield CounterMetricFamily("collector_recovery_shards_sealed",
                                  "Unsealed shards left by a dead collector and sealed at start-up",
                                  value=len(rec.sealed) if rec else 0)
        yield CounterMetricFamily("collector_recovery_partial_lines_cut",
                                  "Partial (or invalid) last lines cut off those shards at start-up",
                                  value=rec.cut_lines if rec else 0)
        yield CounterMetricFamily("collector_recovery_bytes_cut", "Bytes cut off at start-up recovery",
                                  value=rec.cut_bytes if rec else 0)

        # capture: messages, records, rejects
        cap = app.capture
        if cap is not None:
            yield CounterMetricFamily("collector_frames", "WebSocket frames received (all kinds)", value=cap.frames)
            msgs = CounterMetricFamily("collector_messages",
                                       "Data messages (elements of OKX data arrays) received, by channel",
                                       labels=["channel"])
            for channel, n in sorted(_copy(cap.received).items()):
                msgs.add_metric([channel], n)
            yield msgs
            written = CounterMetricFamily("collector_records_written", "Raw records written to shards, by channel",
                                          labels=["channel"])
            for channel, n in sorted(_copy(cap.written).items()):
                written.add_metric([channel], n)
            yield written
            skipped = CounterMetricFamily("collector_records_skipped",
                                          "Data elements deliberately not written (e.g. candles not yet closed)",
                                          labels=["reason"])
            for reason, n in sorted(_copy(cap.skipped).items()):
                skipped.add_metric([reason], n)
            yield skipped
            rejected = CounterMetricFamily("collector_frames_rejected",
                                           "Frames or elements not recorded as data (events, exchange errors, "
                                           "malformed JSON, bad elements), by reason", labels=["reason"])
            for reason, n in sorted(_copy(cap.rejected).items()):
                rejected.add_metric([reason], n)
            yield rejected
            errors = CounterMetricFamily("collector_exchange_errors", "Error events sent by the exchange, by code",
                                         labels=["code"])
            for code, n in sorted(_copy(cap.error_codes).items()):
                errors.add_metric([code], n)
            yield errors
            refused = GaugeMetricFamily("collector_subscription_refused",
                                        "1 for each (channel, instrument) the exchange refused to subscribe "
                                        "(e.g. 60018: the instrument is unknown to it); dropped from the "
                                        "subscriptions until a restart or a universe change",
                                        labels=["channel", "inst", "code"])
            feed_refused = _copy(getattr(app.feed, "refused", None)) if app.feed is not None else {}
            for (channel, inst), code in sorted({**feed_refused, **_copy(cap.refused)}.items()):
                refused.add_metric([channel, inst, code], 1.0)
            yield refused
            last = _copy(cap.last_seen)
            since = _copy(cap.expected)
            age = GaugeMetricFamily("collector_last_message_age_seconds",
                                    "Seconds since the last data message of each subscribed (channel, instrument); "
                                    "since the subscription when none has arrived yet", labels=["channel", "inst"])
            seen = GaugeMetricFamily("collector_last_message_timestamp_seconds",
                                     "Local receipt time of the last data message (epoch s), by channel and "
                                     "instrument", labels=["channel", "inst"])
            for key in sorted(since):
                age.add_metric(list(key), max(0.0, now - last.get(key, since[key])))
            for key in sorted(last):
                seen.add_metric(list(key), last[key])
            yield age
            yield seen

        # feed: connections, reconnects
        conns = GaugeMetricFamily("collector_ws_connected", "1 while the WebSocket connection is open",
                                  labels=["endpoint"])
        connects = CounterMetricFamily("collector_ws_connects",
                                       "WebSocket connections opened and subscribed (first connects included)",
                                       labels=["endpoint"])
        reconnects = CounterMetricFamily("collector_reconnects",
                                         "WebSocket reconnections (connects after the first one of a connection)",
                                         labels=["endpoint"])
        feed = app.feed
        if feed is not None:
            for endpoint, is_open in sorted(feed.connection_states().items()):
                conns.add_metric([endpoint], 1.0 if is_open else 0.0)
        total_connects = dict(app.retired_connects)
        total_reconnects = dict(app.retired_reconnects)
        if feed is not None:
            for endpoint, n in _copy(feed.connects).items():
                total_connects[endpoint] = total_connects.get(endpoint, 0) + n
            for endpoint, n in _copy(feed.reconnects).items():
                total_reconnects[endpoint] = total_reconnects.get(endpoint, 0) + n
        for endpoint, n in sorted(total_connects.items()):
            connects.add_metric([endpoint], n)
        for endpoint, n in sorted(total_reconnects.items()):
            reconnects.add_metric([endpoint], n)
        yield conns
        yield connects
        yield reconnects
        notices = CounterMetricFamily("collector_ws_upgrade_notices",
                                      "Service-upgrade notices (OKX 64008: the connection will be closed soon)",
                                      labels=["endpoint"])
        for endpoint, n in sorted(_feed_counts(app, "upgrade_notices").items()):
            notices.add_metric([endpoint], n)
        yield notices
        handovers = CounterMetricFamily("collector_ws_handovers",
                                        "Connections replaced after a 64008 notice: result=replaced (the "
                                        "replacement subscribed before the old one closed) or failed (reconnected "
                                        "after the close instead)", labels=["endpoint", "result"])
        for (endpoint, result), n in sorted(_feed_counts(app, "handovers").items()):
            handovers.add_metric([endpoint, result], n)
        yield handovers
        resubs = CounterMetricFamily("collector_refused_resubscribes",
                                     "Subscribe requests sent again without an instrument the exchange refused "
                                     "(OKX refuses the whole request)", labels=["endpoint"])
        for endpoint, n in sorted(_feed_counts(app, "refused_resubscribes").items()):
            resubs.add_metric([endpoint], n)
        yield resubs
        yield GaugeMetricFamily("collector_subscribed_instruments", "Instruments subscribed",
                                value=len(app.selection.instruments) if app.selection else 0)
        yield CounterMetricFamily("collector_universe_switches", "Universe changes applied while running",
                                  value=app.universe_switches)

        # shard writer
        w = app.writer
        st = w.stats if w is not None else None
        yield CounterMetricFamily("collector_bytes_written", "Bytes of records handed to the shard writer",
                                  value=st.bytes if st else 0)
        yield CounterMetricFamily("collector_shards_sealed", "Hourly shards sealed by this process",
                                  value=st.shards_sealed if st else 0)
        yield CounterMetricFamily("collector_sealed_bytes", "Bytes in the shards sealed by this process",
                                  value=st.bytes_sealed if st else 0)
        yield CounterMetricFamily("collector_shards_compressed",
                                  "Shards sealed as .jsonl.zst (collector.compress_channels) by this process",
                                  value=st.shards_compressed if st else 0)
        yield CounterMetricFamily("collector_compressed_input_bytes", "JSONL bytes of those shards",
                                  value=st.bytes_compressed_in if st else 0)
        yield CounterMetricFamily("collector_compressed_output_bytes", "Their size on disk (zstd)",
                                  value=st.bytes_compressed_out if st else 0)
        if cap is not None:
            yield GaugeMetricFamily("collector_books_held",
                                    "books5: books held as the last book of their second, not written yet "
                                    "(at most one per instrument)", value=cap.sampler.held)
        yield GaugeMetricFamily("collector_open_shards", "Shards being written (.jsonl.open)",
                                value=len(w.open_paths) if w is not None else 0)
        yield CounterMetricFamily("collector_write_errors",
                                  "Shard write failures (disk full, permissions); the collector exits with code 3",
                                  value=st.write_errors if st else 0)
        yield CounterMetricFamily("collector_records_lost_on_write_error",
                                  "Buffered records the disk refused (restored by the workflow's repair path)",
                                  value=st.lost_records if st else 0)
