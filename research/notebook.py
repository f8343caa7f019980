"""The data behind ``research/explore.ipynb``, and running it: execute with parameters, render to HTML.

    python -m research.notebook --qlib-dir data/qlib --work-dir data/work [--freq 60min] \\
        [--example-summary summary.json] --output-dir data/notebook

writes ``<output-dir>/explore.ipynb`` (executed) and ``<output-dir>/explore.html``.

The notebook stays short because every table it plots comes from a small pure function here,
which the tests check against the files they read. Sources, all written by the pipeline:

* the Qlib provider directory: ``calendars/<freq>.txt``, ``instruments/top<N>.txt`` (the
  point-in-time membership spans), the features read through Qlib (``D.features``);
* the work directory (optional): ``coverage.parquet`` (per instrument-day, minutes expected and
  missing, by source) and ``universe/<day>.parquet`` (each day's full ranking). Without it the
  coverage comes from the dataset's ``$coverage`` field;
* the example model (``research.run_example``): its summary names the MLflow run whose
  artifacts hold the daily IC (``sig_analysis/ic.pkl``) and the backtest report
  (``portfolio_analysis/report_normal_<freq>.pkl``).

Executing: the notebook's cell tagged ``parameters`` holds the defaults (papermill's
convention); :func:`execute_notebook` inserts a cell after it with the given values, runs every
cell in a fresh kernel (nbclient) and stops at the first error, naming the cell.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

RESEARCH = Path(__file__).resolve().parent
NOTEBOOK = RESEARCH / "explore.ipynb"


# --------------------------------------------------------------------------------------------
# The dataset: calendars, membership spans
# --------------------------------------------------------------------------------------------


def read_calendar(*, qlib_dir: Path, freq: str) -> list[str]:
    """The calendar's timestamps as written (``YYYY-MM-DD`` or ``YYYY-MM-DD HH:MM:SS``)."""
    path = Path(qlib_dir) / "calendars" / f"{freq}.txt"
    if not path.exists():
        raise FileNotFoundError(f"{path}: this Qlib directory has no {freq} calendar; build it with {freq!r} in "
                                "config.yaml frequencies, or pick another freq")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def markets(*, qlib_dir: Path) -> list[str]:
    """The point-in-time markets (``top<N>``) of a Qlib directory, smallest N first."""
    names = [p.stem for p in (Path(qlib_dir) / "instruments").glob("top*.txt")]
    return sorted(names, key=lambda n: int(n[3:]) if n[3:].isdigit() else sys.maxsize)


def has_field(*, qlib_dir: Path, field: str, freq: str) -> bool:
    """Whether any instrument of the directory has ``<field>.<freq>.bin`` (e.g. ``funding_rate``
    exists only when the collector recorded the funding channel)."""
    return any((Path(qlib_dir) / "features").glob(f"*/{field}.{freq}.bin"))


def membership_days(*, qlib_dir: Path, market: str) -> pl.DataFrame:
    """One row per (day, inst) on which ``inst`` was a member of ``market``: the spans of
    ``instruments/<market>.txt`` (tab-separated inst, first and last timestamp) expanded to days.

    This is the universe Qlib's ``D.instruments(market)`` filters by, so the model sees exactly
    these instrument-days."""
    path = Path(qlib_dir) / "instruments" / f"{market}.txt"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no market {market!r} in this Qlib directory (markets: "
                                f"{', '.join(markets(qlib_dir=qlib_dir)) or 'none'})")
    spans = pl.read_csv(path, separator="\t", has_header=False, new_columns=["inst", "first", "last"],
                        schema_overrides={"first": pl.Utf8, "last": pl.Utf8})
    return (
        spans.select("inst", day=pl.date_ranges(pl.col("first").str.slice(0, 10).str.to_date(),
                                                pl.col("last").str.slice(0, 10).str.to_date()))
        .explode("day")
        .unique()
        .sort("day", "inst")
        .select("day", "inst")
    )


def read_universe(*, work_dir: Path) -> pl.DataFrame | None:
    """The pipeline's daily rankings (``universe/<day>.parquet``: day, inst, rank, metric,
    days_observed, member), all days in one frame; None when the work directory has none."""
    paths = sorted((Path(work_dir) / "universe").glob("*.parquet"))
    if not paths:
        return None
    return pl.concat([pl.read_parquet(p) for p in paths], how="diagonal_relaxed").sort("day", "rank")


def membership_matrix(members: pl.DataFrame, *, insts: Sequence[str], days: Sequence[dt.date]) -> list[list[int]]:
    """Rows = ``insts``, columns = ``days``: 1 where the instrument was a member that day."""
    pairs = set(zip(members["inst"].to_list(), members["day"].to_list()))
    return [[int((inst, day) in pairs) for day in days] for inst in insts]


