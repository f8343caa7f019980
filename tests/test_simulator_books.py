"""The simulator's ``books5`` channel and its order-book feature ground truth (``okxsim.book_truth``).

The ground truth is the oracle of the pipeline's book features, so it is checked here against
values computed by hand; the channel is checked for OKX's shapes, for consistency with the
candles (mid inside [low, high], ticks and lots), for the publication pattern the pipeline must
cope with (several books in one second, bars without a book), and the ``book_at_close`` fault.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from decimal import Decimal
from typing import Any

import pytest
import requests
import websockets

import okxsim
from okxsim import book_truth
from okxsim import __main__ as okxsim_main
from okxsim.books import BookLog, BookModel, BookOptions, seq_id
from okxsim.common import DAY_MS, HOUR_MS, MINUTE_MS, parse_time_ms
from okxsim.market import Market

SEED = 7
HISTORY_START = "2024-02-01"
CLOCK_START = "2024-03-04T22:00:00Z"
CLOCK_MS = parse_time_ms(CLOCK_START)
BTC = "BTC-USDT-SWAP"


# --------------------------------------------------------------------------- helpers


def book(ts: int, seq: int, bids: list[tuple[str, str]], asks: list[tuple[str, str]],
         inst: str = BTC) -> dict[str, Any]:
    """A hand-made books5 element."""
    return {"asks": [[p, s, "0", "1"] for p, s in asks], "bids": [[p, s, "0", "1"] for p, s in bids],
            "instId": inst, "ts": str(ts), "seqId": seq}


# B1: mid 1000, spread 2 bps; bids within 25 bps (>= 997.5): 999.9 and 999 -> 30 contracts;
# asks within (<= 1002.5): 1000.1 and 1001 -> 20; all bids 60, all asks 40 -> imbalance 0.2
B1 = ([("999.9", "10"), ("999", "20"), ("990", "30")], [("1000.1", "5"), ("1001", "15"), ("1010", "20")])
B1_VALUES = {"spread_bps": 2.0, "depth_bid_25bps": 0.3, "depth_ask_25bps": 0.2, "imbalance": 0.2}
# B2: mid 2000, spread 10 bps, depth 1 and 3 contracts, imbalance -0.5
B2 = ([("1999", "1")], [("2001", "3")])
B2_VALUES = {"spread_bps": 10.0, "depth_bid_25bps": 0.01, "depth_ask_25bps": 0.03, "imbalance": -0.5}
CROSSED = ([("1001", "1")], [("1000", "1")])
NO_BIDS: tuple[list[tuple[str, str]], list[tuple[str, str]]] = ([], [("1000", "1")])
OTHER = ([("500", "7")], [("600", "9")])  # a book that must never be counted (not the last of its second)


def truth(elements: list[dict[str, Any]], freq: str, start: int, end: int, max_age_s: int = 60) -> list[dict]:
    return book_truth.bar_features(elements, inst_type="SWAP", ct_type="linear", ct_val=0.01, freq=freq,
                                   start_ms=start, end_ms=end, max_age_s=max_age_s)


def expect(row: dict[str, Any], coverage_s: int, seconds: int, parts: list[tuple[int, dict[str, float]]]) -> None:
    """``row`` is the covered-seconds mean of ``parts`` = [(seconds, values), ...]."""
    assert row["book_coverage"] == pytest.approx(coverage_s / seconds, rel=1e-12)
    assert sum(n for n, _ in parts) == coverage_s
    for k in book_truth.FEATURES:
        want = sum(n * v[k] for n, v in parts) / coverage_s
        assert row[k] == pytest.approx(want, rel=1e-9, abs=1e-12), k


def get(sim: okxsim.Simulator, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
    r = requests.get(sim.rest + path, params=params, verify=sim.ca_file, timeout=30)
    return r.status_code, r.json()


async def collect(sim: okxsim.Simulator, insts: list[str], seconds: float, on_open=None) -> list[Any]:
    """Subscribe books5 for ``insts`` on /public and collect every frame for ``seconds`` real seconds."""
    got: list[Any] = []
    async with websockets.connect(sim.ws_public, ssl=okxsim.client_context(sim.ca_file), max_queue=None) as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "books5", "instId": i} for i in insts]}))
        if on_open is not None:
            await asyncio.get_running_loop().run_in_executor(None, on_open)
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            try:
                got.append(json.loads(await asyncio.wait_for(ws.recv(), max(0.01, t_end - time.monotonic()))))
            except asyncio.TimeoutError:
                break
    return got


def pushes(frames: list[Any], inst: str) -> list[dict[str, Any]]:
    return [f["data"][0] for f in frames if "data" in f and f["arg"]["instId"] == inst]


def candle_range(rows: list[list[str]]) -> dict[int, tuple[Decimal, Decimal]]:
    return {int(r[0]): (Decimal(r[3]), Decimal(r[2])) for r in rows}


def mid_of(el: dict[str, Any]) -> Decimal:
    return (Decimal(el["asks"][0][0]) + Decimal(el["bids"][0][0])) / 2


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(SEED, HISTORY_START, CLOCK_START)


@pytest.fixture(scope="module")
def sim():
    with okxsim.Simulator(seed=SEED, clock_start=CLOCK_START, speed=300, history_start=HISTORY_START) as s:
        yield s


# --------------------------------------------------------------------------- ground truth by hand


def test_truth_by_hand_last_book_of_second_carry_forward_unusable_and_close() -> None:
    t = parse_time_ms("2024-03-04T10:00:00Z")
    s = 1000
    els = [
        # 10:01:10: three books in one second; the last by (ts, seqId) is B1
        book(t + 70 * s + 500, 5, *OTHER),
        book(t + 70 * s + 900, 8, *OTHER),
        book(t + 70 * s + 900, 9, *B1),
        book(t + 70 * s + 900, 9, *B1),            # an exact duplicate counts once
        book(t + 150 * s, 10, *B2),                # 10:02:30
        book(t + 180 * s, 11, *B1),                # 10:03:00.000: exactly the close of bar 10:02
        book(t + 200 * s, 12, *CROSSED),           # 10:03:20: unusable, no fall-back to B1
        book(t + 220 * s, 13, *B2),                # 10:03:40
        book(t + 240 * s, 14, *NO_BIDS),           # 10:04:00: unusable for the whole bar
    ]
    rows = truth(els, "1min", t, t + 6 * MINUTE_MS)
    assert [r["ts"] for r in rows] == [t + i * MINUTE_MS for i in range(6)]
    # 10:00: no book at all -> nulls and coverage 0
    assert rows[0] == {"ts": t, "spread_bps": None, "depth_bid_25bps": None, "depth_ask_25bps": None,
                       "imbalance": None, "book_coverage": 0.0}
    expect(rows[1], 50, 60, [(50, B1_VALUES)])                       # B1 from 10:01:10
    expect(rows[2], 40, 60, [(10, B1_VALUES), (30, B2_VALUES)])      # B1 carried 10 s, B2 from :30
    assert rows[2]["spread_bps"] == pytest.approx(8.0)               # (10 * 2 + 30 * 10) / 40
    expect(rows[3], 40, 60, [(20, B1_VALUES), (20, B2_VALUES)])      # the 10:03:00.000 book opens bar 10:03
    assert rows[4]["book_coverage"] == 0.0 and rows[4]["spread_bps"] is None  # state = the book without bids
    assert rows[5]["book_coverage"] == 0.0                                     # 60 s after it: too old
    # a book published at a bar's close never changes that bar
    assert truth(els[:5], "1min", t, t + 3 * MINUTE_MS) == rows[:3]
    # 60min = the mean over all 130 covered seconds (not the mean of the minute means)
    hour = truth(els, "60min", t, t + HOUR_MS)
    assert len(hour) == 1
    expect(hour[0], 130, 3600, [(50 + 10 + 20, B1_VALUES), (30 + 20, B2_VALUES)])


def test_truth_carries_across_a_day_boundary_within_max_age() -> None:
    day = parse_time_ms("2024-03-05")
    els = [book(day - 30_000, 1, *B1)]  # 2024-03-04T23:59:30
    expect(truth(els, "1min", day - MINUTE_MS, day - MINUTE_MS + 1)[0], 30, 60, [(30, B1_VALUES)])
    expect(truth(els, "1min", day, day + 1)[0], 30, 60, [(30, B1_VALUES)])
    expect(truth(els, "day", day, day + DAY_MS)[0], 30, 86_400, [(30, B1_VALUES)])
    expect(truth(els, "day", day - DAY_MS, day)[0], 30, 86_400, [(30, B1_VALUES)])
    assert truth(els, "day", day, day + DAY_MS, max_age_s=20)[0]["book_coverage"] == 0.0
    expect(truth(els, "day", day, day + DAY_MS, max_age_s=45)[0], 15, 86_400, [(15, B1_VALUES)])


def test_truth_longer_bars_are_the_covered_seconds_mean_not_a_mean_of_minute_means() -> None:
    t = parse_time_ms("2024-03-04T11:00:00Z")
    els = [book(t, 1, *B1),                          # covers 11:00:00-11:00:59
           book(t + 5 * MINUTE_MS + 59_000, 2, *B2),  # 11:05:59, one second
           book(t + 6 * MINUTE_MS, 3, *CROSSED)]       # ends it
    minutes = truth(els, "1min", t, t + HOUR_MS)
    covered = [(r["ts"], round(r["book_coverage"] * 60)) for r in minutes if r["book_coverage"]]
    assert covered == [(t, 60), (t + 5 * MINUTE_MS, 1)]
    hour = truth(els, "60min", t, t + HOUR_MS)[0]
    expect(hour, 61, 3600, [(60, B1_VALUES), (1, B2_VALUES)])
    assert hour["spread_bps"] == pytest.approx(130 / 61)
    mean_of_means = sum(r["spread_bps"] for r in minutes if r["book_coverage"]) / 2
    assert mean_of_means == pytest.approx(6.0) and abs(hour["spread_bps"] - mean_of_means) > 3
    five = truth(els, "5min", t, t + 10 * MINUTE_MS)
    expect(five[0], 60, 300, [(60, B1_VALUES)])
    expect(five[1], 1, 300, [(1, B2_VALUES)])


def test_truth_quantities_spot_and_frequencies() -> None:
    t = parse_time_ms("2024-03-04T12:00:00Z")
    el = book(t, 1, *B1, inst="BTC-USDT")
    row = book_truth.bar_features([el], inst_type="SPOT", ct_type="", ct_val=1.0, freq="1min", start_ms=t,
                                  end_ms=t + MINUTE_MS)[0]
    assert row["depth_bid_25bps"] == pytest.approx(30.0) and row["depth_ask_25bps"] == pytest.approx(20.0)
    assert [book_truth.freq_ms(f) for f in ("1min", "5min", "60min", "day")] == [MINUTE_MS, 5 * MINUTE_MS,
                                                                               HOUR_MS, DAY_MS]
    for bad in ("7min", "1h", "0min", "min", "week"):
        with pytest.raises(ValueError, match="freq"):
            book_truth.freq_ms(bad)
    # bars are UTC-aligned: a start inside a bar begins with the next bar
    assert [r["ts"] for r in truth([], "60min", t + 1, t + 2 * HOUR_MS + 1)] == [t + HOUR_MS, t + 2 * HOUR_MS]


# --------------------------------------------------------------------------- the model (no server)


def test_books_follow_the_candles_in_ticks_and_lots(market: Market) -> None:
    """Every book: mid inside its minute's candle [low, high], prices whole ticks, sizes whole lots,
    5 levels, asks ascending above bids descending; for every kind of instrument."""
    model = BookModel(market)
    insts = [BTC, "PEPE-USDT-SWAP", "BTC-USD-SWAP", "USDC-USDT-SWAP", "XAU-USDT-SWAP", "BTC-USDT", "DOGE-USDT"]
    midnight = parse_time_ms("2024-03-04")
    minutes = [*range(CLOCK_MS - 15 * MINUTE_MS, CLOCK_MS, MINUTE_MS),
               *range(midnight - 5 * MINUTE_MS, midnight + 5 * MINUTE_MS, MINUTE_MS)]  # across a UTC midnight
    for inst in insts:
        spec = market.spec(inst)
        tick, lot = Decimal(10) ** spec.tick_exp, Decimal(10) ** spec.lot_exp
        candles = {**candle_range(market.candles_1m(inst, midnight - DAY_MS)),
                   **candle_range(market.candles_1m(inst, midnight, until_ms=CLOCK_MS))}
        n = 0
        for m in minutes:
            for seq, text in model.minute_books(spec, m):
                el = json.loads(text)
                assert list(el) == ["asks", "bids", "instId", "ts", "seqId"] and el["instId"] == inst
                ts = int(el["ts"])
                assert m <= ts < m + MINUTE_MS and el["seqId"] == seq
                asks = [(Decimal(p), Decimal(s)) for p, s, z, k in el["asks"]]
                bids = [(Decimal(p), Decimal(s)) for p, s, z, k in el["bids"]]
                assert len(asks) == len(bids) == 5
                assert all(lvl[2] == "0" and int(lvl[3]) >= 1 for lvl in el["asks"] + el["bids"])
                assert [p for p, _ in asks] == sorted({p for p, _ in asks})
                assert [p for p, _ in bids] == sorted({p for p, _ in bids}, reverse=True)
                assert bids[0][0] < asks[0][0]
                assert all(p % tick == 0 and s % lot == 0 and s > 0 for p, s in asks + bids), el
                if m in candles:
                    low, high = candles[m]
                    assert low <= mid_of(el) <= high, (inst, el, candles[m])
                n += 1
        assert n > 200, inst


def test_push_log_keeps_each_book_once_in_order_and_reports_truncation() -> None:
    log = BookLog(max_per_inst=6)
    for seq in (seq_id(5000, 0), seq_id(3000, 0), seq_id(5000, 0), seq_id(4000, 1), seq_id(4000, 0)):
        log.add(BTC, seq)
    assert log.seqs(BTC) == [seq_id(3000, 0), seq_id(4000, 0), seq_id(4000, 1), seq_id(5000, 0)]
    for ts in range(6000, 9000, 1000):
        log.add(BTC, seq_id(ts, 0))
    assert len(log.seqs(BTC)) == 4 and log.truncated_before[BTC] == 5000
    assert log.counts() == {BTC: 4}


def test_cli_books_options() -> None:
    args = okxsim_main.parse_args(["--books-mean-interval", "5", "--books-max-per-real-s", "0",
                                   "--books-quiet-prob", "0.2", "--books-quiet-block", "240",
                                   "--books-burst-prob", "0.5"])
    assert (args.books_mean_interval, args.books_max_per_real_s, args.books_quiet_prob, args.books_quiet_block,
            args.books_burst_prob) == (5.0, 0.0, 0.2, 240, 0.5)
    cfg = okxsim.PushConfig(books_mean_interval_s=2.0, books_max_per_real_s=25.0)
    assert cfg.book_options(300.0).mean_interval_s == 12.0 and cfg.book_options(10.0).mean_interval_s == 2.0
    assert cfg.book_options(0.0).mean_interval_s == 2.0
    with pytest.raises(ValueError, match="mean_interval_s"):
        okxsim.PushConfig(books_mean_interval_s=0, books_max_per_real_s=0).book_options(1.0)


def test_books_publication_pattern_and_determinism(market: Market) -> None:
    """Some seconds hold several books, some 1-minute bars have none, seqIds increase, and the
    same seed gives the same books (another seed other ones)."""
    model = BookModel(market)
    spec = market.spec(BTC)
    start = CLOCK_MS - 3 * HOUR_MS
    els = [json.loads(t) for m in range(start, CLOCK_MS, MINUTE_MS) for _, t in model.minute_books(spec, m)]
    seqs = [e["seqId"] for e in els]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    per_second: dict[int, int] = {}
    for e in els:
        per_second[int(e["ts"]) // 1000] = per_second.get(int(e["ts"]) // 1000, 0) + 1
    assert sum(1 for c in per_second.values() if c >= 2) > 50
    assert 20 < len(els) / 180 < 45  # about 60 / 2 s a minute, plus bursts, minus quiet blocks
    rows = truth(els, "1min", start, CLOCK_MS)
    empty = [r for r in rows if r["book_coverage"] == 0.0]
    partial = [r for r in rows if 0.0 < r["book_coverage"] < 1.0]
    assert empty and partial and all(r["spread_bps"] is None for r in empty)
    assert all(model.is_quiet(spec, r["ts"] + 59_999) for r in empty)
    again = BookModel(Market(SEED, HISTORY_START, CLOCK_START))
    assert again.minute_books(spec, CLOCK_MS - MINUTE_MS) == model.minute_books(spec, CLOCK_MS - MINUTE_MS)
    other = BookModel(Market(SEED + 1, HISTORY_START, CLOCK_START))
    last = CLOCK_MS - MINUTE_MS
    assert other.minute_books(other.market.spec(BTC), last) != model.minute_books(spec, last)
    sparse = BookModel(market, BookOptions(mean_interval_s=10.0, quiet_prob=0.0, burst_prob=0.0))
    n = sum(len(sparse.minute_books(spec, m)) for m in range(start, start + 60 * MINUTE_MS, MINUTE_MS))
    assert 4 * 60 < n < 8 * 60


def test_spread_widens_and_depth_thins_with_volatility(market: Market) -> None:
    model = BookModel(market)
    spec = market.spec("ETH-USDT-SWAP")
    start = CLOCK_MS - 6 * HOUR_MS
    candles = candle_range(market.candles_1m(spec.inst_id, start, until_ms=CLOCK_MS))
    ranges, spreads, depths = [], [], []
    for m in range(start, CLOCK_MS, MINUTE_MS):
        books = [json.loads(t) for _, t in model.minute_books(spec, m)]
        if m not in candles or not books:
            continue
        low, high = candles[m]
        vals = [book_truth.book_values(b, inst_type="SWAP", ct_type="linear", ct_val=0.1) for b in books]
        ranges.append(math.log(float((high - low) / high) + 1e-6))
        spreads.append(math.log(sum(v["spread_bps"] for v in vals) / len(vals)))
        depths.append(math.log(sum(v["depth_bid_25bps"] + v["depth_ask_25bps"] for v in vals) / len(vals)))

    def corr(a: list[float], b: list[float]) -> float:
        ma, mb = sum(a) / len(a), sum(b) / len(b)
        cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
        return cov / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))

    assert len(ranges) > 300
    assert corr(ranges, spreads) > 0.3 and corr(ranges, depths) < -0.3, (corr(ranges, spreads), corr(ranges, depths))


# --------------------------------------------------------------------------- the live channel


def test_books5_wire_shapes_log_and_candles(sim: okxsim.Simulator, market: Market) -> None:
    """Ack and push shapes of the contract; the first push is the current book with its original
    ts; seqId increases; mids inside the REST candles; /sim/books/sent = what the client got."""
    model = BookModel(market, BookOptions(**sim.state()["books_options"]))  # independent, the server's arguments
    frames = asyncio.run(collect(sim, [BTC, "BTC-USDT"], 1.5))
    acks = [f for f in frames if "event" in f]
    t_sub = [e for e in sim.ws_events("subscribe") if e["conn_id"] == acks[0]["connId"]][0]["sim_ms"]
    assert [list(a) for a in acks] == [["event", "arg", "connId"]] * 2
    assert acks[0]["arg"] == {"channel": "books5", "instId": BTC} and acks[0]["event"] == "subscribe"
    for inst in (BTC, "BTC-USDT"):
        got = pushes(frames, inst)
        assert len(got) > 20, inst  # 1.5 s real = 450 simulated s, a book every ~12 s at 300x
        # the current book with its original ts first (published before the subscription), then every
        # later book of the model, none skipped
        assert int(got[0]["ts"]) <= t_sub
        spec = model.market.spec(inst)
        lo, hi = int(got[0]["ts"]), int(got[-1]["ts"])
        expected = [json.loads(t) for m in range(lo - lo % MINUTE_MS, hi + 1, MINUTE_MS)
                    for _, t in model.minute_books(spec, m)]
        assert got == [e for e in expected if lo <= int(e["ts"]) <= hi]
        for f in frames:
            if "data" in f and f["arg"]["instId"] == inst:
                assert list(f) == ["arg", "data"] and f["arg"] == {"channel": "books5", "instId": inst}
                assert len(f["data"]) == 1
        for el in got:
            assert list(el) == ["asks", "bids", "instId", "ts", "seqId"] and isinstance(el["seqId"], int)
            assert el["ts"].isdigit() and el["seqId"] == seq_id(int(el["ts"]), el["seqId"] % 10)
            assert all(len(lvl) == 4 and all(isinstance(x, str) for x in lvl) for lvl in el["asks"] + el["bids"])
        assert [e["seqId"] for e in got] == sorted({e["seqId"] for e in got})
        rows = requests.get(sim.rest + "/api/v5/market/history-candles", verify=sim.ca_file, timeout=10,
                            params={"instId": inst, "bar": "1m", "limit": 100}).json()["data"]
        candles = candle_range([r for r in rows if r[8] == "1"])
        checked = 0
        for el in got:
            minute = int(el["ts"]) - int(el["ts"]) % MINUTE_MS
            if minute in candles:
                low, high = candles[minute]
                assert low <= mid_of(el) <= high, (el, candles[minute])
                checked += 1
        assert checked > 10
        status, body = get(sim, "/sim/books/sent", instId=inst)
        assert status == 200 and body["code"] == "0"
        last = int(got[-1]["ts"])
        assert [e for e in body["data"] if int(e["ts"]) <= last] == got  # sent after the client left: not seen
    status, body = get(sim, "/sim/books/sent", instId="NOPE-USDT-SWAP")
    assert status == 400 and "NOPE-USDT-SWAP" in body["msg"]
    business = asyncio.run(_subscribe_business(sim))
    assert business["code"] == "64002"


async def _subscribe_business(sim: okxsim.Simulator) -> dict[str, Any]:
    async with websockets.connect(sim.ws_business, ssl=okxsim.client_context(sim.ca_file)) as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "books5", "instId": BTC}]}))
        return json.loads(await asyncio.wait_for(ws.recv(), 5))


def test_books_features_endpoint_equals_truth_of_received_books(sim: okxsim.Simulator) -> None:
    inst = "ETH-USDT-SWAP"
    frames = asyncio.run(collect(sim, [inst], 1.5))
    got = pushes(frames, inst)
    first, last = int(got[0]["ts"]), int(got[-1]["ts"])
    start = first - first % MINUTE_MS + MINUTE_MS
    end = last - last % MINUTE_MS  # whole minutes the client saw to the end
    assert end - start >= 3 * MINUTE_MS
    status, body = get(sim, "/sim/books/features", instId=inst, freq="1min", start=start, end=end, max_age_s=60)
    assert status == 200 and body["code"] == "0" and list(body) == ["code", "data"]
    assert [list(r) for r in body["data"]] == [["ts", "spread_bps", "depth_bid_25bps", "depth_ask_25bps",
                                                "imbalance", "book_coverage"]] * ((end - start) // MINUTE_MS)
    mine = book_truth.bar_features(got, inst_type="SWAP", ct_type="linear", ct_val=0.1, freq="1min",
                                   start_ms=start, end_ms=end)
    assert body["data"] == mine
    assert any(r["book_coverage"] > 0.5 for r in mine)
    assert sim.books_features(inst, "1min", start, end) == mine
    for params, code in (({"freq": "7min"}, "51000"), ({"freq": "hour"}, "51000"), ({"instId": "NOPE"}, "51000"),
                         ({"start": None}, "50014"), ({"max_age_s": "0"}, "51000")):
        q = {"instId": inst, "freq": "1min", "start": start, "end": end, **params}
        status, body = get(sim, "/sim/books/features", **{k: v for k, v in q.items() if v is not None})
        assert status == 400 and body["code"] == code and body["msg"], (params, body)


def test_book_at_close_fault_pushes_an_extreme_book_at_the_minute_boundary(sim: okxsim.Simulator) -> None:
    inst = "SOL-USDT-SWAP"
    armed: dict[str, int] = {}

    def arm() -> None:
        status = requests.post(sim.rest + "/sim/faults", json={"kind": "book_at_close", "inst_ids": [inst],
                                                               "count": 2}, verify=sim.ca_file, timeout=10)
        armed["first"] = status.json()["results"][0]["first_boundary"]

    frames = asyncio.run(collect(sim, [inst], 1.2, on_open=arm))
    assert sim.state()["book_faults"][0]["inst_id"] == inst
    sim.clear_faults()
    assert sim.state()["book_faults"] == []
    got = pushes(frames, inst)
    first = armed["first"]
    assert first % MINUTE_MS == 0
    extreme = [e for e in got if int(e["ts"]) % MINUTE_MS == 0 and e["seqId"] % 10 == 9]
    assert [int(e["ts"]) for e in extreme] == [first, first + MINUTE_MS]
    spec = sim.market.spec(inst)
    candles = candle_range(sim.market.candles_1m(inst, first, until_ms=first + 2 * MINUTE_MS))
    spreads = sorted(book_truth.book_values(e, inst_type="SWAP", ct_type="linear", ct_val=1.0)["spread_bps"]
                     for e in got if e not in extreme)
    normal_spread = spreads[len(spreads) // 2]
    for el in extreme:
        b = int(el["ts"])
        assert not [e for e in got if b <= int(e["ts"]) < b + 1000 and e is not el]  # the sample of its second
        v = book_truth.book_values(el, inst_type="SWAP", ct_type="linear", ct_val=float(spec.ct_val))
        assert v["spread_bps"] > 10 * normal_spread and v["imbalance"] < -0.99  # 50 x its own base spread
        assert all(Decimal(lvl[1]) == Decimal(10) ** spec.lot_exp for lvl in el["bids"])  # one lot per bid level
        if b in candles:
            assert candles[b][0] <= mid_of(el) <= candles[b][1]
    # logged and counted like any other book: in the bar that opens at its ts, never the one closing there
    sent = sim.books_sent(inst)
    assert all(e in sent for e in extreme)
    with_fault = sim.books_features(inst, "1min", first - MINUTE_MS, first + MINUTE_MS)
    without = book_truth.bar_features([e for e in sent if e not in extreme], inst_type="SWAP", ct_type="linear",
                                      ct_val=float(spec.ct_val), freq="1min", start_ms=first - MINUTE_MS,
                                      end_ms=first + MINUTE_MS)
    assert with_fault[0] == without[0]
    assert with_fault[1] != without[1] and with_fault[1]["spread_bps"] > 2 * normal_spread
    with pytest.raises(Exception, match="inst_ids"):
        sim.apply_fault({"kind": "book_at_close"})


def test_books_lost_to_a_silence_are_neither_received_nor_logged(sim: okxsim.Simulator) -> None:
    inst = "DOGE-USDT-SWAP"
    frames = asyncio.run(collect(sim, [inst], 1.5, on_open=lambda: (time.sleep(0.3), sim.silence(0.5))))
    got = pushes(frames, inst)
    ts = [int(e["ts"]) for e in got]
    assert max(b - a for a, b in zip(ts, ts[1:])) > 100_000  # 0.5 s real = 150 simulated s without books
    assert [e for e in sim.books_sent(inst) if int(e["ts"]) <= ts[-1]] == got


def test_fifty_instruments_at_300x_keep_up(sim: okxsim.Simulator) -> None:
    """50 books5 subscriptions at 300x: every instrument's books arrive in order and on time."""
    now = sim.sim_now_ms()
    insts = [s.inst_id for s in sim.market.specs if s.state_at(now) == "live" and s.is_swap][:50]
    before = sim.state()["pusher"]
    frames = asyncio.run(collect(sim, insts, 5.0))
    t_end = sim.sim_now_ms()
    stats = sim.state()["pusher"]
    for inst in insts:
        got = pushes(frames, inst)
        # 5 s real = 1,500 simulated s, a book every ~12 s at 300x: ~125 on a quiet machine; a loaded one
        # (the suite runs 4 workers on 2 cores) drops the books it is too late to send
        assert len(got) > 15, inst
        assert [e["seqId"] for e in got] == sorted({e["seqId"] for e in got})
    latest = max(int(e["ts"]) for f in frames if "data" in f for e in f["data"])
    # books arrive soon after their ts (10 simulated minutes are 2 s real at 300x: room for a loaded machine)
    assert t_end - latest < 600_000
    assert stats["passes"] - before["passes"] > 20
