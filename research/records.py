"""Qlib records with crypto annualisation (markets open 365 days a year, 24 hours a day).

Qlib's ``PortAnaRecord`` annualises its risk analysis with a stock market's 238 trading days
(``risk_analysis`` has an ``N`` argument, the record does not pass one). ``CryptoPortAnaRecord``
is the same record with ``N`` = periods per calendar year of the analysed frequency: 365 for
``day``, 8,760 for ``60min``, 525,600 for ``1min``. It also stores the analysis of the
strategy's own return (not only the excess over the benchmark).
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from pprint import pformat
from typing import Any

from pathlib import Path

import numpy as np
import pandas as pd


def _import_gym_quietly() -> None:
    """gym prints an "unmaintained" notice to stderr on import; ``qlib.rl`` (imported with Qlib's
    strategies) imports it. Imported once here with that print captured; an import error is left
    to Qlib, which reports it when it needs gym."""
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):
        try:
            import gym  # noqa: F401
        except Exception:  # noqa: BLE001
            pass


_import_gym_quietly()
from qlib.contrib.evaluate import risk_analysis
from qlib.utils import flatten_dict
from qlib.utils.time import Freq
from qlib.contrib.strategy.signal_strategy import WeightStrategyBase
from qlib.workflow.record_temp import PortAnaRecord

log = logging.getLogger(__name__)

MINUTES_PER_YEAR = 365 * 24 * 60


def periods_per_year(freq: str) -> float:
    """Bars per 365-day year for a Qlib frequency name or a record's ``1day``/``60min`` key."""
    count, unit = Freq.parse(freq)
    if unit == Freq.NORM_FREQ_DAY:
        return 365 / count
    if unit == Freq.NORM_FREQ_MINUTE:
        return MINUTES_PER_YEAR / count
    if unit == Freq.NORM_FREQ_WEEK:
        return 365 / 7 / count
    if unit == Freq.NORM_FREQ_MONTH:
        return 12 / count
    raise ValueError(f"no annualisation for frequency {freq!r}")


