"""feeder.resample: bucket properties (hypothesis) and the per-day job."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feeder.resample import BARS_SCHEMA, freq_minutes, resample_bars, resample_day, resample_day_all

DAY = dt.date(2024, 3, 2)
MIDNIGHT = dt.datetime(2024, 3, 2)
FREQS = ["1min", "5min", "15min", "60min", "day"]


def bars_frame(rows: list[tuple[str, dt.datetime, float, float, float, float, float, float | None]]) -> pl.DataFrame:
    schema = {
        "inst": pl.Utf8,
        "ts": pl.Datetime("ms"),
        "open": pl.Float64,
        "high": pl.Float64,
        "low": pl.Float64,
        "close": pl.Float64,
        "volume": pl.Float64,
        "amount": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


@st.composite
def one_minute_bars(draw: st.DrawFn) -> pl.DataFrame:
    """1m bars of up to 3 instruments on minutes spread over two midnights (day-1 .. day+1)."""
    rows = []
    for inst in draw(st.lists(st.sampled_from(["BTC-USDT-SWAP", "ETH-USDT-SWAP", "SOL-USDT-SWAP"]), unique=True)):
        minutes = draw(st.sets(st.integers(-90, 1440 + 90), max_size=60))
        for m in sorted(minutes):
            prices = draw(st.lists(st.floats(1, 1e5, allow_nan=False), min_size=4, max_size=4))
            low, high = min(prices), max(prices)
            opn, close = prices[1], prices[2]
            volume = draw(st.sampled_from([0.0, 0.5, 1.25, 1000.0]))
            amount = None if draw(st.integers(0, 20)) == 0 else volume * (low + high) / 2
            rows.append((inst, MIDNIGHT + dt.timedelta(minutes=m), opn, high, low, close, volume, amount))
    shuffled = draw(st.permutations(rows))
    return bars_frame(list(shuffled))


HYPO = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def bucket_of(frame: pl.DataFrame, freq: str) -> pl.Expr:
    n = freq_minutes(freq) * 60_000
    return (pl.col("ts").cast(pl.Int64) // n * n).cast(pl.Datetime("ms"))


@HYPO
@given(one_minute_bars(), st.sampled_from(FREQS))
def test_bucket_properties(bars: pl.DataFrame, freq: str) -> None:
    out = resample_bars(bars, freq)
    minutes = freq_minutes(freq)
    assert dict(out.schema) == BARS_SCHEMA
    assert out.equals(out.sort("inst", "ts"))
    assert not out.select(pl.struct("inst", "ts").is_duplicated().any()).item()
    # labels aligned on UTC bucket opens
    assert (out["ts"].cast(pl.Int64) % (minutes * 60_000) == 0).all()
    # OHLC consistency
    assert out.select((pl.col("high") >= pl.max_horizontal("open", "close")).all()).item()
    assert out.select((pl.col("low") <= pl.min_horizontal("open", "close")).all()).item()
    # coverage = bars present / minutes in bucket, never above 1
    assert ((out["coverage"] > 0) & (out["coverage"] <= 1)).all()
    assert out["coverage"].sum() * minutes == pytest.approx(bars.height)
    # sums preserved per instrument (volume always; amount where no minute's amount is unknown)
    expected = bars.group_by("inst").agg(pl.col("volume").sum()).sort("inst")
    got = out.group_by("inst").agg(pl.col("volume").sum()).sort("inst")
    assert got["inst"].equals(expected["inst"])
    assert got["volume"].to_list() == pytest.approx(expected["volume"].to_list())
    per_bucket = (
        bars.with_columns(bucket_of(bars, freq).alias("ts"))
        .group_by("inst", "ts")
        .agg(pl.col("amount").sum().alias("amount_in"), pl.col("amount").null_count().alias("unknown"), pl.len())
    )
    joined = out.join(per_bucket, on=["inst", "ts"], how="full", coalesce=True)
    assert joined.height == out.height == per_bucket.height  # no empty bucket, no lost bar
    known = joined.filter(pl.col("unknown") == 0)
    assert known["amount"].to_list() == pytest.approx(known["amount_in"].to_list())
    assert joined.filter(pl.col("unknown") > 0)["amount"].null_count() == joined.filter(pl.col("unknown") > 0).height
    # vwap never invented: null exactly when volume is 0 or amount unknown
    vwap_null = out["vwap"].is_null()
    assert vwap_null.equals((out["volume"] == 0) | out["amount"].is_null(), check_names=False)


@HYPO
@given(one_minute_bars(), st.sampled_from(FREQS), st.randoms(use_true_random=False))
def test_same_bars_in_any_order_give_the_same_bytes(bars: pl.DataFrame, freq: str, rnd: random.Random) -> None:
    """Rebuilds are reproducible: float sums do not depend on the order the bars were read in."""
    rows = bars.rows()
    rnd.shuffle(rows)
    assert resample_bars(bars_frame(rows), freq).equals(resample_bars(bars, freq))


def test_long_bucket_sums_do_not_depend_on_row_order() -> None:
    """A full day of one instrument: 1,440 float additions, where association order shows."""
    volumes = [((i * 7919) % 1000) * 1.37 + 0.1 for i in range(1440)]
    rows = [("BTC-USDT-SWAP", MIDNIGHT + dt.timedelta(minutes=i), 1.0, 1.0, 1.0, 1.0, v, v * 3.3)
            for i, v in enumerate(volumes)]
    reference = resample_bars(bars_frame(rows), "day")
    for seed in range(10):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        assert resample_bars(bars_frame(shuffled), "day").equals(reference)


@HYPO
@given(one_minute_bars())
def test_one_minute_is_identity(bars: pl.DataFrame) -> None:
    out = resample_bars(bars, "1min")
    expected = bars.sort("inst", "ts")
    for col in ("inst", "ts", "open", "high", "low", "close", "volume", "amount"):
        assert out[col].equals(expected[col]), col
    assert (out["coverage"] == 1.0).all()


def test_day_spanning_midnight_boundaries() -> None:
    rows = [
        ("BTC-USDT-SWAP", MIDNIGHT - dt.timedelta(minutes=2), 10, 12, 9, 11, 1.0, 10.0),
        ("BTC-USDT-SWAP", MIDNIGHT - dt.timedelta(minutes=1), 11, 13, 10, 12, 2.0, 24.0),
        ("BTC-USDT-SWAP", MIDNIGHT, 20, 22, 19, 21, 3.0, 60.0),
        ("BTC-USDT-SWAP", MIDNIGHT + dt.timedelta(minutes=4), 21, 25, 20, 24, 0.0, 0.0),
        ("BTC-USDT-SWAP", MIDNIGHT + dt.timedelta(minutes=5), 30, 31, 29, 30, 1.0, 30.0),
    ]
    bars = bars_frame(rows)
    five = resample_bars(bars, "5min")
    assert five["ts"].to_list() == [dt.datetime(2024, 3, 1, 23, 55), MIDNIGHT, MIDNIGHT + dt.timedelta(minutes=5)]
    assert five["open"].to_list() == [10, 20, 30]
    assert five["close"].to_list() == [12, 24, 30]
    assert five["high"].to_list() == [13, 25, 31]
    assert five["low"].to_list() == [9, 19, 29]
    assert five["volume"].to_list() == [3.0, 3.0, 1.0]
    assert five["vwap"].to_list() == [34.0 / 3.0, 20.0, 30.0]
    assert five["coverage"].to_list() == [0.4, 0.4, 0.2]
    day = resample_bars(bars, "day")
    assert day["ts"].to_list() == [dt.datetime(2024, 3, 1), MIDNIGHT]
    assert day["open"].to_list() == [10, 20] and day["close"].to_list() == [12, 30]
    assert day["coverage"].to_list() == [2 / 1440, 3 / 1440]
    sixty = resample_bars(bars, "60min")
    assert sixty["ts"].to_list() == [dt.datetime(2024, 3, 1, 23), MIDNIGHT]


def test_zero_volume_bucket_has_null_vwap() -> None:
    bars = bars_frame([("ETH-USDT-SWAP", MIDNIGHT, 5, 5, 5, 5, 0.0, 0.0)])
    out = resample_bars(bars, "15min").row(0, named=True)
    assert out["volume"] == 0.0 and out["amount"] == 0.0 and out["vwap"] is None


@pytest.mark.parametrize(
    ("freq", "hint"),
    [("1h", "use 60min"), ("60m", "use 60min"), ("1d", "use day"), ("1D", "use day"), ("5T", "use 5min"),
     ("7min", "does not divide"), ("week", "'day'"), ("0min", "'<N>min'")],
)  # fmt: skip
def test_unknown_freq_rejected(freq: str, hint: str) -> None:
    with pytest.raises(ValueError, match=hint):
        resample_bars(bars_frame([]), freq)


def test_duplicate_input_rejected() -> None:
    row = ("BTC-USDT-SWAP", MIDNIGHT, 1, 1, 1, 1, 1.0, 1.0)
    with pytest.raises(ValueError, match="duplicate"):
        resample_bars(bars_frame([row, row]), "5min")


def test_resample_day_reads_clean_layout(tmp_path: Path) -> None:
    clean_dir = tmp_path / "clean" / DAY.isoformat()
    clean_dir.mkdir(parents=True)
    for inst, k in (("BTC-USDT-SWAP", 1.0), ("ETH-USDT-SWAP", 2.0)):
        frame = bars_frame(
            [(inst, MIDNIGHT + dt.timedelta(minutes=m), k, k, k, k, 1.0, k) for m in range(0, 1440, 7)]
        ).drop("inst").with_columns(pl.lit("ws").alias("source"))
        frame.write_parquet(clean_dir / f"{inst}.parquet")
    out_path = tmp_path / "bars" / "60min" / f"{DAY}.parquet"
    written = resample_day(clean_dir=clean_dir, day=DAY, freq="60min", out_path=out_path)
    read = pl.read_parquet(out_path)
    assert read.equals(written)
    assert dict(read.schema) == BARS_SCHEMA
    assert read["inst"].unique().sort().to_list() == ["BTC-USDT-SWAP", "ETH-USDT-SWAP"]
    assert read.height == 48
    assert read.filter(pl.col("inst") == "ETH-USDT-SWAP")["vwap"].unique().to_list() == [2.0]


def test_resample_day_without_data_writes_schema(tmp_path: Path) -> None:
    clean_dir = tmp_path / "clean" / DAY.isoformat()
    clean_dir.mkdir(parents=True)
    out_path = tmp_path / "bars" / "day" / f"{DAY}.parquet"
    resample_day(clean_dir=clean_dir, day=DAY, freq="day", out_path=out_path)
    read = pl.read_parquet(out_path)
    assert read.is_empty() and dict(read.schema) == BARS_SCHEMA
    with pytest.raises(ValueError, match="use 60min"):
        resample_day(clean_dir=clean_dir, day=DAY, freq="1h", out_path=out_path)


def test_book_fields_come_out_at_every_frequency(tmp_path: Path) -> None:
    """Per-minute book sums (feeder.clean_books) → mean over the covered seconds at 1min, 60min and day."""
    clean_dir = tmp_path / "clean" / DAY.isoformat()
    clean_dir.mkdir(parents=True)
    bars_frame([("BTC-USDT-SWAP", MIDNIGHT + dt.timedelta(minutes=m), 1, 1, 1, 1, 1.0, 1.0) for m in range(1440)]).drop(
        "inst").with_columns(pl.lit("ws").alias("source")).write_parquet(clean_dir / "BTC-USDT-SWAP.parquet")
    # minute 0: 60 s at spread 2 bps; minute 1: 30 s at 4 bps; minute 61: 15 s at 8 bps; nothing else
    books = pl.DataFrame({
        "inst": ["BTC-USDT-SWAP"] * 3,
        "ts": [MIDNIGHT, MIDNIGHT + dt.timedelta(minutes=1), MIDNIGHT + dt.timedelta(minutes=61)],
        "covered_s": [60, 30, 15],
        "spread_bps_sum": [120.0, 120.0, 120.0],
        "depth_bid_25bps_sum": [60.0, 60.0, 0.0],
        "depth_ask_25bps_sum": [6.0, 3.0, 1.5],
        "imbalance_sum": [30.0, -30.0, 15.0],
    }).with_columns(pl.col("ts").cast(pl.Datetime("ms")))  # fmt: skip
    books.write_parquet(tmp_path / "books.parquet")
    freqs = ["1min", "60min", "day"]
    out = resample_day_all(clean_dir=clean_dir, day=DAY, out_paths={f: tmp_path / f"{f}.parquet" for f in freqs},
                           books_path=tmp_path / "books.parquet")
    one, hour, day = out["1min"], out["60min"], out["day"]
    assert dict(one.schema) == dict(hour.schema) == dict(day.schema) == BARS_SCHEMA
    assert one["book_coverage"].head(3).to_list() == [1.0, 0.5, 0.0]
    assert one["spread_bps"].head(3).to_list() == [2.0, 4.0, None]  # a minute without a book: NaN, coverage 0
    assert one["imbalance"].head(2).to_list() == [0.5, -1.0]
    # 60min: Σ sums / Σ seconds (240 / 90), not the mean of the minute means ((2 + 4) / 2)
    assert hour["spread_bps"].head(2).to_list() == [240.0 / 90, 8.0]
    assert hour["book_coverage"].head(2).to_list() == [90 / 3600, 15 / 3600]
    assert hour["depth_bid_25bps"].head(2).to_list() == [120.0 / 90, 0.0]
    assert hour["spread_bps"][2] is None and hour["book_coverage"][2] == 0.0
    assert day.select("spread_bps", "depth_ask_25bps", "book_coverage").row(0) == (360.0 / 105, 10.5 / 105,
                                                                                   105 / 86400)
    without = resample_day_all(clean_dir=clean_dir, day=DAY, out_paths={"day": tmp_path / "x.parquet"})["day"]
    assert without.select("spread_bps", "book_coverage").row(0) == (None, None)  # books5 not collected: unknown
