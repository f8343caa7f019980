"""The funding / open-interest stages chained on the simulator's ground truth, without processes.

Raw shards are written from ``okxsim.Market`` (candles, REST funding history, stream funding
pushes, open-interest pushes at irregular times), then clean -> clean_funding ->
clean_open_interest -> resample run exactly as the workflow calls them. Covers what the
end-to-end test's universe does not: a 4-hour funding interval, and a day whose settlements
come from the stream only (older than the REST history).
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest

import okxsim
from feeder.clean import clean_day
from feeder.clean_funding import clean_funding_day
from feeder.clean_open_interest import clean_open_interest_day
from feeder.records import encode_record, records_from_frame, records_from_rest
from feeder.resample import freq_minutes, resample_day

SUN = dt.date(2024, 3, 3)
SUN_MS = 1709424000000
DAY_MS = 86_400_000
MIN = 60_000
H = 3_600_000
NOW = SUN_MS + 2 * DAY_MS


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    market = okxsim.Market(seed=7, history_start="2024-02-01", clock_start="2024-03-04T22:00:00Z")
    four_h = next(s.inst_id for s in market.specs if s.is_swap and s.funding_hours == 4 and s.delist_ms is None)
    stream_only = "ETH-USDT-SWAP"  # its settlements come from the stream alone
    insts = [four_h, stream_only]
    root = tmp_path_factory.mktemp("pipeline")
    rng = random.Random(3)
    candles, rest, pushes, oi = [], [], [], []
    for inst in insts:
        candles += records_from_rest("candle1m", market.candles_1m(inst, SUN.isoformat()), recv_ts=NOW, inst=inst).records
        if inst != stream_only:
            rows = market.funding_history(inst, NOW, after=SUN_MS + DAY_MS + 1, before=SUN_MS - 8 * H - 1, limit=400)
            rest += records_from_rest("funding-rate", rows, recv_ts=NOW, inst=inst).records
        for t in range(SUN_MS - DAY_MS, SUN_MS + DAY_MS + H, MIN):
            el = market.funding_rate(inst, t + 7_000)
            pushes += records_from_frame({"arg": {"channel": "funding-rate", "instId": inst}, "data": [el]},
                                         recv_ts=t + 7_100).records  # fmt: skip
        # open interest pushed at irregular times, with a 40-minute outage at 10:00
        t = SUN_MS - 30 * MIN
        while t < SUN_MS + DAY_MS + 10 * MIN:
            if not SUN_MS + 10 * H <= t < SUN_MS + 10 * H + 40 * MIN:
                oi += records_from_frame({"arg": {"channel": "open-interest", "instId": inst},
                                          "data": [market.open_interest(inst, t)]}, recv_ts=t + 80).records  # fmt: skip
            t += rng.randint(1_000, 120_000)
    paths = {}
    for name, recs in (("candles", candles), ("rest", rest), ("pushes", pushes), ("oi", oi)):
        paths[name] = root / f"{name}.jsonl"
        paths[name].write_bytes(b"".join(encode_record(r) for r in recs))
    clean_day(shard_paths=[paths["candles"]], day=SUN, out_dir=root / "clean", quality_path=root / "q.json")
    clean_funding_day(shard_paths=[paths["rest"], paths["pushes"]], day=SUN, out_path=root / "funding.parquet",
                      quality_path=root / "qf.json")  # fmt: skip
    clean_open_interest_day(shard_paths=[paths["oi"]], day=SUN, out_path=root / "oi.parquet",
                            quality_path=root / "qo.json")  # fmt: skip
    bars = {}
    for freq in ("1min", "5min", "60min", "day"):
        bars[freq] = resample_day(clean_dir=root / "clean", day=SUN, freq=freq, out_path=root / f"{freq}.parquet",
                                  funding_path=root / "funding.parquet", open_interest_path=root / "oi.parquet")  # fmt: skip
    oi_times = {}
    for r in oi:
        oi_times.setdefault(r["inst"], []).append(r["ts"])
    return {"market": market, "insts": insts, "four_h": four_h, "bars": bars, "oi_times": oi_times}


@pytest.mark.parametrize("freq", ["1min", "5min", "60min", "day"])
def test_funding_equals_the_settled_history(built, freq: str) -> None:
    market = built["market"]
    step = freq_minutes(freq) * MIN
    compared = 0
    for inst in built["insts"]:
        truth = market.funding_history(inst, NOW, after=SUN_MS + 2 * DAY_MS, before=SUN_MS - DAY_MS, limit=400)
        settled = sorted((int(r["fundingTime"]), float(r["fundingRate"])) for r in truth)
        bars = built["bars"][freq].filter(inst=inst)
        for ts, rate in bars.select(bars["ts"].dt.epoch("ms"), "funding_rate").iter_rows():
            close = ts + step
            want = [r for t, r in settled if t <= close][-1]
            assert rate == want, (inst, freq, ts)
            compared += 1
    assert compared >= 0.99 * 2 * 1440 * MIN // step  # every bar (the simulator leaves a few minutes out)


def test_four_hour_settlements_change_every_four_hours(built) -> None:
    hourly = built["bars"]["60min"].filter(inst=built["four_h"])["funding_rate"].to_list()
    # bars closing at 04:00, 08:00, ... switch to the new settlement: the value is constant on
    # the 4 bars opening 00:00-03:00 minus the last one, i.e. changes at bars 3, 7, 11, ...
    changes = [i for i in range(1, 24) if hourly[i] != hourly[i - 1]]
    assert set(changes) <= {3, 7, 11, 15, 19, 23} and len(changes) >= 4


def test_open_interest_equals_the_last_push_or_nan(built) -> None:
    market = built["market"]
    for freq in ("1min", "5min", "60min", "day"):
        step = freq_minutes(freq) * MIN
        for inst in built["insts"]:
            times = sorted(built["oi_times"][inst])
            bars = built["bars"][freq].filter(inst=inst)
            nan = 0
            for ts, value in bars.select(bars["ts"].dt.epoch("ms"), "open_interest").iter_rows():
                close = ts + step
                known = [t for t in times if close - 15 * MIN <= t <= close]
                want = float(market.open_interest(inst, known[-1])["oiCcy"]) if known else None
                assert value == want, (inst, freq, ts)
                nan += want is None
            if freq == "1min":
                assert nan >= 40 - 15  # the outage, once the last push before it is 15 minutes old
