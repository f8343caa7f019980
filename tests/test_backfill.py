"""Backfill/repair: exactly the minutes the stream lacks are asked for."""

import datetime as dt
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

import okxsim
from feeder.backfill import (MINUTE_MS, BackfillIncomplete, backfill_day, day_bounds_ms, fetch_log, missing_ranges,
                             streamed_minutes)
from feeder.rest import RATE_LIMITS, OkxRestClient
from feeder.shards import read_records

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


def test_interrupted_backfill_resumes_without_fetching_anything_twice(sim, make_client, tmp_path):
    """A backfill cut off by an outage keeps what it fetched; the next run asks only for the rest."""
    insts = [BTC, ETH, SOL]
    out, fetched = _paths(tmp_path)
    # the stream already has the first 10 hours of BTC: only the rest of BTC's day is missing
    shard, streamed = _stream_shard(sim, tmp_path, BTC, until_ms=START + 600 * MINUTE_MS)
    # BTC and ETH go through; once SOL's first page is served, an outage longer than the
    # client's retries starts (every request for SOL's second page fails)
    second_page = int(sim.market.candles_1m(SOL, DAY.isoformat())[-300][0])
    sim.fail_next("history-candles", 1000, status=500, inst_id=SOL, after=second_page)
    before_all = len(sim.requests("history-candles"))
    client = make_client(max_retries=1)
    with pytest.raises(BackfillIncomplete, match="Run the same command again"):
        _backfill(client, insts, tmp_path, shards=[shard])
    assert not out.exists(), "an incomplete backfill must not publish its shard"
    assert set(fetch_log(fetched)) == set(insts)
    first_calls = [(r.params.get("instId"), r.params.get("after"))
                   for r in sim.requests("history-candles")[before_all:] if r.status == 200]
    sim.clear_faults()
    before = len(sim.requests("history-candles"))
    summary = _backfill(client, insts, tmp_path, shards=[shard])
    second = [(r.params.get("instId"), r.params.get("after")) for r in sim.requests("history-candles")[before:]]
    assert second and not set(second) & set(first_calls), "a range was fetched twice"
    assert {inst for inst, _ in second} == {SOL}
    assert _got(tmp_path) == _truth(sim, insts, streamed=streamed)
    assert summary["instruments"][SOL]["fetched_now"] > 1000


# --------------------------------------------------------------------------- the exchange's odd answers
# Each test drives backfill_day against the simulator over 127.0.0.1 with a fault the real OKX
# shows, and ends with the exchange's true candles in the rest shard (or a clear error and no
# shard). 300 rows per page (OKX's documented history-candles limit): 5 requests per day.
# Rate limits are not what these tests are about: loosened on both sides, so none waits for them.

SIM_CLOCK = "2024-03-05T01:00:00Z"
BTC, ETH, SOL = "BTC-USDT-SWAP", "ETH-USDT-SWAP", "SOL-USDT-SWAP"
LOOSE_LIMITS = {path: (10_000, 1.0) for path in RATE_LIMITS}


@pytest.fixture(scope="module")
def sim():
    with okxsim.Simulator(seed=7, clock_start=SIM_CLOCK, speed=1, history_start="2024-02-01",
                          history_limit_max=300, rate_limit_scale=0) as s:
        yield s


@pytest.fixture()
def make_client(sim):
    made: list[OkxRestClient] = []

    def make(**kwargs) -> OkxRestClient:
        kwargs.setdefault("max_retries", 2)
        kwargs.setdefault("backoff_base_s", 0.01)
        made.append(OkxRestClient(base_url=sim.rest, ca_file=sim.ca_file, rate_limits=LOOSE_LIMITS, **kwargs))
        return made[-1]

    yield make
    for client in made:
        client.close()
    sim.clear_faults()


def _paths(tmp_path, day=DAY):
    base = tmp_path / "rest" / "candle1m"
    return base / f"{day}.jsonl", base / f"{day}.fetched"


def _backfill(client, insts, tmp_path, *, day=DAY, shards=(), **kwargs):
    out, fetched = _paths(tmp_path, day)
    return backfill_day(client=client, day=day, instruments=insts, stream_shards=list(shards),
                        fetched_dir=fetched, out_path=out, **kwargs)


def _truth(sim, insts, day=DAY, *, streamed=frozenset()):
    """(inst, ts) of every 1m candle OKX has for ``insts`` on ``day``, minus what was streamed."""
    return {(i, int(r[0])) for i in insts for r in sim.market.candles_1m(i, day.isoformat())} - set(streamed)


def _got(tmp_path, day=DAY):
    out, _ = _paths(tmp_path, day)
    return {(r["inst"], r["ts"]) for r in read_records([out])}


