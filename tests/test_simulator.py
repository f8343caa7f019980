"""The local OKX simulator (``okxsim``): the oracle other tests trust, so it is tested alone.

Checks that its payloads have the real OKX shapes (field sets of the sample payloads),
that REST pagination/limits/errors/rate limits behave like OKX, that its numbers are
internally consistent (bars = sums of 1m rows, volCcy = vol x ctVal), that it is
deterministic, and that WebSocket pushes agree with REST history.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import websockets

import okxsim
from okxsim.common import DAY_MS, HOUR_MS, MINUTE_MS, parse_time_ms
from okxsim.market import Market

REPO = Path(__file__).resolve().parent.parent
SEED = 7
HISTORY_START = "2024-02-01"
CLOCK_START = "2024-03-04T22:00:00Z"
CLOCK_MS = parse_time_ms(CLOCK_START)
SAMPLES = REPO / "tests" / "fixtures" / "okx-samples"


# --------------------------------------------------------------------------- helpers


def sample(name: str) -> Any:
    """A real OKX payload from tests/fixtures/okx-samples (provenance in its README)."""
    text = (SAMPLES / name).read_text()
    return [json.loads(x) for x in text.splitlines() if x.strip()] if name.endswith(".jsonl") else json.loads(text)


def get(sim: okxsim.Simulator, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
    r = requests.get(sim.rest + path, params=params, verify=sim.ca_file, timeout=10)
    return r.status_code, r.json()


def ok_data(sim: okxsim.Simulator, path: str, **params: Any) -> list[Any]:
    status, body = get(sim, path, **params)
    assert status == 200 and body["code"] == "0" and body["msg"] == "", body
    return body["data"]


def all_strings(d: dict[str, Any], allowed_non_str: frozenset[str] = frozenset()) -> bool:
    return all(isinstance(v, str) for k, v in d.items() if k not in allowed_non_str)


async def ws_session(url: str, ca_file: str, frames_out: list[str | dict], until, timeout: float = 10.0) -> list[Any]:
    """Connect, send ``frames_out``, collect parsed frames until ``until(collected)`` is true."""
    got: list[Any] = []
    async with websockets.connect(url, ssl=okxsim.client_context(ca_file), max_queue=None) as ws:
        for f in frames_out:
            await ws.send(f if isinstance(f, str) else json.dumps(f))
        deadline = time.monotonic() + timeout
        while not until(got):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; got {got[-5:]}")
            raw = await asyncio.wait_for(ws.recv(), remaining)
            got.append(raw if raw == "pong" else json.loads(raw))
    return got


def sub(channel: str, inst: str, req_id: str | None = None, op: str = "subscribe") -> dict[str, Any]:
    msg: dict[str, Any] = {"op": op, "args": [{"channel": channel, "instId": inst}]}
    if req_id is not None:
        msg["id"] = req_id
    return msg


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def oracle() -> Market:
    """An independent in-process Market with the server's arguments."""
    return Market(SEED, HISTORY_START, CLOCK_START)


@pytest.fixture(scope="module")
def sim():
    with okxsim.Simulator(seed=SEED, clock_start=CLOCK_START, speed=300, history_start=HISTORY_START) as s:
        yield s


@pytest.fixture()
def strict_sim():
    """A frozen-clock simulator for rate-limit/idle tests (its own limiter state)."""
    with okxsim.Simulator(seed=SEED, clock_start=CLOCK_START, speed=0, history_start=HISTORY_START,
                          push=okxsim.PushConfig(idle_timeout_s=0.4)) as s:
        yield s


# --------------------------------------------------------------------------- universe


def test_universe_shape(oracle: Market) -> None:
    at = CLOCK_MS
    swaps = oracle.instruments(at, "SWAP")
    linear_usdt = [i for i in swaps if i["ctType"] == "linear" and i["settleCcy"] == "USDT"]
    crypto = [i for i in linear_usdt if i["instCategory"] == "1" and not i["instId"].startswith(("USDC", "DAI", "USDE"))]
    assert len(linear_usdt) >= 80 and len(crypto) >= 75
    assert all(i["instId"].endswith("-USDT-SWAP") and i["ctValCcy"] == i["instId"].split("-")[0] for i in linear_usdt)
    assert {"0.01", "0.1", "1", "10", "100", "1000000"} <= {i["ctVal"] for i in linear_usdt}
    assert {"3", "4"} <= {i["instCategory"] for i in swaps}
    assert {"USDC-USDT-SWAP", "TSLA-USDT-SWAP"} <= {i["instId"] for i in swaps}
    inverse = [i for i in swaps if i["ctType"] == "inverse"]
    assert inverse and all(i["settleCcy"] == i["instId"].split("-")[0] and i["ctValCcy"] == "USD" for i in inverse)
    spot = oracle.instruments(at, "SPOT")
    assert {"BTC-USDT", "ETH-USDT"} <= {i["instId"] for i in spot}
    assert all(i["instType"] == "SPOT" and i["ctVal"] == "" and i["quoteCcy"] == "USDT" for i in spot)
    # lifecycle: listings inside the history, one delisting inside it, one preopen at the clock start
    hist = parse_time_ms(HISTORY_START)
    late = [s for s in oracle.specs if hist < s.list_ms <= at]
    delisted = [s for s in oracle.specs if s.delist_ms is not None and hist < s.delist_ms <= at]
    assert len(late) >= 3 and len(delisted) == 1
    assert any(i["state"] == "preopen" for i in swaps)


