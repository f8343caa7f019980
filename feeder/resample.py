"""Resample cleaned 1-minute bars into Qlib frequencies (``1min``, ``Nmin``, ``day``).

Buckets are UTC-aligned and labelled by their OPEN time, like the 1-minute bars themselves and
like Qlib's calendars. A bucket without a single 1-minute bar produces no row: Qlib turns the
missing slot into NaN, which is the honest value. ``coverage`` says how complete a bucket is
(1m bars present / minutes in the bucket) so research code can filter thin bars instead of
trusting a 5-minute close that is really the close of minute 2.

Only the frequencies of feeder.registry are accepted: names Qlib itself parses (``1h`` or
``60m`` raise inside Qlib, ``1d`` silently reads nothing), with N dividing a day, so no bucket
straddles midnight and each day's bar file is complete on its own.

Point-in-time fields (:func:`attach_point_in_time`): a bar opening at ``ts`` closes at
``ts + freq``; ``funding_rate`` and ``open_interest`` are the last values whose time is at or
before that close (as-of joins, never a value from after it). Additive trade fields
(``n_trades``, ``taker_buy_volume``) come with the 1-minute bars and are summed like volume.

Order-book fields (:func:`attach_books`, only with the ``books5`` channel): the mean over every
second of the bar with a book, from the per-minute sums of feeder.clean_books (Σ sums / Σ
seconds over the bar's minutes: never a mean of minute means), and ``book_coverage`` = those
seconds / the bar's seconds. A book belongs to the second of its timestamp, so nothing
published at or after the bar's close reaches it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from feeder.atomic import write_parquet
from feeder.clean_books import BOOK_FEATURES, BOOK_MINUTES_SCHEMA
from feeder.clean_funding import FUNDING_MAX_AGE, read_funding
from feeder.clean_open_interest import OI_MAX_AGE, read_open_interest
from feeder.registry import FIELDS, MINUTE_MS, bar_fields, freq_minutes

__all__ = [
    "BARS_SCHEMA",
    "BOOK_FIELDS",
    "POINT_IN_TIME_FIELDS",
    "TRADE_FIELDS",
    "attach_books",
    "attach_point_in_time",
    "freq_minutes",
    "resample_bars",
    "resample_day",
    "trade_fields_for_minutes",
]

#: bars/<freq>/<day>.parquet: the bar's open time, then every field the bars carry
#: (feeder.registry.bar_fields: the minute aggregates, then the as-of fields), all Float64.
BARS_SCHEMA: dict[str, pl.DataType] = {
    "inst": pl.Utf8(),
    "ts": pl.Datetime("ms"),
    **{name: pl.Float64() for name in bar_fields()},
}
#: Fields that are not aggregates of the bar's minutes but as-of values at its close.
POINT_IN_TIME_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.aggregation == "as_of")
#: Additive per-minute fields that exist only when the trades channel is collected.
TRADE_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.source == "trades")
#: Fields made from the order books (books5 channel): the time-weighted means and book_coverage.
BOOK_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.source == "books")


def _sum_in_time_order(column: str) -> pl.Expr:
    """Sum of a bucket's minutes, added one by one in time order.

    Float addition is not associative, and polars' group sums add in an order that depends on
    how the rows arrived (seen: the same bars read in another order gave day volumes 1 ulp
    apart). A sequential sum in time order gives the same bytes on every rebuild, which is what
    lets two builds (local and on S3, or before and after a refactor) be compared byte for byte.
    """
    return pl.col(column).sort_by("ts").cum_sum().last()


def resample_bars(bars_1m: pl.DataFrame, freq: str) -> pl.DataFrame:
    """Aggregate 1-minute bars of any number of instruments into ``freq`` buckets.

    Input: ``inst, ts`` (Datetime, bar open), ``open, high, low, close, volume, amount`` and
    optionally ``n_trades, taker_buy_volume``; unique on (inst, ts) (ValueError otherwise: a
    duplicate would be double-counted). Output: BARS_SCHEMA, sorted by inst, ts. ``amount`` (and
    each trade field) is null if any minute's value is unknown (never a partial sum); ``vwap`` =
    amount / volume, null when volume is 0 or amount unknown. The point-in-time and book fields
    are null here: :func:`attach_point_in_time` and :func:`attach_books` fill them.
    """
    minutes = freq_minutes(freq)
    bucket_ms = minutes * MINUTE_MS
    if bars_1m.select(pl.struct("inst", "ts").is_duplicated().any()).item():
        raise ValueError("resample_bars: input has duplicate (inst, ts) bars")
    ts_ms = pl.col("ts").cast(pl.Datetime("ms")).cast(pl.Int64)
    by_time = pl.col("ts")
    missing = [pl.lit(None, dtype=pl.Float64).alias(c) for c in TRADE_FIELDS if c not in bars_1m.columns]
    typed = bars_1m.lazy().with_columns(missing).with_columns(
        pl.col("inst").cast(pl.Utf8),
        pl.col("ts").cast(pl.Datetime("ms")),
        ((ts_ms // bucket_ms) * bucket_ms).cast(pl.Datetime("ms")).alias("bucket"),
        *[pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close", "volume", "amount", *TRADE_FIELDS)],
    )
    if minutes == 1:
        # one bar per bucket: every aggregate is the bar itself (and grouping 1440 x N
        # one-row groups is the slowest part of a day's resampling)
        buckets = typed.with_columns(pl.lit(1.0).alias("coverage")).drop("ts")
    else:
        buckets = typed.group_by("inst", "bucket").agg(
            pl.col("open").sort_by(by_time).first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").sort_by(by_time).last(),
            _sum_in_time_order("volume"),
            *[pl.when(pl.col(c).null_count() == 0).then(_sum_in_time_order(c)).alias(c) for c in ("amount", *TRADE_FIELDS)],
            (pl.len() / minutes).cast(pl.Float64).alias("coverage"),
        )
    out = (
        buckets.with_columns(
            pl.when(pl.col("volume") > 0).then(pl.col("amount") / pl.col("volume")).alias("vwap"),
            *[pl.lit(None, dtype=pl.Float64).alias(c) for c in (*POINT_IN_TIME_FIELDS, *BOOK_FIELDS)],
        )
        .rename({"bucket": "ts"})
        .select([pl.col(c).cast(t) for c, t in BARS_SCHEMA.items()])
        .sort("inst", "ts")
    )
    return out.collect()


def attach_point_in_time(
    bars: pl.DataFrame,
    freq: str,
    *,
    funding: pl.DataFrame | None = None,
    open_interest: pl.DataFrame | None = None,
    funding_max_age: dt.timedelta = FUNDING_MAX_AGE,
    oi_max_age: dt.timedelta = OI_MAX_AGE,
) -> pl.DataFrame:
    """Set ``funding_rate`` and ``open_interest`` of ``bars`` (BARS_SCHEMA) as of each bar's close.

    ``close = ts + freq``. ``funding`` (``inst, funding_time, funding_rate``): the settlement
    with the greatest ``funding_time <= close``, if it is at most ``funding_max_age`` old.
    ``open_interest`` (``inst, ts, oi_ccy``): the push with the greatest ``ts <= close``, at
    most ``oi_max_age`` old, in base coin. Anything else is null. Row order and all other
    columns are unchanged.
    """
    step = dt.timedelta(minutes=freq_minutes(freq))
    if bars.is_empty():
        return bars
    left = bars.with_row_index("_row").with_columns((pl.col("ts").cast(pl.Datetime("ms")) + step).alias("_close"))
    left = left.drop(*POINT_IN_TIME_FIELDS, strict=False).sort("_close")
    fund = (
        (funding if funding is not None else read_funding(None))
        .select(pl.col("inst").cast(pl.Utf8), pl.col("funding_time").cast(pl.Datetime("ms")).alias("_t"),
                pl.col("funding_rate").cast(pl.Float64))
        .drop_nulls(["inst", "_t"])
        .sort("_t")
    )  # fmt: skip
    oi = (
        (open_interest if open_interest is not None else read_open_interest(None))
        .select(pl.col("inst").cast(pl.Utf8), pl.col("ts").cast(pl.Datetime("ms")).alias("_t"),
                pl.col("oi_ccy").cast(pl.Float64).alias("open_interest"))
        .drop_nulls(["inst", "_t"])
        .sort("_t")
    )  # fmt: skip
    joined = left.join_asof(
        fund, left_on="_close", right_on="_t", by="inst", strategy="backward", tolerance=funding_max_age,
        check_sortedness=False,
    ).drop("_t")  # fmt: skip
    joined = joined.join_asof(
        oi, left_on="_close", right_on="_t", by="inst", strategy="backward", tolerance=oi_max_age,
        check_sortedness=False,
    ).drop("_t")  # fmt: skip
    return joined.sort("_row").select([pl.col(c).cast(t) for c, t in BARS_SCHEMA.items()])


def attach_books(bars: pl.DataFrame, freq: str, *, book_minutes: pl.DataFrame) -> pl.DataFrame:
    """Set the order-book fields of ``bars`` (BARS_SCHEMA) from per-minute sums (feeder.clean_books).

    ``book_minutes`` (BOOK_MINUTES_SCHEMA: ``inst, ts`` minute open, ``covered_s`` and the
    ``<feature>_sum`` columns) holds only minutes with a book. Per bar: ``covered`` = Σ
    ``covered_s`` of its minutes, ``book_coverage = covered / seconds in the bar`` (0.0 when
    none), each feature = Σ its sums / covered (null when covered == 0). Sums are added in time
    order (the same bytes on every rebuild). Row order and all other columns are unchanged.
    """
    if bars.is_empty():
        return bars
    bucket_ms = freq_minutes(freq) * MINUTE_MS
    minutes = book_minutes.select([pl.col(c).cast(t) for c, t in BOOK_MINUTES_SCHEMA.items()])
    per_bar = (
        minutes.with_columns(((pl.col("ts").cast(pl.Int64) // bucket_ms) * bucket_ms).cast(pl.Datetime("ms")).alias("_bar"))
        .group_by("inst", "_bar")
        .agg(pl.col("covered_s").sum().alias("_covered"), *[_sum_in_time_order(f"{f}_sum") for f in BOOK_FEATURES])
        .rename({"_bar": "ts"})
    )
    out = bars.drop(*BOOK_FIELDS, strict=False).join(per_bar, on=["inst", "ts"], how="left", maintain_order="left")
    covered = out.get_column("_covered").fill_null(0).cast(pl.Float64)
    # numpy, not a polars expression: polars divides a column by a scalar as a product with the
    # reciprocal (222 / 300 gave 0.7400000000000001); the share must be the exact quotient
    share = pl.Series("book_coverage", covered.to_numpy() / float(bucket_ms // 1000), dtype=pl.Float64)
    return out.with_columns(
        *[pl.when(pl.col("_covered") > 0).then(pl.col(f"{f}_sum") / pl.col("_covered")).alias(f) for f in BOOK_FEATURES],
        share,
    ).select([pl.col(c).cast(t) for c, t in BARS_SCHEMA.items()])


def trade_fields_for_minutes(bars_1m: pl.DataFrame, trade_minutes: pl.DataFrame) -> pl.DataFrame:
    """Add ``n_trades`` and ``taker_buy_volume`` to 1-minute bars from per-minute trade sums.

    ``trade_minutes``: ``inst, ts`` (minute open), ``n_trades, taker_buy_volume``. A minute
    the trades stream reported nothing for is 0 if its candle traded nothing, and null
    (unknown: the stream missed it) if the candle has volume.
    """
    tm = trade_minutes.select(
        pl.col("inst").cast(pl.Utf8), pl.col("ts").cast(pl.Datetime("ms")),
        pl.col("n_trades").cast(pl.Float64), pl.col("taker_buy_volume").cast(pl.Float64),
    )  # fmt: skip
    out = bars_1m.drop(*TRADE_FIELDS, strict=False).join(tm, on=["inst", "ts"], how="left", maintain_order="left")
    no_report = pl.col("n_trades").is_null()
    quiet = pl.col("volume") == 0
    return out.with_columns(
        [pl.when(no_report & quiet).then(0.0).otherwise(pl.col(c)).alias(c) for c in TRADE_FIELDS]
    )


def _inst_from_path(path_col: str) -> pl.Expr:
    """``.../clean/<day>/<instId>.parquet`` → instId (the contract keeps inst in the file name)."""
    return pl.col(path_col).str.extract(r"([^/\\]+)\.parquet$", 1)


def resample_day(
    *,
    clean_dir: Path,
    day: dt.date,
    freq: str,
    out_path: Path,
    funding_path: Path | None = None,
    open_interest_path: Path | None = None,
    trades_path: Path | None = None,
    books_path: Path | None = None,
) -> pl.DataFrame:
    """Resample one cleaned day into ``bars/<freq>/<day>.parquet`` (one frequency).

    See :func:`resample_day_all`, which does every frequency from one read.
    """
    return resample_day_all(clean_dir=clean_dir, day=day, out_paths={freq: out_path}, funding_path=funding_path,
                            open_interest_path=open_interest_path, trades_path=trades_path,
                            books_path=books_path)[freq]


def resample_day_all(
    *,
    clean_dir: Path,
    day: dt.date,
    out_paths: dict[str, Path],
    funding_path: Path | None = None,
    open_interest_path: Path | None = None,
    trades_path: Path | None = None,
    books_path: Path | None = None,
) -> dict[str, pl.DataFrame]:
    """Resample one cleaned day (``clean/<day>/*.parquet``) into every frequency of ``out_paths``.

    The day's inputs are read once and every frequency is derived from them: one job per day,
    not per day and frequency, because a job's process start-up costs more than the work.
    ``funding_path`` (work/funding/<day>.parquet), ``open_interest_path``
    (work/open_interest/<day>.parquet), ``trades_path`` (work/trades/<day>.parquet, per-minute
    sums) and ``books_path`` (work/books/<day>.parquet, per-minute book sums) are optional;
    without them the corresponding fields are null (with ``books_path``, a bar without a book
    has ``book_coverage`` 0.0 and null book features). Writes an empty file
    with BARS_SCHEMA when the day has no data, so downstream rules always find their input.
    Rows outside ``day`` (impossible after feeder.clean) are ignored. Returns the written frames.
    """
    for freq in out_paths:
        freq_minutes(freq)  # fail before reading anything
    clean_dir = Path(clean_dir)
    files = sorted(clean_dir.glob("*.parquet"))
    written: dict[str, pl.DataFrame] = {}
    bars_1m: pl.DataFrame | None = None
    funding = open_interest = books = None
    if files:
        start = dt.datetime.combine(day, dt.time())
        bars_1m = (
            pl.scan_parquet(files, include_file_paths="_path")
            .with_columns(_inst_from_path("_path").alias("inst"))
            .filter((pl.col("ts") >= start) & (pl.col("ts") < start + dt.timedelta(days=1)))
            .collect()
        )
        if trades_path is not None:
            bars_1m = trade_fields_for_minutes(bars_1m, pl.read_parquet(trades_path))
        funding = read_funding(funding_path) if funding_path else None
        open_interest = read_open_interest(open_interest_path) if open_interest_path else None
        books = pl.read_parquet(books_path) if books_path else None
    for freq, out_path in out_paths.items():
        if bars_1m is not None:
            bars = attach_point_in_time(resample_bars(bars_1m, freq), freq, funding=funding,
                                        open_interest=open_interest)
            if books is not None:
                bars = attach_books(bars, freq, book_minutes=books)
        else:
            bars = pl.DataFrame(schema=BARS_SCHEMA)
        write_parquet(bars, Path(out_path))
        written[freq] = bars
    return written


