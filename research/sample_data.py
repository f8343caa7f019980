"""A research-sized sample Qlib dataset, built in seconds from the simulator's market model.

For the demo and the tests only (it imports ``okxsim``; the product never does). The streamed
demo covers three days, and Alpha158 needs up to 60 days of history before its first feature
row, so the research example gets a longer dataset from the same simulated world:

* 1-minute bars come straight from ``okxsim.Market`` (the ground truth the simulator serves over
  REST and WebSocket) in the clean-stage columns (``volume`` = base coin, OKX ``volCcy``;
  ``amount`` = USDT, OKX ``volCcyQuote``), so the skipped stages are collection, backfill and
  cleaning, whose job is to turn the exchange's feed into exactly these bars;
* they are resampled by the product's ``feeder.resample.resample_bars`` (coverage included),
* ``funding_rate`` is attached by the product's ``feeder.resample.attach_point_in_time`` (the
  last settled rate at each bar's close) from the rates the simulator settles
  (``okxsim.Market.settled_funding_rate``, the function behind its REST
  ``funding-rate-history``, at every settlement of the instrument's interval), which stands in
  for the collector's REST history and ``funding-rate`` channel,
* the point-in-time universe is ranked by the product's ``feeder.universe.rank_day`` (trailing
  mean daily USDT turnover before each day), and
* the provider directory is written by the product's ``feeder.qlib_export.export_qlib``: the
  same on-disk format ``snakemake`` produces, read by real Qlib.

The candidate instruments are the first ``n_symbols`` eligible USDT linear crypto swaps of the
simulated exchange listed on the first day (about the most liquid ones); ``size`` of them are
members on each day.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from feeder import registry
from feeder.qlib_export import export_qlib
from feeder.clean_funding import FUNDING_MAX_AGE
from feeder.registry import DAY_MS, MINUTE_MS, day_start_ms
from feeder.resample import attach_point_in_time, resample_bars
from feeder.universe import eligible, instruments_frame, rank_day

REPO = Path(__file__).resolve().parent.parent
HOUR_MS = 3_600_000
FUNDING_MAX_AGE_MS = int(FUNDING_MAX_AGE.total_seconds() * 1000)  # the as-of join's look-back
# The fields made from candles, and funding_rate from the simulator's settlements (the sample has
# no open interest or trades: those need live collector channels the sample skips).
FIELDS = tuple(f.name for f in registry.FIELDS if f.source in ("candles", "export") or f.name == "funding_rate")


def _universe_config() -> dict[str, Any]:
    """The repository's default eligibility filters (config.yaml ``universe``)."""
    return yaml.safe_load((REPO / "config.yaml").read_text())["universe"]


def _minute_frame(market: Any, spec: Any, day: dt.date) -> tuple[pl.DataFrame, float]:
    """One instrument-day of 1m bars (clean-stage columns + inst) and its USDT turnover."""
    from okxsim.common import day_index

    dd = market.day_data(spec, day_index(day_start_ms(day)))
    idx = np.flatnonzero(dd.present)
    _, ccy_exp, quote_exp = market._exps(spec)  # decimal exponents of volCcy / volCcyQuote
    price = 10.0 ** spec.tick_exp
    amount = dd.quote[idx] * 10.0**quote_exp
    frame = pl.DataFrame({
        "inst": pl.Series([spec.inst_id] * idx.size, dtype=pl.Utf8),
        "ts": pl.Series((dd.start + idx * MINUTE_MS).astype(np.int64)).cast(pl.Datetime("ms")),
        "open": dd.o[idx] * price,
        "high": dd.h[idx] * price,
        "low": dd.l[idx] * price,
        "close": dd.c[idx] * price,
        "volume": dd.ccy[idx] * 10.0**ccy_exp,
        "amount": amount,
    })
    return frame, float(amount.sum())


