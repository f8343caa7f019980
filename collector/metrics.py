"""Prometheus metrics of the collector (``collector.metrics_host``/``metrics_port``).

A private registry per collector instance, so tests can build several in one process; the
HTTP endpoint is started only when ``serve()`` is called with a port > 0.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

log = logging.getLogger(__name__)


class Metrics:
    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.frames = Counter("collector_frames", "WebSocket frames received", registry=r)
        self.records = Counter("collector_records_written", "Raw records written to shards", ["channel"], registry=r)
        self.skipped = Counter("collector_records_skipped", "Data elements deliberately not written", ["reason"],
                               registry=r)
        self.rejects = Counter("collector_frames_rejected",
                               "Frames/elements not recorded as data (events, errors, malformed)", ["reason"],
                               registry=r)
        self.sealed = Counter("collector_shards_sealed", "Hourly shards sealed", registry=r)
        self.last_recv = Gauge("collector_last_record_recv_timestamp_seconds",
                               "Receipt time of the newest record written", ["channel"], registry=r)
        self.instruments = Gauge("collector_subscribed_instruments", "Instruments subscribed", registry=r)
        self.up_since = Gauge("collector_start_time_seconds", "When the collector started", registry=r)

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
        log.info("metrics on http://%s:%d/metrics", host, port)
        return True
