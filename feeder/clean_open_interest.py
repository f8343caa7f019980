"""Cleaning open interest: one UTC day per job (in the ``clean`` rule's job).

Open interest comes from the WebSocket only (OKX keeps no history). One row per push, keyed by
the exchange's ``ts``; the Qlib field ``open_interest`` is the last value with ``ts <= close``
no older than :data:`OI_MAX_AGE`. Missing stream → NaN, never a carried-forward guess.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from feeder.okx import OPEN_INTEREST_REJECT_REASONS, parse_open_interest
from feeder.raw import (
    cleaning_stats,
    deduplicate_by_key,
    raw_schema,
    reason_counts,
    run_cleaning_job,
    typed_records,
)
from feeder.registry import DAY_MS, day_start_ms

log = logging.getLogger(__name__)

__all__ = [
    "OI_CHANNEL",
    "OI_CLEAN_REASONS",
    "OI_MAX_AGE",
    "OI_RAW_SCHEMA",
    "OPEN_INTEREST_SCHEMA",
    "clean_open_interest",
    "clean_open_interest_day",
    "oi_window",
    "read_open_interest",
]

OI_CHANNEL = "open-interest"

#: Open interest older than this at a bar's close is not "known at the close": NaN instead.
#: OKX pushes open interest every few seconds while it changes; 15 minutes without a push means
#: the stream was down (or the instrument is asleep), and a stale number is not carried on.
OI_MAX_AGE = dt.timedelta(minutes=15)

_OI_DATA_FIELDS = ("instId", "instType", "oi", "oiCcy", "oiUsd", "ts")
OI_RAW_SCHEMA = raw_schema(_OI_DATA_FIELDS)

#: work/open_interest/<day>.parquet: one row per (inst, exchange ts) inside oi_window(day).
OPEN_INTEREST_SCHEMA: dict[str, pl.DataType] = {
    "inst": pl.Utf8(),
    "ts": pl.Datetime("ms"),
    "oi": pl.Float64(),  # contracts
    "oi_ccy": pl.Float64(),  # base coin
    "oi_usd": pl.Float64(),  # USD (null before OKX added it)
}

OI_CLEAN_REASONS: tuple[str, ...] = ("wrong_channel", *OPEN_INTEREST_REJECT_REASONS, "outside_window")


def oi_window(day: dt.date) -> tuple[int, int]:
    """[start, end) in epoch ms of the open-interest pushes day ``day``'s bars can use."""
    start = day_start_ms(day)
    return start - int(OI_MAX_AGE.total_seconds() * 1000), start + DAY_MS + 1


def clean_open_interest(
    records: pl.DataFrame, day: dt.date, *, max_age: dt.timedelta = OI_MAX_AGE
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Open-interest pushes usable by ``day``'s bars, deduplicated on (inst, ts).

    Keeps rows with exchange ``ts`` in [D 00:00 - max_age, D+1 00:00]; the copy received last
    wins among duplicates (a replay after a reconnect).
    """
    start = day_start_ms(day)
    start_ms, end_ms = start - int(max_age.total_seconds() * 1000), start + DAY_MS + 1
    typed = typed_records(records)
    parsed = parse_open_interest(
        typed.with_columns(pl.coalesce(pl.col("instId").replace("", None), pl.col("inst")).alias("instId"))
    ).with_columns(typed.get_column("channel"), typed.get_column("recv_ts"), typed.get_column("source"))
    ts_ms = pl.col("ts").cast(pl.Int64)
    reject = (
        pl.when(pl.col("channel").is_not_null() & (pl.col("channel") != OI_CHANNEL))
        .then(pl.lit("wrong_channel"))
        .when(pl.col("reject").is_not_null())
        .then(pl.col("reject"))
        .when((ts_ms < start_ms) | (ts_ms >= end_ms))
        .then(pl.lit("outside_window"))
    )
    parsed = parsed.with_columns(reject.alias("reject"))
    by_reason = reason_counts(parsed, reasons=OI_CLEAN_REASONS)
    valid = parsed.filter(pl.col("reject").is_null())
    kept, duplicates, conflicts = deduplicate_by_key(valid, key=["inst", "ts"], values=["oi", "oi_ccy", "oi_usd"])
    kept = kept.select([pl.col(c).cast(t) for c, t in OPEN_INTEREST_SCHEMA.items()]).sort("inst", "ts")
    stats = cleaning_stats(day=day, rows=parsed.height, kept=kept, duplicates=duplicates, conflicts=conflicts,
                           by_reason=by_reason)
    return kept, stats


# --------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------


def clean_open_interest_day(
    *, shard_paths: Sequence[Path], day: dt.date, out_path: Path, quality_path: Path
) -> dict[str, Any]:
    """Clean ``day``'s open-interest pushes (WebSocket shards) → Parquet."""
    stats = run_cleaning_job(shard_paths=shard_paths, schema=OI_RAW_SCHEMA,
                             clean=lambda records: clean_open_interest(records, day),
                             out_path=out_path, quality_path=quality_path)
    log.info("open interest %s: %d files, %d rows read, %d kept, %d duplicates, %d conflicts, rejected %s",
             day, stats["files"], stats["rows_read"], stats["kept"], stats["duplicates"], stats["conflicts"],
             {k: v for k, v in stats["rejected"].items() if v})  # fmt: skip
    return stats


def read_open_interest(path: Path | None) -> pl.DataFrame:
    return pl.read_parquet(path) if path else pl.DataFrame(schema=OPEN_INTEREST_SCHEMA)
