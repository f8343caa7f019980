"""The quality report's data: every table and matrix the page shows, read from the build's files.

Pure functions over the stage outputs (docs/ARCHITECTURE.md): the cleaning quality JSON, the
universe rankings, the coverage stage's tables and the resampled bars. :func:`report_data`
gathers everything one report needs into a :class:`ReportData`; :func:`report_summary` gives its
key figures. Drawing is :mod:`feeder.report.figures`, the page :mod:`feeder.report.page`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from feeder.registry import MINUTES_PER_DAY


def load_quality(paths: Sequence[Path]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Quality JSON files → (one row per day, one row per instrument-day with its kept bars)."""
    days, bars = [], []
    for path in sorted(Path(p) for p in paths):
        q = json.loads(Path(path).read_text())
        day = dt.date.fromisoformat(q["day"])
        by_source = q.get("kept_by_source") or {}
        days.append({
            "day": day,
            "files": int(q.get("files", 0)),
            "rows_read": int(q.get("rows_read", 0)),
            "kept": int(q.get("kept", 0)),
            "kept_ws": int(by_source.get("ws", 0)),
            "kept_rest": int(by_source.get("rest", 0)),
            "duplicates": int(q.get("duplicates", 0)),
            "conflicts": int(q.get("conflicts", 0)),
            "rejected": int(q.get("rejected_total", 0)),
            "malformed_lines": int(q.get("malformed_lines", 0)),
            "instruments": len(q.get("instruments") or {}),
        })
        bars += [{"day": day, "inst": inst, "bars": int(n)} for inst, n in (q.get("instruments") or {}).items()]
    day_schema = {"day": pl.Date, **{k: pl.Int64 for k in ("files", "rows_read", "kept", "kept_ws", "kept_rest",
                                                           "duplicates", "conflicts", "rejected",
                                                           "malformed_lines", "instruments")}}
    return (pl.DataFrame(days, schema=day_schema, orient="row"),
            pl.DataFrame(bars, schema={"day": pl.Date, "inst": pl.Utf8, "bars": pl.Int64}, orient="row"))


FLAG_COLUMNS: dict[str, pl.DataType] = {
    "day": pl.Date(), "check": pl.Utf8(), "inst": pl.Utf8(), "minute": pl.Utf8(), "resolution": pl.Utf8(),
    "copies": pl.Utf8(), "kept": pl.Utf8(), "detail": pl.Utf8(),
}
_VALUE_FIELDS = ("open", "high", "low", "close", "volume", "amount")


def _values_text(copy: dict[str, Any] | None) -> str:
    """One bar's values as ``source o/h/l/c/volume/amount`` (``xN`` when N copies had them)."""
    if not copy:
        return ""
    values = "/".join("" if copy.get(c) is None else f"{copy[c]:.10g}" for c in _VALUE_FIELDS)
    copies = copy.get("copies") or 1
    return f"{copy.get('source', '?')} {values}" + (f" x{copies}" if copies > 1 else "")


def load_flags(paths: Sequence[Path]) -> pl.DataFrame:
    """Every flagged bar of the quality JSON files (``flags``): one row per check, bar and day.

    ``copies``: each distinct copy's values (``;``-separated), ``kept``: the bar that went into
    the output. Quality files written before flags existed contribute nothing.
    """
    rows = []
    for path in sorted(Path(p) for p in paths):
        q = json.loads(Path(path).read_text())
        day = dt.date.fromisoformat(q["day"])
        rows += [{
            "day": day, "check": f.get("check"), "inst": f.get("inst"), "minute": f.get("minute"),
            "resolution": f.get("resolution"), "copies": "; ".join(_values_text(c) for c in f.get("values") or []),
            "kept": _values_text(f.get("kept")), "detail": f.get("detail") or "",
        } for f in q.get("flags") or []]
    return pl.DataFrame(rows, schema=FLAG_COLUMNS, orient="row").sort("day", "inst", "minute", "check")


