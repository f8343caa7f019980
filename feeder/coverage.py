"""Coverage: for every symbol-day, where each 1m bar came from, and why any is missing.

A missing bar is never filled with an invented value; it is explained. For each instrument of
a day (universe members, plus anything the stream recorded):

* ``expected``: minutes the instrument was listed that day (from ``listTime``/``expTime``);
* ``from_ws`` / ``from_rest`` / ``from_archive``: bars in the cleaned data, by source;
* ``missing_exchange_none``: minutes we asked OKX for and it confirmed it has no candle (no
  trade, halt, before the listing): an empty page alone is not taken as that answer; or minutes
  inside an archive file that leaves them out (OKX omits minutes without trades);
* ``missing_unknown_to_exchange``: minutes of an instrument OKX no longer knows (51001 for an
  instrument it does not list any more: delisted, its candles are gone from the API);
* ``missing_fetch_failed``: minutes whose fetch failed. A failed fetch now fails the day's
  backfill (nothing is built for the day until a re-run succeeds), so this is only non-zero
  for backfill summaries written by older versions;
* ``missing_not_attempted``: minutes nobody fetched (e.g. the instrument was not a member,
  so it was only streamed opportunistically).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import polars as pl

from feeder.atomic import write_atomically, write_parquet
from feeder.registry import DAY_MS, MINUTE_MS, day_start_ms

log = logging.getLogger(__name__)

COVERAGE_SCHEMA = {
    "day": pl.Date, "inst": pl.Utf8, "member": pl.Boolean, "expected": pl.Int32, "from_ws": pl.Int32,
    "from_rest": pl.Int32, "from_archive": pl.Int32, "missing": pl.Int32, "missing_exchange_none": pl.Int32,
    "missing_unknown_to_exchange": pl.Int32, "missing_fetch_failed": pl.Int32, "missing_not_attempted": pl.Int32,
}


def coverage_day(
    *,
    day: dt.date,
    bars: pl.DataFrame,
    members: list[str],
    instruments: pl.DataFrame,
    attempted: dict[str, list[list[int]]],
    failed: set[str],
    unknown: set[str] = frozenset(),  # type: ignore[assignment]
) -> pl.DataFrame:
    """Pure core: ``bars`` has (inst, ts Datetime[ms], source) of the day's cleaned 1m bars;
    ``unknown`` the instruments OKX no longer knows, ``failed`` those whose fetch failed."""
    start = day_start_ms(day)
    insts = sorted(set(members) | set(bars["inst"].unique().to_list()))
    if not insts:
        return pl.DataFrame(schema=COVERAGE_SCHEMA)
    listing = (
        instruments.select("instId", list_ms=pl.col("listTime").cast(pl.Int64, strict=False),
                           exp_ms=pl.col("expTime").cast(pl.Int64, strict=False))
        .filter(pl.col("instId").is_in(insts))
    )
    minutes = (
        pl.DataFrame({"inst": insts})
        .join(pl.DataFrame({"ts_ms": pl.int_range(start, start + DAY_MS, MINUTE_MS, eager=True)}), how="cross")
        .join(listing, left_on="inst", right_on="instId", how="left")
        .filter((pl.col("list_ms").is_null() | (pl.col("ts_ms") >= pl.col("list_ms")))
                & (pl.col("exp_ms").is_null() | (pl.col("ts_ms") < pl.col("exp_ms"))))
        .select("inst", "ts_ms")
    )
    have = bars.select("inst", ts_ms=pl.col("ts").dt.epoch("ms"), source="source")
    ranges = pl.DataFrame(
        [(inst, int(lo), int(hi)) for inst, rs in attempted.items() for lo, hi in rs],
        schema={"inst": pl.Utf8, "lo": pl.Int64, "hi": pl.Int64}, orient="row",
    )
    missing = minutes.join(have, on=["inst", "ts_ms"], how="anti")
    in_range = (
        missing.join(ranges, on="inst", how="inner")
        .filter((pl.col("ts_ms") >= pl.col("lo")) & (pl.col("ts_ms") < pl.col("hi")))
        .select("inst", "ts_ms").unique().with_columns(asked=pl.lit(True))
    )
    reasons = (
        missing.join(in_range, on=["inst", "ts_ms"], how="left")
        .with_columns(reason=pl.when(pl.col("asked")).then(pl.lit("exchange_none"))
                      .when(pl.col("inst").is_in(sorted(unknown))).then(pl.lit("unknown_to_exchange"))
                      .when(pl.col("inst").is_in(sorted(failed))).then(pl.lit("fetch_failed"))
                      .otherwise(pl.lit("not_attempted")))
        .group_by("inst").agg(
            missing=pl.len(),
            missing_exchange_none=(pl.col("reason") == "exchange_none").sum(),
            missing_unknown_to_exchange=(pl.col("reason") == "unknown_to_exchange").sum(),
            missing_fetch_failed=(pl.col("reason") == "fetch_failed").sum(),
            missing_not_attempted=(pl.col("reason") == "not_attempted").sum(),
        )
    )
    counts = have.group_by("inst").agg(from_ws=(pl.col("source") == "ws").sum(),
                                       from_rest=(pl.col("source") == "rest").sum(),
                                       from_archive=(pl.col("source") == "archive").sum())
    expected = minutes.group_by("inst").agg(expected=pl.len())
    return (
        pl.DataFrame({"inst": insts})
        .join(expected, on="inst", how="left")
        .join(counts, on="inst", how="left")
        .join(reasons, on="inst", how="left")
        .with_columns(pl.exclude("inst").fill_null(0), day=pl.lit(day), member=pl.col("inst").is_in(members))
        .select(list(COVERAGE_SCHEMA))
        .cast(COVERAGE_SCHEMA)  # type: ignore[arg-type]
        .sort("inst")
    )


def build_coverage_day(*, day: dt.date, clean_dir: Path, universe_path: Path, instruments_path: Path,
                       backfill_summary_path: Path, out_path: Path) -> pl.DataFrame:
    """Workflow entry point: coverage of one day → ``coverage/<day>.parquet``."""
    files = sorted(clean_dir.glob("*.parquet"))
    if files:
        bars = pl.concat([pl.read_parquet(f, columns=["ts", "source"]).with_columns(inst=pl.lit(f.stem))
                          for f in files])
    else:
        bars = pl.DataFrame(schema={"ts": pl.Datetime("ms"), "source": pl.Utf8, "inst": pl.Utf8})
    ranking = pl.read_parquet(universe_path)
    members = ranking.filter(pl.col("member"))["inst"].to_list()
    summary: dict[str, Any] = json.loads(backfill_summary_path.read_text())
    failed = set(summary.get("errors", {})) | set(summary.get("unavailable", {}))
    # asked of REST, or settled by an archive file: either way the exchange's answer is in
    asked = {inst: [*ranges] for inst, ranges in summary.get("attempted", {}).items()}
    for inst, ranges in summary.get("archive_settled", {}).items():
        asked.setdefault(inst, []).extend(ranges)
    frame = coverage_day(day=day, bars=bars, members=members, instruments=pl.read_parquet(instruments_path),
                         attempted=asked, failed=failed,
                         unknown=set(summary.get("unknown_to_exchange", {})))
    gaps = frame.filter(pl.col("member") & (pl.col("missing") > 0))
    log.info("coverage %s: %d instruments, %d members with gaps, %d bars missing (%d exchange has none, "
             "%d of instruments unknown to the exchange)", day, frame.height, gaps.height, int(gaps["missing"].sum()),
             int(gaps["missing_exchange_none"].sum()), int(gaps["missing_unknown_to_exchange"].sum()))
    write_parquet(frame, out_path)
    return frame


def merge_coverage(*, day_paths: list[Path], out_parquet: Path, out_gaps_csv: Path) -> pl.DataFrame:
    """All days' coverage in one Parquet, and the gap table (member-days with missing bars) as CSV."""
    # day tables written before a reason column existed lack it: that reason had no minutes then
    frame = (
        pl.concat([pl.DataFrame(schema=COVERAGE_SCHEMA), *(pl.read_parquet(p) for p in day_paths)],
                  how="diagonal_relaxed")
        .with_columns(pl.col(c).fill_null(0) for c in COVERAGE_SCHEMA if c.startswith(("missing_", "from_")))
        .select(list(COVERAGE_SCHEMA))
    )
    write_parquet(frame, out_parquet)
    gaps = frame.filter(pl.col("missing") > 0).sort("day", "inst")
    write_atomically(out_gaps_csv, gaps.write_csv)
    member = frame.filter(pl.col("member"))
    log.info("coverage: %d symbol-days, %d member-days, %.4f%% of expected member bars present",
             frame.height, member.height,
             100.0 * (member["from_ws"].sum() + member["from_rest"].sum() + member["from_archive"].sum())
             / max(1, member["expected"].sum()))
    return frame
