"""The one OKX REST client every stage uses.

Why one client: OKX enforces request limits per endpoint and per IP, and answers a burst with
HTTP 429 / code 50011. A client that each stage builds its own way either trips those limits or
hides failed windows behind a warning (what popular downloaders do). Here every request goes
through one :class:`OkxRestClient`, which

* waits client-side so it never exceeds the published per-endpoint limit (sliding window);
* retries with exponential backoff and full jitter on HTTP 429, 5xx, timeouts, connection errors,
  answers that are not OKX's JSON, and the OKX codes that mean "try again"; everything else is
  raised as :class:`OkxApiError` with the endpoint, parameters and OKX's own message;
* gives up early, with :class:`OkxUnreachableError`, once no request has been answered for
  ``give_up_after_s`` (a circuit breaker): an endpoint that is down or hangs fails the run within
  a minute or two instead of costing every remaining instrument its own full round of retries;
* paginates ``history-candles`` and ``funding-rate-history`` (newest first, ``after`` /
  ``before`` exclusive) so callers ask for a time range, not for pages;
* never takes an empty candle page as proof that the exchange has no candle there: OKX answers
  empty or short pages for ranges that have candles, depending on the anchor. Absence is
  confirmed (:meth:`OkxRestClient.history_candle_pages`) or :class:`OkxEmptyAnswerError` is raised.

The same code talks to the real OKX or to the local simulator: only ``base_url`` and
``ca_file`` differ.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

log = logging.getLogger(__name__)

#: OKX's published limits (requests, window seconds) per endpoint path, per IP.
RATE_LIMITS: dict[str, tuple[int, float]] = {
    "/api/v5/market/history-candles": (20, 2.0),
    "/api/v5/market/candles": (40, 2.0),
    "/api/v5/market/tickers": (20, 2.0),
    "/api/v5/market/ticker": (20, 2.0),
    "/api/v5/public/instruments": (20, 2.0),
    "/api/v5/public/funding-rate": (20, 2.0),
    "/api/v5/public/funding-rate-history": (10, 2.0),
    "/api/v5/public/open-interest": (20, 2.0),
    "/api/v5/public/time": (10, 2.0),
    "/api/v5/public/market-data-history": (5, 2.0),
}
_DEFAULT_LIMIT = (10, 2.0)

#: OKX codes that mean "the exchange is busy or throttling; the same request may succeed later".
RETRYABLE_OKX_CODES = frozenset({"50001", "50004", "50011", "50013", "50026", "50061"})

#: Page sizes we ask for. OKX documents 300 for history-candles (100 in older docs) and 400
#: for funding-rate-history (100 in older docs); a server that clamps lower still works because
#: pagination continues until a page comes back empty or reaches the start of the range.
HISTORY_CANDLES_LIMIT = 300
RECENT_CANDLES_LIMIT = 300
FUNDING_HISTORY_LIMIT = 400

HISTORY_CANDLES = "/api/v5/market/history-candles"
#: Serves only the most recent 1,440 bars, but is the first to have them.
RECENT_CANDLES = "/api/v5/market/candles"

#: OKX's "Instrument ID does not exist": also what it answers for a delisted instrument.
UNKNOWN_INSTRUMENT = "51001"

#: How long after its listing time an instrument's first candle may come and "no candle before
#: it" still count as confirmed by the listing (the first minutes can pass without a trade).
LISTING_GRACE_MS = 3_600_000


class OkxApiError(RuntimeError):
    """OKX answered with an error that retrying will not fix (bad instrument, bad parameter...)."""

    def __init__(self, path: str, params: dict[str, Any], code: str, msg: str) -> None:
        self.path, self.params, self.code, self.msg = path, params, code, msg
        super().__init__(f"OKX {path} {params} failed with code {code}: {msg or '(no message)'}")


class OkxUnavailableError(RuntimeError):
    """The request still failed after every retry (network down, exchange overloaded, garbled answers)."""


class OkxUnreachableError(OkxUnavailableError):
    """No request has been answered for ``give_up_after_s``: the endpoint is down or hangs.

    Raised by the client's circuit breaker. Until a request succeeds again, every further call
    makes one attempt only, so a caller looping over instruments fails fast.
    """


class OkxEmptyAnswerError(RuntimeError):
    """OKX answered "no candle" for a range, and asking again could not confirm it.

    An empty page is not proof of absence (OKX answers them for ranges that have candles), so
    nothing may be recorded: run again later. ``start_ms``/``end_ms`` is the range in question.
    """

    def __init__(self, inst_id: str, start_ms: int, end_ms: int, detail: str) -> None:
        self.inst_id, self.start_ms, self.end_ms = inst_id, start_ms, end_ms
        super().__init__(
            f"OKX answered no candle of {inst_id} in [{_iso(start_ms)}, {_iso(end_ms)}) nor anything older, "
            f"{detail}; not recorded as absence. Run the same command again later; if OKX's 1m history "
            "does not reach back to this day, set `start` in config.yaml to a later day."
        )


class RateLimiter:
    """Client-side per-endpoint sliding-window limits.

    OKX counts requests per IP, not per process: two backfill jobs run back to back by Snakemake
    share one budget. With ``state_dir`` set, the recent request times of each endpoint live in a
    small file there, locked with ``flock`` around each check, so every process on the machine that
    uses the same directory shares the window. Without it, the window is per client (threads
    share it).
    """

    def __init__(self, limits: dict[str, tuple[int, float]] | None = None, *,
                 state_dir: str | Path | None = None, safety: float = 1.1) -> None:
        self._limits = dict(RATE_LIMITS if limits is None else limits)
        self._local: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._safety = safety  # slack: the server's window edges need not match ours
        self._state_dir = Path(state_dir) if state_dir else None
        if self._state_dir:
            self._state_dir.mkdir(parents=True, exist_ok=True)

    def acquire(self, path: str) -> float:
        """Block until a request to ``path`` is allowed; return the seconds waited."""
        limit, seconds = self._limits.get(path, _DEFAULT_LIMIT)
        seconds *= self._safety
        waited = 0.0
        while True:
            with self._lock:
                pause = self._try(path, limit, seconds)
            if pause <= 0:
                return waited
            time.sleep(pause)
            waited += pause

    def _try(self, path: str, limit: int, seconds: float) -> float:
        """Record a start and return 0 if allowed now, else the pause before trying again."""
        if self._state_dir is None:
            starts = self._local.setdefault(path, deque())
            return _admit(starts, limit, seconds, time.time())
        state_file = self._state_dir / (path.strip("/").replace("/", "_") + ".json")
        with open(state_file, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            try:
                starts = deque(json.loads(fh.read() or "[]"))
            except ValueError:
                starts = deque()
            pause = _admit(starts, limit, seconds, time.time())
            if pause <= 0:
                fh.seek(0)
                fh.truncate()
                fh.write(json.dumps(list(starts)))
            return pause


def _admit(starts: deque[float], limit: int, seconds: float, now: float) -> float:
    while starts and now - starts[0] >= seconds:
        starts.popleft()
    if len(starts) < limit:
        starts.append(now)
        return 0.0
    return seconds - (now - starts[0])


class OkxRestClient:
    """A retrying, rate-limited session for OKX's public REST API v5."""

    def __init__(
        self,
        *,
        base_url: str,
        ca_file: str | None = None,
        timeout_s: float = 10.0,
        max_retries: int = 8,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        give_up_after_s: float = 60.0,
        rate_limits: dict[str, tuple[int, float]] | None = None,
        rate_state_dir: str | Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.give_up_after_s = give_up_after_s
        self._sleep = sleep
        # circuit breaker: when the current run of failed attempts began, and its length
        self._failing_since: float | None = None
        self._failures_in_row = 0
        self._limiter = RateLimiter(rate_limits, state_dir=rate_state_dir)
        self._session = requests.Session()
        self._session.headers["User-Agent"] = "crypto-data-feeder/0.1"
        # Passed per request: a session-level `verify` loses to REQUESTS_CA_BUNDLE /
        # CURL_CA_BUNDLE from the environment (a long-standing requests behaviour).
        self._verify: str | bool = ca_file or True
        self.requests_sent = 0
        self.retries = 0

    @classmethod
    def from_exchange(cls, exchange: dict[str, Any], **kwargs: Any) -> OkxRestClient:
        """Build a client from config.yaml's ``exchange`` block."""
        return cls(base_url=exchange["rest_url"], ca_file=exchange.get("ca_file"),
                   timeout_s=float(exchange.get("timeout_s", 10)),
                   give_up_after_s=float(exchange.get("give_up_after_s", 60)),
                   rate_state_dir=exchange.get("rate_state_dir"), **kwargs)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> OkxRestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the one request path -------------------------------------------------------------

    def get(self, path: str, params: dict[str, Any] | None = None) -> list[Any]:
        """GET ``path`` and return OKX's ``data`` list, retrying what is worth retrying."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        url = self.base_url + path
        last_problem = ""
        for attempt in range(self.max_retries + 1):
            self._limiter.acquire(path)
            self.requests_sent += 1
            started = time.monotonic()
            try:
                resp = self._session.get(url, params=params, timeout=self.timeout_s, verify=self._verify)
            except requests.Timeout:
                last_problem = f"no answer within {self.timeout_s:g} s (exchange.timeout_s)"
            except requests.ConnectionError as exc:
                last_problem = f"cannot connect: {str(exc)[:200]}"
            else:
                body = _json_or_none(resp)
                code = str(body.get("code", "")) if isinstance(body, dict) else ""
                if resp.status_code == 200 and code == "0" and isinstance(body.get("data"), list):
                    self._answered()
                    return body["data"]
                if resp.status_code == 429 or resp.status_code >= 500 or code in RETRYABLE_OKX_CODES:
                    last_problem = f"HTTP {resp.status_code} code {code or '-'} {_msg(body)}"
                elif resp.status_code == 200 and (not isinstance(body, dict) or code in ("", "0")):
                    # a proxy's page, a cut-off body, an envelope without code or data: not an
                    # answer from OKX's API, so not a refusal either; the same request may work
                    last_problem = f"HTTP 200 with a body that is not JSON from OKX's API: {resp.text[:80]!r}"
                elif isinstance(body, dict) and code:
                    self._answered()  # a coherent refusal: the endpoint is up
                    raise OkxApiError(path, params, code, _msg(body))
                else:
                    raise OkxApiError(path, params, f"HTTP {resp.status_code}", resp.text[:200])
            down_for = self._failed(started)
            if attempt == self.max_retries:
                break
            pause = random.uniform(0, min(self.backoff_cap_s, self.backoff_base_s * 2**attempt))
            if down_for + pause >= self.give_up_after_s:
                raise OkxUnreachableError(
                    f"OKX {url}: no answer for {down_for:.1f} s ({self._failures_in_row} attempts in a row failed, "
                    f"the last: {last_problem}); stopped asking "
                    f"(exchange.give_up_after_s = {self.give_up_after_s:g} s). "
                    f"Check the network connection, exchange.rest_url ({self.base_url}) in config.yaml and OKX's "
                    "system status, then run the same command again: finished work is kept."
                )
            self.retries += 1
            log.warning("OKX %s %s: %s; retry %d/%d in %.2fs", path, params, last_problem, attempt + 1, self.max_retries, pause)
            self._sleep(pause)
        raise OkxUnavailableError(
            f"OKX {path} {params} still failing after {self.max_retries} retries ({last_problem}). "
            "Check the network and exchange.rest_url in config.yaml, then run again: finished work is kept."
        )

    def _answered(self) -> None:
        """The endpoint answered: the circuit breaker's count starts over."""
        self._failing_since = None
        self._failures_in_row = 0

    def _failed(self, started: float) -> float:
        """Count a failed attempt begun at ``started``; return for how long nothing has been answered."""
        if self._failing_since is None:
            self._failing_since = started
        self._failures_in_row += 1
        return time.monotonic() - self._failing_since

    # -- endpoints ------------------------------------------------------------------------

    def server_time_ms(self) -> int:
        return int(self.get("/api/v5/public/time")[0]["ts"])

    def instruments(self, inst_type: str) -> list[dict[str, Any]]:
        return self.get("/api/v5/public/instruments", {"instType": inst_type})

    def tickers(self, inst_type: str) -> list[dict[str, Any]]:
        return self.get("/api/v5/market/tickers", {"instType": inst_type})

    def instrument(self, inst_id: str) -> dict[str, Any] | None:
        """OKX's current ``public/instruments`` entry of ``inst_id``; None if OKX does not list it
        (delisted, or never existed)."""
        try:
            found = self.get("/api/v5/public/instruments", {"instType": inst_type_of(inst_id), "instId": inst_id})
        except OkxApiError as exc:
            if exc.code == UNKNOWN_INSTRUMENT:
                return None
            raise
        return next((item for item in found if item.get("instId") == inst_id), None)

    def history_candles(self, inst_id: str, bar: str, *, start_ms: int, end_ms: int) -> list[list[str]]:
        """All candles of ``inst_id`` with ``start_ms <= ts < end_ms``, oldest first."""
        rows = [row for _, _, page in self.history_candle_pages(inst_id, bar, start_ms=start_ms, end_ms=end_ms)
                for row in page]
        rows.sort(key=lambda row: int(row[0]))
        return rows

    def history_candle_pages(self, inst_id: str, bar: str, *, start_ms: int, end_ms: int,
                             listed_ms: int | None = None) -> Iterator[tuple[int, int, list[list[str]]]]:
        """Pages of candles in [start_ms, end_ms), newest first, each with the range it covers.

        OKX pages newest first: ``after=X`` returns the newest rows with ``ts < X``. Each yielded
        ``(lo, hi, rows)`` says "the exchange has exactly ``rows`` in [lo, hi)", which lets the
        backfill log every page as done, so every claim is backed by an answer that shows it:

        * pages are asked with ``after`` only, no ``before``: the page that reaches the start of
          the range also shows the exchange's newest candle *older* than it, and so proves that
          the minutes in between have none, at no extra request;
        * a page with no row older than ``after`` proves nothing (OKX answers such pages for
          ranges that have candles, depending on the anchor): see :meth:`_rows_before`, which
          asks again or raises :class:`OkxEmptyAnswerError`. ``listed_ms`` (the instrument's
          listing time, asked from OKX when None and needed) confirms "nothing before the listing".
        """
        params = {"instId": inst_id, "bar": bar, "limit": HISTORY_CANDLES_LIMIT}
        after = end_ms
        while after > start_ms:
            rows = [row for row in self.get(HISTORY_CANDLES, {**params, "after": str(after)}) if int(row[0]) < after]
            if not rows:
                rows = self._rows_before(inst_id, bar, after=after, start_ms=start_ms, listed_ms=listed_ms)
                if not rows:  # confirmed by the listing time: nothing in [start_ms, after)
                    yield start_ms, after, []
                    return
            oldest = min(int(row[0]) for row in rows)
            yield max(oldest, start_ms), after, [row for row in rows if int(row[0]) >= start_ms]
            after = oldest

    def _rows_before(self, inst_id: str, bar: str, *, after: int, start_ms: int,
                     listed_ms: int | None) -> list[list[str]]:
        """Candles older than ``after`` when ``history-candles`` answered none; [] only when
        "none" is confirmed, else :class:`OkxEmptyAnswerError`.

        Asked again: ``history-candles`` with another anchor (``after + 1`` ms: the same rows,
        another request), then ``candles`` (the latest 1,440 bars, which it has first). If both
        say "nothing older", that is true only before the instrument's listing: confirmed when it
        was listed inside the range, at most LISTING_GRACE_MS before ``after``.
        """
        anchor = str(after + 1)
        for path, limit in ((HISTORY_CANDLES, HISTORY_CANDLES_LIMIT), (RECENT_CANDLES, RECENT_CANDLES_LIMIT)):
            page = self.get(path, {"instId": inst_id, "bar": bar, "limit": limit, "after": anchor})
            rows = [row for row in page if int(row[0]) < after]
            if rows:
                log.warning("OKX history-candles answered no %s candle of %s before %s; asked again (%s after=%s) "
                            "it has %d: using those", bar, inst_id, _iso(after), path, anchor, len(rows))
                return rows
        if listed_ms is None:
            entry = self.instrument(inst_id)
            listed_ms = int(entry["listTime"]) if entry and str(entry.get("listTime", "")).isdigit() else None
        if listed_ms is not None and start_ms < listed_ms and after - listed_ms <= LISTING_GRACE_MS:
            return []
        listed = "listing time unknown" if listed_ms is None else f"listed {_iso(listed_ms)}"
        raise OkxEmptyAnswerError(inst_id, start_ms, after,
                                  f"asked 3 ways (history-candles after={after} and after={anchor}, candles), {listed}")

    def funding_rate_history(self, inst_id: str, *, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        """Settled funding rates of ``inst_id`` with ``start_ms <= fundingTime < end_ms``, oldest first."""
        rows: list[dict[str, Any]] = []
        for _, _, page in self._pages(
            "/api/v5/public/funding-rate-history",
            {"instId": inst_id, "limit": FUNDING_HISTORY_LIMIT},
            start_ms=start_ms,
            end_ms=end_ms,
            ts_of=lambda row: int(row["fundingTime"]),
        ):
            rows.extend(page)
        rows.sort(key=lambda row: int(row["fundingTime"]))
        return rows

    def _pages(
        self,
        path: str,
        params: dict[str, Any],
        *,
        start_ms: int,
        end_ms: int,
        ts_of: Callable[[Any], int],
    ) -> Iterator[tuple[int, int, list[Any]]]:
        after = end_ms
        while after > start_ms:
            page = self.get(path, {**params, "after": str(after), "before": str(start_ms - 1)})
            if not page:
                yield start_ms, after, []
                return
            oldest = min(ts_of(row) for row in page)
            if oldest >= after:  # a server that ignores `after` would loop forever
                raise OkxApiError(path, params, "pagination", f"page did not move back past {after}")
            # Keep paging until the range is covered or a page comes back empty. A short page
            # is not the end: OKX clamps `limit` silently (100 or 300 depending on endpoint).
            yield max(oldest, start_ms), after, [row for row in page if start_ms <= ts_of(row) < end_ms]
            after = oldest


def inst_type_of(inst_id: str) -> str:
    """OKX ``instType`` of an ``instId``: BTC-USDT-SWAP, BTC-USDT, BTC-USD-240329, BTC-USD-240329-60000-C."""
    parts = inst_id.split("-")
    if parts[-1] == "SWAP":
        return "SWAP"
    if len(parts) == 2:
        return "SPOT"
    return "OPTION" if len(parts) == 5 else "FUTURES"


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _json_or_none(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _msg(body: Any) -> str:
    return str(body.get("msg", "")) if isinstance(body, dict) else ""
