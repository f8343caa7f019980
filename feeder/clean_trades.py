"""Cleaning trades: per-minute trade counts and taker buy volume from the ``trades`` channel (optional).

Only used when ``collector.channels`` includes ``trades`` (not the default: it is by far the
heaviest channel). One job per UTC day reads the day's trade shards, deduplicates on
``(inst, tradeId)`` (a replay after a reconnect repeats trades), converts sizes to base coin
and sums per minute:

* ``n_trades``: fills (OKX's ``count`` per element, 1 for frames that predate it);
* ``taker_buy_volume``: base coin bought by takers (``side == "buy"`` is the taker's side);
* ``volume``: all traded base coin, kept for checks against the candle's volume.

Sizes: SPOT ``sz`` is base coin; linear SWAP/FUTURES ``sz`` is contracts × ``ctVal`` (base
coin); inverse contracts are ``ctVal`` USD each, so base coin = contracts × ctVal / px.
``ctVal`` comes from the instrument list (work/reference/instruments.parquet).

A minute the stream missed cannot be told from a minute without trades by looking at trades
alone: feeder.resample marks a minute unknown (null) when its candle has volume but no trade
was recorded. Trades missed *inside* a minute that has some cannot be detected.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from feeder.okx import TRADE_REJECT_REASONS, parse_trades
from feeder.raw import (
    cleaning_stats,
    deduplicate_by_key,
    raw_schema,
    reason_counts,
    run_cleaning_job,
)
from feeder.registry import DAY_MS, MINUTE_MS, day_start_ms

log = logging.getLogger(__name__)

__all__ = ["TRADES_CHANNEL", "TRADE_MINUTES_SCHEMA", "clean_trades_day", "contract_values", "trade_minutes"]

TRADES_CHANNEL = "trades"
TRADE_RAW_SCHEMA = raw_schema(("instId", "tradeId", "px", "sz", "side", "ts", "count"))
TRADE_MINUTES_SCHEMA: dict[str, pl.DataType] = {
    "inst": pl.Utf8(),
    "ts": pl.Datetime("ms"),  # minute open
    "n_trades": pl.Float64(),
    "taker_buy_volume": pl.Float64(),
    "volume": pl.Float64(),
}
TRADE_CLEAN_REASONS: tuple[str, ...] = ("wrong_channel", *TRADE_REJECT_REASONS, "unknown_contract_value", "outside_day")


def contract_values(instruments: pl.DataFrame) -> pl.DataFrame:
    """``instId, ctVal, ctType`` of an instrument list → ``inst, ct_val, ct_type``."""
    cols = set(instruments.columns)
    return instruments.select(
        pl.col("instId").cast(pl.Utf8).alias("inst"),
        (pl.col("ctVal") if "ctVal" in cols else pl.lit(None))
        .cast(pl.Utf8)
        .cast(pl.Float64, strict=False)
        .alias("ct_val"),
        (pl.col("ctType") if "ctType" in cols else pl.lit(None)).cast(pl.Utf8).alias("ct_type"),
    ).unique("inst", keep="last")


def trade_minutes(
    records: pl.DataFrame, day: dt.date, contracts: pl.DataFrame
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Raw trade records → per-minute sums for ``day`` (TRADE_MINUTES_SCHEMA) and quality counts."""
    start = day_start_ms(day)
    data = records.get_column("data").struct.unnest().with_columns(records.get_column("inst"))
    parsed = parse_trades(data).with_columns(
        records.get_column("channel"), records.get_column("recv_ts"), records.get_column("source")
    )
    parsed = parsed.join(contract_values(contracts), on="inst", how="left", maintain_order="left")
    derivative = pl.col("inst_type").is_in(["SWAP", "FUTURES"])
    inverse = pl.col("ct_type") == "inverse"
    base = (
        pl.when(pl.col("inst_type") == "SPOT")
        .then(pl.col("sz"))
        .when(derivative & inverse)
        .then(pl.col("sz") * pl.col("ct_val") / pl.col("px"))
        .when(derivative)
        .then(pl.col("sz") * pl.col("ct_val"))
    )
    ts_ms = pl.col("ts").cast(pl.Int64)
    parsed = parsed.with_columns(base.alias("base")).with_columns(
        pl.when(pl.col("channel").is_not_null() & (pl.col("channel") != TRADES_CHANNEL))
        .then(pl.lit("wrong_channel"))
        .when(pl.col("reject").is_not_null())
        .then(pl.col("reject"))
        .when(pl.col("base").is_null() | ~pl.col("base").is_finite())
        .then(pl.lit("unknown_contract_value"))
        .when((ts_ms < start) | (ts_ms >= start + DAY_MS))
        .then(pl.lit("outside_day"))
        .otherwise(None)
        .alias("reject")
    )
    by_reason = reason_counts(parsed, reasons=TRADE_CLEAN_REASONS)
    valid = parsed.filter(pl.col("reject").is_null())
    kept, duplicates, conflicts = deduplicate_by_key(valid, key=["inst", "trade_id"], values=["ts", "px", "sz", "side"])
    minutes = (
        kept.group_by("inst", ((ts_ms // MINUTE_MS) * MINUTE_MS).cast(pl.Datetime("ms")).alias("ts"))
        .agg(
            pl.col("count").sum().cast(pl.Float64).alias("n_trades"),
            pl.col("base").filter(pl.col("side") == "buy").sum().alias("taker_buy_volume"),
            pl.col("base").sum().alias("volume"),
        )
        .select([pl.col(c).cast(t) for c, t in TRADE_MINUTES_SCHEMA.items()])
        .sort("inst", "ts")
    )
    stats = cleaning_stats(day=day, rows=parsed.height, kept=kept.select("inst"), duplicates=duplicates,
                           conflicts=conflicts, by_reason=by_reason)
    stats["minutes"] = minutes.height
    return minutes, stats


def clean_trades_day(
    *, shard_paths: Sequence[Path], day: dt.date, instruments_path: Path, out_path: Path, quality_path: Path
) -> dict[str, Any]:
    """Clean ``day``'s trade shards → work/trades/<day>.parquet (per-minute sums) + quality."""
    instruments = pl.read_parquet(instruments_path)
    stats = run_cleaning_job(shard_paths=shard_paths, schema=TRADE_RAW_SCHEMA,
                             clean=lambda records: trade_minutes(records, day, instruments),
                             out_path=out_path, quality_path=quality_path)
    log.info("trades %s: %d files, %d rows read, %d trades kept in %d minutes, %d duplicates, rejected %s",
             day, stats["files"], stats["rows_read"], stats["kept"], stats["minutes"], stats["duplicates"],
             {k: v for k, v in stats["rejected"].items() if v})  # fmt: skip
    return stats