def load_universe(paths: Sequence[Path]) -> pl.DataFrame:
    """Universe rankings (``universe/<day>.parquet``) → day, inst, rank, metric, member."""
    schema = {"day": pl.Date, "inst": pl.Utf8, "rank": pl.Int32, "metric": pl.Float64, "member": pl.Boolean}
    if not paths:
        return pl.DataFrame(schema=schema)
    return (
        pl.scan_parquet([Path(p) for p in paths])
        .select([pl.col(c).cast(t) for c, t in schema.items()])
        .with_columns(pl.col("member").fill_null(False))
        .sort("day", "rank")
        .collect()
    )


COVERAGE_COLUMNS: dict[str, pl.DataType] = {
    "day": pl.Date(), "inst": pl.Utf8(), "member": pl.Boolean(), "rank": pl.Int32(), "expected": pl.Int64(),
    "bars": pl.Int64(), "from_ws": pl.Int64(), "from_rest": pl.Int64(), "from_archive": pl.Int64(),
    "missing": pl.Int64(),
    "missing_exchange_none": pl.Int64(), "missing_unknown_to_exchange": pl.Int64(),
    "missing_fetch_failed": pl.Int64(), "missing_not_attempted": pl.Int64(),
    "coverage": pl.Float64(),
}
_REASONS = ("missing_exchange_none", "missing_unknown_to_exchange", "missing_fetch_failed", "missing_not_attempted")


def coverage_frame(bars: pl.DataFrame, universe: pl.DataFrame, days: Sequence[dt.date]) -> pl.DataFrame:
    """Fallback coverage from the quality JSON when no coverage table is given.

    Every (instrument, day) of the instruments that were members or had data, with ``expected``
    = 1,440 (listing days are not known here), ``bars`` = kept bars (0 where a member had none),
    sources and missing reasons unknown (null). Columns: COVERAGE_COLUMNS.
    """
    members = universe.filter(pl.col("member")).select("day", "inst", "rank")
    insts = sorted(set(bars["inst"].to_list()) | set(members["inst"].to_list()))
    grid = pl.DataFrame({"inst": insts}, schema={"inst": pl.Utf8}).join(
        pl.DataFrame({"day": list(days)}, schema={"day": pl.Date}), how="cross"
    )
    frame = (
        grid.join(bars, on=["day", "inst"], how="left")
        .join(members, on=["day", "inst"], how="left")
        .with_columns(pl.col("bars").fill_null(0), pl.col("rank").is_not_null().alias("member"),
                      pl.lit(MINUTES_PER_DAY).alias("expected"))
        .filter(pl.col("member") | (pl.col("bars") > 0))
        .with_columns((pl.col("expected") - pl.col("bars")).clip(0).alias("missing"))
    )
    return _finish_coverage(frame)


def load_coverage(paths: Sequence[Path], universe: pl.DataFrame) -> pl.DataFrame:
    """The coverage stage's per-day tables (``coverage/<day>.parquet``, feeder.coverage) + ranks."""
    frame = pl.concat([pl.read_parquet(p) for p in paths], how="diagonal_relaxed")
    ranks = universe.filter(pl.col("member")).select("day", "inst", "rank")
    frame = (
        frame.join(ranks, on=["day", "inst"], how="left")
        .with_columns(pl.sum_horizontal(pl.col(c).fill_null(0) for c in ("from_ws", "from_rest", "from_archive")
                                        if c in frame.columns).alias("bars"))
    )
    return _finish_coverage(frame)


def _finish_coverage(frame: pl.DataFrame) -> pl.DataFrame:
    for col, dtype in COVERAGE_COLUMNS.items():
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=dtype).alias(col))
    frame = frame.with_columns(
        pl.when(pl.col("expected") > 0).then(pl.col("bars") / pl.col("expected")).alias("coverage"),
        pl.col("member").fill_null(False),
    )
    return frame.select([pl.col(c).cast(t) for c, t in COVERAGE_COLUMNS.items()]).sort("inst", "day")


