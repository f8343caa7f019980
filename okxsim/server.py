"""The simulator server: one aiohttp TLS port for REST, both WebSocket paths and /sim/*.

``SimServer`` is the asyncio core (used by ``python -m okxsim``); ``Simulator`` runs it in
a background thread with its own event loop for tests::

    with okxsim.Simulator(seed=7, clock_start="2024-03-04T22:00:00Z", speed=300) as sim:
        requests.get(sim.rest + "/api/v5/public/time", verify=sim.ca_file)

Control endpoints (not part of OKX): ``GET /sim/state``, ``GET /sim/requests``,
``POST /sim/faults`` with one fault object or a list of them (see ``SimServer.apply_fault``),
``GET /sim/books/sent`` and ``GET /sim/books/features`` (the books5 push log and the order-book
features computed from it by ``okxsim.book_truth``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import book_truth
from .archive import Archive, Period
from .common import day_index, iso_ms, parse_time_ms
from .control import FaultState, RateLimiter, RequestLog, RequestRecord, SimClock
from .market import Market
from .rest import RestApi
from .tls import ensure_certs, server_context
from .ws import WS_FAULT_KINDS, Hub, PushConfig

log = logging.getLogger("okxsim")


@dataclass
class SimConfig:
    """Everything that defines one simulator run (CLI flags map 1:1)."""

    seed: int = 7
    clock_start: str | int = "2024-03-04T22:00:00Z"
    speed: float = 300.0
    history_start: str | int = "2024-02-01"
    host: str = "127.0.0.1"
    port: int = 0
    cert_dir: str | None = None
    n_swaps: int = 80
    rate_limit_scale: float = 1.0     # multiply OKX's limits; <= 0 disables them
    history_limit_max: int = 100      # max `limit` of /market/history-candles (OKX docs: 100)
    candles_limit_max: int = 300      # max `limit` of /market/candles
    archive_bandwidth_bps: float = 0.0  # bytes/s per archive file download; <= 0 = unlimited
    push: PushConfig = field(default_factory=PushConfig)


class SimServer:
    """Market + clock + REST + WebSocket hub behind one TLS listener."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.clock_start_ms = parse_time_ms(config.clock_start)
        self.market = Market(config.seed, config.history_start, self.clock_start_ms, config.n_swaps)
        self.clock = SimClock(self.clock_start_ms, config.speed)
        self.log = RequestLog()
        self.limiter = RateLimiter(scale=config.rate_limit_scale)
        self.faults = FaultState()
        self.hub = Hub(self.market, self.clock, self.faults, config.push)
        self.archive = Archive(self.market, self.clock, self.log, bandwidth_bps=config.archive_bandwidth_bps)
        self.rest = RestApi(self.market, self.clock, self.log, self.limiter, self.faults,
                            config.history_limit_max, config.candles_limit_max, self.archive.listing)
        self._runner: web.AppRunner | None = None
        self._pusher: asyncio.Task[None] | None = None
        self._tmp_cert_dir: str | None = None
        self.info: dict[str, Any] = {}

    # ------------------------------------------------------------------ lifecycle
    def _warm_up(self) -> None:
        """Generate today's and yesterday's candles for every instrument before serving,
        so the first tickers/instruments calls do not stall the event loop."""
        day = day_index(self.clock_start_ms)
        for spec in self.market.specs:
            for d in (day - 1, day):
                self.market.day_data(spec, d)
        live = [s for s in self.market.specs if s.state_at(self.clock_start_ms) == "live"]
        if live:  # the first books5 block loads numpy's lazily imported modules (~0.3 s) off the loop
            self.hub.books.current(live[0].inst_id, self.clock_start_ms)

    async def start(self) -> dict[str, Any]:
        cfg = self.config
        cert_dir = cfg.cert_dir
        if cert_dir is None:
            cert_dir = self._tmp_cert_dir = tempfile.mkdtemp(prefix="okxsim-certs-")
        paths = ensure_certs(cert_dir)
        ssl_ctx = server_context(paths)
        await asyncio.get_running_loop().run_in_executor(None, self._warm_up)

        app = web.Application()
        app.add_routes(self.rest.routes())
        app.add_routes(self.archive.routes())
        app.add_routes([
            web.get("/ws/v5/public", lambda r: self.hub.handle(r, "public")),
            web.get("/ws/v5/business", lambda r: self.hub.handle(r, "business")),
            web.get("/sim/state", self._h_state),
            web.get("/sim/requests", self._h_requests),
            web.post("/sim/faults", self._h_faults),
            web.get("/sim/books/sent", self._h_books_sent),
            web.get("/sim/books/features", self._h_books_features),
        ])
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.host, cfg.port, ssl_context=ssl_ctx)
        await site.start()
        port = self._runner.addresses[0][1]
        self.clock.start()
        self._pusher = asyncio.ensure_future(self.hub.run())
        base = f"{cfg.host}:{port}"
        self.archive.base_url = f"https://{base}"
        self.info = {"rest": f"https://{base}", "ws_public": f"wss://{base}/ws/v5/public",
                     "ws_business": f"wss://{base}/ws/v5/business", "ca_file": str(paths.ca_file),
                     "pid": os.getpid()}
        log.info("okxsim ready on %s (sim clock %s, speed %sx)", base, iso_ms(self.clock_start_ms), cfg.speed)
        return self.info

    async def stop(self) -> None:
        self.hub.stop()
        if self._pusher is not None:
            try:
                await asyncio.wait_for(self._pusher, timeout=2.0)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._pusher.cancel()
        for conn in list(self.hub.conns):
            try:
                await asyncio.wait_for(conn.ws.close(code=1001, message=b"server shutdown"), timeout=1.0)
            except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                pass
        if self._runner is not None:
            await self._runner.cleanup()
        self.archive.cache.close()
        if self._tmp_cert_dir:
            shutil.rmtree(self._tmp_cert_dir, ignore_errors=True)

    # ------------------------------------------------------------------ control
    def state(self) -> dict[str, Any]:
        now = self.clock.now_ms()
        return {
            "sim_now": now, "sim_now_iso": iso_ms(now), "speed": self.clock.speed, "seed": self.config.seed,
            "clock_start": self.clock_start_ms, "history_start": self.market.history_start_ms,
            "ws_connections": len(self.hub.conns), "ws_subscriptions": sum(len(c.subs) for c in self.hub.conns),
            "requests": len(self.log.records()), "pusher": dict(self.hub.stats),
            "faults": self.faults.snapshot(), "ws_faults": self.hub.ws_faults.snapshot(),
            "archive_faults": self.archive.faults.snapshot(), "archive_cache": self.archive.cache.stats(),
            "book_faults": self.hub.books.faults.snapshot(), "books_logged": self.hub.book_log.counts(),
            "books_options": dataclasses.asdict(self.hub.books.model.options),
            "lifecycle": self.market.lifecycle(),
            "market_args": {"seed": self.config.seed, "history_start": self.market.history_start_ms,
                            "clock_start": self.clock_start_ms, "n_swaps": self.config.n_swaps},
        }

    async def apply_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Apply one fault. ``kind`` is one of:

        * ``rest_error``: ``endpoint`` (path suffix or ``"*"``), ``count``, ``status`` 500|429, optional
          ``inst_id`` / ``after`` (only requests with that instId / ``after`` parameter)
        * ``rest_delay``: ``endpoint``, ``count``, ``seconds`` (the response waits that long)
        * ``rest_empty``: ``endpoint``, ``count``, optional ``inst_id`` and ``after`` (only requests
          with that instId / ``after`` parameter): HTTP 200 code "0" with ``data: []``, rows or not
        * ``rest_garbled``: ``endpoint``, ``count``, optional ``inst_id``: HTTP 200 whose body is the
          answer cut off half-way (not JSON)
        * ``rest_refuse``: ``endpoint``, ``count``, optional ``inst_id``, ``code`` (default 51001),
          ``msg``: HTTP 200 with that OKX error instead of the answer
        * ``ws_drop``: cut every WebSocket now (``abort`` false = close handshake 1001)
        * ``ws_silence``: push nothing for ``seconds`` (frames due meanwhile are lost)
        * ``ws_malformed``: send one invalid-JSON text frame to every connection
        * ``ws_burst``: ``rate`` extra candle frames/s per connection for ``seconds``
        * ``ws_upgrade_notice``, ``ws_refuse_inst``, ``book_at_close``: see ``Hub.apply_ws_fault``
        * ``archive_error``: ``count``, ``status`` (403|404|429|500), optional ``inst_id`` / ``period``
          (``"2024-03-05"`` daily, ``"2024-03"`` monthly): the next matching file requests get that status
        * ``archive_missing``: ``inst_id``, ``period``: persistently absent from the listing, 404 at the CDN
        * ``archive_truncated``: ``count``, optional ``inst_id`` / ``period``: the next matching downloads
          send only the first half of the bytes (Content-Length says that half)
        * ``archive_header``: ``inst_id``, ``period``, ``header``: that file's CSV header line is replaced
        * ``archive_unconfirmed``: ``inst_id``, ``period``, ``minute`` (open time, ms): that row has confirm "0"
        * ``clear``: remove every pending fault
        """
        kind = spec.get("kind")
        if kind in WS_FAULT_KINDS:
            return await self.hub.apply_ws_fault(spec)
        if kind == "rest_error":
            self.faults.add_rest(spec.get("endpoint", "*"), int(spec.get("count", 1)), str(spec.get("status", 500)),
                                 inst_id=spec.get("inst_id") or "", after=spec.get("after") or "")
        elif kind == "rest_delay":
            self.faults.add_rest(spec.get("endpoint", "*"), int(spec.get("count", 1)), "delay",
                                 float(spec.get("seconds", 15.0)))
        elif kind in ("rest_empty", "rest_garbled", "rest_refuse"):
            refuse = kind == "rest_refuse"
            self.faults.add_rest(spec.get("endpoint", "*"), int(spec.get("count", 1)), kind[len("rest_"):],
                                 inst_id=spec.get("inst_id") or "", after=spec.get("after") or "",
                                 code=str(spec.get("code", "51001")) if refuse else "",
                                 msg=str(spec.get("msg", "Instrument ID does not exist")) if refuse else "")
        elif kind == "ws_drop":
            return {"dropped": await self.hub.drop_all(bool(spec.get("abort", True)))}
        elif kind == "ws_silence":
            self.faults.silence(float(spec.get("seconds", 10.0)))
        elif kind == "ws_malformed":
            return {"sent": self.hub.send_malformed()}
        elif kind == "ws_burst":
            self.faults.burst(float(spec.get("rate", 100.0)), float(spec.get("seconds", 5.0)))
        elif kind == "archive_error":
            self.archive.faults.add_error(int(spec.get("count", 1)), int(spec.get("status", 500)),
                                          spec.get("inst_id") or "", spec.get("period") or "")
        elif kind == "archive_missing":
            self.archive.faults.add_missing(spec.get("inst_id"), spec.get("period"))
        elif kind == "archive_truncated":
            self.archive.faults.add_truncated(int(spec.get("count", 1)), spec.get("inst_id") or "",
                                              spec.get("period") or "")
        elif kind == "archive_header":
            self.archive.faults.add_header(spec.get("inst_id"), spec.get("period"), str(spec.get("header", "")))
        elif kind == "archive_unconfirmed":
            self.archive.faults.add_unconfirmed(spec.get("inst_id"), spec.get("period"), int(spec.get("minute")))
        elif kind == "clear":
            self.faults.clear()
            self.hub.ws_faults.clear()
            self.hub.books.faults.clear()
            self.archive.faults.clear()
        else:
            raise ValueError(f"unknown fault kind {kind!r}")
        return {"ok": True}

    async def _h_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _h_requests(self, request: web.Request) -> web.Response:
        since = request.query.get("since_mono")
        recs = self.log.records(request.query.get("endpoint"), float(since) if since else None)
        return web.json_response({"requests": [r.to_json() for r in recs]})

    # ------------------------------------------------------------------ books5 ground truth
    def books_features(self, inst_id: str, freq: str, start_ms: int, end_ms: int,
                       max_age_s: int = 60, until_ms: int | None = None) -> list[dict[str, Any]]:
        """``book_truth.bar_features`` over every books5 element sent for ``inst_id`` (with ``until_ms``:
        only those with ts < until_ms, e.g. what a client that stopped reading received). Raises
        ValueError when the request cannot be answered (unknown instId, bad freq, a range the
        capped push log no longer covers)."""
        spec = self.market.by_id.get(inst_id)
        if spec is None:
            raise ValueError(f"instId {inst_id!r} does not exist in this simulator")
        book_truth.freq_ms(freq)
        if max_age_s < 1:
            raise ValueError(f"max_age_s must be >= 1, got {max_age_s}")
        cut = self.hub.book_log.truncated_before.get(inst_id)
        if cut is not None and start_ms - max_age_s * 1000 < cut:
            raise ValueError(f"{inst_id}: the books5 push log was truncated before {iso_ms(cut)} "
                             f"(books_log_max_per_inst); ask for bars from {iso_ms(cut + max_age_s * 1000)} on")
        ct_val = float(spec.ct_val) if spec.ct_val else 1.0
        sent = self.hub.books_sent(inst_id)
        if until_ms is not None:
            sent = [el for el in sent if int(el["ts"]) < until_ms]
        return book_truth.bar_features(sent, inst_type=spec.inst_type,
                                       ct_type=spec.ct_type, ct_val=ct_val, freq=freq, start_ms=start_ms,
                                       end_ms=end_ms, max_age_s=max_age_s)

    async def _h_books_sent(self, request: web.Request) -> web.Response:
        inst_id = request.query.get("instId", "")
        if inst_id not in self.market.by_id:
            return web.json_response({"code": "51000", "msg": f"instId {inst_id!r} does not exist in this simulator",
                                      "data": []}, status=400)
        data = await asyncio.get_running_loop().run_in_executor(None, self.hub.books_sent, inst_id)
        return web.json_response({"code": "0", "data": data})

    async def _h_books_features(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            inst_id, freq = q.get("instId", ""), q.get("freq", "1min")
            start, end = int(q["start"]), int(q["end"])
            max_age_s = int(q.get("max_age_s", "60"))
            until = int(q["until_ms"]) if "until_ms" in q else None
            data = await asyncio.get_running_loop().run_in_executor(
                None, self.books_features, inst_id, freq, start, end, max_age_s, until)
        except KeyError as e:
            return web.json_response({"code": "50014", "msg": f"parameter {e.args[0]} is required (epoch ms)",
                                      "data": []}, status=400)
        except ValueError as e:
            return web.json_response({"code": "51000", "msg": str(e), "data": []}, status=400)
        return web.json_response({"code": "0", "data": data})

    async def _h_faults(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            specs = body if isinstance(body, list) else [body]
            results = [await self.apply_fault(s) for s in specs]
        except (ValueError, TypeError, AttributeError) as e:
            return web.json_response({"ok": False, "error": str(e)}, status=400)
        return web.json_response({"ok": True, "results": results, "faults": self.faults.snapshot(),
                                  "archive_faults": self.archive.faults.snapshot()})


class Simulator:
    """``SimServer`` in a background thread with its own event loop (the tests' API).

    Attributes after ``start()``: ``rest``, ``ws_public``, ``ws_business``, ``ca_file``,
    ``port``, ``market`` (the server's own ``Market``), ``clock``.
    """

    def __init__(self, seed: int = 7, clock_start: str | int = "2024-03-04T22:00:00Z", speed: float = 300.0,
                 history_start: str | int = "2024-02-01", *, host: str = "127.0.0.1", port: int = 0,
                 cert_dir: str | None = None, n_swaps: int = 80, rate_limit_scale: float = 1.0,
                 history_limit_max: int = 100, candles_limit_max: int = 300, archive_bandwidth_bps: float = 0.0,
                 push: PushConfig | None = None) -> None:
        self.config = SimConfig(seed, clock_start, speed, history_start, host, port, cert_dir, n_swaps,
                                rate_limit_scale, history_limit_max, candles_limit_max, archive_bandwidth_bps,
                                push or PushConfig())
        self.server = SimServer(self.config)
        self.market = self.server.market
        self.clock = self.server.clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.rest = self.ws_public = self.ws_business = self.ca_file = ""
        self.port = 0

    def start(self, timeout: float = 30.0) -> "Simulator":
        self._thread = threading.Thread(target=self._run, name="okxsim", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("okxsim did not start in time")
        if self._error is not None:
            raise RuntimeError("okxsim failed to start") from self._error
        info = self.server.info
        self.rest, self.ws_public, self.ws_business = info["rest"], info["ws_public"], info["ws_business"]
        self.ca_file = info["ca_file"]
        self.port = int(self.rest.rsplit(":", 1)[1])
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.server.start())
        except BaseException as e:  # surfaced to start()
            self._error = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self.server.stop())
            loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> "Simulator":
        return self.start() if not self._ready.is_set() else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        assert self._loop is not None, "simulator not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # ------------------------------------------------------------------ observation
    @property
    def info(self) -> dict[str, Any]:
        return dict(self.server.info)

    def sim_now_ms(self) -> int:
        return self.clock.now_ms()

    def state(self) -> dict[str, Any]:
        return self.server.state()

    def requests(self, endpoint: str | None = None, since_mono: float | None = None) -> list[RequestRecord]:
        """Logged REST requests (``endpoint`` matches a path suffix, e.g. ``"history-candles"``)."""
        return self.server.log.records(endpoint, since_mono)

    def max_requests_per_window(self, endpoint: str, window_s: float = 2.0, status: int | None = 200) -> int:
        """Most requests to ``endpoint`` (with ``status``) inside any ``window_s`` real seconds."""
        times = sorted(r.mono for r in self.requests(endpoint) if status is None or r.status == status)
        best, j = 0, 0
        for i, t in enumerate(times):
            while times[j] <= t - window_s:
                j += 1
            best = max(best, i - j + 1)
        return best

    # ------------------------------------------------------------------ faults
    def apply_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._call(self.server.apply_fault(spec))

    def fail_next(self, endpoint: str, count: int = 1, status: int = 500, *, inst_id: str | None = None,
                  after: str | int | None = None) -> None:
        """The next ``count`` requests to ``endpoint`` (with that instId / ``after``, if given) get
        HTTP ``status`` (500 or 429)."""
        self.apply_fault({"kind": "rest_error", "endpoint": endpoint, "count": count, "status": status,
                          "inst_id": inst_id, "after": None if after is None else str(after)})

    def delay_next(self, endpoint: str, count: int = 1, seconds: float = 15.0) -> None:
        self.apply_fault({"kind": "rest_delay", "endpoint": endpoint, "count": count, "seconds": seconds})

    def empty_next(self, endpoint: str, count: int = 1, *, inst_id: str | None = None,
                   after: str | int | None = None) -> None:
        """The next ``count`` matching requests answer code "0" with no rows, whatever the data."""
        self.apply_fault({"kind": "rest_empty", "endpoint": endpoint, "count": count, "inst_id": inst_id,
                          "after": None if after is None else str(after)})

    def garble_next(self, endpoint: str, count: int = 1, *, inst_id: str | None = None) -> None:
        """The next ``count`` matching requests get HTTP 200 with half of the answer (invalid JSON)."""
        self.apply_fault({"kind": "rest_garbled", "endpoint": endpoint, "count": count, "inst_id": inst_id})

    def refuse_next(self, endpoint: str, count: int = 1, *, inst_id: str | None = None, code: str = "51001",
                    msg: str = "Instrument ID does not exist") -> None:
        """The next ``count`` matching requests get HTTP 200 with OKX error ``code`` / ``msg``."""
        self.apply_fault({"kind": "rest_refuse", "endpoint": endpoint, "count": count, "inst_id": inst_id,
                          "code": code, "msg": msg})

    def drop_ws(self, abort: bool = True) -> int:
        return int(self.apply_fault({"kind": "ws_drop", "abort": abort})["dropped"])

    def silence(self, seconds: float) -> None:
        self.apply_fault({"kind": "ws_silence", "seconds": seconds})

    def send_malformed(self) -> int:
        return int(self.apply_fault({"kind": "ws_malformed"})["sent"])

    def burst(self, rate: float, seconds: float) -> None:
        self.apply_fault({"kind": "ws_burst", "rate": rate, "seconds": seconds})

    def upgrade_notice(self, endpoint: str = "*", close_after_s: float = 60.0, abort: bool = True) -> list[str]:
        """Send OKX's 64008 notice on every ``endpoint`` connection; close them ``close_after_s`` later."""
        return list(self.apply_fault({"kind": "ws_upgrade_notice", "endpoint": endpoint,
                                      "close_after_s": close_after_s, "abort": abort})["conn_ids"])

    def refuse_ws(self, inst_ids: list[str]) -> None:
        """Refuse every later subscribe request naming one of ``inst_ids`` (60018, whole request)."""
        self.apply_fault({"kind": "ws_refuse_inst", "inst_ids": list(inst_ids)})

    def ws_events(self, event: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        """The hub's WebSocket event log (``Hub.ws_log``), oldest first (a copy: safe from any thread)."""
        return self.server.hub.ws_events(event, kind)

    # ------------------------------------------------------------------ archive faults
    def archive_error(self, count: int, status: int, inst_id: str | None = None, period: str | None = None) -> None:
        """The next ``count`` archive file requests (of that instId / period, if given) get HTTP ``status``."""
        self.apply_fault({"kind": "archive_error", "count": count, "status": status, "inst_id": inst_id,
                          "period": period})

    def archive_missing(self, inst_id: str, period: str) -> None:
        """That file (period "2024-03-05" or "2024-03") is absent from the listing and 404 at the CDN."""
        self.apply_fault({"kind": "archive_missing", "inst_id": inst_id, "period": period})

    def archive_truncated(self, count: int, inst_id: str | None = None, period: str | None = None) -> None:
        """The next ``count`` matching downloads send only the first half of the zip."""
        self.apply_fault({"kind": "archive_truncated", "count": count, "inst_id": inst_id, "period": period})

    def archive_header(self, inst_id: str, period: str, header: str) -> None:
        """That file's CSV header line becomes ``header``."""
        self.apply_fault({"kind": "archive_header", "inst_id": inst_id, "period": period, "header": header})

    def archive_unconfirmed(self, inst_id: str, period: str, minute_ms: int) -> None:
        """The row of ``minute_ms`` in that file carries confirm "0"."""
        self.apply_fault({"kind": "archive_unconfirmed", "inst_id": inst_id, "period": period,
                          "minute": int(minute_ms)})

    def archive_url(self, inst_id: str, period: str) -> str:
        """The CDN URL of a file (the product takes it from the listing; this is for tests)."""
        return self.rest + Period.parse(period).url_path(inst_id)

    def clear_faults(self) -> None:
        self.apply_fault({"kind": "clear"})

    # ------------------------------------------------------------------ books5
    def book_at_close(self, inst_ids: list[str], count: int = 1, spread_mult: float = 50.0,
                      hold_s: float = 1.0) -> int:
        """Arm the ``book_at_close`` fault; returns the first minute boundary that gets an extreme book."""
        return int(self.apply_fault({"kind": "book_at_close", "inst_ids": list(inst_ids), "count": count,
                                     "spread_mult": spread_mult, "hold_s": hold_s})["first_boundary"])

    def books_sent(self, inst_id: str) -> list[dict[str, Any]]:
        """The books5 elements sent for ``inst_id`` on any connection, in (ts, seqId) order."""
        return self.server.hub.books_sent(inst_id)

    def books_features(self, inst_id: str, freq: str, start_ms: int, end_ms: int,
                       max_age_s: int = 60, until_ms: int | None = None) -> list[dict[str, Any]]:
        """Same rows as ``GET /sim/books/features``."""
        return self.server.books_features(inst_id, freq, start_ms, end_ms, max_age_s, until_ms)


def run_in_thread(**kwargs: Any) -> Simulator:
    """Start a ``Simulator`` (same keyword arguments) and return it; call ``.stop()`` after."""
    return Simulator(**kwargs).start()


def wait_until_sim(sim: Simulator, sim_ms: int, timeout: float = 30.0) -> None:
    """Block until the simulator's clock reaches ``sim_ms`` (helper for tests)."""
    deadline = time.monotonic() + timeout
    while sim.sim_now_ms() < sim_ms:
        if time.monotonic() > deadline:
            raise TimeoutError(f"sim clock did not reach {iso_ms(sim_ms)}")
        time.sleep(min(0.01, max(0.0005, (sim_ms - sim.sim_now_ms()) / max(sim.clock.speed, 1e-9) / 1000)))

