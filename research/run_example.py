"""Run the example research workflow on a Qlib provider directory and print the backtest summary.

    python -m research.run_example --provider-uri data/qlib [--freq day|60min|5min|1min] [--market top50]
        [--mlflow-dir DIR] [--windows 5,10,20] [--start DAY] [--long-short] [--summary-json out.json]

What it does, in one process: renders the workflow config for ``--freq``
(``research/workflow_config_lightgbm_Alpha158_<freq>.yaml``, the same file ``qrun`` runs) with
this dataset's values, initialises Qlib (region ``us``) with MLflow tracking in
``<mlflow-dir>/mlflow.db`` (SQLite: mlflow 3's file store refuses to run) and artifacts in
``<mlflow-dir>/artifacts`` (default mlflow-dir: ``research-runs`` beside the provider directory,
e.g. ``data/research-runs``), trains LightGBM on Alpha158 over the point-in-time market,
predicts the test segment, analyses the signal (IC) and runs the TopkDropout backtest with
crypto settings (see research/README.md), then prints the summary figures on stdout (Qlib's
own progress output goes to stderr).

Segments come from the dataset's calendar unless given: the first ``max(windows)`` bars are
feature warm-up only (Alpha158 looks back up to 60 bars), the rest is split 60/20/20 into train,
valid and test, and the backtest runs over the test segment up to the calendar's second-to-last
bar (Qlib needs the bar after the last trading step).

``--long-short``: the baselines table's model and random-signal rows are long-short portfolios
(long the top-k, short the bottom-k, equal weights, same fees, funding paid or received on both
legs; ``research.records.long_short_report``); Qlib's long-only TopkDropout figures are printed
too, labelled as such.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESEARCH = Path(__file__).resolve().parent
CONFIGS = {freq: RESEARCH / f"workflow_config_lightgbm_Alpha158_{freq}.yaml" for freq in ("1min", "5min", "60min", "day")}
#: The daily long-short workflow (``--long-short``; other frequencies switch their own config's record).
LONG_SHORT_CONFIG = RESEARCH / "workflow_config_lightgbm_Alpha158_day_longshort.yaml"
VERSIONS_MARKER = ".feeder-qlib-versions"  # feeder.publish.VERSIONS_MARKER: a directory of published versions
ALPHA158_WINDOWS = (5, 10, 20, 30, 60)
log = logging.getLogger("research")


class DatasetTooShort(ValueError):
    """The dataset cannot hold the chosen windows plus train, valid and test segments."""


class MlflowDirRefused(ValueError):
    """--mlflow-dir points inside the versioned dataset tree."""


# --------------------------------------------------------------------------------------------
# MLflow location: never inside the versioned dataset tree
# --------------------------------------------------------------------------------------------


def _versions_roots(provider_uri: Path) -> list[Path]:
    """The directories holding published dataset versions that ``provider_uri`` belongs to.

    ``paths.qlib`` is a symbolic link into ``<paths.qlib>.versions/<id>``; the publisher prunes
    that directory, keeping a fixed number of entries, so anything else written there costs a
    dataset version (or is deleted with one)."""
    given = Path(os.path.abspath(provider_uri))
    roots = [given.with_name(given.name + ".versions")]
    for p in (given, *given.parents, Path(provider_uri).resolve(), *Path(provider_uri).resolve().parents):
        if p.name.endswith(".versions") or (p / VERSIONS_MARKER).exists():
            roots.append(p)
    roots.append(Path(provider_uri).resolve())  # the dataset itself
    return list(dict.fromkeys(r.resolve() if r.exists() else r for r in roots))


def default_mlflow_dir(*, provider_uri: Path) -> Path:
    """``research-runs`` beside the provider directory *as given* (``data/qlib`` → ``data/research-runs``),
    not resolved through the link; beside the versions directory if a version was given directly."""
    given = Path(os.path.abspath(provider_uri))
    for p in (given, *given.parents):
        if p.name.endswith(".versions") or (p / VERSIONS_MARKER).exists():
            return p.parent / "research-runs"
    return given.parent / "research-runs"


def check_mlflow_dir(*, mlflow_dir: Path, provider_uri: Path) -> Path:
    """The absolute MLflow directory, or ``MlflowDirRefused`` if it is inside the dataset or its
    versions directory."""
    target = Path(mlflow_dir).resolve()
    for root in _versions_roots(provider_uri):
        if target == root or root in target.parents:
            raise MlflowDirRefused(
                f"--mlflow-dir {mlflow_dir} is inside {root}, the versioned dataset tree of {provider_uri}: "
                "the publisher keeps only a few entries there, so MLflow runs would take a version's place "
                f"(or be deleted with one). Use a directory outside it, e.g. the default "
                f"{default_mlflow_dir(provider_uri=provider_uri)}"
            )
    return target


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


def read_calendar(provider_uri: Path, freq: str) -> list[str]:
    path = Path(provider_uri) / "calendars" / f"{freq}.txt"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no {freq} calendar in this Qlib directory (add {freq!r} to frequencies)")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def auto_segments(calendar: list[str], *, warmup: int, split: tuple[float, float] = (0.6, 0.2)) -> dict[str, str]:
    """Template values START..BACKTEST_END from a calendar (see the module docstring).

    Intraday calendars: the test segment (and so the backtest) starts at 00:00 of its day. Qlib's
    account first computes the benchmark on *daily* bars between the backtest's start and end
    times, and a backtest with no 00:00 inside it fails ("The benchmark ... does not exist").
    """
    usable = len(calendar) - warmup
    span = f"{calendar[0]} .. {calendar[-1]}" if calendar else "no bars"
    if usable < 10:
        raise DatasetTooShort(
            f"{len(calendar)} bars ({span}): too short for {warmup} warm-up bars (the longest rolling window) "
            f"plus at least 10 bars of train, valid and test; build more days, or use shorter --windows "
            f"(e.g. --windows 3,6,12 needs 12 warm-up bars)"
        )
    n_train = max(int(usable * split[0]), 3)
    n_valid = max(int(usable * split[1]), 2)
    train0 = warmup
    valid0 = train0 + n_train
    test0 = valid0 + n_valid
    intraday = len(calendar[0]) > 10
    if intraday and test0 < len(calendar):
        day_start = next(i for i in range(test0, -1, -1) if i == 0 or calendar[i - 1][:10] != calendar[test0][:10])
        if day_start - train0 >= 5:  # room for >= 3 train and >= 2 valid bars before it
            test0 = day_start
            valid0 = min(valid0, test0 - max(2, min(n_valid, (test0 - train0) // 3)))
    if test0 > len(calendar) - 3:
        raise DatasetTooShort(f"{len(calendar)} bars ({span}) leave no test segment; build more days")
    if intraday and not any(c.endswith("00:00:00") for c in calendar[test0:-1]):
        raise DatasetTooShort(
            f"{len(calendar)} bars ({span}): the test segment {calendar[test0]} .. {calendar[-2]} contains no "
            "00:00 bar, and Qlib's backtest computes its benchmark on daily bars inside it; build more days, "
            f"or use shorter --windows (now {warmup} warm-up bars) so the test segment can start at 00:00"
        )
    return {
        "START": calendar[0],
        "TRAIN_START": calendar[train0],
        "TRAIN_END": calendar[valid0 - 1],
        "VALID_START": calendar[valid0],
        "VALID_END": calendar[test0 - 1],
        "TEST_START": calendar[test0],
        "END": calendar[-1],
        "BACKTEST_END": calendar[-2],
    }


def render_config(path: Path, values: dict[str, Any]) -> dict[str, Any]:
    """Render the Jinja variables of a workflow config (as qrun does) and parse the YAML."""
    from jinja2 import StrictUndefined, Template
    from ruamel.yaml import YAML

    context = {k: v for k, v in values.items() if v is not None}
    text = Template(path.read_text(), undefined=StrictUndefined).render(**context)
    return YAML(typ="safe", pure=True).load(text)


def use_windows(config: dict[str, Any], windows: list[int]) -> None:
    """Swap the config's Alpha158 handler for research.handlers.Alpha158Windows(windows)."""
    handler = config["task"]["dataset"]["kwargs"]["handler"]
    handler["class"] = "Alpha158Windows"
    handler["module_path"] = "research.handlers"
    handler["kwargs"] = {**handler["kwargs"], "windows": list(windows)}


