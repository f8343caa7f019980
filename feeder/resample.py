"""Resample cleaned 1-minute bars into Qlib frequencies (``1min``, ``Nmin``, ``day``).

Buckets are UTC-aligned and labelled by their OPEN time, like the 1-minute bars themselves and
like Qlib's calendars. A bucket without a single 1-minute bar produces no row: Qlib turns the
missing slot into NaN, which is the honest value. ``coverage`` says how complete a bucket is
(1m bars present / minutes in the bucket) so research code can filter thin bars instead of
trusting a 5-minute close that is really the close of minute 2.

Only frequency names Qlib itself parses are accepted (STACK-FACTS: ``1h``/``60m`` raise inside
Qlib, ``1d`` silently reads nothing), and N must divide a day, so no bucket straddles midnight
and each day's bar file is complete on its own.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
from pathlib import Path

import polars as pl

__all__ = ["BARS_SCHEMA", "freq_minutes", "resample_bars", "resample_day"]

BARS_SCHEMA: dict[str, pl.DataType] = {
    "inst": pl.Utf8(),
    "ts": pl.Datetime("ms"),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "amount": pl.Float64(),
    "vwap": pl.Float64(),
    "coverage": pl.Float64(),
}

MINUTES_PER_DAY = 1440
MINUTE_MS = 60_000

_NMIN = re.compile(r"^([1-9][0-9]*)min$")
_ALIASES = re.compile(r"^([0-9]+)\s*(m|t|mins?|minutes?|h|hr|hours?|d|days?)$", re.IGNORECASE)


def freq_minutes(freq: str) -> int:
    """Minutes per bucket for a Qlib frequency name; ValueError with a hint for anything else."""
    if freq == "day":
        return MINUTES_PER_DAY
    match = _NMIN.match(freq)
    if match:
        minutes = int(match.group(1))
        if MINUTES_PER_DAY % minutes:
            raise ValueError(
                f"frequency {freq!r}: {minutes} minutes does not divide a day (1440 min), so buckets "
                "would straddle midnight; use a divisor such as 5min, 15min, 60min, 240min"
            )
        return minutes
    hint = ""
    alias = _ALIASES.match(freq.strip())
    if alias and int(alias.group(1)) > 0:
        n, unit = int(alias.group(1)), alias.group(2).lower()
        if unit.startswith("h"):
            hint = f"; use {n * 60}min"
        elif unit.startswith("d"):
            hint = "; use day" if n == 1 else "; multi-day frequencies are not supported"
        else:
            hint = f"; use {n}min"
    raise ValueError(f"unknown frequency {freq!r}: Qlib names are '1min', '<N>min' or 'day'{hint}")


def resample_bars(bars_1m: pl.DataFrame, freq: str) -> pl.DataFrame:
    """Aggregate 1-minute bars of any number of instruments into ``freq`` buckets.

    Input: ``inst, ts`` (Datetime, bar open), ``open, high, low, close, volume, amount``; unique
    on (inst, ts) (ValueError otherwise: a duplicate would be double-counted). Output:
    BARS_SCHEMA, sorted by inst, ts. ``amount`` is null if any minute's amount is unknown (never
    a partial sum); ``vwap`` = amount / volume, null when volume is 0 or amount unknown.
    """
    minutes = freq_minutes(freq)
    bucket_ms = minutes * MINUTE_MS
    if bars_1m.select(pl.struct("inst", "ts").is_duplicated().any()).item():
        raise ValueError("resample_bars: input has duplicate (inst, ts) bars")
    ts_ms = pl.col("ts").cast(pl.Datetime("ms")).cast(pl.Int64)
    by_time = pl.col("ts")
    out = (
        bars_1m.lazy()
        .with_columns(
            pl.col("inst").cast(pl.Utf8),
            pl.col("ts").cast(pl.Datetime("ms")),
            ((ts_ms // bucket_ms) * bucket_ms).cast(pl.Datetime("ms")).alias("bucket"),
            *[pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close", "volume", "amount")],
        )
        .group_by("inst", "bucket")
        .agg(
            pl.col("open").sort_by(by_time).first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").sort_by(by_time).last(),
            pl.col("volume").sum(),
            pl.when(pl.col("amount").null_count() == 0).then(pl.col("amount").sum()).alias("amount"),
            (pl.len() / minutes).cast(pl.Float64).alias("coverage"),
        )
        .with_columns(
            pl.when(pl.col("volume") > 0).then(pl.col("amount") / pl.col("volume")).alias("vwap"),
        )
        .rename({"bucket": "ts"})
        .select([pl.col(c).cast(t) for c, t in BARS_SCHEMA.items()])
        .sort("inst", "ts")
    )
    return out.collect()


def _inst_from_path(path_col: str) -> pl.Expr:
    """``.../clean/<day>/<instId>.parquet`` → instId (the contract keeps inst in the file name)."""
    return pl.col(path_col).str.extract(r"([^/\\]+)\.parquet$", 1)


def resample_day(*, clean_dir: Path, day: dt.date, freq: str, out_path: Path) -> pl.DataFrame:
    """Resample one cleaned day (``clean/<day>/*.parquet``) into ``bars/<freq>/<day>.parquet``.

    Writes an empty file with BARS_SCHEMA when the day has no data, so downstream rules always
    find their input. Rows outside ``day`` (impossible after feeder.clean) are ignored. Returns
    the written frame.
    """
    freq_minutes(freq)  # fail before reading anything
    clean_dir = Path(clean_dir)
    files = sorted(clean_dir.glob("*.parquet"))
    if files:
        start = dt.datetime.combine(day, dt.time())
        bars_1m = (
            pl.scan_parquet(files, include_file_paths="_path")
            .with_columns(_inst_from_path("_path").alias("inst"))
            .filter((pl.col("ts") >= start) & (pl.col("ts") < start + dt.timedelta(days=1)))
            .collect()
        )
        bars = resample_bars(bars_1m, freq)
    else:
        bars = pl.DataFrame(schema=BARS_SCHEMA)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    try:
        bars.write_parquet(tmp, statistics=True)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return bars
