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


@given(st.sets(st.integers(0, 99)), st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100))))
def test_subtract_ranges_removes_exactly_what_was_done(missing_minutes, done_pairs):
    from feeder.backfill import subtract_ranges

    minute = MINUTE_MS
    missing = missing_ranges({START + m * minute for m in set(range(100)) - missing_minutes},
                             start_ms=START, end_ms=START + 100 * minute)
    done = [(START + min(a, b) * minute, START + max(a, b) * minute) for a, b in done_pairs]
    left = subtract_ranges(missing, done)
    as_set = lambda rs: {t for lo, hi in rs for t in range(lo, hi, minute)}  # noqa: E731
    assert as_set(left) == as_set(missing) - as_set(done)


def test_interrupted_backfill_resumes_without_fetching_anything_twice(tmp_path):
    """A backfill cut off by an outage keeps what it fetched; the next run asks only for the rest."""
    import threading

    import okxsim
    import pytest

    from feeder.backfill import BackfillIncomplete, backfill_day
    from feeder.rest import OkxRestClient
    from feeder.shards import read_records

    insts = ["BTC-USDT-SWAP", "ETH-USDT-SWAP", "SOL-USDT-SWAP"]
    out = tmp_path / "rest" / "candle1m" / f"{DAY}.jsonl"
    fetched = tmp_path / "rest" / "candle1m" / f"{DAY}.fetched"
    with okxsim.Simulator(seed=7, clock_start="2024-03-05T01:00:00Z", speed=1, history_start="2024-02-01") as sim:
        # stream already has the first 10 hours of BTC: only the rest of BTC's day is missing
        shard = tmp_path / "ws.jsonl"
        shard.write_text("".join(
            json.dumps({"v": 1, "source": "ws", "channel": "candle1m", "inst": "BTC-USDT-SWAP", "ts": int(r[0]),
                        "recv_ts": int(r[0]) + 60_500, "data": r}) + "\n"
            for r in sim.market.candles_1m("BTC-USDT-SWAP", DAY.isoformat()) if int(r[0]) < START + 600 * MINUTE_MS))
        with OkxRestClient(base_url=sim.rest, ca_file=sim.ca_file, max_retries=1, backoff_base_s=0.01) as client:
            # BTC and ETH go through; once SOL's first page is served, an outage longer than the
            # client's retries starts.
            stop = threading.Event()

            def outage_when_sol_starts() -> None:
                while not stop.wait(0.002):
                    if any(r.params.get("instId") == "SOL-USDT-SWAP" for r in sim.requests("history-candles")):
                        sim.fail_next("history-candles", 1000, status=500)
                        return

            watcher = threading.Thread(target=outage_when_sol_starts)
            watcher.start()
            try:
                with pytest.raises(BackfillIncomplete, match="Run the same command again"):
                    backfill_day(client=client, day=DAY, instruments=insts, stream_shards=[shard],
                                 fetched_dir=fetched, out_path=out)
            finally:
                stop.set()
                watcher.join()
            assert not out.exists(), "an incomplete backfill must not publish its shard"
            first_calls = [(r.params.get("instId"), r.params.get("after")) for r in sim.requests("history-candles")
                           if r.status == 200]
            sim.clear_faults()
            before = len(sim.requests("history-candles"))
            summary = backfill_day(client=client, day=DAY, instruments=insts, stream_shards=[shard],
                                   fetched_dir=fetched, out_path=out)
        second = [(r.params.get("instId"), r.params.get("after")) for r in sim.requests("history-candles")[before:]]
        assert second and not set(second) & set(first_calls), "a range was fetched twice"
        assert {inst for inst, _ in second} == {"SOL-USDT-SWAP"}
        got = {(r["inst"], r["ts"]) for r in read_records([out])}
        truth = {(i, int(r[0])) for i in insts for r in sim.market.candles_1m(i, DAY.isoformat())
                 if not (i == "BTC-USDT-SWAP" and int(r[0]) < START + 600 * MINUTE_MS)}
        assert got == truth
        assert summary["instruments"]["SOL-USDT-SWAP"]["fetched_now"] > 1000