def set_long_short(config: dict[str, Any]) -> None:
    """Switch the config's ``CryptoPortAnaRecord`` to the long-short model and random rows."""
    records = [r for r in config["task"]["record"] if r["class"] == "CryptoPortAnaRecord"]
    if not records:
        raise ValueError("--long-short needs a CryptoPortAnaRecord (research.records) in the config's task.record")
    for r in records:
        r.setdefault("kwargs", {})["long_short"] = True


def ensure_experiment(uri: str, name: str, artifact_dir: Path) -> str:
    """Create the MLflow experiment with its artifacts under ``artifact_dir`` (not ./mlruns)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    artifact_dir.mkdir(parents=True, exist_ok=True)
    return client.create_experiment(name, artifact_location=artifact_dir.resolve().as_uri())


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def _num(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def summarize(recorder: Any, *, freq: str, config: dict[str, Any]) -> dict[str, Any]:
    """The figures worth printing, read back from the recorder's artifacts."""
    from qlib.utils.time import Freq

    from research.records import degenerate_warnings, periods_per_year, verdict

    count, unit = Freq.parse(freq)
    key = f"{count}{unit}"
    model = recorder.load_object("params.pkl")
    pred = recorder.load_object("pred.pkl")
    report = recorder.load_object(f"portfolio_analysis/report_normal_{key}.pkl")
    positions = recorder.load_object(f"portfolio_analysis/positions_normal_{key}.pkl")
    analysis = recorder.load_object(f"portfolio_analysis/port_analysis_{key}.pkl")
    ic = recorder.load_object("sig_analysis/ic.pkl")
    ric = recorder.load_object("sig_analysis/ric.pkl")

    try:
        baselines = recorder.load_object(f"portfolio_analysis/baselines_{key}.pkl")
    except Exception:  # noqa: BLE001 - a record configured with baselines: false
        baselines = None
    holdings = [len(p.get_stock_list()) for p in positions.values()]
    risk = {
        block: {metric: _num(analysis.loc[(block, metric), "risk"]) for metric in analysis.loc[block].index}
        for block in analysis.index.get_level_values(0).unique()
    }
    seg = config["task"]["dataset"]["kwargs"]["segments"]
    port = next(r["kwargs"]["config"] for r in config["task"]["record"] if r["class"].endswith("PortAnaRecord"))
    bt, strategy = port["backtest"], port["strategy"]["kwargs"]
    return {
        "freq": freq,
        "long_short": bool(next(r for r in config["task"]["record"] if r["class"].endswith("PortAnaRecord"))
                           .get("kwargs", {}).get("long_short", False)),
        "market": config["task"]["dataset"]["kwargs"]["handler"]["kwargs"]["instruments"],
        "handler": config["task"]["dataset"]["kwargs"]["handler"]["class"],
        "windows": config["task"]["dataset"]["kwargs"]["handler"]["kwargs"].get("windows", list(ALPHA158_WINDOWS)),
        "segments": {k: [str(v[0]), str(v[1])] for k, v in seg.items()},
        "model": {"class": type(model).__name__, "trees": int(model.model.num_trees()),
                  "best_iteration": int(model.model.best_iteration or 0),
                  "features": int(model.model.num_feature())},
        "predictions": int(len(pred)),
        "signal": {"ic_mean": _num(ic.mean()), "icir": _num(ic.mean() / ic.std()) if len(ic) > 1 else None,
                   "rank_ic_mean": _num(ric.mean())},
        "backtest": {
            "start": str(report.index.min()), "end": str(report.index.max()), "steps": int(len(report)),
            "topk": strategy.get("topk"), "n_drop": strategy.get("n_drop"),
            "fee_per_side": bt["exchange_kwargs"]["open_cost"],
            "account_start": float(bt["account"]), "account_end": float(report["account"].iloc[-1]),
            "cumulative_return": float(report["return"].sum()),
            "cumulative_cost": float(report["cost"].sum()),
            "cumulative_benchmark": float(report["bench"].sum()),
            "mean_turnover": float(report["turnover"].mean()),
            "position_steps": int(sum(1 for h in holdings if h)),
            "mean_holdings": float(sum(holdings) / len(holdings)) if holdings else 0.0,
        },
        "risk": risk,
        "baselines": None if baselines is None else {
            "table": {name: {k: _num(v) for k, v in row.items()} for name, row in baselines.iterrows()},
            "funding": baselines.attrs.get("funding"),
            "strategy": baselines.attrs.get("strategy"),
            "model_vs_random": {k: (_num(v) if not isinstance(v, bool) else v)
                                for k, v in baselines.attrs.get("random_vs_model", {}).items()},
            "verdict": verdict(baselines.attrs["random_vs_model"]) if "random_vs_model" in baselines.attrs else None,
        },
        "warnings": degenerate_warnings(trees=int(model.model.num_trees()), ic_mean=_num(ic.mean()),
                                        test_steps=int(len(report))),
        "periods_per_year": periods_per_year(freq),
        "mlflow": {"uri": config["qlib_init"]["exp_manager"]["kwargs"]["uri"],
                   "experiment_id": recorder.experiment_id, "run_id": recorder.id},
    }