def _stream_shard(sim, tmp_path, inst, *, until_ms):
    """A WebSocket shard holding ``inst``'s closed candles of DAY before ``until_ms``."""
    rows = [r for r in sim.market.candles_1m(inst, DAY.isoformat()) if int(r[0]) < until_ms]
    shard = tmp_path / "ws.jsonl"
    shard.write_text("".join(json.dumps({"v": 1, "source": "ws", "channel": "candle1m", "inst": inst,
                                         "ts": int(r[0]), "recv_ts": int(r[0]) + 60_500, "data": r}) + "\n"
                             for r in rows))
    return shard, {(inst, int(r[0])) for r in rows}


def _requested(sim, since: int) -> list[str]:
    return [r.params.get("instId", "") for r in sim.requests("history-candles")[since:]]


def test_an_empty_page_is_asked_again_not_recorded_as_absence(sim, make_client, tmp_path):
    """Finding 2: OKX answers `{"code":"0","data":[]}` for ranges that have candles: for one
    `after` anchor every time (BTC), or the first two asks whatever the anchor (ETH). Neither
    becomes "the exchange has none": the range is asked again (another anchor, then `candles`)."""
    shard, streamed = _stream_shard(sim, tmp_path, BTC, until_ms=START + 600 * MINUTE_MS)
    sim.empty_next("history-candles", 1000, inst_id=BTC, after=END)
    sim.empty_next("history-candles", 2, inst_id=ETH)
    summary = _backfill(make_client(), [BTC, ETH], tmp_path, shards=[shard])
    assert _got(tmp_path) == _truth(sim, [BTC, ETH], streamed=streamed)
    assert summary["bars_fetched_now"] == len(_truth(sim, [BTC, ETH], streamed=streamed))
    before = len(sim.requests("history-candles"))
    _backfill(make_client(), [BTC, ETH], tmp_path, shards=[shard])
    assert _requested(sim, before) == [], "a complete day was asked again"


def test_an_unconfirmed_empty_answer_fails_the_day_and_a_rerun_asks_again(sim, make_client, tmp_path):
    """Finding 2: when every way of asking says "nothing" for an instrument listed long before,
    that is not recorded as absence: the day fails, naming the instrument, and keeps the others'
    pages; once OKX answers again, a re-run fetches exactly what is missing."""
    sim.empty_next("history-candles", 1000, inst_id=ETH)
    sim.empty_next("market/candles", 1000, inst_id=ETH)
    out, fetched = _paths(tmp_path)
    with pytest.raises(BackfillIncomplete, match=f"{ETH}.*no candle") as err:
        _backfill(make_client(), [BTC, ETH, SOL], tmp_path)
    assert "Run the same command again" in str(err.value)
    assert not out.exists()
    assert set(fetch_log(fetched)) == {BTC, SOL}, "an unconfirmed empty answer was recorded"
    sim.clear_faults()
    before = len(sim.requests("history-candles"))
    _backfill(make_client(), [BTC, ETH, SOL], tmp_path)
    assert set(_requested(sim, before)) == {ETH}
    assert _got(tmp_path) == _truth(sim, [BTC, ETH, SOL])


def test_minutes_before_the_listing_are_confirmed_absent_by_the_listing_time(sim, make_client, tmp_path):
    """XAI lists at 04:00 on its first day: "nothing before 04:00" is true, and recorded."""
    day, xai = dt.date(2024, 2, 27), "XAI-USDT-SWAP"
    summary = _backfill(make_client(), [xai], tmp_path, day=day)
    truth = _truth(sim, [xai], day)
    assert _got(tmp_path, day) == truth and min(ts for _, ts in truth) >= day_bounds_ms(day)[0] + 4 * 3_600_000
    assert summary["attempted"][xai][0][0] == day_bounds_ms(day)[0]  # 00:00-04:00 asked: exchange has none


def test_recheck_absent_asks_recorded_absences_again(sim, make_client, tmp_path):
    """An absence recorded earlier (here: by a version that trusted an empty page) is final
    until `backfill.recheck_absent` asks again; then the true candles replace it."""
    out, fetched = _paths(tmp_path)
    fetched.mkdir(parents=True)
    stale = fetched / f"{BTC}.{START}-{END}.jsonl"
    stale.write_text("")
    before = len(sim.requests("history-candles"))
    _backfill(make_client(), [BTC], tmp_path)
    assert _requested(sim, before) == [] and _got(tmp_path) == set()
    _backfill(make_client(), [BTC], tmp_path, recheck_absent=True)
    assert _got(tmp_path) == _truth(sim, [BTC])
    assert not stale.exists(), "the disproved absence is still in the fetch log"


