"""The quality report's figures: PNGs (base64) drawn with matplotlib from :class:`ReportData`.

The only module of the library that imports matplotlib (the workflow role's extra), and only
when a figure is drawn. Each figure is returned as base64 PNG text for the page to embed.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from feeder.report.data import ReportData

MAX_LINES = 12  # instruments drawn in line plots


def report_figures(data: ReportData) -> dict[str, str]:
    """Every figure the data has something for, by name: ``coverage``, ``membership``, ``churn``,
    ``turnover``, ``funding`` (base64 PNG)."""
    figures: dict[str, str] = {}
    if data.order and data.days:
        figures["coverage"] = _coverage_figure(data.coverage_share, data.missing, data.order, data.days)
    if data.ranked:
        mem = data.ranks
        figures["membership"] = _matrix_figure(
            mem, data.ranked, data.days, title=f"universe membership ({data.market or 'top N'}): rank on member days",
            cmap="viridis_r", vmin=1.0, vmax=float(np.nanmax(mem)) if np.isfinite(mem).any() else 1.0,
            colorbar="rank")
    if data.churn.height > 1:
        figures["churn"] = _churn_figure(data.churn)
    if data.member_turnover.height:
        figures["turnover"] = _lines_figure(data.member_turnover, "turnover", title="daily USDT turnover of members",
                                            ylabel="million USDT", scale=1e-6, total=True)
    if data.funding.height:
        figures["funding"] = _lines_figure(data.funding, "funding_rate",
                                           title=f"last settled funding rate known at each {data.bars_freq or 'bar'} close",
                                           ylabel="% per funding period", scale=100.0)
    return figures


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _day_ticks(ax: Any, days: Sequence[dt.date]) -> None:
    """About 12 day labels under a row × day grid (cell j spans x = j .. j + 1)."""
    step = max(1, len(days) // 12)
    ax.set_xticks([i + 0.5 for i in range(0, len(days), step)])
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
    # A mesh of cells, not imshow: imshow resamples the matrix to the canvas in float64 RGBA (about
    # 90 MB at the figure's size cap, the report job's peak memory on a year of history); the mesh
    # draws the same cells in 60 % of the time at no extra memory.
    im = ax.pcolormesh(np.ma.masked_invalid(matrix), cmap=cm, edgecolors="none", antialiased=False,
                       **({"norm": norm} if norm is not None else {"vmin": vmin, "vmax": vmax}))
    ax.invert_yaxis()  # the first row on top, as in a table
    ax.set_yticks([i + 0.5 for i in range(len(rows))])
    ax.set_yticklabels(rows, fontsize=7 if len(rows) < 80 else 4)
    _day_ticks(ax, days)
    ax.set_title(title, fontsize=10)
    if annotate is not None and len(rows) <= 60 and len(days) <= 45:
        for i, j in zip(*np.nonzero(annotate), strict=True):
            ax.text(j + 0.5, i + 0.5, str(int(annotate[i, j])), ha="center", va="center", fontsize=6)
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