def settlements(market: Any, spec: Any, *, first_ms: int, last_ms: int) -> pl.DataFrame:
    """The instrument's settled funding rates with ``first_ms <= funding_time <= last_ms``, in
    feeder.clean_funding's columns (``inst, funding_time, funding_rate``).

    The settlement times are those the simulator's ``funding-rate-history`` serves: multiples of
    the instrument's interval after its listing (and before its delisting); the rate is
    ``Market.settled_funding_rate``, the same function (the REST rows only format it).
    """
    iv = spec.funding_hours * HOUR_MS
    lo = max(first_ms, spec.list_ms + 1)
    hi = last_ms if spec.delist_ms is None else min(last_ms, spec.delist_ms - 1)
    times = list(range(lo + (-lo) % iv, hi + 1, iv)) if iv > 0 else []
    return pl.DataFrame({
        "inst": pl.Series([spec.inst_id] * len(times), dtype=pl.Utf8),
        "funding_time": pl.Series(times, dtype=pl.Int64).cast(pl.Datetime("ms")),
        "funding_rate": pl.Series([market.settled_funding_rate(spec, t) for t in times], dtype=pl.Float64),
    })


def build_sample_qlib(
    qlib_dir: Path,
    *,
    first_day: dt.date,
    last_day: dt.date,
    n_symbols: int = 20,
    size: int = 10,
    window_days: int = 7,
    freqs: Sequence[str] = ("day", "60min"),
    seed: int = 7,
    chunk_days: int = 16,
) -> dict[str, Any]:
    """Write a Qlib provider directory for [first_day, last_day]; return a summary.

    Market ``top<size>`` is the point-in-time universe. ``freqs`` are Qlib frequency names.
    Fields: those of the candles, ``funding_rate`` (see the module docstring), ``coverage`` and
    ``factor``.
    """
    from okxsim import Market

    t0 = time.perf_counter()
    history_start = first_day - dt.timedelta(days=window_days + 1)
    clock = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(1), dt.timezone.utc)
    market = Market(seed=seed, history_start=history_start.isoformat(), clock_start=clock.isoformat())
    listed = instruments_frame(market.instruments(day_start_ms(first_day), "SWAP"))
    candidates = eligible(listed, _universe_config())["instId"].to_list()[:n_symbols]
    specs = [market.spec(inst) for inst in candidates]
    all_days = [history_start + dt.timedelta(days=i) for i in range((last_day - history_start).days + 1)]
    days = [d for d in all_days if d >= first_day]

    qlib_dir = Path(qlib_dir)
    qlib_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".sample-bars.", dir=qlib_dir.parent))
    try:
        bar_paths: dict[str, list[Path]] = {f: [] for f in freqs}
        turnover: list[dict[str, Any]] = []
        fundings: list[pl.DataFrame] = []
        for i in range(0, len(all_days), chunk_days):
            chunk = all_days[i : i + chunk_days]
            frames = []
            for day in chunk:
                for spec in specs:
                    frame, quote = _minute_frame(market, spec, day)
                    if day >= first_day and frame.height:
                        funding_window = (day_start_ms(day) - FUNDING_MAX_AGE_MS, day_start_ms(day) + DAY_MS)
                        fundings.append(settlements(market, spec, first_ms=funding_window[0],
                                                    last_ms=funding_window[1]))
                    if frame.height:
                        turnover.append({"inst": spec.inst_id, "day": day, "metric": quote})
                    if day >= first_day and frame.height:
                        frames.append(frame)
            if not frames:
                continue
            minutes = pl.concat(frames)
            funding = pl.concat(fundings).unique(["inst", "funding_time"]).sort("inst", "funding_time")
            fundings = []
            for freq in freqs:
                path = scratch / freq / f"{chunk[0].isoformat()}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                attach_point_in_time(resample_bars(minutes, freq), freq, funding=funding).write_parquet(path)
                bar_paths[freq].append(path)
        daily = pl.DataFrame(turnover, schema={"inst": pl.Utf8, "day": pl.Date, "metric": pl.Float64})
        membership = pl.concat([rank_day(daily, day=d, size=size, window_days=window_days) for d in days])
        market_name = registry.market_name(size)
        summary = export_qlib(bars_paths=bar_paths, days=days, membership=membership, market_name=market_name,
                              qlib_dir=qlib_dir, fields=FIELDS)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary.update(market=market_name, candidates=candidates, seconds=time.perf_counter() - t0)
    return summary


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("qlib_dir", type=Path)
    parser.add_argument("--start", default="2023-01-01")
    parser.add_argument("--end", default="2023-12-31")
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--size", type=int, default=10)
    parser.add_argument("--freqs", default="day,60min")
    args = parser.parse_args(argv)
    summary = build_sample_qlib(args.qlib_dir, first_day=dt.date.fromisoformat(args.start),
                                last_day=dt.date.fromisoformat(args.end), n_symbols=args.symbols, size=args.size,
                                freqs=args.freqs.split(","))
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