def test_turnover_heavy_tailed_and_ranks_churn(oracle: Market) -> None:
    crypto = [s for s in oracle.specs if s.kind == "crypto" and s.list_ms < parse_time_ms("2024-02-01")]
    days = ["2024-02-10", "2024-02-14", "2024-02-18", "2024-02-22"]
    vols = {d: {s.inst_id: oracle.day_quote_volume(s.inst_id, d) for s in crypto} for d in days}
    v = sorted(vols[days[0]].values(), reverse=True)
    assert v[0] > 50 * v[len(v) // 2], "turnover should be heavy-tailed"
    tops = [set(sorted(vols[d], key=vols[d].get, reverse=True)[:30]) for d in days]
    assert any(a != b for a, b in zip(tops, tops[1:])), "the top 30 never changes"


# --------------------------------------------------------------------------- REST shapes


def test_rest_shapes_match_samples(sim: okxsim.Simulator) -> None:
    non_str = frozenset({"instIdCode", "futureSettlement", "tradeQuoteCcyList", "upcChg"})
    # instruments: the 2025 SWAP key set plus documented keys only; same non-string types
    s2025 = sample("rest_instruments_swap_2025.json")["data"]
    known = set().union(*(d.keys() for d in s2025), *(d.keys() for d in sample("rest_instruments_docs.json")["data"]),
                        *(d.keys() for d in sample("rest_instruments_spot.json")["data"]))
    status, body = get(sim, "/api/v5/public/instruments", instType="SWAP")
    assert status == 200 and list(body) == ["code", "data", "msg"]  # this endpoint's real key order
    for inst in body["data"]:
        assert set(s2025[0]) <= set(inst) <= known, set(inst) ^ set(s2025[0])
        assert all_strings(inst, non_str) and isinstance(inst["instIdCode"], int)
        assert isinstance(inst["futureSettlement"], bool)
    spot = ok_data(sim, "/api/v5/public/instruments", instType="SPOT")
    assert spot and all(set(i) <= known for i in spot)
    assert ok_data(sim, "/api/v5/public/instruments", instType="FUTURES") == []
    assert ok_data(sim, "/api/v5/public/instruments", instType="OPTION", uly="BTC-USD") == []

    ticker_keys = set(sample("rest_tickers_swap_docs.json")["data"][0])
    tickers = ok_data(sim, "/api/v5/market/tickers", instType="SWAP")
    assert len(tickers) >= 80 and all(set(t) == ticker_keys and all_strings(t) for t in tickers)
    assert set(ok_data(sim, "/api/v5/market/ticker", instId="BTC-USDT")[0]) == set(sample("rest_ticker_spot.json")["data"][0])

    rows = ok_data(sim, "/api/v5/market/history-candles", instId="BTC-USDT-SWAP", bar="1H", limit=3)
    assert len(rows) == 3 and all(len(r) == len(sample("rest_history_candles.json")["data"][0]) == 9 for r in rows)
    assert all(isinstance(x, str) for r in rows for x in r)

    fr_keys = list(sample("rest_funding_rate.json")["data"][0])
    fr = ok_data(sim, "/api/v5/public/funding-rate", instId="BTC-USDT-SWAP")[0]
    assert list(fr) == fr_keys and all_strings(fr)
    assert all(list(x) == fr_keys for x in ok_data(sim, "/api/v5/public/funding-rate", instId="ANY"))
    frh_keys = list(sample("rest_funding_rate_history.json")["data"][0])
    frh = ok_data(sim, "/api/v5/public/funding-rate-history", instId="BTC-USDT-SWAP", limit=2)
    assert len(frh) == 2 and all(list(x) == frh_keys and all_strings(x) for x in frh)

    oi_keys = list(sample("rest_open_interest.json")["data"][0])
    oi = ok_data(sim, "/api/v5/public/open-interest", instType="SWAP", instId="BTC-USDT-SWAP")
    assert len(oi) == 1 and list(oi[0]) == oi_keys and all_strings(oi[0])
    assert len(ok_data(sim, "/api/v5/public/open-interest", instType="SWAP")) >= 80

    ts = ok_data(sim, "/api/v5/public/time")[0]["ts"]
    assert isinstance(ts, str) and abs(int(ts) - sim.sim_now_ms()) < 60_000


def test_rest_errors_like_okx(sim: okxsim.Simulator) -> None:
    for path, params in [("/api/v5/market/history-candles", {"instId": "NOPE-USDT-SWAP"}),
                         ("/api/v5/market/candles", {"instId": "NOPE-USDT-SWAP"}),
                         ("/api/v5/market/ticker", {"instId": "NOPE-USDT-SWAP"}),
                         ("/api/v5/public/funding-rate", {"instId": "NOPE-USDT-SWAP"}),
                         ("/api/v5/public/funding-rate", {"instId": "BTC-USDT"})]:
        status, body = get(sim, path, **params)
        assert status == 200 and body == {"code": "51001", "msg": "Instrument ID does not exist", "data": []}
    status, body = get(sim, "/api/v5/market/history-candles", instId="BTC-USDT-SWAP", bar="7m")
    assert body == {"code": "51000", "msg": "Parameter bar error", "data": []}
    status, body = get(sim, "/api/v5/market/candles")
    assert body["code"] == "50014" and body["data"] == []


# --------------------------------------------------------------------------- candles


def test_history_candles_pagination(sim: okxsim.Simulator, oracle: Market) -> None:
    inst = "ETH-USDT-SWAP"
    anchor = CLOCK_MS - 3 * HOUR_MS  # well inside closed history
    page = ok_data(sim, "/api/v5/market/history-candles", instId=inst, after=anchor, limit=100)
    ts = [int(r[0]) for r in page]
    assert len(page) == 100 and ts == sorted(ts, reverse=True) and ts[0] < anchor  # exclusive, newest first
    assert all(r[8] == "1" for r in page)
    # after=X excludes X itself; chaining pages has no gaps or overlaps (vs the oracle's day)
    page2 = ok_data(sim, "/api/v5/market/history-candles", instId=inst, after=ts[-1], limit=100)
    assert int(page2[0][0]) < ts[-1] and not set(ts) & {int(r[0]) for r in page2}
    truth = {int(r[0]): r for r in oracle.candles_1m(inst, anchor - anchor % DAY_MS)}
    for r in page + page2:
        assert truth[int(r[0])] == r
    # before=X → ts > X (exclusive); together with after → the open interval
    between = ok_data(sim, "/api/v5/market/history-candles", instId=inst, after=ts[0], before=ts[10])
    assert [int(r[0]) for r in between] == ts[1:10]
    # before alone returns the newest rows, not those right after X
    newest = ok_data(sim, "/api/v5/market/history-candles", instId=inst, before=ts[50], limit=5)
    assert int(newest[0][0]) > CLOCK_MS - MINUTE_MS and newest[0][8] == "0"
    # limit: default 100, clamped to 100 (history) / 300 (candles), like OKX
    assert len(ok_data(sim, "/api/v5/market/history-candles", instId=inst, after=anchor)) == 100
    assert len(ok_data(sim, "/api/v5/market/history-candles", instId=inst, after=anchor, limit=500)) == 100
    assert len(ok_data(sim, "/api/v5/market/candles", instId=inst, after=anchor, limit=500)) == 300
    # /market/candles only knows the last 1,440 bars
    old = ok_data(sim, "/api/v5/market/candles", instId=inst, after=CLOCK_MS - 2 * DAY_MS)
    assert old == []
    assert ok_data(sim, "/api/v5/market/history-candles", instId=inst, after=CLOCK_MS - 2 * DAY_MS)


def test_current_minute_is_partial(sim: okxsim.Simulator) -> None:
    rows = ok_data(sim, "/api/v5/market/candles", instId="BTC-USDT-SWAP", limit=3)
    now = sim.sim_now_ms()
    assert rows[0][8] == "0" and int(rows[0][0]) <= now < int(rows[0][0]) + MINUTE_MS + 5_000
    assert rows[1][8] == "1" and rows[2][8] == "1"


def test_bars_aggregate_1m_rows_exactly(oracle: Market) -> None:
    """1Dutc / 1H / 5m / 1D (UTC+8) bars are the sums/extremes of the 1m rows."""
    now = CLOCK_MS
    for inst in ("BTC-USDT-SWAP", "SHIB-USDT-SWAP", "BTC-USD-SWAP", "ETH-USDT", "USDC-USDT-SWAP"):
        day = parse_time_ms("2024-03-02")
        ones = oracle.candles_1m(inst, day) + oracle.candles_1m(inst, day + DAY_MS)

        def agg(lo: int, hi: int) -> list[str]:
            rs = [r for r in ones if lo <= int(r[0]) < hi]
            d = [Decimal(r[i]) for r in rs for i in (5, 6, 7)]
            sums = [sum(d[k::3], Decimal(0)) for k in range(3)]
            return [rs[0][1], str(max(Decimal(r[2]) for r in rs)), str(min(Decimal(r[3]) for r in rs)), rs[-1][4],
                    *sums]

        def check(bar: str, start: int, length: int) -> None:
            row = oracle.candles(inst, bar, now, after=start + 1, limit=1)[0]
            assert int(row[0]) == start and row[8] == "1"
            want = agg(start, start + length)
            got = [row[1], row[2], row[3], row[4], *(Decimal(x) for x in row[5:8])]
            assert [Decimal(x) for x in got[:4]] == [Decimal(x) for x in want[:4]] and got[4:] == want[4:], (inst, bar)

        check("1Dutc", day, DAY_MS)
        check("1H", day + 13 * HOUR_MS, HOUR_MS)
        check("5m", day + 7 * HOUR_MS + 35 * MINUTE_MS, 5 * MINUTE_MS)
        check("1D", day + 16 * HOUR_MS, DAY_MS)  # OKX's 1D opens at 16:00 UTC (UTC+8 midnight)
        assert oracle.day_quote_volume(inst, day) == pytest.approx(float(agg(day, day + DAY_MS)[6]))


def test_candle_numbers_are_consistent(oracle: Market) -> None:
    zero_seen = missing_seen = 0
    for spec in oracle.specs:
        if spec.list_ms > parse_time_ms("2024-02-20"):
            continue
        rows = oracle.candles_1m(spec.inst_id, "2024-02-20")
        missing_seen += len(rows) < 1440
        tick, lot = Decimal(10) ** spec.tick_exp, Decimal(10) ** spec.lot_exp
        for r in rows:
            o, h, l, c, vol, ccy, quote = (Decimal(x) for x in r[1:8])
            assert all(isinstance(x, str) for x in r) and "e" not in "".join(r).lower()
            assert l <= min(o, c) <= max(o, c) <= h and l > 0
            assert all(p % tick == 0 for p in (o, h, l, c)) and vol % lot == 0
            if vol == 0:
                zero_seen += 1
                assert o == h == l == c and ccy == quote == 0
                continue
            if spec.ct_type == "linear":
                assert ccy == vol * Decimal(spec.ct_val) and l <= quote / ccy <= h
            elif spec.ct_type == "inverse":
                assert quote == vol * Decimal(spec.ct_val) and l * Decimal("0.999") <= quote / ccy <= h * Decimal("1.001")
            else:
                assert ccy == quote and l <= quote / vol <= h
    assert zero_seen > 0 and missing_seen > 0


def test_market_is_deterministic() -> None:
    a, b = Market(SEED, HISTORY_START, CLOCK_START), Market(SEED, HISTORY_START, CLOCK_START)
    other = Market(SEED + 1, HISTORY_START, CLOCK_START)
    for inst in ("BTC-USDT-SWAP", "PEPE-USDT-SWAP", "BTC-USDT"):
        assert a.candles_1m(inst, "2024-02-15") == b.candles_1m(inst, "2024-02-15")
        assert a.candles_1m(inst, "2024-02-15") != other.candles_1m(inst, "2024-02-15")
    assert a.instruments(CLOCK_MS) == b.instruments(CLOCK_MS)
    assert a.funding_history("ETH-USDT-SWAP", CLOCK_MS) == b.funding_history("ETH-USDT-SWAP", CLOCK_MS)
    # a day generated alone equals the same day generated after others (no hidden state)
    c = Market(SEED, HISTORY_START, CLOCK_START)
    assert c.candles_1m("BTC-USDT-SWAP", "2024-02-16")[-1] == a.candles_1m("BTC-USDT-SWAP", "2024-02-16")[-1]


def test_random_walk_has_no_drift_at_any_volatility(oracle: Market) -> None:
    """No volatility premium: a coin's expected daily return is 0 whatever its volatility.

    A backtest earns simple returns (P[d+1]/P[d] - 1). A log-price walk with zero-mean steps has
    E[P[d+1]/P[d]] = exp(sigma^2/2) > 1, about +0.4 % a day at sigma 9 %, so picking the volatile
    coins would "beat" the market in every demo. The served daily closes must be martingales: the
    pooled mean daily return within 3 standard errors of 0, and no significant slope of a coin's
    mean return against its sigma. The statistics run on the daily anchors (the day's last close
    is the next anchor, checked on a few days below), 2,000 days of every crypto asset.
    """
    import numpy as np

    from okxsim.common import day_index

    ref = day_index(oracle.history_start_ms)
    days = np.arange(ref - 1000, ref + 1000)
    assets = {s.asset.name: s for s in oracle.specs if s.kind == "crypto" and s.inst_type == "SWAP"}
    sigmas, means, variances, rets = [], [], [], []
    for spec in assets.values():
        anchor = oracle._anchor(spec)
        r = np.exp(np.diff(anchor[days])) - 1.0
        assert np.isfinite(anchor[days]).all()
        sigmas.append(spec.asset.sigma_daily)
        means.append(r.mean())
        variances.append(r.var(ddof=1) / r.size)
        rets.append(r)
    pooled = np.concatenate(rets)
    se = pooled.std(ddof=1) / np.sqrt(pooled.size)
    assert abs(pooled.mean()) < 3 * se, f"mean daily return {pooled.mean():+.5f} (se {se:.5f})"
    # weighted least squares of the coins' mean returns on sigma: the slope is not significant
    x, y, w = np.array(sigmas), np.array(means), 1.0 / np.array(variances)
    xm, ym = np.average(x, weights=w), np.average(y, weights=w)
    slope = np.sum(w * (x - xm) * (y - ym)) / np.sum(w * (x - xm) ** 2)
    slope_se = 1.0 / np.sqrt(np.sum(w * (x - xm) ** 2))
    assert abs(slope) < 3 * slope_se, f"mean daily return rises with sigma: slope {slope:.4f} (se {slope_se:.4f})"
    assert len(set(sigmas)) > 5  # volatilities from calm to wild were compared

    # the anchors are what is served: a day's last close is the next day's anchor (1 tick, 1 minute)
    for spec in list(assets.values())[:8]:
        for day in (ref + 3, ref + 20):
            dd = oracle.day_data(spec, day)
            close = float(dd.c[-1]) * 10.0**spec.tick_exp
            assert close > 0
            assert abs(np.log(close) - oracle._anchor(spec)[day + 1]) < 6 * spec.asset.sigma_daily / np.sqrt(1440) + 1e-4


def test_listing_and_delisting(sim: okxsim.Simulator, oracle: Market) -> None:
    hist = parse_time_ms(HISTORY_START)
    gone = next(s for s in oracle.specs if s.delist_ms is not None)
    ids = {i["instId"] for i in ok_data(sim, "/api/v5/public/instruments", instType="SWAP")}
    assert gone.inst_id not in ids
    before_delist = {i["instId"]: i for i in oracle.instruments(gone.delist_ms - HOUR_MS)}
    assert before_delist[gone.inst_id]["expTime"] == str(gone.delist_ms)  # announced offline time
    rows = ok_data(sim, "/api/v5/market/history-candles", instId=gone.inst_id)
    assert rows and all(int(r[0]) < gone.delist_ms for r in rows) and int(rows[0][0]) >= gone.delist_ms - HOUR_MS
    assert rows == oracle.candles(gone.inst_id, "1m", sim.sim_now_ms(), limit=100)
    assert get(sim, "/api/v5/market/ticker", instId=gone.inst_id)[1]["code"] == "51001"

    late = next(s for s in oracle.specs if hist + DAY_MS < s.list_ms < CLOCK_MS)
    assert late.inst_id in ids and not any(i["instId"] == late.inst_id for i in oracle.instruments(late.preopen_ms - 1))
    assert {i["instId"]: i["state"] for i in oracle.instruments(late.list_ms - 1)}[late.inst_id] == "preopen"
    first = ok_data(sim, "/api/v5/market/history-candles", instId=late.inst_id, before=late.list_ms - DAY_MS,
                    after=late.list_ms + 10 * MINUTE_MS)
    assert first and min(int(r[0]) for r in first) >= late.list_ms
    assert oracle.candles_1m(late.inst_id, late.list_ms - DAY_MS) == []


def test_tickers_funding_open_interest(sim: okxsim.Simulator, oracle: Market) -> None:
    specs = {s.inst_id: s for s in oracle.specs}
    for t in ok_data(sim, "/api/v5/market/tickers", instType="SWAP"):
        s = specs[t["instId"]]
        if s.ct_type == "linear":  # SWAP: vol24h contracts, volCcy24h base coin
            assert Decimal(t["volCcy24h"]) == Decimal(t["vol24h"]) * Decimal(s.ct_val)
        assert Decimal(t["low24h"]) <= Decimal(t["last"]) <= Decimal(t["high24h"])
    now = sim.sim_now_ms()
    intervals = set()
    for f in ok_data(sim, "/api/v5/public/funding-rate", instId="ANY"):
        t1, t2 = int(f["fundingTime"]), int(f["nextFundingTime"])
        intervals.add(t2 - t1)
        assert now < t1 <= now + 8 * HOUR_MS + 60_000 and t1 % (t2 - t1) == 0
    assert intervals == {4 * HOUR_MS, 8 * HOUR_MS}
    hist = ok_data(sim, "/api/v5/public/funding-rate-history", instId="BTC-USDT-SWAP", limit=500)
    times = [int(r["fundingTime"]) for r in hist]
    assert 250 < len(times) <= 400 and times == sorted(times, reverse=True) and times[0] <= now
    assert {a - b for a, b in zip(times, times[1:])} == {8 * HOUR_MS}
    assert times[-1] >= now - 93 * DAY_MS  # about three months deep
    page = ok_data(sim, "/api/v5/public/funding-rate-history", instId="BTC-USDT-SWAP", after=times[3], before=times[6])
    assert [int(r["fundingTime"]) for r in page] == times[4:6]
    oi = ok_data(sim, "/api/v5/public/open-interest", instType="SWAP", instId="ETH-USDT-SWAP")[0]
    assert Decimal(oi["oiCcy"]) == Decimal(oi["oi"]) * Decimal("0.1") and Decimal(oi["oiUsd"]) > 0


# --------------------------------------------------------------------------- rate limits and faults


def test_rate_limit_429(strict_sim: okxsim.Simulator) -> None:
    s = requests.Session()
    replies = [s.get(strict_sim.rest + "/api/v5/market/history-candles", params={"instId": "BTC-USDT-SWAP"},
                     verify=strict_sim.ca_file, timeout=10) for _ in range(26)]
    assert [(r.status_code, r.json()["code"]) for r in replies[:20]] == [(200, "0")] * 20  # 20 req / 2 s
    for r in replies[20:]:  # well inside the same 2 s window
        assert r.status_code == 429 and r.json() == {"code": "50011", "msg": "Too Many Requests", "data": []}
    assert strict_sim.max_requests_per_window("history-candles", 2.0) == 20
    logged = strict_sim.requests("history-candles")
    assert len(logged) == 26 and sum(x.status == 429 for x in logged) == 6
    assert all(x.params == {"instId": "BTC-USDT-SWAP"} and x.sim_ms == CLOCK_MS for x in logged)
    # other endpoints have their own budgets
    assert s.get(strict_sim.rest + "/api/v5/market/candles", params={"instId": "BTC-USDT-SWAP"},
                 verify=strict_sim.ca_file).status_code == 200


def test_rest_faults(strict_sim: okxsim.Simulator) -> None:
    sim = strict_sim
    sim.fail_next("public/time", 2, status=500)
    assert [get(sim, "/api/v5/public/time")[0] for _ in range(3)] == [500, 500, 200]
    r = requests.post(sim.rest + "/sim/faults", json={"kind": "rest_error", "endpoint": "time", "count": 1, "status": 429},
                      verify=sim.ca_file)
    assert r.json()["ok"]
    assert get(sim, "/api/v5/public/time") == (429, {"code": "50011", "msg": "Too Many Requests", "data": []})
    sim.delay_next("public/time", 1, seconds=1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(sim.rest + "/api/v5/public/time", verify=sim.ca_file, timeout=0.3)
    state = requests.get(sim.rest + "/sim/state", verify=sim.ca_file).json()
    assert state["sim_now"] == CLOCK_MS and state["seed"] == SEED
    twin = Market(**state["market_args"])  # a CLI user can rebuild the exact oracle
    assert twin.candles("BTC-USDT-SWAP", "1H", CLOCK_MS, limit=3) == sim.market.candles("BTC-USDT-SWAP", "1H", CLOCK_MS, limit=3)
    assert twin.lifecycle() == state["lifecycle"]
    assert [x.fault for x in sim.requests("public/time")][:4] == ["500", "500", "", "429"]


def test_rest_answer_faults_empty_garbled_refused(sim: okxsim.Simulator) -> None:
    """Faults that answer HTTP 200 but not the truth, filtered by instId and `after` anchor."""
    path = "/api/v5/market/history-candles"
    day = parse_time_ms("2024-03-03")
    q = {"instId": "BTC-USDT-SWAP", "after": day}
    truth = ok_data(sim, path, **q)
    assert len(truth) == 100
    sim.empty_next("history-candles", 2, inst_id="BTC-USDT-SWAP", after=day)
    assert ok_data(sim, path, instId="ETH-USDT-SWAP", after=day)  # another instrument: unaffected
    assert ok_data(sim, path, instId="BTC-USDT-SWAP", after=day + 1)  # another anchor: unaffected
    assert [ok_data(sim, path, **q) for _ in range(3)] == [[], [], truth]  # the first 2 times only
    sim.garble_next("history-candles", 1, inst_id="ETH-USDT-SWAP")
    r = requests.get(sim.rest + path, params={"instId": "ETH-USDT-SWAP", "after": day}, verify=sim.ca_file, timeout=10)
    assert r.status_code == 200 and r.text.startswith('{"code":"0"')
    with pytest.raises(ValueError):
        r.json()
    sim.refuse_next("history-candles", 1, inst_id="SOL-USDT-SWAP", code="51001")
    assert get(sim, path, instId="SOL-USDT-SWAP", after=day) == (
        200, {"code": "51001", "msg": "Instrument ID does not exist", "data": []})
    assert ok_data(sim, path, instId="SOL-USDT-SWAP", after=day)
    faults = [x.fault for x in sim.requests("history-candles")[-9:]]
    assert faults == ["", "", "", "empty", "empty", "", "garbled", "refuse", ""]


# --------------------------------------------------------------------------- WebSocket


def test_ws_subscribe_acks_and_errors(sim: okxsim.Simulator) -> None:
    got = asyncio.run(ws_session(sim.ws_public, sim.ca_file,
                                 [sub("candle1m", "BTC-USDT-SWAP", "7"), sub("tickers", "NOPE-USDT-SWAP"),
                                  sub("funding-rate", "BTC-USDT-SWAP", "8"), "ping"],
                                 until=lambda g: "pong" in g and sum("event" in x for x in g if isinstance(x, dict)) >= 3))
    events = [x for x in got if isinstance(x, dict) and "event" in x]
    err64001 = events[0]
    assert list(err64001) == ["id", "event", "msg", "code", "connId"] and err64001["code"] == "64001"
    assert err64001["msg"].startswith("This channel has been migrated to the '/business' URL. "
                                      "Please subscribe using the new URL.")
    assert re.fullmatch(r"[0-9a-f]{8}", err64001["connId"])
    assert events[1]["code"] == "60018" and "instId:NOPE-USDT-SWAP doesn't exist" in events[1]["msg"]
    assert events[2] == {"id": "8", "event": "subscribe", "arg": {"channel": "funding-rate", "instId": "BTC-USDT-SWAP"},
                         "connId": err64001["connId"]}
    pushes = [x for x in got if isinstance(x, dict) and "data" in x]
    assert pushes and list(pushes[0]["data"][0]) == list(sample("ws_funding_rate.jsonl")[5]["data"][0])

    got = asyncio.run(ws_session(sim.ws_business, sim.ca_file,
                                 [sub("open-interest", "BTC-USDT-SWAP"), sub("candle1m", "BTC-USDT-SWAP"),
                                  sub("candle1m", "BTC-USDT-SWAP", op="unsubscribe")],
                                 until=lambda g: any(x.get("event") == "unsubscribe" for x in g)))
    assert got[0]["code"] == "64002" and got[0]["event"] == "error"
    assert got[1]["event"] == "subscribe" and "id" not in got[1]
    assert got[-1] == {"event": "unsubscribe", "arg": {"channel": "candle1m", "instId": "BTC-USDT-SWAP"},
                       "connId": got[0]["connId"]}


def test_ws_open_interest_and_tickers_shapes(sim: okxsim.Simulator) -> None:
    got = asyncio.run(ws_session(sim.ws_public, sim.ca_file,
                                 [sub("open-interest", "BTC-USDT-SWAP"), sub("tickers", "BTC-USDT-SWAP")],
                                 until=lambda g: sum("data" in x for x in g) >= 2))
    data = {x["arg"]["channel"]: x["data"][0] for x in got if "data" in x}
    assert list(data["open-interest"]) == list(sample("ws_docs_examples.jsonl")[8]["data"][0])
    assert set(data["tickers"]) == set(sample("ws_tickers.jsonl")[14]["data"][0])


def test_ws_final_candles_equal_rest(sim: okxsim.Simulator, oracle: Market) -> None:
    """Several partials per minute, then exactly one confirm "1" push equal to REST history."""
    def enough(g: list[Any]) -> bool:
        finals = [x for x in g if "data" in x and x["data"][0][8] == "1"]
        return (sum(x["arg"]["channel"] == "candle1m" for x in finals) >= 3
                and any(x["arg"]["channel"] == "candle5m" for x in finals))

    got = asyncio.run(ws_session(sim.ws_business, sim.ca_file,
                                 [{"op": "subscribe", "args": [{"channel": "candle1m", "instId": "BTC-USDT-SWAP"},
                                                               {"channel": "candle1m", "instId": "SHIB-USDT-SWAP"},
                                                               {"channel": "candle5m", "instId": "ETH-USDT-SWAP"}]}],
                                 until=enough, timeout=15))
    pushes = [x for x in got if "data" in x]
    finals = [x for x in pushes if x["data"][0][8] == "1"]
    seen: set[tuple[str, str, str]] = set()
    for f in finals:
        row, inst, bar = f["data"][0], f["arg"]["instId"], f["arg"]["channel"][6:]
        key = (inst, bar, row[0])
        assert key not in seen, "a final candle was pushed twice"
        seen.add(key)
        rest = ok_data(sim, "/api/v5/market/history-candles", instId=inst, bar=bar, after=int(row[0]) + 1, limit=1)
        assert rest[0] == row
        assert oracle.candles(inst, bar, sim.sim_now_ms(), after=int(row[0]) + 1, limit=1)[0] == row
        partials = [x["data"][0] for x in pushes if x["arg"] == f["arg"] and x["data"][0][0] == row[0]
                    and x["data"][0][8] == "0"]
        for p in partials:  # partial values never exceed the final ones
            assert p[1] == row[1] and Decimal(p[2]) <= Decimal(row[2]) and Decimal(p[3]) >= Decimal(row[3])
            assert Decimal(p[5]) <= Decimal(row[5])
    btc_minutes = sorted(int(f["data"][0][0]) for f in finals if f["arg"]["instId"] == "BTC-USDT-SWAP")
    assert all(b - a == MINUTE_MS for a, b in zip(btc_minutes, btc_minutes[1:]))
    partial_counts = [sum(1 for x in pushes if x["arg"]["instId"] == "BTC-USDT-SWAP" and x["data"][0][0] == str(m)
                          and x["data"][0][8] == "0") for m in btc_minutes[1:]]
    assert min(partial_counts) >= 1 and sorted(partial_counts)[len(partial_counts) // 2] >= 2, partial_counts


def test_ws_faults_malformed_drop_silence(sim: okxsim.Simulator) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with websockets.connect(sim.ws_business, ssl=okxsim.client_context(sim.ca_file)) as ws:
            await ws.send(json.dumps(sub("candle1m", "BTC-USDT-SWAP")))
            await ws.recv()
            await asyncio.get_running_loop().run_in_executor(None, sim.send_malformed)
            frames = [await asyncio.wait_for(ws.recv(), 5) for _ in range(3)]
            out["malformed"] = sum(1 for f in frames if _is_bad_json(f))
            await asyncio.get_running_loop().run_in_executor(None, sim.silence, 0.6)
            while True:  # drain what was queued before the silence began
                try:
                    await asyncio.wait_for(ws.recv(), 0.15)
                except asyncio.TimeoutError:
                    break
            t0 = time.monotonic()
            await asyncio.wait_for(ws.recv(), 5)
            out["silent_for"] = time.monotonic() - t0
            await asyncio.get_running_loop().run_in_executor(None, sim.burst, 400.0, 0.5)
            t0, n = time.monotonic(), 0
            while time.monotonic() - t0 < 0.5:
                await asyncio.wait_for(ws.recv(), 5)
                n += 1
            out["burst"] = n
            await asyncio.get_running_loop().run_in_executor(None, sim.drop_ws)
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed:
                out["dropped"] = True
        return out

    out = asyncio.run(scenario())
    assert out["malformed"] == 1 and out["silent_for"] >= 0.3 and out["dropped"]
    assert out["burst"] > 100  # normal traffic for one instrument is a few frames per second


def _is_bad_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


def test_ws_refuses_a_whole_request_naming_an_unknown_or_delisted_instid(sim: okxsim.Simulator) -> None:
    """OKX answers a subscribe request that names one unknown instId with one 60018 error for that
    instId and subscribes none of its args; the others must be sent again without it."""
    def ask(frames: list[dict[str, Any]], n_events: int) -> list[Any]:
        return asyncio.run(ws_session(sim.ws_business, sim.ca_file, frames,
                                      until=lambda g: sum("event" in x for x in g) >= n_events))

    batch = {"id": "41", "op": "subscribe", "args": [{"channel": "candle1m", "instId": "BTC-USDT-SWAP"},
                                                     {"channel": "candle1m", "instId": "NOPE-USDT-SWAP"},
                                                     {"channel": "candle1m", "instId": "ETH-USDT-SWAP"}]}
    rest = {"id": "42", "op": "subscribe", "args": [batch["args"][0], batch["args"][2]]}
    got = ask([batch, rest], 3)
    events = [x for x in got if "event" in x]
    assert list(events[0]) == ["id", "event", "msg", "code", "connId"]  # the real frames' key order
    assert events[0]["id"] == "41" and events[0]["code"] == "60018"
    assert events[0]["msg"] == ("Wrong URL or channel:candle1m, instId:NOPE-USDT-SWAP doesn't exist. Please use the "
                                "correct URL, channel and parameters referring to API document.")
    assert [(e["id"], e["event"], e["arg"]["instId"]) for e in events[1:]] == [
        ("42", "subscribe", "BTC-USDT-SWAP"), ("42", "subscribe", "ETH-USDT-SWAP")]
    refused = [e for e in sim.ws_events("refused") if e["conn_id"] == events[0]["connId"]]
    assert refused and refused[0]["inst"] == "NOPE-USDT-SWAP" and len(refused[0]["args"]) == 3

    # delisted after the client read the instrument list: REST still lists it, the WebSocket refuses it
    try:
        sim.refuse_ws(["SOL-USDT-SWAP"])
        assert "SOL-USDT-SWAP" in {i["instId"] for i in ok_data(sim, "/api/v5/public/instruments", instType="SWAP")}
        assert sim.state()["ws_faults"] == {"refused_insts": ["SOL-USDT-SWAP"]}
        got = ask([{"op": "subscribe", "args": [{"channel": "candle1m", "instId": "SOL-USDT-SWAP"},
                                                {"channel": "candle1m", "instId": "BTC-USDT-SWAP"}]}], 1)
        assert got[0]["event"] == "error" and "instId:SOL-USDT-SWAP doesn't exist" in got[0]["msg"]
        assert "id" not in got[0] and not any(x.get("event") == "subscribe" for x in got)
    finally:
        sim.clear_faults()
    assert sim.state()["ws_faults"] == {"refused_insts": []}


def test_ws_service_upgrade_notice_then_close(sim: okxsim.Simulator) -> None:
    """64008 exactly as OKX sends it, then the connection is cut after the delay unless the client left."""
    async def scenario() -> dict[str, Any]:
        ctx = okxsim.client_context(sim.ca_file)
        out: dict[str, Any] = {}
        async with websockets.connect(sim.ws_business, ssl=ctx) as stays, \
                websockets.connect(sim.ws_public, ssl=ctx) as leaves:
            await stays.send(json.dumps(sub("candle1m", "BTC-USDT-SWAP")))
            await leaves.send(json.dumps(sub("tickers", "BTC-USDT-SWAP")))
            out["acks"] = [json.loads(await stays.recv()), json.loads(await leaves.recv())]
            loop = asyncio.get_running_loop()
            out["noticed"] = await loop.run_in_executor(None, lambda: sim.upgrade_notice("*", close_after_s=0.6))
            t0 = time.monotonic()
            for ws, key in ((leaves, "notice_public"), (stays, "notice_business")):
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if frame.get("event") == "notice":
                        out[key] = frame
                        break
            await leaves.close()  # reconnects first, as the notice asks: never cut
            try:
                while True:
                    await asyncio.wait_for(stays.recv(), 5)  # candles keep coming until the cut
            except websockets.ConnectionClosed:
                out["cut_after"] = time.monotonic() - t0
        return out

    out = asyncio.run(scenario())
    expected = sample("ws_events.jsonl")[10]
    for key in ("notice_public", "notice_business"):
        frame = out[key]
        assert list(frame) == list(expected) and {**frame, "connId": expected["connId"]} == expected
    business_id, public_id = out["acks"][0]["connId"], out["acks"][1]["connId"]
    assert sorted(out["noticed"]) == sorted([business_id, public_id])
    assert 0.5 <= out["cut_after"] < 3.0, out["cut_after"]
    cut = {e["conn_id"] for e in sim.ws_events("upgrade_close")}
    assert business_id in cut and public_id not in cut


def test_ws_idle_close_4004(strict_sim: okxsim.Simulator) -> None:
    async def idle() -> int:
        async with websockets.connect(strict_sim.ws_public, ssl=okxsim.client_context(strict_sim.ca_file)) as ws:
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed as e:
                return e.rcvd.code if e.rcvd else -1
        return 0

    assert asyncio.run(idle()) == 4004


def test_pusher_keeps_up_at_600x() -> None:
    """100 candle subscriptions at 600x: one final per instrument and minute, on time."""
    with okxsim.Simulator(seed=SEED, clock_start=CLOCK_START, speed=600, history_start=HISTORY_START) as s:
        now = s.sim_now_ms()
        insts = [x.inst_id for x in s.market.specs if x.state_at(now) == "live"][:100]

        async def run() -> dict[str, list[int]]:
            finals: dict[str, list[int]] = {}
            async with websockets.connect(s.ws_business, ssl=okxsim.client_context(s.ca_file), max_queue=None) as ws:
                for i in range(0, len(insts), 20):
                    await ws.send(json.dumps({"op": "subscribe",
                                              "args": [{"channel": "candle1m", "instId": x} for x in insts[i:i + 20]]}))
                t_end = time.monotonic() + 2.5
                while time.monotonic() < t_end:
                    try:
                        d = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                    except asyncio.TimeoutError:
                        continue
                    if "data" in d and d["data"][0][8] == "1":
                        finals.setdefault(d["arg"]["instId"], []).append(int(d["data"][0][0]))
            return finals

        finals = asyncio.run(run())
        stats = s.state()["pusher"]
    assert len(finals) >= 0.95 * len(insts)
    for inst, minutes in finals.items():
        assert len(minutes) == len(set(minutes)), inst
        assert max(minutes) - min(minutes) >= 15 * MINUTE_MS
    # never two minutes behind (typically < 2 s simulated; at 600x one simulated minute is only
    # 0.1 s of real time, which a loaded 2-core machine can take from the pusher's thread)
    assert stats["max_final_lag_sim_ms"] < 120_000


# --------------------------------------------------------------------------- process and isolation


def test_cli_ready_line_and_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "okxsim", "--host", "127.0.0.1", "--port", "0", "--seed", "7",
                             "--clock-start", CLOCK_START, "--speed", "300", "--history-start", HISTORY_START,
                             "--cert-dir", str(tmp_path / "certs"), "--n-swaps", "80"],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        info = json.loads(line)
        assert set(info) == {"rest", "ws_public", "ws_business", "ca_file", "pid"} and info["pid"] == proc.pid
        port = info["rest"].rsplit(":", 1)[1]
        assert info["ws_public"] == f"wss://127.0.0.1:{port}/ws/v5/public"
        assert info["ws_business"] == f"wss://127.0.0.1:{port}/ws/v5/business"
        assert Path(info["ca_file"]).is_absolute() and Path(info["ca_file"]).parent == tmp_path / "certs"
        body = requests.get(info["rest"] + "/api/v5/public/time", verify=info["ca_file"], timeout=10).json()
        assert body["code"] == "0"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == ""  # exactly one line on stdout
    finally:
        if proc.poll() is None:
            proc.kill()


def test_okxsim_never_imports_the_product() -> None:
    for path in (REPO / "okxsim").glob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(feeder|collector)\b", text, re.M), path
    out = subprocess.run([sys.executable, "-c", "import sys, okxsim, okxsim.__main__; "
                          "print(sorted(m for m in sys.modules if m.split('.')[0] in ('feeder', 'collector')))"],
                         cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == "[]", out.stderr


# --------------------------------------------------------------------------- historical-data archive

LISTING = "/api/v5/public/market-data-history"
ARCHIVE_HEADER = "instrument_name,open,high,low,close,vol,vol_ccy,vol_quote,open_time,confirm"
UTC8_MS = 8 * HOUR_MS


def utc8_midnight(day: str) -> int:
    """UTC+8 midnight of ``day`` in UTC epoch ms (OKX's archive dates are UTC+8)."""
    return parse_time_ms(day) - UTC8_MS


@pytest.fixture(scope="module")
def archive_sim():
    """A frozen-clock simulator without rate limits for the archive (limits: own test)."""
    with okxsim.Simulator(seed=SEED, clock_start=CLOCK_START, speed=0, history_start=HISTORY_START,
                          rate_limit_scale=0) as s:
        yield s


def listing(sim: okxsim.Simulator, **params: Any) -> list[dict[str, Any]]:
    """The ``details`` of one listing answer (module 2), [] when nothing matched."""
    data = ok_data(sim, LISTING, **{"module": "2", **params})
    assert len(data) <= 1
    return data[0]["details"] if data else []


def fetch_zip(sim: okxsim.Simulator, url: str, **headers: str) -> requests.Response:
    return requests.get(url, verify=sim.ca_file, timeout=10, headers=headers)


def zip_rows(content: bytes) -> tuple[str, list[str], list[list[str]]]:
    """(member name, header, rows) of an archive zip read with zipfile/csv, checking its CRC."""
    import csv
    import io
    import zipfile
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        assert zf.testzip() is None
        [name] = zf.namelist()
        text = zf.read(name).decode("utf-8")
    assert "\r" not in text and text.endswith("\n")
    rows = list(csv.reader(io.StringIO(text)))
    return name, rows[0], rows[1:]


def rest_rows_as_csv(sim: okxsim.Simulator, inst: str, lo: int, hi: int) -> list[list[str]]:
    """REST history-candles rows with open time in [lo, hi), oldest first, in the archive's column order."""
    rows: list[list[str]] = []
    after = hi
    while True:
        page = ok_data(sim, "/api/v5/market/history-candles", instId=inst, after=after, before=lo - 1, limit=100)
        if not page:
            break
        rows += page
        after = int(page[-1][0])
    return [[inst, *r[1:8], r[0], r[8]] for r in reversed(rows)]


def test_archive_listing_shape_and_t_plus_2(archive_sim: okxsim.Simulator) -> None:
    sim = archive_sim
    # the clock reads 2024-03-05 06:00 UTC+8: T+2 means the newest daily file is 2024-03-03
    details = listing(sim, instType="SWAP", dateAggrType="daily", begin=parse_time_ms("2024-02-25"),
                      end=parse_time_ms("2024-03-05T12:00:00Z"), instFamilyList="BTC-USDT,ETH-USDT")
    assert [d["instId"] for d in details] == ["BTC-USDT-SWAP", "ETH-USDT-SWAP"]
    days = [f"2024-03-0{i}" for i in (3, 2, 1)] + [f"2024-02-{i}" for i in (29, 28, 27, 26, 25)]
    for d in details:
        assert set(d) == {"instId", "instFamily", "instType", "dateRangeStart", "dateRangeEnd", "groupSizeMB",
                          "groupDetails"}
        assert d["instFamily"] == d["instId"][: -len("-SWAP")] and d["instType"] == "SWAP"
        files = d["groupDetails"]
        assert [f["filename"] for f in files] == [f"{d['instId']}-candlesticks-{day}.zip" for day in days]
        assert [f["dateTs"] for f in files] == [str(utc8_midnight(day)) for day in days]  # newest first
        assert d["dateRangeEnd"] == files[0]["dateTs"] and d["dateRangeStart"] == files[-1]["dateTs"]
        for f, day in zip(files, days):
            assert set(f) == {"filename", "dateTs", "sizeMB", "url"} and re.fullmatch(r"\d+\.\d{4}", f["sizeMB"])
            assert f["url"] == (f"{sim.rest}/cdn/okex/traderecords/candlesticks/daily/{day.replace('-', '')}/"
                                f"{f['filename']}")
        assert abs(float(d["groupSizeMB"]) - sum(float(f["sizeMB"]) for f in files)) < 0.001
        got = fetch_zip(sim, files[0]["url"])
        assert got.status_code == 200 and got.headers["Content-Type"] == "application/zip"
        assert int(got.headers["Content-Length"]) == len(got.content)
        assert f"{len(got.content) / 1_048_576:.4f}" == files[0]["sizeMB"]
    # 2024-03-04 has candles (REST serves them) but is not published before 2024-03-06 00:00 UTC+8
    assert ok_data(sim, "/api/v5/market/history-candles", instId="BTC-USDT-SWAP", after=parse_time_ms("2024-03-04"))
    assert fetch_zip(sim, sim.archive_url("BTC-USDT-SWAP", "2024-03-04")).status_code == 404
    # monthly: February (UTC+8) is out two days after it ended; March is not; January had no candles
    monthly = listing(sim, instType="SWAP", dateAggrType="monthly", begin=parse_time_ms("2023-11-01"),
                      end=parse_time_ms("2024-03-04"), instFamilyList="BTC-USDT")
    assert [f["filename"] for f in monthly[0]["groupDetails"]] == ["BTC-USDT-SWAP-candlesticks-2024-02.zip"]
    assert monthly[0]["groupDetails"][0]["dateTs"] == str(utc8_midnight("2024-02-01"))
    assert "/monthly/202402/" in monthly[0]["groupDetails"][0]["url"]


def test_archive_daily_file_is_the_utc8_day_of_rest_rows(archive_sim: okxsim.Simulator) -> None:
    sim = archive_sim
    resp = fetch_zip(sim, sim.archive_url("ETH-USDT-SWAP", "2024-03-03"))
    name, header, rows = zip_rows(resp.content)
    assert name == "ETH-USDT-SWAP-candlesticks-2024-03-03.csv" and header == ARCHIVE_HEADER.split(",")
    lo, hi = parse_time_ms("2024-03-02T16:00:00Z"), parse_time_ms("2024-03-03T16:00:00Z")
    assert rows[0][8] == str(lo) and int(rows[-1][8]) < hi  # the UTC+8 day, oldest first
    assert rows == rest_rows_as_csv(sim, "ETH-USDT-SWAP", lo, hi)  # the same strings as REST, gaps omitted alike
    assert 1400 < len(rows) <= 1440
    assert fetch_zip(sim, resp.url).content == resp.content  # byte-identical every time


def test_archive_rows_equal_market_rows_for_every_kind(oracle: Market) -> None:
    """The archive's column-wise formatter gives Market.format_row's strings (linear, inverse, spot, tiny prices)."""
    from okxsim.archive import csv_rows
    lo = utc8_midnight("2024-02-20")
    for inst in ("BTC-USDT-SWAP", "PEPE-USDT-SWAP", "BTC-USD-SWAP", "BTC-USDT", "USDC-USDT", "XAU-USDT-SWAP"):
        want = [r for day in ("2024-02-19", "2024-02-20") for r in oracle.candles_1m(inst, day)
                if lo <= int(r[0]) < lo + DAY_MS]
        lines = csv_rows(oracle, inst, lo, lo + DAY_MS).decode().splitlines()
        assert lines == [",".join([inst, *r[1:8], r[0], "1"]) for r in want], inst


def test_archive_monthly_file_is_the_days_concatenated(archive_sim: okxsim.Simulator) -> None:
    sim = archive_sim
    inst = "SOL-USDT-SWAP"
    name, header, rows = zip_rows(fetch_zip(sim, sim.archive_url(inst, "2024-02")).content)
    assert name == f"{inst}-candlesticks-2024-02.csv" and header == ARCHIVE_HEADER.split(",")
    days: list[list[str]] = []
    for i in range(1, 30):
        days += zip_rows(fetch_zip(sim, sim.archive_url(inst, f"2024-02-{i:02d}")).content)[2]
    assert rows == days and int(rows[-1][8]) < utc8_midnight("2024-03-01")
    # history starts 2024-02-01 00:00Z (08:00 UTC+8): the month's first row is the first REST candle
    assert rows[0][8] == str(parse_time_ms("2024-02-01"))


def test_archive_20_period_rule_keeps_the_end(archive_sim: okxsim.Simulator) -> None:
    from okxsim.archive import periods_for
    details = listing(archive_sim, instType="SWAP", dateAggrType="daily", begin=parse_time_ms("2024-01-01"),
                      end=parse_time_ms("2024-03-02T17:00:00Z"), instFamilyList="BTC-USDT")  # UTC+8: 2024-03-03
    names = [f["filename"][-14:-4] for f in details[0]["groupDetails"]]
    assert len(names) == 20 and names[0] == "2024-03-03" and names[-1] == "2024-02-13"  # no error, closest to end
    months = periods_for("monthly", parse_time_ms("2020-01-01"), parse_time_ms("2024-03-01"))
    assert len(months) == 20 and months[0].label == "2024-03" and months[-1].label == "2022-08"


def test_archive_listing_rate_limit_and_rest_faults(strict_sim: okxsim.Simulator) -> None:
    sim = strict_sim
    q = {"module": "2", "instType": "SWAP", "dateAggrType": "daily", "begin": str(parse_time_ms("2024-03-01")),
         "end": str(parse_time_ms("2024-03-02")), "instFamilyList": "DOGE-USDT"}
    s = requests.Session()
    replies = [s.get(sim.rest + LISTING, params=q, verify=sim.ca_file, timeout=10) for _ in range(7)]
    assert [r.status_code for r in replies] == [200] * 5 + [429] * 2  # 5 requests / 2 s per IP
    assert replies[-1].json() == {"code": "50011", "msg": "Too Many Requests", "data": []}
    assert [r.status for r in sim.requests("market-data-history")] == [200] * 5 + [429] * 2
    r = requests.post(sim.rest + "/sim/faults", json={"kind": "rest_error", "endpoint": "market-data-history",
                                                       "count": 1, "status": 500}, verify=sim.ca_file, timeout=10)
    assert r.json()["ok"]
    assert s.get(sim.rest + LISTING, params=q, verify=sim.ca_file, timeout=10).status_code == 500
    assert [r.fault for r in sim.requests("market-data-history")][-1] == "500"


def test_archive_bandwidth_throttle() -> None:
    from okxsim.__main__ import parse_args
    assert parse_args(["--archive-bandwidth-mbps", "2.5"]).archive_bandwidth_mbps == 2.5
    with okxsim.Simulator(seed=SEED, clock_start=CLOCK_START, speed=0, history_start=HISTORY_START, n_swaps=10,
                          archive_bandwidth_bps=100_000) as sim:
        url = sim.archive_url("BTC-USDT-SWAP", "2024-02-20")
        fetch_zip(sim, url, Range="bytes=0-0")  # builds the file
        t0 = time.monotonic()
        size = len(fetch_zip(sim, url).content)
        elapsed = time.monotonic() - t0
    assert size > 30_000 and size / 100_000 * 0.9 <= elapsed < size / 100_000 + 2.0


def test_archive_range_requests_404_and_request_log(archive_sim: okxsim.Simulator) -> None:
    sim = archive_sim
    url = sim.archive_url("BTC-USDT-SWAP", "2024-02-20")
    full = fetch_zip(sim, url).content
    part = fetch_zip(sim, url, Range="bytes=1000-")
    assert part.status_code == 206 and part.content == full[1000:]
    assert part.headers["Content-Range"] == f"bytes 1000-{len(full) - 1}/{len(full)}"
    assert int(part.headers["Content-Length"]) == len(full) - 1000
    assert fetch_zip(sim, url, Range=f"bytes={len(full)}-").status_code == 416
    for missing in (sim.archive_url("BTC-USDT-SWAP", "2024-01-20"),   # before the history: no candles
                    sim.archive_url("NOPE-USDT-SWAP", "2024-02-20"),  # no such instrument
                    url.replace("/daily/20240220/", "/daily/20240221/")):  # directory and name disagree
        assert fetch_zip(sim, missing).status_code == 404
    logged = [r for r in sim.requests("archive-file") if r.params["path"].endswith("BTC-USDT-SWAP-candlesticks-2024-02-20.zip")]
    assert [(r.status, r.params["range"], r.params["bytes"]) for r in logged[:3]] == [
        (200, "", str(len(full))), (206, "bytes=1000-", str(len(full) - 1000)), (416, f"bytes={len(full)}-", "0")]


def test_archive_faults(archive_sim: okxsim.Simulator) -> None:
    import zipfile
    sim = archive_sim
    inst, day = "ADA-USDT-SWAP", "2024-02-27"
    url = sim.archive_url(inst, day)
    other = sim.archive_url("ETH-USDT-SWAP", day)
    good = fetch_zip(sim, url).content
    _, header, rows = zip_rows(good)

    def post(spec: dict[str, Any]) -> None:
        r = requests.post(sim.rest + "/sim/faults", json=spec, verify=sim.ca_file, timeout=10)
        assert r.status_code == 200 and r.json()["ok"], r.text

    def files_listed() -> list[str]:
        d = listing(sim, instType="SWAP", dateAggrType="daily", begin=parse_time_ms("2024-02-26"),
                    end=parse_time_ms("2024-02-28"), instFamilyList="ADA-USDT")
        return [f["filename"] for f in d[0]["groupDetails"]]

    try:
        post({"kind": "archive_error", "count": 2, "status": 429, "inst_id": inst, "period": day})
        assert fetch_zip(sim, other).status_code == 200  # another instrument: unaffected
        assert [fetch_zip(sim, url).status_code for _ in range(3)] == [429, 429, 200]
        sim.archive_error(1, 403)
        assert fetch_zip(sim, other).status_code == 403 and fetch_zip(sim, other).status_code == 200
        sim.archive_error(1, 500, inst_id=inst, period="2024-02")  # a monthly file only
        assert fetch_zip(sim, url).status_code == 200
        assert fetch_zip(sim, sim.archive_url(inst, "2024-02")).status_code == 500

        sim.archive_truncated(1, inst_id=inst)
        cut = fetch_zip(sim, url)
        assert cut.status_code == 200 and cut.content == good[: len(good) // 2]
        assert int(cut.headers["Content-Length"]) == len(good) // 2
        with pytest.raises(zipfile.BadZipFile):
            zip_rows(cut.content)
        post({"kind": "archive_truncated", "count": 1, "period": day})
        assert len(fetch_zip(sim, other).content) < len(fetch_zip(sim, other).content)

        assert f"{inst}-candlesticks-{day}.zip" in files_listed()
        post({"kind": "archive_missing", "inst_id": inst, "period": day})
        assert f"{inst}-candlesticks-{day}.zip" not in files_listed() and fetch_zip(sim, url).status_code == 404
        sim.archive_missing(inst, "2024-02-26")
        assert files_listed() == [f"{inst}-candlesticks-2024-02-28.zip"]
        sim.clear_faults()
        assert len(files_listed()) == 3 and fetch_zip(sim, url).content == good

        sim.archive_header(inst, day, "ts,o,h,l,c")
        _, h2, rows2 = zip_rows(fetch_zip(sim, url).content)
        assert h2 == ["ts", "o", "h", "l", "c"] and rows2 == rows
        post({"kind": "archive_header", "inst_id": inst, "period": day, "header": "a,b,c"})
        assert zip_rows(fetch_zip(sim, url).content)[1] == ["a", "b", "c"]

        minute = int(rows[100][8])
        post({"kind": "archive_unconfirmed", "inst_id": inst, "period": day, "minute": minute})
        sim.archive_unconfirmed(inst, day, int(rows[200][8]))
        _, _, rows3 = zip_rows(fetch_zip(sim, url).content)
        assert [i for i, r in enumerate(rows3) if r[9] == "0"] == [100, 200]
        assert [r[:9] for r in rows3] == [r[:9] for r in rows]
        bad = requests.post(sim.rest + "/sim/faults", json={"kind": "archive_missing", "inst_id": inst},
                            verify=sim.ca_file, timeout=10)
        assert bad.status_code == 400 and "period" in bad.json()["error"]
        faults = {r.fault for r in sim.requests("archive-file") if r.params["path"].endswith(f"{inst}-candlesticks-{day}.zip")}
        assert faults == {"", "archive_error", "archive_truncated"}
    finally:
        sim.clear_faults()
    assert fetch_zip(sim, url).content == good  # cleared: the original bytes again
    assert sim.state()["archive_faults"] == {"errors": [], "truncations": [], "missing": [], "headers": {},
                                             "unconfirmed": {}}


def test_archive_spot_listing_errors_and_delisted_instrument(archive_sim: okxsim.Simulator, oracle: Market) -> None:
    sim = archive_sim
    q = {"dateAggrType": "daily", "begin": parse_time_ms("2024-03-01"), "end": parse_time_ms("2024-03-02")}
    spot = listing(sim, instType="SPOT", instIdList="BTC-USDT,ETH-USDT", **q)
    assert [(d["instId"], d["instFamily"], d["instType"]) for d in spot] == [("BTC-USDT", "", "SPOT"),
                                                                           ("ETH-USDT", "", "SPOT")]
    assert [f["filename"] for f in spot[0]["groupDetails"]] == ["BTC-USDT-candlesticks-2024-03-02.zip",
                                                               "BTC-USDT-candlesticks-2024-03-01.zip"]
    assert zip_rows(fetch_zip(sim, spot[0]["groupDetails"][0]["url"]).content)[2][0][0] == "BTC-USDT"
    base = {"module": "2", "instType": "SWAP", "dateAggrType": "daily", "begin": q["begin"], "end": q["end"],
            "instFamilyList": "BTC-USDT"}
    for change, code in [({"begin": None}, "50014"), ({"instFamilyList": None}, "50014"),
                         ({"module": "9"}, "51000"), ({"instType": "MARGIN"}, "51000"),
                         ({"dateAggrType": "weekly"}, "51000"),
                         ({"instFamilyList": ",".join(f"X{i}-USDT" for i in range(11))}, "51000"),
                         ({"instFamilyList": "ANY", "dateAggrType": "monthly"}, "51000"),
                         ({"instType": "SPOT", "instFamilyList": "BTC-USDT"}, "51000"),
                         ({"instIdList": "BTC-USDT-SWAP"}, "51000")]:
        params = {k: v for k, v in {**base, **change}.items() if v is not None}
        status, body = get(sim, LISTING, **params)
        assert (status, body["code"], body["data"]) == (400, code, []), change
    assert len(listing(sim, instType="SWAP", instFamilyList="ANY", **q)) > 80
    # the delisted swap: gone from /public/instruments, yet its archive lists the days it traded
    gone = next(s for s in oracle.specs if s.delist_ms is not None)
    assert gone.inst_id not in {i["instId"] for i in ok_data(sim, "/api/v5/public/instruments", instType="SWAP")}
    last_day = time.strftime("%Y-%m-%d", time.gmtime((gone.delist_ms - 1 + UTC8_MS) / 1000))
    [d] = listing(sim, instType="SWAP", dateAggrType="daily", begin=gone.delist_ms - 5 * DAY_MS,
                  end=gone.delist_ms + 5 * DAY_MS, instFamilyList=gone.inst_id[: -len("-SWAP")])
    names = [f["filename"] for f in d["groupDetails"]]
    assert d["instId"] == gone.inst_id and names[0] == f"{gone.inst_id}-candlesticks-{last_day}.zip" and len(names) == 6
    rows = zip_rows(fetch_zip(sim, d["groupDetails"][0]["url"]).content)[2]
    assert rows and int(rows[-1][8]) < gone.delist_ms