def gap_table(coverage: pl.DataFrame) -> pl.DataFrame:
    """Member symbol-days with fewer 1-minute bars than expected, with the reasons when known."""
    return (
        coverage.filter(pl.col("member") & (pl.col("missing") > 0))
        .select("day", "inst", "rank", "expected", "bars", "from_ws", "from_rest", "from_archive", "missing", *_REASONS, "coverage")
        .sort("day", "inst")
    )


def churn_table(universe: pl.DataFrame, days: Sequence[dt.date]) -> pl.DataFrame:
    """Per built day: members, who entered and who left versus the previous built day."""
    by_day = {d: set() for d in days}
    for day, inst in universe.filter(pl.col("member")).select("day", "inst").iter_rows():
        by_day.setdefault(day, set()).add(inst)
    rows, previous = [], None
    for day in sorted(by_day):
        now = by_day[day]
        entered = sorted(now - previous) if previous is not None else []
        left = sorted(previous - now) if previous is not None else []
        rows.append({"day": day, "members": len(now), "entered": len(entered), "left": len(left),
                     "entered_names": " ".join(entered), "left_names": " ".join(left)})
        previous = now
    return pl.DataFrame(rows, schema={"day": pl.Date, "members": pl.Int64, "entered": pl.Int64, "left": pl.Int64,
                                      "entered_names": pl.Utf8, "left_names": pl.Utf8}, orient="row")


def turnover_frame(bar_paths: Sequence[Path]) -> pl.DataFrame:
    """Daily USDT turnover per instrument: the sum of ``amount`` over the day's resampled bars."""
    schema = {"day": pl.Date, "inst": pl.Utf8, "turnover": pl.Float64}
    if not bar_paths:
        return pl.DataFrame(schema=schema)
    return (
        pl.scan_parquet([Path(p) for p in bar_paths])
        .group_by(pl.col("ts").dt.date().alias("day"), pl.col("inst").cast(pl.Utf8))
        .agg(pl.col("amount").sum().alias("turnover"))
        .select([pl.col(c).cast(t) for c, t in schema.items()])
        .sort("day", "inst")
        .collect()
    )


def funding_frame(bar_paths: Sequence[Path]) -> pl.DataFrame:
    """Funding rates (ts, inst, funding_rate) from the bars' ``funding_rate`` column, if they have one.

    The rate is the bars' point-in-time value (as of each bar's close). Empty frame when the bars
    carry no funding field (builds before it existed) or it holds no value.
    """
    schema = {"ts": pl.Datetime("ms"), "inst": pl.Utf8, "funding_rate": pl.Float64}
    paths = [Path(p) for p in bar_paths if "funding_rate" in pl.read_parquet_schema(p)]
    if not paths:
        return pl.DataFrame(schema=schema)
    return (
        pl.scan_parquet(paths)
        .select(pl.col("ts").cast(pl.Datetime("ms")), pl.col("inst").cast(pl.Utf8),
                pl.col("funding_rate").cast(pl.Float64))
        .drop_nulls("funding_rate")
        .filter(pl.col("funding_rate").is_not_nan())
        .sort("inst", "ts")
        .collect()
    )


