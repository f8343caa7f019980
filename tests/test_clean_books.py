"""feeder.clean_books (optional books5 channel) and the order-book fields it gives the bars.

Records are built from the contract's raw record shape (channel ``books5``, ``data`` the
exchange's element verbatim). The hypothesis tests compare the pipeline with a per-second
reference written here from the rules alone (one Python loop over the 1-second grid).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feeder.clean_books import (
    BOOK_MINUTES_SCHEMA,
    BOOK_RAW_SCHEMA,
    books_of_day,
    clean_books_day,
    previous_day_hours,
)
from feeder.resample import BARS_SCHEMA, BOOK_FIELDS, attach_books

DAY = dt.date(2024, 3, 3)
D0 = 1709424000000  # 2024-03-03 00:00 UTC, ms
MIN = 60_000
SWAP, SPOT = "BTC-USDT-SWAP", "BTC-USDT"
INSTRUMENTS = pl.DataFrame({"instId": [SWAP, "ETH-USDT-SWAP"], "ctVal": ["0.01", None], "ctType": ["linear", "linear"]})
CT_VAL = {SWAP: 0.01, SPOT: 1.0}
FEATURES = ("spread_bps", "depth_bid_25bps", "depth_ask_25bps", "imbalance")

Level = tuple[float, float]  # (px, sz)


def lvl(px: float, sz: float) -> list[str]:
    return [repr(float(px)), repr(float(sz)), "0", "3"]


def book(inst: str, ts: int, bids: Sequence[Level], asks: Sequence[Level], *, seq: int = 1, recv: int | None = None,
         channel: str = "books5") -> dict:
    """One raw record (contract section 2) of a books5 element."""
    element = {"asks": [lvl(*a) for a in asks], "bids": [lvl(*b) for b in bids], "instId": inst, "ts": str(ts),
               "seqId": seq}
    return {"v": 1, "source": "ws", "channel": channel, "inst": inst, "ts": ts,
            "recv_ts": ts + 40 if recv is None else recv, "data": element}


def frame(records: Sequence[dict]) -> pl.DataFrame:
    return pl.read_ndjson("\n".join(json.dumps(r) for r in records).encode(), schema=BOOK_RAW_SCHEMA)


def minutes_of(records: Sequence[dict], *, max_age_s: int = 60, day: dt.date = DAY) -> tuple[pl.DataFrame, dict]:
    return books_of_day(frame(records), day=day, contracts=INSTRUMENTS, max_age_s=max_age_s)


def bars_at(minutes: pl.DataFrame, inst: str, freq: str, opens_ms: Sequence[int]) -> list[dict]:
    """The book fields of ``inst``'s ``freq`` bars opening at ``opens_ms`` (bars with a candle)."""
    bars = pl.DataFrame({"inst": [inst] * len(opens_ms), "ts": list(opens_ms)}).with_columns(
        pl.col("ts").cast(pl.Datetime("ms")), *[pl.lit(None, dtype=t).alias(c) for c, t in BARS_SCHEMA.items()
                                                 if c not in ("inst", "ts")])
    out = attach_books(bars.select(list(BARS_SCHEMA)), freq, book_minutes=minutes)
    return out.select(*BOOK_FIELDS).to_dicts()


# a book 20 bps wide around mid 100.0: band edges 99.75 and 100.25 exactly (float64)
BIDS = [(99.9, 100), (99.8, 200), (99.75, 300), (99.74, 400), (99.5, 500)]
ASKS = [(100.1, 10), (100.2, 20), (100.25, 30), (100.26, 40)]


