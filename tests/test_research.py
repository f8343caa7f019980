"""The example research workflow (research/): LightGBM + Alpha158 + TopkDropout with crypto settings.

Real Qlib, real LightGBM, real MLflow (SQLite), on a provider directory written by the product's
own export (research.sample_data: the simulator's market model -> feeder.resample ->
feeder.universe.rank_day -> feeder.qlib_export.export_qlib). The runner runs in a fresh
interpreter with a temporary working directory, so the test also proves nothing lands in the
working directory or the repository (no ./mlruns).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from harness.processes import REPO

FIRST, LAST = dt.date(2023, 5, 1), dt.date(2023, 10, 31)  # 184 days: Alpha158's 60-day warm-up + 124
N_SYMBOLS, SIZE = 10, 6
# 60min bars from here: 12 days (288 bars) = 20 warm-up, 143 train, 53 valid, then a test segment
# from 00:00 of the 10th day (72 bars, 71 backtest steps)
INTRADAY_START = "2023-10-20"
FEE = 0.0005


@pytest.fixture(scope="module")
def provider(tmp_path_factory) -> Path:
    from research.sample_data import build_sample_qlib

    qlib_dir = tmp_path_factory.mktemp("research") / "qlib"
    summary = build_sample_qlib(qlib_dir, first_day=FIRST, last_day=LAST, n_symbols=N_SYMBOLS, size=SIZE,
                                freqs=("day", "60min"))
    assert summary["freqs"]["day"]["instruments"] == N_SYMBOLS
    return qlib_dir


def run_example(cwd: Path, *args: str, timeout: float = 600) -> dict:
    """python -m research.run_example in a fresh interpreter; returns its summary JSON."""
    summary_path = cwd / "summary.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "research.run_example", *args, "--summary-json", str(summary_path)],
                         cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert "TopkDropout backtest" in res.stdout  # the printed summary
    return json.loads(summary_path.read_text())


def mlflow_artifacts(db: Path, run_id: str, dest: Path) -> Path:
    """Download a run's artifacts through MLflow itself (not the runner's code)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    return Path(client.download_artifacts(run_id, "", str(dest)))


def load(artifacts: Path, name: str):
    with open(artifacts / name, "rb") as fh:
        return pickle.load(fh)


def read_calendar(qlib_dir: Path, freq: str) -> list[str]:
    return (qlib_dir / "calendars" / f"{freq}.txt").read_text().split("\n")[:-1]


def simulated_funding(weights, *, bar) -> float:
    """The oracle: sum over the simulator's settlements T of (weight held into the bar whose
    (open, close] contains T) x (rate settled at T), straight from okxsim.Market (the world the
    sample was built from), for ``weights`` (bars x instruments, after each bar's trades)."""
    import pandas as pd

    from okxsim import Market

    market = Market(seed=7, history_start=(FIRST - dt.timedelta(days=8)).isoformat(),
                    clock_start=f"{LAST + dt.timedelta(days=1)}T01:00:00Z")
    held = weights.shift(1).fillna(0.0)
    total = 0.0
    for inst in held.columns:
        spec = market.spec(inst)
        iv = spec.funding_hours * 3_600_000
        for t, w in held[inst].items():
            if w == 0:
                continue
            lo = int(pd.Timestamp(t).timestamp() * 1000)
            hi = lo + int(bar.total_seconds() * 1000)
            for settle in range(lo + iv - lo % iv, hi + 1, iv):  # lo < T <= hi
                total += w * market.settled_funding_rate(spec, settle)
    return total