def top_coins(members: pl.DataFrame, *, n: int, turnover: pl.DataFrame | None = None) -> list[str]:
    """The ``n`` instruments that were members on the most days; ties (on a short dataset every
    member may have every day) go to the higher mean of ``turnover`` (inst, metric: e.g. daily
    USDT turnover), then to the name."""
    counts = members.group_by("inst").agg(days=pl.len())
    if turnover is not None:
        means = turnover.group_by("inst").agg(metric=pl.col("metric").mean())
        counts = counts.join(means, on="inst", how="left").with_columns(pl.col("metric").fill_null(float("-inf")))
    else:
        counts = counts.with_columns(metric=pl.lit(0.0))
    return counts.sort(["days", "metric", "inst"], descending=[True, True, False])["inst"].head(n).to_list()


def daily_turnover(*, insts: Sequence[str], first: dt.date, last: dt.date) -> pl.DataFrame:
    """day, inst, metric = the day's USDT turnover (``$amount``), through Qlib (initialised on the dataset)."""
    from qlib.data import D

    frame = D.features(list(insts), ["$amount"], start_time=str(first), end_time=str(last), freq="day")
    return (
        pl.from_pandas(frame.reset_index())
        .select(day=pl.col("datetime").dt.date(), inst=pl.col("instrument"), metric=pl.col("$amount").cast(pl.Float64))
        .drop_nulls("metric").filter(pl.col("metric").is_not_nan())
    )


# --------------------------------------------------------------------------------------------
# Coverage
# --------------------------------------------------------------------------------------------


def read_coverage(*, work_dir: Path) -> pl.DataFrame | None:
    """The pipeline's coverage table (``coverage.parquet``, else the per-day ``coverage/*.parquet``)
    with ``share`` = bars present / minutes expected; None when the work directory has neither."""
    work_dir = Path(work_dir)
    merged = work_dir / "coverage.parquet"
    paths = [merged] if merged.exists() else sorted((work_dir / "coverage").glob("*.parquet"))
    if not paths:
        return None
    frame = pl.concat([pl.read_parquet(p) for p in paths], how="diagonal_relaxed")
    return frame.with_columns(
        share=pl.when(pl.col("expected") > 0)
        .then(1.0 - pl.col("missing").cast(pl.Float64) / pl.col("expected"))
        .otherwise(None)
    ).sort("day", "inst")


def coverage_from_dataset(*, insts: Sequence[str], first: dt.date, last: dt.date) -> pl.DataFrame:
    """day, inst, share from the dataset's daily ``$coverage`` field (the share of a day's minutes
    with a bar), through Qlib, which must be initialised on the dataset: the coverage when there
    is no work directory. Days without a bar have no row."""
    from qlib.data import D

    frame = D.features(list(insts), ["$coverage"], start_time=str(first), end_time=str(last), freq="day")
    return (
        pl.from_pandas(frame.reset_index())
        .select(day=pl.col("datetime").dt.date(), inst=pl.col("instrument"), share=pl.col("$coverage").cast(pl.Float64))
        .drop_nulls("share").filter(pl.col("share").is_not_nan())
        .sort("day", "inst")
    )


def coverage_matrix(coverage: pl.DataFrame, *, insts: Sequence[str], days: Sequence[dt.date]) -> list[list[float]]:
    """Rows = ``insts``, columns = ``days``: the share of expected minutes with a bar, NaN where
    the table has no row (the instrument was not built that day)."""
    share = {(r["inst"], r["day"]): r["share"] for r in coverage.select("inst", "day", "share").iter_rows(named=True)}
    nan = float("nan")
    return [[nan if share.get((inst, day)) is None else float(share[(inst, day)]) for day in days] for inst in insts]


# --------------------------------------------------------------------------------------------
# Returns and funding
# --------------------------------------------------------------------------------------------


def cumulative_log_returns(close: pl.DataFrame) -> pl.DataFrame:
    """Per instrument, the running sum of bar-to-bar log returns of ``close`` (columns inst, ts,
    close). A missing bar breaks nothing: the next return spans the gap."""
    return (
        close.drop_nulls("close").filter(pl.col("close") > 0)
        .sort("inst", "ts")
        .with_columns(ret=pl.col("close").log().diff().over("inst").fill_null(0.0))
        .with_columns(cum=pl.col("ret").cum_sum().over("inst"))
    )


# --------------------------------------------------------------------------------------------
# The example model: IC and equity curve from its MLflow run
# --------------------------------------------------------------------------------------------


def freq_key(freq: str) -> str:
    """Qlib's key for a frequency in the recorder's artifact names (``day`` -> ``1day``)."""
    from qlib.utils.time import Freq

    count, unit = Freq.parse(freq)
    return f"{count}{unit}"