def test_units_band_and_per_second_values() -> None:
    """SWAP quantity = sz × ctVal, SPOT = sz; a level exactly on the 25 bps edge is inside."""
    spot_bids = [(px, sz / 100) for px, sz in BIDS]
    spot_asks = [(px, sz / 100) for px, sz in ASKS]
    minutes, stats = minutes_of([book(SWAP, D0 + 100, BIDS, ASKS), book(SPOT, D0 + 100, spot_bids, spot_asks)])
    for inst in (SWAP, SPOT):
        [bar] = bars_at(minutes, inst, "1min", [D0])
        assert bar["book_coverage"] == 1.0  # the book is the state of all 60 seconds (max_age 60)
        assert bar["spread_bps"] == pytest.approx(20.0, rel=1e-12)  # (100.1 - 99.9) / 100 × 1e4
        assert bar["depth_bid_25bps"] == pytest.approx(1 + 2 + 3, rel=1e-12)  # 99.9, 99.8 and 99.75 (edge)
        assert bar["depth_ask_25bps"] == pytest.approx(0.1 + 0.2 + 0.3, rel=1e-12)  # 100.1, 100.2, 100.25 (edge)
        assert bar["imbalance"] == pytest.approx((15 - 1) / (15 + 1), rel=1e-12)  # all levels: Σbid 15, Σask 1
    [second] = bars_at(minutes, SWAP, "1min", [D0 + MIN])
    assert second["book_coverage"] == 0.0 and all(second[f] is None for f in FEATURES)  # 60 s old: gone
    assert stats["samples"] == 2 and stats["rejected_total"] == 0
    assert dict(minutes.schema) == BOOK_MINUTES_SCHEMA


def narrow(spread_ticks: int, *, bid: float = 100.0) -> tuple[list[Level], list[Level]]:
    return [(bid, 1.0)], [(bid + spread_ticks * 0.01, 1.0)]


def spread_of(ticks: int, bid: float = 100.0) -> float:
    ask = bid + ticks * 0.01
    return (ask - bid) / ((ask + bid) / 2) * 1e4


def test_a_bar_without_a_book_is_nan_with_coverage_zero() -> None:
    minutes, _ = minutes_of([book(SWAP, D0 + 5 * MIN, *narrow(1))])
    [before, during] = bars_at(minutes, SWAP, "1min", [D0, D0 + 5 * MIN])
    assert before == {"spread_bps": None, "depth_bid_25bps": None, "depth_ask_25bps": None, "imbalance": None,
                      "book_coverage": 0.0}
    assert during["book_coverage"] == 1.0
    [hour] = bars_at(minutes, SWAP, "60min", [D0])
    assert hour["book_coverage"] == 60 / 3600 and hour["spread_bps"] == pytest.approx(spread_of(1))


def test_the_last_book_of_a_second_wins() -> None:
    """Per second the greatest (ts, seqId); exact copies (two writers) are duplicates."""
    recs = [
        book(SWAP, D0 + 1_100, *narrow(1), seq=5),
        book(SWAP, D0 + 1_900, *narrow(2), seq=3),  # later ts, smaller seqId: still the later book
        book(SWAP, D0 + 2_500, *narrow(3), seq=9),
        book(SWAP, D0 + 2_500, *narrow(4), seq=10),  # same ts: the greater seqId
        book(SWAP, D0 + 2_500, *narrow(4), seq=10, recv=D0 + 9_000),  # an exact copy
    ]
    minutes, stats = minutes_of(recs)
    [bar] = bars_at(minutes, SWAP, "1min", [D0])
    # second 1: the 2-tick book; seconds 2..59 (max_age 60 from second 2 reaches 61): the 4-tick book
    assert bar["book_coverage"] == 59 / 60
    assert bar["spread_bps"] == pytest.approx((spread_of(2) + 58 * spread_of(4)) / 59, rel=1e-12)
    assert stats["duplicates"] == 1 and stats["superseded"] == 2 and stats["samples"] == 2


def test_carry_forward_up_to_max_age_across_midnight() -> None:
    """The state at 00:00:00 may be the previous day's book, while it is younger than max_age_s."""
    yesterday = [book(SWAP, D0 - 10_000, *narrow(1))]  # second -10
    minutes, stats = minutes_of(yesterday, max_age_s=60)
    [first, second] = bars_at(minutes, SWAP, "1min", [D0, D0 + MIN])
    assert first["book_coverage"] == 50 / 60 and first["spread_bps"] == pytest.approx(spread_of(1))  # s = 0..49
    assert second["book_coverage"] == 0.0 and second["spread_bps"] is None  # never beyond max_age
    minutes, _ = minutes_of(yesterday, max_age_s=11)
    assert bars_at(minutes, SWAP, "1min", [D0])[0]["book_coverage"] == 1 / 60  # s = 0 only: 0 - (-10) < 11
    minutes, stats = minutes_of(yesterday, max_age_s=10)
    assert bars_at(minutes, SWAP, "1min", [D0])[0]["book_coverage"] == 0.0
    assert stats["rejected"]["outside_day"] == 1  # too old to matter: counted, not used
    # a book of the next day never reaches this day (its last bar closes at midnight)
    minutes, stats = minutes_of([book(SWAP, D0 + 86_400_000, *narrow(1))])
    assert minutes.is_empty() and stats["rejected"]["outside_day"] == 1


