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
  listed; with each copy's values, the bar kept and the resolution (``exchange``/``unresolved``,
  ``confirmed``/``corrected``/``unverified``),
* universe membership over time (heatmap, ranked instruments × day) and churn (entries and exits
  per day versus the previous built day),
* turnover: daily USDT turnover (``amount``) per instrument from the resampled bars,
* funding: only if the build has funding data (a ``funding_rate`` column in the resampled bars);
  otherwise the section says that there is none.

Inputs follow docs/ARCHITECTURE.md. Entry point: :func:`write_report` (called by
``workflow/scripts/report.py``), in three steps, each its own module: the data
(:mod:`feeder.report.data`, polars/numpy), the figures (:mod:`feeder.report.figures`, the only
user of matplotlib, the workflow role's extra) and the page (:mod:`feeder.report.page`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from feeder.atomic import write_text
from feeder.report.data import ReportData, report_data, report_summary
from feeder.report.figures import report_figures
from feeder.report.page import render_page

log = logging.getLogger(__name__)

__all__ = ["ReportData", "render_page", "report_data", "report_figures", "report_summary", "write_report"]


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
    data = report_data(quality_paths=quality_paths, universe_paths=universe_paths, coverage_paths=coverage_paths,
                       bar_paths=bar_paths, days=days, market=market, bars_freq=bars_freq)
    figures = report_figures(data)
    summary = report_summary(data, figures=list(figures))
    page = render_page(data, figures, summary, generated=dt.datetime.now(dt.timezone.utc))
    write_text(page, Path(out_path))
    log.info("quality report %s: %s", out_path, summary)
    return summary