@pytest.mark.slow
def test_daily_example_trains_a_model_and_backtests_with_positions(provider: Path, tmp_path: Path):
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    mlflow_dir = tmp_path / "mlflow"
    summary = run_example(workdir, "--provider-uri", str(provider), "--freq", "day", "--mlflow-dir", str(mlflow_dir),
                          "--topk", "3", "--n-drop", "1")

    # the shipped daily config: real Alpha158 (158 features, windows up to 60 days)
    assert summary["handler"] == "Alpha158"
    assert summary["model"]["features"] == 158
    assert summary["model"]["trees"] >= 1
    calendar = read_calendar(provider, "day")
    assert summary["segments"]["train"][0] == calendar[60]  # 60 warm-up days
    assert summary["segments"]["test"][1] == calendar[-1]

    artifacts = mlflow_artifacts(mlflow_dir / "mlflow.db", summary["mlflow"]["run_id"], tmp_path / "artifacts")
    model = load(artifacts, "params.pkl")
    assert type(model).__name__ == "LGBModel" and model.model is not None
    assert model.model.num_trees() == summary["model"]["trees"]
    pred = load(artifacts, "pred.pkl")
    test_days = {d for d in calendar if summary["segments"]["test"][0] <= d <= summary["segments"]["test"][1]}
    assert {str(t.date()) for t in pred.index.get_level_values("datetime")} == test_days
    # point-in-time: at most SIZE members a day are predicted
    assert pred.groupby(level="datetime").size().max() <= SIZE

    report = load(artifacts, "portfolio_analysis/report_normal_1day.pkl")
    positions = load(artifacts, "portfolio_analysis/positions_normal_1day.pkl")
    analysis = load(artifacts, "portfolio_analysis/port_analysis_1day.pkl")
    backtest_days = [d for d in calendar if summary["segments"]["test"][0] <= d < calendar[-1]]
    assert [str(t.date()) for t in report.index] == backtest_days
    assert summary["backtest"]["steps"] == len(backtest_days)
    held = [p.get_stock_list() for p in positions.values()]
    assert sum(1 for h in held if h) >= len(backtest_days) - 2  # invested from the first trade on
    assert max(len(h) for h in held) >= 3
    assert all(s.endswith("-USDT-SWAP") for h in held for s in h)
    # OKX taker fee on both sides, no minimum: cost = traded value x fee
    traded = report["turnover"] > 0
    assert traded.any()
    assert (report.loc[traded, "cost"] - report.loc[traded, "turnover"] * FEE).abs().max() < 1e-9
    # fractional sizes (trade_unit None): some holding is not a whole number of coins
    amounts = [p.get_stock_amount(s) for p in positions.values() for s in p.get_stock_list()]
    assert any(abs(a - round(a)) > 1e-6 for a in amounts)
    # 365-day annualisation (Qlib's default would be 238)
    strat = analysis.loc["return_with_cost", "risk"]
    r = report["return"] - report["cost"]
    assert strat["annualized_return"] == pytest.approx(r.mean() * 365)
    assert strat["information_ratio"] == pytest.approx(r.mean() / r.std() * 365**0.5)
    assert summary["risk"]["return_with_cost"]["annualized_return"] == pytest.approx(strat["annualized_return"])
    # an equal-weighted point-in-time benchmark, not a stock index
    assert report["bench"].abs().sum() > 0

    # funding: the sample carries $funding_rate, so the report pays it (no "no funding_rate field");
    # the model's funding is the sum over the simulator's settlements of held weight x rate (the
    # day bar's own field has only the day's last settlement: the record reads the 60min bars)
    import pandas as pd

    from research.records import weights_from_positions

    baselines = summary["baselines"]
    assert baselines["funding"] == "on"
    weights = weights_from_positions(positions, index=report.index)
    expected = simulated_funding(weights, bar=pd.Timedelta(days=1))
    assert abs(expected) > 1e-4  # a few basis points a day over the test segment
    assert baselines["table"]["model"]["funding"] == pytest.approx(expected, rel=1e-5)
    row = baselines["table"]["model"]
    assert row["net"] == pytest.approx(row["gross"] - row["fees"] - row["funding"])

    # nothing written where the runner was started, nor in the repository
    assert sorted(p.name for p in workdir.iterdir()) == ["summary.json"]
    assert not (REPO / "mlruns").exists()