def test_the_previous_days_shards_hold_what_can_carry_into_the_day() -> None:
    assert previous_day_hours(60) == range(23, 24)
    assert previous_day_hours(3600) == range(22, 24)  # plus a minute of clock skew
    assert previous_day_hours(86_400) == range(0, 24)


def test_a_crossed_or_empty_book_is_no_book_and_does_not_bring_back_the_older_one() -> None:
    recs = [
        book(SWAP, D0, *narrow(1)),
        book(SWAP, D0 + 10_000, [(100.0, 1.0)], [(100.0, 1.0)]),  # ask == bid: touching, unusable
        book(SWAP, D0 + 20_000, *narrow(2)),
        book(SWAP, D0 + 30_000, [], [(100.5, 1.0)]),  # no bids
        book(SWAP, D0 + 40_000, [(100.5, 1.0)], [(100.4, 1.0)]),  # crossed
        book(SWAP, D0 + 50_000, *narrow(3)),
    ]
    minutes, stats = minutes_of(recs)
    [bar] = bars_at(minutes, SWAP, "1min", [D0])
    assert bar["book_coverage"] == 30 / 60  # seconds 0-9, 20-29, 50-59
    assert bar["spread_bps"] == pytest.approx((10 * spread_of(1) + 10 * spread_of(2) + 10 * spread_of(3)) / 30)
    assert stats["unusable_samples"] == 3 and stats["rejected_total"] == 0


def test_a_book_at_the_close_belongs_to_the_next_bar() -> None:
    first, at_close = book(SWAP, D0, *narrow(1)), book(SWAP, D0 + MIN, *narrow(5))
    minutes, _ = minutes_of([first, at_close])
    [bar0, bar1] = bars_at(minutes, SWAP, "1min", [D0, D0 + MIN])
    assert bar0["spread_bps"] == pytest.approx(spread_of(1), rel=1e-12) and bar0["book_coverage"] == 1.0
    assert bar1["spread_bps"] == pytest.approx(spread_of(5), rel=1e-12)
    minutes, _ = minutes_of([first, book(SWAP, D0 + MIN - 1, *narrow(5))])  # 1 ms before the close: second 59
    [bar0] = bars_at(minutes, SWAP, "1min", [D0])
    assert bar0["spread_bps"] == pytest.approx((59 * spread_of(1) + spread_of(5)) / 60, rel=1e-12)


def test_bad_records_are_counted_never_numbers() -> None:
    good = book(SWAP, D0, *narrow(1))
    no_ts = book(SWAP, D0 + 1_000, *narrow(9))
    no_ts["ts"] = None
    del no_ts["data"]["ts"]
    bad_px = book(SWAP, D0 + 2_000, *narrow(9))
    bad_px["data"]["bids"][0][0] = "abc"
    short_level = book(SWAP, D0 + 3_000, *narrow(9))
    short_level["data"]["asks"] = [["100.5"]]
    no_asks = book(SWAP, D0 + 4_000, *narrow(9))
    del no_asks["data"]["asks"]
    zero_size = book(SWAP, D0 + 5_000, [(100.0, 0.0)], [(100.1, 1.0)])
    recs = [good, no_ts, bad_px, short_level, no_asks, zero_size,
            book("ETH-USDT-SWAP", D0, *narrow(9)),  # no ctVal: never guessed
            book(SWAP, D0 + 6_000, *narrow(9), channel="trades"),
            book("../../etc", D0, *narrow(9))]  # fmt: skip
    minutes, stats = minutes_of(recs)
    assert stats["rejected"] == {"wrong_channel": 1, "bad_record": 0, "unknown_inst_type": 1, "missing_ts": 1,
                                 "bad_levels": 4, "unknown_contract_value": 1, "outside_day": 0}
    assert stats["rows_read"] == stats["kept"] + stats["duplicates"] + stats["rejected_total"]
    [bar] = bars_at(minutes, SWAP, "1min", [D0])
    assert bar["spread_bps"] == pytest.approx(spread_of(1), rel=1e-12) and bar["book_coverage"] == 1.0
    assert minutes["inst"].to_list() == [SWAP]