def example_artifacts(summary: dict[str, Any]) -> dict[str, Any]:
    """The IC series (one value per test bar) and the backtest report (Qlib's DataFrame: return,
    cost, bench, account, turnover per step) of the run a ``run_example`` summary names."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=summary["mlflow"]["uri"])
    run_id = summary["mlflow"]["run_id"]
    names = {"ic": "sig_analysis/ic.pkl",
             "report": f"portfolio_analysis/report_normal_{freq_key(summary['freq'])}.pkl"}
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="explore-artifacts.") as tmp:
        for key, name in names.items():
            try:
                local = client.download_artifacts(run_id, name, tmp)
            except Exception as exc:  # mlflow raises several types for a missing artifact
                raise FileNotFoundError(f"MLflow run {run_id} ({summary['mlflow']['uri']}) has no {name}: {exc}; "
                                        "re-run research.run_example") from exc
            with open(local, "rb") as fh:
                out[key] = pickle.load(fh)
    return out


def equity_curves(report: Any) -> pl.DataFrame:
    """From Qlib's backtest report: per step, the account value and the summed returns of the
    strategy after costs and of the benchmark (Qlib sums bar returns; it does not compound)."""
    return pl.DataFrame({
        "ts": [t.to_pydatetime() for t in report.index],
        "account": report["account"].astype(float).to_numpy(),
        "strategy_after_costs": (report["return"] - report["cost"]).astype(float).cumsum().to_numpy(),
        "benchmark": report["bench"].astype(float).cumsum().to_numpy(),
    })


# --------------------------------------------------------------------------------------------
# Executing and rendering the notebook
# --------------------------------------------------------------------------------------------


def with_parameters(nb: Any, params: dict[str, Any]) -> Any:
    """A copy of ``nb`` with a cell assigning ``params`` after the cell tagged ``parameters``
    (papermill's convention, so papermill runs the same notebook)."""
    import copy

    import nbformat

    nb = copy.deepcopy(nb)
    index = next((i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if index is None:
        raise ValueError("explore.ipynb has no cell tagged 'parameters'")
    source = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in params.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(index + 1, cell)
    return nb


def execute_notebook(*, params: dict[str, Any], output: Path, notebook: Path = NOTEBOOK,
                     timeout: int = 900) -> Any:
    """Run the notebook with ``params`` in a fresh kernel (its working directory: research/) and
    write the executed notebook to ``output``; returns it. A failing cell raises nbclient's
    CellExecutionError (which shows the cell and the traceback); the partial notebook is written
    first, so its outputs can be read."""
    import nbformat
    from nbclient import NotebookClient

    nb = with_parameters(nbformat.read(notebook, as_version=4), params)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(Path(notebook).resolve().parent)}})
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        client.execute()
    finally:
        nbformat.write(nb, output)
    return nb


def render_html(*, executed: Path, output: Path) -> Path:
    """The executed notebook as one self-contained HTML file (figures embedded as PNG)."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nbformat.read(executed, as_version=4))
    output = Path(output)
    output.write_text(body, encoding="utf-8")
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qlib-dir", type=Path, required=True, help="the Qlib provider directory (paths.qlib)")
    parser.add_argument("--work-dir", type=Path, help="the pipeline's work directory (paths.work): coverage, universe")
    parser.add_argument("--market", help="default: the directory's smallest top<N>")
    parser.add_argument("--freq", default="day", help="bars for the returns and funding plots (default: day)")
    parser.add_argument("--example-summary", type=Path,
                        help="a research.run_example --summary-json file; without it the notebook runs the example")
    parser.add_argument("--example-freq", default="day", help="when the notebook runs the example: its bars")
    parser.add_argument("--example-windows", default="5,10,20", help="when the notebook runs the example: windows")
    parser.add_argument("--output-dir", type=Path, required=True, help="where explore.ipynb and explore.html go")
    args = parser.parse_args(argv)
    params = {
        "QLIB_DIR": os.path.abspath(args.qlib_dir),  # as given: the notebook shows which version it is
        "WORK_DIR": str(args.work_dir.resolve()) if args.work_dir else "",
        "MARKET": args.market or "",
        "FREQ": args.freq,
        "EXAMPLE_SUMMARY": str(args.example_summary.resolve()) if args.example_summary else "",
        "EXAMPLE_FREQ": args.example_freq,
        "EXAMPLE_WINDOWS": [int(w) for w in args.example_windows.split(",")],
        "EXAMPLE_MLFLOW_DIR": str((args.output_dir / "mlflow").resolve()),
    }
    t0 = time.perf_counter()
    executed = args.output_dir / "explore.ipynb"
    execute_notebook(params=params, output=executed)
    html = render_html(executed=executed, output=args.output_dir / "explore.html")
    print(json.dumps({"notebook": str(executed), "html": str(html), "seconds": round(time.perf_counter() - t0, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
