"""Simulator plumbing shared by REST and WebSocket: clock, request log, rate limits, faults.

All of these are touched both by the server's event loop and by test code in another
thread, so each guards its state with a lock.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any


class SimClock:
    """``sim_now = clock_start + (real time since start) x speed`` (epoch ms)."""

    def __init__(self, start_ms: int, speed: float) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.start_ms = int(start_ms)
        self.speed = float(speed)
        self._mono0: float | None = None

    def start(self) -> None:
        """Pin real time zero (called once the server is listening)."""
        self._mono0 = time.monotonic()

    def now_ms(self, mono: float | None = None) -> int:
        if self._mono0 is None:
            return self.start_ms
        m = time.monotonic() if mono is None else mono
        return self.start_ms + int((m - self._mono0) * self.speed * 1000.0)

    def mono_at(self, sim_ms: int) -> float:
        """Real monotonic time at which the clock reads ``sim_ms`` (inf if frozen)."""
        if self._mono0 is None or self.speed == 0:
            return float("inf")
        return self._mono0 + (sim_ms - self.start_ms) / (self.speed * 1000.0)


@dataclass(frozen=True)
class RequestRecord:
    """One REST request as the simulator saw it (tests count these per window)."""

    endpoint: str          # URL path, e.g. "/api/v5/market/history-candles"
    params: dict[str, str]
    sim_ms: int            # simulated time when it arrived
    mono: float            # time.monotonic() when it arrived (same clock in-process)
    status: int            # HTTP status returned
    code: str              # OKX "code" returned ("0" on success)
    ip: str
    fault: str = ""        # injected fault applied, if any (a REST_FAULT_MODES entry)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    def __init__(self, maxlen: int = 500_000) -> None:
        self._lock = threading.Lock()
        self._items: deque[RequestRecord] = deque(maxlen=maxlen)

    def add(self, rec: RequestRecord) -> None:
        with self._lock:
            self._items.append(rec)

    def records(self, endpoint: str | None = None, since_mono: float | None = None) -> list[RequestRecord]:
        """Records whose path ends with ``endpoint`` (e.g. ``"history-candles"``), oldest first."""
        with self._lock:
            items = list(self._items)
        return [r for r in items
                if (endpoint is None or r.endpoint.endswith(endpoint))
                and (since_mono is None or r.mono >= since_mono)]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


# endpoint path suffix -> (requests, window seconds), per client IP, from the OKX docs.
DEFAULT_LIMITS: dict[str, tuple[int, float]] = {
    "/api/v5/market/history-candles": (20, 2.0),
    "/api/v5/market/candles": (40, 2.0),
    "/api/v5/public/funding-rate-history": (10, 2.0),
    "/api/v5/public/funding-rate": (20, 2.0),
    "/api/v5/public/instruments": (20, 2.0),
    "/api/v5/market/tickers": (20, 2.0),
    "/api/v5/market/ticker": (20, 2.0),
    "/api/v5/public/open-interest": (20, 2.0),
    "/api/v5/public/time": (10, 2.0),
    "/api/v5/public/market-data-history": (5, 2.0),
}


class RateLimiter:
    """Sliding-window limits per (endpoint, client IP), like OKX's "Rate limit rule: IP".

    Rejected requests do not consume quota. ``scale`` multiplies every limit (tests and
    demos can loosen them); ``scale <= 0`` disables limiting.
    """

    def __init__(self, limits: dict[str, tuple[int, float]] | None = None, scale: float = 1.0) -> None:
        self.limits = dict(DEFAULT_LIMITS if limits is None else limits)
        self.scale = scale
        self._lock = threading.Lock()
        self._hits: dict[tuple[str, str], deque[float]] = {}

    def allow(self, endpoint: str, ip: str, mono: float | None = None) -> bool:
        rule = self.limits.get(endpoint)
        if rule is None or self.scale <= 0:
            return True
        n = max(1, int(rule[0] * self.scale))
        window = rule[1]
        now = time.monotonic() if mono is None else mono
        with self._lock:
            q = self._hits.setdefault((endpoint, ip), deque())
            while q and q[0] <= now - window:
                q.popleft()
            if len(q) >= n:
                return False
            # by arrival time: a delayed request is counted here only once its delay is over,
            # after requests that arrived later (a plain append would leave the window unsorted)
            bisect.insort(q, now)
            return True


REST_FAULT_MODES = ("500", "429", "delay", "empty", "garbled", "refuse")


@dataclass
class RestFault:
    endpoint: str        # path suffix to match, "*" = every REST endpoint
    mode: str            # one of REST_FAULT_MODES
    remaining: int
    delay_s: float = 0.0
    inst_id: str = ""    # only requests with this instId ("" = any)
    after: str = ""      # only requests with this `after` parameter ("" = any)
    code: str = ""       # "refuse": the OKX code answered with HTTP 200
    msg: str = ""        # "refuse": its message

    def matches(self, path: str, params: dict[str, str]) -> bool:
        return (self.remaining > 0 and (self.endpoint == "*" or path.endswith(self.endpoint))
                and (not self.inst_id or params.get("instId") == self.inst_id)
                and (not self.after or params.get("after") == self.after))


@dataclass
class FaultState:
    """Injected faults. REST faults are consumed by matching requests; WS ones are timed."""

    rest: list[RestFault] = field(default_factory=list)
    silent_until: float = 0.0     # monotonic time until which nothing is pushed
    burst_rate: float = 0.0       # extra candle frames per second per connection
    burst_until: float = 0.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add_rest(self, endpoint: str, count: int, mode: str, delay_s: float = 0.0, *, inst_id: str = "",
                 after: str = "", code: str = "", msg: str = "") -> None:
        if mode not in REST_FAULT_MODES:
            raise ValueError(f"unknown REST fault mode {mode!r}")
        with self._lock:
            self.rest.append(RestFault(endpoint or "*", mode, int(count), float(delay_s), inst_id or "",
                                       str(after or ""), str(code or ""), str(msg or "")))

    def take_rest(self, path: str, params: dict[str, str] | None = None) -> RestFault | None:
        """Consume one matching REST fault for a request to ``path`` with query ``params``."""
        params = params or {}
        with self._lock:
            for f in self.rest:
                if f.matches(path, params):
                    f.remaining -= 1
                    taken = RestFault(f.endpoint, f.mode, 1, f.delay_s, f.inst_id, f.after, f.code, f.msg)
                    self.rest = [x for x in self.rest if x.remaining > 0]
                    return taken
        return None

    def silence(self, seconds: float) -> None:
        with self._lock:
            self.silent_until = time.monotonic() + float(seconds)

    def is_silent(self, mono: float) -> bool:
        return mono < self.silent_until

    def burst(self, rate: float, seconds: float) -> None:
        with self._lock:
            self.burst_rate = float(rate)
            self.burst_until = time.monotonic() + float(seconds)

    def burst_at(self, mono: float) -> float:
        return self.burst_rate if mono < self.burst_until else 0.0

    def clear(self) -> None:
        with self._lock:
            self.rest = []
            self.silent_until = 0.0
            self.burst_rate = 0.0
            self.burst_until = 0.0

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            return {"rest": [asdict(f) for f in self.rest],
                    "silent_for_s": max(0.0, self.silent_until - now),
                    "burst_rate": self.burst_at(now), "burst_for_s": max(0.0, self.burst_until - now)}


# --------------------------------------------------------------------------- WebSocket faults
# (service-upgrade notice and refused instruments; kept apart from the REST faults above)


class WsFaults:
    """WebSocket faults that are state rather than one-off actions.

    ``refused_insts``: instIds the WebSocket treats as unknown (as if delisted after the client
    fetched the instrument list): any subscribe request naming one is refused as a whole with
    one 60018 error, like OKX does. REST keeps serving them, so a client's start-up checks pass.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.refused_insts: set[str] = set()

    def refuse(self, inst_ids: list[str]) -> None:
        with self._lock:
            self.refused_insts |= {str(i) for i in inst_ids}

    def is_refused(self, inst_id: str) -> bool:
        return inst_id in self.refused_insts

    def clear(self) -> None:
        with self._lock:
            self.refused_insts = set()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"refused_insts": sorted(self.refused_insts)}
