"""The data quality report: one self-contained HTML page about a build.

Sections (each figure is a PNG embedded as base64, so the page is a single file that can be
mailed or archived; the numbers behind the coverage heatmap are embedded too, as JSON in
``<script id="coverage-data">``):

* daily quality: the cleaning counts of every day (``quality/<day>.json``: rows read, kept by
  source, duplicates, conflicts, rejects, malformed lines),
* coverage: a heatmap of 1-minute bars / expected minutes per instrument (rows) and day
  (columns), for every instrument that was a universe member or had data, and a table per
  instrument. From the coverage stage (``coverage/<day>.parquet``, feeder.coverage: expected
  minutes follow listing times, bars by source, missing minutes by reason) when given, else
  from the quality JSON's per-instrument counts with 1,440 expected minutes a day,
* gaps: every member symbol-day with fewer 1-minute bars than expected, with the reasons
  (the exchange has no candle for a minute without trades, a failed fetch, not fetched),
* conflicts and flagged bars: every bar cleaning flagged (``flags`` in the quality JSON,
  feeder.clean.flag_bars): copies that disagree, implausible price jumps, instruments not
  listed; with each copy's values, the bar kept and the resolution (``rest``/``unresolved``,
  ``confirmed``/``corrected``/``unverified``),
* universe membership over time (heatmap, ranked instruments × day) and churn (entries and exits
  per day versus the previous built day),
* turnover: daily USDT turnover (``amount``) per instrument from the resampled bars,
* funding: only if the build has funding data (a ``funding_rate`` column in the resampled bars);
  otherwise the section says that there is none.

Inputs follow docs/ARCHITECTURE.md; only matplotlib (a Qlib dependency) is added to the usual
polars/numpy. Entry point: :func:`write_report` (called by ``workflow/scripts/report.py``).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from feeder.atomic import write_text
from feeder.registry import MINUTES_PER_DAY

log = logging.getLogger(__name__)

__all__ = [
    "MINUTES_PER_DAY",
    "churn_table",
    "coverage_frame",
    "funding_frame",
    "gap_table",
    "load_coverage",
    "load_flags",
    "load_quality",
    "load_universe",
    "turnover_frame",
    "write_report",
]

MAX_TABLE_ROWS = 2000  # longer tables are cut in the HTML (the embedded JSON keeps everything)
MAX_LINES = 12  # instruments drawn in line plots


# --------------------------------------------------------------------------------------------
# Data (pure; each returns a polars frame)
# --------------------------------------------------------------------------------------------


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
    "bars": pl.Int64(), "from_ws": pl.Int64(), "from_rest": pl.Int64(), "missing": pl.Int64(),
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
        .with_columns((pl.col("from_ws").fill_null(0) + pl.col("from_rest").fill_null(0)).alias("bars"))
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
        .select("day", "inst", "rank", "expected", "bars", "from_ws", "from_rest", "missing", *_REASONS, "coverage")
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
# Figures
# --------------------------------------------------------------------------------------------


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _day_ticks(ax: Any, days: Sequence[dt.date]) -> None:
    step = max(1, len(days) // 12)
    ax.set_xticks(range(0, len(days), step))
    ax.set_xticklabels([days[i].isoformat() for i in range(0, len(days), step)], rotation=45, ha="right", fontsize=7)


# Coverage colour bins: a few missing minutes in a day (0.999) must not look like a complete day.
COVERAGE_BOUNDS = (0.0, 0.5, 0.9, 0.99, 0.9999, 1.0001)
COVERAGE_COLOURS = ("#b2182b", "#ef8a62", "#fddb7a", "#a6d96a", "#1a9641")


def _matrix_figure(matrix: np.ndarray, rows: list[str], days: Sequence[dt.date], *, title: str, cmap: Any,
                   vmin: float | None = None, vmax: float | None = None, norm: Any = None,
                   colorbar: str | None = None, colorbar_labels: Sequence[str] | None = None,
                   annotate: np.ndarray | None = None) -> str:
    """A row × day heatmap; NaN cells grey. ``annotate``: integers written in the cells (0 = none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height = min(2.0 + 0.18 * len(rows), 30.0)
    width = min(max(6.0, 0.12 * len(days) + 3.0), 22.0)
    fig, ax = plt.subplots(figsize=(width, height))
    cm = (plt.get_cmap(cmap) if isinstance(cmap, str) else cmap).with_extremes(bad="#e8e8e8")
    im = ax.imshow(np.ma.masked_invalid(matrix), aspect="auto", interpolation="nearest", cmap=cm,
                   **({"norm": norm} if norm is not None else {"vmin": vmin, "vmax": vmax}))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=7 if len(rows) < 80 else 4)
    _day_ticks(ax, days)
    ax.set_title(title, fontsize=10)
    if annotate is not None and len(rows) <= 60 and len(days) <= 45:
        for i, j in zip(*np.nonzero(annotate), strict=True):
            ax.text(j, i, str(int(annotate[i, j])), ha="center", va="center", fontsize=6)
    if colorbar:
        bar = fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
        bar.set_label(colorbar, fontsize=8)
        if colorbar_labels:
            bar.set_ticks(bar.get_ticks()[: len(colorbar_labels)], labels=list(colorbar_labels))
        bar.ax.tick_params(labelsize=7)
    return _png(fig)