class CryptoPortAnaRecord(PortAnaRecord):
    """``PortAnaRecord`` annualising with 365 days a year (see the module docstring).

    Artifacts: everything ``PortAnaRecord`` saves (``report_normal_<f>.pkl``,
    ``positions_normal_<f>.pkl``, ``indicators_normal_<f>.pkl``...) with
    ``port_analysis_<f>.pkl`` recomputed with the crypto ``N`` and holding three blocks:
    ``return_with_cost`` (the strategy), ``excess_return_without_cost`` and
    ``excess_return_with_cost`` (over the benchmark).

    ``baselines_<f>.pkl``: the model, a random signal and the equal-weighted market under the
    same fees and funding (see ``_baselines``). ``long_short=True``: the model and random-signal
    rows are long-short backtests instead (long the top-k, short the bottom-k of the previous
    step's scores, equal weights, see ``long_short_weights`` / ``long_short_report``), the
    strategy's own ``topk`` and fees; the model's weights after each step's trades are saved as
    ``long_short_weights_<f>.pkl``; Qlib's long-only TopkDropout report is still saved.
    """

    def __init__(self, *args, baselines: bool = True, funding: bool = True, random_seed: int = 0,
                 long_short: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.baselines, self.funding, self.random_seed = baselines, funding, random_seed
        self.long_short = long_short

    def _generate(self, **kwargs):
        # Qlib's own risk analysis (238-day N) is skipped, not overwritten: its metrics would be
        # logged to MLflow under the same names first.
        freqs, self.risk_analysis_freq = self.risk_analysis_freq, []
        try:
            artifacts = super()._generate(**kwargs)
        finally:
            self.risk_analysis_freq = freqs
        for freq in freqs:
            key = f"report_normal_{freq}.pkl"
            if key not in artifacts:
                warnings.warn(f"no {freq} portfolio report: set generate_portfolio_metrics=True for that executor")
                continue
            report = artifacts[key]
            n = periods_per_year(freq)
            analysis = {
                "return_with_cost": risk_analysis(report["return"] - report["cost"], N=n, freq=None),
                "benchmark": risk_analysis(report["bench"], N=n, freq=None),
                "excess_return_without_cost": risk_analysis(report["return"] - report["bench"], N=n, freq=None),
                "excess_return_with_cost": risk_analysis(
                    report["return"] - report["bench"] - report["cost"], N=n, freq=None
                ),
            }
            frame = pd.concat(analysis)
            metrics = flatten_dict(frame["risk"].unstack().T.to_dict())
            self.recorder.log_metrics(**{f"{freq}.{k}": v for k, v in metrics.items()})
            artifacts[f"port_analysis_{freq}.pkl"] = frame
            log.info("crypto risk analysis (%s, N=%g):\n%s", freq, n, pformat(frame))
            if self.baselines:
                table = self._baselines(freq, report, artifacts.get(f"positions_normal_{freq}.pkl"))
                artifacts[f"baselines_{freq}.pkl"] = table
                if self.long_short:
                    artifacts[f"long_short_weights_{freq}.pkl"] = self.long_short_targets
                self.recorder.log_metrics(**{f"{freq}.{row}.{col}": v for row, r in table.iterrows()
                                             for col, v in r.items() if isinstance(v, float) and not np.isnan(v)})
                print(format_risk_table(table, freq=freq), flush=True)  # qrun's output; run_example prints its own
        return artifacts

    def _baselines(self, freq: str, report: pd.DataFrame, positions: dict | None) -> pd.DataFrame:
        """The model, a random signal and the equal-weighted market, backtested under the same costs."""
        from qlib.backtest import backtest as normal_backtest

        signal = self.strategy_config["kwargs"]["signal"]
        pred = signal.iloc[:, 0] if isinstance(signal, pd.DataFrame) else signal
        rng = np.random.default_rng(self.random_seed)
        random_pred = pd.Series(rng.standard_normal(len(pred)), index=pred.index, name="score")
        runs: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
        strategies = [("equal-weighted market", {"class": "EqualWeightStrategy", "module_path": "research.records",
                                                 "kwargs": {"signal": pred}})]
        if self.long_short:
            ex = self.backtest_config.get("exchange_kwargs", {})
            topk = int(self.strategy_config["kwargs"]["topk"])
            returns = load_bar_returns(sorted(set(pred.index.get_level_values("instrument"))), steps=report.index,
                                       freq=freq)
            for name, scores in (("model", pred), ("random signal", random_pred)):
                targets = long_short_weights(scores, topk=topk).shift(1).reindex(report.index).fillna(0.0)
                runs[name] = (long_short_report(targets=targets, returns=returns, open_cost=ex.get("open_cost", 0.0),
                                                close_cost=ex.get("close_cost", 0.0)), targets)
            self.long_short_targets = runs["model"][1]
        else:
            runs["model"] = (report, weights_from_positions(positions or {}, index=report.index))
            strategies.insert(0, ("random signal", {**self.strategy_config, "kwargs": {
                **self.strategy_config["kwargs"], "signal": random_pred}}))
        for name, strategy in strategies:
            metrics, _ = normal_backtest(executor=copy.deepcopy(self.executor_config), strategy=strategy,
                                         **self.backtest_config)
            rep, pos = metrics[freq]
            runs[name] = (rep, weights_from_positions(pos or {}, index=rep.index))
        runs = {name: runs[name] for name in ("model", "random signal", "equal-weighted market")}
        per_step = None
        if self.funding:
            insts = sorted({i for _, w in runs.values() for i in w.columns[(w != 0).any()]})
            per_step = load_funding(insts, start=report.index.min(), end=report.index.max(), freq=freq)
        rows = {}
        for name, (rep, weights) in runs.items():
            funding = (funding_cost(weights=weights, per_step=per_step) if per_step is not None
                       else pd.Series(0.0, index=rep.index))
            rows[name] = strategy_row(report=rep, funding=funding.reindex(rep.index).fillna(0.0), freq=freq)
        table = pd.DataFrame(rows).T
        table.attrs["funding"] = "off" if not self.funding else ("no funding_rate field" if per_step is None else "on")
        table.attrs["strategy"] = (f"long-short: long top {self.strategy_config['kwargs']['topk']}, short bottom "
                                   f"{self.strategy_config['kwargs']['topk']}, equal weights" if self.long_short
                                   else "long-only TopkDropout")
        table.attrs["random_vs_model"] = compare_returns(
            model=runs["model"][0]["return"] - runs["model"][0]["cost"],
            baseline=runs["random signal"][0]["return"] - runs["random signal"][0]["cost"])
        return table


# --------------------------------------------------------------------------------------------
# Quiet entry points: Qlib's unrelated noise, silenced where it comes from (not stderr as a whole)
# --------------------------------------------------------------------------------------------


class _DropMessages(logging.Filter):
    """Drops log records whose message starts with one of ``prefixes`` (everything else passes)."""

    def __init__(self, *prefixes: str):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.prefixes)


