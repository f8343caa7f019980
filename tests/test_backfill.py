"""Backfill/repair: exactly the minutes the stream lacks are asked for."""

import datetime as dt
import json

from hypothesis import given
from hypothesis import strategies as st

from feeder.backfill import MINUTE_MS, day_bounds_ms, missing_ranges, streamed_minutes

DAY = dt.date(2024, 3, 4)
START, END = day_bounds_ms(DAY)


@given(st.sets(st.integers(0, 1439)))
def test_missing_ranges_cover_exactly_the_missing_minutes(have_minutes):
    have = {START + m * MINUTE_MS for m in have_minutes}
    ranges = missing_ranges(have, start_ms=START, end_ms=END)
    covered = {t for lo, hi in ranges for t in range(lo, hi, MINUTE_MS)}
    assert covered == {START + m * MINUTE_MS for m in range(1440)} - have
    assert all(lo < hi for lo, hi in ranges)
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:]))  # disjoint, ordered, not adjacent


def test_streamed_minutes_counts_only_closed_candles_inside_the_day(tmp_path):
    def rec(ts, confirm, inst="BTC-USDT-SWAP"):
        return {"v": 1, "source": "ws", "channel": "candle1m", "inst": inst, "ts": ts, "recv_ts": ts + 60_500,
                "data": [str(ts), "1", "1", "1", "1", "0", "0", "0", confirm]}

    shard = tmp_path / "a.jsonl"
    lines = [json.dumps(rec(START, "1")), json.dumps(rec(START + MINUTE_MS, "0")),
             json.dumps(rec(END, "1")),  # next day
             '{"truncated": ', json.dumps(rec(START + 2 * MINUTE_MS, "1", "ETH-USDT-SWAP"))]
    shard.write_text("\n".join(lines) + "\n")
    got = streamed_minutes([shard], DAY).sort("inst")
    assert got.rows() == [("BTC-USDT-SWAP", START), ("ETH-USDT-SWAP", START + 2 * MINUTE_MS)]
