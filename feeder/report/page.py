"""The quality report's page: one self-contained HTML file from :class:`ReportData` and its figures.

Tables are HTML tables (cut at MAX_TABLE_ROWS rows), figures ``<img>`` with the PNG inline, and
the summary and the coverage numbers JSON in ``<script type="application/json">``, so the page
can be mailed or archived as one file and read back by a program.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Sequence
from typing import Any

import polars as pl

from feeder.report.data import ReportData, coverage_data

MAX_TABLE_ROWS = 2000  # longer tables are cut in the HTML (the embedded JSON keeps everything)
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


def render_page(data: ReportData, figures: dict[str, str], summary: dict[str, Any], *, generated: dt.datetime) -> str:
    """The report's HTML: sections daily quality, coverage, gaps, flags, universe, turnover, funding."""
    quality, flags, churn, gaps, funding = data.quality, data.flags, data.churn, data.gaps, data.funding
    days, order, market, bars_freq = data.days, data.order, data.market, data.bars_freq
    coverage_source = data.coverage_source
    n_member_days, complete = summary["member_days"], summary["complete_member_days"]

    def section(title: str, anchor: str, body: str) -> str:
        return f'<h2 id="{anchor}">{html.escape(title)}</h2>\n{body}\n'

    parts = [
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>Data quality report {summary['first_day']} .. {summary['last_day']}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Data quality report: {summary['first_day']} .. {summary['last_day']}</h1>",
        f'<p class="note">Generated {generated:%Y-%m-%d %H:%M} UTC. '
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
        + f'<script type="application/json" id="coverage-data">{json.dumps(coverage_data(data))}</script>'
        + '<p class="note">Per instrument, over its member days (coverage = bars / expected minutes):</p>'
        + _table("coverage-by-instrument", data.by_inst, text_cols=("inst",), fmt={"member_coverage": ".4f"})
    )
    parts.append(section("Coverage (instrument × day)", "coverage", coverage_body))
    gap_note = ('<p class="note">Member symbol-days with fewer one-minute bars than expected minutes. Reasons '
                "(when the coverage stage ran): the exchange has no candle for the minute (no trade; the backfill "
                "asked), the fetch failed (a re-run retries), or nobody fetched it. Nothing is filled in.</p>")
    parts.append(section("Gaps", "gaps", gap_note + _table("gaps", gaps, text_cols=("inst",),
                                                             fmt={"coverage": ".4f"})))
    flag_note = (
        '<p class="note">Bars cleaning did not take on trust, one row per check: <b>conflict</b>, copies of '
        "one bar disagree (resolution <i>exchange</i>: the exchange's copy, from REST or the archive, "
        "decided; <i>unresolved</i>: no such copy, the copy received last is kept); <b>spike</b>, the stream's bar jumps further from its neighbours "
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
         + _table("turnover", data.turnover_table, text_cols=("inst",), fmt={"mean_musdt": ".3f", "total_musdt": ".3f"}))
        if "turnover" in figures else '<p id="turnover-absent">No turnover data (no resampled bars given).</p>'))
    if funding.height:
        funding_body = (_img(figures["funding"], "funding rates", "funding-plot")
                        + f'<p class="note">The funding_rate field of the {html.escape(bars_freq or "resampled")} '
                        "bars: point-in-time, the last settled rate known at each bar's close (docs/fields.md).</p>"
                        + _table("funding", data.funding_table, text_cols=("inst", "first", "last"),
                                 fmt={"mean_pct": ".5f"}))
    else:
        funding_body = ('<p id="funding-absent">No funding data in this build: the resampled bars carry no '
                        "funding_rate field (or no value in it). The plot appears once they do.</p>")
    parts.append(section("Funding", "funding", funding_body))
    parts.append("</body></html>\n")
    return "\n".join(parts)
