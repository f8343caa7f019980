"""feeder.funding_history, feeder.clean_funding, feeder.clean_open_interest: funding history fetch (with its
cache), settled-rate and open-interest cleaning,
and the point-in-time attach in feeder.resample (look-ahead tests, hypothesis properties)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import okxsim
from feeder.clean_funding import FUNDING_MAX_AGE, FUNDING_RAW_SCHEMA, clean_funding_day, funding_window, settled_funding
from feeder.clean_open_interest import (
    OI_MAX_AGE,
    OI_RAW_SCHEMA,
    clean_open_interest,
    clean_open_interest_day,
    oi_window,
)
from feeder.funding_history import fetch_funding_day
from feeder.records import encode_record, records_from_frame, records_from_rest
from feeder.resample import BARS_SCHEMA, attach_point_in_time, freq_minutes, resample_bars
from feeder.rest import OkxRestClient

H = 3_600_000
DAY_MS = 86_400_000
SUN = dt.date(2024, 3, 3)
SUN_MS = 1709424000000  # 2024-03-03 00:00 UTC
MARKET_ARGS = {"seed": 7, "history_start": "2024-02-01", "clock_start": "2024-03-04T22:00:00Z"}


@pytest.fixture(scope="module")
def market() -> okxsim.Market:
    return okxsim.Market(**MARKET_ARGS)


def four_hour_swap(market: okxsim.Market) -> str:
    return next(s.inst_id for s in market.specs if s.is_swap and s.funding_hours == 4 and s.delist_ms is None)


def naive(ms: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)


def frame(records: list[dict[str, Any]], schema: dict[str, pl.DataType] = FUNDING_RAW_SCHEMA) -> pl.DataFrame:
    """Records → the frame the cleaning functions read (through the same NDJSON reader)."""
    if not records:
        return pl.DataFrame(schema=schema)
    return pl.read_ndjson(b"".join(encode_record(r) for r in records), schema=schema)


def ws_funding(market: okxsim.Market, inst: str, times: range | list[int], *, drop: set[str] = frozenset()) -> list[dict]:
    """The funding-rate pushes the simulator sends at ``times`` (optionally without some keys)."""
    out = []
    for t in times:
        el = {k: v for k, v in market.funding_rate(inst, t).items() if k not in drop}
        out += records_from_frame({"arg": {"channel": "funding-rate", "instId": inst}, "data": [el]},
                                  recv_ts=t + 120).records  # fmt: skip
    return out


def rest_funding(market: okxsim.Market, inst: str, now_ms: int, start_ms: int, end_ms: int) -> list[dict]:
    rows = market.funding_history(inst, now_ms, after=end_ms, before=start_ms - 1, limit=400)
    return records_from_rest("funding-rate", rows, recv_ts=now_ms, inst=inst).records


def truth_settlements(market: okxsim.Market, inst: str, now_ms: int, start_ms: int, end_ms: int) -> dict[int, float]:
    """fundingTime → fundingRate in [start_ms, end_ms), straight from the simulator's REST rows."""
    rows = market.funding_history(inst, now_ms, after=end_ms, before=start_ms - 1, limit=400)
    return {int(r["fundingTime"]): float(r["fundingRate"]) for r in rows}


# --------------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------------


def test_windows_cover_every_close_of_the_day() -> None:
    start, end = funding_window(SUN)
    assert start == SUN_MS - 8 * H and end == SUN_MS + DAY_MS + 1  # D+1 00:00 included
    start, end = oi_window(SUN)
    assert start == SUN_MS - 15 * 60_000 and end == SUN_MS + DAY_MS + 1


# --------------------------------------------------------------------------------------------
# Fetching (real REST client against the simulator, frozen clock)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim():
    with okxsim.Simulator(seed=7, clock_start="2024-03-05T01:00:00Z", speed=0, history_start="2024-02-01") as s:
        yield s