@pytest.mark.slow
def test_intraday_example_on_60min_bars(provider: Path, tmp_path: Path):
    """Also the long-short variant: the model row longs the top 3 and shorts the bottom 3 of the
    previous bar's scores, and pays (receives) the simulator's funding on the long (short) leg."""
    mlflow_dir = tmp_path / "mlflow"
    summary = run_example(tmp_path, "--provider-uri", str(provider), "--freq", "60min", "--mlflow-dir",
                          str(mlflow_dir), "--start", INTRADAY_START, "--windows", "5,10,20", "--topk", "3",
                          "--n-drop", "1", "--long-short")
    assert summary["handler"] == "Alpha158Windows" and summary["windows"] == [5, 10, 20]
    assert summary["model"]["trees"] >= 1
    assert summary["backtest"]["steps"] > 48
    assert summary["backtest"]["position_steps"] >= summary["backtest"]["steps"] - 2
    assert summary["periods_per_year"] == 8760
    artifacts = mlflow_artifacts(mlflow_dir / "mlflow.db", summary["mlflow"]["run_id"], tmp_path / "artifacts")
    report = load(artifacts, "portfolio_analysis/report_normal_60min.pkl")
    steps = report.index.to_series().diff().dropna()
    assert (steps == steps.iloc[0]).all() and steps.iloc[0].total_seconds() == 3600  # hourly, 24/7
    assert {t.hour for t in report.index} == set(range(24))

    # long-short: 3 longs at +1/6, 3 shorts at -1/6 after every trade, chosen by the previous bar's scores
    assert summary["long_short"] and summary["baselines"]["strategy"].startswith("long-short")
    weights = load(artifacts, "portfolio_analysis/long_short_weights_60min.pkl")
    pred = load(artifacts, "pred.pkl")["score"]
    assert list(weights.index) == list(report.index)
    for t_prev, t in list(zip(report.index[:-1], report.index[1:]))[:24]:
        w = weights.loc[t]
        longs, shorts = w[w > 0], w[w < 0]
        assert len(longs) == len(shorts) == 3
        assert longs.eq(1 / 6).all() and shorts.eq(-1 / 6).all()
        scores = pred.xs(t_prev, level="datetime")
        assert scores[longs.index].min() >= scores[shorts.index].max()
    # funding on both legs, from the simulator's settlements
    table = summary["baselines"]["table"]
    assert summary["baselines"]["funding"] == "on"
    assert table["model"]["funding"] == pytest.approx(simulated_funding(weights, bar=steps.iloc[0]), rel=1e-5,
                                                      abs=1e-9)
    assert table["model"]["funding"] != 0
    assert set(table) == {"model", "random signal", "equal-weighted market"}


def test_shipped_configs_render_with_crypto_settings():
    """The configs qrun runs: Jinja defaults render to a valid workflow with the crypto settings."""
    from research.run_example import CONFIGS, render_config

    for freq, path in CONFIGS.items():
        config = render_config(path, {})
        assert config["qlib_init"]["region"] == "us"
        assert config["qlib_init"]["exp_manager"]["kwargs"]["uri"].startswith("sqlite:///")
        handler = config["task"]["dataset"]["kwargs"]["handler"]
        assert (handler["class"], handler["module_path"]) == ("Alpha158", "qlib.contrib.data.handler")
        assert handler["kwargs"]["freq"] == freq
        pa = config["port_analysis_config"]
        assert pa["strategy"]["class"] == "TopkDropoutStrategy"
        assert pa["executor"]["kwargs"]["time_per_step"] == freq
        ex = pa["backtest"]["exchange_kwargs"]
        assert ex["freq"] == freq and ex["limit_threshold"] is None and ex["trade_unit"] is None
        assert ex["open_cost"] == ex["close_cost"] == FEE and ex["min_cost"] == 0 and ex["deal_price"] == "close"
        records = {r["class"]: r for r in config["task"]["record"]}
        assert records["CryptoPortAnaRecord"]["module_path"] == "research.records"
        assert records["SigAnaRecord"]["kwargs"]["ann_scaler"] == {"day": 365, "60min": 8760, "5min": 105_120,
                                                                   "1min": 525_600}[freq]
        assert config["qlib_init"]["exp_manager"]["class"] == "CryptoExpManager"  # quiet (git, gym, calendar)
    assert sorted(CONFIGS) == ["1min", "5min", "60min", "day"]