def _quiet_git_log(self) -> None:
    """``MLflowRecorder._log_uncommitted_code`` with git's own stderr silenced.

    Qlib runs ``git diff``/``git status`` in the working directory to log uncommitted code; outside
    a repository git prints its usage text to the terminal. The output is still logged when there
    is a repository; otherwise nothing is (as before).
    """
    import os
    import subprocess

    for cmd, fname in (("git diff", "code_diff.txt"), ("git status", "code_status.txt"),
                       ("git diff --cached", "code_cached.txt")):
        try:
            out = subprocess.check_output(cmd, shell=True, stderr=subprocess.DEVNULL)
            self.client.log_text(self.id, out.decode(), fname)
        except subprocess.CalledProcessError:
            log.debug("no uncommitted code logged: %s failed in %s", cmd, os.getcwd())


def quiet_qlib() -> None:
    """Silence three known messages that say nothing about the run (idempotent).

    * git's usage text (see ``_quiet_git_log``);
    * ``load calendar error ... future=True``: Qlib asks for a *future* calendar (it has none for
      crypto) and falls back to the real one, warning twice each time;
    * gym's "unmaintained" notice (see ``_import_gym_quietly``).
    """
    from qlib.workflow.recorder import MLflowRecorder

    MLflowRecorder._log_uncommitted_code = _quiet_git_log
    data_log = logging.getLogger("qlib.data")
    if not any(isinstance(f, _DropMessages) for f in data_log.filters):
        data_log.addFilter(_DropMessages("load calendar error", "You can get future calendar"))
    _import_gym_quietly()


from qlib.workflow.expm import MLflowExpManager  # noqa: E402


class CryptoExpManager(MLflowExpManager):
    """Qlib's ``MLflowExpManager``, made quiet (``quiet_qlib``). The configs name it in
    ``qlib_init.exp_manager`` so that plain ``qrun`` imports this module before its first run."""

    def __init__(self, *args, **kwargs):
        quiet_qlib()
        super().__init__(*args, **kwargs)


# --------------------------------------------------------------------------------------------
# Baselines, funding and the verdict: small pure functions (the report's logic)
# --------------------------------------------------------------------------------------------

#: Fewer test steps than this and no backtest figure means much (the report says so).
MIN_TEST_STEPS = 30
#: |IC| below this: the signal ranks coins no better than chance.
MIN_ABS_IC = 0.01
#: A model with this many trees or fewer predicts (almost) a constant.
MAX_DEGENERATE_TREES = 2


class EqualWeightStrategy(WeightStrategyBase):
    """Holds every instrument the signal scores at a step (the point-in-time members), equally
    weighted and rebalanced every step: the equal-weighted market, paying the same fees."""

    def generate_target_weight_position(self, score, current, trade_start_time, trade_end_time):
        codes = list(score.index)
        return {code: 1.0 / len(codes) for code in codes} if codes else {}


