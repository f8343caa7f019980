"""Receipt clocks: the time base of ``recv_ts`` and of shard hours.

Against the real OKX the receipt clock is the local clock (NTP-synced): :class:`LocalClock`.

Against the simulator, "now" is the simulator's clock, which may start in the past and run
faster than real time (``--clock-start 2024-03-04T22:00:00Z --speed 300``). Stamping records
with the local clock would file 2024 candles under today's receipt hours, where cleaning
never looks. :class:`ExchangeClock` follows the exchange's ``GET /api/v5/public/time``
instead: it measures the offset and the rate (simulated ms per real ms) and maps every local
receipt time onto the exchange's timeline. A rate within 2 % of 1 is taken as exactly 1 (a real
exchange; the difference is network jitter).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)


class ReceiptClock(Protocol):
    def now(self) -> float:
        """Current time on the receipt timeline, epoch seconds."""

    def at(self, local_epoch_s: float) -> float:
        """The receipt-timeline time of a local ``time.time()`` stamp."""


class LocalClock:
    """``time.time()``: the right clock for the real exchange."""

    name = "local"

    def now(self) -> float:
        return time.time()

    def at(self, local_epoch_s: float) -> float:
        return local_epoch_s


class ExchangeClock:
    """The exchange's clock, extrapolated from ``/public/time`` samples (offset + rate).

    Each sample is taken at the midpoint of its request, so its error is at most half the
    round trip. The measured rate is taken as exactly 1 (a real exchange) when it is within
    that error of 1. Never goes backwards: a resync that would step back is absorbed by
    holding the clock until it catches up.
    """

    name = "exchange"

    def __init__(self, fetch_server_ms: Callable[[], int], *, calibrate_s: float = 1.0,
                 local: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self._fetch = fetch_server_ms
        self._local = local
        self._sleep = sleep
        self._calibrate_s = calibrate_s
        self._lock = threading.Lock()
        self._first: tuple[float, int, float] | None = None
        now = local()
        self._anchor: tuple[float, float] = (now, now * 1000)  # (local s, exchange ms)
        self.rate = 1.0
        self.offset_s = 0.0  # exchange minus local at calibration, seconds
        self._last_ms = 0.0

    def _sample(self) -> tuple[float, int, float]:
        """(local midpoint s, exchange ms, round trip s)."""
        t0 = self._local()
        server = int(self._fetch())
        t1 = self._local()
        return (t0 + t1) / 2, server, t1 - t0

    def calibrate(self) -> None:
        """Two samples ``calibrate_s`` apart → rate and offset (blocking; call at start-up)."""
        first = self._sample()
        self._sleep(self._calibrate_s)
        second = self._sample()
        with self._lock:
            self._first = first
            self.rate = self._rate(first, second)
            self._anchor = (second[0], float(second[1]))
            self.offset_s = second[1] / 1000 - second[0]

    def describe(self) -> str:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._anchor[1] / 1000))
        return f"exchange clock {at}, {self.offset_s:+.1f}s from local, running at {self.rate:.2f}x real time"

    def resync(self) -> None:
        """One more sample: refine the rate over the whole baseline and re-anchor (blocking)."""
        sample = self._sample()
        with self._lock:
            if self._first is not None and sample[0] - self._first[0] > 0:
                self.rate = self._rate(self._first, sample)
            self._anchor = (sample[0], float(sample[1]))

    @staticmethod
    def _rate(a: tuple[float, int, float], b: tuple[float, int, float]) -> float:
        real_ms = (b[0] - a[0]) * 1000
        if real_ms <= 0:
            return 1.0
        rate = (b[1] - a[1]) / real_ms
        # each midpoint is off by at most half its round trip (+1 ms of exchange-side rounding)
        error = ((a[2] + b[2]) / 2 * 1000 + 1.0) / real_ms
        return 1.0 if abs(rate - 1.0) <= error else max(rate, 0.0)

    def at(self, local_epoch_s: float) -> float:
        with self._lock:
            local0, server0 = self._anchor
            ms = server0 + (local_epoch_s - local0) * 1000 * self.rate
            ms = max(ms, self._last_ms)
            self._last_ms = ms
        return ms / 1000

    def now(self) -> float:
        return self.at(self._local())


def choose_clock(mode: str, fetch_server_ms: Callable[[], int], *, max_offset_s: float = 5.0,
                 **clock_kwargs: Any) -> ReceiptClock:
    """``local``, ``exchange``, or ``auto``: the exchange clock when it differs from the local one
    (a simulator in the past or faster than real time, or a badly set local clock), else local.

    ``auto`` falls back to the local clock (with a warning) if ``/public/time`` cannot be read.
    """
    if mode == "local":
        return LocalClock()
    clock = ExchangeClock(fetch_server_ms, **clock_kwargs)
    try:
        clock.calibrate()
    except Exception as exc:
        if mode == "exchange":
            raise
        log.warning("cannot read the exchange's time (%s); stamping recv_ts with the local clock", exc)
        return LocalClock()
    if mode == "auto" and clock.rate == 1.0 and abs(clock.offset_s) <= max_offset_s:
        log.info("receipt clock: local (%s)", clock.describe())
        return LocalClock()
    log.info("receipt clock: %s", clock.describe())
    return clock