def test_long_short_config_renders_as_the_daily_one_with_long_short():
    """workflow_config_lightgbm_Alpha158_day_longshort.yaml: the daily config (same crypto settings,
    fees, strategy) with ``long_short: true`` on CryptoPortAnaRecord; ``--long-short`` selects it."""
    from research.run_example import CONFIGS, LONG_SHORT_CONFIG, render_config, set_long_short

    ls, day = render_config(LONG_SHORT_CONFIG, {}), render_config(CONFIGS["day"], {})
    records = {r["class"]: r for r in ls["task"]["record"]}
    assert records["CryptoPortAnaRecord"]["kwargs"]["long_short"] is True
    assert records["CryptoPortAnaRecord"]["module_path"] == "research.records"
    assert ls["qlib_init"]["exp_manager"]["kwargs"]["default_exp_name"] == "crypto_alpha158_day_longshort"
    records["CryptoPortAnaRecord"]["kwargs"].pop("long_short")
    ls["qlib_init"]["exp_manager"]["kwargs"]["default_exp_name"] = "crypto_alpha158_day"
    assert ls == day  # everything else identical: same fees, windows, strategy, benchmark
    set_long_short(day)  # what --long-short does to any other frequency's config
    assert next(r for r in day["task"]["record"] if r["class"] == "CryptoPortAnaRecord")["kwargs"]["long_short"]