def settlements_per_step(rates: pd.DataFrame, *, freq: str) -> pd.DataFrame:
    """Funding rate paid per unit of long notional in each bar (``rates``: bars x instruments).

    ``$funding_rate`` is the last settled rate at the bar's close (docs/fields.md). Intraday, a
    bar contains a settlement when its close is on the 8-hour grid (00/08/16 UTC) or the rate
    changed since the previous bar (4-hour and other intervals). A ``day`` bar only carries the
    day's last settlement (D+1 00:00): the day's payments are approximated as 24 h / 8 h = 3
    times it.
    """
    count, unit = Freq.parse(freq)
    rates = rates.sort_index()
    if unit == Freq.NORM_FREQ_DAY:
        return rates.fillna(0.0) * 3.0 * count
    close = rates.index + pd.Timedelta(minutes=count)
    on_grid = pd.Series((close.hour % 8 == 0) & (close.minute == 0), index=rates.index)
    changed = rates.ne(rates.shift()) & rates.notna() & rates.shift().notna()
    settle = changed | pd.DataFrame({c: on_grid for c in rates.columns}, index=rates.index)
    return rates.where(settle & rates.notna(), 0.0)


def weights_from_positions(positions: dict, *, index: pd.Index) -> pd.DataFrame:
    """Weight of each instrument in the account after each step's trades (bars x instruments)."""
    rows = {t: p.get_stock_weight_dict(only_stock=False) for t, p in positions.items() if p.get_stock_list()}
    frame = pd.DataFrame.from_dict(rows, orient="index") if rows else pd.DataFrame(index=index)
    return frame.reindex(index).fillna(0.0)


def funding_cost(*, weights: pd.DataFrame, per_step: pd.DataFrame) -> pd.Series:
    """Funding paid as a fraction of the account per step: the weights held *into* the bar (after
    the previous step's trades) times the bar's settlements; negative = received (a short, or a
    negative rate). Why: Qlib's account knows nothing of funding, perpetual swaps pay it."""
    held = weights.shift(1).fillna(0.0)
    rates = per_step.reindex(index=held.index, columns=held.columns).fillna(0.0)
    return (held * rates).sum(axis=1)


def data_freq(freq: str) -> str:
    """The frequency name of the dataset's files for a record's key (``1day`` -> ``day``,
    ``60min`` -> ``60min``): Qlib reads ``<field>.1day.bin``, which does not exist, for ``1day``
    and answers with an empty frame, not an error."""
    count, unit = Freq.parse(freq)
    if unit == Freq.NORM_FREQ_DAY and count == 1:
        return "day"
    if unit == Freq.NORM_FREQ_MINUTE:
        return f"{count}min"
    return freq


def daily_from_intraday(per_step: pd.DataFrame) -> pd.DataFrame:
    """Settlements per ``day`` bar from the settlements per intraday bar: the sum over the bars
    opening on that day, i.e. every settlement T with D 00:00 < T <= D+1 00:00 (the day bar's
    close). Exact where the ``day`` bar's own ``$funding_rate`` only carries the last one."""
    return per_step.groupby(per_step.index.normalize()).sum()


def _intraday_funding_freq() -> str | None:
    """The coarsest intraday frequency of the dataset with bars of at most 60 minutes (so every
    hourly settlement has its own bar), or None."""
    from qlib.config import C

    best = None
    for name in ("60min", "30min", "15min", "5min", "1min"):
        try:
            calendars = Path(C.dpm.get_data_uri(name)) / "calendars"
        except Exception:  # noqa: BLE001 - no provider for that frequency
            continue
        if (calendars / f"{name}.txt").exists():
            best = name
            break
    return best


def load_funding(insts: list[str], *, start: Any, end: Any, freq: str) -> pd.DataFrame | None:
    """Settlements per bar of ``insts`` from the dataset's ``$funding_rate``; None without the field.

    ``day`` bars: summed from the dataset's intraday bars (``daily_from_intraday``) when it has a
    frequency of 60 minutes or less, else 3 x the day's last settlement (``settlements_per_step``)."""
    from qlib.data import D

    if not insts:
        return None
    freq = data_freq(freq)
    read_freq, read_end = freq, end
    count, unit = Freq.parse(freq)
    if unit == Freq.NORM_FREQ_DAY and count == 1:
        intraday = _intraday_funding_freq()
        if intraday is not None:
            read_freq, read_end = intraday, pd.Timestamp(end) + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)
    try:
        frame = D.features(insts, ["$funding_rate"], start_time=start, end_time=read_end, freq=read_freq)
    except Exception as exc:  # noqa: BLE001 - Qlib raises various errors for a missing field
        log.warning("no funding in the backtest: $funding_rate not readable (%s)", exc)
        return None
    if frame.empty or frame["$funding_rate"].isna().all():
        return None
    rates = frame["$funding_rate"].unstack(level="instrument")
    per_step = settlements_per_step(rates, freq=read_freq)
    return daily_from_intraday(per_step) if read_freq != freq else per_step