def test_clean_books_day_reads_shards_and_writes_its_outputs(tmp_path: Path) -> None:
    lines = [json.dumps(book(SWAP, D0 - 5_000, *narrow(1))), json.dumps(book(SWAP, D0 + 30_000, *narrow(2)))]
    (tmp_path / "prev.jsonl").write_text(lines[0] + "\n")
    (tmp_path / "day.jsonl").write_text(lines[1] + "\n" + '{"v":1,"data":{"asks":"garbage"}}\n')
    INSTRUMENTS.write_parquet(tmp_path / "instruments.parquet")
    paths = [tmp_path / "prev.jsonl", tmp_path / "day.jsonl"]
    if shutil.which("zstd"):  # sealed shards may be zstd-compressed (contract section 2)
        subprocess.run(["zstd", "-q", "--rm", str(tmp_path / "prev.jsonl")], check=True)
        paths[0] = tmp_path / "prev.jsonl.zst"
    quality = clean_books_day(shard_paths=paths, day=DAY, instruments_path=tmp_path / "instruments.parquet",
                              out_path=tmp_path / "books.parquet", quality_path=tmp_path / "q.json")
    assert quality["files"] == 2 and quality["malformed_lines"] == 1 and quality["samples"] == 2
    assert json.loads((tmp_path / "q.json").read_text()) == quality
    minutes = pl.read_parquet(tmp_path / "books.parquet")
    [bar] = bars_at(minutes, SWAP, "1min", [D0])
    assert bar["book_coverage"] == 1.0  # 0..29 from yesterday's book, 30..59 from today's
    assert bar["spread_bps"] == pytest.approx((30 * spread_of(1) + 30 * spread_of(2)) / 60, rel=1e-12)


# --------------------------------------------------------------------------------------------
# Properties against a per-second reference
# --------------------------------------------------------------------------------------------

H0 = D0 + 7 * 3_600_000  # 07:00 of DAY


