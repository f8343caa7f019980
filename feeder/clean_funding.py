"""Cleaning settled funding rates: one UTC day per job (in the ``clean`` rule's job).

Field semantics (docs/fields.md has the user-facing version):

* The Qlib field ``funding_rate`` carries the last *settled* rate whose settlement time T is at
  or before the bar's close. A rate settled at T is published at T, so it is known at any close
  >= T: the 08:00 settlement first appears in the bar that closes at 08:00. The forecast that
  OKX pushes for the running period (the push's ``fundingRate``) is never used: it changes
  until T and would leak the future into earlier bars.
* Sources of settled rates: REST ``funding-rate-history`` (the ground truth, about three
  months deep, fetched by feeder.funding_history) and, to extend past it, the WebSocket pushes'
  ``settFundingRate`` when ``settState == "settled"``. A push names the settlement it refers
  to by ``prevFundingTime`` (2025+ frames); without it the time is derived (see
  :func:`_derive_ws_settlement_time`). Inside the range REST covers for an instrument, REST
  alone is used.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from feeder.okx import SETTLED_FUNDING_REJECT_REASONS, parse_settled_funding
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
    "FUNDING_CHANNEL",
    "FUNDING_CLEAN_REASONS",
    "FUNDING_MAX_AGE",
    "FUNDING_RAW_SCHEMA",
    "FUNDING_SCHEMA",
    "clean_funding_day",
    "funding_window",
    "read_funding",
    "settled_funding",
]

FUNDING_CHANNEL = "funding-rate"

#: OKX funding intervals are 1, 2, 4, 6 or 8 hours: the last settlement before any instant is at
#: most 8 h old. A bar whose close has no settlement in the 8 h before it lacks data (stream and
#: REST both missed it) and gets NaN instead of an older, wrong rate.
FUNDING_MAX_AGE = dt.timedelta(hours=8)

_FUNDING_DATA_FIELDS = (
    "instId", "instType", "fundingRate", "fundingTime", "realizedRate", "nextFundingTime", "prevFundingTime",
    "settFundingRate", "settState", "method", "ts",
)  # fmt: skip
FUNDING_RAW_SCHEMA = raw_schema(_FUNDING_DATA_FIELDS)

#: work/funding/<day>.parquet: settled rates with funding_time in funding_window(day).
FUNDING_SCHEMA: dict[str, pl.DataType] = {
    "inst": pl.Utf8(),
    "funding_time": pl.Datetime("ms"),
    "funding_rate": pl.Float64(),
    "realized_rate": pl.Float64(),
    "source": pl.Utf8(),
}

FUNDING_CLEAN_REASONS: tuple[str, ...] = (
    "wrong_channel",
    *SETTLED_FUNDING_REJECT_REASONS,
    "unknown_settlement_time",  # a ws push that names no settlement time and none can be derived
    "settled_after_push",  # derived settlement time later than the push itself: inconsistent
    "outside_window",
    "superseded_by_rest",  # a ws-derived settlement inside the range REST covers, at a time REST does not have
)


def funding_window(day: dt.date) -> tuple[int, int]:
    """[start, end) in epoch ms of the settlements day ``day``'s bars can use.

    A bar of ``day`` closes in (D 00:00, D+1 00:00] and uses the last settlement at or before
    its close, at most FUNDING_MAX_AGE old: so [D 00:00 - 8 h, D+1 00:00] (end inclusive, hence
    ``+ 1`` ms for the half-open form).
    """
    start = day_start_ms(day)
    return start - int(FUNDING_MAX_AGE.total_seconds() * 1000), start + DAY_MS + 1


# --------------------------------------------------------------------------------------------
# Cleaning (pure)
# --------------------------------------------------------------------------------------------


def _derive_ws_settlement_time(parsed: pl.DataFrame) -> pl.DataFrame:
    """Fill ``funding_time`` of WebSocket rows that did not name their settlement.

    A settled push with ``fundingTime`` F (the next settlement) refers to the settlement just
    before F. Two estimates, the later one is used:

    * ``F - (nextFundingTime - F)``: exact while the interval does not change, LATE when it
      shrinks (8 h → 4 h), early when it grows;
    * the greatest earlier F' any push of this instrument announced as its next settlement
      (that settlement happened): exact when the stream saw the previous period, early if not.

    Taking the later of the two (ignoring an interval estimate later than the push itself) is
    exact in the usual cases, late rather than early when the interval shrank, and exact when
    it grew if the stream saw the period before. Only a grown interval *and* a whole period
    missed by the stream can place a rate early; REST history, when it covers the time,
    replaces stream-derived values anyway (``superseded_by_rest``).
    """
    observed = (
        parsed.filter(
            (pl.col("source") == "ws")
            & pl.col("period_end").is_not_null()
            & pl.col("inst").is_not_null()
            & (pl.col("reject").is_null() | (pl.col("reject") == "not_settled"))  # a forecast push announces F too
        )
        .select("inst", pl.col("period_end").alias("prev_announced"))
        .unique()
        .sort("prev_announced")
    )
    need = (pl.col("source") == "ws") & pl.col("funding_time").is_null() & pl.col("reject").is_null()
    rows = parsed.with_row_index("_row").sort("period_end", nulls_last=True)
    with_prev = rows.join_asof(
        observed,
        left_on="period_end",
        right_on="prev_announced",
        by="inst",
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,
    ).sort("_row")
    by_interval = pl.col("period_end") - (pl.col("next_funding_time") - pl.col("period_end"))
    # an estimate after the push itself is impossible (the interval shrank): drop it
    by_interval = pl.when(by_interval <= pl.col("published")).then(by_interval)
    derived = pl.max_horizontal(by_interval, pl.col("prev_announced"))
    return with_prev.with_columns(
        pl.when(need).then(derived).otherwise(pl.col("funding_time")).alias("funding_time")
    ).drop("_row", "prev_announced")


def settled_funding(records: pl.DataFrame, day: dt.date) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Settled funding rates usable by ``day``'s bars, deduplicated on (inst, funding_time).

    ``records``: raw records (FUNDING_RAW_SCHEMA) from REST history shards and WebSocket
    ``funding-rate`` shards. Returns FUNDING_SCHEMA rows sorted by inst, funding_time, all inside
    :func:`funding_window`, and the counts for the quality report (rows_read == kept +
    duplicates + rejected_total).
    """
    start_ms, end_ms = funding_window(day)
    typed = typed_records(records)
    parsed = parse_settled_funding(typed.drop("channel")).with_columns(typed.get_column("channel"))
    parsed = parsed.with_columns(
        pl.when(pl.col("channel").is_not_null() & (pl.col("channel") != FUNDING_CHANNEL))
        .then(pl.lit("wrong_channel"))
        .otherwise(pl.col("reject"))
        .alias("reject")
    )
    parsed = _derive_ws_settlement_time(parsed)
    ft_ms = pl.col("funding_time").cast(pl.Int64)
    reject = (
        pl.when(pl.col("reject").is_not_null())
        .then(pl.col("reject"))
        .when(pl.col("funding_time").is_null())
        .then(pl.lit("unknown_settlement_time"))
        .when(pl.col("funding_time") > pl.col("published"))
        .then(pl.lit("settled_after_push"))
        .when((ft_ms < start_ms) | (ft_ms >= end_ms))
        .then(pl.lit("outside_window"))
    )
    parsed = parsed.with_columns(reject.alias("reject"))
    # Inside the range REST covers for an instrument, REST is the truth: a ws-derived time that
    # REST does not list there is a mis-derived one (an interval change), not a new settlement.
    rest_last = (
        parsed.filter(pl.col("reject").is_null() & (pl.col("source") == "rest"))
        .group_by("inst")
        .agg(pl.col("funding_time").max().alias("_rest_last"))
    )
    rest_keys = (
        parsed.filter(pl.col("reject").is_null() & (pl.col("source") == "rest"))
        .select("inst", "funding_time", pl.lit(True).alias("_rest_has"))
        .unique()
    )
    parsed = (
        parsed.with_row_index("_row")
        .join(rest_last, on="inst", how="left")
        .join(rest_keys, on=["inst", "funding_time"], how="left")
        .sort("_row")
    )
    superseded = (
        pl.col("reject").is_null()
        & (pl.col("source") == "ws")
        & (pl.col("funding_time") <= pl.col("_rest_last")).fill_null(False)
        & pl.col("_rest_has").is_null()
    )
    parsed = parsed.with_columns(
        pl.when(superseded).then(pl.lit("superseded_by_rest")).otherwise(pl.col("reject")).alias("reject")
    ).drop("_row", "_rest_last", "_rest_has")

    by_reason = reason_counts(parsed, reasons=FUNDING_CLEAN_REASONS)
    valid = parsed.filter(pl.col("reject").is_null())
    kept, duplicates, conflicts = deduplicate_by_key(valid, key=["inst", "funding_time"], values=["funding_rate"])
    kept = kept.select([pl.col(c).cast(t) for c, t in FUNDING_SCHEMA.items()]).sort("inst", "funding_time")
    stats = cleaning_stats(day=day, rows=parsed.height, kept=kept, duplicates=duplicates, conflicts=conflicts,
                           by_reason=by_reason)
    return kept, stats


# --------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------


def clean_funding_day(
    *, shard_paths: Sequence[Path], day: dt.date, out_path: Path, quality_path: Path
) -> dict[str, Any]:
    """Clean ``day``'s settled funding rates (REST history shard + WebSocket shards) → Parquet."""
    stats = run_cleaning_job(shard_paths=shard_paths, schema=FUNDING_RAW_SCHEMA,
                             clean=lambda records: settled_funding(records, day),
                             out_path=out_path, quality_path=quality_path)
    log.info("funding %s: %d files, %d rows read, %d settlements kept (%s), %d duplicates, %d conflicts, rejected %s",
             day, stats["files"], stats["rows_read"], stats["kept"], stats.get("kept_by_source"), stats["duplicates"],
             stats["conflicts"], {k: v for k, v in stats["rejected"].items() if v})  # fmt: skip
    return stats


def read_funding(path: Path | None) -> pl.DataFrame:
    """A work/funding/<day>.parquet (or an empty FUNDING_SCHEMA frame for None)."""
    return pl.read_parquet(path) if path else pl.DataFrame(schema=FUNDING_SCHEMA)