def test_fetch_writes_the_window_and_later_days_come_from_the_cache(sim, tmp_path: Path) -> None:
    four_h = four_hour_swap(sim.market)
    insts = ["BTC-USDT-SWAP", four_h, "NOPE-USDT-SWAP"]
    cache = tmp_path / "cache"
    with OkxRestClient(base_url=sim.rest, ca_file=sim.ca_file) as client:
        first = fetch_funding_day(client=client, day=SUN, instruments=insts, out_path=tmp_path / "2024-03-03.jsonl",
                                  cache_dir=cache)  # fmt: skip
        # Snakemake runs days in any order: an earlier day is served from the same fetch
        second = fetch_funding_day(client=client, day=dt.date(2024, 2, 10), instruments=insts,
                                   out_path=tmp_path / "2024-02-10.jsonl", cache_dir=cache)  # fmt: skip
    assert first["fetched"] == 2 and "NOPE-USDT-SWAP" in first["errors"]
    assert second["from_cache"] == 2 and second["fetched"] == 0  # no funding-history request for day 2
    assert second["requests"] == 2  # the server time, and the unknown instrument asked again
    assert second["rows"]["BTC-USDT-SWAP"] == 5
    start, end = funding_window(SUN)
    now = sim.sim_now_ms()
    written = [json.loads(line) for line in (tmp_path / "2024-03-03.jsonl").read_text().splitlines()]
    assert {r["source"] for r in written} == {"rest"} and {r["channel"] for r in written} == {"funding-rate"}
    for inst in ("BTC-USDT-SWAP", four_h):
        got = {r["ts"]: r["data"] for r in written if r["inst"] == inst}
        truth = sim.market.funding_history(inst, now, after=end, before=start - 1, limit=400)
        assert got == {int(r["fundingTime"]): r for r in truth}  # rows verbatim, window exact
    # 8 h: 16:00 of the day before, then 00/08/16, then D+1 00:00 (known at the last bar's close)
    assert sorted(r["ts"] for r in written if r["inst"] == "BTC-USDT-SWAP") == [
        SUN_MS - 8 * H, SUN_MS, SUN_MS + 8 * H, SUN_MS + 16 * H, SUN_MS + DAY_MS]
    assert len([r for r in written if r["inst"] == four_h]) == 2 + 6 + 1  # 16:00, 20:00 | six | 00:00