def reference(books: Sequence[dict], inst: str, open_ms: int, close_ms: int, max_age_s: int) -> dict:
    """The contract's section 3, second by second, in plain Python."""
    samples: dict[int, tuple] = {}
    for r in books:
        if r["inst"] != inst:
            continue
        key = (r["ts"], r["data"]["seqId"])
        s = r["ts"] // 1000
        if s not in samples or key > samples[s][0]:
            samples[s] = (key, r["data"])
    covered, sums = 0, [0.0] * 4
    for s in range(open_ms // 1000, close_ms // 1000):
        olders = [x for x in samples if x <= s]
        if not olders or s - max(olders) >= max_age_s:
            continue
        data = samples[max(olders)][1]
        bids = [(float(p), float(z) * CT_VAL[inst]) for p, z, *_ in data["bids"]]
        asks = [(float(p), float(z) * CT_VAL[inst]) for p, z, *_ in data["asks"]]
        if not bids or not asks or asks[0][0] <= bids[0][0]:
            continue
        mid = (asks[0][0] + bids[0][0]) / 2
        sb, sa = sum(q for _, q in bids), sum(q for _, q in asks)
        values = [(asks[0][0] - bids[0][0]) / mid * 1e4,
                  sum(q for p, q in bids if p >= mid * (1 - 25e-4)),
                  sum(q for p, q in asks if p <= mid * (1 + 25e-4)),
                  (sb - sa) / (sb + sa)]  # fmt: skip
        covered += 1
        sums = [a + b for a, b in zip(sums, values, strict=True)]
    means = {f: (v / covered if covered else None) for f, v in zip(FEATURES, sums, strict=True)}
    return {**means, "book_coverage": covered / ((close_ms - open_ms) // 1000)}


def assert_same(got: dict, want: dict) -> None:
    assert got["book_coverage"] == want["book_coverage"]
    for f in FEATURES:
        if want[f] is None:
            assert got[f] is None, f
        else:
            assert got[f] == pytest.approx(want[f], rel=1e-9, abs=1e-12), f


@st.composite
def a_book(draw: st.DrawFn, inst: str, lo_ms: int, hi_ms: int) -> dict:
    ts = draw(st.integers(lo_ms, hi_ms - 1))
    bid1 = draw(st.integers(9_900, 10_100)) / 100
    spread = draw(st.sampled_from([-2, 0, 1, 1, 2, 5, 30, 300])) / 100  # crossed, touching, narrow, wide
    n_bid, n_ask = draw(st.integers(0, 5)), draw(st.integers(0, 5))
    bids = [(round(bid1 - 0.05 * i, 2), draw(st.integers(1, 500))) for i in range(n_bid)]
    asks = [(round(bid1 + spread + 0.05 * i, 2), draw(st.integers(1, 500))) for i in range(n_ask)]
    return book(inst, ts, bids, asks)


def numbered(books: list[dict], first: int = 1) -> list[dict]:
    """Distinct seqIds (OKX's increase per instrument), so two books never share (ts, seqId)."""
    for i, b in enumerate(books):
        b["data"]["seqId"] = first + i
    return books


def books_around_the_hour(inst: str) -> st.SearchStrategy[list[dict]]:
    return st.lists(a_book(inst, H0 - 150_000, H0 + 3_600_000 + 90_000), min_size=0, max_size=40).map(numbered)


HYPO = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@HYPO
@given(books=books_around_the_hour(SWAP), max_age_s=st.sampled_from([1, 7, 60, 600]), inst=st.sampled_from([SWAP]))
def test_every_frequency_is_the_mean_over_the_covered_seconds(books: list[dict], max_age_s: int, inst: str) -> None:
    minutes, _ = minutes_of(books, max_age_s=max_age_s)
    [hour] = bars_at(minutes, inst, "60min", [H0])
    assert_same(hour, reference(books, inst, H0, H0 + 3_600_000, max_age_s))
    for freq, step in (("1min", MIN), ("5min", 5 * MIN)):
        opens = [H0 - step, H0, H0 + 7 * step, H0 + 3_600_000 - step, H0 + 3_600_000]
        for got, open_ms in zip(bars_at(minutes, inst, freq, opens), opens, strict=True):
            assert_same(got, reference(books, inst, open_ms, open_ms + step, max_age_s))


@settings(HYPO, max_examples=25)
@given(books=books_around_the_hour(SWAP), later=st.lists(a_book(SWAP, 0, 1), min_size=1, max_size=8), data=st.data())
def test_books_published_at_or_after_a_close_never_change_that_bar(books: list[dict], later: list[dict],
                                                                    data: st.DataObject) -> None:
    close = H0 + data.draw(st.integers(1, 60)) * MIN
    for extra in later:  # move them to [close, close + 2 min), the close itself included
        extra["ts"] = close + data.draw(st.sampled_from([0, 1, 999, 1_000, 59_999, 119_999]))
        extra["data"]["ts"] = str(extra["ts"])
    before, _ = minutes_of(books)
    after, _ = minutes_of([*books, *numbered(later, first=1_000)])
    opens = list(range(H0 - 2 * MIN, close, MIN))
    assert bars_at(before, SWAP, "1min", opens) == bars_at(after, SWAP, "1min", opens)
    if close == H0 + 3_600_000:
        assert bars_at(before, SWAP, "60min", [H0]) == bars_at(after, SWAP, "60min", [H0])


# --------------------------------------------------------------------------------------------
# One shard at a time: the job's memory is one shard's records, its output the whole day's
# --------------------------------------------------------------------------------------------


def write_shards(tmp_path: Path, shards: Sequence[Sequence[dict | str]]) -> list[Path]:
    """One ``NN.jsonl`` per shard (a str is written as a raw line: a malformed one)."""
    paths = []
    for i, lines in enumerate(shards):
        path = tmp_path / f"{i:02d}.jsonl"
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in lines))
        paths.append(path)
    return paths


def run_job(tmp_path: Path, shards: Sequence[Sequence[dict | str]], name: str) -> tuple[dict, bytes]:
    out = tmp_path / name
    out.mkdir()
    INSTRUMENTS.write_parquet(out / "instruments.parquet")
    quality = clean_books_day(shard_paths=write_shards(out, shards), day=DAY,
                              instruments_path=out / "instruments.parquet", out_path=out / "books.parquet",
                              quality_path=out / "q.json")  # fmt: skip
    return quality, (out / "books.parquet").read_bytes()


def test_a_day_split_across_shards_gives_the_same_output_as_one_shard(tmp_path: Path) -> None:
    """Receipt-hour shards split a second's books and repeat books (replays, two writers);
    dedup, the last book of a second and the sums still see the whole day."""
    replayed = book(SWAP, D0 + 5_200, *narrow(3), seq=7)
    two_writers = book(SWAP, D0 + 70_000, *narrow(2), seq=20)
    shards: list[list[dict | str]] = [
        [book(SWAP, D0 - 20_000, *narrow(1), seq=1),  # yesterday's last hour: the state at 00:00:00
         book(SWAP, D0 + 5_900, *narrow(4), seq=9),  # second 5's last book, read BEFORE its earlier one
         replayed, two_writers,
         # same (ts, seqId) and receipt, different levels: dedup keeps the smaller levels text (2 < 3 ticks)
         book(SPOT, D0 + 3_000, *narrow(3), seq=40, recv=D0 + 3_050)],
        [replayed, {**two_writers, "recv_ts": two_writers["recv_ts"] + 1},  # the same book again, later receipt
         book(SWAP, D0 + 5_100, *narrow(6), seq=6),  # second 5, earlier: superseded by seq 9 of shard 0
         book(SWAP, D0 + 59_999, *narrow(1), seq=19), '{"v":1,"data":', book(SPOT, D0 + 10_000, *narrow(1), seq=41)],
        [book(SPOT, D0 + 3_000, *narrow(2), seq=40, recv=D0 + 3_050), book(SWAP, D0 + 3_600_000, *narrow(1), seq=99)],
    ]  # fmt: skip
    split, split_bytes = run_job(tmp_path, shards, "split")
    whole, whole_bytes = run_job(tmp_path, [[line for shard in shards for line in shard]], "whole")
    assert split_bytes == whole_bytes
    assert {**split, "files": 1} == whole and split["files"] == 3
    assert split["malformed_lines"] == 1 and split["rows_read"] == 12
    assert split["duplicates"] == 3 and split["conflicts"] == 1 and split["superseded"] == 2
    minutes = pl.read_parquet(tmp_path / "split" / "books.parquet")
    [swap0] = bars_at(minutes, SWAP, "1min", [D0])
    # s 0..4: yesterday's 1 tick (s -20 + 60 > 4); 5..58: seq 9 (4 ticks, not seq 6's); 59: 1 tick
    assert swap0["book_coverage"] == 1.0
    assert swap0["spread_bps"] == pytest.approx((6 * spread_of(1) + 54 * spread_of(4)) / 60, rel=1e-12)
    [spot0] = bars_at(minutes, SPOT, "1min", [D0])
    # s 3..9: the 2-tick copy (smaller levels text than the 3-tick one, though read later); 10..59: 1 tick
    assert spot0["spread_bps"] == pytest.approx((7 * spread_of(2) + 50 * spread_of(1)) / 57, rel=1e-12)


def test_the_job_reads_and_parses_one_shard_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each read is one shard, and no earlier shard's records are alive when the next is read."""
    import weakref

    import feeder.clean_books as clean_books

    reads: list[tuple[list[Path], weakref.ref]] = []
    real_read = clean_books.read_raw_records

    def read_one_at_a_time(paths: Sequence[Path], schema: dict) -> tuple[pl.DataFrame, int]:
        alive = [p for p, ref in reads if ref() is not None]
        assert not alive, f"records of {alive} still alive when reading {paths}"
        records, malformed = real_read(paths, schema)
        reads.append((list(paths), weakref.ref(records)))
        return records, malformed

    monkeypatch.setattr(clean_books, "read_raw_records", read_one_at_a_time)
    shards = [[book(SWAP, D0 + h * 3_600_000 + s * 1_000, *narrow(1 + s % 3), seq=h * 100 + s) for s in range(50)]
              for h in range(4)]  # fmt: skip
    quality, _ = run_job(tmp_path, shards, "job")
    assert [p for p, _ in reads] == [[tmp_path / "job" / f"{h:02d}.jsonl"] for h in range(4)]
    assert quality["rows_read"] == 200 and quality["samples"] == 200 and quality["files"] == 4