# --------------------------------------------------------------------------------------------
# Everything one report shows
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportData:
    """The tables and matrices of one report (rows of the matrices: ``order``; columns: ``days``)."""

    days: list[dt.date]
    market: str
    bars_freq: str
    quality: pl.DataFrame          # one row per day (load_quality)
    flags: pl.DataFrame            # load_flags
    universe: pl.DataFrame         # load_universe
    coverage: pl.DataFrame         # COVERAGE_COLUMNS, the days asked for
    coverage_source: str           # where the coverage comes from, in words
    gaps: pl.DataFrame             # gap_table
    churn: pl.DataFrame            # churn_table
    member_turnover: pl.DataFrame  # turnover_frame, member days only
    funding: pl.DataFrame          # funding_frame
    order: list[str]               # heatmap rows: members first (by best rank), then instruments with data only
    bars: np.ndarray               # int64: kept one-minute bars
    expected: np.ndarray           # int64: expected minutes
    member: np.ndarray             # bool: a universe member that day
    coverage_share: np.ndarray     # bars / expected, capped at 1; NaN where not covered
    missing: np.ndarray            # missing minutes of member days (0 elsewhere)
    ranked: list[str]              # membership rows: every member, by best rank
    ranks: np.ndarray              # rank on member days, NaN elsewhere (rows: ``ranked``)
    by_inst: pl.DataFrame          # per instrument over its member days
    turnover_table: pl.DataFrame   # per member instrument: days, mean and total million USDT
    funding_table: pl.DataFrame    # per instrument: observations, first, last, mean %


def report_data(
    *,
    quality_paths: Sequence[Path],
    universe_paths: Sequence[Path],
    coverage_paths: Sequence[Path] = (),
    bar_paths: Sequence[Path] = (),
    days: Sequence[dt.date] | None = None,
    market: str = "",
    bars_freq: str = "",
) -> ReportData:
    """Read the build's files into everything one report shows (see :func:`feeder.report.write_report`)."""
    quality, bars = load_quality(quality_paths)
    flags = load_flags(quality_paths)
    universe = load_universe(universe_paths)
    days = sorted(days) if days else sorted(set(quality["day"].to_list()) | set(universe["day"].to_list()))
    if coverage_paths:
        coverage = load_coverage(coverage_paths, universe).filter(pl.col("day").is_in(list(days)))
        coverage_source = "the coverage stage (coverage/<day>.parquet: expected minutes from listing times)"
    else:
        coverage = coverage_frame(bars, universe, days)
        coverage_source = "the cleaning quality reports (1,440 expected minutes a day)"
    turnover = turnover_frame(bar_paths)
    funding = funding_frame(bar_paths)

    # coverage heatmap: members first (by best rank), then instruments that only had data
    best_rank = (coverage.filter(pl.col("member")).group_by("inst").agg(pl.col("rank").min().alias("best")))
    order = (
        coverage.select("inst").unique().join(best_rank, on="inst", how="left")
        .sort(pl.col("best").fill_null(10**9), "inst")["inst"].to_list()
    )
    day_pos = {d: j for j, d in enumerate(days)}
    inst_pos = {s: i for i, s in enumerate(order)}
    bars_m = np.zeros((len(order), len(days)), dtype=np.int64)
    expected_m = np.zeros((len(order), len(days)), dtype=np.int64)
    member_m = np.zeros((len(order), len(days)), dtype=bool)
    shown = np.full((len(order), len(days)), np.nan)
    for inst, day, n, expected, member, cov in coverage.select(
        "inst", "day", "bars", "expected", "member", "coverage"
    ).iter_rows():
        i, j = inst_pos[inst], day_pos[day]
        bars_m[i, j], expected_m[i, j], member_m[i, j] = n, expected, member
        shown[i, j] = np.nan if cov is None else min(cov, 1.0)

    ranked = (universe.filter(pl.col("member")).group_by("inst").agg(pl.col("rank").min().alias("best"))
              .sort("best", "inst")["inst"].to_list())
    ranks = np.full((len(ranked), len(days)), np.nan)
    pos = {s: i for i, s in enumerate(ranked)}
    for day, inst, rank in universe.filter(pl.col("member")).select("day", "inst", "rank").iter_rows():
        if day in day_pos:
            ranks[pos[inst], day_pos[day]] = rank

    member_turnover = turnover.join(universe.filter(pl.col("member")).select("day", "inst"), on=["day", "inst"],
                                    how="semi")
    by_inst = (
        coverage.group_by("inst")
        .agg(
            pl.col("member").sum().alias("member_days"),
            pl.col("expected").filter(pl.col("member")).sum().alias("member_expected"),
            pl.col("bars").filter(pl.col("member")).sum().alias("member_bars"),
            pl.col("missing").filter(pl.col("member")).sum().alias("member_missing"),
            pl.col("bars").sum().alias("bars_all_days"),
        )
        .with_columns(
            pl.when(pl.col("member_expected") > 0)
            .then(pl.col("member_bars") / pl.col("member_expected"))
            .alias("member_coverage")
        )
        .sort(pl.col("member_days"), "inst", descending=[True, False])
    )
    turnover_table = (
        member_turnover.group_by("inst")
        .agg(pl.len().alias("member_days"), (pl.col("turnover").mean() / 1e6).alias("mean_musdt"),
             (pl.col("turnover").sum() / 1e6).alias("total_musdt"))
        .sort("mean_musdt", descending=True)
    )
    funding_table = (funding.group_by("inst")
                     .agg(pl.len().alias("observations"), pl.col("ts").min().alias("first"),
                          pl.col("ts").max().alias("last"), (pl.col("funding_rate").mean() * 100).alias("mean_pct"))
                     .sort("inst"))
    return ReportData(
        days=list(days), market=market, bars_freq=bars_freq, quality=quality, flags=flags, universe=universe,
        coverage=coverage, coverage_source=coverage_source, gaps=gap_table(coverage), churn=churn_table(universe, days),
        member_turnover=member_turnover, funding=funding, order=order, bars=bars_m, expected=expected_m,
        member=member_m, coverage_share=shown, missing=np.where(member_m, np.clip(expected_m - bars_m, 0, None), 0),
        ranked=ranked, ranks=ranks, by_inst=by_inst, turnover_table=turnover_table, funding_table=funding_table,
    )


