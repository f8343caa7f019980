"""OKX v5 REST endpoints served from the ``Market`` at the simulated time.

Behaviour copied from OKX (see the samples README): string-typed numbers, the
``{"code","msg","data"}`` envelope (``public/instruments`` and ``public/open-interest``
send ``code,data,msg`` order), business errors with HTTP 200 (51001) or 400 (parameter
errors), per-IP rate limits answered with HTTP 429 / code 50011, newest-first candles.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Callable

from aiohttp import web

from .control import FaultState, RateLimiter, RequestLog, RequestRecord, SimClock
from .market import BARS, Market

log = logging.getLogger("okxsim.rest")

# Handlers that may take seconds (they run in a worker thread, not on the event loop).
OFF_LOOP = frozenset({"/api/v5/public/market-data-history"})

Handler = Callable[[dict[str, str], int], tuple[int, dict[str, Any]]]


class ApiError(Exception):
    """An OKX business error: HTTP status, code string, message."""

    def __init__(self, status: int, code: str, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def _missing(name: str) -> ApiError:
    return ApiError(400, "50014", f"Parameter {name} can not be empty")


def _bad(name: str) -> ApiError:
    return ApiError(400, "51000", f"Parameter {name} error")


NO_INSTRUMENT = ApiError(200, "51001", "Instrument ID does not exist")


def _ok(data: list[Any], order: str = "cmd") -> dict[str, Any]:
    return {"code": "0", "data": data, "msg": ""} if order == "cdm" else {"code": "0", "msg": "", "data": data}


def _int_param(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise _bad(name) from None


def _limit(params: dict[str, str], default: int, maximum: int) -> int:
    """OKX clamps an over-large ``limit`` to the maximum instead of failing."""
    value = _int_param(params, "limit")
    if value is None:
        return default
    if value <= 0:
        raise _bad("limit")
    return min(value, maximum)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


class RestApi:
    """Route table plus the shared request path: faults → rate limit → handler → log."""

    def __init__(self, market: Market, clock: SimClock, log: RequestLog, limiter: RateLimiter,
                 faults: FaultState, history_limit_max: int = 100, candles_limit_max: int = 300,
                 archive_listing: Handler | None = None) -> None:
        self.market = market
        self.archive_listing = archive_listing
        self.clock = clock
        self.log = log
        self.limiter = limiter
        self.faults = faults
        self.history_limit_max = history_limit_max
        self.candles_limit_max = candles_limit_max

    def routes(self) -> list[web.RouteDef]:
        table: dict[str, Handler] = {
            "/api/v5/public/time": self.h_time,
            "/api/v5/public/instruments": self.h_instruments,
            "/api/v5/market/tickers": self.h_tickers,
            "/api/v5/market/ticker": self.h_ticker,
            "/api/v5/market/candles": self.h_candles,
            "/api/v5/market/history-candles": self.h_history_candles,
            "/api/v5/public/funding-rate": self.h_funding_rate,
            "/api/v5/public/funding-rate-history": self.h_funding_history,
            "/api/v5/public/open-interest": self.h_open_interest,
        }
        if self.archive_listing is not None:
            table["/api/v5/public/market-data-history"] = self.archive_listing
        return [web.get(path, self._wrap(path, fn)) for path, fn in table.items()]

    def _wrap(self, path: str, fn: Handler) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            mono = time.monotonic()
            sim = self.clock.now_ms(mono)
            ip = request.remote or ""
            params = dict(request.query)
            fault = self.faults.take_rest(path, params)
            fault_name = fault.mode if fault else ""
            if fault and fault.mode == "delay":
                await asyncio.sleep(fault.delay_s)  # the client usually times out first
                sim = self.clock.now_ms()
            if fault and fault.mode == "500":
                status, body = 500, {"code": "50001", "msg": "Service temporarily unavailable, please try again later", "data": []}
            elif (fault and fault.mode == "429") or not self.limiter.allow(path, ip, mono):
                status, body = 429, {"code": "50011", "msg": "Too Many Requests", "data": []}
            elif fault and fault.mode == "refuse":  # an OKX business error for a valid request
                status, body = 200, {"code": fault.code, "msg": fault.msg, "data": []}
            else:
                try:
                    if path in OFF_LOOP:  # may build archive files: keep the event loop serving
                        status, body = await asyncio.get_running_loop().run_in_executor(None, fn, params, sim)
                    else:
                        status, body = fn(params, sim)
                except ApiError as e:
                    status, body = e.status, {"code": e.code, "msg": e.msg, "data": []}
                except Exception:  # a simulator bug: answer like an OKX system error, keep serving
                    log.exception("REST handler %s failed for %s", path, params)
                    status, body = 500, {"code": "50026", "msg": "System error", "data": []}
                if fault and fault.mode == "empty" and status == 200:  # a page with nothing, rows or not
                    body = {**body, "data": []}
            text = _dumps(body)
            if fault and fault.mode == "garbled":  # HTTP 200, the answer cut off half-way: not JSON
                text = text[: len(text) // 2]
            self.log.add(RequestRecord(path, params, sim, mono, status, str(body.get("code", "")), ip, fault_name))
            return web.Response(status=status, text=text, content_type="application/json")
        return handler

    # ------------------------------------------------------------------ handlers
    def h_time(self, params: dict[str, str], sim: int) -> tuple[int, dict[str, Any]]:
        return 200, _ok([{"ts": str(sim)}])

    def h_instruments(self, params: dict[str, str], sim: int) -> tuple[int, dict[str, Any]]:
        inst_type = params.get("instType")
        if not inst_type:
            raise _missing("instType")
        if inst_type in ("FUTURES", "OPTION", "MARGIN"):
            return 200, _ok([], "cdm")  # not simulated: no such instruments
        if inst_type not in ("SPOT", "SWAP"):
            raise _bad("instType")
        data = self.market.instruments(sim, inst_type)
        if params.get("instId"):
            data = [d for d in data if d["instId"] == params["instId"]]
            if not data:
                raise NO_INSTRUMENT
        for key in ("instFamily", "uly"):
            if params.get(key):
                data = [d for d in data if d[key] == params[key]]
        return 200, _ok(data, "cdm")

    def _live(self, inst_id: str | None, sim: int, swap_only: bool = False):
        """Spec of an instrument that is trading now, else 51001."""
        if not inst_id:
            raise _missing("instId")
        spec = self.market.by_id.get(inst_id)
        if spec is None or spec.state_at(sim) != "live" or (swap_only and not spec.is_swap):
            raise NO_INSTRUMENT
        return spec

    def h_tickers(self, params: dict[str, str], sim: int) -> tuple[int, dict[str, Any]]:
        inst_type = params.get("instType")
        if not inst_type:
            raise _missing("instType")
        if inst_type in ("FUTURES", "OPTION"):
            return 200, _ok([])
        if inst_type not in ("SPOT", "SWAP"):
            raise _bad("instType")
        data = []
        for spec in self.market.live_specs(sim, inst_type):
            if spec.state_at(sim) == "live" and (t := self.market.ticker(spec.inst_id, sim)) is not None:
                data.append(t)
        return 200, _ok(data)

    def h_ticker(self, params: dict[str, str], sim: int) -> tuple[int, dict[str, Any]]:
        spec = self._live(params.get("instId"), sim)
        t = self.market.ticker(spec.inst_id, sim)
        return 200, _ok([t] if t else [])

    def _candles(self, params: dict[str, str], sim: int, recent: bool) -> tuple[int, dict[str, Any]]:
        inst_id = params.get("instId")
        if not inst_id:
            raise _missing("instId")
        bar = params.get("bar") or "1m"
        if bar not in BARS:
            raise _bad("bar")
        after = _int_param(params, "after")
        before = _int_param(params, "before")
        maximum = self.candles_limit_max if recent else self.history_limit_max
        limit = _limit(params, 100, maximum)
        spec = self.market.by_id.get(inst_id)
        if spec is None or not spec.known_at(sim):
            raise NO_INSTRUMENT
        rows = self.market.candles(inst_id, bar, sim, after=after, before=before, limit=limit,
                                   recent_only=recent)
        return 200, _ok(rows)

    def h_candles(self, params: dict[str, str], sim: int) -> tuple[int, dict[str, Any]]:
        return self._candles(params, sim, recent=True)

    def h_history_candles(self, params: dict[str, str], sim: int) -> tuple[int, dict[str, Any]]:
        return self._candles(params, sim, recent=False)

    def h_funding_rate(self, params: dict[str, str], sim: int) -> tuple[int, dict[str, Any]]:
        inst_id = params.get("instId")
        if not inst_id:
            raise _missing("instId")
        if inst_id == "ANY":
            data = [self.market.funding_rate(s.inst_id, sim) for s in self.market.live_specs(sim, "SWAP")
                    if s.state_at(sim) == "live"]
            return 200, _ok(data)
        spec = self._live(inst_id, sim, swap_only=True)
        return 200, _ok([self.market.funding_rate(spec.inst_id, sim)])

    def h_funding_history(self, params: dict[str, str], sim: int) -> tuple[int, dict[str, Any]]:
        inst_id = params.get("instId")
        if not inst_id:
            raise _missing("instId")
        spec = self.market.by_id.get(inst_id)
        if spec is None or not spec.is_swap or sim < spec.list_ms:
            raise NO_INSTRUMENT
        limit = _limit(params, 100, 400)
        rows = self.market.funding_history(inst_id, sim, after=_int_param(params, "after"),
                                           before=_int_param(params, "before"), limit=limit)
        return 200, _ok(rows)

    def h_open_interest(self, params: dict[str, str], sim: int) -> tuple[int, dict[str, Any]]:
        inst_type = params.get("instType")
        if not inst_type:
            raise _missing("instType")
        if inst_type in ("FUTURES", "OPTION"):
            return 200, _ok([], "cdm")
        if inst_type != "SWAP":
            raise _bad("instType")
        if params.get("instId"):
            specs = [self._live(params["instId"], sim, swap_only=True)]
        else:
            specs = [s for s in self.market.live_specs(sim, "SWAP") if s.state_at(sim) == "live"]
        data = [oi for s in specs if (oi := self.market.open_interest(s.inst_id, sim)) is not None]
        return 200, _ok(data, "cdm")