def long_short_weights(scores: pd.Series, *, topk: int) -> pd.DataFrame:
    """Target weights per step (datetime x instrument) of a long-short portfolio: long the ``topk``
    highest scores, short the ``topk`` lowest, each at 1 / (2 topk) of the account, so the
    gross exposure is 100 % (like the long-only strategy) and the net exposure 0. A step with
    fewer than 2 ``topk`` scored instruments uses k = n // 2 per leg. Ties: by instrument name.

    Why equal weights and a fixed k: the simplest portfolio whose return is the spread between
    the signal's two ends, so it measures the ranking, not the market's direction."""
    if isinstance(scores, pd.DataFrame):
        scores = scores.iloc[:, 0]
    rows = {}
    for t, s in scores.dropna().groupby(level="datetime"):
        s = s.droplevel("datetime").sort_index().sort_values(ascending=False, kind="stable")
        k = min(topk, len(s) // 2)
        if k == 0:
            rows[t] = {}
            continue
        w = 1.0 / (2 * k)
        rows[t] = {**{i: w for i in s.index[:k]}, **{i: -w for i in s.index[-k:]}}
    frame = pd.DataFrame.from_dict(rows, orient="index").fillna(0.0).sort_index()
    frame.index.name = "datetime"
    return frame


def long_short_report(*, targets: pd.DataFrame, returns: pd.DataFrame, open_cost: float,
                      close_cost: float) -> pd.DataFrame:
    """A report like Qlib's (``return`` gross, ``cost``, ``turnover``, fractions of the account per
    step) of a portfolio rebalanced to ``targets`` at each step's close (the weights after that
    step's trades), from the bar returns of each instrument (close to close; NaN = no bar, 0).

    The weights held into a step earn its returns and drift with them; reaching the step's
    targets trades |target - drifted| of each instrument: buys pay ``open_cost``, sells
    ``close_cost`` (Qlib's convention; a short is opened by a sell)."""
    cols = targets.columns.union(returns.columns)
    targets = targets.reindex(columns=cols).fillna(0.0)
    r = returns.reindex(index=targets.index, columns=cols).fillna(0.0)
    held = targets.shift(1).fillna(0.0)
    gross = (held * r).sum(axis=1)
    drifted = (held * (1.0 + r)).div(1.0 + gross, axis=0)
    trade = targets - drifted
    buys, sells = trade.clip(lower=0.0).sum(axis=1), (-trade).clip(lower=0.0).sum(axis=1)
    return pd.DataFrame({"return": gross, "cost": buys * open_cost + sells * close_cost,
                         "turnover": buys + sells, "bench": 0.0}, index=targets.index)


def load_bar_returns(insts: list[str], *, steps: pd.Index, freq: str) -> pd.DataFrame:
    """Close-to-close return of each instrument over each step's bar (steps x instruments)."""
    from qlib.data import D

    freq = data_freq(freq)
    calendar = pd.DatetimeIndex(D.calendar(end_time=steps.max(), freq=freq))
    before = calendar[calendar < steps.min()]
    start = before[-1] if len(before) else steps.min()
    close = D.features(insts, ["$close"], start_time=start, end_time=steps.max(), freq=freq)["$close"]
    close = close.unstack(level="instrument").reindex(calendar[calendar >= start])
    return close.pct_change(fill_method=None).reindex(steps)


def strategy_row(*, report: pd.DataFrame, funding: pd.Series, freq: str) -> dict[str, float]:
    """Total (summed, as Qlib sums) return after fees and funding, its parts, annualised return,
    information ratio and maximum drawdown, annualised with 365 days."""
    net = report["return"] - report["cost"] - funding
    n = periods_per_year(freq)
    risk = risk_analysis(net, N=n, freq=None)["risk"] if len(net) > 1 else pd.Series(dtype=float)
    return {
        "gross": float(report["return"].sum()),
        "fees": float(report["cost"].sum()),
        "funding": float(funding.sum()),
        "net": float(net.sum()),
        "annualized_return": float(risk.get("annualized_return", math.nan)),
        "information_ratio": float(risk.get("information_ratio", math.nan)),
        "max_drawdown": float(risk.get("max_drawdown", math.nan)),
        "mean_turnover": float(report["turnover"].mean()),
    }


def compare_returns(*, model: pd.Series, baseline: pd.Series, z: float = 2.0) -> dict[str, Any]:
    """Paired comparison of two return series step by step: is the model's edge over the
    baseline larger than the noise (|mean difference| > z standard errors)?"""
    diff = (model - baseline).dropna()
    n = int(len(diff))
    mean = float(diff.mean()) if n else math.nan
    se = float(diff.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    t = mean / se if se and not math.isnan(se) and se > 0 else math.nan
    return {"steps": n, "mean_difference": mean, "standard_error": se, "t": t,
            "total_difference": float(diff.sum()) if n else math.nan,
            "within_noise": bool(math.isnan(t) or abs(t) < z)}


def degenerate_warnings(*, trees: int, ic_mean: float | None, test_steps: int,
                        min_test_steps: int = MIN_TEST_STEPS) -> list[str]:
    """Warnings in words for a model whose backtest figures mean nothing."""
    out = []
    if trees <= MAX_DEGENERATE_TREES:
        out.append(f"the model stopped after {trees} tree(s): its predictions are (almost) constant, "
                   "so the backtest ranks coins by ties, not by a signal")
    if ic_mean is None or (isinstance(ic_mean, float) and math.isnan(ic_mean)) or abs(ic_mean) < MIN_ABS_IC:
        ic = "n/a" if ic_mean is None or math.isnan(ic_mean) else f"{ic_mean:+.3f}"
        out.append(f"the signal's IC on the test segment is {ic} (|IC| < {MIN_ABS_IC}): no better than chance")
    if test_steps < min_test_steps:
        out.append(f"the backtest has only {test_steps} steps (< {min_test_steps}): its returns are mostly noise")
    return out


def verdict(comparison: dict[str, Any]) -> str:
    """One sentence: is the model's return after fees distinguishable from the random baseline's?"""
    c = comparison
    if c["steps"] < 2 or math.isnan(c["t"]):
        return "cannot compare the model with the random baseline (too few steps)"
    gap = f"{c['total_difference'] * 100:+.2f}% over {c['steps']} steps, t = {c['t']:+.2f}"
    if c["within_noise"]:
        return f"the model's return after fees is within noise of the random baseline ({gap}): no evidence of an edge"
    better = "above" if c["t"] > 0 else "below"
    return f"the model's return after fees is {better} the random baseline beyond noise ({gap})"


def format_risk_table(table: pd.DataFrame, *, freq: str) -> str:
    """The model next to its baselines: summed returns and their parts, annualised with 365 days."""
    def pct(x: float) -> str:
        return "    n/a" if x is None or math.isnan(x) else f"{x * 100:+7.2f}%"

    head = (f"  {'same costs, ' + freq + ' bars':28}{'gross':>9}{'fees':>9}{'funding':>9}{'net':>9}"
            f"{'annual':>10}{'IR':>7}{'max DD':>9}")
    lines = [head]
    if table.attrs.get("strategy"):
        lines.insert(0, f"  model and random signal: {table.attrs['strategy']}")
    for name, r in table.iterrows():
        ir = "   n/a" if math.isnan(r["information_ratio"]) else f"{r['information_ratio']:+6.2f}"
        lines.append(f"  {name:28}{pct(r['gross']):>9}{pct(-r['fees']):>9}{pct(-r['funding']):>9}{pct(r['net']):>9}"
                     f"{pct(r['annualized_return']):>10}{ir:>7}{pct(r['max_drawdown']):>9}")
    funding = table.attrs.get("funding", "on")
    if funding != "on":
        lines.append(f"  funding: {funding} (the figures ignore funding payments)")
    if "random_vs_model" in table.attrs:
        lines.append("  " + verdict(table.attrs["random_vs_model"]))
    return "\n".join(lines)