def report_summary(data: ReportData, *, figures: Sequence[str]) -> dict[str, Any]:
    """The report's key figures (embedded in the page as ``report-summary``, returned by write_report)."""
    quality, flags, churn, gaps, days = data.quality, data.flags, data.churn, data.gaps, data.days
    return {
        "days": len(days),
        "first_day": days[0].isoformat() if days else None,
        "last_day": days[-1].isoformat() if days else None,
        "instruments": len(data.order),
        "member_days": int(data.coverage["member"].sum()),
        "complete_member_days": int(data.coverage.filter(pl.col("member") & (pl.col("missing") == 0)).height),
        "gap_rows": gaps.height,
        "missing_member_minutes": int(gaps["missing"].sum()) if gaps.height else 0,
        "rows_read": int(quality["rows_read"].sum()) if quality.height else 0,
        "kept": int(quality["kept"].sum()) if quality.height else 0,
        "duplicates": int(quality["duplicates"].sum()) if quality.height else 0,
        "conflicts": int(quality["conflicts"].sum()) if quality.height else 0,
        "flagged_bars": flags.height,
        "flags": {f"{check}:{resolution}": n for check, resolution, n in
                  flags.group_by("check", "resolution").len().sort("check", "resolution").iter_rows()},
        "rejected": int(quality["rejected"].sum()) if quality.height else 0,
        "mean_daily_entries": float(churn["entered"][1:].mean() or 0.0) if churn.height > 1 else 0.0,
        "funding": bool(data.funding.height),
        "figures": sorted(figures),
    }


def coverage_data(data: ReportData) -> dict[str, Any]:
    """The numbers behind the coverage heatmap (embedded in the page as ``coverage-data``)."""
    return {
        "days": [d.isoformat() for d in data.days],
        "instruments": data.order,
        "bars": data.bars.tolist(),
        "expected": data.expected.tolist(),
        "member": data.member.astype(int).tolist(),
        "source": data.coverage_source,
    }
