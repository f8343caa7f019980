"""Reference points for the rebuild benchmark, run on the same raw store as the pipeline.

Input of every baseline: the run's raw store, i.e. the stream shards ``raw/ws/candle1m/<day>/<HH>/``
(plus hour 00 of the next day, which holds a day's 23:59 candle) and the REST backfill shards
``raw/rest/candle1m/<day>.jsonl`` and, with history.source archive+rest (the default), the archive's
copies ``raw/archive/candle1m/<day>.jsonl`` the pipeline's warm-up wrote (the pipeline reads them all;
without them the two sides would not start from the same data). Bars are kept when they open inside the
built days and deduplicated on (inst, ts) with the exchange's copies (REST, archive) first, as the pipeline does (among stream
copies the baselines keep the first, the pipeline the last received: the workload's duplicate
lines are identical copies, as after a reconnect replay). Values are computed
from the same OKX candle elements as feeder/okx.py: ``volume`` base coin (``volCcy``; ``vol`` for
SPOT), ``amount`` USDT turnover (``volCcyQuote``; NaN in a bar if any minute lacks it), see
docs/fields.md. Like the seed, no baseline validates rows (the pipeline also rejects malformed or
unconfirmed candles; the bench workload has none).

* ``pandas_per_symbol_day``: the original design's approach: pandas reads every shard line by
  line, one Parquet per symbol-day, then a concat per symbol and float32 bins (1min and day) of
  open, high, low, close, volume, amount. This is what the project replaces.
* ``pandas_dump_bin``: what a user would do today: the same pandas reading, one CSV per symbol
  and frequency (1min, 5min, 60min, day: the pipeline's bench frequencies) with Qlib's standard
  fields open, high, low, close, volume, amount, vwap, factor, then Qlib's official
  ``scripts/dump_bin.py`` ``DumpDataAll`` (vendored in bench/third_party, called from Python with
  ``max_workers=2`` for the 2-core budget) into a Qlib directory. Its calendars are the union of
  the observed timestamps, not 24/7 (bench/run.py prints how many 24/7 slots they lack).
* ``polars_limit``: the near-physical limit on this machine: one polars process reads all the
  JSONL once, deduplicates with an Int64 key sort, and writes the float32 bins of open, high,
  low, close, volume, amount at every frequency. No fault tolerance, no incremental builds,
  whole history in memory: a bound to compare against, not a design.

``pandas_per_symbol_day`` and ``polars_limit`` write bins only (``out_dir/features/<inst>/``, no
calendars: only the cost of the data path is measured); their start indices are in the 24/7
calendar from the first day 00:00, like the pipeline's. bench/check.py compares all of them
with the pipeline's output slot by slot.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

FREQ_MINUTES = {"1min": 1, "5min": 5, "60min": 60, "day": 1440}
FIELDS = ("open", "high", "low", "close", "volume", "amount")
DUMP_BIN_FIELDS = (*FIELDS, "vwap", "factor")  # Qlib's standard feature set
DAY_MS = 86_400_000
MINUTE_MS = 60_000
COLUMNS = ["inst", "ts", "open", "high", "low", "close", "volume", "amount"]


def _bins(values: np.ndarray, start: int) -> bytes:
    return np.concatenate([[start], values]).astype("<f4").tobytes()


def _day_ms(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY_MS


def shard_paths(raw_root: Path, day: dt.date) -> list[Path]:
    """The files the pipeline's clean job reads for ``day``: the exchange's copies first (REST, then
    the archive's with history.source archive+rest; they win duplicates), then the stream's."""
    ws = raw_root / "ws" / "candle1m"
    exchange = [raw_root / "rest" / "candle1m" / f"{day}.jsonl", raw_root / "archive" / "candle1m" / f"{day}.jsonl"]
    return [p for p in exchange if p.exists()] + sorted((ws / str(day)).glob("*/*.jsonl")) + sorted(
        (ws / str(day + dt.timedelta(days=1)) / "00").glob("*.jsonl"))


def _is_spot(inst: str) -> bool:
    return inst.count("-") == 1


def _volume_amount(inst: str, d: list[str]) -> tuple[float, float]:
    """(base-coin volume, quote turnover) of one OKX candle array, as feeder/okx.py defines them."""
    spot = _is_spot(inst)
    volume = float(d[5] if spot else d[6])
    if len(d) == 9:
        return volume, float(d[7])
    return volume, float(d[6]) if spot else float("nan")


def read_day_pandas(raw_root: Path, day: dt.date) -> pd.DataFrame:
    """One day's bars, the seed's way (json.loads per line), inside the day, deduplicated."""
    lo, hi = _day_ms(day), _day_ms(day) + DAY_MS
    rows = []
    for path in shard_paths(raw_root, day):
        with open(path) as fh:
            for line in fh:
                rec = json.loads(line)
                d = rec["data"]
                ts = int(d[0])
                if lo <= ts < hi:
                    rows.append((rec["inst"], ts, *map(float, d[1:5]), *_volume_amount(rec["inst"], d)))
    return pd.DataFrame(rows, columns=COLUMNS).drop_duplicates(["inst", "ts"], keep="first")


def aggregate_pandas(frame: pd.DataFrame, minutes: int, calendar_start: int) -> pd.DataFrame:
    """One instrument's 1min bars (sorted by ts) -> bars of ``minutes``, indexed by calendar slot.

    ``amount`` is NaN in a bar if any of its minutes lacks it (never a partial sum). Sums are
    pandas' own (compensated) groupby sums: their float64 results may differ from polars' in
    the last bits (bench/check.py allows exactly that, see there)."""
    bucket = (frame["ts"] - calendar_start) // (minutes * MINUTE_MS)
    if minutes == 1:
        return frame.set_index(bucket)[list(FIELDS)]
    agg = frame.assign(amount_missing=frame["amount"].isna()).groupby(bucket).agg(
        open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last"),
        volume=("volume", "sum"), amount=("amount", "sum"), amount_missing=("amount_missing", "sum"))
    agg.loc[agg["amount_missing"] > 0, "amount"] = np.nan
    return agg.drop(columns="amount_missing")


def pandas_per_symbol_day(raw_root: Path, out_dir: Path, days: list[dt.date]) -> int:
    """The seed's approach. Returns the number of bars written at 1min."""
    staging = out_dir / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    for day in days:
        frame = read_day_pandas(raw_root, day)
        for inst, group in frame.groupby("inst"):
            group.sort_values("ts").to_parquet(staging / f"{inst}.{day}.parquet")
    bars = 0
    calendar_start = _day_ms(days[0])
    for inst in sorted({p.name.split(".")[0] for p in staging.glob("*.parquet")}):
        frame = pd.concat([pd.read_parquet(p) for p in sorted(staging.glob(f"{inst}.*.parquet"))])
        frame = frame.drop_duplicates("ts").sort_values("ts")
        target = out_dir / "features" / inst.lower()
        target.mkdir(parents=True, exist_ok=True)
        for freq in ("1min", "day"):
            agg = aggregate_pandas(frame, FREQ_MINUTES[freq], calendar_start)
            first, last = int(agg.index.min()), int(agg.index.max())
            full = agg.reindex(range(first, last + 1))
            for field in FIELDS:
                (target / f"{field}.{freq}.bin").write_bytes(_bins(full[field].to_numpy(), first))
            if freq == "1min":
                bars += len(agg)
    return bars


def pandas_dump_bin(raw_root: Path, out_dir: Path, days: list[dt.date], freqs: list[str] | None = None) -> int:
    """pandas -> one CSV per symbol and frequency -> Qlib's dump_bin ``DumpDataAll`` into
    ``out_dir/qlib``. Returns the number of bars written at 1min."""
    from bench.third_party.qlib_dump_bin import DumpDataAll

    freqs = freqs or list(FREQ_MINUTES)
    frame = pd.concat([read_day_pandas(raw_root, day) for day in days], ignore_index=True)
    frame = frame.drop_duplicates(["inst", "ts"]).sort_values(["inst", "ts"])
    calendar_start = _day_ms(days[0])
    for freq in freqs:
        minutes = FREQ_MINUTES[freq]
        csv_dir = out_dir / "csv" / freq
        csv_dir.mkdir(parents=True, exist_ok=True)
        for inst, group in frame.groupby("inst"):
            agg = aggregate_pandas(group, minutes, calendar_start)
            agg.index = pd.to_datetime(calendar_start + agg.index * minutes * MINUTE_MS, unit="ms")
            agg["vwap"] = (agg["amount"] / agg["volume"]).where(agg["volume"] > 0)
            agg["factor"] = 1.0
            agg.to_csv(csv_dir / f"{inst}.csv", index_label="date")
        DumpDataAll(data_path=str(csv_dir), qlib_dir=str(out_dir / "qlib"), freq=freq, max_workers=2,
                    date_field_name="date", include_fields=",".join(DUMP_BIN_FIELDS))()
    return len(frame)


def polars_limit(raw_root: Path, out_dir: Path, days: list[dt.date]) -> int:
    """One polars process: read all, dedup, every frequency's bins. Returns 1min bars written."""
    paths = [str(p) for day in days for p in shard_paths(raw_root, day)]
    calendar_start = _day_ms(days[0])
    n_slots = len(days) * 1440
    raw = pl.read_ndjson(paths, schema={"inst": pl.Utf8, "source": pl.Utf8, "data": pl.List(pl.Utf8)})
    data = pl.col("data")
    codes = pl.col("inst").cast(pl.Categorical).to_physical().cast(pl.Int64)
    spot = pl.col("inst").str.count_matches("-") == 1
    frame = (
        raw.with_columns(slot=(data.list.get(0).cast(pl.Int64) - calendar_start) // MINUTE_MS)
        .filter(pl.col("slot").is_between(0, n_slots - 1))
        .with_columns(key=codes * (1 << 32) + pl.col("slot"), stream=~pl.col("source").is_in(["rest", "archive"]))
        .sort("key", "stream")
        .unique("key", keep="first", maintain_order=True)
        .select("inst", "slot",
                open=data.list.get(1).cast(pl.Float64), high=data.list.get(2).cast(pl.Float64),
                low=data.list.get(3).cast(pl.Float64), close=data.list.get(4).cast(pl.Float64),
                volume=pl.when(spot).then(data.list.get(5)).otherwise(data.list.get(6)).cast(pl.Float64),
                amount=pl.when(data.list.len() == 9).then(data.list.get(7)).when(spot).then(data.list.get(6))
                .cast(pl.Float64))
    )
    bars = frame.height
    for freq, minutes in FREQ_MINUTES.items():
        agg = (frame.group_by("inst", (pl.col("slot") // minutes).alias("bucket"), maintain_order=True)
               .agg(pl.col("open").first(), pl.col("high").max(), pl.col("low").min(), pl.col("close").last(),
                    pl.col("volume").sum(),
                    pl.when(pl.col("amount").null_count() == 0).then(pl.col("amount").sum()).alias("amount"))
               ) if minutes > 1 else frame.rename({"slot": "bucket"})
        for (inst,), group in agg.group_by("inst"):
            idx = group["bucket"].to_numpy()
            start, n = int(idx.min()), int(idx.max() - idx.min() + 1)
            target = out_dir / "features" / str(inst).lower()
            target.mkdir(parents=True, exist_ok=True)
            for field in FIELDS:
                dense = np.full(n, np.nan, dtype="<f4")
                dense[idx - start] = group[field].fill_null(float("nan")).to_numpy()
                (target / f"{field}.{freq}.bin").write_bytes(_bins(dense, start))
    return bars