def test_a_garbled_answer_fails_the_day_after_finishing_the_others(sim, make_client, tmp_path):
    """Finding 3: HTTP 200 with a body that is not JSON, for one instrument, after retries."""
    sim.garble_next("history-candles", 1000, inst_id=ETH)
    out, fetched = _paths(tmp_path)
    with pytest.raises(BackfillIncomplete, match=f"{ETH}.*not JSON") as err:
        _backfill(make_client(), [BTC, ETH, SOL], tmp_path)
    assert '{"code":"0"' in str(err.value), "the message should quote what OKX sent"
    assert not out.exists()
    assert set(fetch_log(fetched)) == {BTC, SOL}
    sim.clear_faults()
    before = len(sim.requests("history-candles"))
    _backfill(make_client(), [BTC, ETH, SOL], tmp_path)
    assert set(_requested(sim, before)) == {ETH}
    assert _got(tmp_path) == _truth(sim, [BTC, ETH, SOL])


def test_a_refusal_for_a_listed_instrument_fails_the_day(sim, make_client, tmp_path):
    """Finding 3: 51001 "Instrument ID does not exist" for ETH, which OKX lists as live."""
    sim.refuse_next("history-candles", 1000, inst_id=ETH, code="51001")
    out, fetched = _paths(tmp_path)
    with pytest.raises(BackfillIncomplete, match=f"{ETH}.*51001.*Instrument ID does not exist"):
        _backfill(make_client(), [BTC, ETH, SOL], tmp_path)
    assert not out.exists() and set(fetch_log(fetched)) == {BTC, SOL}
    sim.clear_faults()
    _backfill(make_client(), [BTC, ETH, SOL], tmp_path)
    assert _got(tmp_path) == _truth(sim, [BTC, ETH, SOL])


def test_a_delisted_instrument_unknown_to_the_exchange_is_recorded_as_such(sim, make_client, tmp_path):
    """Finding 3: FLOW was delisted on 2024-02-21; OKX answers 51001 for its history. The day
    succeeds, and coverage says `unknown_to_exchange` for FLOW's minutes, not "fetch failed"."""
    import polars as pl

    from feeder.coverage import build_coverage_day

    day, flow = dt.date(2024, 2, 20), "FLOW-USDT-SWAP"
    sim.refuse_next("history-candles", 1000, inst_id=flow, code="51001")
    summary = _backfill(make_client(), [BTC, flow], tmp_path, day=day)
    assert "51001" in summary["unknown_to_exchange"][flow] and not summary["errors"]
    assert _got(tmp_path, day) == _truth(sim, [BTC], day)

    work = tmp_path / "work"
    (work / "clean").mkdir(parents=True)
    btc = pl.DataFrame({"ts": sorted(ts for _, ts in _got(tmp_path, day)), "source": "rest"})
    btc.with_columns(pl.col("ts").cast(pl.Datetime("ms"))).write_parquet(work / "clean" / f"{BTC}.parquet")
    pl.DataFrame({"inst": [BTC, flow], "member": [True, True]}).write_parquet(work / "universe.parquet")
    pl.DataFrame(sim.market.instruments(day_bounds_ms(day)[0])).select("instId", "listTime", "expTime").write_parquet(
        work / "instruments.parquet")
    (work / "backfill.json").write_text(json.dumps(summary))
    frame = build_coverage_day(day=day, clean_dir=work / "clean", universe_path=work / "universe.parquet",
                               instruments_path=work / "instruments.parquet",
                               backfill_summary_path=work / "backfill.json", out_path=work / "coverage.parquet")
    row = frame.filter(pl.col("inst") == flow).to_dicts()[0]
    assert row["missing"] == row["expected"] == 1440
    assert (row["missing_unknown_to_exchange"], row["missing_fetch_failed"]) == (1440, 0)


def test_a_hanging_endpoint_fails_the_day_within_the_breaker_budget(sim, make_client, tmp_path):
    """Smaller finding: every request hangs longer than the client's timeout. The client gives
    up once nothing has succeeded for `give_up_after_s` (not after every instrument has timed
    out), the day fails saying which endpoint and what to check, and nothing is written."""
    insts = [BTC, ETH, SOL, "DOGE-USDT-SWAP"]
    out, fetched = _paths(tmp_path)
    sim.delay_next("history-candles", 1000, seconds=1.0)
    client = make_client(timeout_s=0.2, max_retries=8, give_up_after_s=1.0)
    t0 = time.monotonic()
    with pytest.raises(BackfillIncomplete, match=r"history-candles.*no answer.*exchange\.rest_url") as err:
        _backfill(client, insts, tmp_path)
    assert time.monotonic() - t0 < 2.5
    assert all(inst in str(err.value) for inst in insts[1:]), "the instruments not attempted should be named"
    assert not out.exists() and not fetch_log(fetched)
    sim.clear_faults()
    _backfill(make_client(), insts, tmp_path)
    hung = {r.params.get("instId") for r in sim.requests("history-candles") if r.fault == "delay"}
    assert hung == {BTC}, "instruments after the first were still asked while the endpoint hung"
    assert _got(tmp_path) == _truth(sim, insts)