@pytest.mark.slow
def test_qrun_runs_the_shipped_config(provider: Path, tmp_path: Path):
    """Plain `qrun` (Qlib's CLI) with the variables as environment variables, as documented."""
    from research.run_example import CONFIGS, auto_segments

    values = auto_segments(read_calendar(provider, "day"), warmup=60)
    env = {**os.environ, **values, "PROVIDER_URI": str(provider), "MARKET": f"top{SIZE}", "TOPK": "3",
           "N_DROP": "1", "MLFLOW_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    qrun = Path(sys.executable).with_name("qrun")
    res = subprocess.run([str(qrun), str(CONFIGS["day"])], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_URI"])
    exp = client.get_experiment_by_name("workflow")  # qrun's default experiment name
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    metrics = runs[0].data.metrics
    # logged by CryptoPortAnaRecord with N = 365
    assert "1day.return_with_cost.annualized_return" in metrics
    assert metrics["1day.return_with_cost.annualized_return"] == pytest.approx(
        metrics["1day.return_with_cost.mean"] * 365)


def test_periods_per_year():
    from research.records import periods_per_year

    assert periods_per_year("day") == 365
    assert periods_per_year("1day") == 365
    assert periods_per_year("60min") == 8760
    assert periods_per_year("1min") == 525_600


def test_auto_segments():
    from research.run_example import auto_segments

    days = [(dt.date(2024, 1, 1) + dt.timedelta(days=i)).isoformat() for i in range(160)]
    seg = auto_segments(days, warmup=60)
    assert (seg["START"], seg["TRAIN_START"], seg["END"], seg["BACKTEST_END"]) == (days[0], days[60], days[-1], days[-2])
    assert seg["TRAIN_END"] < seg["VALID_START"] <= seg["VALID_END"] < seg["TEST_START"]
    assert days.index(seg["TEST_START"]) - days.index(seg["VALID_START"]) == 20  # 60/20/20 of the 100 after warm-up
    # intraday: the test segment starts at 00:00 (Qlib's account needs a daily bar inside the backtest)
    hours = [f"2024-03-0{1 + i // 24} {i % 24:02d}:00:00" for i in range(72)]
    seg = auto_segments(hours, warmup=12)
    assert seg["TEST_START"] == "2024-03-03 00:00:00" and seg["VALID_END"] == "2024-03-02 23:00:00"
    with pytest.raises(ValueError, match="too short"):
        auto_segments(days[:65], warmup=60)


# ------------------------------------------------------------------------------------------------
# MLflow location, too-short datasets, the report's baselines, funding and warnings (pure, fast)
# ------------------------------------------------------------------------------------------------


def _published_layout(tmp_path: Path) -> Path:
    """data/qlib -> data/qlib.versions/v1 with the publisher's marker, as feeder.publish lays it out."""
    data = tmp_path / "data"
    version = data / "qlib.versions" / "v1"
    version.mkdir(parents=True)
    (data / "qlib.versions" / ".feeder-qlib-versions").write_text("")
    (data / "qlib").symlink_to(version, target_is_directory=True)
    return data


def test_mlflow_dir_is_never_inside_the_versioned_dataset_tree(tmp_path: Path):
    from research.run_example import MlflowDirRefused, check_mlflow_dir, default_mlflow_dir, main

    data = _published_layout(tmp_path)
    # the default sits beside the link, not in qlib.versions/ (where it took a version's slot)
    assert default_mlflow_dir(provider_uri=data / "qlib") == data / "research-runs"
    assert default_mlflow_dir(provider_uri=data / "qlib.versions" / "v1") == data / "research-runs"
    assert check_mlflow_dir(mlflow_dir=data / "research-runs", provider_uri=data / "qlib") == data / "research-runs"
    for inside in (data / "qlib.versions" / "research-runs", data / "qlib" / "runs", data / "qlib.versions"):
        with pytest.raises(MlflowDirRefused, match="versioned dataset tree"):
            check_mlflow_dir(mlflow_dir=inside, provider_uri=data / "qlib")
    # the command refuses before writing anything
    assert main(["--provider-uri", str(data / "qlib"), "--mlflow-dir", str(data / "qlib.versions" / "runs")]) == 2
    assert sorted(p.name for p in (data / "qlib.versions").iterdir()) == [".feeder-qlib-versions", "v1"]


def test_too_short_datasets_say_why(tmp_path: Path, capsys):
    """3 days: day bars cannot hold the warm-up, 60min bars leave no 00:00 in the test segment."""
    from research.run_example import DatasetTooShort, auto_segments, main

    days = ["2024-03-01", "2024-03-02", "2024-03-03"]
    with pytest.raises(DatasetTooShort, match=r"3 bars \(2024-03-01 .. 2024-03-03\): too short for 60 warm-up"):
        auto_segments(days, warmup=60)
    hours = [f"2024-03-0{1 + i // 24} {i % 24:02d}:00:00" for i in range(72)]
    with pytest.raises(DatasetTooShort, match="contains no 00:00 bar"):
        auto_segments(hours, warmup=60)
    assert auto_segments(hours, warmup=12)["TEST_START"].endswith("00:00:00")
    qlib_dir = tmp_path / "qlib"
    (qlib_dir / "calendars").mkdir(parents=True)
    (qlib_dir / "instruments").mkdir()
    (qlib_dir / "instruments" / "top10.txt").write_text("")
    (qlib_dir / "calendars" / "60min.txt").write_text("\n".join(hours) + "\n")
    assert main(["--provider-uri", str(qlib_dir), "--freq", "60min", "--mlflow-dir", str(tmp_path / "m")]) == 2
    assert "no 00:00 bar" in capsys.readouterr().err


def test_degenerate_models_are_named_in_words():
    from research.records import degenerate_warnings

    assert degenerate_warnings(trees=50, ic_mean=0.05, test_steps=60) == []
    w = degenerate_warnings(trees=1, ic_mean=0.004, test_steps=12)
    assert len(w) == 3
    assert "1 tree" in w[0] and "IC" in w[1] and "12 steps" in w[2]
    assert degenerate_warnings(trees=20, ic_mean=None, test_steps=60)[0].startswith("the signal's IC")


def test_model_within_noise_of_random_baseline():
    import numpy as np
    import pandas as pd

    from research.records import compare_returns, verdict

    rng = np.random.default_rng(1)
    idx = pd.date_range("2024-01-01", periods=60)
    base = pd.Series(rng.normal(0, 0.02, 60), index=idx)
    noisy = base + rng.normal(0, 0.02, 60)  # same expectation: no edge
    c = compare_returns(model=noisy, baseline=base)
    assert c["within_noise"] and "within noise of the random baseline" in verdict(c)
    edge = base + 0.01 + rng.normal(0, 0.002, 60)
    c = compare_returns(model=edge, baseline=base)
    assert not c["within_noise"] and c["t"] > 2 and "above the random baseline beyond noise" in verdict(c)


def test_funding_is_paid_at_settlements_on_the_weights_held():
    import pandas as pd

    from research.records import funding_cost, settlements_per_step

    hours = pd.date_range("2024-03-01 00:00", periods=24, freq="h")
    # $funding_rate = last settled rate at the bar's close: 08:00 settlement first in the 07:00 bar
    rate = pd.Series(0.0001, index=hours)
    rate[hours >= "2024-03-01 07:00"] = 0.0003
    rate[hours >= "2024-03-01 15:00"] = -0.0002
    rate[hours >= "2024-03-01 23:00"] = 0.0001
    rates = pd.DataFrame({"A": rate, "B": rate * 0 + 0.0001})
    per = settlements_per_step(rates, freq="60min")
    paid = per["A"][per["A"] != 0]
    assert list(paid.index.hour) == [7, 15, 23] and list(paid) == [0.0003, -0.0002, 0.0001]
    assert list(per["B"][per["B"] != 0].index.hour) == [7, 15, 23]  # unchanged rate, still settled
    weights = pd.DataFrame({"A": 0.5, "B": -0.5}, index=hours)  # long A, short B
    cost = funding_cost(weights=weights, per_step=per)
    assert cost[hours[7]] == pytest.approx(0.5 * 0.0003 - 0.5 * 0.0001)
    assert cost[hours[15]] == pytest.approx(0.5 * -0.0002 - 0.5 * 0.0001)
    assert cost.drop(hours[[7, 15, 23]]).abs().max() == 0
    # the first bar's holdings are the previous step's: nothing held before the backtest
    assert funding_cost(weights=weights, per_step=per.assign(A=0.01))[hours[0]] == 0
    # daily bars carry the last of three 8-hour settlements
    days = pd.date_range("2024-03-01", periods=3)
    daily = settlements_per_step(pd.DataFrame({"A": [0.0001, None, 0.0002]}, index=days), freq="day")
    assert list(daily["A"]) == pytest.approx([0.0003, 0.0, 0.0006])


def test_risk_table_prints_model_and_baselines():
    import pandas as pd

    from research.records import compare_returns, format_risk_table, strategy_row

    idx = pd.date_range("2024-01-01", periods=40)
    rep = pd.DataFrame({"return": 0.001, "cost": 0.0002, "turnover": 0.4, "bench": 0.0}, index=idx)
    rep["return"] += [0.01 * (-1) ** i for i in range(40)]
    row = strategy_row(report=rep, funding=pd.Series(0.0001, index=idx), freq="day")
    assert row["net"] == pytest.approx(rep["return"].sum() - 0.008 - 0.004)
    assert row["fees"] == pytest.approx(0.008) and row["funding"] == pytest.approx(0.004)
    table = pd.DataFrame({"model": row, "random signal": row, "equal-weighted market": row}).T
    table.attrs.update(funding="on", random_vs_model=compare_returns(model=rep["return"], baseline=rep["return"] * 0.9))
    text = format_risk_table(table, freq="day")
    for word in ("model", "random signal", "equal-weighted market", "funding", "IR", "max DD", "within noise"):
        assert word in text


def test_long_short_weights_fees_and_funding_signs():
    """Long the top-k, short the bottom-k of each step's scores at 1/(2k); fees on |trades|; a
    short pays negative funding (receives) when the rate is positive, the long leg pays it."""
    import pandas as pd

    from research.records import data_freq, daily_from_intraday, funding_cost, long_short_report, long_short_weights

    t = pd.date_range("2024-03-01", periods=3)
    idx = pd.MultiIndex.from_product([t, ["A", "B", "C", "D", "E"]], names=["datetime", "instrument"])
    scores = pd.Series([5, 4, 3, 2, 1, 1, 2, 3, 4, 5, 5, 4, 3, 2, 1], index=idx, dtype=float)
    w = long_short_weights(scores, topk=2).reindex(columns=list("ABCDE"), fill_value=0.0)
    assert w.loc[t[0]].to_dict() == {"A": 0.25, "B": 0.25, "C": 0.0, "D": -0.25, "E": -0.25}
    assert w.loc[t[1]].to_dict() == {"A": -0.25, "B": -0.25, "C": 0.0, "D": 0.25, "E": 0.25}
    assert long_short_weights(scores, topk=4).loc[t[0]].to_dict() == {"A": 0.25, "B": 0.25,
                                                                       "D": -0.25, "E": -0.25}  # k = 5 // 2
    # gross return of the weights held into the step; trades to the targets from the drifted weights
    targets = pd.DataFrame({"A": [0.5, 0.5, -0.5], "B": [-0.5, -0.5, 0.5]}, index=t)
    returns = pd.DataFrame({"A": [0.0, 0.10, 0.0], "B": [0.0, -0.10, 0.0]}, index=t)
    rep = long_short_report(targets=targets, returns=returns, open_cost=0.0005, close_cost=0.0005)
    assert rep["return"].tolist() == pytest.approx([0.0, 0.10, 0.0])  # +0.5*10% - 0.5*(-10%)
    assert rep["turnover"].iloc[0] == pytest.approx(1.0)
    drifted = {"A": 0.5 * 1.1 / 1.1, "B": -0.5 * 0.9 / 1.1}  # account grew by 10 %
    assert rep["turnover"].iloc[1] == pytest.approx(abs(0.5 - drifted["A"]) + abs(-0.5 - drifted["B"]))
    assert rep["turnover"].iloc[2] == pytest.approx(2.0)  # flip both legs
    assert (rep["cost"] - rep["turnover"] * 0.0005).abs().max() < 1e-12
    # funding: positive rate on both coins, long A / short B: A's leg pays, B's leg receives
    per_step = pd.DataFrame({"A": [0.0, 0.0003, 0.0], "B": [0.0, 0.0003, 0.0]}, index=t)
    legs = funding_cost(weights=targets[["A"]], per_step=per_step), funding_cost(weights=targets[["B"]], per_step=per_step)
    assert legs[0][t[1]] == pytest.approx(0.5 * 0.0003) and legs[1][t[1]] == pytest.approx(-0.5 * 0.0003)
    assert funding_cost(weights=targets, per_step=per_step)[t[1]] == pytest.approx(0.0)  # equal rates net out
    # daily funding from hourly settlements: every settlement in (D 00:00, D+1 00:00]
    hours = pd.date_range("2024-03-01 00:00", periods=48, freq="h")
    hourly = pd.DataFrame({"A": 0.0}, index=hours)
    hourly.loc[hours[[7, 15, 23, 31]], "A"] = [0.0001, 0.0002, 0.0003, 0.0004]
    assert daily_from_intraday(hourly)["A"].tolist() == pytest.approx([0.0006, 0.0004])
    assert (data_freq("1day"), data_freq("day"), data_freq("60min")) == ("day", "day", "60min")