def _coverage_figure(shown: np.ndarray, missing: np.ndarray, rows: list[str], days: Sequence[dt.date]) -> str:
    from matplotlib.colors import BoundaryNorm, ListedColormap

    return _matrix_figure(
        shown, rows, days, cmap=ListedColormap(COVERAGE_COLOURS), norm=BoundaryNorm(COVERAGE_BOUNDS, len(COVERAGE_COLOURS)),
        title="1-minute bar coverage (bars / expected minutes; numbers: missing minutes of members)\n"
        "grey: not a member and no data",
        colorbar="coverage", colorbar_labels=("0", "50%", "90%", "99%", "99.99%", "100%"), annotate=missing)


def _churn_figure(churn: pl.DataFrame) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 2.6))
    days = churn["day"].to_list()
    ax.bar(days, churn["entered"].to_list(), color="#2ca02c", label="entered")
    ax.bar(days, [-x for x in churn["left"].to_list()], color="#d62728", label="left")
    ax.axhline(0, color="#444", linewidth=0.6)
    ax.set_title("universe churn: members entering (+) and leaving (-) versus the previous day", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return _png(fig)


def _lines_figure(frame: pl.DataFrame, value: str, *, title: str, ylabel: str, scale: float = 1.0,
                  total: bool = False) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4))
    x_col = "day" if "day" in frame.columns else "ts"
    top = (frame.group_by("inst").agg(pl.col(value).abs().mean().alias("m")).sort("m", descending=True)
           .head(MAX_LINES)["inst"].to_list())
    if total:
        tot = frame.group_by(x_col).agg(pl.col(value).sum()).sort(x_col)
        ax.bar(tot[x_col].to_list(), (tot[value] * scale).to_list(), color="#d9d9d9", label="total",
               width=0.8 if x_col == "day" else 0.03)
    for inst in top:
        part = frame.filter(pl.col("inst") == inst).sort(x_col)
        ax.plot(part[x_col].to_list(), (part[value] * scale).to_list(), marker="." if part.height < 40 else None,
                linewidth=1, label=inst)
    values = frame[value].abs()
    if total and values.min() and values.max() / values.min() > 100:  # a few giants dwarf the rest
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return _png(fig)


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;font-size:12px;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f2f2f2} td.t{text-align:left}
img{max-width:100%;border:1px solid #eee}
.note{color:#555;font-size:13px}
"""


def _table(table_id: str, frame: pl.DataFrame, *, text_cols: Sequence[str] = (), fmt: dict[str, str] | None = None,
           max_rows: int = MAX_TABLE_ROWS) -> str:
    fmt = fmt or {}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.head(max_rows).iter_rows():
        cells = []
        for col, value in zip(frame.columns, row, strict=True):
            if value is None:
                text = ""
            elif col in fmt:
                text = format(value, fmt[col])
            else:
                text = str(value)
            cls = ' class="t"' if col in text_cols or isinstance(value, dt.date) else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = (f'<p class="note">{frame.height - max_rows} more rows not shown (the embedded data has them all).</p>'
            if frame.height > max_rows else "")
    return (f'<table id="{table_id}" data-rows="{frame.height}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>{more}')


def _img(b64: str, alt: str, img_id: str) -> str:
    return f'<img id="{img_id}" alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def write_report(
    *,
    quality_paths: Sequence[Path],
    universe_paths: Sequence[Path],
    coverage_paths: Sequence[Path] = (),
    bar_paths: Sequence[Path] = (),
    days: Sequence[dt.date] | None = None,
    market: str = "",
    bars_freq: str = "",
    out_path: Path,
) -> dict[str, Any]:
    """Render the report to ``out_path`` (one self-contained HTML file); return its key figures.

    ``coverage_paths``: the coverage stage's ``coverage/<day>.parquet`` (expected minutes from
    listing times, bars by source, missing minutes by reason). Without them, coverage is derived
    from the quality JSON with 1,440 expected minutes a day and no reasons.
    """
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
    gaps = gap_table(coverage)
    churn = churn_table(universe, days)
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

    figures: dict[str, str] = {}
    if order and days:
        missing_m = np.where(member_m, np.clip(expected_m - bars_m, 0, None), 0)
        figures["coverage"] = _coverage_figure(shown, missing_m, order, days)
    ranked = (universe.filter(pl.col("member")).group_by("inst").agg(pl.col("rank").min().alias("best"))
              .sort("best", "inst")["inst"].to_list())
    if ranked:
        mem = np.full((len(ranked), len(days)), np.nan)
        pos = {s: i for i, s in enumerate(ranked)}
        for day, inst, rank in universe.filter(pl.col("member")).select("day", "inst", "rank").iter_rows():
            if day in day_pos:
                mem[pos[inst], day_pos[day]] = rank
        figures["membership"] = _matrix_figure(
            mem, ranked, days, title=f"universe membership ({market or 'top N'}): rank on member days",
            cmap="viridis_r", vmin=1.0, vmax=float(np.nanmax(mem)) if np.isfinite(mem).any() else 1.0,
            colorbar="rank")
    if churn.height > 1:
        figures["churn"] = _churn_figure(churn)
    member_turnover = turnover.join(universe.filter(pl.col("member")).select("day", "inst"), on=["day", "inst"],
                                    how="semi")
    if member_turnover.height:
        figures["turnover"] = _lines_figure(member_turnover, "turnover", title="daily USDT turnover of members",
                                            ylabel="million USDT", scale=1e-6, total=True)
    if funding.height:
        figures["funding"] = _lines_figure(funding, "funding_rate",
                                           title=f"last settled funding rate known at each {bars_freq or 'bar'} close",
                                           ylabel="% per funding period", scale=100.0)

    n_member_days = int(coverage["member"].sum())
    complete = int(coverage.filter(pl.col("member") & (pl.col("missing") == 0)).height)
    summary = {
        "days": len(days),
        "first_day": days[0].isoformat() if days else None,
        "last_day": days[-1].isoformat() if days else None,
        "instruments": len(order),
        "member_days": n_member_days,
        "complete_member_days": complete,
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
        "funding": bool(funding.height),
        "figures": sorted(figures),
    }
    coverage_data = {
        "days": [d.isoformat() for d in days],
        "instruments": order,
        "bars": bars_m.tolist(),
        "expected": expected_m.tolist(),
        "member": member_m.astype(int).tolist(),
        "source": coverage_source,
    }

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

    def section(title: str, anchor: str, body: str) -> str:
        return f'<h2 id="{anchor}">{html.escape(title)}</h2>\n{body}\n'

    parts = [
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>Data quality report {summary['first_day']} .. {summary['last_day']}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Data quality report: {summary['first_day']} .. {summary['last_day']}</h1>",
        f'<p class="note">Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC. '
        f"{len(days)} days, {len(order)} instruments (members of {html.escape(market or 'the universe')} on any day "
        f"or with data), {n_member_days} member symbol-days of which {complete} complete "
        f"(every expected one-minute bar); {gaps.height} with gaps, "
        f"{summary['missing_member_minutes']} missing member minutes in all. Coverage from "
        f"{html.escape(coverage_source)}.</p>",
        f'<script type="application/json" id="report-summary">{json.dumps(summary)}</script>',
    ]
    parts.append(section("Daily quality (cleaning counts)", "daily", _table("daily-quality", quality.sort("day"))))
    coverage_body = (
        (_img(figures["coverage"], "coverage heatmap", "coverage-heatmap") if "coverage" in figures else "<p>No data.</p>")
        + f'<script type="application/json" id="coverage-data">{json.dumps(coverage_data)}</script>'
        + '<p class="note">Per instrument, over its member days (coverage = bars / expected minutes):</p>'
        + _table("coverage-by-instrument", by_inst, text_cols=("inst",), fmt={"member_coverage": ".4f"})
    )
    parts.append(section("Coverage (instrument × day)", "coverage", coverage_body))
    gap_note = ('<p class="note">Member symbol-days with fewer one-minute bars than expected minutes. Reasons '
                "(when the coverage stage ran): the exchange has no candle for the minute (no trade; the backfill "
                "asked), the fetch failed (a re-run retries), or nobody fetched it. Nothing is filled in.</p>")
    parts.append(section("Gaps", "gaps", gap_note + _table("gaps", gaps, text_cols=("inst",),
                                                             fmt={"coverage": ".4f"})))
    flag_note = (
        '<p class="note">Bars cleaning did not take on trust, one row per check: <b>conflict</b>, copies of '
        "one bar disagree (resolution <i>rest</i>: the exchange's REST copy decided; <i>unresolved</i>: no REST "
        "copy, the copy received last is kept); <b>spike</b>, the stream's bar jumps further from its neighbours "
        "than the configured factor (clean.spike_factor); <b>not_listed</b>, a bar of an instrument absent from "
        "the instrument list or outside its listing. Spikes and unlisted bars are checked against REST: "
        "<i>confirmed</i> (the exchange has the same bar: kept, a real move), <i>corrected</i> (the exchange "
        "differs: its bar is kept), <i>unverified</i> (no REST copy: kept as streamed). No REST copy means the "
        "fetch failed (a re-run retries it), the exchange has no candle there, or the instrument is not a member "
        "(members only are fetched). Copies: source open/high/low/close/volume/amount.</p>"
    )
    flag_counts = (flags.group_by("check", "resolution").len().rename({"len": "bars"})
                   .sort("check", "resolution"))
    flag_body = (
        flag_note
        + (_table("flag-counts", flag_counts, text_cols=("check", "resolution")) if flags.height
           else '<p id="flags-absent">No conflicts and no flagged bars.</p>')
        + _table("flags", flags, text_cols=("check", "inst", "minute", "resolution", "copies", "kept", "detail"))
    )
    parts.append(section("Conflicts and flagged bars", "flags", flag_body))
    churn_note = (f'<p class="note">Entries and exits versus the previous built day; mean entries per day: '
                  f"{summary['mean_daily_entries']:.2f}.</p>")
    parts.append(section(
        "Universe membership and churn", "universe",
        (_img(figures["membership"], "universe membership", "membership-heatmap") if "membership" in figures
         else "<p>No universe members.</p>")
        + (_img(figures["churn"], "universe churn", "churn-plot") if "churn" in figures else "")
        + churn_note + _table("churn", churn, text_cols=("entered_names", "left_names"))))
    turnover_note = (f'<p class="note">Sum of the {html.escape(bars_freq or "resampled")} bars\' USDT amount per '
                     "member day.</p>")
    parts.append(section(
        "Turnover", "turnover",
        (_img(figures["turnover"], "turnover", "turnover-plot") + turnover_note
         + _table("turnover", turnover_table, text_cols=("inst",), fmt={"mean_musdt": ".3f", "total_musdt": ".3f"}))
        if "turnover" in figures else '<p id="turnover-absent">No turnover data (no resampled bars given).</p>'))
    if funding.height:
        funding_table = (funding.group_by("inst")
                         .agg(pl.len().alias("observations"), pl.col("ts").min().alias("first"),
                              pl.col("ts").max().alias("last"), (pl.col("funding_rate").mean() * 100).alias("mean_pct"))
                         .sort("inst"))
        funding_body = (_img(figures["funding"], "funding rates", "funding-plot")
                        + f'<p class="note">The funding_rate field of the {html.escape(bars_freq or "resampled")} '
                        "bars: point-in-time, the last settled rate known at each bar's close (docs/fields.md).</p>"
                        + _table("funding", funding_table, text_cols=("inst", "first", "last"),
                                 fmt={"mean_pct": ".5f"}))
    else:
        funding_body = ('<p id="funding-absent">No funding data in this build: the resampled bars carry no '
                        "funding_rate field (or no value in it). The plot appears once they do.</p>")
    parts.append(section("Funding", "funding", funding_body))
    parts.append("</body></html>\n")
    write_text("\n".join(parts), Path(out_path))
    log.info("quality report %s: %s", out_path, summary)
    return summary