def test_the_workflow_entry_point_takes_its_knobs_from_the_config_blocks(sim, tmp_path):
    """`exchange.timeout_s` / `give_up_after_s` reach the client, `backfill.recheck_absent` the
    backfill; a failed day writes neither the shard nor the summary the next stages read."""
    import polars as pl

    from feeder.backfill import run_backfill

    universe = tmp_path / "universe.parquet"
    pl.DataFrame({"inst": [BTC, ETH], "rank": [1, 2], "member": [True, True]}).write_parquet(universe)
    out, fetched = _paths(tmp_path)
    summary_path = tmp_path / "backfill.json"
    exchange = {"rest_url": sim.rest, "ca_file": sim.ca_file, "timeout_s": 0.2, "give_up_after_s": 0.5}
    run = lambda **kw: run_backfill(exchange=exchange, day=DAY, universe_path=universe,  # noqa: E731
                                    stream_shards=[], out_path=out, summary_path=summary_path, **kw)
    sim.delay_next("history-candles", 1000, seconds=0.6)
    t0 = time.monotonic()
    with pytest.raises(BackfillIncomplete, match=f"not asked, as OKX REST stopped answering: {ETH}"):
        run()
    assert time.monotonic() - t0 < 1.5
    assert not out.exists() and not summary_path.exists()
    sim.clear_faults()
    fetched.mkdir(parents=True, exist_ok=True)
    (fetched / f"{BTC}.{START}-{END}.jsonl").write_text("")  # an absence recorded by an older version
    run(recheck_absent=True)
    assert _got(tmp_path) == _truth(sim, [BTC, ETH])
    assert json.loads(summary_path.read_text())["bars_fetched_now"] == len(_truth(sim, [BTC, ETH]))


# --------------------------------------------------------------------------- the archive as first source


def _archive_shard(sim, tmp_path, inst, *, until_ms, unconfirmed=()):
    """An archive shard holding ``inst``'s candles of DAY before ``until_ms`` (as the archive stage
    writes it: source "archive", the file's strings in REST candle order); ``unconfirmed`` minutes
    carry confirm "0", like a row the archive published unfinished."""
    rows = [[*r[:8], "0" if int(r[0]) in unconfirmed else "1"]
            for r in sim.market.candles_1m(inst, DAY.isoformat()) if int(r[0]) < until_ms]
    shard = tmp_path / "archive.jsonl"
    shard.write_text("".join(json.dumps({"v": 1, "source": "archive", "channel": "candle1m", "inst": inst,
                                         "ts": int(r[0]), "recv_ts": END + 2 * 86_400_000, "data": r}) + "\n"
                             for r in rows))
    return shard, {(inst, int(r[0])) for r in rows if r[8] == "1"}


def test_minutes_the_archive_settled_are_not_asked_of_rest(sim, make_client, tmp_path):
    """The archive's file for 00:00-16:00 UTC (the UTC+8 day) was read: its minutes, with a bar or
    without one (no trade), are settled; REST is asked only for 16:00-24:00 (the file not yet
    published) and for the one minute whose archive row is unconfirmed."""
    sixteen = START + 16 * 60 * MINUTE_MS
    rows = sim.market.candles_1m(BTC, DAY.isoformat())
    bad_minute = int(rows[100][0])
    shard, archived = _archive_shard(sim, tmp_path, BTC, until_ms=sixteen, unconfirmed={bad_minute})
    before = len(sim.requests("history-candles"))
    summary = _backfill(make_client(), [BTC], tmp_path, archive_shards=[shard],
                        archive_covered={BTC: [[START, sixteen]]})
    asked = [int(r.params["after"]) for r in sim.requests("history-candles")[before:]]
    # pages are asked newest first, anchored at the end of each missing range
    assert asked and min(asked) > bad_minute
    assert all(a <= END for a in asked)
    got = _got(tmp_path)
    assert got == _truth(sim, [BTC], streamed=archived)
    assert (BTC, bad_minute) in got and not any(START <= ts < sixteen and ts != bad_minute for _, ts in got)
    assert summary["instruments"][BTC]["from_archive"] == len(archived)
    assert summary["archive_settled"][BTC] == [[START, bad_minute], [bad_minute + MINUTE_MS, sixteen]]