def format_summary(s: dict[str, Any]) -> str:
    def pct(x: float | None) -> str:
        return "   n/a" if x is None else f"{x * 100:+7.2f}%"

    def num(x: float | None) -> str:
        return "  n/a" if x is None else f"{x:+6.2f}"

    bt, seg = s["backtest"], s["segments"]
    unit = "days" if s["freq"] == "day" else f"{s['freq']} bars"
    lines = [
        f"LightGBM on {s['handler']} (windows {s['windows']}), {s['freq']} bars, market {s['market']}",
        f"  train {seg['train'][0]} .. {seg['train'][1]} | valid {seg['valid'][0]} .. {seg['valid'][1]} | "
        f"test {seg['test'][0]} .. {seg['test'][1]}",
        f"  model: {s['model']['trees']} trees (best iteration {s['model']['best_iteration']}), "
        f"{s['model']['features']} features; {s['predictions']} test predictions",
        f"  signal (test): IC {num(s['signal']['ic_mean'])}, ICIR {num(s['signal']['icir'])}, "
        f"rank IC {num(s['signal']['rank_ic_mean'])}",
        f"  {'long-only (for reference) ' if s.get('long_short') else ''}"
        f"TopkDropout backtest {bt['start']} .. {bt['end']} ({bt['steps']} {unit}), topk {bt['topk']}, "
        f"n_drop {bt['n_drop']}, fee {bt['fee_per_side'] * 100:.3f}%/side, positions on {bt['position_steps']} steps "
        f"(mean {bt['mean_holdings']:.1f} coins)",
        f"  account {bt['account_start']:,.0f} -> {bt['account_end']:,.0f} USDT; fees {bt['cumulative_cost'] * 100:.2f}% "
        f"of capital, mean turnover {bt['mean_turnover'] * 100:.1f}%/step",
        f"  {'annualised over 365 days (' + format(s['periods_per_year'], ',.0f') + ' bars)':40}"
        f"{'total':>8} {'annual':>9} {'IR':>6} {'max DD':>8}",
    ]
    n_steps = max(bt["steps"], 1)
    labels = {"return_with_cost": "strategy, after costs", "benchmark": "benchmark (equal-weighted market)",
              "excess_return_without_cost": "excess over benchmark, before costs",
              "excess_return_with_cost": "excess over benchmark, after costs"}
    for block, label in labels.items():
        r = s["risk"].get(block)
        if not r:
            continue
        total = None if r.get("mean") is None else r["mean"] * n_steps
        lines.append(f"  {label:40}{pct(total)} {pct(r.get('annualized_return')):>9} "
                     f"{num(r.get('information_ratio'))} {pct(r.get('max_drawdown'))}")
    b = s.get("baselines")
    if b:
        from research.records import format_risk_table

        import pandas as pd

        table = pd.DataFrame(b["table"]).T.astype(float)
        table.attrs.update(funding=b["funding"], strategy=b.get("strategy"))
        lines.append(format_risk_table(table, freq=s["freq"]))
        if b.get("verdict"):
            lines.append("  " + b["verdict"])
    for w in s.get("warnings", []):
        lines.append(f"  WARNING: {w}")
    lines.append(f"  MLflow: {s['mlflow']['uri']} (experiment {s['mlflow']['experiment_id']}, run {s['mlflow']['run_id']})")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def run_example(
    *,
    provider_uri: Path,
    freq: str = "day",
    market: str | None = None,
    mlflow_dir: Path,
    windows: list[int] | None = None,
    topk: int | None = None,
    n_drop: int | None = None,
    num_threads: int = 2,
    segments: dict[str, str] | None = None,
    start: str | None = None,
    experiment_name: str | None = None,
    config_path: Path | None = None,
    long_short: bool = False,
) -> dict[str, Any]:
    """Train, predict, analyse and backtest; return the summary dict (see ``summarize``).

    ``segments`` overrides template values (START, TRAIN_START, ..., BACKTEST_END); ``start``
    drops the calendar before it before the automatic split. ``long_short``: the daily
    long-short config (``LONG_SHORT_CONFIG``) for ``day``; any config's ``CryptoPortAnaRecord``
    gets ``long_short: true``.
    """
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # research.records / research.handlers by module path
    import qlib
    from qlib.model.trainer import task_train

    from research.records import quiet_qlib

    quiet_qlib()
    mlflow_dir = check_mlflow_dir(mlflow_dir=mlflow_dir, provider_uri=provider_uri)
    provider_uri = Path(provider_uri).resolve()
    mlflow_dir.mkdir(parents=True, exist_ok=True)
    if market is None:
        tops = sorted(p.stem for p in (provider_uri / "instruments").glob("top*.txt"))
        if not tops:
            raise FileNotFoundError(f"{provider_uri}/instruments has no top<N>.txt market; pass --market")
        market = tops[0]
    calendar = read_calendar(provider_uri, freq)
    if start:
        calendar = [c for c in calendar if c >= start]  # ISO strings sort like the times they are
    warmup = max(windows or ALPHA158_WINDOWS)
    values: dict[str, Any] = {
        **auto_segments(calendar, warmup=warmup),
        **(segments or {}),
        "PROVIDER_URI": str(provider_uri),
        "MLFLOW_URI": f"sqlite:///{mlflow_dir / 'mlflow.db'}",
        "MARKET": market,
        "NUM_THREADS": num_threads,
        "TOPK": topk,
        "N_DROP": n_drop,
    }
    if config_path is None:
        config_path = LONG_SHORT_CONFIG if long_short and freq == "day" else CONFIGS[freq]
    config = render_config(config_path, values)
    if long_short:
        set_long_short(config)
    if windows and list(windows) != list(ALPHA158_WINDOWS):
        use_windows(config, windows)
    qlib_init = config["qlib_init"]
    experiment_name = (experiment_name or config.get("experiment_name")
                       or f"crypto_alpha158_{freq}{'_longshort' if long_short else ''}")
    ensure_experiment(qlib_init["exp_manager"]["kwargs"]["uri"], experiment_name, mlflow_dir / "artifacts")
    qlib.init(**qlib_init)
    recorder = task_train(config["task"], experiment_name=experiment_name)
    recorder.save_objects(config=config)
    return summarize(recorder, freq=freq, config=config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--provider-uri", type=Path, default=REPO / "data" / "qlib")
    parser.add_argument("--freq", choices=sorted(CONFIGS), default="day")
    parser.add_argument("--market", help="Qlib market (default: the directory's top<N>)")
    parser.add_argument("--mlflow-dir", type=Path,
                        help="where mlflow.db and the artifacts go (default: research-runs beside the provider "
                             "directory as given, e.g. data/research-runs; never inside its versions directory)")
    parser.add_argument("--start", help="ignore the calendar before this day/time (e.g. a shorter intraday run)")
    parser.add_argument("--windows", help="Alpha158-style rolling windows, e.g. 5,10,20 (default: Alpha158's 5..60)")
    parser.add_argument("--topk", type=int)
    parser.add_argument("--n-drop", type=int)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--config", type=Path, help="workflow config (default: the shipped one for --freq)")
    parser.add_argument("--long-short", action="store_true",
                        help="long the top-k, short the bottom-k (equal weights) in the model and random rows")
    parser.add_argument("--summary-json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    windows = [int(w) for w in args.windows.split(",")] if args.windows else None
    t0 = time.perf_counter()
    # Qlib and LightGBM print progress to stdout: keep stdout for the summary
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    mlflow_dir = args.mlflow_dir or default_mlflow_dir(provider_uri=args.provider_uri)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            summary = run_example(provider_uri=args.provider_uri, freq=args.freq, market=args.market,
                                  mlflow_dir=mlflow_dir, windows=windows, topk=args.topk, n_drop=args.n_drop,
                                  num_threads=args.threads, start=args.start, config_path=args.config,
                                  long_short=args.long_short)
    except (DatasetTooShort, MlflowDirRefused, FileNotFoundError) as exc:
        print(f"research.run_example: {exc}", file=sys.stderr)
        return 2
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    if args.summary_json:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2, default=str))
    print(format_summary(summary), flush=True)
    print(f"  ({summary['seconds']:.0f}s, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