def test_fetch_cache_only_trusts_what_was_published(sim, tmp_path: Path) -> None:
    """Fetching at 00:05 of D+1 cannot vouch for D+1 00:00 yet (margin): the next day refetches."""

    class Client:
        requests_sent = 0

        def funding_rate_history(self, inst: str, *, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
            self.requests_sent += 1
            rows = sim.market.funding_history(inst, self.now, after=end_ms, before=start_ms - 1, limit=400)
            return sorted(rows, key=lambda r: int(r["fundingTime"]))

    client = Client()
    client.now = SUN_MS + DAY_MS + 5 * 60_000
    fetch_funding_day(client=client, day=SUN, instruments=["BTC-USDT-SWAP"], out_path=tmp_path / "a.jsonl",
                      cache_dir=tmp_path / "c", now_ms=client.now)  # fmt: skip
    assert client.requests_sent == 1
    fetch_funding_day(client=client, day=SUN, instruments=["BTC-USDT-SWAP"], out_path=tmp_path / "b.jsonl",
                      cache_dir=tmp_path / "c", now_ms=client.now)  # fmt: skip
    assert client.requests_sent == 2  # not covered yet: asked again
    client.now += H
    fetch_funding_day(client=client, day=SUN, instruments=["BTC-USDT-SWAP"], out_path=tmp_path / "c.jsonl",
                      cache_dir=tmp_path / "c", now_ms=client.now)  # fmt: skip
    fetch_funding_day(client=client, day=SUN, instruments=["BTC-USDT-SWAP"], out_path=tmp_path / "d.jsonl",
                      cache_dir=tmp_path / "c", now_ms=client.now)  # fmt: skip
    assert client.requests_sent == 3  # covered after the 01:05 fetch
    assert (tmp_path / "c.jsonl").read_text() == (tmp_path / "d.jsonl").read_text()


# --------------------------------------------------------------------------------------------
# Settled funding
# --------------------------------------------------------------------------------------------

NOW = SUN_MS + 2 * DAY_MS


@pytest.mark.parametrize("interval", [8, 4])
def test_stream_alone_reproduces_the_rest_history(market: okxsim.Market, interval: int) -> None:
    """settFundingRate with a derived settlement time equals funding-rate-history, key for key."""
    inst = "BTC-USDT-SWAP" if interval == 8 else four_hour_swap(market)
    start, end = funding_window(SUN)
    pushes = ws_funding(market, inst, range(start - 8 * H, end + 2 * H, 60_000))  # one a minute, like OKX
    kept, stats = settled_funding(frame(pushes), SUN)
    truth = truth_settlements(market, inst, NOW, start, end)
    assert dict(zip(kept["funding_time"].dt.epoch("ms").to_list(), kept["funding_rate"].to_list(), strict=True)) \
        == pytest.approx(truth, rel=0, abs=0)  # fmt: skip
    assert set(kept["source"]) == {"ws"}
    assert stats["rows_read"] == stats["kept"] + stats["duplicates"] + stats["rejected_total"]


def test_prev_funding_time_is_used_when_sent(market: okxsim.Market) -> None:
    push = ws_funding(market, "BTC-USDT-SWAP", [SUN_MS + 9 * H])[0]
    push["data"]["prevFundingTime"] = str(SUN_MS + 8 * H)
    push["data"]["nextFundingTime"] = str(SUN_MS + 20 * H)  # nonsense interval: ignored when prev is given
    kept, _ = settled_funding(frame([push]), SUN)
    assert kept["funding_time"].to_list() == [naive(SUN_MS + 8 * H)]
    assert kept["funding_rate"].to_list() == [float(push["data"]["settFundingRate"])]


def test_forecast_and_processing_pushes_are_never_settlements(market: okxsim.Market) -> None:
    pushes = ws_funding(market, "BTC-USDT-SWAP", range(SUN_MS + H, SUN_MS + 2 * H, 60_000))
    for p in pushes[:30]:
        p["data"]["settState"] = "processing"
    old = ws_funding(market, "BTC-USDT-SWAP", [SUN_MS + 3 * H], drop={"settFundingRate", "settState"})
    kept, stats = settled_funding(frame(pushes + old), SUN)
    assert stats["rejected"]["not_settled"] == 31
    # the forecast (fundingRate of the running period) never appears
    forecasts = {float(p["data"]["fundingRate"]) for p in pushes}
    assert kept.height == 1 and kept["funding_rate"][0] not in forecasts
    assert kept["funding_time"][0] == naive(SUN_MS)


def _synthetic_push(inst: str, ts: int, funding_time: int, next_time: int, sett: str) -> dict[str, Any]:
    data = {"instId": inst, "instType": "SWAP", "fundingRate": "0.0009", "fundingTime": str(funding_time),
            "nextFundingTime": str(next_time), "settFundingRate": sett, "settState": "settled", "ts": str(ts),
            "method": "current_period", "nextFundingRate": ""}  # fmt: skip
    return records_from_frame({"arg": {"channel": "funding-rate", "instId": inst}, "data": [data]}, recv_ts=ts).records[0]


def test_interval_change_never_places_a_rate_early() -> None:
    """The settlement time of a push without prevFundingTime, around funding-interval changes."""
    inst = "X-USDT-SWAP"
    # Interval grows: settlements 00:00 and 04:00 (4 h), then 08:00 -> 16:00 (8 h). After 04:00 the
    # push says fundingTime 08:00, next 16:00: the interval estimate 08 - 8 = 00:00 would be early,
    # but the stream saw 04:00 announced as the next settlement (push at 01:00), so 04:00 it is.
    before = _synthetic_push(inst, SUN_MS + 1 * H, SUN_MS + 4 * H, SUN_MS + 8 * H, "0.0001")
    after = _synthetic_push(inst, SUN_MS + 5 * H, SUN_MS + 8 * H, SUN_MS + 16 * H, "0.0002")
    kept, _ = settled_funding(frame([before, after]), SUN)
    assert dict(zip(kept["funding_time"].to_list(), kept["funding_rate"].to_list(), strict=True)) == {
        naive(SUN_MS + 0 * H): 0.0001, naive(SUN_MS + 4 * H): 0.0002}
    # Interval shrinks: settled 08:00 (8 h), next 16:00, then 20:00 (4 h). The estimate 16 - 4 = 12:00
    # is late, and the later of the two estimates is taken: late is safe, early would be look-ahead.
    seen = _synthetic_push(inst, SUN_MS + 7 * H, SUN_MS + 8 * H, SUN_MS + 16 * H, "0.0003")
    shrink = _synthetic_push(inst, SUN_MS + 9 * H, SUN_MS + 16 * H, SUN_MS + 20 * H, "0.0004")
    kept, _ = settled_funding(frame([seen, shrink]), SUN)
    placed = kept.filter(pl.col("funding_rate") == 0.0004)["funding_time"][0]
    assert naive(SUN_MS + 8 * H) <= placed <= naive(SUN_MS + 9 * H)  # not before it settled, not after the push


def test_rest_wins_and_supersedes_ws_inside_its_range(market: okxsim.Market) -> None:
    start, end = funding_window(SUN)
    rest = rest_funding(market, "BTC-USDT-SWAP", NOW, start, SUN_MS + 12 * H)  # REST up to 08:00
    ws = ws_funding(market, "BTC-USDT-SWAP", range(SUN_MS + 8 * H + 60_000, end + H, 10 * 60_000))
    stray = _synthetic_push("BTC-USDT-SWAP", SUN_MS + 5 * H, SUN_MS + 6 * H, SUN_MS + 10 * H, "0.5")  # says 02:00
    changed = json.loads(json.dumps(ws[0]))
    changed["data"]["settFundingRate"] = "0.123"  # a ws copy of 08:00 that disagrees with REST
    changed["recv_ts"] += 1
    kept, stats = settled_funding(frame(rest + ws + [stray, changed]), SUN)
    got = dict(zip(kept["funding_time"].dt.epoch("ms").to_list(), kept["source"].to_list(), strict=True))
    assert got == {SUN_MS - 8 * H: "rest", SUN_MS: "rest", SUN_MS + 8 * H: "rest", SUN_MS + 16 * H: "ws",
                   SUN_MS + DAY_MS: "ws"}  # fmt: skip
    assert stats["rejected"]["superseded_by_rest"] == 1
    assert stats["conflicts"] == 1
    assert kept.filter(pl.col("funding_time") == naive(SUN_MS + 8 * H))["funding_rate"][0] != 0.123
    truth = truth_settlements(market, "BTC-USDT-SWAP", NOW, start, end)
    assert dict(zip(kept["funding_time"].dt.epoch("ms").to_list(), kept["funding_rate"].to_list(), strict=True)) == truth


def test_bad_rows_are_counted_not_kept(tmp_path: Path, market: okxsim.Market) -> None:
    good = rest_funding(market, "BTC-USDT-SWAP", NOW, *funding_window(SUN))
    bad_rate = json.loads(json.dumps(good[0]))
    bad_rate["data"]["fundingRate"] = "abc"
    empty_rate = json.loads(json.dumps(good[1]))
    empty_rate["data"]["fundingRate"] = ""
    other = json.loads(json.dumps(good[2]))
    other["channel"] = "tickers"
    outside = rest_funding(market, "BTC-USDT-SWAP", NOW, SUN_MS - 2 * DAY_MS, SUN_MS - DAY_MS)
    shard = tmp_path / "rest.jsonl"
    shard.write_bytes(b"".join(encode_record(r) for r in good + [bad_rate, empty_rate, other] + outside)
                      + b'{"v":1,"source":"rest","channel":"funding-rate","inst":"X","ts":1,"recv_ts":1,"data":[1]}\n'
                      + b"not json\n")  # fmt: skip
    quality = clean_funding_day(shard_paths=[shard], day=SUN, out_path=tmp_path / "f.parquet",
                                quality_path=tmp_path / "q.json")  # fmt: skip
    assert quality["malformed_lines"] == 2
    assert quality["rejected"]["unparsable_number"] == 1
    assert quality["rejected"]["missing_funding_rate"] == 1
    assert quality["rejected"]["wrong_channel"] == 1
    assert quality["rejected"]["outside_window"] == len(outside)
    assert quality["rows_read"] == quality["kept"] + quality["duplicates"] + quality["rejected_total"]
    assert json.loads((tmp_path / "q.json").read_text()) == quality
    kept = pl.read_parquet(tmp_path / "f.parquet")
    assert kept.height == len(good) and kept["funding_time"].is_sorted()  # the bad copies are gone


def test_clean_funding_day_without_input(tmp_path: Path) -> None:
    quality = clean_funding_day(shard_paths=[], day=SUN, out_path=tmp_path / "f.parquet", quality_path=tmp_path / "q.json")
    assert quality["kept"] == 0 and pl.read_parquet(tmp_path / "f.parquet").is_empty()


# --------------------------------------------------------------------------------------------
# Open interest
# --------------------------------------------------------------------------------------------


def oi_records(market: okxsim.Market, inst: str, times: list[int]) -> list[dict[str, Any]]:
    out = []
    for t in times:
        out += records_from_frame({"arg": {"channel": "open-interest", "instId": inst},
                                   "data": [market.open_interest(inst, t)]}, recv_ts=t + 50).records  # fmt: skip
    return out


def test_open_interest_window_dedup_and_values(market: okxsim.Market, tmp_path: Path) -> None:
    times = [SUN_MS - 20 * 60_000, SUN_MS - 15 * 60_000, SUN_MS + 1234, SUN_MS + DAY_MS, SUN_MS + DAY_MS + 1]
    recs = oi_records(market, "ETH-USDT-SWAP", times)
    replay = json.loads(json.dumps(recs[2]))
    replay["recv_ts"] += 5000
    changed = json.loads(json.dumps(recs[3]))
    changed["data"]["oiCcy"] = "1"
    changed["recv_ts"] += 5000
    negative = json.loads(json.dumps(recs[2]))
    negative["data"]["oi"] = "-1"
    shard = tmp_path / "oi.jsonl"
    shard.write_bytes(b"".join(encode_record(r) for r in [*recs, replay, changed, negative]))
    quality = clean_open_interest_day(shard_paths=[shard, shard], day=SUN, out_path=tmp_path / "oi.parquet",
                                      quality_path=tmp_path / "q.json")  # fmt: skip
    kept = pl.read_parquet(tmp_path / "oi.parquet")
    assert kept["ts"].dt.epoch("ms").to_list() == times[1:4]  # window [D - 15 min, D+1 00:00]
    assert quality["rejected"]["outside_window"] == 2 and quality["rejected"]["negative_open_interest"] == 1
    assert quality["duplicates"] == 2 and quality["conflicts"] == 1
    assert kept["oi_ccy"].to_list()[:2] == [float(market.open_interest("ETH-USDT-SWAP", t)["oiCcy"]) for t in times[1:3]]
    assert kept["oi_ccy"][2] == 1.0  # the copy received last wins
    assert quality["rows_read"] == quality["kept"] + quality["duplicates"] + quality["rejected_total"]


def test_open_interest_old_frames_without_usd(okx_samples_dir: Path) -> None:
    lines = (okx_samples_dir / "ws_open_interest.jsonl").read_text().splitlines()
    recs = [r for line in lines for r in records_from_frame(json.loads(line), recv_ts=1640131300000).records]
    day = dt.date(2021, 12, 22)
    kept, stats = clean_open_interest(frame(recs, OI_RAW_SCHEMA), day)
    assert kept["inst"].to_list() == ["ETH-USD-211231-9600-C", "FIL-USDT-220325", "WNCG-USDT-SWAP"]
    assert kept["oi_usd"].null_count() == 3 and kept["oi_ccy"].to_list() == [3.6, 23687.0, 644195.0]


# --------------------------------------------------------------------------------------------
# Point in time: look-ahead and properties
# --------------------------------------------------------------------------------------------

FREQS = ["1min", "5min", "60min", "day"]


def bars_for(inst: str, day: dt.date, freq: str) -> pl.DataFrame:
    start = dt.datetime.combine(day, dt.time())
    ts = pl.datetime_range(start, start + dt.timedelta(days=1), dt.timedelta(minutes=1), closed="left",
                           time_unit="ms", eager=True)  # fmt: skip
    one = pl.DataFrame({"inst": inst, "ts": ts, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0,
                        "amount": 1.0})  # fmt: skip
    return resample_bars(one, freq)


@pytest.mark.parametrize("freq", FREQS)
def test_funding_settled_at_0800_first_appears_in_the_bar_closing_at_0800(freq: str) -> None:
    funding = pl.DataFrame({
        "inst": ["A"] * 4,
        "funding_time": [naive(SUN_MS - 8 * H), naive(SUN_MS), naive(SUN_MS + 8 * H), naive(SUN_MS + DAY_MS)],
        "funding_rate": [0.1, 0.2, 0.3, 0.4],
    })  # fmt: skip
    out = attach_point_in_time(bars_for("A", SUN, freq), freq, funding=funding)
    step = dt.timedelta(minutes=freq_minutes(freq))
    eight = dt.datetime(2024, 3, 3, 8)
    rate = dict(zip(out["ts"].to_list(), out["funding_rate"].to_list(), strict=True))
    if freq == "day":
        # the day bar closes at D+1 00:00: the settlement at that instant is known at its close
        assert rate == {dt.datetime(2024, 3, 3): 0.4}
        return
    assert rate[eight - step] == 0.3  # closes at 08:00
    assert rate[eight - 2 * step] == 0.2  # closes before 08:00: the 00:00 settlement
    assert rate[dt.datetime(2024, 3, 3)] == 0.2  # the first bar closes after 00:00
    assert rate[dt.datetime(2024, 3, 4) - step] == 0.4  # the last bar closes at D+1 00:00
    first_with_08 = min(ts for ts, r in rate.items() if r == 0.3)
    assert first_with_08 + step == eight


@pytest.mark.parametrize("freq", FREQS)
def test_open_interest_is_the_last_push_at_or_before_the_close(freq: str) -> None:
    step = dt.timedelta(minutes=freq_minutes(freq))
    close = dt.datetime(2024, 3, 3, 12) if freq != "day" else dt.datetime(2024, 3, 4)
    oi = pl.DataFrame({"inst": ["A"] * 3, "ts": [close - dt.timedelta(seconds=20), close, close + dt.timedelta(milliseconds=1)],
                       "oi_ccy": [1.0, 2.0, 3.0]})  # fmt: skip
    out = attach_point_in_time(bars_for("A", SUN, freq), freq, open_interest=oi)
    values = dict(zip(out["ts"].to_list(), out["open_interest"].to_list(), strict=True))
    assert values[close - step] == 2.0  # ts == close is known at the close; 1 ms later is not
    if freq == "60min":
        assert values[close] is None  # closes 13:00: the 12:00:00.001 push is older than OI_MAX_AGE
    elif freq != "day":
        assert values[close] == 3.0


def test_stale_open_interest_is_nan_not_carried() -> None:
    oi = pl.DataFrame({"inst": ["A"], "ts": [dt.datetime(2024, 3, 3, 10)], "oi_ccy": [5.0]})
    out = attach_point_in_time(bars_for("A", SUN, "1min"), "1min", open_interest=oi)
    values = dict(zip(out["ts"].to_list(), out["open_interest"].to_list(), strict=True))
    assert values[dt.datetime(2024, 3, 3, 9, 58)] is None  # closes 09:59, before the push
    assert values[dt.datetime(2024, 3, 3, 9, 59)] == 5.0
    assert values[dt.datetime(2024, 3, 3, 10, 14)] == 5.0  # closes 10:15: 15 min old, still known
    assert values[dt.datetime(2024, 3, 3, 10, 15)] is None  # older than OI_MAX_AGE: stream gone


_times = st.integers(min_value=SUN_MS - DAY_MS, max_value=SUN_MS + 2 * DAY_MS)


@settings(max_examples=150, deadline=None)
@given(
    freq=st.sampled_from(FREQS),
    fund=st.lists(st.tuples(st.sampled_from("AB"), _times.map(lambda t: t - t % 60_000), st.floats(-0.01, 0.01)),
                  max_size=30, unique_by=lambda x: (x[0], x[1])),
    oi=st.lists(st.tuples(st.sampled_from("AB"), _times, st.floats(0, 1e9)), max_size=60,
                unique_by=lambda x: (x[0], x[1])),
    holes=st.sets(st.integers(0, 1439), max_size=200),
)  # fmt: skip
def test_no_value_from_after_the_close(freq: str, fund: list, oi: list, holes: set[int]) -> None:
    """Each attached value is the newest one at or before the bar's close, within its max age."""
    bars = pl.concat([bars_for(i, SUN, "1min") for i in "AB"]).filter(
        ~((pl.col("ts").dt.hour() * 60 + pl.col("ts").dt.minute()).is_in(list(holes)) & (pl.col("inst") == "A"))
    )
    bars = resample_bars(bars.select("inst", "ts", "open", "high", "low", "close", "volume", "amount"), freq)
    funding = pl.DataFrame([(i, naive(t), r) for i, t, r in fund], schema=["inst", "funding_time", "funding_rate"],
                           orient="row").with_columns(pl.col("funding_time").cast(pl.Datetime("ms")))  # fmt: skip
    oi_frame = pl.DataFrame([(i, naive(t), v) for i, t, v in oi], schema=["inst", "ts", "oi_ccy"],
                            orient="row").with_columns(pl.col("ts").cast(pl.Datetime("ms")))  # fmt: skip
    out = attach_point_in_time(bars, freq, funding=funding if fund else None, open_interest=oi_frame if oi else None)
    assert out.drop("funding_rate", "open_interest").equals(bars.drop("funding_rate", "open_interest"))
    assert dict(out.schema) == BARS_SCHEMA
    step = freq_minutes(freq) * 60_000
    max_f, max_oi = FUNDING_MAX_AGE.total_seconds() * 1000, OI_MAX_AGE.total_seconds() * 1000
    for inst, ts, rate, interest in out.select("inst", pl.col("ts").dt.epoch("ms"), "funding_rate",
                                                "open_interest").iter_rows():  # fmt: skip
        close = ts + step
        f_known = [(t, r) for i, t, r in fund if i == inst and close - max_f <= t <= close]
        o_known = [(t, v) for i, t, v in oi if i == inst and close - max_oi <= t <= close]
        assert rate == (max(f_known)[1] if f_known else None)
        assert interest == (max(o_known)[1] if o_known else None)


def test_bars_without_point_in_time_inputs_get_nulls() -> None:
    bars = bars_for("A", SUN, "60min")
    out = attach_point_in_time(bars, "60min")
    assert out["funding_rate"].null_count() == out["open_interest"].null_count() == 24
    assert np.isnan(out["funding_rate"].to_numpy().astype(float)).all()
